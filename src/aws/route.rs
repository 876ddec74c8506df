//! A default route (0.0.0.0/0) to an internet or NAT gateway. Its id is
//! `TABLE:DESTINATION`; a new target replaces the route in place.

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{Kind, Resource, Route};
use crate::state::BoxFuture;

pub struct RouteKind;

fn route(r: &Resource) -> Option<&Route> {
    match r {
        Resource::Route(v) => Some(v),
        _ => None,
    }
}

impl ResourceKind for RouteKind {
    fn kind(&self) -> Kind {
        Kind::Route
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
            let rt = expect(r, route);
            let table = ids.id(&rt.route_table)?;
            let target = ids.id(&rt.target)?;
            let mut req = ec2
                .create_route()
                .route_table_id(&table)
                .destination_cidr_block(rt.destination.to_string());
            req = if rt.target.kind == Kind::NatGateway {
                req.nat_gateway_id(target)
            } else {
                req.gateway_id(target)
            };
            req.send()
                .await
                .map_err(|e| call_error("CreateRoute", &e))?;
            Ok(format!("{table}:{}", rt.destination))
        })
    }

    fn update<'a>(
        &'a self,
        aws: &'a Clients,
        _id: &'a str,
        r: &'a Resource,
        _existing: &'a Resource,
        ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let rt = expect(r, route);
            let target = ids.id(&rt.target)?;
            let mut req = ec2
                .replace_route()
                .route_table_id(ids.id(&rt.route_table)?)
                .destination_cidr_block(rt.destination.to_string());
            req = if rt.target.kind == Kind::NatGateway {
                req.nat_gateway_id(target)
            } else {
                req.gateway_id(target)
            };
            req.send()
                .await
                .map_err(|e| call_error("ReplaceRoute", &e))?;
            Ok(None)
        })
    }

    fn delete<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        existing: &'a Resource,
        _ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let table = id.split_once(':').map(|(t, _)| t).unwrap_or(id);
            ec2.delete_route()
                .route_table_id(table)
                .destination_cidr_block(expect(existing, route).destination.to_string())
                .send()
                .await
                .map_err(|e| call_error("DeleteRoute", &e))?;
            Ok(())
        })
    }
}
