use std::process::ExitCode;

use clap::Subcommand;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum IamCommand {
    /// Print the least-privilege IAM policy an operator needs to run keelson (scoped to --state's bucket)
    OperatorPolicy,
}

pub fn run(cmd: IamCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let IamCommand::OperatorPolicy = cmd;
    let state = ctx.state_url().ok();
    let policy = crate::model::iam::operator_policy(state.as_deref())?;
    ctx.printer
        .out(serde_json::to_string_pretty(&policy)? + "\n");
    if state.is_none() {
        ctx.printer.note("No --state given: the policy has no state-store statements; pass --state s3://BUCKET to include them.");
    }
    Ok(ExitCode::SUCCESS)
}
