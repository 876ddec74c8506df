//! The state store: where a cluster's specs, keys and lock live. One trait
//! ([`Backend`]) with two implementations: S3 (`s3://bucket[/prefix]`) and a local
//! directory (`file://DIR`). [`StateStore`] adds the typed, cluster-level operations.

pub mod cache;
pub mod file;
pub mod layout;
pub mod lock;
pub mod s3;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::spec::parse::{ParseError, parse_cluster, parse_instance_group, to_yaml};
use crate::spec::{Cluster, InstanceGroup};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Object storage with keys relative to the store's root. Implementations must make
/// `put` atomic (readers see the old or the new object, never a mix) and
/// `put_if_absent` exclusive (of racing callers, exactly one wins).
pub trait Backend: Send + Sync {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>>;
    fn put<'a>(&'a self, key: &'a str, body: Vec<u8>) -> BoxFuture<'a, Result<(), StateError>>;
    /// Writes only if no object exists at `key`; returns whether it wrote.
    fn put_if_absent<'a>(
        &'a self,
        key: &'a str,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<bool, StateError>>;
    /// The object and its version token (S3's ETag), for a later [`Backend::put_if_match`].
    fn get_versioned<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Versioned>, StateError>>;
    /// Writes only if the object is still at `version` (a compare-and-swap: of
    /// racing callers holding the same version, at most one wins); returns whether
    /// it wrote. What the node agent's leader lease is built on.
    fn put_if_match<'a>(
        &'a self,
        key: &'a str,
        body: Vec<u8>,
        version: &'a str,
    ) -> BoxFuture<'a, Result<bool, StateError>>;
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StateError>>;
    /// All keys under `prefix`, sorted.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StateError>>;
    /// Like `list`, with each object's entity tag where the backend reports one
    /// (S3's ETag): what lets [`cache::ObjectCache`] answer instead of a read.
    fn list_tagged<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Listed>, StateError>> {
        Box::pin(async move {
            let keys = self.list(prefix).await?;
            Ok(keys.into_iter().map(|k| (k, None)).collect())
        })
    }
}

/// An object's body and its version token.
pub type Versioned = (Vec<u8>, String);

/// A listed key and its entity tag, if the backend has them.
pub type Listed = (String, Option<String>);

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "no state store given; pass --state s3://BUCKET (or file://DIR), or set KEELSON_STATE_STORE"
    )]
    NotConfigured,
    #[error("state store {url:?} is not supported; use s3://BUCKET[/PREFIX] or file://DIR")]
    BadUrl { url: String },
    #[error(
        "S3 bucket {bucket:?} does not exist; create it with `aws s3 mb s3://{bucket}` and turn on versioning with `aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled`"
    )]
    BucketMissing { bucket: String },
    #[error(
        "S3 bucket {bucket:?}: access denied ({message}); check your AWS credentials and the bucket policy"
    )]
    AccessDenied { bucket: String, message: String },
    #[error("state store {store}: {operation} {key:?} failed: {message}")]
    Backend {
        store: String,
        operation: &'static str,
        key: String,
        message: String,
    },
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(
        "cluster {cluster:?} not found in {store}; list clusters with `keelson get clusters`, or create it with `keelson create cluster`"
    )]
    ClusterNotFound { cluster: String, store: String },
    #[error(
        "{kind} {name:?} of cluster {cluster:?} not found; list them with `keelson get ig --name {cluster}`"
    )]
    GroupNotFound {
        kind: &'static str,
        name: String,
        cluster: String,
    },
    #[error(
        "cluster {cluster:?} is locked by {holder}; wait for that operation to finish, or if it died, remove the lock with `keelson unlock cluster {cluster} --yes`"
    )]
    Locked { cluster: String, holder: String },
    #[error("interrupted; the lock was released and nothing more was written")]
    Interrupted,
}

/// A cluster's stored specs and admin SSH key, as a plan reads them.
pub struct Stored {
    pub cluster: Cluster,
    pub groups: Vec<InstanceGroup>,
    pub ssh_key: Option<crate::spec::ssh_key::SshPublicKey>,
    /// Whether any private PKI object exists (from the same listing).
    pub has_pki: bool,
    /// The stored addon channel, if any: its hashes cover every bundle.
    pub addon_channel: Option<Vec<u8>>,
    /// The node agents stored (`NAME/agent/...`), from the same listing.
    pub agent_keys: Vec<String>,
    /// Whether the Secrets' encryption configuration exists (a cluster made
    /// before keelson encrypted them has PKI without it).
    pub has_encryption_config: bool,
    /// Whether the shared join token of older keelsons is still stored.
    pub has_legacy_token: bool,
    /// What the last apply recorded (`NAME/status`), if any.
    pub status: Option<crate::spec::ClusterStatus>,
}

/// A state store opened at a URL, with the typed operations on clusters.
#[derive(Clone)]
pub struct StateStore {
    url: String,
    backend: Arc<dyn Backend>,
    /// Copies of the objects a plan reads, checked against the listing's ETags.
    cache: Option<Arc<cache::ObjectCache>>,
    /// Notes for the user found while opening (e.g. S3 versioning is off).
    pub warnings: Vec<String>,
}

impl StateStore {
    /// Opens `url`; for S3 this checks that the bucket exists and warns when it is
    /// not versioned. Nothing is written.
    pub async fn open(
        url: &str,
        aws: &aws_config::SdkConfig,
        writes: bool,
    ) -> Result<StateStore, StateError> {
        let check = if writes {
            s3::Versioning::Once
        } else {
            s3::Versioning::Skip
        };
        StateStore::open_checking(url, aws, check).await
    }

    /// Opens `url`, reading an S3 bucket's versioning as `check` says.
    pub async fn open_checking(
        url: &str,
        aws: &aws_config::SdkConfig,
        check: s3::Versioning,
    ) -> Result<StateStore, StateError> {
        let url = url.trim_end_matches('/').to_string();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !s3::is_bucket_name(bucket) {
                return Err(StateError::BadUrl { url });
            }
            let (backend, warnings) = s3::S3Backend::open(aws, bucket, prefix, check).await?;
            return Ok(StateStore {
                url,
                backend: Arc::new(backend),
                cache: cache::ObjectCache::from_env().map(Arc::new),
                warnings,
            });
        }
        if let Some(dir) = url.strip_prefix("file://")
            && !dir.is_empty()
        {
            let backend = file::FileBackend::new(dir.into(), url.clone());
            // Local reads cost nothing: no cache.
            return Ok(StateStore {
                url,
                backend: Arc::new(backend),
                cache: None,
                warnings: Vec::new(),
            });
        }
        Err(StateError::BadUrl { url })
    }

    /// A store on any backend; for tests of other backends.
    pub fn with_backend(url: &str, backend: Arc<dyn Backend>) -> StateStore {
        StateStore {
            url: url.to_string(),
            backend,
            cache: None,
            warnings: Vec::new(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// `s3://bucket/prefix/NAME`: recorded in the spec as its configBase.
    pub fn config_base(&self, cluster: &str) -> String {
        format!("{}/{cluster}", self.url)
    }

    pub async fn cluster_exists(&self, cluster: &str) -> Result<bool, StateError> {
        Ok(self.backend.get(&layout::config(cluster)).await?.is_some())
    }

    /// The cluster's names, from the `NAME/config` objects.
    pub async fn list_clusters(&self) -> Result<Vec<String>, StateError> {
        let keys = self.backend.list("").await?;
        Ok(keys
            .iter()
            .filter_map(|k| layout::cluster_of_config(k))
            .map(str::to_string)
            .collect())
    }

    /// The stored Cluster text and its parsed form.
    pub async fn read_cluster_text(&self, cluster: &str) -> Result<(String, Cluster), StateError> {
        let bytes = self.backend.get(&layout::config(cluster)).await?;
        self.parse_cluster_text(cluster, bytes)
    }

    fn parse_cluster_text(
        &self,
        cluster: &str,
        bytes: Option<Vec<u8>>,
    ) -> Result<(String, Cluster), StateError> {
        let bytes = bytes.ok_or_else(|| StateError::ClusterNotFound {
            cluster: cluster.to_string(),
            store: self.url.clone(),
        })?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let origin = format!("{}/{}", self.url, layout::config(cluster));
        let parsed = parse_cluster(&text, &origin)?;
        Ok((text, parsed))
    }

    pub async fn read_cluster(&self, cluster: &str) -> Result<Cluster, StateError> {
        Ok(self.read_cluster_text(cluster).await?.1)
    }

    pub async fn read_group_text(
        &self,
        cluster: &str,
        group: &str,
    ) -> Result<(String, InstanceGroup), StateError> {
        let key = layout::instance_group(cluster, group);
        let bytes = self
            .backend
            .get(&key)
            .await?
            .ok_or_else(|| StateError::GroupNotFound {
                kind: "instance group",
                name: group.to_string(),
                cluster: cluster.to_string(),
            })?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let parsed = parse_instance_group(&text, &format!("{}/{key}", self.url))?;
        Ok((text, parsed))
    }

    /// All of a cluster's groups, read concurrently, in name order.
    pub async fn read_groups(&self, cluster: &str) -> Result<Vec<InstanceGroup>, StateError> {
        let keys = self
            .backend
            .list_tagged(&layout::instance_group_prefix(cluster))
            .await?;
        self.read_group_keys(keys).await
    }

    async fn read_group_keys(&self, keys: Vec<Listed>) -> Result<Vec<InstanceGroup>, StateError> {
        let mut tasks = tokio::task::JoinSet::new();
        for (key, etag) in keys {
            let store = self.clone();
            tasks.spawn(async move {
                match store.get_planned(&key, etag.as_deref()).await? {
                    Some(bytes) => Ok(Some(parse_instance_group(
                        &String::from_utf8_lossy(&bytes),
                        &format!("{}/{key}", store.url),
                    )?)),
                    None => Ok(None), // deleted between list and get
                }
            });
        }
        let mut groups = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let result: Result<Option<InstanceGroup>, StateError> =
                joined.expect("state read task panicked");
            groups.extend(result?);
        }
        groups.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(groups)
    }

    /// Reads one of the objects every plan reads: from the cache when the listing's
    /// ETag names a copy there, else from the store (keeping a copy).
    async fn get_planned(
        &self,
        key: &str,
        etag: Option<&str>,
    ) -> Result<Option<Vec<u8>>, StateError> {
        if let (Some(cache), Some(etag)) = (&self.cache, etag)
            && let Some(bytes) = cache.get(etag)
        {
            return Ok(Some(bytes));
        }
        let bytes = self.backend.get(key).await?;
        if let (Some(cache), Some(b)) = (&self.cache, &bytes) {
            cache.put(b);
        }
        Ok(bytes)
    }

    /// Writes one of the objects every plan reads, keeping a copy for the next plan.
    async fn put_planned(&self, key: &str, body: Vec<u8>) -> Result<(), StateError> {
        if let Some(cache) = &self.cache {
            cache.put(&body);
        }
        self.backend.put(key, body).await
    }

    /// What a plan reads of a cluster: its spec, every group, the admin SSH key and
    /// the addon channel, from one listing of the cluster's prefix and then all
    /// reads at once, each answered by the cache when the listing shows it
    /// unchanged (a no-op re-plan pays for every request and every round trip).
    pub async fn read_for_plan(&self, cluster: &str) -> Result<Stored, StateError> {
        let listed = self.backend.list_tagged(&format!("{cluster}/")).await?;
        let find = |key: &str| listed.iter().find(|(k, _)| k == key).cloned();
        let (groups, ssh) = (
            layout::instance_group_prefix(cluster),
            layout::ssh_public_key_prefix(cluster),
        );
        let group_keys = listed
            .iter()
            .filter(|(k, _)| k.starts_with(&groups))
            .cloned()
            .collect();
        let ssh_key = listed.iter().find(|(k, _)| k.starts_with(&ssh)).cloned();
        let private = layout::pki_private(cluster, "");
        let has_pki = listed.iter().any(|(k, _)| k.starts_with(&private));
        let agents = format!("{cluster}/agent/");
        let agent_keys = listed
            .iter()
            .filter(|(k, _)| k.starts_with(&agents))
            .map(|(k, _)| k.clone())
            .collect();
        let has_encryption_config = find(&layout::encryption_config(cluster)).is_some();
        let has_legacy_token = find(&layout::legacy_bootstrap_token(cluster)).is_some();
        let config = layout::config(cluster);
        let config_tag = find(&config).and_then(|(_, t)| t);
        let channel = find(&layout::addon(cluster, crate::addons::CHANNEL));
        let status = find(&layout::status(cluster));
        let (spec, groups, ssh_key, addon_channel, status) = tokio::join!(
            // Read even if not listed: its absence is what says "no such cluster".
            async {
                let bytes = self.get_planned(&config, config_tag.as_deref()).await?;
                Ok::<_, StateError>(self.parse_cluster_text(cluster, bytes)?.1)
            },
            self.read_group_keys(group_keys),
            async {
                match ssh_key {
                    Some((key, etag)) => self.read_ssh_key_at(&key, etag.as_deref()).await,
                    None => Ok(None),
                }
            },
            async {
                match channel {
                    Some((key, etag)) => self.get_planned(&key, etag.as_deref()).await,
                    None => Ok(None),
                }
            },
            async {
                match status {
                    Some((key, etag)) => self.get_planned(&key, etag.as_deref()).await,
                    None => Ok(None),
                }
            }
        );
        // As `read_status`: a status this keelson cannot read holds nothing.
        let status = status?.and_then(|b| serde_yaml::from_slice(&b).ok());
        Ok(Stored {
            cluster: spec?,
            groups: groups?,
            ssh_key: ssh_key?,
            has_pki,
            addon_channel: addon_channel?,
            agent_keys,
            has_encryption_config,
            has_legacy_token,
            status,
        })
    }

    /// Writes the spec; the status is kept apart (see [`StateStore::write_status`]).
    pub async fn write_cluster(&self, c: &Cluster) -> Result<(), StateError> {
        let mut c = c.clone();
        c.status = None;
        self.put_planned(&layout::config(c.name()), to_yaml(&c).into_bytes())
            .await
    }

    /// A file under the cluster's `addons/`; the channel, which every plan reads,
    /// is kept in the cache too.
    pub async fn write_addon(
        &self,
        cluster: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(), StateError> {
        let key = layout::addon(cluster, path);
        if path == crate::addons::CHANNEL {
            self.put_planned(&key, body).await
        } else {
            self.backend.put(&key, body).await
        }
    }

    /// What the last apply learned, in `NAME/status`.
    pub async fn write_status(
        &self,
        cluster: &str,
        status: &crate::spec::ClusterStatus,
    ) -> Result<(), StateError> {
        // Kept for the next plan, which reads it (`read_for_plan`).
        self.put_planned(&layout::status(cluster), to_yaml(status).into_bytes())
            .await
    }

    pub async fn read_status(
        &self,
        cluster: &str,
    ) -> Result<Option<crate::spec::ClusterStatus>, StateError> {
        let Some(bytes) = self.backend.get(&layout::status(cluster)).await? else {
            return Ok(None);
        };
        Ok(serde_yaml::from_slice(&bytes).ok())
    }

    pub async fn write_group(&self, cluster: &str, g: &InstanceGroup) -> Result<(), StateError> {
        self.put_planned(
            &layout::instance_group(cluster, g.name()),
            to_yaml(g).into_bytes(),
        )
        .await
    }

    pub async fn write_ssh_public_key(
        &self,
        cluster: &str,
        key: &crate::spec::ssh_key::SshPublicKey,
    ) -> Result<(), StateError> {
        let body = format!("{}\n", key.line()).into_bytes();
        self.put_planned(&layout::ssh_public_key(cluster, &key.fingerprint()), body)
            .await
    }

    async fn read_ssh_key_at(
        &self,
        key: &str,
        etag: Option<&str>,
    ) -> Result<Option<crate::spec::ssh_key::SshPublicKey>, StateError> {
        let Some(bytes) = self.get_planned(key, etag).await? else {
            return Ok(None);
        };
        let parsed = crate::spec::ssh_key::SshPublicKey::parse(&String::from_utf8_lossy(&bytes))
            .map_err(|e| StateError::Backend {
                store: self.url.clone(),
                operation: "read",
                key: key.to_string(),
                message: format!("the stored SSH key {e}"),
            })?;
        Ok(Some(parsed))
    }

    /// Which PKI and secret objects exist for a cluster (any at all means the
    /// cluster has PKI that must not be overwritten).
    pub async fn pki_keys(&self, cluster: &str) -> Result<Vec<String>, StateError> {
        let mut keys = Vec::new();
        for prefix in [
            layout::pki_public(cluster, ""),
            layout::pki_private(cluster, ""),
            format!("{cluster}/secrets/"),
        ] {
            keys.extend(self.backend.list(&prefix).await?);
        }
        Ok(keys)
    }

    /// Writes freshly generated PKI. Each object only if absent: an existing key is
    /// never replaced (instances and kubeconfigs trust it). Returns the keys that
    /// already existed, which the caller treats as a refusal.
    pub async fn write_pki(
        &self,
        cluster: &str,
        pki: &crate::pki::ClusterPki,
    ) -> Result<Vec<String>, StateError> {
        let mut objects: Vec<(String, &str)> = Vec::new();
        // Keys before certificates, the encryption key last: a reader that finds the
        // certificates finds the keys too.
        for (file, ca) in crate::pki::CAS
            .iter()
            .zip([&pki.ca, &pki.front_proxy_ca, &pki.etcd_ca])
        {
            objects.push((
                layout::pki_private(cluster, &format!("{}.key", file.0)),
                ca.key.expose(),
            ));
        }
        objects.push((
            layout::pki_private(cluster, "sa.key"),
            pki.service_account_key.expose(),
        ));
        for (file, ca) in crate::pki::CAS
            .iter()
            .zip([&pki.ca, &pki.front_proxy_ca, &pki.etcd_ca])
        {
            objects.push((
                layout::pki_public(cluster, &format!("{}.crt", file.0)),
                &ca.cert_pem,
            ));
        }
        objects.push((
            layout::pki_public(cluster, "sa.pub"),
            &pki.service_account_public_pem,
        ));
        objects.push((
            layout::encryption_config(cluster),
            pki.encryption_config.expose(),
        ));
        let mut existed = Vec::new();
        for (key, body) in objects {
            if !self
                .backend
                .put_if_absent(&key, body.as_bytes().to_vec())
                .await?
            {
                existed.push(key);
            }
        }
        Ok(existed)
    }

    /// The cluster CA's certificate and key, for signing client certificates.
    pub async fn read_ca(
        &self,
        cluster: &str,
    ) -> Result<Option<(String, crate::pki::Secret)>, StateError> {
        let cert = self
            .backend
            .get(&layout::pki_public(cluster, "ca.crt"))
            .await?;
        let key = self
            .backend
            .get(&layout::pki_private(cluster, "ca.key"))
            .await?;
        Ok(match (cert, key) {
            (Some(c), Some(k)) => Some((
                String::from_utf8_lossy(&c).into_owned(),
                crate::pki::Secret::new(String::from_utf8_lossy(&k).into_owned()),
            )),
            _ => None,
        })
    }

    /// Removes an instance group's spec (`delete instancegroup`).
    pub async fn delete_group(&self, cluster: &str, group: &str) -> Result<(), StateError> {
        self.backend
            .delete(&layout::instance_group(cluster, group))
            .await
    }

    /// The names of a cluster's keys and secrets (`get secrets`): the listing
    /// only, no object is read.
    pub async fn secret_keys(&self, cluster: &str) -> Result<Vec<String>, StateError> {
        let mut keys = self.pki_keys(cluster).await?;
        keys.extend(
            self.backend
                .list(&layout::ssh_public_key_prefix(cluster))
                .await?,
        );
        Ok(keys)
    }

    /// Everything stored for a cluster, for `--dry-run` listings and tests.
    pub async fn list_cluster_keys(&self, cluster: &str) -> Result<Vec<String>, StateError> {
        self.backend.list(&format!("{cluster}/")).await
    }
}
