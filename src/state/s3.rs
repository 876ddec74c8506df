//! `s3://bucket[/prefix]`: the state store in S3. Objects are written with
//! server-side encryption; the lock uses a conditional put (`If-None-Match: *`).

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption};

use super::{Backend, BoxFuture, StateError};

pub struct S3Backend {
    client: Client,
    bucket: String,
    prefix: String,
}

/// S3's rules for bucket names, enough to reject typos before any request.
pub fn is_bucket_name(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

fn client(aws: &aws_config::SdkConfig, region: Option<String>) -> Client {
    let mut b = aws_sdk_s3::config::Builder::from(aws);
    // A custom endpoint (a local emulator, an S3-compatible store) rarely resolves
    // virtual-hosted bucket names such as bucket.localhost.
    if aws.endpoint_url().is_some() {
        b = b.force_path_style(true);
    }
    if let Some(r) = region {
        b = b.region(aws_sdk_s3::config::Region::new(r));
    }
    Client::from_conf(b.build())
}

fn message<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &SdkError<E, HttpResponse>,
) -> String {
    crate::aws::describe(e)
}

impl S3Backend {
    /// Checks the bucket exists (following it to its own region) and whether it is
    /// versioned; a warning is returned when it is not.
    pub async fn open(
        aws: &aws_config::SdkConfig,
        bucket: &str,
        prefix: &str,
        writes: bool,
    ) -> Result<(S3Backend, Vec<String>), StateError> {
        let mut client = client(aws, None);
        let head = client.head_bucket().bucket(bucket).send().await;
        if let Err(e) = &head {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let region = e
                .raw_response()
                .and_then(|r| r.headers().get("x-amz-bucket-region"))
                .map(str::to_string);
            match (status, region) {
                (Some(301), Some(region)) => client = self::client(aws, Some(region)),
                (Some(404), _) => {
                    return Err(StateError::BucketMissing {
                        bucket: bucket.to_string(),
                    });
                }
                (Some(403), _) => {
                    return Err(StateError::AccessDenied {
                        bucket: bucket.to_string(),
                        message: message(e),
                    });
                }
                _ => {
                    return Err(StateError::Backend {
                        store: format!("s3://{bucket}"),
                        operation: "check bucket",
                        key: String::new(),
                        message: message(e),
                    });
                }
            }
        }
        let mut warnings = Vec::new();
        // Only a writer needs to hear that its writes cannot be recovered.
        if !writes {
            let prefix = prefix.trim_matches('/').to_string();
            return Ok((
                S3Backend {
                    client,
                    bucket: bucket.to_string(),
                    prefix,
                },
                warnings,
            ));
        }
        let versioned = match client.get_bucket_versioning().bucket(bucket).send().await {
            Ok(v) => Ok(v.status() == Some(&BucketVersioningStatus::Enabled)),
            // moto answers an unversioned bucket with a body the SDK cannot parse
            // (root GetBucketVersioningResponse); a 200 here means "no status".
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(200) => Ok(false),
            Err(e) => Err(message(&e)),
        };
        match versioned {
            Ok(true) => {}
            Ok(false) => warnings.push(format!(
                "S3 bucket {bucket:?} is not versioned, so an overwritten spec cannot be recovered; turn versioning on with `aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled`"
            )),
            Err(m) => warnings.push(format!("could not read the versioning of S3 bucket {bucket:?}: {m}")),
        }
        let prefix = prefix.trim_matches('/').to_string();
        Ok((
            S3Backend {
                client,
                bucket: bucket.to_string(),
                prefix,
            },
            warnings,
        ))
    }

    fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn err<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        operation: &'static str,
        key: &str,
        e: &SdkError<E, HttpResponse>,
    ) -> StateError {
        if e.raw_response().map(|r| r.status().as_u16()) == Some(403) {
            return StateError::AccessDenied {
                bucket: self.bucket.clone(),
                message: message(e),
            };
        }
        StateError::Backend {
            store: format!("s3://{}", self.bucket),
            operation,
            key: self.key(key),
            message: message(e),
        }
    }
}

impl Backend for S3Backend {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>> {
        Box::pin(async move {
            match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(self.key(key))
                .send()
                .await
            {
                Ok(out) => {
                    let body = out.body.collect().await.map_err(|e| StateError::Backend {
                        store: format!("s3://{}", self.bucket),
                        operation: "read",
                        key: self.key(key),
                        message: e.to_string(),
                    })?;
                    Ok(Some(body.to_vec()))
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                Err(e) => Err(self.err("read", key, &e)),
            }
        })
    }

    fn put<'a>(&'a self, key: &'a str, body: Vec<u8>) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.key(key))
                .server_side_encryption(ServerSideEncryption::Aes256)
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.err("write", key, &e))
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a str,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(async move {
            let put = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(self.key(key))
                .if_none_match("*")
                .server_side_encryption(ServerSideEncryption::Aes256)
                .body(ByteStream::from(body))
                .send()
                .await;
            match put {
                Ok(_) => Ok(true),
                // 412: the object exists; 409: a concurrent conditional write won.
                Err(e)
                    if matches!(
                        e.raw_response().map(|r| r.status().as_u16()),
                        Some(412 | 409)
                    ) =>
                {
                    Ok(false)
                }
                Err(e) => Err(self.err("write", key, &e)),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(self.key(key))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.err("delete", key, &e))
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StateError>> {
        Box::pin(async move {
            let full = self.key(prefix);
            let strip = if self.prefix.is_empty() {
                0
            } else {
                self.prefix.len() + 1
            };
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .into_paginator()
                .send();
            let mut keys = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.err("list", prefix, &e))?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key())
                        .map(|k| k[strip..].to_string()),
                );
            }
            keys.sort();
            Ok(keys)
        })
    }
}
