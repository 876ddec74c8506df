//! DHCP options, associated with the cluster's VPC. They cannot be modified: a
//! change replaces them (create, associate, delete the old).

use aws_sdk_ec2::types::{NewDhcpConfiguration, ResourceType};

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{Address, DhcpOptions, Kind, Resource};
use crate::state::BoxFuture;

pub struct DhcpOptionsKind;

fn opts(r: &Resource) -> Option<&DhcpOptions> {
    match r {
        Resource::DhcpOptions(v) => Some(v),
        _ => None,
    }
}

impl ResourceKind for DhcpOptionsKind {
    fn kind(&self) -> Kind {
        Kind::DhcpOptions
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let out = ec2
                .describe_dhcp_options()
                .filters(cluster_filter(&scope.cluster))
                .send()
                .await
                .map_err(|e| call_error("DescribeDhcpOptions", &e))?;
            let mut found = Vec::new();
            for o in out.dhcp_options() {
                let Some(id) = o.dhcp_options_id() else {
                    continue;
                };
                let tags = from_tags(o.tags());
                let Some((name, owned)) = identify(id, &tags, scope) else {
                    continue;
                };
                let value = |key: &str| -> Vec<String> {
                    o.dhcp_configurations()
                        .iter()
                        .filter(|c| c.key() == Some(key))
                        .flat_map(|c| {
                            c.values()
                                .iter()
                                .filter_map(|v| v.value().map(str::to_string))
                        })
                        .collect()
                };
                found.push(Found {
                    id: id.to_string(),
                    resource: Resource::DhcpOptions(DhcpOptions {
                        name,
                        domain_name: value("domain-name").join(" "),
                        domain_name_servers: value("domain-name-servers"),
                        // Filled by discovery from the VPC that uses these options.
                        vpc: Address::foreign(Kind::Vpc, "not associated"),
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
            let o = expect(r, opts);
            let vpc = ids.id(&o.vpc)?;
            let out = ec2
                .create_dhcp_options()
                .dhcp_configurations(
                    NewDhcpConfiguration::builder()
                        .key("domain-name")
                        .values(&o.domain_name)
                        .build(),
                )
                .dhcp_configurations(
                    NewDhcpConfiguration::builder()
                        .key("domain-name-servers")
                        .set_values(Some(o.domain_name_servers.clone()))
                        .build(),
                )
                .tag_specifications(tag_spec(ResourceType::DhcpOptions, &o.tags))
                .send()
                .await
                .map_err(|e| call_error("CreateDhcpOptions", &e))?;
            let id = out
                .dhcp_options()
                .and_then(|d| d.dhcp_options_id())
                .ok_or_else(|| AwsError::Other("CreateDhcpOptions returned no id".into()))?
                .to_string();
            // Some AWS-compatible endpoints drop tags given at creation; repeat them.
            once_visible(|| retag(ec2, &id, &o.tags)).await?;
            once_visible(|| async {
                ec2.associate_dhcp_options()
                    .dhcp_options_id(&id)
                    .vpc_id(&vpc)
                    .send()
                    .await
                    .map_err(|e| call_error("AssociateDhcpOptions", &e))
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
            // Options in use cannot be deleted: hand the VPC back to the default set first.
            if let Ok(vpc) = ids.id(&expect(existing, opts).vpc)
                && vpc.starts_with("vpc-")
            {
                let _ = ec2
                    .associate_dhcp_options()
                    .dhcp_options_id("default")
                    .vpc_id(vpc)
                    .send()
                    .await;
            }
            ec2.delete_dhcp_options()
                .dhcp_options_id(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteDhcpOptions", &e))?;
            Ok(())
        })
    }
}
