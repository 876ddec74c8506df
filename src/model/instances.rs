//! Instances: a launch template and an ASG per instance group (kops' names:
//! `master-ZONE.masters.NAME`, `nodes-ZONE.NAME`, `bastions.NAME`).

use sha2::{Digest, Sha256};

use super::*;
use crate::spec::{Cluster, InstanceGroup, Role};

pub const NODE_BOOTSTRAP: &str = include_str!("../../templates/bootstrap/node.sh.j2");
/// The instance tag rolling-update compares with the template's revision.
pub const REVISION_TAG: &str = "keelson.dev/revision";

pub fn group_resource_name(g: &InstanceGroup, cluster: &str) -> String {
    match g.spec.role {
        Role::Master => format!("{}.masters.{cluster}", g.name()),
        _ => format!("{}.{cluster}", g.name()),
    }
}

fn role_tag(role: Role) -> String {
    format!("k8s.io/role/{}", role.as_str().to_lowercase())
}

/// The user-data of a group, rendered from `templates/bootstrap/`.
pub fn user_data(c: &Cluster, g: &InstanceGroup) -> Result<String, ModelError> {
    let env = minijinja::Environment::new();
    let labels: Vec<String> = g
        .spec
        .node_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let ctx = minijinja::context! {
        cluster => c.name(),
        group => g.name(),
        role => g.spec.role.as_str(),
        kubernetes_version => c.spec.kubernetes_version,
        config_base => c.spec.config_base.clone().unwrap_or_default(),
        node_labels => labels.join(","),
        taints => g.spec.taints.join(","),
    };
    env.render_str(NODE_BOOTSTRAP, ctx)
        .map_err(|e| ModelError::Invalid(format!("bootstrap template for {}: {e}", g.name())))
}

pub fn build(inputs: &Inputs, d: &mut Desired) -> Result<(), ModelError> {
    let c = inputs.cluster;
    let cluster = c.name();
    for g in inputs.groups {
        let name = group_resource_name(g, cluster);
        let image = inputs.images.get(&g.spec.image).cloned().ok_or_else(|| {
            ModelError::Invalid(format!(
                "InstanceGroup {}: image {} was not resolved to an AMI",
                g.name(),
                g.spec.image
            ))
        })?;
        let sg = match g.spec.role {
            Role::Master => "masters",
            Role::Node => "nodes",
            Role::Bastion => "bastion",
        };
        let mut t = LaunchTemplate {
            name: name.clone(),
            image,
            machine_type: g.spec.machine_type.clone(),
            key_pair: inputs
                .ssh_key
                .map(|k| Address::new(Kind::KeyPair, super::security::key_pair_name(cluster, k))),
            security_groups: vec![Address::new(
                Kind::SecurityGroup,
                super::security::group_name(sg, cluster),
            )],
            instance_profile: Address::new(
                Kind::InstanceProfile,
                super::iam::role_name(g.spec.role, cluster),
            ),
            root_volume_size: g.spec.root_volume.size,
            root_volume_type: g.spec.root_volume.kind.clone(),
            root_volume_encrypted: g.spec.root_volume.encrypted,
            associate_public_ip: g.spec.associate_public_ip,
            user_data: user_data(c, g)?,
            instance_tags: Tags::new(),
            tags: Tags::new(),
        };
        // The revision covers everything an instance is launched with.
        let revision = {
            let mut h = Sha256::new();
            h.update(serde_json::to_vec(&t).expect("templates serialize"));
            h.update(serde_json::to_vec(&g.spec.cloud_labels).expect("labels serialize"));
            crate::plan::hex(&h.finalize())[..16].to_string()
        };
        let mut labels = c.spec.cloud_labels.clone();
        labels.extend(g.spec.cloud_labels.clone());
        let mut instance_tags = ownership_tags(cluster, &name, &labels);
        instance_tags.insert(role_tag(g.spec.role), "1".into());
        instance_tags.insert("kops.k8s.io/instancegroup".into(), g.name().into());
        instance_tags.insert(REVISION_TAG.into(), revision);
        t.instance_tags = instance_tags;
        // Not on the template's own tags: a new version does not change those.
        t.tags = ownership_tags(cluster, &name, &c.spec.cloud_labels);
        let template = d.ensure(Lifecycle::Owned, Resource::LaunchTemplate(t))?;

        let mut tags = ownership_tags(cluster, &name, &labels);
        tags.insert(role_tag(g.spec.role), "1".into());
        tags.insert("kops.k8s.io/instancegroup".into(), g.name().into());
        if g.spec.role == Role::Node {
            // Discovery tags of the cluster autoscaler.
            tags.insert("k8s.io/cluster-autoscaler/enabled".into(), "1".into());
            tags.insert(
                format!("k8s.io/cluster-autoscaler/{cluster}"),
                "owned".into(),
            );
        }
        let subnets = g
            .spec
            .subnets
            .iter()
            .map(|s| Address::new(Kind::Subnet, format!("{s}.{cluster}")))
            .collect();
        d.ensure(
            Lifecycle::Owned,
            Resource::AutoScalingGroup(AutoScalingGroup {
                name,
                launch_template: template,
                min_size: g.spec.min_size,
                max_size: g.spec.max_size,
                subnets,
                target_groups: super::load_balancers::target_groups_of(c, g.spec.role),
                tags,
            }),
        )?;
    }
    Ok(())
}
