//! The agent's passes, as `keelson node ...` runs them on an instance: who it is
//! (IMDS), its cluster (the env file), the state store, EC2 and ELBv2 (the SDK),
//! etcd (the JSON gateway), put together once and used by each pass. etcd is
//! reached only when a pass needs it: a node's role cannot read the etcd CA.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::bootstrap::{self, ApiProbe, Remote};
use super::etcd::{self, Tls};
use super::identity::Identity;
use super::kubeadm::Version;
use super::membership::{self, Master, Report};
use super::serve::NodeCredential;
use super::{NodeError, backup, env::NodeEnv, host::Host};
use crate::state::{BoxFuture, StateStore, layout};

/// How the agent reaches etcd. kubeadm's stacked etcd listens on
/// `https://IP:2379` with client-certificate auth (cmd/kubeadm/app/phases/etcd/local.go).
pub struct EtcdAccess {
    /// `https`, or `http` for a plain-text etcd (tests on loopback).
    pub scheme: String,
    pub port: u16,
    pub peer_port: u16,
    /// kubeadm's `etcd/ca.crt` and `etcd/healthcheck-client.{crt,key}` when this
    /// master has joined; before, the agent signs its own client certificate with
    /// the etcd CA from the state store.
    pub pki_dir: PathBuf,
}

pub struct Node {
    pub env: NodeEnv,
    pub me: Identity,
    pub store: StateStore,
    pub ec2: aws_sdk_ec2::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    /// The SDK's configuration: its credentials sign the node's identity request.
    aws: aws_config::SdkConfig,
    /// Where the masters' agents serve node credentials ([`super::attest::PORT`]).
    pub credential_port: u16,
    /// Made on first use (see [`Node::etcd`]).
    etcd: Mutex<Option<etcd::Client>>,
    access: EtcdAccess,
}

/// What one agent pass did.
pub struct Pass {
    pub report: Report,
    pub backup: Option<backup::Backup>,
    pub pruned: Vec<String>,
    /// Whether the addon channel changed and was applied again.
    pub applied_channel: bool,
}

impl Node {
    pub async fn connect(env_file: &Path, access: EtcdAccess) -> Result<Node, NodeError> {
        let env = NodeEnv::load(env_file)?;
        let base = crate::aws::load(None).await;
        let me = Identity::from_imds(&base).await?;
        let aws = crate::aws::load(Some(&me.region)).await;
        // Only masters write (the lease, the status, backups); a writer's open
        // reads the bucket's versioning, which a node's role may not.
        let writes = env.role == "master";
        let store = StateStore::open(&env.state_url()?, &aws, writes).await?;
        Ok(Node::new(env, me, store, &aws, access))
    }

    /// A node from its parts (the SDK clients from `aws`).
    pub fn new(
        env: NodeEnv,
        me: Identity,
        store: StateStore,
        aws: &aws_config::SdkConfig,
        access: EtcdAccess,
    ) -> Node {
        Node {
            env,
            me,
            store,
            ec2: aws_sdk_ec2::Client::new(aws),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(aws),
            aws: aws.clone(),
            credential_port: super::attest::PORT,
            etcd: Mutex::new(None),
            access,
        }
    }

    /// The etcd client, made once: with kubeadm's client certificate when this
    /// master has one, else one signed here with the etcd CA from the state
    /// store (a master's role may read it).
    pub async fn etcd(&self) -> Result<etcd::Client, NodeError> {
        if let Some(c) = self.etcd.lock().expect("etcd client").as_ref() {
            return Ok(c.clone());
        }
        let c = etcd_client(&self.access, &self.store, &self.env.cluster).await?;
        *self.etcd.lock().expect("etcd client") = Some(c.clone());
        Ok(c)
    }

    fn cluster(&self) -> &str {
        &self.env.cluster
    }

    /// This instance's AWS credentials (its role's, from IMDS on EC2).
    pub async fn credentials(&self) -> Result<aws_credential_types::Credentials, NodeError> {
        use aws_credential_types::provider::ProvideCredentials;
        let provider = self
            .aws
            .credentials_provider()
            .ok_or_else(|| NodeError::Attest {
                what: "this instance's credentials".into(),
                message: "the SDK has no credential provider".into(),
            })?;
        provider
            .provide_credentials()
            .await
            .map_err(|e| NodeError::Attest {
                what: "this instance's credentials".into(),
                message: aws_sdk_ec2::error::DisplayErrorContext(&e).to_string(),
            })
    }

    fn client_url(&self, ip: &str) -> String {
        format!("{}://{ip}:{}", self.access.scheme, self.access.port)
    }

    /// This instance as a master.
    pub fn as_master(&self) -> Master {
        Master {
            instance_id: self.me.instance_id.clone(),
            private_ip: self.me.private_ip.clone(),
            private_dns: self.me.private_dns.clone(),
        }
    }

    /// The masters in EC2 and the client URLs to try, this instance's first when
    /// it is a member (its own etcd answers even when the network does not).
    async fn masters(&self, joining: bool) -> Result<(Vec<Master>, Vec<String>), NodeError> {
        let masters = super::masters(&self.ec2, self.cluster()).await?;
        let mut endpoints: Vec<String> = masters
            .iter()
            .filter(|m| !(joining && m.instance_id == self.me.instance_id))
            .map(|m| self.client_url(&m.private_ip))
            .collect();
        endpoints.sort_by_key(|e| *e != self.client_url(&self.me.private_ip));
        Ok((masters, endpoints))
    }

    /// One pass over the membership: removes the members of gone masters while
    /// quorum holds, and publishes the result. `joining`: this master is about
    /// to run `kubeadm join`, so a half-made member of its own goes too.
    pub async fn members(&self, joining: bool) -> Result<Report, NodeError> {
        let (masters, endpoints) = self.masters(joining).await?;
        let me = self.as_master();
        let report = membership::reconcile(
            &self.etcd().await?,
            &endpoints,
            &masters,
            joining.then_some(&me),
            backup::now_secs(),
        )
        .await?;
        let body = serde_json::to_vec_pretty(&report).expect("a report serializes");
        self.store
            .backend()
            .put(&super::status_key(self.cluster()), body)
            .await?;
        if !report.quorum {
            return Err(NodeError::NoQuorum {
                cluster: self.cluster().to_string(),
                healthy: report.healthy,
                members: report.members.len(),
            });
        }
        Ok(report)
    }

    /// A snapshot into the state store now.
    pub async fn backup(&self, reason: &str) -> Result<backup::Backup, NodeError> {
        let (_, endpoints) = self.masters(false).await?;
        backup::save(
            &self.etcd().await?,
            &endpoints,
            &self.store,
            self.cluster(),
            reason,
            backup::now_secs(),
        )
        .await
    }

    /// Restores backup `name` into `data_dir` as this master's member.
    pub async fn restore(
        &self,
        name: &str,
        data_dir: &Path,
        host: &dyn Host,
    ) -> Result<(), NodeError> {
        let peer = format!(
            "{}://{}:{}",
            self.access.scheme, self.me.private_ip, self.access.peer_port
        );
        backup::restore(
            &self.store,
            self.cluster(),
            name,
            &backup::RestoreTarget {
                name: &self.me.private_dns,
                peer_url: &peer,
                data_dir,
            },
            host,
        )
        .await
    }

    /// One agent pass: the membership, then a backup if the newest is older than
    /// [`backup::EVERY`], then retention.
    pub async fn pass(&self) -> Result<Pass, NodeError> {
        let report = self.members(false).await?;
        let now = backup::now_secs();
        let all = backup::list(&self.store, self.cluster()).await?;
        let newest = all.last().map(|b| b.taken_at);
        let due = newest.is_none_or(|t| now.saturating_sub(t) >= backup::EVERY.as_secs());
        // rolling-update asks for one before it replaces a master.
        let requested = self
            .store
            .backend()
            .get(&crate::rolling::etcd::request_key(self.cluster()))
            .await?
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["requestedAt"].as_u64())
            .filter(|at| {
                !all.iter()
                    .any(|b| b.reason == "pre-replacement" && b.taken_at >= *at)
            });
        // One master takes them: the etcd leader's, read from its own status, so
        // that three masters do not store three copies.
        let backup = if (due || requested.is_some()) && self.leads_etcd().await {
            let reason = if requested.is_some() {
                "pre-replacement"
            } else {
                "scheduled"
            };
            Some(self.backup(reason).await?)
        } else {
            None
        };
        let pruned = backup::apply_retention(&self.store, self.cluster(), now).await?;
        // The applier the addon system builds on: a channel an update changed is
        // applied again, by every master (server-side apply, one field manager).
        let applied_channel = super::bootstrap::reapply_channel(
            self,
            std::sync::Arc::new(super::host::System),
            &|line| eprintln!("keelson-agent: {line}"),
        )
        .await?;
        Ok(Pass {
            report,
            backup,
            pruned,
            applied_channel,
        })
    }

    async fn leads_etcd(&self) -> bool {
        let Ok(etcd) = self.etcd().await else {
            return false;
        };
        let Ok(status) = etcd.status(&self.client_url(&self.me.private_ip)).await else {
            return false;
        };
        status["leader"] == status["header"]["member_id"]
    }

    /// Passes until stopped, one every `interval`; a failed pass is reported and
    /// the next one tries again.
    pub async fn run(&self, interval: Duration, mut report: impl FnMut(Result<Pass, NodeError>)) {
        loop {
            report(self.pass().await);
            tokio::time::sleep(interval).await;
        }
    }
}

/// The bootstrap's view of the world, for real: ELBv2, the API, etcd.
impl Remote for Node {
    fn load_balancer_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, NodeError>> {
        Box::pin(async move {
            use aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata;
            match self
                .elbv2
                .describe_load_balancers()
                .names(name)
                .send()
                .await
            {
                Ok(out) => Ok(out
                    .load_balancers()
                    .iter()
                    .find_map(|lb| lb.dns_name().filter(|d| !d.is_empty()))
                    .map(str::to_string)),
                Err(e) if e.code() == Some("LoadBalancerNotFound") => Ok(None),
                Err(e) => Err(NodeError::LoadBalancer {
                    name: name.to_string(),
                    message: format!("DescribeLoadBalancers: {}", crate::aws::describe(&e)),
                }),
            }
        })
    }

    fn probe<'a>(
        &'a self,
        endpoint: &'a str,
        ca_pem: &'a [u8],
        credential: &'a NodeCredential,
    ) -> BoxFuture<'a, ApiProbe> {
        Box::pin(bootstrap::probe_api(endpoint, ca_pem, credential))
    }

    fn cluster_version<'a>(
        &'a self,
        endpoint: &'a str,
        ca_pem: &'a [u8],
        credential: &'a NodeCredential,
    ) -> BoxFuture<'a, Result<Version, NodeError>> {
        Box::pin(bootstrap::read_cluster_version(
            endpoint, ca_pem, credential,
        ))
    }

    fn node_credential<'a>(
        &'a self,
        ca_pem: &'a [u8],
    ) -> BoxFuture<'a, Result<NodeCredential, NodeError>> {
        Box::pin(async move {
            super::serve::request_credential(self, ca_pem, self.credential_port)
                .await
                .map(|(c, _)| c)
        })
    }

    fn prune_members(&self) -> BoxFuture<'_, Result<Report, NodeError>> {
        Box::pin(self.members(true))
    }

    fn restore_etcd<'a>(
        &'a self,
        backup: &'a str,
        host: &'a dyn Host,
    ) -> BoxFuture<'a, Result<(), NodeError>> {
        // kubeadm's stacked etcd keeps its data here (etcd.local.dataDir).
        Box::pin(self.restore(backup, Path::new("/var/lib/etcd"), host))
    }
}

async fn etcd_client(
    access: &EtcdAccess,
    store: &StateStore,
    cluster: &str,
) -> Result<etcd::Client, NodeError> {
    if access.scheme == "http" {
        return etcd::Client::new(None);
    }
    let file = |name: &str| std::fs::read_to_string(access.pki_dir.join(name)).ok();
    let tls = match (
        file("ca.crt"),
        file("healthcheck-client.crt"),
        file("healthcheck-client.key"),
    ) {
        (Some(ca_pem), Some(cert_pem), Some(key_pem)) => Tls {
            ca_pem,
            cert_pem,
            key_pem,
        },
        _ => {
            let read = |key: String| async move {
                store
                    .backend()
                    .get(&key)
                    .await?
                    .ok_or_else(|| NodeError::Io {
                        path: key.clone(),
                        message: "missing from the state store".into(),
                    })
            };
            let ca_pem = read(layout::pki_public(cluster, "etcd-ca.crt")).await?;
            let ca_key = read(layout::pki_private(cluster, "etcd-ca.key")).await?;
            let key = crate::pki::Secret::new(String::from_utf8_lossy(&ca_key).into_owned());
            let (cert_pem, key) = crate::pki::client_credential(
                &key,
                "etcd-ca",
                "keelson-node-agent",
                None,
                Duration::from_secs(24 * 3600),
            )
            .map_err(|e| NodeError::Io {
                path: layout::pki_private(cluster, "etcd-ca.key"),
                message: e.to_string(),
            })?;
            Tls {
                ca_pem: String::from_utf8_lossy(&ca_pem).into_owned(),
                cert_pem,
                key_pem: key.expose().to_string(),
            }
        }
    };
    etcd::Client::new(Some(&tls))
}
