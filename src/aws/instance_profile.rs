//! Instance profiles, each holding its role; found with one list call under the
//! cluster's IAM path, roles included.

use aws_sdk_iam::types::Tag;

use super::kind::*;
use super::{AwsError, call_error};
use crate::model::{Address, InstanceProfile, Kind, Resource};
use crate::state::BoxFuture;

pub struct InstanceProfileKind;

/// The role of a discovered profile that holds none (IAM role names cannot
/// collide with it: keelson's are named after their cluster).
const NO_ROLE: &str = "none";

fn profile(r: &Resource) -> Option<&InstanceProfile> {
    match r {
        Resource::InstanceProfile(v) => Some(v),
        _ => None,
    }
}

impl ResourceKind for InstanceProfileKind {
    fn kind(&self) -> Kind {
        Kind::InstanceProfile
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
                .list_instance_profiles()
                .path_prefix(&path)
                .into_paginator()
                .send();
            let mut found = Vec::new();
            while let Some(p) = pages.next().await {
                for ip in p
                    .map_err(|e| call_error("ListInstanceProfiles", &e))?
                    .instance_profiles()
                {
                    if ip.path() != path {
                        continue;
                    }
                    let role = ip
                        .roles()
                        .first()
                        .map(|r| Address::new(Kind::IamRole, r.role_name()))
                        .unwrap_or_else(|| Address::foreign(Kind::IamRole, NO_ROLE));
                    found.push(Found {
                        id: ip.instance_profile_name().to_string(),
                        resource: Resource::InstanceProfile(InstanceProfile {
                            name: ip.instance_profile_name().to_string(),
                            path: ip.path().to_string(),
                            role,
                            tags: Default::default(),
                        }),
                        owned: true,
                        state: None,
                        links: Vec::new(),
                    });
                }
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
            let p = expect(r, profile);
            let tags: Vec<Tag> = p
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
            let created = aws
                .iam
                .create_instance_profile()
                .instance_profile_name(&p.name)
                .path(&p.path)
                .set_tags(Some(tags))
                .send()
                .await;
            match created {
                // Left by a run that stopped before adding the role: finish it.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_entity_already_exists_exception()) => {}
                other => {
                    other.map_err(|e| call_error("CreateInstanceProfile", &e))?;
                }
            }
            aws.iam
                .add_role_to_instance_profile()
                .instance_profile_name(&p.name)
                .role_name(ids.id(&p.role)?)
                .send()
                .await
                .map_err(|e| call_error("AddRoleToInstanceProfile", &e))?;
            Ok(p.name.clone())
        })
    }

    fn update<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        r: &'a Resource,
        existing: &'a Resource,
        ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            let want = ids.id(&expect(r, profile).role)?;
            // The role discovery saw in the profile: one at most, or none if a run
            // stopped between creating the profile and adding its role. One that
            // is not keelson's (put there by hand) is known by its name.
            let role = &expect(existing, profile).role;
            let had = ids.id(role).unwrap_or_else(|_| role.name.clone());
            let roles: Vec<String> = (had != NO_ROLE).then_some(had).into_iter().collect();
            for other in roles.iter().filter(|r| **r != want) {
                aws.iam
                    .remove_role_from_instance_profile()
                    .instance_profile_name(id)
                    .role_name(other)
                    .send()
                    .await
                    .map_err(|e| call_error("RemoveRoleFromInstanceProfile", &e))?;
            }
            if !roles.contains(&want) {
                aws.iam
                    .add_role_to_instance_profile()
                    .instance_profile_name(id)
                    .role_name(&want)
                    .send()
                    .await
                    .map_err(|e| call_error("AddRoleToInstanceProfile", &e))?;
            }
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
            let p = expect(existing, profile);
            if !p.role.name.starts_with('<') {
                aws.iam
                    .remove_role_from_instance_profile()
                    .instance_profile_name(id)
                    .role_name(&p.role.name)
                    .send()
                    .await
                    .map_err(|e| call_error("RemoveRoleFromInstanceProfile", &e))?;
            }
            aws.iam
                .delete_instance_profile()
                .instance_profile_name(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteInstanceProfile", &e))?;
            Ok(())
        })
    }
}
