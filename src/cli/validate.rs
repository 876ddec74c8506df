use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::duration::parse as parse_duration;
use super::output::{Format, table};
use super::{ClusterArg, Context};
use crate::ops::ClusterSpecs;
use crate::validate::{Report, Target};

#[derive(Debug, Subcommand)]
pub enum ValidateCommand {
    /// Check that the cluster's instances joined, its nodes are Ready and its system pods run
    Cluster(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    #[command(flatten)]
    kube: KubeArgs,
    /// Keep validating until the cluster is valid or DURATION passes (e.g. 10m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    wait: Option<Duration>,
    /// Consecutive successful validations required (with --wait)
    #[arg(long, default_value_t = 1, value_name = "N")]
    count: u32,
    /// Time between validations while waiting
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    interval: Duration,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

/// How keelson finds the cluster's Kubernetes API.
#[derive(Debug, Args, Clone)]
pub struct KubeArgs {
    /// The kubeconfig (else $KUBECONFIG, else ~/.kube/config); its context named after the cluster is used, else its current context
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

pub async fn run(cmd: ValidateCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let ValidateCommand::Cluster(a) = cmd;
    let name = ctx.cluster(&a.cluster)?;
    let store = ctx.open_store(false).await?;
    let specs = ClusterSpecs::read(&store, &name).await?;
    let aws = crate::aws::load(specs.cluster.region().as_deref()).await;
    let clients = crate::aws::kind::Clients::new(&aws);
    let kube = crate::kube::Client::from_kubeconfig(a.kube.kubeconfig.as_deref(), &name)?;
    let bundles: Vec<String> = crate::addons::desired(&specs.cluster)
        .into_keys()
        .map(str::to_string)
        .collect();
    let target = Target {
        cluster: &name,
        groups: &specs.groups,
        clients: &clients,
        kube: &kube,
        bundles: &bundles,
    };
    let on_attempt = |r: &Result<Report, crate::validate::ValidateError>, passes: u32| match r {
        Ok(r) if r.valid => ctx.printer.note(format!(
            "Validation passed ({passes} of {}); validating again in {:?}",
            a.count, a.interval
        )),
        Ok(r) => ctx.printer.note(format!(
            "Validation failed with {} error(s), the first: {}; retrying in {:?}",
            r.failures.len(),
            r.failures[0].message,
            a.interval
        )),
        Err(e) => ctx.printer.note(format!(
            "Validation failed: {e}; retrying in {:?}",
            a.interval
        )),
    };
    let report = target
        .until(a.wait, a.count, a.interval, &on_attempt)
        .await?;
    ctx.printer.out(render(&report, a.output));
    // Said even when the wait ran out before a second attempt (a slow first
    // check), so that a timed-out --wait always ends with the reason.
    if let (false, Some(wait)) = (report.valid, a.wait) {
        ctx.printer.note(format!(
            "Validation failed with {} error(s) after waiting {}",
            report.failures.len(),
            super::duration::show(wait)
        ));
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

pub fn render(r: &Report, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(r).expect("report serializes") + "\n",
        Format::Yaml => crate::spec::parse::to_yaml(r),
        Format::Table => {
            let mut s = format!("Validating cluster {}\n\nINSTANCE GROUPS\n", r.cluster);
            let groups: Vec<Vec<String>> = r
                .instance_groups
                .iter()
                .map(|g| {
                    vec![
                        g.name.clone(),
                        g.role.clone(),
                        g.machine_type.clone(),
                        g.min.to_string(),
                        g.max.to_string(),
                        g.subnets.join(","),
                    ]
                })
                .collect();
            s += &table(
                &["NAME", "ROLE", "MACHINETYPE", "MIN", "MAX", "SUBNETS"],
                &groups,
            );
            s += "\nNODE STATUS\n";
            let nodes: Vec<Vec<String>> = r
                .nodes
                .iter()
                .map(|n| {
                    vec![
                        n.name.clone(),
                        n.role.clone(),
                        if n.ready { "True" } else { "False" }.into(),
                    ]
                })
                .collect();
            s += &table(&["NAME", "ROLE", "READY"], &nodes);
            if r.valid {
                s += &format!("\nYour cluster {} is ready\n", r.cluster);
            } else {
                s += "\nVALIDATION ERRORS\n";
                let errors: Vec<Vec<String>> = r
                    .failures
                    .iter()
                    .map(|f| vec![f.kind.clone(), f.name.clone(), f.message.clone()])
                    .collect();
                s += &table(&["KIND", "NAME", "MESSAGE"], &errors);
                s += "\nValidation Failed\n";
            }
            s
        }
    }
}
