//! NAT gateways, one per zone (or one in all). Created with a client token
//! derived from the cluster and address, so a retried create after a crash
//! returns the same gateway instead of a second one; waited for until available
//! (immediate on the emulator, minutes on AWS: `settle`, while the routes to it
//! are made) and, on delete, until deleted.

use std::time::{Duration, Instant};

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, NatGatewayState, ResourceType};

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{Address, Kind, NatGateway, Resource};
use crate::state::BoxFuture;

pub struct NatGatewayKind;

/// How long a NAT gateway may take to become available or to go away.
pub const WAIT: Duration = Duration::from_secs(600);

fn nat(r: &Resource) -> Option<&NatGateway> {
    match r {
        Resource::NatGateway(v) => Some(v),
        _ => None,
    }
}

async fn wait_for(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    want: NatGatewayState,
) -> Result<(), AwsError> {
    let deadline = Instant::now() + WAIT;
    let mut delay = Duration::from_millis(200);
    loop {
        let out = match ec2.describe_nat_gateways().nat_gateway_ids(id).send().await {
            Ok(out) => out,
            // Asked by id, AWS answers NatGatewayNotFound for a gateway it does
            // not show yet (EC2's eventual consistency, right after the create)
            // as for one long gone: the first is still pending, the second done.
            Err(e) if e.code() == Some("NatGatewayNotFound") => {
                if want == NatGatewayState::Deleted {
                    return Ok(());
                }
                aws_sdk_ec2::operation::describe_nat_gateways::DescribeNatGatewaysOutput::builder()
                    .build()
            }
            Err(e) => return Err(call_error("DescribeNatGateways", &e)),
        };
        let state = out.nat_gateways().first().and_then(|n| n.state().cloned());
        match state {
            Some(s) if s == want => return Ok(()),
            Some(NatGatewayState::Failed) if want == NatGatewayState::Available => {
                let why = out
                    .nat_gateways()
                    .first()
                    .and_then(|n| n.failure_message())
                    .unwrap_or("no reason given");
                return Err(AwsError::Other(format!("NAT gateway {id} failed: {why}")));
            }
            None if want == NatGatewayState::Deleted => return Ok(()),
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(AwsError::Other(format!(
                "NAT gateway {id} is not {} after {}s; rerun to keep waiting",
                want.as_str(),
                WAIT.as_secs()
            )));
        }
        tokio::time::sleep(delay).await;
        // At most 5 s between polls (botocore's waiter polls every 15 s): a
        // poll is a cheap Describe, and on the critical path (a NAT gateway is
        // pending 60-150 s) a 15 s step would add 7 s on average.
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

impl ResourceKind for NatGatewayKind {
    fn kind(&self) -> Kind {
        Kind::NatGateway
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            // Every state but deleted: a pending gateway must be waited for, not
            // duplicated, and a failed one is replaced.
            let states = Filter::builder()
                .name("state")
                .values("pending")
                .values("available")
                .values("failed")
                .values("deleting")
                .build();
            let out = ec2
                .describe_nat_gateways()
                .filter(cluster_filter(&scope.cluster))
                .filter(states)
                .send()
                .await
                .map_err(|e| call_error("DescribeNatGateways", &e))?;
            let mut found = Vec::new();
            for n in out.nat_gateways() {
                let (Some(id), Some(subnet)) = (n.nat_gateway_id(), n.subnet_id()) else {
                    continue;
                };
                let tags = from_tags(n.tags());
                let Some((name, owned)) = identify(id, &tags, scope) else {
                    continue;
                };
                let eip = n
                    .nat_gateway_addresses()
                    .first()
                    .and_then(|a| a.allocation_id())
                    .unwrap_or("none");
                found.push(Found {
                    id: id.to_string(),
                    resource: Resource::NatGateway(NatGateway {
                        name,
                        subnet: Address::foreign(Kind::Subnet, subnet),
                        elastic_ip: Address::foreign(Kind::ElasticIp, eip),
                        tags,
                    }),
                    owned,
                    state: n.state().map(|s| s.as_str().to_string()),
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
        token: &'a str,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let n = expect(r, nat);
            let out = ec2
                .create_nat_gateway()
                .subnet_id(ids.id(&n.subnet)?)
                .allocation_id(ids.id(&n.elastic_ip)?)
                .client_token(token)
                .tag_specifications(tag_spec(ResourceType::Natgateway, &n.tags))
                .send()
                .await
                .map_err(|e| call_error("CreateNatGateway", &e))?;
            let id = out
                .nat_gateway()
                .and_then(|n| n.nat_gateway_id())
                .ok_or_else(|| AwsError::Other("CreateNatGateway returned no id".into()))?
                .to_string();
            Ok(id)
        })
    }

    /// Until `available`: the executor lets the routes to it be made meanwhile.
    fn settle<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
    ) -> Option<BoxFuture<'a, Result<(), AwsError>>> {
        Some(Box::pin(wait_for(&aws.ec2, id, NatGatewayState::Available)))
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
            ec2.delete_nat_gateway()
                .nat_gateway_id(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteNatGateway", &e))?;
            // Its address and subnet stay in use until it is really gone.
            wait_for(ec2, id, NatGatewayState::Deleted).await
        })
    }
}
