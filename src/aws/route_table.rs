//! Route tables. Their routes and subnet associations carry no tags; they are
//! discovered here, through their table, in the same call.

use aws_sdk_ec2::types::ResourceType;

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{Address, Kind, Resource, Route, RouteTable, RouteTableAssociation};
use crate::state::BoxFuture;

pub struct RouteTableKind;

fn table(r: &Resource) -> Option<&RouteTable> {
    match r {
        Resource::RouteTable(v) => Some(v),
        _ => None,
    }
}

impl ResourceKind for RouteTableKind {
    fn kind(&self) -> Kind {
        Kind::RouteTable
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let mut tables = Vec::new();
            let mut pages = ec2
                .describe_route_tables()
                .filters(cluster_filter(&scope.cluster))
                .into_paginator()
                .send();
            while let Some(p) = pages.next().await {
                tables.extend(
                    p.map_err(|e| call_error("DescribeRouteTables", &e))?
                        .route_tables
                        .unwrap_or_default(),
                );
            }
            let mut found = Vec::new();
            for t in tables {
                let (Some(id), Some(vpc)) = (t.route_table_id(), t.vpc_id()) else {
                    continue;
                };
                let tags = from_tags(t.tags());
                let Some((name, owned)) = identify(id, &tags, scope) else {
                    continue;
                };
                let me = Address::foreign(Kind::RouteTable, id);
                // Only default routes are keelson's; the local route and any a user
                // added are left alone.
                for r in t.routes() {
                    if r.destination_cidr_block() != Some("0.0.0.0/0") {
                        continue;
                    }
                    let target = match (r.nat_gateway_id(), r.gateway_id()) {
                        (Some(nat), _) => Address::foreign(Kind::NatGateway, nat),
                        (None, Some(gw)) => Address::foreign(Kind::InternetGateway, gw),
                        _ => continue,
                    };
                    found.push(Found {
                        id: format!("{id}:0.0.0.0/0"),
                        resource: Resource::Route(Route {
                            route_table: me.clone(),
                            destination: "0.0.0.0/0".parse().unwrap(),
                            target,
                        }),
                        owned,
                        state: r
                            .state()
                            .map(|s| s.as_str().to_string())
                            .filter(|s| s != "active"),
                        links: Vec::new(),
                    });
                }
                for a in t.associations() {
                    let (Some(assoc), Some(subnet)) =
                        (a.route_table_association_id(), a.subnet_id())
                    else {
                        continue;
                    };
                    found.push(Found {
                        id: assoc.to_string(),
                        resource: Resource::RouteTableAssociation(RouteTableAssociation {
                            subnet: Address::foreign(Kind::Subnet, subnet),
                            route_table: me.clone(),
                        }),
                        owned,
                        state: None,
                        links: Vec::new(),
                    });
                }
                found.push(Found {
                    id: id.to_string(),
                    resource: Resource::RouteTable(RouteTable {
                        name,
                        vpc: Address::foreign(Kind::Vpc, vpc),
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
            let t = expect(r, table);
            let out = ec2
                .create_route_table()
                .vpc_id(ids.id(&t.vpc)?)
                .tag_specifications(tag_spec(ResourceType::RouteTable, &t.tags))
                .send()
                .await
                .map_err(|e| call_error("CreateRouteTable", &e))?;
            Ok(out
                .route_table()
                .and_then(|t| t.route_table_id())
                .ok_or_else(|| AwsError::Other("CreateRouteTable returned no id".into()))?
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
            ec2.delete_route_table()
                .route_table_id(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteRouteTable", &e))?;
            Ok(())
        })
    }
}

/// Routes and associations are discovered with their table: no call of their own.
pub fn through_parent<'a>() -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
    Box::pin(async { Ok(Vec::new()) })
}
