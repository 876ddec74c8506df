use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::Context;
use super::output::{Format, json_list, table, yaml_documents};
use crate::ops::ClusterSpecs;
use crate::state::StateError;

/// `keelson get [WHAT]`: alone, it lists clusters (as `get clusters`).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GetTop {
    #[command(subcommand)]
    command: Option<GetCommand>,
    /// For the clusters' list
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// List clusters (all, or those named)
    #[command(visible_alias = "cluster")]
    Clusters(GetArgs),
    /// List a cluster's instance groups (all, or those named); the cluster comes from --name
    #[command(visible_alias = "ig", alias = "instancegroup")]
    Instancegroups(GetArgs),
    /// List a cluster's etcd backups, newest last (the names a restore takes)
    #[command(alias = "backup")]
    Backups(BackupsArgs),
    /// List a cluster's addon bundles: the version its spec wants, and the one
    /// the masters applied (read from the API when it answers)
    #[command(alias = "addon")]
    Addons(AddonsArgs),
    /// The cluster and its instance groups
    All(ClusterOutputArgs),
    /// The cluster's instances in EC2 (found by the ownership tags): group, role,
    /// state, and whether each runs its launch template's current revision
    #[command(alias = "instance")]
    Instances(ClusterOutputArgs),
    /// The names of the cluster's keys and secrets in the state store (never
    /// their values)
    #[command(alias = "secret")]
    Secrets(ClusterOutputArgs),
}

#[derive(Debug, Args)]
pub struct ClusterOutputArgs {
    #[command(flatten)]
    cluster: super::ClusterArg,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

/// One row of `get instances`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceRow {
    id: String,
    instance_group: String,
    role: String,
    /// The Auto Scaling lifecycle state (InService, Pending, ...), or Detached.
    state: String,
    /// Runs what its group's launch template launches now (keelson.dev/revision).
    launch_template_current: bool,
}

/// One row of `get secrets`: a name and where it is, never its value.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SecretRow {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    key: String,
}

#[derive(Debug, Args)]
pub struct AddonsArgs {
    #[command(flatten)]
    cluster: super::ClusterArg,
    #[command(flatten)]
    kube: super::validate::KubeArgs,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

/// One row of `get addons`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AddonRow {
    name: String,
    desired: Option<String>,
    applied: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackupsArgs {
    #[command(flatten)]
    cluster: super::ClusterArg,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

pub async fn run(top: GetTop, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cmd = top.command.unwrap_or(GetCommand::Clusters(GetArgs {
        names: Vec::new(),
        output: top.output,
    }));
    let store = ctx.open_store(false).await?;
    match cmd {
        GetCommand::All(a) => {
            let cluster = ctx.cluster(&a.cluster)?;
            let specs = ClusterSpecs::read(&store, &cluster).await?;
            ctx.printer.out(match a.output {
                Format::Table => {
                    let c = &specs.cluster;
                    format!(
                        "Cluster\n{}\nInstance Groups\n{}",
                        table(
                            &["NAME", "CLOUD", "ZONES"],
                            &[vec![
                                c.name().to_string(),
                                c.spec.cloud_provider.clone(),
                                c.zones().join(","),
                            ]]
                        ),
                        group_table(&specs, &specs.groups)
                    )
                }
                Format::Yaml => yaml_documents(&all_documents(&specs)?),
                Format::Json => json_list(&all_documents(&specs)?),
            });
        }
        GetCommand::Instances(a) => {
            let cluster = ctx.cluster(&a.cluster)?;
            let specs = ClusterSpecs::read(&store, &cluster).await?;
            let aws = crate::aws::load(specs.cluster.region().as_deref()).await;
            let clients = crate::aws::kind::Clients::new(&aws);
            let cloud =
                crate::validate::cloud::inventory(&clients, &cluster, &specs.groups).await?;
            let rows: Vec<InstanceRow> = cloud
                .iter()
                .flat_map(|g| {
                    g.instances.iter().map(move |i| InstanceRow {
                        id: i.id.clone(),
                        instance_group: g.name.clone(),
                        role: g.role.as_str().to_string(),
                        state: i.lifecycle.clone(),
                        launch_template_current: !g.needs_update(i),
                    })
                })
                .collect();
            if rows.is_empty() && a.output == Format::Table {
                ctx.printer.note(format!(
                    "Cluster {cluster} has no instances in EC2; `keelson update cluster {cluster} --yes` launches them"
                ));
                return Ok(ExitCode::SUCCESS);
            }
            ctx.printer.out(match a.output {
                Format::Table => {
                    let t: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| {
                            vec![
                                r.id.clone(),
                                r.instance_group.clone(),
                                r.role.clone(),
                                r.state.clone(),
                                if r.launch_template_current {
                                    "yes"
                                } else {
                                    "no"
                                }
                                .to_string(),
                            ]
                        })
                        .collect();
                    table(&["ID", "INSTANCEGROUP", "ROLE", "STATE", "CURRENT"], &t)
                }
                Format::Yaml => yaml_documents(&rows),
                Format::Json => json_list(&rows),
            });
        }
        GetCommand::Secrets(a) => {
            let cluster = ctx.cluster(&a.cluster)?;
            if !store.cluster_exists(&cluster).await? {
                return Err(StateError::ClusterNotFound {
                    cluster,
                    store: store.url().to_string(),
                }
                .into());
            }
            let prefix = format!("{cluster}/");
            let rows: Vec<SecretRow> = store
                .secret_keys(&cluster)
                .await?
                .into_iter()
                .map(|key| {
                    let rel = key.strip_prefix(&prefix).unwrap_or(&key).to_string();
                    let file = rel.rsplit('/').next().unwrap_or_default();
                    let (name, kind) = if rel.starts_with("pki/ssh/") {
                        ("admin".to_string(), "SSHPublicKey")
                    } else if rel.starts_with("pki/private/") {
                        (
                            file.rsplit_once('.').map_or(file, |(n, _)| n).to_string(),
                            "PrivateKey",
                        )
                    } else if rel.starts_with("pki/public/") {
                        (
                            file.rsplit_once('.').map_or(file, |(n, _)| n).to_string(),
                            "Certificate",
                        )
                    } else {
                        (
                            file.rsplit_once('.').map_or(file, |(n, _)| n).to_string(),
                            "Secret",
                        )
                    };
                    SecretRow {
                        name,
                        kind: kind.to_string(),
                        key: rel,
                    }
                })
                .collect();
            ctx.printer.out(match a.output {
                Format::Table => {
                    let t: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| vec![r.kind.clone(), r.name.clone(), r.key.clone()])
                        .collect();
                    table(&["TYPE", "NAME", "OBJECT"], &t)
                }
                Format::Yaml => yaml_documents(&rows),
                Format::Json => json_list(&rows),
            });
        }
        GetCommand::Clusters(a) => {
            let names = if a.names.is_empty() {
                let mut all = store.list_clusters().await?;
                if let Some(n) = &ctx.cluster_name {
                    all.retain(|c| c == n);
                }
                all
            } else {
                a.names.clone()
            };
            let mut clusters = Vec::new();
            for n in &names {
                let mut c = store.read_cluster(n).await?;
                // The completed view: what the last apply learned, such as the API endpoint.
                c.status = store.read_status(n).await?;
                clusters.push(c);
            }
            if clusters.is_empty() && a.output == Format::Table {
                ctx.printer
                    .note(format!("No clusters found in {}", store.url()));
                return Ok(ExitCode::SUCCESS);
            }
            ctx.printer.out(match a.output {
                Format::Table => {
                    let rows: Vec<Vec<String>> = clusters
                        .iter()
                        .map(|c| {
                            vec![
                                c.name().to_string(),
                                c.spec.cloud_provider.clone(),
                                c.zones().join(","),
                            ]
                        })
                        .collect();
                    table(&["NAME", "CLOUD", "ZONES"], &rows)
                }
                Format::Yaml => yaml_documents(&clusters),
                Format::Json => json_list(&clusters),
            });
        }
        GetCommand::Instancegroups(a) => {
            let cluster = ctx.cluster_flag()?;
            let specs = ClusterSpecs::read(&store, &cluster).await?;
            let mut groups = Vec::new();
            if a.names.is_empty() {
                groups = specs.groups.clone();
            } else {
                for n in &a.names {
                    let g = specs.group(n).ok_or_else(|| StateError::GroupNotFound {
                        kind: "instance group",
                        name: n.clone(),
                        cluster: cluster.clone(),
                    })?;
                    groups.push(g.clone());
                }
            }
            ctx.printer.out(match a.output {
                Format::Table => group_table(&specs, &groups),
                Format::Yaml => yaml_documents(&groups),
                Format::Json => json_list(&groups),
            });
        }
        GetCommand::Backups(a) => {
            let cluster = ctx.cluster(&a.cluster)?;
            if !store.cluster_exists(&cluster).await? {
                return Err(StateError::ClusterNotFound {
                    cluster,
                    store: store.url().to_string(),
                }
                .into());
            }
            let backups = crate::node::backup::list(&store, &cluster).await?;
            if backups.is_empty() && a.output == Format::Table {
                ctx.printer.note(format!(
                    "Cluster {cluster} has no etcd backups yet: the agent on the masters takes one every 15 minutes"
                ));
                return Ok(ExitCode::SUCCESS);
            }
            ctx.printer.out(match a.output {
                Format::Table => {
                    let rows: Vec<Vec<String>> = backups
                        .iter()
                        .map(|b| {
                            vec![
                                b.name.clone(),
                                crate::state::lock::rfc3339(
                                    std::time::UNIX_EPOCH
                                        + std::time::Duration::from_secs(b.taken_at),
                                ),
                                b.reason.clone(),
                            ]
                        })
                        .collect();
                    table(&["NAME", "TAKEN", "REASON"], &rows)
                }
                Format::Yaml => yaml_documents(&backups),
                Format::Json => json_list(&backups),
            });
        }
        GetCommand::Addons(a) => {
            let cluster = ctx.cluster(&a.cluster)?;
            let c = store.read_cluster(&cluster).await?;
            let desired = crate::addons::desired(&c);
            // The applied side: what the masters recorded on kube-system.
            let applied = async {
                let kube =
                    crate::kube::Client::from_kubeconfig(a.kube.kubeconfig.as_deref(), &cluster)
                        .map_err(|e| e.to_string())?;
                let ns = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    kube.get("/api/v1/namespaces/kube-system"),
                )
                .await
                .map_err(|_| "no answer in 10s".to_string())?
                .map_err(|e| e.to_string())?;
                Ok::<_, String>(crate::node::addons::applied_versions(&ns))
            }
            .await;
            let applied = match applied {
                Ok(v) => v,
                Err(e) => {
                    ctx.printer.note(format!(
                        "The cluster's API did not answer ({e}): applied versions unknown"
                    ));
                    Vec::new()
                }
            };
            let mut names: Vec<String> = desired.keys().map(|n| n.to_string()).collect();
            for (n, _) in &applied {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
            let rows: Vec<AddonRow> = names
                .into_iter()
                .map(|n| AddonRow {
                    desired: desired.get(n.as_str()).cloned(),
                    applied: applied
                        .iter()
                        .find(|(a, _)| *a == n)
                        .map(|(_, v)| v.split(' ').next().unwrap_or_default().to_string()),
                    name: n,
                })
                .collect();
            ctx.printer.out(match a.output {
                Format::Table => {
                    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                    let t: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| vec![r.name.clone(), dash(&r.desired), dash(&r.applied)])
                        .collect();
                    table(&["BUNDLE", "DESIRED", "APPLIED"], &t)
                }
                Format::Yaml => yaml_documents(&rows),
                Format::Json => json_list(&rows),
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The instance groups as kops lists them.
/// The cluster's spec, then its groups': what `get all -o yaml|json` prints.
fn all_documents(specs: &ClusterSpecs) -> serde_json::Result<Vec<serde_json::Value>> {
    std::iter::once(serde_json::to_value(&specs.cluster))
        .chain(specs.groups.iter().map(serde_json::to_value))
        .collect()
}

fn group_table(specs: &ClusterSpecs, groups: &[crate::spec::InstanceGroup]) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut zones: Vec<String> = g
                .spec
                .subnets
                .iter()
                .filter_map(|s| specs.cluster.subnet(s))
                .map(|s| s.zone.clone())
                .collect();
            zones.sort();
            zones.dedup();
            vec![
                g.name().to_string(),
                g.spec.role.as_str().to_string(),
                g.spec.machine_type.clone(),
                g.spec.min_size.to_string(),
                g.spec.max_size.to_string(),
                zones.join(","),
            ]
        })
        .collect();
    table(
        &["NAME", "ROLE", "MACHINETYPE", "MIN", "MAX", "ZONES"],
        &rows,
    )
}
