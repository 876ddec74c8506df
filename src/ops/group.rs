//! `create instancegroup`: a new group with the role's defaults, validated with the
//! whole cluster, written under the lock.

use std::collections::BTreeMap;

use crate::spec::defaults::{new_group_spec, role_defaults};
use crate::spec::{API_VERSION, CLUSTER_LABEL, InstanceGroup, ObjectMeta, Role};
use crate::state::{StateStore, lock::with_lock};

use super::{ClusterSpecs, OpsError};

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub name: String,
    pub role: Role,
    pub subnets: Vec<String>,
    pub machine_type: Option<String>,
    pub min_size: Option<u32>,
    pub max_size: Option<u32>,
    pub image: Option<String>,
}

/// The group as it would be created, checked against the cluster.
pub fn build(
    specs: &ClusterSpecs,
    req: &NewGroup,
) -> Result<(InstanceGroup, ClusterSpecs), OpsError> {
    let cluster = specs.cluster.name();
    if specs.group(&req.name).is_some() {
        return Err(OpsError::GroupExists {
            cluster: cluster.to_string(),
            group: req.name.clone(),
        });
    }
    let (machine, disk, size) = role_defaults(req.role);
    let min = req
        .min_size
        .unwrap_or(req.max_size.map_or(size, |m| m.min(size)));
    let max = req.max_size.unwrap_or(min.max(size));
    let topology = specs.cluster.spec.topology.control_plane;
    let group = InstanceGroup {
        api_version: API_VERSION.to_string(),
        kind: "InstanceGroup".to_string(),
        metadata: ObjectMeta {
            name: req.name.clone(),
            labels: BTreeMap::from([(CLUSTER_LABEL.to_string(), cluster.to_string())]),
        },
        spec: new_group_spec(
            req.role,
            req.machine_type.as_deref().unwrap_or(machine),
            min,
            max,
            req.subnets.clone(),
            disk,
            req.image.as_deref(),
            topology,
        ),
    };
    let mut new = specs.clone();
    new.put_group(group.clone());
    new.validate()?;
    Ok((group, new))
}

/// Writes a new group under the lock, refusing if it appeared meanwhile.
pub async fn write(
    store: &StateStore,
    cluster: &str,
    group: &InstanceGroup,
) -> Result<(), OpsError> {
    with_lock(
        store,
        cluster,
        &format!("keelson create instancegroup {}", group.name()),
        async {
            if store
                .read_groups(cluster)
                .await?
                .iter()
                .any(|g| g.name() == group.name())
            {
                return Err(OpsError::GroupExists {
                    cluster: cluster.to_string(),
                    group: group.name().to_string(),
                });
            }
            store.write_group(cluster, group).await?;
            Ok(())
        },
    )
    .await
}

/// What `delete instancegroup` removes: the group's spec now, and (by the next
/// `update cluster --yes`, which no longer finds it in the specs) its Auto
/// Scaling group and launch template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub group: String,
    pub role: Role,
    /// The AWS names of the group's Auto Scaling group and launch template.
    pub resource_name: String,
}

/// Checks that `group` may go: it exists, and it is not the cluster's last
/// control-plane group. Pure; nothing is written.
pub fn removal(specs: &ClusterSpecs, group: &str) -> Result<Removal, OpsError> {
    let cluster = specs.cluster.name();
    let g = specs.group(group).ok_or_else(|| {
        OpsError::Usage(format!(
            "instance group {group:?} does not exist in cluster {cluster:?}; list them with `keelson get ig --name {cluster}`"
        ))
    })?;
    if g.spec.role == Role::Master
        && specs
            .groups
            .iter()
            .filter(|o| o.spec.role == Role::Master)
            .count()
            == 1
    {
        return Err(OpsError::Usage(format!(
            "instance group {group:?} is the last control-plane group of cluster {cluster:?}; the cluster cannot run without one: create another (`keelson create ig NAME --role master --subnet ZONE --name {cluster}`) first, or delete the whole cluster (`keelson delete cluster {cluster}`)"
        )));
    }
    let mut rest = specs.clone();
    rest.groups.retain(|o| o.name() != group);
    rest.validate()?;
    Ok(Removal {
        group: group.to_string(),
        role: g.spec.role,
        resource_name: crate::model::instances::group_resource_name(g, cluster),
    })
}

/// Removes the group's spec under the lock, checking again what `removal` checked.
pub async fn delete(store: &StateStore, cluster: &str, group: &str) -> Result<Removal, OpsError> {
    with_lock(
        store,
        cluster,
        &format!("keelson delete instancegroup {group} --yes"),
        async {
            let specs = ClusterSpecs::read(store, cluster).await?;
            let r = removal(&specs, group)?;
            store.delete_group(cluster, group).await?;
            Ok(r)
        },
    )
    .await
}
