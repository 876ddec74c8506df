use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{ClusterArg, Context};

#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Bring back a cluster whose masters were all lost from an etcd backup
    /// (`keelson get backups` lists them): the next master restores it
    Etcd(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    /// The backup's name (default: the newest)
    #[arg(long, value_name = "NAME")]
    backup: Option<String>,
    /// Write the request (without it, only show it)
    #[arg(short = 'y', long)]
    yes: bool,
}

pub async fn run(cmd: RestoreCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let RestoreCommand::Etcd(a) = cmd;
    let name = ctx.cluster(&a.cluster)?;
    let store = ctx.open_store(a.yes).await?;
    let r = crate::ops::restore::request(&store, &name, a.backup.as_deref(), a.yes).await?;
    ctx.printer.out(format!(
        "Restore cluster {name}'s etcd from backup {}.\n",
        r.backup
    ));
    if !a.yes {
        ctx.printer.note(
            "Must specify --yes to request the restore. Only for a cluster whose masters are all lost: the restored cluster has the backup's state, and what changed since is gone.",
        );
    } else {
        ctx.printer.note(format!(
            "Requested. Masters that boot now restore it: if old ones still run, terminate them (their groups replace them), then watch `keelson validate cluster {name} --wait 20m`."
        ));
    }
    Ok(ExitCode::SUCCESS)
}
