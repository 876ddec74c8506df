//! kubeadm's configurations and command lines for a bootstrap, rendered purely
//! from what the instance knows (its env file, the API's host, its credential,
//! the CA): `InitConfiguration` + `ClusterConfiguration` on the master that
//! initialises, `JoinConfiguration` on every other master and node. The same
//! content as the shell bootstrap rendered (kubeadm.k8s.io/v1beta4), built as
//! values, so that no label or taint can break the YAML. Also the version rules
//! of an upgrade: who runs `kubeadm upgrade apply`, who `upgrade node`, and what
//! skew is refused.

use serde_json::{Value, json};

use crate::pki::Secret;
use crate::spec::components::{
    KubeAPIServerConfig, KubeletConfigSpec, parent_dir, parse_grace_periods, parse_thresholds,
};

/// The port the API server binds and the load balancer and security groups use.
pub const API_PORT: u16 = 443;
pub const API_VERSION: &str = "kubeadm.k8s.io/v1beta4";
/// kubeadm's default group for bootstrap tokens, which its RBAC lets join.
const TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// Where masters keep the API server's EncryptionConfiguration (a directory, so
/// that kubeadm mounts it into the static pod as one read-only volume).
pub const ENCRYPTION_DIR: &str = "/etc/kubernetes/encryption";
pub const ENCRYPTION_CONFIG: &str = "/etc/kubernetes/encryption/config.yaml";
/// Where masters keep keelson's audit policy when `auditLogPath` is set and
/// `auditPolicyFile` is not: without a policy the API server logs no event
/// (kubernetes.io/docs/tasks/debug/debug-cluster/audit/: "--audit-policy-file
/// ... if the flag is omitted, no events are logged").
pub const DEFAULT_AUDIT_POLICY_PATH: &str = "/etc/kubernetes/audit/policy.yaml";
/// Request metadata (who, what, when, the answer's code) for every request,
/// never a body, so that no Secret or token lands in the log; the health
/// probes and the RequestReceived stage (a second event per request) are left
/// out, as the example policy of the Kubernetes documentation does.
pub const DEFAULT_AUDIT_POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  - level: None
    nonResourceURLs:
      - /healthz*
      - /livez*
      - /readyz*
      - /version
  - level: Metadata
";
/// kubeadm's patch directory (`patches.directory`, `--patches`): each file is
/// `target[suffix][+patchtype].extension`, and the `kubeletconfiguration`
/// target (kubeadm 1.25+, kubernetes/kubernetes#110405) patches the kubelet
/// configuration kubeadm writes on this node, on init, join and upgrade, so a
/// group's kubelet settings stay its own and survive `kubeadm upgrade`.
pub const PATCHES_DIR: &str = "/etc/keelson/kubeadm-patches";
pub const KUBELET_PATCH: &str = "/etc/keelson/kubeadm-patches/kubeletconfiguration+merge.yaml";

/// A Kubernetes version, `1.31.4` (a `v` prefix and any pre-release or build
/// suffix are accepted and dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let core = s.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let v = Version {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next().unwrap_or(Some(0))?,
        };
        parts.next().is_none().then_some(v)
    }

    /// `v1.31.4`, as kubeadm writes it.
    pub fn tag(&self) -> String {
        format!("v{self}")
    }

    /// `1.31`, as pkgs.k8s.io names its repositories.
    pub fn minor_line(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

/// `key=value:Effect` or `key:Effect`, comma-separated, as the env file's
/// `KEELSON_TAINTS` has them (validation checked each when the spec was written).
pub fn parse_taints(s: &str) -> Result<Vec<Taint>, String> {
    s.split([',', ' ', '\t', '\n'])
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (kv, effect) = t
                .rsplit_once(':')
                .filter(|(kv, e)| !kv.is_empty() && !e.is_empty())
                .ok_or_else(|| format!("{t:?} is not a taint (key=value:Effect or key:Effect)"))?;
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (kv, None),
            };
            Ok(Taint {
                key: key.to_string(),
                value,
                effect: effect.to_string(),
            })
        })
        .collect()
}

/// Who this instance is to kubelet.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    /// The private DNS name: the AWS cloud provider names nodes so.
    pub node_name: &'a str,
    /// `master` or `node`.
    pub role: &'a str,
    pub group: &'a str,
    /// The group's `nodeLabels`, `k=v,k=v` (may be empty).
    pub labels: &'a str,
    pub taints: &'a [Taint],
}

impl Registration<'_> {
    /// kubelet labels its node itself: keelson's role and group, then the
    /// group's own labels (kubelet may not set `node-role.kubernetes.io/*`).
    pub fn node_labels(&self) -> String {
        let mut l = format!(
            "keelson.dev/role={},keelson.dev/instance-group={}",
            self.role, self.group
        );
        if !self.labels.is_empty() {
            l.push(',');
            l.push_str(self.labels);
        }
        l
    }

    fn to_value(&self, ignore_preflight: &[&str]) -> Value {
        let mut r = json!({
            "name": self.node_name,
            "kubeletExtraArgs": [
                {"name": "cloud-provider", "value": "external"},
                {"name": "node-labels", "value": self.node_labels()},
            ],
        });
        // No taints given: kubeadm's default (masters get its control-plane taint).
        if !self.taints.is_empty() {
            r["taints"] = self
                .taints
                .iter()
                .map(|t| {
                    let mut v = json!({"key": t.key});
                    if let Some(value) = &t.value {
                        v["value"] = json!(value);
                    }
                    v["effect"] = json!(t.effect);
                    v
                })
                .collect();
        }
        if !ignore_preflight.is_empty() {
            r["ignorePreflightErrors"] = json!(ignore_preflight);
        }
        r
    }
}

pub struct InitParams<'a> {
    pub cluster: &'a str,
    pub version: Version,
    pub api_host: &'a str,
    pub pod_cidr: &'a str,
    pub service_cidr: &'a str,
    pub node: Registration<'a>,
    /// etcd's data directory holds a restored backup: kubeadm's preflight,
    /// which wants it empty, is told so (kubeadm's own advice for a restore).
    pub restored: bool,
    /// The cluster's `spec.kubeAPIServer`.
    pub api_server: Option<&'a KubeAPIServerConfig>,
    /// [`PATCHES_DIR`], when this node has a kubelet patch.
    pub patches: Option<&'a str>,
}

fn yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_yaml::to_string(d).expect("a JSON value is YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// `kubeadm init --config`: the API on 443 behind `API:443`, Secrets encrypted
/// at rest ([`ENCRYPTION_CONFIG`]), and the external cloud provider. No join
/// token of keelson's: nodes join with a certificate the masters grant after
/// they prove who they are (`node::attest`). kubeadm still makes one bootstrap
/// token (its bootstrap-token phase also makes cluster-info and the RBAC that
/// lets kubelets renew their certificates); it generates a random one when
/// none is given (SetBootstrapTokensDynamicDefaults), which nobody stores, and
/// here it expires in 15 minutes instead of kubeadm's 24 hours.
pub fn init_config(p: &InitParams) -> String {
    let mut init = json!({
        "apiVersion": API_VERSION,
        "kind": "InitConfiguration",
        "bootstrapTokens": [{
            "ttl": "15m0s",
            "usages": ["signing", "authentication"],
            "groups": [TOKEN_GROUP],
        }],
        "localAPIEndpoint": {"bindPort": API_PORT},
        "nodeRegistration": p.node.to_value(if p.restored {
            &["DirAvailable--var-lib-etcd"]
        } else {
            &[]
        }),
    });
    if let Some(dir) = p.patches {
        init["patches"] = json!({"directory": dir});
    }
    let (extra_args, extra_volumes) = api_server_extras(p.api_server);
    let cluster = json!({
        "apiVersion": API_VERSION,
        "kind": "ClusterConfiguration",
        "clusterName": p.cluster,
        "kubernetesVersion": p.version.tag(),
        "controlPlaneEndpoint": format!("{}:{API_PORT}", p.api_host),
        "networking": {"podSubnet": p.pod_cidr, "serviceSubnet": p.service_cidr},
        "apiServer": {
            "certSANs": [p.api_host],
            "extraArgs": extra_args,
            "extraVolumes": extra_volumes,
        },
        "controllerManager": {"extraArgs": [{"name": "cloud-provider", "value": "external"}]},
    });
    yaml(&[init, cluster])
}

/// The audit policy the API server reads: the given file, or keelson's.
pub fn audit_policy_path(a: &KubeAPIServerConfig) -> Option<&str> {
    a.audit_log_path.as_ref()?;
    Some(
        a.audit_policy_file
            .as_deref()
            .unwrap_or(DEFAULT_AUDIT_POLICY_PATH),
    )
}

/// `apiServer.extraArgs` (v1beta4: a list of name/value, where a name may
/// repeat) and `extraVolumes`: keelson's encryption configuration, then the
/// cluster's `spec.kubeAPIServer`, each field as kube-apiserver's flag of the
/// same name (kops' `flag:` tags in componentconfig.go).
fn api_server_extras(a: Option<&KubeAPIServerConfig>) -> (Vec<Value>, Vec<Value>) {
    let mut args = vec![json!({"name": "encryption-provider-config", "value": ENCRYPTION_CONFIG})];
    let mut volumes = vec![json!({
        "name": "encryption-config",
        "hostPath": ENCRYPTION_DIR,
        "mountPath": ENCRYPTION_DIR,
        "readOnly": true,
        "pathType": "DirectoryOrCreate",
    })];
    let Some(a) = a else {
        return (args, volumes);
    };
    let mut arg = |name: &str, value: String| args.push(json!({"name": name, "value": value}));
    if !a.enable_admission_plugins.is_empty() {
        // A flag given replaces kubeadm's default (NodeRestriction): kept first.
        let mut plugins = vec!["NodeRestriction".to_string()];
        for p in &a.enable_admission_plugins {
            if !plugins.contains(p) {
                plugins.push(p.clone());
            }
        }
        arg("enable-admission-plugins", plugins.join(","));
    }
    if !a.disable_admission_plugins.is_empty() {
        arg(
            "disable-admission-plugins",
            a.disable_admission_plugins.join(","),
        );
    }
    if !a.feature_gates.is_empty() {
        let gates: Vec<String> = a
            .feature_gates
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        arg("feature-gates", gates.join(","));
    }
    if let Some(path) = &a.audit_log_path {
        arg("audit-log-path", path.clone());
        for (name, v) in [
            ("audit-log-maxage", a.audit_log_max_age),
            ("audit-log-maxbackup", a.audit_log_max_backups),
            ("audit-log-maxsize", a.audit_log_max_size),
        ] {
            if let Some(v) = v {
                arg(name, v.to_string());
            }
        }
    }
    let policy = audit_policy_path(a);
    if let Some(policy) = policy {
        arg("audit-policy-file", policy.to_string());
    }
    for (name, v) in [
        ("oidc-issuer-url", &a.oidc_issuer_url),
        ("oidc-client-id", &a.oidc_client_id),
        ("oidc-username-claim", &a.oidc_username_claim),
        ("oidc-username-prefix", &a.oidc_username_prefix),
        ("oidc-groups-claim", &a.oidc_groups_claim),
        ("oidc-groups-prefix", &a.oidc_groups_prefix),
        ("oidc-ca-file", &a.oidc_ca_file),
    ] {
        if let Some(v) = v {
            arg(name, v.clone());
        }
    }
    // Repeated, one claim each (kube-apiserver's --oidc-required-claim).
    for claim in &a.oidc_required_claim {
        arg("oidc-required-claim", claim.clone());
    }
    // What the flags name must be inside the static pod: the policy and the CA
    // read-only as files (pathType File: a missing file fails the pod, never
    // silently), the log's directory writable (rotation makes files beside it).
    let mut mount = |name: &str, path: &str, read_only: bool, kind: &str| {
        if !volumes.iter().any(|v| v["mountPath"] == path) {
            volumes.push(json!({
                "name": name,
                "hostPath": path,
                "mountPath": path,
                "readOnly": read_only,
                "pathType": kind,
            }));
        }
    };
    if let Some(policy) = policy {
        mount("audit-policy", policy, true, "File");
    }
    if let Some(path) = a.audit_log_path.as_deref().filter(|p| *p != "-") {
        mount("audit-log", parent_dir(path), false, "DirectoryOrCreate");
    }
    if let Some(ca) = &a.oidc_ca_file {
        mount("oidc-ca", ca, true, "File");
    }
    (args, volumes)
}

/// The kubelet patch ([`KUBELET_PATCH`]): a JSON merge patch of the
/// KubeletConfiguration (kubelet.config.k8s.io/v1beta1) with the group's
/// effective `spec.kubelet`; kops' comma-separated threshold strings become
/// the configuration's maps. None when nothing is set.
pub fn kubelet_patch(k: Option<&KubeletConfigSpec>) -> Option<String> {
    let k = k?;
    let mut patch = serde_json::Map::new();
    if let Some(n) = k.max_pods {
        patch.insert("maxPods".into(), json!(n));
    }
    let map = |pairs: Vec<(String, String)>| -> Value {
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    // Validation checked each list when the spec was written.
    if let Some(v) = &k.eviction_hard {
        patch.insert(
            "evictionHard".into(),
            map(parse_thresholds(v).unwrap_or_default()),
        );
    }
    if let Some(v) = &k.eviction_soft {
        patch.insert(
            "evictionSoft".into(),
            map(parse_thresholds(v).unwrap_or_default()),
        );
    }
    if let Some(v) = &k.eviction_soft_grace_period {
        patch.insert(
            "evictionSoftGracePeriod".into(),
            map(parse_grace_periods(v).unwrap_or_default()),
        );
    }
    if !k.kube_reserved.is_empty() {
        patch.insert("kubeReserved".into(), json!(k.kube_reserved));
    }
    if !k.system_reserved.is_empty() {
        patch.insert("systemReserved".into(), json!(k.system_reserved));
    }
    (!patch.is_empty()).then(|| yaml(&[Value::Object(patch)]))
}

/// A joined master renders its own API server from the cluster's current
/// spec and stores that ClusterConfiguration, as kubeadm's reconfiguration
/// guide does it (kubernetes.io/docs/tasks/administer-cluster/kubeadm/
/// kubeadm-reconfigure/: `kubeadm init phase control-plane apiserver
/// --config`, then `upload-config kubeadm`): a join takes the API server's
/// flags from the kubeadm-config ConfigMap of the first master, so without
/// this a changed `spec.kubeAPIServer` would never reach replaced masters.
pub fn reconfigure_api_server(config: &str) -> [Vec<String>; 2] {
    [
        args(&[
            "init",
            "phase",
            "control-plane",
            "apiserver",
            "--config",
            config,
        ]),
        args(&[
            "init",
            "phase",
            "upload-config",
            "kubeadm",
            "--config",
            config,
        ]),
    ]
}

pub struct JoinParams<'a> {
    /// The kubeconfig ([`bootstrap_kubeconfig`]) kubeadm discovers the cluster
    /// with and TLS-bootstraps the kubelet with.
    pub discovery_file: &'a str,
    pub node: Registration<'a>,
    /// A master: it joins the control plane, its API server on 443 too.
    pub control_plane: bool,
    /// A master one minor ahead of the control plane, about to upgrade it.
    pub kubelet_ahead: bool,
    /// [`PATCHES_DIR`], when this node has a kubelet patch.
    pub patches: Option<&'a str>,
}

/// `kubeadm join --config`, discovering the cluster with a file whose embedded
/// client certificate (`system:node:NAME`, group `system:nodes`) is the TLS
/// bootstrap credential: kubeadm takes a discovery file's own credentials when
/// no tlsBootstrapToken is set (cmd/kubeadm/app/discovery/discovery.go, For),
/// and its RBAC lets `system:nodes` read kubeadm-config and renew their own
/// client certificates (selfnodeclient). Holds no secret itself.
pub fn join_config(p: &JoinParams) -> String {
    // kubeadm's control-plane join runs init's preflight against the cluster's
    // version, which refuses a kubelet one minor ahead (KubeletVersion); the
    // upgrade that follows the join brings the control plane level with it.
    let ignore: &[&str] = if p.control_plane && p.kubelet_ahead {
        &["KubeletVersion"]
    } else {
        &[]
    };
    let mut join = json!({
        "apiVersion": API_VERSION,
        "kind": "JoinConfiguration",
        "discovery": {"file": {"kubeConfigPath": p.discovery_file}},
        "nodeRegistration": p.node.to_value(ignore),
    });
    if p.control_plane {
        join["controlPlane"] = json!({"localAPIEndpoint": {"bindPort": API_PORT}});
    }
    if let Some(dir) = p.patches {
        join["patches"] = json!({"directory": dir});
    }
    yaml(&[join])
}

/// The discovery file of a join: the API at `API:443`, the cluster CA, and the
/// node's credential embedded. A [`Secret`]: it holds the node's key.
pub fn bootstrap_kubeconfig(api_host: &str, ca_pem: &[u8], cert_pem: &str, key: &Secret) -> Secret {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubernetes", "cluster": {
            "server": format!("https://{api_host}:{API_PORT}"),
            "certificate-authority-data": b64(ca_pem),
        }}],
        "users": [{"name": "bootstrap", "user": {
            "client-certificate-data": b64(cert_pem.as_bytes()),
            "client-key-data": b64(key.expose().as_bytes()),
        }}],
        "contexts": [{"name": "bootstrap", "context": {"cluster": "kubernetes", "user": "bootstrap"}}],
        "current-context": "bootstrap",
    });
    Secret::new(yaml(&[config]))
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

pub fn init_command(config: &str) -> Vec<String> {
    args(&["init", "--config", config])
}

pub fn join_command(config: &str) -> Vec<String> {
    args(&["join", "--config", config])
}

/// The first master on a new version upgrades the cluster: its own control
/// plane, then the cluster's configuration and kubeadm's addons.
/// `patches`: [`PATCHES_DIR`] when this node has a kubelet patch, which an
/// upgrade would otherwise drop (it rewrites the kubelet's configuration).
pub fn upgrade_apply(to: Version, patches: Option<&str>) -> Vec<String> {
    let mut a = vec!["upgrade".into(), "apply".into(), to.tag(), "--yes".into()];
    if let Some(dir) = patches {
        a.extend(["--patches".into(), dir.into()]);
    }
    a
}

/// A later master: its own control plane, to the cluster's configuration.
pub fn upgrade_node(patches: Option<&str>) -> Vec<String> {
    let mut a = args(&["upgrade", "node"]);
    if let Some(dir) = patches {
        a.extend(["--patches".into(), dir.into()]);
    }
    a
}

/// What a failed attempt left (static pods, kubelet.conf) makes kubeadm's
/// preflight refuse a second; reset clears it (and a half-made etcd member).
pub fn reset() -> Vec<String> {
    args(&["reset", "--force"])
}

/// A version skew Kubernetes does not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skew {
    #[error(
        "this instance runs Kubernetes {own} and the control plane {cluster}: the major versions differ, which kubeadm cannot join or upgrade; replace the instance with one of the cluster's version"
    )]
    Major { own: Version, cluster: Version },
    #[error(
        "this master runs Kubernetes {own}, more than one minor version ahead of the control plane's {cluster}; Kubernetes upgrades one minor at a time: set the cluster's kubernetesVersion to {next}.x (`keelson upgrade cluster`), update and roll the masters, then go on"
    )]
    MasterTooNew {
        own: Version,
        cluster: Version,
        next: String,
    },
    #[error(
        "this master runs Kubernetes {own}, a minor version older than the control plane's {cluster}, and kubeadm never downgrades a control plane; its launch template predates the cluster's version: run `keelson update cluster --yes`, then replace this instance (`keelson rolling-update cluster --yes`)"
    )]
    MasterOlder { own: Version, cluster: Version },
    #[error(
        "this node's kubelet {own} is a minor version newer than the control plane's {cluster}, which the version skew policy forbids; upgrade the masters first (`keelson rolling-update cluster --yes` does masters before nodes); this node joins when systemd retries its bootstrap after that"
    )]
    NodeAhead { own: Version, cluster: Version },
    #[error(
        "this node's kubelet {own} is more than three minor versions older than the control plane's {cluster}, which the version skew policy forbids; run `keelson update cluster --yes` and replace it (`keelson rolling-update cluster --yes`)"
    )]
    NodeBehind { own: Version, cluster: Version },
}

/// How this instance joins a control plane at `cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinPlan {
    /// A master one minor ahead: it joins (at the cluster's version, kubeadm
    /// renders the control plane from the cluster's configuration) and then
    /// upgrades the cluster.
    pub kubelet_ahead: bool,
}

fn check_master(own: Version, cluster: Version) -> Result<(), Skew> {
    if own.major != cluster.major {
        return Err(Skew::Major { own, cluster });
    }
    if own.minor > cluster.minor + 1 {
        return Err(Skew::MasterTooNew {
            own,
            cluster,
            next: format!("{}.{}", cluster.major, cluster.minor + 1),
        });
    }
    if own.minor < cluster.minor {
        return Err(Skew::MasterOlder { own, cluster });
    }
    Ok(())
}

/// The rule before a join: a master may be at the control plane's minor or one
/// ahead (it upgrades next); a node's kubelet never ahead, at most three behind.
pub fn join_plan(master: bool, own: Version, cluster: Version) -> Result<JoinPlan, Skew> {
    if master {
        check_master(own, cluster)?;
        return Ok(JoinPlan {
            kubelet_ahead: own.minor > cluster.minor,
        });
    }
    if own.major != cluster.major {
        return Err(Skew::Major { own, cluster });
    }
    if own.minor > cluster.minor {
        return Err(Skew::NodeAhead { own, cluster });
    }
    if own.minor + 3 < cluster.minor {
        return Err(Skew::NodeBehind { own, cluster });
    }
    Ok(JoinPlan {
        kubelet_ahead: false,
    })
}

/// What a master does after joining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    None,
    /// The cluster's configuration is still older: this master is the first on
    /// the new version and upgrades the cluster (`kubeadm upgrade apply`).
    Apply(Version),
    /// Another master upgraded the cluster's configuration after this one
    /// joined at the older version: upgrade this control plane to it.
    Node,
}

/// The rule after a master joined: `own` is its version, `at_join` the
/// control plane's when it joined (kubeadm rendered its static pods at that
/// one), `now` the control plane's now (the kubeadm-config ConfigMap).
pub fn upgrade_step(own: Version, at_join: Version, now: Version) -> Result<Upgrade, Skew> {
    check_master(own, now)?;
    Ok(if own > now {
        Upgrade::Apply(own)
    } else if own < now {
        // A newer patch than ours is running: kubeadm never downgrades.
        Upgrade::None
    } else if at_join < own {
        Upgrade::Node
    } else {
        Upgrade::None
    })
}

/// The `kubernetesVersion` of a ClusterConfiguration (the `kubeadm-config`
/// ConfigMap's `ClusterConfiguration` key).
pub fn cluster_version(cluster_configuration: &str) -> Result<Version, String> {
    let v: serde_yaml::Value = serde_yaml::from_str(cluster_configuration)
        .map_err(|e| format!("the ClusterConfiguration is not YAML: {e}"))?;
    let s = v
        .get("kubernetesVersion")
        .and_then(|s| s.as_str())
        .ok_or("the ClusterConfiguration has no kubernetesVersion")?;
    Version::parse(s).ok_or_else(|| format!("kubernetesVersion {s:?} is not a version"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn taints() -> Vec<Taint> {
        parse_taints("dedicated=gpu:NoSchedule,spot:PreferNoSchedule").unwrap()
    }

    #[test]
    fn versions() {
        assert_eq!(v("1.31.4").tag(), "v1.31.4");
        assert_eq!(v("v1.31.4"), v("1.31.4"));
        assert_eq!(v("v1.32.0-rc.1"), v("1.32.0"));
        assert_eq!(v("1.31").patch, 0);
        assert_eq!(v("1.31.4").minor_line(), "1.31");
        assert!(v("1.31.10") > v("1.31.9"));
        for bad in ["", "x", "1", "1.a.0", "1.2.3.4"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn taints_as_the_script_read_them() {
        assert_eq!(
            taints(),
            [
                Taint {
                    key: "dedicated".into(),
                    value: Some("gpu".into()),
                    effect: "NoSchedule".into()
                },
                Taint {
                    key: "spot".into(),
                    value: None,
                    effect: "PreferNoSchedule".into()
                }
            ]
        );
        assert_eq!(parse_taints("").unwrap(), []);
        // A value may hold ':'; the effect is after the last one.
        assert_eq!(
            parse_taints("k=a:b:NoExecute").unwrap()[0].value.as_deref(),
            Some("a:b")
        );
        assert!(parse_taints("gpu").is_err());
        assert!(parse_taints("gpu:").is_err());
    }

    #[test]
    fn init_configuration() {
        let c = init_config(&InitParams {
            cluster: "demo.example.com",
            version: v("1.31.4"),
            api_host: "api.demo.example.com",
            pod_cidr: "100.96.0.0/11",
            service_cidr: "100.64.0.0/13",
            restored: false,
            api_server: None,
            patches: None,
            node: Registration {
                node_name: "ip-172-20-32-10.ec2.internal",
                role: "master",
                group: "master-us-east-1a",
                labels: "",
                taints: &[],
            },
        });
        insta::assert_snapshot!("init", c);
        assert!(!c.contains("token:"), "kubeadm generates its own");
    }

    fn spec_fields() -> (KubeAPIServerConfig, KubeletConfigSpec) {
        let api = serde_yaml::from_str(
            "enableAdmissionPlugins: [PodSecurity, NodeRestriction, AlwaysPullImages]\n\
             disableAdmissionPlugins: [DefaultStorageClass]\n\
             featureGates: {StructuredAuthenticationConfiguration: true, InPlacePodVerticalScaling: \"false\"}\n\
             auditLogPath: /var/log/kube-apiserver/audit.log\n\
             auditLogMaxAge: 10\nauditLogMaxBackups: 1\nauditLogMaxSize: 100\n\
             oidcIssuerURL: https://sso.example.com\noidcClientID: kubernetes\n\
             oidcUsernameClaim: email\noidcUsernamePrefix: \"oidc:\"\n\
             oidcGroupsClaim: groups\noidcGroupsPrefix: \"oidc:\"\n\
             oidcCAFile: /etc/kubernetes/oidc/ca.pem\n\
             oidcRequiredClaim: [hd=example.com, tier=admin]\n",
        )
        .unwrap();
        let kubelet = serde_yaml::from_str(
            "maxPods: 50\nevictionHard: memory.available<100Mi,nodefs.available<10%\n\
             evictionSoft: memory.available<300Mi\nevictionSoftGracePeriod: memory.available=1m30s\n\
             kubeReserved: {cpu: 100m, memory: 100Mi}\nsystemReserved: {memory: 200Mi}\n",
        )
        .unwrap();
        (api, kubelet)
    }

    #[test]
    fn init_configuration_with_the_spec_fields() {
        let (api, _) = spec_fields();
        let c = init_config(&InitParams {
            cluster: "demo.example.com",
            version: v("1.35.0"),
            api_host: "api.demo.example.com",
            pod_cidr: "100.96.0.0/11",
            service_cidr: "100.64.0.0/13",
            restored: false,
            api_server: Some(&api),
            patches: Some(PATCHES_DIR),
            node: Registration {
                node_name: "ip-172-20-32-10.ec2.internal",
                role: "master",
                group: "master-us-east-1a",
                labels: "",
                taints: &[],
            },
        });
        insta::assert_snapshot!("init_spec_fields", c);
        let docs: Vec<serde_yaml::Value> = c
            .split("---\n")
            .map(|d| serde_yaml::from_str(d).unwrap())
            .collect();
        assert_eq!(docs[0]["patches"]["directory"], PATCHES_DIR);
        let server = &docs[1]["apiServer"];
        let arg = |name: &str| -> Vec<String> {
            server["extraArgs"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter(|a| a["name"] == name)
                .map(|a| a["value"].as_str().unwrap().to_string())
                .collect()
        };
        // kubeadm's NodeRestriction stays, first and once.
        assert_eq!(
            arg("enable-admission-plugins"),
            ["NodeRestriction,PodSecurity,AlwaysPullImages"]
        );
        assert_eq!(arg("oidc-required-claim"), ["hd=example.com", "tier=admin"]);
        assert_eq!(arg("audit-policy-file"), [DEFAULT_AUDIT_POLICY_PATH]);
        assert_eq!(
            arg("feature-gates"),
            ["InPlacePodVerticalScaling=false,StructuredAuthenticationConfiguration=true"]
        );
        let mounts: Vec<&str> = server["extraVolumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v["mountPath"].as_str().unwrap())
            .collect();
        assert_eq!(
            mounts,
            [
                ENCRYPTION_DIR,
                DEFAULT_AUDIT_POLICY_PATH,
                "/var/log/kube-apiserver",
                "/etc/kubernetes/oidc/ca.pem"
            ]
        );
        // Nothing set: the configuration of before, byte for byte.
        fn plain(api_server: Option<&KubeAPIServerConfig>) -> String {
            init_config(&InitParams {
                cluster: "c",
                version: v("1.35.0"),
                api_host: "a",
                pod_cidr: "p",
                service_cidr: "s",
                restored: false,
                api_server,
                patches: None,
                node: Registration {
                    node_name: "n",
                    role: "master",
                    group: "g",
                    labels: "",
                    taints: &[],
                },
            })
        }
        assert_eq!(plain(None), plain(Some(&KubeAPIServerConfig::default())));
        // A policy of the user's own, and the log to standard output: no log mount.
        let own: KubeAPIServerConfig =
            serde_yaml::from_str("auditLogPath: \"-\"\nauditPolicyFile: /etc/audit/p.yaml\n")
                .unwrap();
        let c = plain(Some(&own));
        assert!(c.contains("value: /etc/audit/p.yaml"), "{c}");
        assert!(!c.contains("audit-log\n"), "{c}");
        assert!(!c.contains(DEFAULT_AUDIT_POLICY_PATH), "{c}");
    }

    #[test]
    fn the_kubelet_patch() {
        let (_, kubelet) = spec_fields();
        let p = kubelet_patch(Some(&kubelet)).unwrap();
        insta::assert_snapshot!("kubelet_patch", p);
        let v: serde_yaml::Value = serde_yaml::from_str(&p).unwrap();
        assert_eq!(v["maxPods"], 50);
        assert_eq!(v["evictionHard"]["nodefs.available"], "10%");
        assert_eq!(v["evictionSoftGracePeriod"]["memory.available"], "1m30s");
        assert_eq!(kubelet_patch(None), None);
        assert_eq!(kubelet_patch(Some(&KubeletConfigSpec::default())), None);
        let policy: serde_yaml::Value = serde_yaml::from_str(DEFAULT_AUDIT_POLICY).unwrap();
        assert_eq!(policy["kind"], "Policy");
        assert_eq!(policy["rules"][1]["level"], "Metadata");
    }

    #[test]
    fn control_plane_join_configuration() {
        let c = join_config(&JoinParams {
            discovery_file: "/etc/keelson/bootstrap.kubeconfig",
            node: Registration {
                node_name: "ip-172-20-64-11.ec2.internal",
                role: "master",
                group: "master-us-east-1b",
                labels: "",
                taints: &[],
            },
            control_plane: true,
            kubelet_ahead: false,
            patches: None,
        });
        insta::assert_snapshot!("join_control_plane", c);
        let ahead = join_config(&JoinParams {
            discovery_file: "/etc/keelson/bootstrap.kubeconfig",
            node: Registration {
                node_name: "n",
                role: "master",
                group: "g",
                labels: "",
                taints: &[],
            },
            control_plane: true,
            kubelet_ahead: true,
            patches: None,
        });
        assert!(ahead.contains("  ignorePreflightErrors:\n  - KubeletVersion\n"));
    }

    #[test]
    fn node_join_configuration() {
        let taints = taints();
        let c = join_config(&JoinParams {
            discovery_file: "/etc/keelson/bootstrap.kubeconfig",
            node: Registration {
                node_name: "ip-172-20-96-12.ec2.internal",
                role: "node",
                group: "nodes",
                labels: "team=data,tier=\"batch\"",
                taints: &taints,
            },
            control_plane: false,
            // Never for a node.
            kubelet_ahead: true,
            patches: None,
        });
        insta::assert_snapshot!("join_node", c);
        // The YAML stays YAML whatever a label holds.
        let parsed: serde_yaml::Value = serde_yaml::from_str(&c).unwrap();
        assert_eq!(
            parsed["nodeRegistration"]["kubeletExtraArgs"][1]["value"],
            "keelson.dev/role=node,keelson.dev/instance-group=nodes,team=data,tier=\"batch\""
        );
        assert!(parsed["nodeRegistration"]["ignorePreflightErrors"].is_null());
    }

    #[test]
    fn upgrade_commands() {
        insta::assert_snapshot!("upgrade_apply", upgrade_apply(v("1.32.1"), None).join(" "));
        insta::assert_snapshot!("upgrade_node", upgrade_node(None).join(" "));
        assert_eq!(
            upgrade_node(Some(PATCHES_DIR)).join(" "),
            format!("upgrade node --patches {PATCHES_DIR}")
        );
        assert!(
            upgrade_apply(v("1.32.1"), Some(PATCHES_DIR))
                .ends_with(&["--patches".to_string(), PATCHES_DIR.to_string()])
        );
    }

    #[test]
    fn join_rules() {
        let ok = |m, o, c| join_plan(m, v(o), v(c));
        assert_eq!(
            ok(true, "1.31.4", "1.31.2"),
            Ok(JoinPlan {
                kubelet_ahead: false
            })
        );
        assert_eq!(
            ok(true, "1.32.0", "1.31.4"),
            Ok(JoinPlan {
                kubelet_ahead: true
            })
        );
        assert!(matches!(
            ok(true, "1.33.0", "1.31.4"),
            Err(Skew::MasterTooNew { ref next, .. }) if next == "1.32"
        ));
        assert!(matches!(
            ok(true, "1.30.9", "1.31.0"),
            Err(Skew::MasterOlder { .. })
        ));
        assert!(matches!(
            ok(true, "2.0.0", "1.31.0"),
            Err(Skew::Major { .. })
        ));
        assert!(ok(false, "1.31.9", "1.31.0").is_ok());
        assert!(ok(false, "1.28.0", "1.31.0").is_ok());
        assert!(matches!(
            ok(false, "1.32.0", "1.31.4"),
            Err(Skew::NodeAhead { .. })
        ));
        assert!(matches!(
            ok(false, "1.27.0", "1.31.0"),
            Err(Skew::NodeBehind { .. })
        ));
        let e = ok(true, "1.33.0", "1.31.4").unwrap_err().to_string();
        assert!(
            e.contains("1.33.0") && e.contains("1.31.4") && e.contains("1.32.x"),
            "{e}"
        );
    }

    #[test]
    fn upgrade_rules() {
        let step = |o, j, n| upgrade_step(v(o), v(j), v(n));
        // Nothing to do when the versions agree.
        assert_eq!(step("1.31.4", "1.31.4", "1.31.4"), Ok(Upgrade::None));
        // The first master on the new version: the cluster is still older.
        assert_eq!(
            step("1.32.1", "1.31.4", "1.31.4"),
            Ok(Upgrade::Apply(v("1.32.1")))
        );
        // A patch upgrade too.
        assert_eq!(
            step("1.31.5", "1.31.4", "1.31.4"),
            Ok(Upgrade::Apply(v("1.31.5")))
        );
        // Another master upgraded the cluster after this one joined at the old version.
        assert_eq!(step("1.32.1", "1.31.4", "1.32.1"), Ok(Upgrade::Node));
        // Joined when the cluster already was on this version: kubeadm rendered it so.
        assert_eq!(step("1.32.1", "1.32.1", "1.32.1"), Ok(Upgrade::None));
        // Never down.
        assert_eq!(step("1.31.3", "1.31.4", "1.31.4"), Ok(Upgrade::None));
        assert!(matches!(
            step("1.33.0", "1.31.4", "1.31.4"),
            Err(Skew::MasterTooNew { .. })
        ));
        assert!(matches!(
            step("1.31.4", "1.31.4", "1.32.0"),
            Err(Skew::MasterOlder { .. })
        ));
    }

    #[test]
    fn the_cluster_version_from_kubeadm_config() {
        let cc = "apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.31.4\n";
        assert_eq!(cluster_version(cc), Ok(v("1.31.4")));
        assert!(cluster_version("kind: ClusterConfiguration\n").is_err());
        assert!(cluster_version("kubernetesVersion: latest\n").is_err());
    }
}
