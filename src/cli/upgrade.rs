use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output::table;
use super::{ClusterArg, Context};

#[derive(Debug, Subcommand)]
pub enum UpgradeCommand {
    /// Move a cluster to the next Kubernetes version (one minor at a time), as kops upgrade cluster
    Cluster(UpgradeArgs),
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    /// The version to move to (default: the next minor's first release)
    #[arg(long, value_name = "VERSION")]
    kubernetes_version: Option<String>,
    /// Write the new version into the spec (without it, only show it)
    #[arg(short = 'y', long)]
    yes: bool,
}

pub async fn run(cmd: UpgradeCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let UpgradeCommand::Cluster(a) = cmd;
    let name = ctx.cluster(&a.cluster)?;
    let store = ctx.open_store(a.yes).await?;
    let changes =
        crate::ops::upgrade::upgrade(&store, &name, a.kubernetes_version.as_deref(), a.yes).await?;
    if changes.is_empty() {
        ctx.printer.note(format!(
            "No upgrade required: cluster {name} is at the newest version it can move to."
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|(i, p, o, n)| vec![i.clone(), p.clone(), o.clone(), n.clone()])
        .collect();
    ctx.printer
        .out(table(&["ITEM", "PROPERTY", "OLD", "NEW"], &rows));
    if !a.yes {
        ctx.printer
            .note("Must specify --yes to perform the upgrade.");
    } else {
        ctx.printer.note(format!(
            "Upgraded the spec. Now apply it: keelson update cluster {name} --yes, then keelson rolling-update cluster {name} --yes (masters first, then nodes)."
        ));
    }
    Ok(ExitCode::SUCCESS)
}
