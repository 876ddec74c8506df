//! One security group rule: authorised and revoked whole, never modified (every
//! field is identity). Discovered with its group.

use aws_sdk_ec2::types::{IpPermission, IpRange, UserIdGroupPair};

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{Direction, Kind, Resource, SecurityGroupRule};
use crate::state::BoxFuture;

pub struct SecurityGroupRuleKind;

fn rule(r: &Resource) -> Option<&SecurityGroupRule> {
    match r {
        Resource::SecurityGroupRule(v) => Some(v),
        _ => None,
    }
}

/// The public address of an elastic IP, by its allocation id.
async fn public_ip(ec2: &aws_sdk_ec2::Client, allocation: &str) -> Result<String, AwsError> {
    let out = ec2
        .describe_addresses()
        .allocation_ids(allocation)
        .send()
        .await
        .map_err(|e| call_error("DescribeAddresses", &e))?;
    out.addresses()
        .first()
        .and_then(|a| a.public_ip())
        .map(str::to_string)
        .ok_or_else(|| AwsError::Other(format!("elastic IP {allocation} has no public address")))
}

async fn permission(
    ec2: &aws_sdk_ec2::Client,
    r: &SecurityGroupRule,
    ids: &dyn Ids,
) -> Result<IpPermission, AwsError> {
    let mut p = IpPermission::builder().ip_protocol(&r.protocol);
    if r.protocol == "tcp" || r.protocol == "udp" {
        p = p.from_port(r.from_port).to_port(r.to_port);
    }
    if let Some(c) = &r.cidr {
        p = p.ip_ranges(IpRange::builder().cidr_ip(c.to_string()).build());
    }
    if let Some(e) = &r.elastic_ip {
        let ip = public_ip(ec2, &ids.id(e)?).await?;
        p = p.ip_ranges(IpRange::builder().cidr_ip(format!("{ip}/32")).build());
    }
    if let Some(g) = &r.source_group {
        p = p.user_id_group_pairs(UserIdGroupPair::builder().group_id(ids.id(g)?).build());
    }
    Ok(p.build())
}

impl ResourceKind for SecurityGroupRuleKind {
    fn kind(&self) -> Kind {
        Kind::SecurityGroupRule
    }

    fn discover<'a>(
        &'a self,
        _aws: &'a Clients,
        _scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        super::route_table::through_parent()
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
            let rl = expect(r, rule);
            let group = ids.id(&rl.group)?;
            let p = permission(ec2, rl, ids).await?;
            let result = match rl.direction {
                Direction::Ingress => ec2
                    .authorize_security_group_ingress()
                    .group_id(&group)
                    .ip_permissions(p)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| call_error("AuthorizeSecurityGroupIngress", &e)),
                Direction::Egress => ec2
                    .authorize_security_group_egress()
                    .group_id(&group)
                    .ip_permissions(p)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| call_error("AuthorizeSecurityGroupEgress", &e)),
            };
            match result {
                // Already there (AWS creates the open egress rule with every group): done.
                Err(e) if e.code() == Some("InvalidPermission.Duplicate") => {}
                other => other?,
            }
            Ok(serde_json::to_string(r).expect("rules serialize"))
        })
    }

    fn delete<'a>(
        &'a self,
        aws: &'a Clients,
        _id: &'a str,
        existing: &'a Resource,
        ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let rl = expect(existing, rule);
            let group = ids.id(&rl.group)?;
            let p = permission(ec2, rl, ids).await?;
            match rl.direction {
                Direction::Ingress => ec2
                    .revoke_security_group_ingress()
                    .group_id(&group)
                    .ip_permissions(p)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| call_error("RevokeSecurityGroupIngress", &e)),
                Direction::Egress => ec2
                    .revoke_security_group_egress()
                    .group_id(&group)
                    .ip_permissions(p)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| call_error("RevokeSecurityGroupEgress", &e)),
            }
        })
    }
}
