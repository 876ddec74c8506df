//! `s3://bucket[/prefix]`: the state store in S3. Objects are written with
//! server-side encryption; the lock uses a conditional put (`If-None-Match: *`).

use std::sync::RwLock;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption};

use super::{Backend, BoxFuture, Listed, StateError};

pub struct S3Backend {
    aws: aws_config::SdkConfig,
    /// Replaced once if S3 says the bucket lives in another region.
    client: RwLock<Client>,
    bucket: String,
    prefix: String,
}

/// When opening the store reads the bucket's versioning (and warns when it is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// A reader: never.
    Skip,
    /// A writer: the first time this machine writes to the bucket (remembered in
    /// keelson's cache directory).
    Once,
    /// `create cluster`: every time.
    Always,
}

/// The file that records that the bucket's versioning was checked from here:
/// `versioning-checked/BUCKET` under keelson's cache directory.
fn versioning_marker(bucket: &str) -> Option<std::path::PathBuf> {
    super::cache::cache_root().map(|r| r.join("versioning-checked").join(bucket))
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

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// The bucket's region when S3 refused a request for being sent to another one
/// (301 PermanentRedirect, or 400 AuthorizationHeaderMalformed, both carry it).
fn redirect<E>(e: &SdkError<E, HttpResponse>, current: Option<&str>) -> Option<String> {
    let region = e
        .raw_response()?
        .headers()
        .get("x-amz-bucket-region")?
        .to_string();
    (Some(region.as_str()) != current).then_some(region)
}

impl S3Backend {
    /// Opens the bucket. A reader sends nothing here: its first request tells a
    /// missing bucket or another region (a no-op plan pays for every request). A
    /// writer reads the bucket's versioning, warning when it is off.
    pub async fn open(
        aws: &aws_config::SdkConfig,
        bucket: &str,
        prefix: &str,
        check: Versioning,
    ) -> Result<(S3Backend, Vec<String>), StateError> {
        let backend = S3Backend {
            aws: aws.clone(),
            client: RwLock::new(client(aws, None)),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        };
        let mut warnings = Vec::new();
        // Only a writer needs to hear that its writes cannot be recovered, and
        // once per bucket is enough (create always checks: that is when it matters).
        let marker = versioning_marker(bucket);
        let skip = match check {
            Versioning::Skip => true,
            Versioning::Once => marker.as_ref().is_some_and(|m| m.exists()),
            Versioning::Always => false,
        };
        if skip {
            return Ok((backend, warnings));
        }
        let versioning = backend
            .send(|c| async move { c.get_bucket_versioning().bucket(bucket).send().await })
            .await;
        // Only an answer that says so is "not versioned": one that could not be
        // read says nothing either way.
        let versioned = match versioning {
            Ok(v) => Ok(v.status() == Some(&BucketVersioningStatus::Enabled)),
            Err(e) if status(&e) == Some(404) => {
                return Err(StateError::BucketMissing {
                    bucket: bucket.to_string(),
                });
            }
            Err(e) if status(&e) == Some(200) => {
                Err("S3 answered with a body that is not a VersioningConfiguration".to_string())
            }
            Err(e) => Err(message(&e)),
        };
        match versioned {
            Ok(true) => {}
            Ok(false) => warnings.push(format!(
                "S3 bucket {bucket:?} is not versioned, so an overwritten spec cannot be recovered; turn versioning on with `aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled`"
            )),
            Err(m) => warnings.push(format!(
                "could not read the versioning of S3 bucket {bucket:?} ({m}); check it with `aws s3api get-bucket-versioning --bucket {bucket}`: without versioning an overwritten spec cannot be recovered"
            )),
        }
        // Checked (and said, if there was anything to say): later writers skip it.
        if let Some(m) = marker {
            let _ = m.parent().map(std::fs::create_dir_all);
            let _ = std::fs::write(&m, b"");
        }
        Ok((backend, warnings))
    }

    /// Sends a request; if S3 answers that the bucket lives in another region, the
    /// client moves there (for every later request too) and sends it again.
    async fn send<T, E, F, Fut>(&self, call: F) -> Result<T, SdkError<E, HttpResponse>>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        let current = self.client.read().expect("S3 client lock").clone();
        let first = call(current.clone()).await;
        let region = match &first {
            Err(e) => redirect(e, current.config().region().map(|r| r.as_ref())),
            Ok(_) => None,
        };
        let Some(region) = region else {
            return first;
        };
        let moved = client(&self.aws, Some(region));
        *self.client.write().expect("S3 client lock") = moved.clone();
        call(moved).await
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
        if status(e) == Some(403) {
            return StateError::AccessDenied {
                bucket: self.bucket.clone(),
                message: message(e),
            };
        }
        if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchBucket") {
            return StateError::BucketMissing {
                bucket: self.bucket.clone(),
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
        Box::pin(async move { Ok(self.get_versioned(key).await?.map(|(body, _)| body)) })
    }

    fn get_versioned<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<super::Versioned>, StateError>> {
        Box::pin(async move {
            let (bucket, full) = (&self.bucket, self.key(key));
            let got = self
                .send(|c| {
                    let full = full.clone();
                    async move { c.get_object().bucket(bucket).key(full).send().await }
                })
                .await;
            match got {
                Ok(out) => {
                    let etag = out.e_tag().unwrap_or_default().to_string();
                    let body = out.body.collect().await.map_err(|e| StateError::Backend {
                        store: format!("s3://{}", self.bucket),
                        operation: "read",
                        key: full.clone(),
                        message: e.to_string(),
                    })?;
                    Ok(Some((body.to_vec(), etag)))
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                Err(e) => Err(self.err("read", key, &e)),
            }
        })
    }

    fn put<'a>(&'a self, key: &'a str, body: Vec<u8>) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let (bucket, full) = (&self.bucket, self.key(key));
            self.send(|c| {
                let (full, body) = (full.clone(), body.clone());
                async move {
                    c.put_object()
                        .bucket(bucket)
                        .key(full)
                        .server_side_encryption(ServerSideEncryption::Aes256)
                        .body(ByteStream::from(body))
                        .send()
                        .await
                }
            })
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
            let (bucket, full) = (&self.bucket, self.key(key));
            let put = self
                .send(|c| {
                    let (full, body) = (full.clone(), body.clone());
                    async move {
                        c.put_object()
                            .bucket(bucket)
                            .key(full)
                            .if_none_match("*")
                            .server_side_encryption(ServerSideEncryption::Aes256)
                            .body(ByteStream::from(body))
                            .send()
                            .await
                    }
                })
                .await;
            match put {
                Ok(_) => Ok(true),
                // 412: the object exists; 409: a concurrent conditional write won.
                Err(e) if matches!(status(&e), Some(412 | 409)) => Ok(false),
                Err(e) => Err(self.err("write", key, &e)),
            }
        })
    }

    fn put_if_match<'a>(
        &'a self,
        key: &'a str,
        body: Vec<u8>,
        version: &'a str,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(async move {
            let (bucket, full) = (&self.bucket, self.key(key));
            let put = self
                .send(|c| {
                    let (full, body) = (full.clone(), body.clone());
                    async move {
                        c.put_object()
                            .bucket(bucket)
                            .key(full)
                            .if_match(version)
                            .server_side_encryption(ServerSideEncryption::Aes256)
                            .body(ByteStream::from(body))
                            .send()
                            .await
                    }
                })
                .await;
            match put {
                Ok(_) => Ok(true),
                // 412: the object moved on; 409: a concurrent conditional write won;
                // 404: it was deleted meanwhile (S3's conditional-write documentation).
                Err(e) if matches!(status(&e), Some(412 | 409 | 404)) => Ok(false),
                Err(e) => Err(self.err("write", key, &e)),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let (bucket, full) = (&self.bucket, self.key(key));
            self.send(|c| {
                let full = full.clone();
                async move { c.delete_object().bucket(bucket).key(full).send().await }
            })
            .await
            .map(|_| ())
            .map_err(|e| self.err("delete", key, &e))
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StateError>> {
        Box::pin(async move {
            let tagged = self.list_tagged(prefix).await?;
            Ok(tagged.into_iter().map(|(k, _)| k).collect())
        })
    }

    fn list_tagged<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Listed>, StateError>> {
        Box::pin(async move {
            let (bucket, full) = (&self.bucket, self.key(prefix));
            let strip = if self.prefix.is_empty() {
                0
            } else {
                self.prefix.len() + 1
            };
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .send(|c| {
                        let (full, token) = (full.clone(), token.clone());
                        async move {
                            c.list_objects_v2()
                                .bucket(bucket)
                                .prefix(full)
                                .set_continuation_token(token)
                                .send()
                                .await
                        }
                    })
                    .await
                    .map_err(|e| self.err("list", prefix, &e))?;
                keys.extend(page.contents().iter().filter_map(|o| {
                    Some((o.key()?[strip..].to_string(), o.e_tag().map(str::to_string)))
                }));
                token = page.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            keys.sort();
            Ok(keys)
        })
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};

    async fn url(bucket: &str) -> String {
        let params = Params::builder()
            .region("us-east-1")
            .bucket(bucket)
            .use_fips(false)
            .use_dual_stack(false)
            .accelerate(false)
            .build()
            .unwrap();
        DefaultResolver::new()
            .resolve_endpoint(&params)
            .await
            .unwrap()
            .url()
            .to_string()
    }

    /// On AWS (no endpoint override) the SDK's own S3 rules address a bucket
    /// whose name has dots by path, since `*.s3.amazonaws.com`'s certificate
    /// cannot cover `a.b.s3.amazonaws.com`; the instances' fetch stub does the
    /// same by hand (templates/bootstrap/fetch-agent.sh).
    #[tokio::test]
    async fn a_dotted_bucket_is_addressed_by_path() {
        assert_eq!(
            url("state.example.com").await,
            "https://s3.us-east-1.amazonaws.com/state.example.com"
        );
        assert_eq!(
            url("state-example").await,
            "https://state-example.s3.us-east-1.amazonaws.com"
        );
        let stub = include_str!("../../templates/bootstrap/fetch-agent.sh");
        for line in stub.lines().filter(|l| l.contains("https://")) {
            assert!(
                line.contains("amazonaws.com/$KEELSON_STATE_BUCKET"),
                "a virtual-hosted URL in the fetch stub: {line}"
            );
        }
    }
}
