//! The load balancers Kubernetes made for the cluster's `type: LoadBalancer`
//! Services: classic ELBs (the cloud controller's default) and NLBs (its
//! `service.beta.kubernetes.io/aws-load-balancer-type: nlb`, or the AWS load
//! balancer controller), with an NLB's target groups. keelson never makes
//! them; `delete cluster` finds and deletes them before the subnets, security
//! groups and VPC they hold (AWS refuses to delete a VPC with their network
//! interfaces in it).
//!
//! Which ones are the cluster's follows kops (`pkg/resources/aws/aws.go`,
//! `ListELBs` / `ListELBV2s`): every balancer of the region, read a page of 20
//! at a time with `DescribeTags` for that page (the tag call takes at most 20),
//! kept when it carries the cluster's tag; here only with the value `owned`
//! (the cloud controller tags what it makes `kubernetes.io/cluster/NAME:
//! owned`; `shared` would be somebody else's). keelson's own balancers (the
//! API's and the bastion's) are another kind's and are left out by name.

use std::collections::BTreeMap;

use super::kind::*;
use super::{AwsError, call_error};
use crate::model::load_balancers::{api_name, bastion_name};
use crate::model::{Address, Kind, Resource, ServiceLoadBalancer, Tags};
use crate::state::BoxFuture;

pub struct ServiceLoadBalancerKind;

fn balancer(r: &Resource) -> Option<&ServiceLoadBalancer> {
    match r {
        Resource::ServiceLoadBalancer(v) => Some(v),
        _ => None,
    }
}

/// Whether a balancer with these tags was made for this cluster by Kubernetes.
fn made_for(cluster: &str, name: &str, tags: &Tags) -> bool {
    tags.get(&crate::model::cluster_tag(cluster))
        .is_some_and(|v| v == "owned")
        && name != api_name(cluster)
        && name != bastion_name(cluster)
}

/// The most names or ARNs one DescribeTags call takes (both APIs).
const TAG_BATCH: usize = 20;

async fn classic(aws: &Clients, cluster: &str) -> Result<Vec<Found>, AwsError> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = aws
            .elb
            .describe_load_balancers()
            .page_size(400)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| call_error("DescribeLoadBalancers", &e))?;
        all.extend(out.load_balancer_descriptions().iter().cloned());
        match out.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    let mut found = Vec::new();
    for page in all.chunks(TAG_BATCH) {
        let names: Vec<String> = page
            .iter()
            .filter_map(|l| l.load_balancer_name().map(str::to_string))
            .collect();
        if names.is_empty() {
            continue;
        }
        let tags = aws
            .elb
            .describe_tags()
            .set_load_balancer_names(Some(names))
            .send()
            .await
            .map_err(|e| call_error("DescribeTags", &e))?;
        let tags: BTreeMap<String, Tags> = tags
            .tag_descriptions()
            .iter()
            .filter_map(|d| {
                let t = d
                    .tags()
                    .iter()
                    .map(|t| {
                        (
                            t.key().to_string(),
                            t.value().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                Some((d.load_balancer_name()?.to_string(), t))
            })
            .collect();
        for l in page {
            let Some(name) = l.load_balancer_name() else {
                continue;
            };
            let Some(t) = tags.get(name) else { continue };
            if !made_for(cluster, name, t) {
                continue;
            }
            found.push(Found {
                id: name.to_string(),
                resource: Resource::ServiceLoadBalancer(ServiceLoadBalancer {
                    name: name.to_string(),
                    classic: true,
                    subnets: l
                        .subnets()
                        .iter()
                        .map(|s| Address::foreign(Kind::Subnet, s))
                        .collect(),
                    security_groups: l
                        .security_groups()
                        .iter()
                        .map(|g| Address::foreign(Kind::SecurityGroup, g))
                        .collect(),
                    target_groups: Vec::new(),
                    tags: t.clone(),
                }),
                owned: true,
                state: None,
                links: Vec::new(),
            });
        }
    }
    Ok(found)
}

async fn v2(aws: &Clients, cluster: &str) -> Result<Vec<Found>, AwsError> {
    let mut all = Vec::new();
    let mut pages = aws
        .elbv2
        .describe_load_balancers()
        .page_size(TAG_BATCH as i32)
        .into_paginator()
        .send();
    while let Some(p) = pages.next().await {
        all.extend(
            p.map_err(|e| call_error("DescribeLoadBalancers", &e))?
                .load_balancers
                .unwrap_or_default(),
        );
    }
    let mut found = Vec::new();
    for page in all.chunks(TAG_BATCH) {
        let arns: Vec<String> = page
            .iter()
            .filter_map(|l| l.load_balancer_arn().map(str::to_string))
            .collect();
        if arns.is_empty() {
            continue;
        }
        let tags = aws
            .elbv2
            .describe_tags()
            .set_resource_arns(Some(arns))
            .send()
            .await
            .map_err(|e| call_error("DescribeTags", &e))?;
        let tags: BTreeMap<String, Tags> = tags
            .tag_descriptions()
            .iter()
            .filter_map(|d| {
                let t = d
                    .tags()
                    .iter()
                    .filter_map(|t| {
                        Some((
                            t.key()?.to_string(),
                            t.value().unwrap_or_default().to_string(),
                        ))
                    })
                    .collect();
                Some((d.resource_arn()?.to_string(), t))
            })
            .collect();
        for l in page {
            let (Some(arn), Some(name)) = (l.load_balancer_arn(), l.load_balancer_name()) else {
                continue;
            };
            let Some(t) = tags.get(arn) else { continue };
            if !made_for(cluster, name, t) {
                continue;
            }
            // Its target groups go with it: found now, while the balancer still
            // names them.
            let target_groups = aws
                .elbv2
                .describe_target_groups()
                .load_balancer_arn(arn)
                .send()
                .await
                .map_err(|e| call_error("DescribeTargetGroups", &e))?
                .target_groups()
                .iter()
                .filter_map(|g| g.target_group_arn().map(str::to_string))
                .collect();
            found.push(Found {
                id: arn.to_string(),
                resource: Resource::ServiceLoadBalancer(ServiceLoadBalancer {
                    name: name.to_string(),
                    classic: false,
                    subnets: l
                        .availability_zones()
                        .iter()
                        .filter_map(|z| z.subnet_id())
                        .map(|s| Address::foreign(Kind::Subnet, s))
                        .collect(),
                    security_groups: l
                        .security_groups()
                        .iter()
                        .map(|g| Address::foreign(Kind::SecurityGroup, g))
                        .collect(),
                    target_groups,
                    tags: t.clone(),
                }),
                owned: true,
                state: None,
                links: Vec::new(),
            });
        }
    }
    Ok(found)
}

impl ResourceKind for ServiceLoadBalancerKind {
    fn kind(&self) -> Kind {
        Kind::ServiceLoadBalancer
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            // Only a delete looks: `update` neither plans their deletion nor
            // spends requests on them.
            if !scope.deleting {
                return Ok(Vec::new());
            }
            let (c, v) = tokio::join!(classic(aws, &scope.cluster), v2(aws, &scope.cluster));
            let mut found = c?;
            found.extend(v?);
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
        existing: &'a Resource,
        _ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let lb = expect(existing, balancer);
            // Both deletions succeed for a balancer already gone.
            if lb.classic {
                aws.elb
                    .delete_load_balancer()
                    .load_balancer_name(id)
                    .send()
                    .await
                    .map_err(|e| call_error("DeleteLoadBalancer", &e))?;
                return Ok(());
            }
            aws.elbv2
                .delete_load_balancer()
                .load_balancer_arn(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteLoadBalancer", &e))?;
            // A target group is in use until its balancer is gone (ResourceInUse,
            // retried); one already deleted is done.
            for tg in &lb.target_groups {
                match aws
                    .elbv2
                    .delete_target_group()
                    .target_group_arn(tg)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e) => {
                        let e = call_error("DeleteTargetGroup", &e);
                        if e.code() != Some("TargetGroupNotFound") {
                            return Err(e);
                        }
                    }
                }
            }
            Ok(())
        })
    }
}
