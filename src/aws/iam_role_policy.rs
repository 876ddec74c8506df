//! A role's inline policy, named after the role. One GetRolePolicy per role of
//! the cluster (IAM has no bulk read of inline policies).

use super::kind::*;
use super::{AwsError, call_error};
use crate::model::{IamRolePolicy, Kind, Resource};
use crate::state::BoxFuture;

pub struct IamRolePolicyKind;

fn policy(r: &Resource) -> Option<&IamRolePolicy> {
    match r {
        Resource::IamRolePolicy(v) => Some(v),
        _ => None,
    }
}

impl ResourceKind for IamRolePolicyKind {
    fn kind(&self) -> Kind {
        Kind::IamRolePolicy
    }

    fn discover<'a>(
        &'a self,
        _aws: &'a Clients,
        _scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        // Found with its role.
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
            let p = expect(r, policy);
            let role = ids.id(&p.role)?;
            aws.iam
                .put_role_policy()
                .role_name(&role)
                .policy_name(&role)
                .policy_document(p.document.to_string())
                .send()
                .await
                .map_err(|e| call_error("PutRolePolicy", &e))?;
            Ok(role)
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
            // PutRolePolicy replaces the document whole.
            self.create(aws, r, ids, "").await.map(|_| None)
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
            aws.iam
                .delete_role_policy()
                .role_name(id)
                .policy_name(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteRolePolicy", &e))?;
            Ok(())
        })
    }
}
