//! `update cluster`: specs -> model -> discover -> plan, and with --yes, apply.

use crate::aws::discover::{discover, scope};
use crate::model::{self, ModelError};
use crate::plan::{Plan, PlanError, plan, specs_fingerprint};
use crate::state::StateStore;
use sha2::Digest;

use super::node_binary::NodeBinary;
use super::{ClusterSpecs, OpsError};

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Apply(#[from] crate::apply::ApplyError),
    #[error(
        "the saved plan is stale: {0}; make a new one with `keelson update cluster NAME --out FILE`"
    )]
    Stale(String),
    #[error("the saved plan is for cluster {found}, not {wanted}")]
    WrongCluster { found: String, wanted: String },
    #[error(transparent)]
    Quota(#[from] crate::plan::quota::QuotaError),
}

/// A fresh plan, with the EC2 client that made it (to apply with).
pub struct Planned {
    pub cluster: crate::spec::Cluster,
    pub plan: Plan,
    pub clients: crate::aws::kind::Clients,
    /// What the apply writes to the state store before it touches AWS.
    pub state: StateChanges,
    /// What the plan consumes of the account's quotas (preview lines).
    pub quotas: Vec<crate::plan::quota::Consumption>,
    /// Preflight notes (a quota that could not be read).
    pub warnings: Vec<String>,
}

/// The state-store side of an update: the cluster's PKI when it has none (made by
/// an older keelson), and the addon bundles with their channel when they changed.
/// Written before the cloud apply, so that instances find them at boot.
#[derive(Debug, Default)]
pub struct StateChanges {
    pub generate_pki: bool,
    /// (path under `NAME/addons/`, content), the channel last.
    pub addons: Vec<(String, String)>,
    /// The node agent, when the store does not hold these bytes yet.
    pub agent: Option<NodeBinary>,
    /// A cluster whose PKI predates encryption at rest gets its key.
    pub encryption_config: bool,
    /// The shared join token of older keelsons goes: nodes attest with AWS.
    pub remove_legacy_token: bool,
    /// Each addon bundle's change against the stored one, for the preview.
    pub addon_changes: Vec<crate::addons::BundleChange>,
}

impl StateChanges {
    pub fn is_empty(&self) -> bool {
        !self.generate_pki
            && self.addons.is_empty()
            && self.agent.is_none()
            && !self.encryption_config
            && !self.remove_legacy_token
    }

    /// One line per object, `+ KEY` written or `- KEY` removed, for the preview.
    /// Never the content: PKI is secret.
    pub fn describe(&self, cluster: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.generate_pki {
            out.push(format!(
                "+ {} and {} (new CAs, service-account key, the key Secrets are encrypted with)",
                crate::state::layout::pki_public(cluster, "*"),
                crate::state::layout::pki_private(cluster, "*")
            ));
        }
        if self.encryption_config {
            out.push(format!(
                "+ {} (the key Secrets are encrypted with in etcd)",
                crate::state::layout::encryption_config(cluster)
            ));
        }
        if let Some(b) = &self.agent {
            out.push(format!(
                "+ {} (the node agent: {}, {:.1} MB)",
                b.key(cluster),
                b.path.display(),
                b.len as f64 / 1e6
            ));
        }
        for (path, _) in &self.addons {
            out.push(format!("+ {}", crate::state::layout::addon(cluster, path)));
        }
        if self.remove_legacy_token {
            out.push(format!(
                "- {} (no longer used: nodes prove who they are with AWS)",
                crate::state::layout::legacy_bootstrap_token(cluster)
            ));
        }
        out
    }
}

/// Compares the rendered addons with the stored channel (its hashes cover every
/// manifest); PKI is generated when the cluster has none. Pure: the plan's state
/// reads bring both.
pub fn state_changes(
    cluster: &crate::spec::Cluster,
    has_pki: bool,
    stored_channel: Option<&[u8]>,
) -> Result<StateChanges, OpsError> {
    let bundles = crate::addons::bootstrap_bundles(cluster)?;
    let channel = crate::addons::channel(&bundles);
    let addons = if stored_channel == Some(channel.as_bytes()) {
        Vec::new()
    } else {
        let mut v: Vec<(String, String)> =
            bundles.into_iter().map(|b| (b.path, b.manifest)).collect();
        v.push((crate::addons::CHANNEL.to_string(), channel));
        v
    };
    Ok(StateChanges {
        generate_pki: !has_pki,
        addons,
        agent: None,
        encryption_config: false,
        remove_legacy_token: false,
        addon_changes: Vec::new(),
    })
}

/// Writes the state changes; run under the cluster's lock.
pub async fn write_state_changes(
    store: &StateStore,
    cluster: &str,
    changes: &StateChanges,
) -> Result<(), OpsError> {
    if changes.generate_pki {
        let pki = crate::pki::ClusterPki::generate()?;
        if let Some(key) = store.write_pki(cluster, &pki).await?.into_iter().next() {
            return Err(OpsError::PkiExists {
                cluster: cluster.to_string(),
                key,
                store: store.url().to_string(),
            });
        }
    }
    if changes.encryption_config {
        let key = crate::state::layout::encryption_config(cluster);
        let config = crate::pki::encryption_config();
        // Never over a key: Secrets written with it would not read again.
        store
            .backend()
            .put_if_absent(&key, config.expose().as_bytes().to_vec())
            .await?;
    }
    if let Some(b) = &changes.agent {
        let bytes = std::fs::read(&b.path).map_err(|e| {
            crate::ops::node_binary::NodeBinaryError::Unreadable {
                path: b.path.display().to_string(),
                message: e.to_string(),
            }
        })?;
        // The bytes the plan hashed, or nothing: the user-data names that digest.
        let sha = crate::plan::hex(&sha2::Sha256::digest(&bytes));
        if sha != b.sha256 {
            return Err(crate::ops::node_binary::NodeBinaryError::Unreadable {
                path: b.path.display().to_string(),
                message: format!("it changed since the plan was made (SHA-256 {sha}, the plan has {}); plan again", b.sha256),
            }
            .into());
        }
        store.backend().put(&b.key(cluster), bytes).await?;
    }
    for (path, content) in &changes.addons {
        store
            .write_addon(cluster, path, content.clone().into_bytes())
            .await?;
    }
    if changes.remove_legacy_token {
        store
            .backend()
            .delete(&crate::state::layout::legacy_bootstrap_token(cluster))
            .await?;
    }
    Ok(())
}

/// Reads and validates the specs, builds the model, discovers and plans. Reads only.
pub async fn make_plan(
    store: &StateStore,
    cluster: &str,
    node_binary: Option<&std::path::Path>,
) -> Result<Planned, OpsError> {
    let stored = store.read_for_plan(cluster).await?;
    let (has_pki, stored_channel) = (stored.has_pki, stored.addon_channel);
    let agent_keys = stored.agent_keys;
    let (has_encryption_config, has_legacy_token) =
        (stored.has_encryption_config, stored.has_legacy_token);
    let (specs, ssh_key) = (
        ClusterSpecs {
            cluster: stored.cluster,
            groups: stored.groups,
        },
        stored.ssh_key,
    );
    specs.validate()?;
    // Before anything is made from it: a spec written past `upgrade cluster`'s
    // rules (by edit, replace or by hand in the store) is refused here too.
    crate::ops::upgrade::check_applied(
        stored.status.as_ref(),
        &specs.cluster.spec.kubernetes_version,
    )?;
    tracing::debug!(
        "read the specs of {cluster}: {} instance groups, PKI {}, addon channel {}",
        specs.groups.len(),
        if has_pki { "present" } else { "missing" },
        if stored_channel.is_some() {
            "present"
        } else {
            "missing"
        }
    );
    let t = std::time::Instant::now();
    let binary = crate::ops::node_binary::locate(node_binary, &specs.groups)?;
    tracing::debug!(
        "the node agent {} ({:.1} MB) hashed in {}",
        binary.path.display(),
        binary.len as f64 / 1e6,
        crate::apply::critical::human(t.elapsed())
    );
    let region = specs.cluster.region().unwrap_or_default();
    let aws = crate::aws::load(Some(&region)).await;
    let clients = crate::aws::kind::Clients::new(&aws);
    let wanted: Vec<(String, String)> = specs
        .groups
        .iter()
        .map(|g| (g.spec.image.clone(), g.name().to_string()))
        .collect();
    let images = crate::aws::images::resolve(&clients.ec2, &wanted, &region).await?;
    let desired = model::build(&model::Inputs {
        cluster: &specs.cluster,
        groups: &specs.groups,
        ssh_key: ssh_key.as_ref(),
        images: &images,
        node_agent: &model::instances::NodeAgent {
            sha256: binary.sha256.clone(),
        },
    })
    .map_err(UpdateError::from)?;
    tracing::debug!("the model wants {} resources", desired.resources.len());
    // No addon channel yet (`--yes` writes it): the cluster was never applied,
    // and a plan that adds Elastic IPs will want the region's count for its
    // quota (Scope::region_addresses).
    let scope = crate::aws::kind::Scope {
        region_addresses: stored_channel.is_none(),
        ..scope(&desired)
    };
    let actual = discover(&clients, scope).await?;
    let plan = plan(
        &desired,
        &actual,
        &specs_fingerprint(&specs.cluster, &specs.groups),
    )
    .map_err(UpdateError::from)?;
    tracing::debug!(
        "planned {} to add, {} to change, {} to destroy",
        plan.summary.add,
        plan.summary.change,
        plan.summary.destroy
    );
    // Before anything is written, and only when launch templates are made (or
    // a group's mixed instances policy, whose types are checked alike).
    let mut vcpus = std::collections::BTreeMap::new();
    if plan.changes.iter().any(|c| {
        c.action != crate::plan::Action::Delete
            && (c.kind == model::Kind::LaunchTemplate
                || matches!(
                    c.desired.as_ref().map(|d| &d.resource),
                    Some(model::Resource::AutoScalingGroup(g)) if g.mixed_instances.is_some()
                ))
    }) {
        vcpus = crate::ops::create::check_machine_types(
            &clients.ec2,
            &specs.cluster,
            &specs.groups,
            &images,
        )
        .await?
        .vcpus;
        let sgs: std::collections::BTreeSet<String> = specs
            .groups
            .iter()
            .flat_map(|g| g.spec.additional_security_groups.iter().cloned())
            .collect();
        if !sgs.is_empty() {
            let found = crate::aws::security_group::vpcs_of(&clients.ec2, &sgs).await?;
            crate::spec::aws_fields::check_security_groups(
                &specs.groups,
                &found,
                cluster_vpc(&desired, &actual).as_deref(),
            )?;
        }
    }
    let (quotas, warnings) = check_quotas(&aws, &clients, &specs, &desired, &plan, &vcpus).await?;
    let mut state = state_changes(&specs.cluster, has_pki, stored_channel.as_deref())?;
    state.encryption_config = has_pki && !has_encryption_config;
    state.remove_legacy_token = has_legacy_token;
    if !state.addons.is_empty() {
        state.addon_changes =
            addon_preview(store, &specs.cluster, stored_channel.as_deref()).await?;
    }
    if !agent_keys.contains(&binary.key(specs.cluster.name())) {
        state.agent = Some(binary);
    }
    Ok(Planned {
        cluster: specs.cluster,
        plan,
        clients,
        state,
        quotas,
        warnings,
    })
}

/// The cluster's VPC id: the shared one, or keelson's as discovered (None
/// before it is made).
fn cluster_vpc(desired: &model::Desired, actual: &crate::plan::Actual) -> Option<String> {
    let (a, d) = desired
        .resources
        .iter()
        .find(|(a, _)| a.kind == model::Kind::Vpc)?;
    match &d.lifecycle {
        model::Lifecycle::Shared(id) if !id.is_empty() => Some(id.clone()),
        _ => actual.resources.get(a).map(|r| r.id.clone()),
    }
}

/// What the plan adds of quota-limited resources, against the account's quotas
/// and usage; a shortfall is refused here, before anything is written. A plan
/// that adds none of them makes no request.
async fn check_quotas(
    aws: &aws_config::SdkConfig,
    clients: &crate::aws::kind::Clients,
    specs: &ClusterSpecs,
    desired: &model::Desired,
    plan: &Plan,
    vcpus: &std::collections::BTreeMap<String, u64>,
) -> Result<(Vec<crate::plan::quota::Consumption>, Vec<String>), OpsError> {
    use crate::plan::quota;
    let surge = specs
        .groups
        .iter()
        .map(|g| {
            let ru = crate::spec::RollingUpdate::effective(
                g.spec.rolling_update.as_ref(),
                specs.cluster.spec.rolling_update.as_ref(),
            );
            let surge =
                crate::rolling::budget(g.name(), g.spec.role, &ru, g.spec.max_size as usize)
                    .map(|b| b.surge as u64)
                    .unwrap_or(0);
            (
                model::instances::group_resource_name(g, specs.cluster.name()),
                surge,
            )
        })
        .collect();
    let needs = quota::needs(plan, desired, &surge, vcpus);
    // KEELSON_QUOTAS=off skips this check (docs/preflight.md): for an account
    // whose quotas keelson cannot judge, such as the test emulator's, where one
    // account holds every test's clusters.
    let off = std::env::var("KEELSON_QUOTAS").is_ok_and(|v| v == "off");
    if needs.is_empty() || off {
        return Ok((Vec::new(), Vec::new()));
    }
    let sq = crate::aws::quotas::client(aws);
    let asg = crate::aws::quotas::autoscaling_client(aws);
    let read = crate::aws::quotas::read(
        &clients.ec2,
        &sq,
        &asg,
        &needs,
        vcpus,
        clients.region_addresses.get().copied(),
    )
    .await?;
    let consumption = quota::check(&needs, &read.readings, &read.vcpus, &plan.region)
        .map_err(UpdateError::from)?;
    Ok((consumption, read.warnings))
}

/// The addon preview; reads the stored manifests of changed bundles only.
async fn addon_preview(
    store: &StateStore,
    cluster: &crate::spec::Cluster,
    stored_channel: Option<&[u8]>,
) -> Result<Vec<crate::addons::BundleChange>, OpsError> {
    let mut stored = std::collections::BTreeMap::new();
    for path in crate::addons::paths_to_compare(cluster, stored_channel) {
        let key = crate::state::layout::addon(cluster.name(), &path);
        if let Some(bytes) = store.backend().get(&key).await? {
            stored.insert(path, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok(crate::addons::preview(cluster, stored_channel, &stored)?)
}

/// A saved plan applies only to the world it was made from.
pub fn check_saved(saved: &Plan, fresh: &Plan) -> Result<(), UpdateError> {
    if saved.cluster != fresh.cluster {
        return Err(UpdateError::WrongCluster {
            found: saved.cluster.clone(),
            wanted: fresh.cluster.clone(),
        });
    }
    if saved.format_version != fresh.format_version {
        return Err(UpdateError::Stale(format!(
            "it has format version {}, this keelson writes {}",
            saved.format_version, fresh.format_version
        )));
    }
    // Updates start from the discovered resource, which older saved plans lack.
    if saved
        .changes
        .iter()
        .any(|c| c.action != crate::plan::Action::Create && c.existing.is_none())
    {
        return Err(UpdateError::Stale(
            "it was made by an older keelson, without the discovered resources".into(),
        ));
    }
    if saved.specs_fingerprint != fresh.specs_fingerprint {
        return Err(UpdateError::Stale(
            "the cluster's specs changed since it was made".into(),
        ));
    }
    if saved.cloud_fingerprint != fresh.cloud_fingerprint {
        return Err(UpdateError::Stale(
            "the resources in AWS changed since it was made".into(),
        ));
    }
    Ok(())
}

/// What [`record_status`] found: the API endpoint, and whether this is the first
/// time one is known (the first apply, which exports a kubeconfig).
pub struct Recorded {
    pub endpoint: Option<String>,
    pub first: bool,
}

/// After an apply: where the API answers, recorded in `NAME/status` for `get
/// cluster`. With DNS, `api.NAME`; with gossip, the API load balancer's hostname.
pub async fn record_status(
    store: &StateStore,
    cluster: &crate::spec::Cluster,
    clients: &crate::aws::kind::Clients,
) -> Result<Recorded, OpsError> {
    let endpoint = if let Some(name) = crate::model::load_balancers::api_dns_name(cluster) {
        Some(name)
    } else {
        let name = crate::model::load_balancers::api_name(cluster.name());
        match clients
            .elbv2
            .describe_load_balancers()
            .names(&name)
            .send()
            .await
        {
            Ok(out) => out
                .load_balancers()
                .first()
                .and_then(|l| l.dns_name())
                .map(str::to_string),
            Err(e) => return Err(crate::aws::call_error("DescribeLoadBalancers", &e).into()),
        }
    };
    let status = crate::spec::ClusterStatus {
        api_endpoint: endpoint.clone(),
        kubernetes_version: Some(cluster.spec.kubernetes_version.clone()),
    };
    let before = store.read_status(cluster.name()).await?;
    if before.as_ref() != Some(&status) {
        store.write_status(cluster.name(), &status).await?;
    }
    Ok(Recorded {
        first: before.and_then(|s| s.api_endpoint).is_none(),
        endpoint,
    })
}
