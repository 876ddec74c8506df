//! Existing networks (`--network-id`, `--subnets`): read once at create time so the
//! spec records their CIDRs and zones. keelson never changes or deletes them.

use aws_sdk_ec2::types::Filter;

use super::{AwsError, call_error};
use crate::spec::Ipv4Cidr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingSubnet {
    pub id: String,
    pub vpc_id: String,
    pub zone: String,
    pub cidr: Ipv4Cidr,
}

/// The VPC's primary CIDR, or `None` if there is no such VPC.
pub async fn vpc_cidr(
    ec2: &aws_sdk_ec2::Client,
    vpc_id: &str,
) -> Result<Option<Ipv4Cidr>, AwsError> {
    let out = ec2
        .describe_vpcs()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await
        .map_err(|e| call_error("DescribeVpcs", &e))?;
    Ok(out
        .vpcs()
        .first()
        .and_then(|v| v.cidr_block())
        .and_then(|c| c.parse().ok()))
}

/// The subnets with these ids that exist (one paginated call for all of them).
pub async fn subnets(
    ec2: &aws_sdk_ec2::Client,
    ids: &[String],
) -> Result<Vec<ExistingSubnet>, AwsError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pages = ec2
        .describe_subnets()
        .filters(
            Filter::builder()
                .name("subnet-id")
                .set_values(Some(ids.to_vec()))
                .build(),
        )
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| call_error("DescribeSubnets", &e))?;
        for s in page.subnets() {
            if let (Some(id), Some(vpc), Some(zone), Some(cidr)) = (
                s.subnet_id(),
                s.vpc_id(),
                s.availability_zone(),
                s.cidr_block().and_then(|c| c.parse().ok()),
            ) {
                found.push(ExistingSubnet {
                    id: id.into(),
                    vpc_id: vpc.into(),
                    zone: zone.into(),
                    cidr,
                });
            }
        }
    }
    Ok(found)
}
