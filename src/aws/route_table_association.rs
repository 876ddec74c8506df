//! A subnet's association with a route table. Moving it to another table is
//! done in place (ReplaceRouteTableAssociation), which gives it a new id.

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{Kind, Resource, RouteTableAssociation};
use crate::state::BoxFuture;

pub struct RouteTableAssociationKind;

fn assoc(r: &Resource) -> Option<&RouteTableAssociation> {
    match r {
        Resource::RouteTableAssociation(v) => Some(v),
        _ => None,
    }
}

impl ResourceKind for RouteTableAssociationKind {
    fn kind(&self) -> Kind {
        Kind::RouteTableAssociation
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
            let a = expect(r, assoc);
            let out = ec2
                .associate_route_table()
                .route_table_id(ids.id(&a.route_table)?)
                .subnet_id(ids.id(&a.subnet)?)
                .send()
                .await
                .map_err(|e| call_error("AssociateRouteTable", &e))?;
            Ok(out
                .association_id()
                .ok_or_else(|| AwsError::Other("AssociateRouteTable returned no id".into()))?
                .to_string())
        })
    }

    fn update<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        r: &'a Resource,
        _existing: &'a Resource,
        ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let a = expect(r, assoc);
            let out = ec2
                .replace_route_table_association()
                .association_id(id)
                .route_table_id(ids.id(&a.route_table)?)
                .send()
                .await
                .map_err(|e| call_error("ReplaceRouteTableAssociation", &e))?;
            Ok(out.new_association_id().map(str::to_string))
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
            ec2.disassociate_route_table()
                .association_id(id)
                .send()
                .await
                .map_err(|e| call_error("DisassociateRouteTable", &e))?;
            Ok(())
        })
    }
}
