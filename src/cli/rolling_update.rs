use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{ArgAction, Args, Subcommand};

use super::duration::parse as parse_duration;
use super::output::{Format, table};
use super::validate::KubeArgs;
use super::{ClusterArg, Context};
use crate::ops::ClusterSpecs;
use crate::rolling::{Options, Roller, rows, selected};
use crate::spec::Role;
use crate::state::lock::with_lock;

#[derive(Debug, Subcommand)]
pub enum RollingUpdateCommand {
    /// Replace out-of-date instances group by group: preview, then --yes
    ///
    /// Each group's spec.rollingUpdate (default: the cluster's) sets how many go at
    /// once: maxSurge (default 1) are detached and replaced first; with maxSurge 0,
    /// maxUnavailable (default 1) are drained and replaced together. Masters go one
    /// at a time. Out-of-date nodes are tainted
    /// kops.k8s.io/scheduled-for-update:PreferNoSchedule first.
    Cluster(RollingArgs),
}

#[derive(Debug, Args)]
pub struct RollingArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    #[command(flatten)]
    kube: KubeArgs,
    /// Replace the instances (without it, only the table)
    #[arg(short = 'y', long)]
    yes: bool,
    /// Replace every instance, up to date or not
    #[arg(long)]
    force: bool,
    /// Use no Kubernetes API: no drain, no validation; replace instances and wait for them
    #[arg(long)]
    cloudonly: bool,
    /// Only these instance groups
    #[arg(long = "instance-group", value_delimiter = ',', value_name = "GROUP")]
    instance_groups: Vec<String>,
    /// Only groups of these roles
    #[arg(
        long = "instance-group-roles",
        value_delimiter = ',',
        value_enum,
        ignore_case = true,
        value_name = "ROLE"
    )]
    roles: Vec<Role>,
    /// Pause after each bastion replaced
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    bastion_interval: Duration,
    /// Pause after each control-plane instance replaced
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    master_interval: Duration,
    /// Pause after each batch of nodes replaced
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    node_interval: Duration,
    /// Stop when the cluster does not validate between steps
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    fail_on_validate_error: bool,
    /// Give up draining a node after this long (PodDisruptionBudgets may refuse evictions)
    #[arg(long, default_value = "15m", value_parser = parse_duration, value_name = "DURATION")]
    drain_timeout: Duration,
    /// Give up waiting for replacements to join, or for the cluster to validate, after this long
    #[arg(long, default_value = "15m", value_parser = parse_duration, value_name = "DURATION")]
    validation_timeout: Duration,
    /// Consecutive successful validations required between steps
    #[arg(long, default_value_t = 2, value_name = "N")]
    validate_count: u32,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

pub async fn run(cmd: RollingUpdateCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let RollingUpdateCommand::Cluster(a) = cmd;
    let name = ctx.cluster(&a.cluster)?;
    let store = ctx.open_store(a.yes).await?;
    let specs = ClusterSpecs::read(&store, &name).await?;
    for g in &a.instance_groups {
        if specs.group(g).is_none() {
            let known: Vec<&str> = specs.groups.iter().map(|g| g.name()).collect();
            bail!(
                "--instance-group: cluster {name} has no instance group {g:?}; it has {}",
                known.join(", ")
            );
        }
    }
    let options = Options {
        force: a.force,
        cloud_only: a.cloudonly,
        groups: a.instance_groups.clone(),
        roles: a.roles.clone(),
        bastion_interval: a.bastion_interval,
        master_interval: a.master_interval,
        node_interval: a.node_interval,
        fail_on_validate_error: a.fail_on_validate_error,
        drain_timeout: a.drain_timeout,
        validation_timeout: a.validation_timeout,
        validate_count: a.validate_count,
    };
    let aws = crate::aws::load(specs.cluster.region().as_deref()).await;
    let clients = crate::aws::kind::Clients::new(&aws);
    let kube = if a.cloudonly {
        None
    } else {
        Some(crate::kube::Client::from_kubeconfig(
            a.kube.kubeconfig.as_deref(),
            &name,
        )?)
    };
    let picked: Vec<_> = selected(&specs.groups, &options)
        .into_iter()
        .cloned()
        .collect();
    let cloud = crate::validate::cloud::inventory(&clients, &name, &picked).await?;
    let nodes = match &kube {
        Some(k) => k.nodes().await?,
        None => vec![],
    };
    let table_rows = rows(&cloud, &nodes, a.force);
    ctx.printer.out(render(&table_rows, a.output));
    if table_rows.iter().all(|r| r.need_update == 0) {
        ctx.printer.note("No rolling-update required.");
        return Ok(ExitCode::SUCCESS);
    }
    if !a.yes {
        ctx.printer.note("Must specify --yes to rolling-update.");
        return Ok(ExitCode::SUCCESS);
    }
    let progress = |line: String| ctx.printer.note(line);
    let roller = Roller {
        cluster: &name,
        groups: &specs.groups,
        defaults: specs.cluster.spec.rolling_update.as_ref(),
        clients: &clients,
        store: &store,
        kube: kube.as_ref(),
        options: &options,
        progress: &progress,
    };
    let replaced = with_lock(
        &store,
        &name,
        &format!("keelson rolling-update cluster {name} --yes"),
        async { roller.run().await.map_err(anyhow::Error::from) },
    )
    .await?;
    ctx.printer.note(format!(
        "Rolling update of {name} complete: {replaced} instance(s) replaced."
    ));
    Ok(ExitCode::SUCCESS)
}

fn render(rows: &[crate::rolling::Row], format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(rows).expect("rows serialize") + "\n",
        Format::Yaml => crate::spec::parse::to_yaml(&rows),
        Format::Table => table(
            &[
                "NAME",
                "STATUS",
                "NEEDUPDATE",
                "READY",
                "MIN",
                "TARGET",
                "MAX",
                "NODES",
            ],
            &rows
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.status.clone(),
                        r.need_update.to_string(),
                        r.ready.to_string(),
                        r.min.to_string(),
                        r.target.to_string(),
                        r.max.to_string(),
                        r.nodes.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}
