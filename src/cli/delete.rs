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
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    /// Delete (without it, only the list)
    #[arg(long)]
    yes: bool,
    /// How long to keep retrying resources AWS says are still in use (a
    /// dependency on its way out) before reporting them and exiting non-zero;
    /// rerunning continues. Like 30s, 10m, 1h, 1m30s
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    wait: std::time::Duration,
}

/// A duration as kops writes it: whole numbers with h, m or s units, in that order.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad =
        || format!("{s:?} is not a duration; use a number with a unit, like 30s, 10m, 1h or 1m30s");
    let mut total = 0u64;
    let mut number = String::new();
    let mut last_unit = 0;
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let (rank, secs) = match c {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        if rank <= last_unit {
            return Err(bad());
        }
        last_unit = rank;
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || last_unit == 0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(total))
}

pub async fn run(cmd: DeleteCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let DeleteCommand::Cluster(a) = cmd;
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
            // Progress as in update: a bar on a terminal, else a line per deletion.
            let progress = super::update::Progress::new(false, p.plan.changes.len(), ctx);
            let on_event = |e: Event| progress.event(e, ctx);
            let opts = crate::apply::Options {
                until: Some(std::time::Instant::now() + a.wait),
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

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_as_kops_writes_them() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        for bad in ["", "10", "m", "5x", "1s2m", "1m1m", "-1s", "1.5m"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("like 30s, 10m"), "{bad}: {e}");
        }
    }
}
