//! Elastic IPs for the NAT gateways, tagged at allocation.

use aws_sdk_ec2::types::{DomainType, ResourceType};

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{ElasticIp, Kind, Resource};
use crate::state::BoxFuture;

pub struct ElasticIpKind;

fn eip(r: &Resource) -> Option<&ElasticIp> {
    match r {
        Resource::ElasticIp(v) => Some(v),
        _ => None,
    }
}

impl ResourceKind for ElasticIpKind {
    fn kind(&self) -> Kind {
        Kind::ElasticIp
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let mut call = ec2.describe_addresses();
            if !scope.region_addresses {
                call = call.filters(cluster_filter(&scope.cluster));
            }
            let out = call
                .send()
                .await
                .map_err(|e| call_error("DescribeAddresses", &e))?;
            if scope.region_addresses {
                let _ = aws.region_addresses.set(out.addresses().len() as u64);
            }
            let mut found = Vec::new();
            for a in out.addresses() {
                let Some(id) = a.allocation_id() else {
                    continue;
                };
                let tags = from_tags(a.tags());
                let Some((name, owned)) = identify(id, &tags, scope) else {
                    continue;
                };
                found.push(Found {
                    id: id.to_string(),
                    resource: Resource::ElasticIp(ElasticIp { name, tags }),
                    owned,
                    state: None,
                    // Its address, which security group rules name as a CIDR.
                    links: a
                        .public_ip()
                        .map(|ip| format!("{}{ip}/32", super::discover::ADDRESS_LINK))
                        .into_iter()
                        .collect(),
                });
            }
            Ok(found)
        })
    }

    fn create<'a>(
        &'a self,
        aws: &'a Clients,
        r: &'a Resource,
        _ids: &'a dyn Ids,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let e = expect(r, eip);
            let out = ec2
                .allocate_address()
                .domain(DomainType::Vpc)
                .tag_specifications(tag_spec(ResourceType::ElasticIp, &e.tags))
                .send()
                .await
                .map_err(|e| call_error("AllocateAddress", &e))?;
            Ok(out
                .allocation_id()
                .ok_or_else(|| AwsError::Other("AllocateAddress returned no id".into()))?
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
            ec2.release_address()
                .allocation_id(id)
                .send()
                .await
                .map_err(|e| call_error("ReleaseAddress", &e))?;
            Ok(())
        })
    }
}
