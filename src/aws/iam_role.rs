//! IAM roles under the cluster's IAM path, found with one list call. IAM hands
//! policy documents back URL-encoded; they are compared as JSON.

use aws_sdk_iam::types::Tag;

use super::kind::*;
use super::{AwsError, call_error};
use crate::model::{Address, IamRole, IamRolePolicy, Kind, Resource};
use crate::state::BoxFuture;

pub struct IamRoleKind;

fn role(r: &Resource) -> Option<&IamRole> {
    match r {
        Resource::IamRole(v) => Some(v),
        _ => None,
    }
}

/// RFC 3986 percent-decoding, as IAM encodes policy documents.
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn document(encoded: &str) -> serde_json::Value {
    let text = url_decode(encoded);
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

impl ResourceKind for IamRoleKind {
    fn kind(&self) -> Kind {
        Kind::IamRole
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let path = crate::model::iam::path(&scope.cluster);
            let mut pages = aws
                .iam
                .list_roles()
                .path_prefix(&path)
                .into_paginator()
                .send();
            let mut found = Vec::new();
            // Each role's inline policy (IAM has no bulk read of them), all at once:
            // one round trip after the listing, however many roles.
            let mut policies = tokio::task::JoinSet::new();
            while let Some(p) = pages.next().await {
                for r in p.map_err(|e| call_error("ListRoles", &e))?.roles() {
                    // The path is this cluster's alone: what is under it is ours.
                    if r.path() != path {
                        continue;
                    }
                    let name = r.role_name();
                    found.push(Found {
                        id: name.to_string(),
                        resource: Resource::IamRole(IamRole {
                            name: name.to_string(),
                            path: r.path().to_string(),
                            assume_role_policy: document(
                                r.assume_role_policy_document().unwrap_or("{}"),
                            ),
                            tags: Default::default(),
                        }),
                        owned: true,
                        state: None,
                        links: Vec::new(),
                    });
                    let (iam, name) = (aws.iam.clone(), name.to_string());
                    policies.spawn(async move {
                        let got = iam
                            .get_role_policy()
                            .role_name(&name)
                            .policy_name(&name)
                            .send()
                            .await;
                        match got {
                            Ok(p) => Ok(Some(Found {
                                id: name.clone(),
                                resource: Resource::IamRolePolicy(IamRolePolicy {
                                    role: Address::new(Kind::IamRole, &name),
                                    document: document(p.policy_document()),
                                }),
                                owned: true,
                                state: None,
                                links: Vec::new(),
                            })),
                            Err(e)
                                if e.as_service_error()
                                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
                            {
                                Ok(None)
                            }
                            Err(e) => Err(call_error("GetRolePolicy", &e)),
                        }
                    });
                }
            }
            while let Some(joined) = policies.join_next().await {
                found.extend(joined.expect("policy read panicked")?);
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
            let ro = expect(r, role);
            let tags: Vec<Tag> = ro
                .tags
                .iter()
                .map(|(k, v)| {
                    Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                        .expect("key and value set")
                })
                .collect();
            aws.iam
                .create_role()
                .role_name(&ro.name)
                .path(&ro.path)
                .assume_role_policy_document(ro.assume_role_policy.to_string())
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| call_error("CreateRole", &e))?;
            Ok(ro.name.clone())
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
            let ro = expect(r, role);
            aws.iam
                .update_assume_role_policy()
                .role_name(id)
                .policy_document(ro.assume_role_policy.to_string())
                .send()
                .await
                .map_err(|e| call_error("UpdateAssumeRolePolicy", &e))?;
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
            aws.iam
                .delete_role()
                .role_name(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteRole", &e))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_policies() {
        assert_eq!(
            super::url_decode("%7B%22a%22%3A%20%221%22%7D"),
            "{\"a\": \"1\"}"
        );
        assert_eq!(super::url_decode("100%"), "100%");
    }
}
