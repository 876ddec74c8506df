//! The cloud side of a cluster's instance groups, as validate and rolling-update
//! see it: each group's ASG, its instances with their revision tags, the
//! instances detached from it (a roll in progress), and the revision its launch
//! template's current version gives new instances.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use serde::Serialize;

use crate::aws::{AwsError, call_error};
use crate::model::instances::{REVISION_TAG, group_resource_name};
use crate::spec::{InstanceGroup, Role};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudInstance {
    pub id: String,
    /// The ASG lifecycle state (`InService`, `Pending`, ...), or `Detached`.
    pub lifecycle: String,
    pub revision: Option<String>,
}

impl CloudInstance {
    pub fn detached(&self) -> bool {
        self.lifecycle == "Detached"
    }
    /// On its way out: it no longer counts towards the group.
    pub fn leaving(&self) -> bool {
        self.lifecycle.starts_with("Terminat") || self.lifecycle.starts_with("Detach")
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudGroup {
    /// The instance group's name.
    pub name: String,
    pub role: Role,
    pub asg: String,
    /// False when the ASG does not exist.
    pub exists: bool,
    pub min: i32,
    pub max: i32,
    pub desired: i32,
    /// What the launch template's current version tags new instances with.
    pub revision: Option<String>,
    pub instances: Vec<CloudInstance>,
}

impl CloudGroup {
    /// Instances that count towards the group: in the ASG and not leaving it.
    pub fn members(&self) -> impl Iterator<Item = &CloudInstance> {
        self.instances
            .iter()
            .filter(|i| !i.detached() && !i.leaving())
    }
    pub fn needs_update(&self, i: &CloudInstance) -> bool {
        self.revision.is_some() && i.revision != self.revision
    }
}

/// One DescribeAutoScalingGroups, one DescribeInstances and one
/// DescribeLaunchTemplateVersions per group.
pub async fn inventory(
    clients: &crate::aws::kind::Clients,
    cluster: &str,
    groups: &[InstanceGroup],
) -> Result<Vec<CloudGroup>, AwsError> {
    let names: Vec<String> = groups
        .iter()
        .map(|g| group_resource_name(g, cluster))
        .collect();
    let mut asgs = BTreeMap::new();
    for chunk in names.chunks(50) {
        let out = clients
            .autoscaling
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| call_error("DescribeAutoScalingGroups", &e))?;
        for a in out.auto_scaling_groups.unwrap_or_default() {
            asgs.insert(
                a.auto_scaling_group_name().unwrap_or_default().to_string(),
                a,
            );
        }
    }
    // Every live instance of the cluster, with its tags: the revision of each, and
    // the detached ones (tagged with a group but no longer in its ASG).
    let mut tags: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
    let mut pages = clients
        .ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:KubernetesCluster")
                .values(cluster)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| call_error("DescribeInstances", &e))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let tag = |k: &str| {
                i.tags()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
                    .map(str::to_string)
            };
            if let Some(id) = i.instance_id() {
                tags.insert(
                    id.to_string(),
                    (
                        tag("kops.k8s.io/instancegroup").unwrap_or_default(),
                        tag(REVISION_TAG),
                    ),
                );
            }
        }
    }
    let mut out = Vec::new();
    for (g, asg_name) in groups.iter().zip(names) {
        let mut cg = CloudGroup {
            name: g.name().to_string(),
            role: g.spec.role,
            asg: asg_name.clone(),
            exists: false,
            min: 0,
            max: 0,
            desired: 0,
            revision: None,
            instances: Vec::new(),
        };
        if let Some(a) = asgs.get(&asg_name) {
            cg.exists = true;
            cg.min = a.min_size().unwrap_or(0);
            cg.max = a.max_size().unwrap_or(0);
            cg.desired = a.desired_capacity().unwrap_or(0);
            // A group with a mixed instances policy names its template only
            // there (DescribeAutoScalingGroups: LaunchTemplate is then empty).
            let template = a.launch_template().or_else(|| {
                a.mixed_instances_policy()
                    .and_then(|m| m.launch_template())
                    .and_then(|l| l.launch_template_specification())
            });
            if let Some(lt) = template {
                let mut req = clients
                    .ec2
                    .describe_launch_template_versions()
                    .versions(lt.version().unwrap_or("$Default"));
                req = match (lt.launch_template_id(), lt.launch_template_name()) {
                    (Some(id), _) => req.launch_template_id(id),
                    (None, Some(n)) => req.launch_template_name(n),
                    _ => req,
                };
                let versions = req
                    .send()
                    .await
                    .map_err(|e| call_error("DescribeLaunchTemplateVersions", &e))?;
                cg.revision = versions
                    .launch_template_versions()
                    .first()
                    .and_then(|v| v.launch_template_data())
                    .into_iter()
                    .flat_map(|d| d.tag_specifications())
                    .flat_map(|s| s.tags())
                    .find(|t| t.key() == Some(REVISION_TAG))
                    .and_then(|t| t.value())
                    .map(str::to_string);
            }
            for i in a.instances() {
                let id = i.instance_id().unwrap_or_default().to_string();
                cg.instances.push(CloudInstance {
                    revision: tags.get(&id).and_then(|(_, r)| r.clone()),
                    lifecycle: i
                        .lifecycle_state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    id,
                });
            }
        }
        for (id, (group, revision)) in &tags {
            if group == g.name() && !cg.instances.iter().any(|i| &i.id == id) {
                cg.instances.push(CloudInstance {
                    id: id.clone(),
                    lifecycle: "Detached".into(),
                    revision: revision.clone(),
                });
            }
        }
        out.push(cg);
    }
    Ok(out)
}
