//! `delete cluster`: everything this cluster owns, in reverse dependency order;
//! shared resources lose only the cluster's tag; the state-store prefix last.

use crate::aws::discover::{discover, scope};
use crate::aws::kind::Scope;
use crate::model::{self, Desired, Kind};
use crate::plan::{Plan, plan, specs_fingerprint};
use crate::state::StateStore;

use super::update::UpdateError;
use super::{ClusterSpecs, OpsError};

pub struct Planned {
    pub plan: Plan,
    /// Shared resources (id, kind) that carry the cluster's `shared` tag.
    pub shared: Vec<(String, Kind)>,
    pub clients: crate::aws::kind::Clients,
}

/// What would be deleted. Reads only.
pub async fn make_plan(store: &StateStore, cluster: &str) -> Result<Planned, OpsError> {
    let stored = store.read_for_plan(cluster).await?;
    let (specs, ssh_key) = (
        ClusterSpecs {
            cluster: stored.cluster,
            groups: stored.groups,
        },
        stored.ssh_key,
    );
    let region = specs.cluster.region().unwrap_or_default();
    let aws = crate::aws::load(Some(&region)).await;
    let clients = crate::aws::kind::Clients::new(&aws);
    // The model tells discovery which shared resources to look at; images do not
    // matter for a delete, so each stands for itself.
    let images = specs
        .groups
        .iter()
        .map(|g| (g.spec.image.clone(), g.spec.image.clone()))
        .collect();
    let modelled = model::build(&model::Inputs {
        cluster: &specs.cluster,
        groups: &specs.groups,
        ssh_key: ssh_key.as_ref(),
        images: &images,
        // Nor does the agent: a delete compares no user-data.
        node_agent: &model::instances::NodeAgent {
            sha256: String::new(),
        },
    })
    .map_err(UpdateError::from)?;
    let actual = discover(
        &clients,
        Scope {
            deleting: true,
            ..scope(&modelled)
        },
    )
    .await?;
    let shared = actual
        .resources
        .values()
        .filter(|r| !r.owned)
        .map(|r| (r.id.clone(), r.resource.kind()))
        .collect();
    // Nothing desired: every owned resource is planned for deletion, nothing else.
    let nothing = Desired {
        cluster: modelled.cluster.clone(),
        region: modelled.region.clone(),
        resources: Default::default(),
    };
    let plan = plan(
        &nothing,
        &actual,
        &specs_fingerprint(&specs.cluster, &specs.groups),
    )
    .map_err(UpdateError::from)?;
    Ok(Planned {
        plan,
        shared,
        clients,
    })
}

/// Removes the cluster's `shared` tag from the resources it borrowed.
pub async fn untag_shared(p: &Planned, cluster: &str) -> Result<(), OpsError> {
    let ids: Vec<String> = p
        .shared
        .iter()
        .filter(|(_, k)| matches!(k, Kind::Vpc | Kind::Subnet | Kind::InternetGateway))
        .map(|(id, _)| id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    p.clients
        .ec2
        .delete_tags()
        .set_resources(Some(ids))
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(model::cluster_tag(cluster))
                .build(),
        )
        .send()
        .await
        .map_err(|e| crate::aws::call_error("DeleteTags", &e))?;
    Ok(())
}

/// Deletes the cluster's objects from the state store, all but the lock (which
/// its holder releases last).
pub async fn delete_state(store: &StateStore, cluster: &str) -> Result<usize, OpsError> {
    let lock = crate::state::layout::lock(cluster);
    let keys = store.list_cluster_keys(cluster).await?;
    // The config first: from then on the cluster no longer exists, even if a
    // later delete fails.
    let config = crate::state::layout::config(cluster);
    let mut n = 0;
    for key in std::iter::once(&config).chain(keys.iter().filter(|k| **k != config && **k != lock))
    {
        store.backend().delete(key).await?;
        n += 1;
    }
    Ok(n)
}
