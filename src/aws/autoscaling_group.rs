//! Auto Scaling groups, one per instance group, on their launch template's
//! `$Latest` version: a new template version is what a group change is.

use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{Filter, LaunchTemplateSpecification, Tag};

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{Address, AutoScalingGroup, Kind, MixedInstances, Resource, Tags};
use crate::state::BoxFuture;

pub struct AutoScalingGroupKind;

fn asg(r: &Resource) -> Option<&AutoScalingGroup> {
    match r {
        Resource::AutoScalingGroup(v) => Some(v),
        _ => None,
    }
}

fn tags(name: &str, t: &Tags) -> Vec<Tag> {
    // Instances get their tags from the launch template, so none propagate.
    t.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .propagate_at_launch(false)
                .build()
        })
        .collect()
}

fn subnets(a: &AutoScalingGroup, ids: &dyn Ids) -> Result<String, AwsError> {
    Ok(a.subnets
        .iter()
        .map(|s| ids.id(s))
        .collect::<Result<Vec<_>, _>>()?
        .join(","))
}

fn template(a: &AutoScalingGroup, ids: &dyn Ids) -> Result<LaunchTemplateSpecification, AwsError> {
    Ok(LaunchTemplateSpecification::builder()
        .launch_template_id(ids.id(&a.launch_template)?)
        .version("$Latest")
        .build())
}

/// The group's MixedInstancesPolicy: its template with one override per type,
/// and every distribution value given. Auto Scaling takes either this or a
/// LaunchTemplate, not both (CreateAutoScalingGroup, UpdateAutoScalingGroup).
fn mixed_policy(
    a: &AutoScalingGroup,
    m: &MixedInstances,
    ids: &dyn Ids,
) -> Result<aws_sdk_autoscaling::types::MixedInstancesPolicy, AwsError> {
    use aws_sdk_autoscaling::types::{
        InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides, MixedInstancesPolicy,
    };
    Ok(MixedInstancesPolicy::builder()
        .launch_template(
            LaunchTemplate::builder()
                .launch_template_specification(template(a, ids)?)
                .set_overrides(Some(
                    m.instance_types
                        .iter()
                        .map(|t| LaunchTemplateOverrides::builder().instance_type(t).build())
                        .collect(),
                ))
                .build(),
        )
        .instances_distribution(
            InstancesDistribution::builder()
                .on_demand_base_capacity(m.on_demand_base as i32)
                .on_demand_percentage_above_base_capacity(m.on_demand_above_base as i32)
                .spot_allocation_strategy(&m.spot_allocation_strategy)
                .build(),
        )
        .build())
}

/// The MixedInstancesPolicy as discovered; a value AWS leaves out is its default.
fn read_mixed(p: &aws_sdk_autoscaling::types::MixedInstancesPolicy) -> MixedInstances {
    use crate::spec::aws_fields as f;
    let d = p.instances_distribution();
    MixedInstances {
        instance_types: p
            .launch_template()
            .map(|l| {
                l.overrides()
                    .iter()
                    .filter_map(|o| o.instance_type().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        on_demand_base: d
            .and_then(|d| d.on_demand_base_capacity())
            .map_or(f::DEFAULT_ON_DEMAND_BASE, |n| n.max(0) as u32),
        on_demand_above_base: d
            .and_then(|d| d.on_demand_percentage_above_base_capacity())
            .map_or(f::DEFAULT_ON_DEMAND_ABOVE_BASE, |n| n.max(0) as u32),
        spot_allocation_strategy: d
            .and_then(|d| d.spot_allocation_strategy())
            .unwrap_or(f::DEFAULT_SPOT_ALLOCATION_STRATEGY)
            .to_string(),
    }
}

impl ResourceKind for AutoScalingGroupKind {
    fn kind(&self) -> Kind {
        Kind::AutoScalingGroup
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let filter = Filter::builder()
                .name("tag-key")
                .values(crate::model::cluster_tag(&scope.cluster))
                .build();
            let mut pages = aws
                .autoscaling
                .describe_auto_scaling_groups()
                .filters(filter)
                .into_paginator()
                .send();
            let mut found = Vec::new();
            while let Some(p) = pages.next().await {
                for g in p
                    .map_err(|e| call_error("DescribeAutoScalingGroups", &e))?
                    .auto_scaling_groups()
                {
                    let name = g.auto_scaling_group_name().unwrap_or_default();
                    let t: Tags = g
                        .tags()
                        .iter()
                        .filter_map(|t| {
                            Some((
                                t.key()?.to_string(),
                                t.value().unwrap_or_default().to_string(),
                            ))
                        })
                        .collect();
                    let Some((_, owned)) = identify(name, &t, scope) else {
                        continue;
                    };
                    // Being deleted: as good as gone.
                    if g.status().is_some_and(|s| s.contains("Delete")) {
                        continue;
                    }
                    let mixed = g.mixed_instances_policy();
                    // With a mixed instances policy AWS names the template
                    // only inside it.
                    let template = g
                        .launch_template()
                        .and_then(|l| l.launch_template_id())
                        .or_else(|| {
                            mixed
                                .and_then(|m| m.launch_template())
                                .and_then(|l| l.launch_template_specification())
                                .and_then(|s| s.launch_template_id())
                        })
                        .unwrap_or("none");
                    let subnets = g
                        .vpc_zone_identifier()
                        .unwrap_or_default()
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| Address::foreign(Kind::Subnet, s.trim()))
                        .collect();
                    found.push(Found {
                        id: name.to_string(),
                        resource: Resource::AutoScalingGroup(AutoScalingGroup {
                            name: name.to_string(),
                            launch_template: Address::foreign(Kind::LaunchTemplate, template),
                            min_size: g.min_size().unwrap_or(0) as u32,
                            max_size: g.max_size().unwrap_or(0) as u32,
                            subnets,
                            target_groups: g
                                .target_group_arns()
                                .iter()
                                .map(|a| Address::foreign(Kind::TargetGroup, a))
                                .collect(),
                            mixed_instances: mixed.map(read_mixed),
                            tags: t,
                        }),
                        owned,
                        state: None,
                        links: Vec::new(),
                    });
                }
            }
            Ok(found)
        })
    }

    fn create<'a>(
        &'a self,
        aws: &'a Clients,
        r: &'a Resource,
        ids: &'a dyn Ids,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let a = expect(r, asg);
            let req = aws
                .autoscaling
                .create_auto_scaling_group()
                .auto_scaling_group_name(&a.name);
            let req = match &a.mixed_instances {
                Some(m) => req.mixed_instances_policy(mixed_policy(a, m, ids)?),
                None => req.launch_template(template(a, ids)?),
            };
            req.min_size(a.min_size as i32)
                .max_size(a.max_size as i32)
                .vpc_zone_identifier(subnets(a, ids)?)
                .set_target_group_arns(Some(
                    a.target_groups
                        .iter()
                        .map(|t| ids.id(t))
                        .collect::<Result<Vec<_>, _>>()?,
                ))
                .set_tags(Some(tags(&a.name, &a.tags)))
                .send()
                .await
                .map_err(|e| call_error("CreateAutoScalingGroup", &e))?;
            Ok(a.name.clone())
        })
    }

    fn update<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        r: &'a Resource,
        existing: &'a Resource,
        ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            let a = expect(r, asg);
            let req = aws
                .autoscaling
                .update_auto_scaling_group()
                .auto_scaling_group_name(id);
            // A LaunchTemplate given to a group with a mixed instances policy
            // replaces the policy, and the policy replaces the LaunchTemplate.
            let req = match &a.mixed_instances {
                Some(m) => req.mixed_instances_policy(mixed_policy(a, m, ids)?),
                None => req.launch_template(template(a, ids)?),
            };
            req.min_size(a.min_size as i32)
                .max_size(a.max_size as i32)
                .vpc_zone_identifier(subnets(a, ids)?)
                .send()
                .await
                .map_err(|e| call_error("UpdateAutoScalingGroup", &e))?;
            // UpdateAutoScalingGroup cannot set target groups and attaching only
            // adds: a group the spec no longer names is detached, from what
            // discovery saw attached. (Tags are only added: tags someone else put
            // on the group are theirs, as everywhere in keelson.)
            let attached = expect(existing, asg)
                .target_groups
                .iter()
                .map(|t| ids.id(t))
                .collect::<Result<Vec<_>, _>>()?;
            let targets = a
                .target_groups
                .iter()
                .map(|t| ids.id(t))
                .collect::<Result<Vec<_>, _>>()?;
            let to_attach: Vec<String> = targets
                .iter()
                .filter(|t| !attached.contains(t))
                .cloned()
                .collect();
            let to_detach: Vec<String> = attached
                .iter()
                .filter(|t| !targets.contains(t))
                .cloned()
                .collect();
            if !to_attach.is_empty() {
                aws.autoscaling
                    .attach_load_balancer_target_groups()
                    .auto_scaling_group_name(id)
                    .set_target_group_arns(Some(to_attach))
                    .send()
                    .await
                    .map_err(|e| call_error("AttachLoadBalancerTargetGroups", &e))?;
            }
            if !to_detach.is_empty() {
                aws.autoscaling
                    .detach_load_balancer_target_groups()
                    .auto_scaling_group_name(id)
                    .set_target_group_arns(Some(to_detach))
                    .send()
                    .await
                    .map_err(|e| call_error("DetachLoadBalancerTargetGroups", &e))?;
            }
            aws.autoscaling
                .create_or_update_tags()
                .set_tags(Some(tags(id, &a.tags)))
                .send()
                .await
                .map_err(|e| call_error("CreateOrUpdateTags", &e))?;
            Ok(None)
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
            aws.autoscaling
                .delete_auto_scaling_group()
                .auto_scaling_group_name(id)
                .force_delete(true)
                .send()
                .await
                .map_err(|e| call_error("DeleteAutoScalingGroup", &e))?;
            // Its instances hold the template, security groups and subnets: wait until it is gone.
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                let out = aws
                    .autoscaling
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(id)
                    .send()
                    .await
                    .map_err(|e| call_error("DescribeAutoScalingGroups", &e))?;
                if out.auto_scaling_groups().is_empty() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(AwsError::Other(format!(
                        "autoscaling group {id} is still being deleted after 600s; rerun to keep waiting"
                    )));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    }
}
