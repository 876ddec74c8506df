use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{ClusterArg, Context};
use crate::ops::edit::{Outcome, Target, edit, run_editor};

#[derive(Debug, Subcommand)]
pub enum EditCommand {
    /// Edit the Cluster spec
    Cluster(ClusterArg),
    /// Edit an instance group (the cluster comes from --name)
    #[command(alias = "instancegroup", alias = "instancegroups")]
    Ig(EditGroupArgs),
}

#[derive(Debug, Args)]
pub struct EditGroupArgs {
    #[arg(value_name = "GROUP")]
    group: String,
}

pub async fn run(cmd: EditCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let (cluster, target) = match cmd {
        EditCommand::Cluster(a) => (ctx.cluster(&a)?, Target::Cluster),
        EditCommand::Ig(a) => (ctx.cluster_flag()?, Target::Group(a.group)),
    };
    let store = ctx.open_store(true).await?;
    match edit(&store, &cluster, target.clone(), &mut run_editor).await? {
        Outcome::Unchanged => ctx.printer.note("Edit cancelled: no changes made."),
        Outcome::Saved => ctx.printer.note(match target {
            Target::Cluster => format!("Cluster {cluster} has been updated."),
            Target::Group(g) => {
                format!("Instance group {g} of cluster {cluster} has been updated.")
            }
        }),
    }
    Ok(ExitCode::SUCCESS)
}
