//! Subnets: private, utility and public ones, each in one zone.

use aws_sdk_ec2::types::{Filter, ResourceType};

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{Address, Kind, Resource, Subnet};
use crate::state::BoxFuture;

pub struct SubnetKind;

fn subnet(r: &Resource) -> Option<&Subnet> {
    match r {
        Resource::Subnet(v) => Some(v),
        _ => None,
    }
}

impl ResourceKind for SubnetKind {
    fn kind(&self) -> Kind {
        Kind::Subnet
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let mut subnets = Vec::new();
            let mut pages = ec2
                .describe_subnets()
                .filters(cluster_filter(&scope.cluster))
                .into_paginator()
                .send();
            while let Some(p) = pages.next().await {
                subnets.extend(
                    p.map_err(|e| call_error("DescribeSubnets", &e))?
                        .subnets
                        .unwrap_or_default(),
                );
            }
            // Shared subnets are tagged only once keelson has applied; find them by id before.
            let missing: Vec<String> = scope
                .shared
                .iter()
                .filter(|(id, a)| {
                    a.kind == Kind::Subnet
                        && !subnets.iter().any(|s| s.subnet_id() == Some(id.as_str()))
                })
                .map(|(id, _)| id.clone())
                .collect();
            if !missing.is_empty() {
                let out = ec2
                    .describe_subnets()
                    .filters(
                        Filter::builder()
                            .name("subnet-id")
                            .set_values(Some(missing))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| call_error("DescribeSubnets", &e))?;
                subnets.extend(out.subnets.unwrap_or_default());
            }
            let mut found = Vec::new();
            for s in subnets {
                let (Some(id), Some(vpc), Some(zone), Some(cidr)) = (
                    s.subnet_id(),
                    s.vpc_id(),
                    s.availability_zone(),
                    s.cidr_block().and_then(|c| c.parse().ok()),
                ) else {
                    continue;
                };
                let tags = from_tags(s.tags());
                let Some((name, owned)) = identify(id, &tags, scope) else {
                    continue;
                };
                found.push(Found {
                    id: id.to_string(),
                    resource: Resource::Subnet(Subnet {
                        name,
                        vpc: Address::foreign(Kind::Vpc, vpc),
                        cidr,
                        zone: zone.to_string(),
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
            let s = expect(r, subnet);
            let out = ec2
                .create_subnet()
                .vpc_id(ids.id(&s.vpc)?)
                .cidr_block(s.cidr.to_string())
                .availability_zone(&s.zone)
                .tag_specifications(tag_spec(ResourceType::Subnet, &s.tags))
                .send()
                .await
                .map_err(|e| call_error("CreateSubnet", &e))?;
            Ok(out
                .subnet()
                .and_then(|s| s.subnet_id())
                .ok_or_else(|| AwsError::Other("CreateSubnet returned no id".into()))?
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
            ec2.delete_subnet()
                .subnet_id(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteSubnet", &e))?;
            Ok(())
        })
    }
}
