use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{ClusterArg, Context};

/// kops' `--admin` default lifetime.
pub const DEFAULT_ADMIN: Duration = Duration::from_secs(18 * 3600);

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write a cluster, user and context for kubectl (merged, other contexts kept)
    #[command(visible_alias = "kubecfg")]
    Kubeconfig(KubecfgArgs),
}

#[derive(Debug, Args)]
pub struct KubecfgArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    /// Lifetime of the admin client certificate (group system:masters); `--admin`
    /// alone is 18h, as kops
    #[arg(
        long,
        value_name = "DURATION",
        num_args = 0..=1,
        default_value = "18h",
        default_missing_value = "18h",
        value_parser = super::duration::parse
    )]
    admin: Duration,
    /// The file to merge into [default: $KUBECONFIG, else ~/.kube/config]
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<std::path::PathBuf>,
}

pub async fn run(cmd: ExportCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let ExportCommand::Kubeconfig(a) = cmd;
    let name = ctx.cluster(&a.cluster)?;
    let path = crate::ops::kubecfg::kubeconfig_path(a.kubeconfig.as_deref())?;
    let store = ctx.open_store(false).await?;
    let server = crate::ops::kubecfg::export(&store, &name, a.admin, &path).await?;
    ctx.printer.note(format!(
        "Kubeconfig written: context {name} -> {server} in {} (admin credentials valid for {})",
        path.display(),
        super::duration::show(a.admin)
    ));
    Ok(ExitCode::SUCCESS)
}
