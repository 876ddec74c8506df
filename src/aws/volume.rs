//! The EBS volumes Kubernetes made for the cluster: the EBS CSI driver's
//! persistent volumes (tagged `ebs.csi.aws.com/cluster: true`, and with its
//! `--k8s-tag-cluster-id=NAME`, as kops runs it, `kubernetes.io/cluster/NAME:
//! owned` and `KubernetesCluster: NAME`), or the in-tree provider's
//! (`KubernetesCluster: NAME`). keelson ships no CSI driver yet; a user who
//! installs one makes these. keelson never makes them; `delete cluster`
//! finds them and deletes them once the instances they may be attached to are
//! gone.
//!
//! As kops does (`pkg/resources/aws/aws.go`, `ListVolumes`): volumes filtered
//! by the cluster's tags, skipping those attached with delete-on-termination
//! (instances' root volumes, which AWS deletes with the instance); one tagged
//! `shared` for the cluster is not its own.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;

use super::kind::*;
use super::{AwsError, call_error};
use crate::model::{Kind, Resource, Volume};
use crate::state::BoxFuture;

pub struct VolumeKind;

async fn volumes(
    ec2: &aws_sdk_ec2::Client,
    filter: Filter,
) -> Result<Vec<aws_sdk_ec2::types::Volume>, AwsError> {
    let mut all = Vec::new();
    let mut pages = ec2
        .describe_volumes()
        .filters(filter)
        .into_paginator()
        .send();
    while let Some(p) = pages.next().await {
        all.extend(
            p.map_err(|e| call_error("DescribeVolumes", &e))?
                .volumes
                .unwrap_or_default(),
        );
    }
    Ok(all)
}

impl ResourceKind for VolumeKind {
    fn kind(&self) -> Kind {
        Kind::Volume
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            // Only a delete looks (see `Scope::deleting`).
            if !scope.deleting {
                return Ok(Vec::new());
            }
            let cluster = &scope.cluster;
            let tag = crate::model::cluster_tag(cluster);
            // Two calls: EC2 filters of different names must all match.
            let (owned, legacy) = tokio::join!(
                volumes(
                    &aws.ec2,
                    Filter::builder()
                        .name(format!("tag:{tag}"))
                        .values("owned")
                        .build()
                ),
                volumes(
                    &aws.ec2,
                    Filter::builder()
                        .name("tag:KubernetesCluster")
                        .values(cluster)
                        .build()
                ),
            );
            let mut by_id = BTreeMap::new();
            for v in owned?.into_iter().chain(legacy?) {
                if let Some(id) = v.volume_id() {
                    by_id.insert(id.to_string(), v);
                }
            }
            let mut found = Vec::new();
            for (id, v) in by_id {
                let tags = from_tags(v.tags());
                // Checked here too, as the emulator may ignore tag filters.
                let ours = match tags.get(&tag).map(String::as_str) {
                    Some("owned") => true,
                    Some(_) => false,
                    None => tags.get("KubernetesCluster") == Some(cluster),
                };
                let root = v
                    .attachments()
                    .iter()
                    .any(|a| a.delete_on_termination() == Some(true));
                if !ours || root {
                    continue;
                }
                let name = ["CSIVolumeName", "kubernetes.io/created-for/pv/name", "Name"]
                    .iter()
                    .find_map(|k| tags.get(*k))
                    .cloned()
                    .unwrap_or_else(|| id.clone());
                found.push(Found {
                    id,
                    resource: Resource::Volume(Volume { name, tags }),
                    owned: true,
                    state: None,
                    links: Vec::new(),
                });
            }
            Ok(found)
        })
    }

    fn create<'a>(
        &'a self,
        _aws: &'a Clients,
        r: &'a Resource,
        _ids: &'a dyn Ids,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            Err(AwsError::Other(format!(
                "{}: made by Kubernetes, never by keelson",
                r.address()
            )))
        })
    }

    fn delete<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        _existing: &'a Resource,
        _ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            // Still attached (VolumeInUse) is retried until the instance is gone;
            // already deleted is done.
            match aws.ec2.delete_volume().volume_id(id).send().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let e = call_error("DeleteVolume", &e);
                    if e.code() == Some("InvalidVolume.NotFound") {
                        Ok(())
                    } else {
                        Err(e)
                    }
                }
            }
        })
    }
}
