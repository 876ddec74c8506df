use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output::table;
use super::{ClusterArg, Context};
use crate::apply::{Event, apply};
use crate::ops::delete::{delete_state, make_plan, untag_shared};
use crate::state::lock::with_lock;

#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// List what a cluster owns in AWS; with --yes delete it all, then its state
    Cluster(DeleteArgs),
    /// Remove an instance group from a cluster's specs (with --yes); the next
    /// `update cluster --yes` removes its Auto Scaling group and launch template
    #[command(visible_alias = "ig", alias = "instancegroups")]
    Instancegroup(DeleteGroupArgs),
}

#[derive(Debug, Args)]
pub struct DeleteGroupArgs {
    /// The group's name; the cluster comes from --name
    #[arg(value_name = "GROUP")]
    group: String,
    /// Delete (without it, only what would go)
    #[arg(short = 'y', long)]
    yes: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    /// Delete (without it, only the list)
    #[arg(short = 'y', long)]
    yes: bool,
    /// How long the deletion may take: resources AWS says are still in use (a
    /// dependency on its way out) are retried, and those going away waited for,
    /// until then; what is left is reported and the exit is non-zero; rerunning
    /// continues. Like 30s, 10m, 1h, 1m30s
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = super::duration::parse)]
    wait: std::time::Duration,
}

pub async fn run(cmd: DeleteCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let a = match cmd {
        DeleteCommand::Cluster(a) => a,
        DeleteCommand::Instancegroup(a) => return delete_group(a, ctx).await,
    };
    let name = ctx.cluster(&a.cluster)?;
    let store = ctx.open_store(a.yes).await?;
    if !a.yes {
        let p = make_plan(&store, &name).await?;
        print_list(&p.plan, &p.shared, ctx);
        ctx.printer.note("Must specify --yes to delete the cluster");
        return Ok(ExitCode::SUCCESS);
    }
    with_lock(
        &store,
        &name,
        &format!("keelson delete cluster {name} --yes"),
        async {
            let p = make_plan(&store, &name).await?;
            print_list(&p.plan, &p.shared, ctx);
            // Terraform's resources are terraform's to delete (docs/terraform.md).
            let terraform = crate::ops::terraform::is_terraform(&store, &name).await?;
            crate::ops::terraform::refuse_delete(&name, terraform, p.plan.changes.len())
                .map_err(crate::ops::OpsError::from)?;
            // Progress as in update: a bar on a terminal, else a line per deletion.
            let progress = super::update::Progress::new(false, p.plan.changes.len(), ctx);
            let on_event = |e: Event| progress.event(e, ctx);
            let opts = crate::apply::Options {
                until: Some(std::time::Instant::now() + a.wait),
                ..Default::default()
            };
            let result = apply(&p.plan, &p.clients, opts, &on_event).await;
            progress.finish();
            result.map_err(|e| {
                crate::ops::OpsError::from(crate::ops::update::UpdateError::from(e))
            })?;
            untag_shared(&p, &name).await?;
            let n = delete_state(&store, &name).await?;
            ctx.printer.note(format!(
                "Deleted cluster {name}: {} resources in AWS and {n} objects in {}.",
                p.plan.changes.len(),
                store.url()
            ));
            Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
        },
    )
    .await
}

fn print_list(plan: &crate::plan::Plan, shared: &[(String, crate::model::Kind)], ctx: &Context) {
    let rows: Vec<Vec<String>> = plan
        .changes
        .iter()
        .map(|c| {
            vec![
                c.kind.as_str().to_string(),
                c.name.clone(),
                c.id.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if rows.is_empty() {
        ctx.printer.note("Nothing of this cluster exists in AWS.");
    } else {
        ctx.printer.out(table(&["KIND", "NAME", "ID"], &rows));
    }
    for (id, kind) in shared {
        ctx.printer.note(format!(
            "shared {} {id} is kept; only its cluster tag is removed",
            kind.as_str()
        ));
    }
}

async fn delete_group(a: DeleteGroupArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cluster = ctx.cluster_flag()?;
    let store = ctx.open_store(a.yes).await?;
    let removal = if a.yes {
        crate::ops::group::delete(&store, &cluster, &a.group).await?
    } else {
        let specs = crate::ops::ClusterSpecs::read(&store, &cluster).await?;
        crate::ops::group::removal(&specs, &a.group)?
    };
    let rows = vec![
        vec![
            "InstanceGroup".to_string(),
            removal.group.clone(),
            "the spec, from the state store".to_string(),
        ],
        vec![
            "autoscaling_group".to_string(),
            removal.resource_name.clone(),
            "and its instances, by the next update".to_string(),
        ],
        vec![
            "launch_template".to_string(),
            removal.resource_name.clone(),
            "by the next update".to_string(),
        ],
    ];
    ctx.printer.out(table(&["KIND", "NAME", "REMOVED"], &rows));
    if !a.yes {
        ctx.printer
            .note("Must specify --yes to delete the instance group");
        return Ok(ExitCode::SUCCESS);
    }
    ctx.printer.note(format!(
        "InstanceGroup {} deleted from cluster {cluster}. Remove its instances with: keelson update cluster {cluster} --yes",
        removal.group
    ));
    Ok(ExitCode::SUCCESS)
}
