use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{ClusterArg, Context};

#[derive(Debug, Subcommand)]
pub enum UnlockCommand {
    /// Show a cluster's lock, and with --yes remove it
    Cluster(UnlockArgs),
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    /// Remove the lock (only when its holder is gone)
    #[arg(short = 'y', long)]
    yes: bool,
}

pub async fn run(cmd: UnlockCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let UnlockCommand::Cluster(a) = cmd;
    let cluster = ctx.cluster(&a.cluster)?;
    let store = ctx.open_store(true).await?;
    let Some(info) = store.read_lock(&cluster).await? else {
        ctx.printer
            .note(format!("Cluster {cluster} is not locked."));
        return Ok(ExitCode::SUCCESS);
    };
    ctx.printer.out(format!(
        "Cluster {cluster} is locked by {}\n",
        info.describe()
    ));
    if !a.yes {
        ctx.printer.note(
            "Make sure that operation is no longer running, then remove the lock with --yes.",
        );
        ctx.printer.note("Must specify --yes to remove the lock");
        return Ok(ExitCode::SUCCESS);
    }
    store.remove_lock(&cluster).await?;
    ctx.printer
        .note(format!("Lock on cluster {cluster} removed."));
    Ok(ExitCode::SUCCESS)
}
