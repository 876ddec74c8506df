//! VPC: created with its tags; DNS support and hostnames turned on.

use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, ResourceType, VpcAttributeName};

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{Kind, Resource, Vpc};
use crate::state::BoxFuture;

pub struct VpcKind;

fn vpc(r: &Resource) -> Option<&Vpc> {
    match r {
        Resource::Vpc(v) => Some(v),
        _ => None,
    }
}

async fn set_dns(ec2: &aws_sdk_ec2::Client, id: &str, v: &Vpc) -> Result<(), AwsError> {
    // One attribute per call: the API's rule.
    let on = |b: bool| AttributeBooleanValue::builder().value(b).build();
    ec2.modify_vpc_attribute()
        .vpc_id(id)
        .enable_dns_support(on(v.enable_dns_support))
        .send()
        .await
        .map_err(|e| call_error("ModifyVpcAttribute", &e))?;
    ec2.modify_vpc_attribute()
        .vpc_id(id)
        .enable_dns_hostnames(on(v.enable_dns_hostnames))
        .send()
        .await
        .map_err(|e| call_error("ModifyVpcAttribute", &e))?;
    Ok(())
}

async fn attribute(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    name: VpcAttributeName,
) -> Result<bool, AwsError> {
    let out = ec2
        .describe_vpc_attribute()
        .vpc_id(id)
        .attribute(name)
        .send()
        .await
        .map_err(|e| call_error("DescribeVpcAttribute", &e))?;
    let v = out
        .enable_dns_support()
        .or(out.enable_dns_hostnames())
        .and_then(|a| a.value());
    Ok(v.unwrap_or(false))
}

impl ResourceKind for VpcKind {
    fn kind(&self) -> Kind {
        Kind::Vpc
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let mut vpcs = ec2
                .describe_vpcs()
                .filters(cluster_filter(&scope.cluster))
                .send()
                .await
                .map_err(|e| call_error("DescribeVpcs", &e))?
                .vpcs
                .unwrap_or_default();
            // A shared VPC is tagged only once keelson has applied; find it by id before.
            if let Some(id) = &scope.shared_vpc
                && !vpcs.iter().any(|v| v.vpc_id() == Some(id))
            {
                let out = ec2
                    .describe_vpcs()
                    .filters(Filter::builder().name("vpc-id").values(id).build())
                    .send()
                    .await
                    .map_err(|e| call_error("DescribeVpcs", &e))?;
                vpcs.extend(out.vpcs.unwrap_or_default());
            }
            let mut found = Vec::new();
            for v in vpcs {
                let (Some(id), Some(cidr)) =
                    (v.vpc_id(), v.cidr_block().and_then(|c| c.parse().ok()))
                else {
                    continue;
                };
                let tags = from_tags(v.tags());
                let Some((name, owned)) = identify(id, &tags, scope) else {
                    continue;
                };
                // Only ours are compared field by field; a shared VPC is never changed.
                let (dns_support, dns_hostnames) = if owned {
                    // One attribute a call; both at once.
                    let (support, hostnames) = tokio::join!(
                        attribute(ec2, id, VpcAttributeName::EnableDnsSupport),
                        attribute(ec2, id, VpcAttributeName::EnableDnsHostnames),
                    );
                    (support?, hostnames?)
                } else {
                    (true, true)
                };
                found.push(Found {
                    id: id.to_string(),
                    resource: Resource::Vpc(Vpc {
                        name,
                        cidr,
                        enable_dns_support: dns_support,
                        enable_dns_hostnames: dns_hostnames,
                        tags,
                    }),
                    owned,
                    state: None,
                    links: v
                        .dhcp_options_id()
                        .map(str::to_string)
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
            let v = expect(r, vpc);
            let out = ec2
                .create_vpc()
                .cidr_block(v.cidr.to_string())
                .tag_specifications(tag_spec(ResourceType::Vpc, &v.tags))
                .send()
                .await
                .map_err(|e| call_error("CreateVpc", &e))?;
            let id = out
                .vpc()
                .and_then(|v| v.vpc_id())
                .ok_or_else(|| AwsError::Other("CreateVpc returned no id".into()))?
                .to_string();
            once_visible(|| set_dns(ec2, &id, v)).await?;
            Ok(id)
        })
    }

    fn update<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        r: &'a Resource,
        _existing: &'a Resource,
        _ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let v = expect(r, vpc);
            retag(ec2, id, &v.tags).await?;
            // A shared VPC (desired with only its `shared` tag) keeps its settings.
            if v.tags.contains_key("KubernetesCluster") {
                set_dns(ec2, id, v).await?;
            }
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
            let ec2 = &aws.ec2;
            ec2.delete_vpc()
                .vpc_id(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteVpc", &e))?;
            Ok(())
        })
    }
}
