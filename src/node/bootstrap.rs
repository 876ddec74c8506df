//! `keelson node bootstrap`: how an instance becomes part of its cluster, run by
//! systemd (`keelson-bootstrap.service`, retried until it succeeds). The port of
//! the shell bootstrap it replaced:
//!
//! 1. the host: kernel modules, sysctls, swap off; containerd with the systemd
//!    cgroup driver; kubelet, kubeadm and kubectl pinned to the cluster's
//!    version from pkgs.k8s.io and held (apt waits for the dpkg lock, which a
//!    first boot's unattended upgrades hold);
//! 2. the material: the CA certificate from the state store (through
//!    [`StateStore`], the SDK); on masters the CA keys, the service-account key
//!    and the Secrets' encryption configuration, where kubeadm looks for them,
//!    and a node credential signed here; on nodes a credential the masters'
//!    agents grant after the node proved who it is with AWS ([`super::attest`]);
//! 3. the API's host: `api.NAME`, or the load balancer's name (gossip);
//! 4. masters race for the [`lease`]: the holder runs `kubeadm init` while it
//!    renews the lease, marks the cluster initialised and applies the addon
//!    channel; the others wait for `/readyz`, remove etcd members of gone
//!    masters ([`Remote::prune_members`]), join the control plane, and then
//!    upgrade it if they are the first on a newer version ([`kubeadm::upgrade_step`]);
//! 5. nodes wait for `/readyz` and join, never with a kubelet newer than the
//!    control plane.
//!
//! Every host action goes through [`Host`]; whatever is not the host (the
//! load balancer, the API, etcd) through [`Remote`]. Markers under
//! `/etc/keelson` make a rerun safe: a finished bootstrap does nothing, one that
//! failed after kubeadm went through continues after it, one that failed inside
//! kubeadm resets what kubeadm left first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::identity::Identity;
use super::kubeadm::{self, API_PORT, Registration, Upgrade, Version};
use super::lease::{self, Outcome};
use super::membership::Report;
use super::serve::NodeCredential;
use super::{NodeError, backup::now_secs, env::NodeEnv, host::Host};
use crate::pki::Secret;
use crate::state::{BoxFuture, StateStore, layout};

pub const WORK: &str = "/etc/keelson";
pub const PKI: &str = "/etc/kubernetes/pki";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
/// kubeadm's configuration, kept only while kubeadm runs.
pub const KUBEADM_CONFIG: &str = "/etc/keelson/kubeadm.yaml";
/// A join's discovery file: it holds the node's credential, so it lives only
/// while kubeadm runs (kubeadm copies it to bootstrap-kubelet.conf).
pub const BOOTSTRAP_KUBECONFIG: &str = "/etc/keelson/bootstrap.kubeconfig";
/// Written once `kubeadm init` (`init`) or `kubeadm join` (`join VERSION`, the
/// control plane's version then) succeeded.
pub const KUBEADM_DONE: &str = "/etc/keelson/kubeadm.done";
/// Written at the end: later runs (every boot) do nothing.
pub const DONE: &str = "/etc/keelson/bootstrap.done";
/// What a kubeadm attempt leaves, which makes its preflight refuse the next one.
const LEFTOVERS: [&str; 4] = [
    "/etc/kubernetes/kubelet.conf",
    "/etc/kubernetes/bootstrap-kubelet.conf",
    "/etc/kubernetes/manifests/kube-apiserver.yaml",
    "/etc/kubernetes/manifests/etcd.yaml",
];
const APT_LOCK_WAIT: &str = "DPkg::Lock::Timeout=600";
const KEYRING: &str = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg";

/// How long the flow waits and how often it tries.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Between attempts to read the state store, find the load balancer, read
    /// the cluster's version, apply a manifest.
    pub retry_pause: Duration,
    pub attempts: u32,
    /// Between looks at the API (and the lease) while waiting for it.
    pub api_poll: Duration,
    /// How long to wait for the API before failing (systemd starts again).
    pub api_wait: Duration,
    /// After losing a race for the lease.
    pub lost_pause: Duration,
    pub renew_every: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            retry_pause: Duration::from_secs(10),
            attempts: 60,
            api_poll: Duration::from_secs(10),
            api_wait: Duration::from_secs(30 * 60),
            lost_pause: Duration::from_secs(3),
            renew_every: lease::RENEW_EVERY,
        }
    }
}

/// What `/readyz` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiProbe {
    /// No TLS endpoint with a certificate of the cluster's CA answered.
    Down,
    /// The HTTP status of an answer.
    Answers(u16),
}

impl ApiProbe {
    /// Any answer: the cluster exists, so no master initialises another.
    pub fn answers(&self) -> bool {
        matches!(self, ApiProbe::Answers(_))
    }

    /// Ready to be joined.
    pub fn ready(&self) -> bool {
        matches!(self, ApiProbe::Answers(200..=299))
    }
}

/// What the flow asks of the world beyond the host and the state store.
/// [`super::agent::Node`] is the real one.
pub trait Remote: Send + Sync {
    /// The DNS name of the API load balancer `name`, `None` while it does not exist.
    fn load_balancer_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, NodeError>>;
    /// `https://ENDPOINT/readyz`, trusting only the cluster's CA. With the
    /// node's credential: `/readyz` is open to every authenticated user, and an
    /// API without anonymous access answers 401 to a bare probe.
    fn probe<'a>(
        &'a self,
        endpoint: &'a str,
        ca_pem: &'a [u8],
        credential: &'a NodeCredential,
    ) -> BoxFuture<'a, ApiProbe>;
    /// The control plane's version: kube-system/kubeadm-config's
    /// ClusterConfiguration (kubeadm lets `system:nodes` read it).
    fn cluster_version<'a>(
        &'a self,
        endpoint: &'a str,
        ca_pem: &'a [u8],
        credential: &'a NodeCredential,
    ) -> BoxFuture<'a, Result<Version, NodeError>>;
    /// A node's credential from the masters' agents, which check who it is
    /// with AWS ([`super::attest`]).
    fn node_credential<'a>(
        &'a self,
        ca_pem: &'a [u8],
    ) -> BoxFuture<'a, Result<NodeCredential, NodeError>>;
    /// The agent's membership pass before a control-plane join: etcd members of
    /// gone masters removed while quorum holds.
    fn prune_members(&self) -> BoxFuture<'_, Result<Report, NodeError>>;
    /// Restores etcd backup `backup` into kubeadm's data directory (empty: a new
    /// instance, or after kubeadm reset), as this master's one member.
    fn restore_etcd<'a>(
        &'a self,
        backup: &'a str,
        host: &'a dyn Host,
    ) -> BoxFuture<'a, Result<(), NodeError>>;
}

/// How the bootstrap ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// An earlier run finished it.
    Already,
    /// This master initialised the control plane.
    Initialized,
    Joined {
        control_plane: bool,
        upgrade: Upgrade,
    },
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Done::Already => write!(f, "already bootstrapped; nothing to do"),
            Done::Initialized => write!(f, "initialised the control plane"),
            Done::Joined {
                control_plane,
                upgrade,
            } => {
                write!(
                    f,
                    "joined the {}",
                    if *control_plane {
                        "control plane"
                    } else {
                        "cluster"
                    }
                )?;
                match upgrade {
                    Upgrade::None => Ok(()),
                    Upgrade::Apply(v) => write!(f, " and upgraded the cluster to {v}"),
                    Upgrade::Node => write!(f, " and upgraded its control plane"),
                }
            }
        }
    }
}

/// One bootstrap of this instance.
pub struct Bootstrap<'a> {
    pub env: &'a NodeEnv,
    pub me: &'a Identity,
    pub store: &'a StateStore,
    pub host: Arc<dyn Host>,
    pub remote: &'a dyn Remote,
    pub timing: Timing,
    /// Progress, one line each (never a secret).
    pub log: &'a (dyn Fn(&str) + Send + Sync),
}

impl<'a> Bootstrap<'a> {
    /// The instance `node` describes, on `host`, with the real timings.
    fn on(
        node: &'a super::agent::Node,
        host: Arc<dyn Host>,
        log: &'a (dyn Fn(&str) + Send + Sync),
    ) -> Bootstrap<'a> {
        Bootstrap {
            env: &node.env,
            me: &node.me,
            store: &node.store,
            host,
            remote: node,
            timing: Timing::default(),
            log,
        }
    }
}

/// The bootstrap of the instance `node` describes, on `host`.
pub async fn run(
    node: &super::agent::Node,
    host: Arc<dyn Host>,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<Done, NodeError> {
    Bootstrap::on(node, host, log).run().await
}

/// The agent's addon pass on a master: re-applies the channel when it is not the
/// one this master applied last (an update wrote new bundles); nothing before the
/// bootstrap finished, which applies it itself. Returns whether it applied.
pub async fn reapply_channel(
    node: &super::agent::Node,
    host: Arc<dyn Host>,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<bool, NodeError> {
    Bootstrap::on(node, host, log).reapply_channel().await
}

/// Where a master records the digest of the channel it applied last.
pub const CHANNEL_APPLIED: &str = "/etc/keelson/channel.applied";

fn channel_digest(channel: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    crate::plan::hex(&Sha256::digest(channel))
}

/// The instance's credential and the CA certificate: what it needs to join.
struct Material {
    credential: NodeCredential,
    ca_pem: Vec<u8>,
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn env_value(name: &'static str, value: &str, message: impl Into<String>) -> NodeError {
    NodeError::EnvValue {
        name,
        value: value.to_string(),
        message: message.into(),
    }
}

impl Bootstrap<'_> {
    fn log(&self, msg: impl AsRef<str>) {
        (self.log)(msg.as_ref());
    }

    fn cluster(&self) -> &str {
        &self.env.cluster
    }

    fn sh(&self, program: &str, args: &[&str]) -> Result<(), NodeError> {
        self.host.run(program, &strings(args), &[])
    }

    fn apt(&self, args: &[&str]) -> Result<(), NodeError> {
        let mut a = vec!["-o", APT_LOCK_WAIT];
        a.extend(args);
        self.host.run(
            "apt-get",
            &strings(&a),
            &[("DEBIAN_FRONTEND", "noninteractive")],
        )
    }

    fn write(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), NodeError> {
        self.host.write_file(Path::new(path), contents, mode)
    }

    fn exists(&self, path: &str) -> Result<bool, NodeError> {
        Ok(self.host.read_file(Path::new(path))?.is_some())
    }

    async fn pause(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    pub async fn run(&self) -> Result<Done, NodeError> {
        let master = match self.env.role.as_str() {
            "master" => true,
            "node" => false,
            other => {
                return Err(env_value(
                    "KEELSON_ROLE",
                    other,
                    "only masters and nodes bootstrap into the cluster",
                ));
            }
        };
        let own = Version::parse(&self.env.kubernetes_version).ok_or_else(|| {
            env_value(
                "KEELSON_KUBERNETES_VERSION",
                &self.env.kubernetes_version,
                "not a Kubernetes version (1.31.4)",
            )
        })?;
        let taints = kubeadm::parse_taints(&self.env.taints)
            .map_err(|m| env_value("KEELSON_TAINTS", &self.env.taints, m))?;
        if self.exists(DONE)? {
            self.log(format!("{DONE} exists: this instance is bootstrapped"));
            return Ok(Done::Already);
        }
        let kubeadm_done = self
            .host
            .read_file(Path::new(KUBEADM_DONE))?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string());
        for d in [WORK, PKI, &format!("{PKI}/etcd")] {
            self.host.create_dir(Path::new(d), 0o700)?;
        }
        self.prepare_host()?;
        self.install_packages(own)?;
        if kubeadm_done.is_none() && self.has_leftovers()? {
            // kubeadm's own advice before a second attempt; also removes what it
            // made of etcd. Before the material: it empties the PKI directory.
            self.log("an earlier kubeadm attempt left files behind: kubeadm reset");
            self.host.run("kubeadm", &kubeadm::reset(), &[])?;
        }
        let patches = self.write_component_files(master)?;
        let material = self.fetch_material(master).await?;
        let api = self.api_host().await?;
        let endpoint = format!("{api}:{API_PORT}");
        let node = Registration {
            node_name: &self.me.private_dns,
            role: &self.env.role,
            group: &self.env.instance_group,
            labels: &self.env.node_labels,
            taints: &taints,
        };
        let done = match kubeadm_done.as_deref() {
            Some("init") => {
                self.log("kubeadm init went through before: finishing after it");
                self.after_init(&material).await?;
                Done::Initialized
            }
            Some(j) if j.starts_with("join ") => {
                let at_join = Version::parse(&j["join ".len()..]).ok_or_else(|| NodeError::Io {
                    path: KUBEADM_DONE.into(),
                    message: format!("unreadable ({j:?}); remove it and rerun"),
                })?;
                self.log("kubeadm join went through before: finishing after it");
                self.after_join(master, own, at_join, &endpoint, &material, patches)
                    .await?
            }
            _ => {
                let leads = if master {
                    self.lead_or_follow(&endpoint, &material).await?
                } else {
                    None
                };
                if let Some(restore) = leads {
                    if let Some(r) = &restore {
                        // Every master was lost: this one comes up with the
                        // backup's data, and the others join it.
                        self.log(format!(
                            "restoring etcd backup {} (requested with keelson restore etcd)",
                            r.backup
                        ));
                        self.remote
                            .restore_etcd(&r.backup, self.host.as_ref())
                            .await?;
                    }
                    self.init(own, &api, node, restore.is_some(), patches)
                        .await?;
                    self.after_init(&material).await?;
                    if let Some(r) = &restore {
                        lease::mark_restored(
                            self.store,
                            self.cluster(),
                            r,
                            &self.me.instance_id,
                            now_secs(),
                        )
                        .await?;
                    }
                    Done::Initialized
                } else {
                    if !master {
                        self.wait_until_ready(&endpoint, &material).await?;
                    }
                    let at_join = self
                        .join(master, own, &api, &endpoint, node, &material)
                        .await?;
                    self.after_join(master, own, at_join, &endpoint, &material, patches)
                        .await?
                }
            }
        };
        self.write(DONE, format!("{done}\n").as_bytes(), 0o644)?;
        self.log(format!("done: {done}"));
        Ok(done)
    }

    /// What kubeadm's configuration names from the node config: the kubelet
    /// patch, keelson's audit policy on masters, and a check that the files the
    /// spec names are in place (the API server's static pod mounts them as
    /// files and would never start). Returns the patch directory, if any.
    fn write_component_files(&self, master: bool) -> Result<Option<&'static str>, NodeError> {
        let config = &self.env.config;
        let patches = match kubeadm::kubelet_patch(config.kubelet.as_ref()) {
            Some(patch) => {
                self.host
                    .create_dir(Path::new(kubeadm::PATCHES_DIR), 0o755)?;
                self.write(kubeadm::KUBELET_PATCH, patch.as_bytes(), 0o644)?;
                Some(kubeadm::PATCHES_DIR)
            }
            None => None,
        };
        let Some(a) = config.kube_api_server.as_ref().filter(|_| master) else {
            return Ok(patches);
        };
        if a.audit_log_path.is_some() && a.audit_policy_file.is_none() {
            let dir = crate::spec::components::parent_dir(kubeadm::DEFAULT_AUDIT_POLICY_PATH);
            self.host.create_dir(Path::new(dir), 0o755)?;
            self.write(
                kubeadm::DEFAULT_AUDIT_POLICY_PATH,
                kubeadm::DEFAULT_AUDIT_POLICY.as_bytes(),
                0o644,
            )?;
        }
        for (field, file) in [
            ("auditPolicyFile", a.audit_policy_file.as_deref()),
            ("oidcCAFile", a.oidc_ca_file.as_deref()),
        ] {
            if let Some(f) = file
                && !self.exists(f)?
            {
                return Err(NodeError::Io {
                    path: f.to_string(),
                    message: format!(
                        "the cluster's spec.kubeAPIServer.{field} names it and it is not on this master (the API server would not start); put it in the masters' image, or remove {field} from the spec and run `keelson update cluster --yes`"
                    ),
                });
            }
        }
        Ok(patches)
    }

    /// [`kubeadm::PATCHES_DIR`] when this node has a kubelet patch.
    fn patches(&self) -> Option<&'static str> {
        kubeadm::kubelet_patch(self.env.config.kubelet.as_ref()).map(|_| kubeadm::PATCHES_DIR)
    }

    fn prepare_host(&self) -> Result<(), NodeError> {
        self.write(
            "/etc/modules-load.d/keelson.conf",
            b"overlay\nbr_netfilter\n",
            0o644,
        )?;
        self.sh("modprobe", &["overlay"])?;
        self.sh("modprobe", &["br_netfilter"])?;
        self.write(
            "/etc/sysctl.d/90-keelson.conf",
            b"net.bridge.bridge-nf-call-iptables = 1\n\
              net.bridge.bridge-nf-call-ip6tables = 1\n\
              net.ipv4.ip_forward = 1\n",
            0o644,
        )?;
        self.sh("sysctl", &["--system"])?;
        self.sh("swapoff", &["-a"])
    }

    fn install_packages(&self, v: Version) -> Result<(), NodeError> {
        let repo = format!("https://pkgs.k8s.io/core:/stable:/v{}/deb/", v.minor_line());
        let pin = format!("{v}-1.1");
        self.log(format!("installing containerd and Kubernetes {v}"));
        self.apt(&["update", "-q"])?;
        self.apt(&[
            "install",
            "-y",
            "-q",
            "apt-transport-https",
            "ca-certificates",
            "curl",
            "gpg",
            "containerd",
        ])?;
        self.host
            .create_dir(Path::new("/etc/apt/keyrings"), 0o755)?;
        let key = format!("{WORK}/kubernetes-release.key");
        self.sh(
            "curl",
            &[
                "-fsSL",
                "--retry",
                "5",
                "-o",
                &key,
                &format!("{repo}Release.key"),
            ],
        )?;
        self.sh("gpg", &["--dearmor", "--yes", "-o", KEYRING, &key])?;
        self.write(
            "/etc/apt/sources.list.d/kubernetes.list",
            format!("deb [signed-by={KEYRING}] {repo} /\n").as_bytes(),
            0o644,
        )?;
        self.apt(&["update", "-q"])?;
        // Pinned to the spec's version and held: upgrades go through keelson.
        self.apt(&[
            "install",
            "-y",
            "-q",
            &format!("kubelet={pin}"),
            &format!("kubeadm={pin}"),
            &format!("kubectl={pin}"),
        ])?;
        self.host.run(
            "apt-mark",
            &strings(&[
                "-o",
                APT_LOCK_WAIT,
                "hold",
                "kubelet",
                "kubeadm",
                "kubectl",
                "containerd",
            ]),
            &[],
        )?;
        self.host.create_dir(Path::new("/etc/containerd"), 0o755)?;
        let default = self
            .host
            .output("containerd", &strings(&["config", "default"]))?;
        // kubelet uses the systemd cgroup driver; containerd must match.
        if !default.contains("SystemdCgroup = false") {
            self.log("warning: containerd's default configuration has no `SystemdCgroup = false` to turn on; kubelet and containerd may disagree on the cgroup driver");
        }
        let config = default.replace("SystemdCgroup = false", "SystemdCgroup = true");
        self.write("/etc/containerd/config.toml", config.as_bytes(), 0o644)?;
        self.sh("systemctl", &["restart", "containerd"])?;
        self.sh("systemctl", &["enable", "kubelet"])
    }

    fn has_leftovers(&self) -> Result<bool, NodeError> {
        for f in LEFTOVERS {
            if self.exists(f)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A state-store object, retried while it is missing or unreadable (the
    /// bucket or the role's permissions still propagating).
    async fn fetch(&self, key: &str) -> Result<Vec<u8>, NodeError> {
        let mut last = String::new();
        for attempt in 1..=self.timing.attempts {
            match self.store.backend().get(key).await {
                Ok(Some(b)) => return Ok(b),
                Ok(None) => last = "it does not exist".into(),
                Err(e) => last = e.to_string(),
            }
            if attempt < self.timing.attempts {
                self.log(format!(
                    "cannot read {key} from the state store yet ({last}; attempt {attempt}); retrying"
                ));
                self.pause(self.timing.retry_pause).await;
            }
        }
        Err(NodeError::StoreObject {
            key: key.to_string(),
            attempts: self.timing.attempts,
            message: last,
        })
    }

    async fn fetch_material(&self, master: bool) -> Result<Material, NodeError> {
        let c = self.cluster().to_string();
        let ca_pem = self.fetch(&layout::pki_public(&c, "ca.crt")).await?;
        self.write(&format!("{PKI}/ca.crt"), &ca_pem, 0o644)?;
        if !master {
            let credential = self.node_credential(&ca_pem).await?;
            return Ok(Material { credential, ca_pem });
        }
        let mut ca_key = None;
        {
            // The shared CAs and service-account key, where kubeadm looks for
            // them, so that every master issues its certificates from the same CAs.
            let files = [
                (layout::pki_private(&c, "ca.key"), "ca.key", 0o600),
                (
                    layout::pki_public(&c, "front-proxy-ca.crt"),
                    "front-proxy-ca.crt",
                    0o644,
                ),
                (
                    layout::pki_private(&c, "front-proxy-ca.key"),
                    "front-proxy-ca.key",
                    0o600,
                ),
                (layout::pki_public(&c, "etcd-ca.crt"), "etcd/ca.crt", 0o644),
                (layout::pki_private(&c, "etcd-ca.key"), "etcd/ca.key", 0o600),
                (layout::pki_public(&c, "sa.pub"), "sa.pub", 0o644),
                (layout::pki_private(&c, "sa.key"), "sa.key", 0o600),
            ];
            for (key, file, mode) in files {
                let body = self.fetch(&key).await?;
                self.write(&format!("{PKI}/{file}"), &body, mode)?;
                if file == "ca.key" {
                    ca_key = Some(body);
                }
            }
        }
        // Secrets encrypted at rest: the API server reads this on every master.
        let encryption = self.fetch(&layout::encryption_config(&c)).await?;
        self.host
            .create_dir(Path::new(kubeadm::ENCRYPTION_DIR), 0o700)?;
        self.write(kubeadm::ENCRYPTION_CONFIG, &encryption, 0o600)?;
        // A master holds the CA (just fetched above): it signs its own node credential.
        let ca_key = ca_key.expect("the CA key is among a master's files");
        let (cert_pem, key) = crate::pki::client_credential(
            &Secret::new(String::from_utf8_lossy(&ca_key).into_owned()),
            "kubernetes-ca",
            &super::serve::node_user(&self.me.private_dns),
            Some(super::serve::NODES_GROUP),
            super::attest::CREDENTIAL_LIFETIME,
        )
        .map_err(|e| NodeError::Io {
            path: layout::pki_private(&c, "ca.key"),
            message: e.to_string(),
        })?;
        Ok(Material {
            credential: NodeCredential { cert_pem, key },
            ca_pem,
        })
    }

    /// A node's credential from the masters, asked until one grants it: the
    /// masters' agents start once their bootstrap is done.
    async fn node_credential(&self, ca_pem: &[u8]) -> Result<NodeCredential, NodeError> {
        let started = Instant::now();
        let mut polls = 0u64;
        loop {
            match self.remote.node_credential(ca_pem).await {
                Ok(c) => {
                    self.log("the masters granted this node its credential");
                    return Ok(c);
                }
                Err(e) if started.elapsed() >= self.timing.api_wait => return Err(e),
                Err(e) => {
                    if polls.is_multiple_of(6) {
                        self.log(format!("no node credential yet: {e}"));
                    }
                    polls += 1;
                    self.pause(self.timing.api_poll).await;
                }
            }
        }
    }

    /// `api.NAME` with DNS; for a gossip cluster the API load balancer's own name.
    async fn api_host(&self) -> Result<String, NodeError> {
        if !self.env.api_name.is_empty() {
            return Ok(self.env.api_name.clone());
        }
        let name = &self.env.api_load_balancer;
        if name.is_empty() {
            return Err(env_value(
                "KEELSON_API_LOAD_BALANCER",
                "",
                "neither it nor KEELSON_API_NAME is set, so the API cannot be found",
            ));
        }
        let mut last = String::from("not found");
        for attempt in 1..=self.timing.attempts {
            match self.remote.load_balancer_dns(name).await {
                Ok(Some(dns)) => return Ok(dns),
                Ok(None) => last = "not found".into(),
                Err(e) => last = e.to_string(),
            }
            if attempt < self.timing.attempts {
                self.log(format!(
                    "load balancer {name}: {last} (attempt {attempt}); retrying"
                ));
                self.pause(self.timing.retry_pause).await;
            }
        }
        Err(NodeError::LoadBalancer {
            name: name.clone(),
            message: format!("{last} after {} attempts", self.timing.attempts),
        })
    }

    /// The lease decides: `Some` to initialise (from the requested backup, if a
    /// restore is pending), `None` to join once the API is ready. A live claim
    /// of another master is waited on (it may expire: its holder died before
    /// init, and this master takes over).
    async fn lead_or_follow(
        &self,
        endpoint: &str,
        m: &Material,
    ) -> Result<Option<Option<lease::RestoreRequest>>, NodeError> {
        let started = Instant::now();
        let mut polls = 0u64;
        loop {
            let probe = self.remote.probe(endpoint, &m.ca_pem, &m.credential).await;
            let restore = lease::pending_restore(self.store, self.cluster()).await?;
            match lease::acquire(
                self.store,
                self.cluster(),
                &self.me.instance_id,
                now_secs(),
                probe.answers(),
                restore.is_some(),
            )
            .await?
            {
                Outcome::Leader => {
                    self.log(format!(
                        "{} holds the leader lease: this master initialises the control plane",
                        self.me.instance_id
                    ));
                    return Ok(Some(restore));
                }
                Outcome::Follower { .. } if probe.ready() => return Ok(None),
                Outcome::Follower { holder } => {
                    let holder = if holder.is_empty() {
                        "nobody".to_string()
                    } else {
                        holder
                    };
                    if started.elapsed() >= self.timing.api_wait {
                        return Err(NodeError::ApiNotReady {
                            endpoint: endpoint.to_string(),
                            waited_secs: started.elapsed().as_secs(),
                            why: format!("{probe:?}; the leader lease is {holder}'s"),
                        });
                    }
                    if polls.is_multiple_of(6) {
                        self.log(format!(
                            "waiting for the API at {endpoint} ({probe:?}; the leader lease is {holder}'s)"
                        ));
                    }
                    polls += 1;
                    self.pause(self.timing.api_poll).await;
                }
                Outcome::Lost => {
                    self.log("another master wrote the leader lease first; asking again");
                    self.pause(self.timing.lost_pause).await;
                }
            }
        }
    }

    async fn wait_until_ready(&self, endpoint: &str, m: &Material) -> Result<(), NodeError> {
        let started = Instant::now();
        let mut polls = 0u64;
        loop {
            let probe = self.remote.probe(endpoint, &m.ca_pem, &m.credential).await;
            if probe.ready() {
                return Ok(());
            }
            if started.elapsed() >= self.timing.api_wait {
                return Err(NodeError::ApiNotReady {
                    endpoint: endpoint.to_string(),
                    waited_secs: started.elapsed().as_secs(),
                    why: format!("{probe:?}"),
                });
            }
            if polls.is_multiple_of(6) {
                self.log(format!("waiting for the API at {endpoint} ({probe:?})"));
            }
            polls += 1;
            self.pause(self.timing.api_poll).await;
        }
    }

    /// Renews the lease every `renew_every`, for as long as it is polled (while
    /// kubeadm init runs). A failed renewal is reported; the claim lasts its TTL.
    async fn renew_lease(&self) -> std::convert::Infallible {
        loop {
            self.pause(self.timing.renew_every).await;
            match lease::acquire(
                self.store,
                self.cluster(),
                &self.me.instance_id,
                now_secs(),
                false,
                false,
            )
            .await
            {
                Ok(Outcome::Leader) => self.log("renewed the leader lease"),
                Ok(Outcome::Follower { holder }) => self.log(format!(
                    "warning: the leader lease is now {holder}'s; kubeadm init goes on"
                )),
                Ok(Outcome::Lost) => {
                    self.log("warning: could not renew the leader lease (a racing write)")
                }
                Err(e) => self.log(format!("warning: could not renew the leader lease: {e}")),
            }
        }
    }

    /// Runs a kubeadm command with its configuration (and a join's discovery
    /// file, which holds the credential), removing both whatever the outcome.
    async fn kubeadm_with_config(
        &self,
        config: &str,
        discovery: Option<&Secret>,
        args: Vec<String>,
        renew: bool,
    ) -> Result<(), NodeError> {
        self.write(KUBEADM_CONFIG, config.as_bytes(), 0o600)?;
        if let Some(d) = discovery {
            self.write(BOOTSTRAP_KUBECONFIG, d.expose().as_bytes(), 0o600)?;
        }
        let host = self.host.clone();
        let run = tokio::task::spawn_blocking(move || host.run("kubeadm", &args, &[]));
        let result = if renew {
            tokio::select! {
                r = run => r,
                never = self.renew_lease() => match never {},
            }
        } else {
            run.await
        };
        self.host.remove_file(Path::new(KUBEADM_CONFIG))?;
        if discovery.is_some() {
            self.host.remove_file(Path::new(BOOTSTRAP_KUBECONFIG))?;
        }
        result.map_err(|e| NodeError::Command {
            command: "kubeadm".into(),
            message: e.to_string(),
        })?
    }

    async fn init(
        &self,
        own: Version,
        api: &str,
        node: Registration<'_>,
        restored: bool,
        patches: Option<&str>,
    ) -> Result<(), NodeError> {
        let config = self.init_config(own, api, node, restored, patches);
        self.log("kubeadm init");
        self.kubeadm_with_config(&config, None, kubeadm::init_command(KUBEADM_CONFIG), true)
            .await?;
        self.write(KUBEADM_DONE, b"init\n", 0o644)
    }

    /// kubeadm's init configuration for this master at `version`.
    fn init_config(
        &self,
        version: Version,
        api: &str,
        node: Registration<'_>,
        restored: bool,
        patches: Option<&str>,
    ) -> String {
        kubeadm::init_config(&kubeadm::InitParams {
            cluster: self.cluster(),
            version,
            api_host: api,
            pod_cidr: &self.env.pod_cidr,
            service_cidr: &self.env.service_cidr,
            node,
            restored,
            api_server: self.env.config.kube_api_server.as_ref(),
            patches,
        })
    }

    async fn after_init(&self, _m: &Material) -> Result<(), NodeError> {
        if !lease::mark_initialized(self.store, self.cluster(), &self.me.instance_id, now_secs())
            .await?
        {
            let holder = self
                .store
                .backend()
                .get(&lease::key(self.cluster()))
                .await?
                .map(|b| {
                    serde_json::from_slice::<lease::Lease>(&b)
                        .map(|l| l.holder)
                        .unwrap_or_else(|_| String::from_utf8_lossy(&b).trim().to_string())
                })
                .unwrap_or_else(|| "nobody".into());
            return Err(NodeError::LeaseLost {
                cluster: self.cluster().to_string(),
                holder,
            });
        }
        self.log("marked the cluster initialised in the leader lease");
        self.apply_channel().await
    }

    async fn cluster_version(&self, endpoint: &str, m: &Material) -> Result<Version, NodeError> {
        let mut last = None;
        for attempt in 1..=self.timing.attempts {
            match self
                .remote
                .cluster_version(endpoint, &m.ca_pem, &m.credential)
                .await
            {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if attempt < self.timing.attempts {
                        self.log(format!(
                            "cannot read the control plane's version yet ({e}; attempt {attempt}); retrying"
                        ));
                        self.pause(self.timing.retry_pause).await;
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Joins; returns the control plane's version at the join.
    async fn join(
        &self,
        master: bool,
        own: Version,
        api: &str,
        endpoint: &str,
        node: Registration<'_>,
        m: &Material,
    ) -> Result<Version, NodeError> {
        let patches = self.patches();
        let at_join = self.cluster_version(endpoint, m).await?;
        let plan = kubeadm::join_plan(master, own, at_join)?;
        if plan.kubelet_ahead {
            self.log(format!(
                "the control plane is at {at_join}: this master ({own}) joins, then upgrades it"
            ));
        }
        if master {
            // kubeadm's join checks every etcd member, and etcd refuses to add one
            // while any is down: the members of gone masters go first.
            let report = self.remote.prune_members().await?;
            for why in &report.removed {
                self.log(format!("removed etcd member {why}"));
            }
        }
        let discovery = kubeadm::bootstrap_kubeconfig(
            api,
            &m.ca_pem,
            &m.credential.cert_pem,
            &m.credential.key,
        );
        let config = kubeadm::join_config(&kubeadm::JoinParams {
            discovery_file: BOOTSTRAP_KUBECONFIG,
            node: node.clone(),
            control_plane: master,
            kubelet_ahead: plan.kubelet_ahead,
            patches,
        });
        self.log(if master {
            "kubeadm join --control-plane"
        } else {
            "kubeadm join"
        });
        self.kubeadm_with_config(
            &config,
            Some(&discovery),
            kubeadm::join_command(KUBEADM_CONFIG),
            false,
        )
        .await?;
        if master {
            // At the version it joined: an upgrade, if any, comes after.
            let config = self.init_config(at_join, api, node, false, patches);
            self.log("rendering this master's API server from the cluster's spec (kubeadm init phase control-plane apiserver)");
            self.write(KUBEADM_CONFIG, config.as_bytes(), 0o600)?;
            let result = kubeadm::reconfigure_api_server(KUBEADM_CONFIG)
                .iter()
                .try_for_each(|a| self.host.run("kubeadm", a, &[]));
            self.host.remove_file(Path::new(KUBEADM_CONFIG))?;
            result?;
        }
        self.write(KUBEADM_DONE, format!("join {at_join}\n").as_bytes(), 0o644)?;
        Ok(at_join)
    }

    async fn after_join(
        &self,
        master: bool,
        own: Version,
        at_join: Version,
        endpoint: &str,
        m: &Material,
        patches: Option<&str>,
    ) -> Result<Done, NodeError> {
        if !master {
            return Ok(Done::Joined {
                control_plane: false,
                upgrade: Upgrade::None,
            });
        }
        let now = self.cluster_version(endpoint, m).await?;
        let upgrade = kubeadm::upgrade_step(own, at_join, now)?;
        match &upgrade {
            Upgrade::None => {}
            Upgrade::Apply(v) => {
                self.log(format!(
                    "the first master on {v}: kubeadm upgrade apply (the control plane is at {now})"
                ));
                self.host
                    .run("kubeadm", &kubeadm::upgrade_apply(*v, patches), &[])?;
                self.sh("systemctl", &["restart", "kubelet"])?;
                // The channel of the new version (its cloud controller follows the minor).
                self.apply_channel().await?;
            }
            Upgrade::Node => {
                self.log(format!(
                    "the cluster went to {now} after this master joined: kubeadm upgrade node"
                ));
                self.host
                    .run("kubeadm", &kubeadm::upgrade_node(patches), &[])?;
                self.sh("systemctl", &["restart", "kubelet"])?;
            }
        }
        Ok(Done::Joined {
            control_plane: true,
            upgrade,
        })
    }

    /// The addons the cluster cannot live without, in the channel's order, each
    /// checked against the channel's hash and applied until the API takes it.
    /// See [`reapply_channel`].
    pub async fn reapply_channel(&self) -> Result<bool, NodeError> {
        if !self.exists(DONE)? {
            return Ok(false);
        }
        let key = layout::addon(self.cluster(), crate::addons::CHANNEL);
        let Some(channel) = self.store.backend().get(&key).await? else {
            return Ok(false);
        };
        let applied = self.host.read_file(Path::new(CHANNEL_APPLIED))?;
        if applied.as_deref() == Some(channel_digest(&channel).as_bytes()) {
            return Ok(false);
        }
        self.apply_channel().await?;
        Ok(true)
    }

    /// Every bundle of the channel, each checked against the channel's hash and
    /// applied on its own ([`super::addons::Applier`]): a failing bundle does
    /// not stop the others, and the channel counts as applied only when all went in.
    async fn apply_channel(&self) -> Result<(), NodeError> {
        let channel = self
            .fetch(&layout::addon(self.cluster(), crate::addons::CHANNEL))
            .await?;
        let entries = parse_channel(&channel)?;
        let names = crate::addons::parse_channel(&channel).unwrap_or_default();
        let mut bundles = Vec::new();
        for (i, (manifest, hash)) in entries.into_iter().enumerate() {
            let body = self
                .fetch(&layout::addon(self.cluster(), &manifest))
                .await?;
            use sha2::{Digest, Sha256};
            // The channel writes `sha256:HEX` (addons::Rendered::hash).
            let got = format!("sha256:{}", crate::plan::hex(&Sha256::digest(&body)));
            if let Some(want) = hash
                && got != want
            {
                return Err(NodeError::Addon {
                    manifest,
                    message: format!(
                        "its SHA-256 is {got}, the channel says {want}: an update is writing the addons now, or the state store was edited; systemd retries this bootstrap"
                    ),
                });
            }
            let entry = names.get(i);
            bundles.push(super::addons::Bundle {
                name: entry
                    .map(|e| e.name.clone())
                    .unwrap_or_else(|| manifest.split('/').next().unwrap_or_default().into()),
                version: entry.map(|e| e.version.clone()).unwrap_or_default(),
                hash: got,
                manifest,
                body,
            });
        }
        let applier = super::addons::Applier {
            host: self.host.as_ref(),
            kubeconfig: ADMIN_CONF,
            dir: PathBuf::from(WORK).join("addons"),
            attempts: self.timing.attempts,
            retry_pause: self.timing.retry_pause,
            log: self.log,
        };
        let report = applier.apply(&bundles).await;
        if let Some((first, _)) = report.failed.first() {
            let all: Vec<String> = report
                .failed
                .iter()
                .map(|(n, e)| format!("{n}: {e}"))
                .collect();
            return Err(NodeError::Addon {
                manifest: first.clone(),
                message: format!(
                    "{} of {} bundles failed ({}); the others were applied, and the agent tries again",
                    report.failed.len(),
                    bundles.len(),
                    all.join("; ")
                ),
            });
        }
        self.write(CHANNEL_APPLIED, channel_digest(&channel).as_bytes(), 0o644)?;
        Ok(())
    }
}

/// The channel's manifests in order, with their SHA-256 where given.
fn parse_channel(text: &[u8]) -> Result<Vec<(String, Option<String>)>, NodeError> {
    let bad = |message: String| NodeError::Addon {
        manifest: crate::addons::CHANNEL.into(),
        message,
    };
    let v: serde_yaml::Value =
        serde_yaml::from_slice(text).map_err(|e| bad(format!("not YAML: {e}")))?;
    let addons = v["spec"]["addons"]
        .as_sequence()
        .ok_or_else(|| bad("no spec.addons list".into()))?;
    addons
        .iter()
        .map(|a| {
            let m = a["manifest"]
                .as_str()
                .ok_or_else(|| bad("an addon without a manifest".into()))?;
            // A relative path inside addons/, nothing else.
            if m.is_empty() || m.starts_with('/') || m.split('/').any(|p| p == ".." || p.is_empty())
            {
                return Err(bad(format!("manifest {m:?} is not a path under addons/")));
            }
            Ok((
                m.to_string(),
                a["manifestHash"].as_str().map(str::to_string),
            ))
        })
        .collect()
}

/// The real [`Remote::probe`]: any HTTP answer from a TLS endpoint whose
/// certificate the cluster's CA signed.
pub async fn probe_api(endpoint: &str, ca_pem: &[u8], credential: &NodeCredential) -> ApiProbe {
    let Ok(client) = api_client(endpoint, ca_pem, credential) else {
        return ApiProbe::Down;
    };
    match client.get("/readyz").await {
        Ok(_) => ApiProbe::Answers(200),
        Err(e) => e.status().map_or(ApiProbe::Down, ApiProbe::Answers),
    }
}

/// The real [`Remote::cluster_version`].
pub async fn read_cluster_version(
    endpoint: &str,
    ca_pem: &[u8],
    credential: &NodeCredential,
) -> Result<Version, NodeError> {
    let err = |message: String| NodeError::Kube {
        endpoint: endpoint.to_string(),
        message,
    };
    let client = api_client(endpoint, ca_pem, credential).map_err(|e| err(e.to_string()))?;
    let cm = client
        .get("/api/v1/namespaces/kube-system/configmaps/kubeadm-config")
        .await
        .map_err(|e| err(e.to_string()))?;
    let cc = cm["data"]["ClusterConfiguration"]
        .as_str()
        .ok_or_else(|| err("kube-system/kubeadm-config has no ClusterConfiguration".into()))?;
    kubeadm::cluster_version(cc).map_err(|m| err(format!("kube-system/kubeadm-config: {m}")))
}

fn api_client(
    endpoint: &str,
    ca_pem: &[u8],
    credential: &NodeCredential,
) -> Result<crate::kube::Client, crate::kube::KubeError> {
    crate::kube::Client::new(crate::kube::Connection {
        context: "keelson-bootstrap".into(),
        server: format!("https://{endpoint}"),
        ca_pem: ca_pem.to_vec(),
        client_cert_pem: Some(credential.cert_pem.clone().into_bytes()),
        client_key_pem: Some(credential.key.expose().as_bytes().to_vec()),
        token: None,
    })
}

#[cfg(test)]
#[path = "bootstrap_tests.rs"]
mod tests;
