//! The admin key pair, imported from the stored public key and tagged at import.

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::ResourceType;

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{KeyPair, Kind, Resource};
use crate::state::BoxFuture;

pub struct KeyPairKind;

fn key(r: &Resource) -> Option<&KeyPair> {
    match r {
        Resource::KeyPair(v) => Some(v),
        _ => None,
    }
}

impl ResourceKind for KeyPairKind {
    fn kind(&self) -> Kind {
        Kind::KeyPair
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let out = ec2
                .describe_key_pairs()
                .filters(cluster_filter(&scope.cluster))
                .send()
                .await
                .map_err(|e| call_error("DescribeKeyPairs", &e))?;
            let mut found = Vec::new();
            for k in out.key_pairs() {
                let (Some(id), Some(name)) = (k.key_pair_id(), k.key_name()) else {
                    continue;
                };
                let tags = from_tags(k.tags());
                let Some((_, owned)) = identify(id, &tags, scope) else {
                    continue;
                };
                // The key's own name is its identity (it carries the fingerprint).
                found.push(Found {
                    id: name.to_string(),
                    resource: Resource::KeyPair(KeyPair {
                        name: name.to_string(),
                        public_key: String::new(),
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
        _ids: &'a dyn Ids,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let k = expect(r, key);
            ec2.import_key_pair()
                .key_name(&k.name)
                .public_key_material(Blob::new(k.public_key.as_bytes()))
                .tag_specifications(tag_spec(ResourceType::KeyPair, &k.tags))
                .send()
                .await
                .map_err(|e| call_error("ImportKeyPair", &e))?;
            Ok(k.name.clone())
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
            ec2.delete_key_pair()
                .key_name(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteKeyPair", &e))?;
            Ok(())
        })
    }
}
