//! Security groups. Their rules carry no tags and are discovered here, from the
//! same call, one rule per peer of each permission.

use aws_sdk_ec2::types::{IpPermission, ResourceType};

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{Address, Direction, Kind, Resource, SecurityGroup, SecurityGroupRule};
use crate::state::BoxFuture;

pub struct SecurityGroupKind;

fn sg(r: &Resource) -> Option<&SecurityGroup> {
    match r {
        Resource::SecurityGroup(v) => Some(v),
        _ => None,
    }
}

/// Expands a permission into keelson's one-peer rules.
fn rules(
    group: &Address,
    direction: Direction,
    p: &IpPermission,
    owned: bool,
    kubernetes: &Kubernetes,
    out: &mut Vec<Found>,
) {
    let protocol = p.ip_protocol().unwrap_or("-1").to_string();
    let (from, to) = if protocol == "-1" || protocol == "4" {
        (0, 0)
    } else {
        (p.from_port().unwrap_or(0), p.to_port().unwrap_or(0))
    };
    let mut push = |cidr, source_group| {
        let rule = SecurityGroupRule {
            group: group.clone(),
            direction,
            protocol: protocol.clone(),
            from_port: from,
            to_port: to,
            cidr,
            source_group,
            elastic_ip: None,
        };
        let resource = Resource::SecurityGroupRule(rule);
        // The rule's own id is its full description; AWS rule ids are not needed.
        out.push(Found {
            id: serde_json::to_string(&resource).unwrap(),
            resource,
            owned,
            state: None,
            links: Vec::new(),
        });
    };
    for r in p.ip_ranges() {
        if kubernetes.leave_rules
            && r.description()
                .is_some_and(|d| d.starts_with("kubernetes.io/rule/"))
        {
            continue;
        }
        if let Some(c) = r.cidr_ip().and_then(|c| c.parse().ok()) {
            push(Some(c), None);
        }
    }
    for g in p.user_id_group_pairs() {
        if let Some(id) = g.group_id() {
            if kubernetes.leave_rules && kubernetes.groups.contains(id) {
                continue;
            }
            push(None, Some(Address::foreign(Kind::SecurityGroup, id)));
        }
    }
}

/// A group Kubernetes made for the cluster (the cloud controller's
/// `k8s-elb-...` group of a Service's load balancer): tagged
/// `kubernetes.io/cluster/NAME: owned` without keelson's `Name` tag, known by
/// its group name. Only a delete takes it (kops deletes every group with the
/// cluster's tag, `pkg/resources/aws/aws.go` `ListSecurityGroups`); an update
/// leaves it to Kubernetes.
fn made_by_kubernetes(
    group_name: Option<&str>,
    tags: &crate::model::Tags,
    scope: &Scope,
) -> Option<(String, bool)> {
    let owned = tags.get(&crate::model::cluster_tag(&scope.cluster))? == "owned";
    (scope.deleting && owned && !tags.contains_key("Name"))
        .then(|| group_name.map(str::to_string))
        .flatten()
        .map(|n| (n, true))
}

/// What the cloud controller adds to keelson's groups for a Service's load
/// balancer: rules from its `k8s-elb-` groups, and an NLB's client and health
/// check ranges (described `kubernetes.io/rule/nlb/...`). An update leaves them
/// (it would cut the Service off); a delete removes them with the group.
struct Kubernetes {
    leave_rules: bool,
    groups: std::collections::BTreeSet<String>,
}

impl ResourceKind for SecurityGroupKind {
    fn kind(&self) -> Kind {
        Kind::SecurityGroup
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let mut groups = Vec::new();
            let mut pages = ec2
                .describe_security_groups()
                .filters(cluster_filter(&scope.cluster))
                .into_paginator()
                .send();
            while let Some(p) = pages.next().await {
                groups.extend(
                    p.map_err(|e| call_error("DescribeSecurityGroups", &e))?
                        .security_groups
                        .unwrap_or_default(),
                );
            }
            let kubernetes = Kubernetes {
                leave_rules: !scope.deleting,
                groups: groups
                    .iter()
                    .filter(|g| {
                        let tags = from_tags(g.tags());
                        tags.get(&crate::model::cluster_tag(&scope.cluster))
                            .is_some_and(|v| v == "owned")
                            && !tags.contains_key("Name")
                    })
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .collect(),
            };
            let mut found = Vec::new();
            for g in groups {
                let (Some(id), Some(vpc)) = (g.group_id(), g.vpc_id()) else {
                    continue;
                };
                let tags = from_tags(g.tags());
                let Some((name, owned)) = identify(id, &tags, scope)
                    .or_else(|| made_by_kubernetes(g.group_name(), &tags, scope))
                else {
                    continue;
                };
                let me = Address::foreign(Kind::SecurityGroup, id);
                for p in g.ip_permissions() {
                    rules(&me, Direction::Ingress, p, owned, &kubernetes, &mut found);
                }
                for p in g.ip_permissions_egress() {
                    rules(&me, Direction::Egress, p, owned, &kubernetes, &mut found);
                }
                found.push(Found {
                    id: id.to_string(),
                    resource: Resource::SecurityGroup(SecurityGroup {
                        name,
                        vpc: Address::foreign(Kind::Vpc, vpc),
                        description: g.description().unwrap_or_default().to_string(),
                        tags,
                    }),
                    owned,
                    state: None,
                    links: Vec::new(),
                });
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
            let ec2 = &aws.ec2;
            let g = expect(r, sg);
            let out = ec2
                .create_security_group()
                .group_name(&g.name)
                .description(&g.description)
                .vpc_id(ids.id(&g.vpc)?)
                .tag_specifications(tag_spec(ResourceType::SecurityGroup, &g.tags))
                .send()
                .await
                .map_err(|e| call_error("CreateSecurityGroup", &e))?;
            Ok(out
                .group_id()
                .ok_or_else(|| AwsError::Other("CreateSecurityGroup returned no id".into()))?
                .to_string())
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
            let ec2 = &aws.ec2;
            ec2.delete_security_group()
                .group_id(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteSecurityGroup", &e))?;
            Ok(())
        })
    }
}

/// The VPC of each of these security groups that exists (`spec.additionalSecurityGroups`,
/// checked before an update's first write). By the `group-id` filter, which
/// answers only the groups that exist, where `GroupIds` fails the whole call
/// with `InvalidGroup.NotFound` at the first missing one (EC2 API reference,
/// DescribeSecurityGroups).
pub async fn vpcs_of(
    ec2: &aws_sdk_ec2::Client,
    ids: &std::collections::BTreeSet<String>,
) -> Result<std::collections::BTreeMap<String, String>, AwsError> {
    let mut out = std::collections::BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let mut pages = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-id")
                .set_values(Some(ids.iter().cloned().collect()))
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(p) = pages.next().await {
        for g in p
            .map_err(|e| call_error("DescribeSecurityGroups", &e))?
            .security_groups()
        {
            if let Some(id) = g.group_id() {
                out.insert(id.to_string(), g.vpc_id().unwrap_or_default().to_string());
            }
        }
    }
    Ok(out)
}
