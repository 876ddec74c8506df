//! `toolbox dump`: what a cluster is made of in AWS, for a bug report or a
//! script. Reads only; carries no secret (no key, no user-data, no value of the
//! state store's secrets).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output::SpecFormat;
use super::{ClusterArg, Context};

#[derive(Debug, Subcommand)]
pub enum ToolboxCommand {
    /// The cluster's specs, its resources in AWS (kind, name, id) and its
    /// instances, as YAML or JSON (as kops toolbox dump); no secrets
    Dump(DumpArgs),
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    #[arg(short, long, value_enum, default_value = "yaml")]
    output: SpecFormat,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Dump {
    cluster: String,
    region: String,
    /// Every resource AWS holds with this cluster's `owned` tag.
    resources: Vec<Resource>,
    /// Shared resources (a user's VPC or subnets) that carry the cluster's tag.
    shared: Vec<Resource>,
    instance_groups: Vec<crate::validate::cloud::CloudGroup>,
}

#[derive(Debug, serde::Serialize)]
struct Resource {
    kind: String,
    name: String,
    id: Option<String>,
}

pub async fn run(cmd: ToolboxCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let ToolboxCommand::Dump(a) = cmd;
    let name = ctx.cluster(&a.cluster)?;
    let store = ctx.open_store(false).await?;
    let specs = crate::ops::ClusterSpecs::read(&store, &name).await?;
    // What delete would find: the same discovery, read only.
    let found = crate::ops::delete::make_plan(&store, &name).await?;
    let instance_groups =
        crate::validate::cloud::inventory(&found.clients, &name, &specs.groups).await?;
    let dump = Dump {
        cluster: name.clone(),
        region: specs.cluster.region().unwrap_or_default(),
        resources: found
            .plan
            .changes
            .iter()
            .map(|c| Resource {
                kind: c.kind.as_str().to_string(),
                name: c.name.clone(),
                id: c.id.clone(),
            })
            .collect(),
        shared: found
            .shared
            .iter()
            .map(|(id, kind)| Resource {
                kind: kind.as_str().to_string(),
                name: String::new(),
                id: Some(id.clone()),
            })
            .collect(),
        instance_groups,
    };
    ctx.printer.out(match a.output {
        SpecFormat::Yaml => crate::spec::parse::to_yaml(&dump),
        SpecFormat::Json => serde_json::to_string_pretty(&dump)? + "\n",
    });
    Ok(ExitCode::SUCCESS)
}
