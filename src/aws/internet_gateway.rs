//! Internet gateway, attached to the VPC. In a shared VPC keelson uses the gateway
//! already attached and only tags it.

use aws_sdk_ec2::types::{Filter, ResourceType};

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{Address, InternetGateway, Kind, Resource};
use crate::state::BoxFuture;

pub struct InternetGatewayKind;

fn igw(r: &Resource) -> Option<&InternetGateway> {
    match r {
        Resource::InternetGateway(v) => Some(v),
        _ => None,
    }
}

impl ResourceKind for InternetGatewayKind {
    fn kind(&self) -> Kind {
        Kind::InternetGateway
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let filter = match &scope.shared_vpc {
                Some(vpc) => Filter::builder()
                    .name("attachment.vpc-id")
                    .values(vpc)
                    .build(),
                None => cluster_filter(&scope.cluster),
            };
            let out = ec2
                .describe_internet_gateways()
                .filters(filter)
                .send()
                .await
                .map_err(|e| call_error("DescribeInternetGateways", &e))?;
            let mut found = Vec::new();
            for g in out.internet_gateways() {
                let Some(id) = g.internet_gateway_id() else {
                    continue;
                };
                let tags = from_tags(g.tags());
                let vpc = g.attachments().first().and_then(|a| a.vpc_id());
                let (name, owned) = match (&scope.shared_vpc, vpc) {
                    // The gateway of a shared VPC is shared too, whatever it is named.
                    (Some(shared), Some(v)) if v == shared => (scope.cluster.clone(), false),
                    _ => match identify(id, &tags, scope) {
                        Some(x) => x,
                        None => continue,
                    },
                };
                found.push(Found {
                    id: id.to_string(),
                    resource: Resource::InternetGateway(InternetGateway {
                        name,
                        vpc: Address::foreign(Kind::Vpc, vpc.unwrap_or("detached")),
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
            let g = expect(r, igw);
            let vpc = ids.id(&g.vpc)?;
            let out = ec2
                .create_internet_gateway()
                .tag_specifications(tag_spec(ResourceType::InternetGateway, &g.tags))
                .send()
                .await
                .map_err(|e| call_error("CreateInternetGateway", &e))?;
            let id = out
                .internet_gateway()
                .and_then(|g| g.internet_gateway_id())
                .ok_or_else(|| AwsError::Other("CreateInternetGateway returned no id".into()))?
                .to_string();
            once_visible(|| async {
                ec2.attach_internet_gateway()
                    .internet_gateway_id(&id)
                    .vpc_id(&vpc)
                    .send()
                    .await
                    .map_err(|e| call_error("AttachInternetGateway", &e))
            })
            .await?;
            Ok(id)
        })
    }

    fn delete<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        existing: &'a Resource,
        ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            if let Ok(vpc) = ids.id(&expect(existing, igw).vpc)
                && vpc.starts_with("vpc-")
            {
                ec2.detach_internet_gateway()
                    .internet_gateway_id(id)
                    .vpc_id(vpc)
                    .send()
                    .await
                    .map_err(|e| call_error("DetachInternetGateway", &e))?;
            }
            ec2.delete_internet_gateway()
                .internet_gateway_id(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteInternetGateway", &e))?;
            Ok(())
        })
    }
}
