//! `spec.kubeAPIServer` and `spec.kubelet` (also per InstanceGroup): the
//! component settings kops users set most, with kops' field names
//! (kops `pkg/apis/kops/componentconfig.go`: KubeAPIServerConfig,
//! KubeletConfigSpec), their validation, and the node configuration the
//! user-data carries to each instance (`/etc/keelson/node-config.yaml`), which
//! `node::kubeadm` renders into kubeadm's configuration.
//!
//! kops has no generic extra-arguments field for the API server, so neither
//! does keelson: each flag is a typed, validated field.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::validate::FieldError;

/// Where the user-data writes the node configuration on masters and nodes.
pub const NODE_CONFIG_PATH: &str = "/etc/keelson/node-config.yaml";

/// kubeadm's own API-server mounts (kubeadm `controlplane/volumes.go`:
/// k8s-certs, ca-certs, etc-ca-certificates, usr-share-ca-certificates,
/// usr-local-share-ca-certificates, etc-pki) and keelson's encryption
/// directory: a second mount at one of these paths makes the static pod invalid
/// (a container's mountPaths must be unique).
pub const RESERVED_MOUNTS: &[&str] = &[
    "/etc/kubernetes/pki",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/etc/pki",
    "/etc/kubernetes/encryption",
];

/// A node's pod range is a /24 (kubeadm sets kube-controller-manager's
/// `--node-cidr-mask-size` to 24 for IPv4): 256 addresses less the network,
/// the bridge's and the broadcast address leave 253 for pods.
pub const MAX_PODS: u32 = 253;

/// kubelet's eviction signals (kubernetes.io/docs/concepts/scheduling-eviction/
/// node-pressure-eviction/#eviction-signals).
const EVICTION_SIGNALS: &[&str] = &[
    "memory.available",
    "allocatableMemory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "containerfs.available",
    "containerfs.inodesFree",
    "pid.available",
];

/// The resources kubelet reserves (`kubeReserved`, `systemReserved`).
const RESERVABLE: &[&str] = &["cpu", "memory", "ephemeral-storage", "pid"];

/// `spec.kubeAPIServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeAPIServerConfig {
    /// Added to kubeadm's own (`NodeRestriction`, which stays on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enable_admission_plugins: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable_admission_plugins: Vec<String>,
    /// `Name: true|false` (kops writes the values as strings; a YAML boolean is
    /// accepted too).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "gate_map"
    )]
    pub feature_gates: BTreeMap<String, String>,
    /// A file on the masters, or `-` for the API server's standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log_path: Option<String>,
    /// Days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log_max_age: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log_max_backups: Option<u32>,
    /// Megabytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log_max_size: Option<u32>,
    /// A policy file already on the masters; without it keelson writes its own
    /// default policy ([`crate::node::kubeadm::DEFAULT_AUDIT_POLICY`]), since
    /// without a policy the API server logs no event at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_policy_file: Option<String>,
    #[serde(
        default,
        rename = "oidcIssuerURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub oidc_issuer_url: Option<String>,
    #[serde(
        default,
        rename = "oidcClientID",
        skip_serializing_if = "Option::is_none"
    )]
    pub oidc_client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_username_claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_username_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_groups_claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_groups_prefix: Option<String>,
    #[serde(
        default,
        rename = "oidcCAFile",
        skip_serializing_if = "Option::is_none"
    )]
    pub oidc_ca_file: Option<String>,
    /// `claim=value`, each required in the ID token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oidc_required_claim: Vec<String>,
}

/// `spec.kubelet` of the cluster and of an InstanceGroup (the group's fields
/// win, field by field; maps merge key by key, as kops merges them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletConfigSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods: Option<u32>,
    /// `signal<quantity`, comma-separated, as kubelet's `--eviction-hard`:
    /// `memory.available<100Mi,nodefs.available<10%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_hard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_soft: Option<String>,
    /// `signal=duration`, comma-separated: `memory.available=1m30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_soft_grace_period: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kube_reserved: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub system_reserved: BTreeMap<String, String>,
}

/// What the user-data tells an instance about its components: the API
/// server's settings on masters, the group's effective kubelet settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeConfig {
    #[serde(
        default,
        rename = "kubeAPIServer",
        skip_serializing_if = "Option::is_none"
    )]
    pub kube_api_server: Option<KubeAPIServerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<KubeletConfigSpec>,
}

/// kops' `hooks` entry: a systemd unit on the group's instances, written by
/// cloud-init and started before keelson's bootstrap (kops docs
/// cluster_spec.md "hooks": `manifest` is the unit's `[Service]` section, or
/// the whole unit with `useRawManifest`). Not on bastions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hook {
    /// The unit's name, `NAME.service`.
    pub name: String,
    pub manifest: String,
    /// Units this one runs before (`Before=`), such as kubelet.service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// `Master`, `Node`; empty for both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<super::Role>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_raw_manifest: bool,
}

/// kops' `fileAssets` entry: a file written by cloud-init on the group's
/// instances (kops' default path: /srv/kubernetes/assets/NAME).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileAsset {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub content: String,
    /// Empty for every role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<super::Role>,
}

impl FileAsset {
    pub fn path(&self) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| format!("/srv/kubernetes/assets/{}", self.name))
    }
}

impl Hook {
    /// The unit file as written.
    pub fn unit(&self) -> String {
        if self.use_raw_manifest {
            return self.manifest.clone();
        }
        let mut u = format!("[Unit]\nDescription=keelson hook {}\n", self.name);
        if !self.before.is_empty() {
            u.push_str(&format!("Before={}\n", self.before.join(" ")));
        }
        if !self.requires.is_empty() {
            u.push_str(&format!("Requires={}\n", self.requires.join(" ")));
        }
        u.push_str(&format!(
            "\n[Service]\n{}\n\n[Install]\nWantedBy=multi-user.target\n",
            self.manifest.trim_end()
        ));
        u
    }
}

/// The hooks and file assets of a group: the cluster's for its role, with
/// the group's own replacing any of the same name (hooks) or path (files),
/// as kops lets a group's hook override the cluster's.
pub fn hooks_and_files(
    c: &super::Cluster,
    g: &super::InstanceGroup,
) -> (Vec<Hook>, Vec<FileAsset>) {
    let role = g.spec.role;
    let applies = |roles: &[super::Role]| roles.is_empty() || roles.contains(&role);
    let mut hooks: Vec<Hook> = Vec::new();
    if role != super::Role::Bastion {
        for h in c.spec.hooks.iter().chain(&g.spec.hooks) {
            if applies(&h.roles) {
                hooks.retain(|x| x.name != h.name);
                hooks.push(h.clone());
            }
        }
    }
    let mut files: Vec<FileAsset> = Vec::new();
    for f in c.spec.file_assets.iter().chain(&g.spec.file_assets) {
        if applies(&f.roles) {
            files.retain(|x| x.path() != f.path());
            files.push(f.clone());
        }
    }
    (hooks, files)
}

/// keelson's own units and files, which a hook or asset may not replace.
const OWN_UNITS: &[&str] = &[
    "keelson-bootstrap.service",
    "keelson-agent.service",
    "kubelet.service",
    "containerd.service",
];

fn is_unit_name(n: &str) -> bool {
    n.strip_suffix(".service").is_some_and(|b| {
        !b.is_empty()
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.@".contains(&c))
    })
}

/// A path that stays one plain YAML scalar in the user-data.
fn is_plain_path(p: &str) -> bool {
    is_abs_path(p)
        && p.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"/-_.+@".contains(&c))
}

/// `spec.hooks` and `spec.fileAssets` problems (`prefix` is `spec`).
pub fn validate_hooks_and_files(
    hooks: &[Hook],
    files: &[FileAsset],
    prefix: &str,
) -> Vec<FieldError> {
    let mut e = Vec::new();
    for (i, h) in hooks.iter().enumerate() {
        let f = |x: &str| format!("{prefix}.hooks[{i}].{x}");
        if !is_unit_name(&h.name) {
            e.push(FieldError::new(
                &f("name"),
                format!("{:?}", h.name),
                "is not a systemd service name",
                "name the unit NAME.service, such as iptables-restore.service",
            ));
        } else if OWN_UNITS.contains(&h.name.as_str()) {
            e.push(FieldError::new(
                &f("name"),
                &h.name,
                "is a unit keelson runs itself",
                "give the hook a name of its own",
            ));
        }
        if h.manifest.trim().is_empty() {
            e.push(FieldError::new(
                &f("manifest"),
                "\"\"",
                "is empty",
                "give the unit's [Service] section, such as Type=oneshot and ExecStart=...",
            ));
        }
        if h.use_raw_manifest && (!h.before.is_empty() || !h.requires.is_empty()) {
            e.push(FieldError::new(
                &f("useRawManifest"),
                "true",
                "takes the unit as written, so before and requires would be ignored",
                "put Before= and Requires= in the manifest's [Unit] section",
            ));
        }
        for (name, units) in [("before", &h.before), ("requires", &h.requires)] {
            for u in units {
                if u.is_empty() || u.contains(char::is_whitespace) {
                    e.push(FieldError::new(
                        &f(name),
                        format!("{u:?}"),
                        "is not a unit name",
                        "give unit names such as kubelet.service",
                    ));
                }
            }
        }
        if h.roles.contains(&super::Role::Bastion) {
            e.push(FieldError::new(
                &f("roles"),
                "Bastion",
                "runs no Kubernetes, and hooks run before Kubernetes starts",
                "use Master or Node, or write the bastion's files with fileAssets",
            ));
        }
    }
    for (i, a) in files.iter().enumerate() {
        let f = |x: &str| format!("{prefix}.fileAssets[{i}].{x}");
        if a.name.is_empty()
            || !a
                .name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        {
            e.push(FieldError::new(
                &f("name"),
                format!("{:?}", a.name),
                "is not a file asset name",
                "use letters, digits, dashes, dots",
            ));
        }
        let path = a.path();
        if !is_plain_path(&path) {
            e.push(FieldError::new(
                &f("path"),
                &path,
                "is not an absolute path of letters, digits and /-_.+@",
                "use a path such as /etc/myapp/config.yaml",
            ));
        } else if ["/etc/keelson/", "/opt/keelson/", "/etc/kubernetes/"]
            .iter()
            .any(|d| path.starts_with(d))
        {
            e.push(FieldError::new(
                &f("path"),
                &path,
                "is inside a directory keelson or kubeadm writes",
                "put the file elsewhere, such as /etc/myapp/",
            ));
        }
    }
    e
}

impl NodeConfig {
    /// Of a group of the cluster (bastions run no Kubernetes: empty).
    pub fn of(c: &super::Cluster, g: &super::InstanceGroup) -> NodeConfig {
        if g.spec.role == super::Role::Bastion {
            return NodeConfig::default();
        }
        NodeConfig {
            kube_api_server: (g.spec.role == super::Role::Master)
                .then(|| c.spec.kube_api_server.clone())
                .flatten()
                .filter(|a| *a != KubeAPIServerConfig::default()),
            kubelet: KubeletConfigSpec::effective(c.spec.kubelet.as_ref(), g.spec.kubelet.as_ref()),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == NodeConfig::default()
    }

    pub fn parse(text: &str) -> Result<NodeConfig, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a node config serializes")
    }
}

impl KubeletConfigSpec {
    /// The group's settings over the cluster's; None when neither sets any.
    pub fn effective(
        cluster: Option<&KubeletConfigSpec>,
        group: Option<&KubeletConfigSpec>,
    ) -> Option<KubeletConfigSpec> {
        let mut k = cluster.cloned().unwrap_or_default();
        if let Some(g) = group {
            let g = g.clone();
            k.max_pods = g.max_pods.or(k.max_pods);
            k.eviction_hard = g.eviction_hard.or(k.eviction_hard);
            k.eviction_soft = g.eviction_soft.or(k.eviction_soft);
            k.eviction_soft_grace_period = g
                .eviction_soft_grace_period
                .or(k.eviction_soft_grace_period);
            k.kube_reserved.extend(g.kube_reserved);
            k.system_reserved.extend(g.system_reserved);
        }
        (k != KubeletConfigSpec::default()).then_some(k)
    }
}

fn gate_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        B(bool),
        S(String),
    }
    let m: BTreeMap<String, V> = BTreeMap::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| {
            let v = match v {
                V::B(b) => b.to_string(),
                V::S(s) => s,
            };
            (k, v)
        })
        .collect())
}

/// `signal<quantity` pairs of an eviction threshold list, or what is wrong.
pub fn parse_thresholds(s: &str) -> Result<Vec<(String, String)>, String> {
    split_list(s, '<', "signal<quantity (memory.available<100Mi)")
}

/// `signal=duration` pairs of `evictionSoftGracePeriod`.
pub fn parse_grace_periods(s: &str) -> Result<Vec<(String, String)>, String> {
    split_list(s, '=', "signal=duration (memory.available=1m30s)")
}

fn split_list(s: &str, sep: char, form: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        let (k, v) = item
            .split_once(sep)
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .ok_or_else(|| format!("{item:?} is not {form}"))?;
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// A Kubernetes quantity as kubelet reads reservations and thresholds:
/// digits, an optional fraction, an optional SI or binary suffix.
fn is_quantity(s: &str) -> bool {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits_end);
    let num_ok = !num.is_empty()
        && num.split('.').count() <= 2
        && num
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    num_ok
        && matches!(
            suffix,
            "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
        )
}

/// A threshold's value: a quantity or a percentage up to 100%.
fn is_threshold(s: &str) -> bool {
    match s.strip_suffix('%') {
        Some(p) => p.parse::<f64>().is_ok_and(|p| (0.0..=100.0).contains(&p)),
        None => is_quantity(s),
    }
}

/// A Go duration as kubelet parses it: `90s`, `1m30s`, `1h`.
fn is_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ns", "us", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

fn is_abs_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() > 1
        && !p.ends_with('/')
        && !p.split('/').any(|s| s == ".." || s == ".")
        && !p.contains(|c: char| c.is_whitespace() || c == ',' || c.is_control())
}

/// The directory of an absolute file path (`/var/log/a.log` -> `/var/log`).
pub fn parent_dir(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

/// A component's name as the API server's flags list them: no separator, no space.
fn is_list_item(s: &str) -> bool {
    !s.is_empty() && !s.contains(|c: char| c == ',' || c == '=' || c.is_whitespace())
}

/// `spec.kubeAPIServer`'s problems, each field relative (`spec.kubeAPIServer.x`).
pub fn validate_api_server(a: &KubeAPIServerConfig) -> Vec<FieldError> {
    let p = "spec.kubeAPIServer";
    let mut e = Vec::new();
    let mut add = |field: String, value: &str, problem: &str, fix: &str| {
        e.push(FieldError::new(&field, value, problem, fix));
    };
    for (name, list) in [
        ("enableAdmissionPlugins", &a.enable_admission_plugins),
        ("disableAdmissionPlugins", &a.disable_admission_plugins),
    ] {
        for (i, plugin) in list.iter().enumerate() {
            if !is_list_item(plugin) {
                add(
                    format!("{p}.{name}[{i}]"),
                    &format!("{plugin:?}"),
                    "is not an admission plugin name",
                    "give one plugin name per entry, such as PodSecurity (no commas or spaces)",
                );
            }
        }
    }
    for plugin in &a.disable_admission_plugins {
        if a.enable_admission_plugins.contains(plugin) {
            add(
                format!("{p}.disableAdmissionPlugins"),
                plugin,
                "is also in enableAdmissionPlugins",
                "list each plugin in one of the two",
            );
        }
        if plugin == "NodeRestriction" {
            add(
                format!("{p}.disableAdmissionPlugins"),
                plugin,
                "would let every kubelet change any node and pod, and keelson's nodes join with node credentials it bounds",
                "remove NodeRestriction from disableAdmissionPlugins",
            );
        }
    }
    for (gate, value) in &a.feature_gates {
        if gate.is_empty() || !gate.bytes().all(|b| b.is_ascii_alphanumeric()) {
            add(
                format!("{p}.featureGates"),
                &format!("{gate:?}"),
                "is not a feature gate name",
                "use the gate's name, such as StructuredAuthenticationConfiguration",
            );
        }
        if value != "true" && value != "false" {
            add(
                format!("{p}.featureGates.{gate}"),
                value,
                "is not true or false",
                "set the gate to true or false",
            );
        }
    }
    match &a.audit_log_path {
        Some(path) if path == "-" => {}
        Some(path) => {
            if !is_abs_path(path) {
                add(
                    format!("{p}.auditLogPath"),
                    path,
                    "is not an absolute file path",
                    "use a path such as /var/log/kube-apiserver/audit.log, or - for the API server's output",
                );
            } else if parent_dir(path) == "/" || RESERVED_MOUNTS.contains(&parent_dir(path)) {
                add(
                    format!("{p}.auditLogPath"),
                    path,
                    "is in a directory the API server cannot be given to write (/, or one kubeadm already mounts)",
                    "use a directory of its own, such as /var/log/kube-apiserver/audit.log",
                );
            }
        }
        None => {
            for (name, set) in [
                ("auditLogMaxAge", a.audit_log_max_age.is_some()),
                ("auditLogMaxBackups", a.audit_log_max_backups.is_some()),
                ("auditLogMaxSize", a.audit_log_max_size.is_some()),
                ("auditPolicyFile", a.audit_policy_file.is_some()),
            ] {
                if set {
                    add(
                        format!("{p}.{name}"),
                        "",
                        "has no effect without auditLogPath",
                        "set auditLogPath (such as /var/log/kube-apiserver/audit.log) or remove it",
                    );
                }
            }
        }
    }
    if a.audit_log_path.as_deref() == Some("-") {
        for (name, set) in [
            ("auditLogMaxAge", a.audit_log_max_age.is_some()),
            ("auditLogMaxBackups", a.audit_log_max_backups.is_some()),
            ("auditLogMaxSize", a.audit_log_max_size.is_some()),
        ] {
            if set {
                add(
                    format!("{p}.{name}"),
                    "",
                    "rotates a log file, and auditLogPath - logs to the API server's output",
                    "set auditLogPath to a file or remove it",
                );
            }
        }
    }
    for (name, file) in [
        ("auditPolicyFile", &a.audit_policy_file),
        ("oidcCAFile", &a.oidc_ca_file),
    ] {
        if let Some(f) = file
            && !is_abs_path(f)
        {
            add(
                format!("{p}.{name}"),
                f,
                "is not an absolute file path",
                "give the file's absolute path on the masters, such as /etc/kubernetes/oidc/ca.pem",
            );
        }
    }
    match &a.oidc_issuer_url {
        Some(url) => {
            let rest = url.strip_prefix("https://");
            let host = rest.map(|r| r.split('/').next().unwrap_or(""));
            if rest.is_none()
                || host.is_none_or(|h| h.is_empty())
                || url.contains(['?', '#'])
                || url.contains(char::is_whitespace)
            {
                add(
                    format!("{p}.oidcIssuerURL"),
                    url,
                    "is not an https URL without query or fragment (the API server accepts only those)",
                    "use the issuer's URL exactly as its tokens' iss claim has it, such as https://accounts.example.com",
                );
            }
            if a.oidc_client_id
                .as_deref()
                .is_none_or(|c| c.trim().is_empty())
            {
                add(
                    format!("{p}.oidcClientID"),
                    "",
                    "is missing, and the API server needs it with oidcIssuerURL",
                    "set the client ID your identity provider issues tokens for (their aud claim)",
                );
            }
        }
        None => {
            for (name, set) in [
                ("oidcClientID", a.oidc_client_id.is_some()),
                ("oidcUsernameClaim", a.oidc_username_claim.is_some()),
                ("oidcUsernamePrefix", a.oidc_username_prefix.is_some()),
                ("oidcGroupsClaim", a.oidc_groups_claim.is_some()),
                ("oidcGroupsPrefix", a.oidc_groups_prefix.is_some()),
                ("oidcCAFile", a.oidc_ca_file.is_some()),
                ("oidcRequiredClaim", !a.oidc_required_claim.is_empty()),
            ] {
                if set {
                    add(
                        format!("{p}.{name}"),
                        "",
                        "has no effect without oidcIssuerURL",
                        "set oidcIssuerURL (https://...) or remove it",
                    );
                }
            }
        }
    }
    for (name, claim) in [
        ("oidcUsernameClaim", &a.oidc_username_claim),
        ("oidcGroupsClaim", &a.oidc_groups_claim),
    ] {
        if let Some(c) = claim
            && !is_list_item(c)
        {
            add(
                format!("{p}.{name}"),
                &format!("{c:?}"),
                "is not a claim name",
                "use the claim's name in the ID token, such as email or groups",
            );
        }
    }
    for (i, rc) in a.oidc_required_claim.iter().enumerate() {
        if !rc
            .split_once('=')
            .is_some_and(|(k, v)| is_list_item(k) && !v.is_empty() && !v.contains(','))
        {
            add(
                format!("{p}.oidcRequiredClaim[{i}]"),
                &format!("{rc:?}"),
                "is not claim=value",
                "write each required claim as name=value, such as hd=example.com",
            );
        }
    }
    e
}

/// A `spec.kubelet`'s problems (`prefix` is `spec.kubelet`).
pub fn validate_kubelet(k: &KubeletConfigSpec, prefix: &str) -> Vec<FieldError> {
    let mut e = Vec::new();
    if let Some(n) = k.max_pods
        && !(1..=MAX_PODS).contains(&n)
    {
        e.push(FieldError::new(
            &format!("{prefix}.maxPods"),
            n.to_string(),
            format!("is not between 1 and {MAX_PODS}: a node's pod range is a /24, which holds {MAX_PODS} pods"),
            "use a count such as 110 (kubelet's default)",
        ));
    }
    let mut thresholds = |name: &str, v: &Option<String>| -> Vec<String> {
        let Some(v) = v else { return Vec::new() };
        let field = format!("{prefix}.{name}");
        match parse_thresholds(v) {
            Err(m) => {
                e.push(FieldError::new(
                    &field,
                    format!("{v:?}"),
                    m,
                    "write signal<quantity, comma-separated, such as memory.available<100Mi,nodefs.available<10%",
                ));
                Vec::new()
            }
            Ok(pairs) => {
                for (signal, value) in &pairs {
                    if !EVICTION_SIGNALS.contains(&signal.as_str()) {
                        e.push(FieldError::new(
                            &field,
                            signal,
                            "is not an eviction signal",
                            format!("use one of {}", EVICTION_SIGNALS.join(", ")),
                        ));
                    } else if !is_threshold(value) {
                        e.push(FieldError::new(
                            &field,
                            format!("{signal}<{value}"),
                            "has no quantity or percentage",
                            "give a quantity such as 100Mi or a percentage such as 10%",
                        ));
                    }
                }
                pairs.into_iter().map(|(s, _)| s).collect()
            }
        }
    };
    thresholds("evictionHard", &k.eviction_hard);
    let soft = thresholds("evictionSoft", &k.eviction_soft);
    match (&k.eviction_soft_grace_period, soft.is_empty()) {
        (None, false) => e.push(FieldError::new(
            &format!("{prefix}.evictionSoftGracePeriod"),
            "",
            "is missing, and kubelet refuses a soft threshold without a grace period",
            "set evictionSoftGracePeriod, such as memory.available=1m30s, for each signal of evictionSoft",
        )),
        (Some(g), _) => match parse_grace_periods(g) {
            Err(m) => e.push(FieldError::new(
                &format!("{prefix}.evictionSoftGracePeriod"),
                format!("{g:?}"),
                m,
                "write signal=duration, comma-separated, such as memory.available=1m30s",
            )),
            Ok(pairs) => {
                for (signal, d) in &pairs {
                    if !soft.contains(signal) {
                        e.push(FieldError::new(
                            &format!("{prefix}.evictionSoftGracePeriod"),
                            signal,
                            "has no threshold in evictionSoft",
                            "give each grace period a soft threshold, or remove it",
                        ));
                    } else if !is_duration(d) {
                        e.push(FieldError::new(
                            &format!("{prefix}.evictionSoftGracePeriod"),
                            format!("{signal}={d}"),
                            "has no duration",
                            "give a duration such as 90s or 1m30s",
                        ));
                    }
                }
                for signal in &soft {
                    if !pairs.iter().any(|(s, _)| s == signal) {
                        e.push(FieldError::new(
                            &format!("{prefix}.evictionSoftGracePeriod"),
                            signal,
                            "has no grace period, and kubelet refuses a soft threshold without one",
                            format!("add {signal}=1m30s (or another duration)"),
                        ));
                    }
                }
            }
        },
        (None, true) => {}
    }
    for (name, map) in [
        ("kubeReserved", &k.kube_reserved),
        ("systemReserved", &k.system_reserved),
    ] {
        for (res, q) in map {
            if !RESERVABLE.contains(&res.as_str()) {
                e.push(FieldError::new(
                    &format!("{prefix}.{name}"),
                    res,
                    "is not a resource kubelet reserves",
                    format!("use {}", RESERVABLE.join(", ")),
                ));
            } else if !is_quantity(q) || (res == "pid" && !q.bytes().all(|b| b.is_ascii_digit())) {
                e.push(FieldError::new(
                    &format!("{prefix}.{name}.{res}"),
                    format!("{q:?}"),
                    "is not a quantity",
                    "give a quantity such as 100m (cpu), 512Mi (memory) or 1000 (pid)",
                ));
            }
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(yaml: &str) -> KubeAPIServerConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn kubelet(yaml: &str) -> KubeletConfigSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn fields(e: &[FieldError]) -> Vec<String> {
        e.iter().map(|e| e.field.clone()).collect()
    }

    #[test]
    fn kops_field_names_parse() {
        let a = api("enableAdmissionPlugins: [PodSecurity]\n\
             disableAdmissionPlugins: [DefaultStorageClass]\n\
             featureGates: {A: \"true\", B: false}\n\
             auditLogPath: /var/log/kube-apiserver/audit.log\n\
             auditLogMaxAge: 10\nauditLogMaxBackups: 1\nauditLogMaxSize: 100\n\
             oidcIssuerURL: https://sso.example.com\noidcClientID: kubernetes\n\
             oidcUsernameClaim: email\noidcUsernamePrefix: \"oidc:\"\n\
             oidcGroupsClaim: groups\noidcGroupsPrefix: \"oidc:\"\n\
             oidcCAFile: /etc/kubernetes/oidc/ca.pem\noidcRequiredClaim: [hd=example.com]\n");
        assert_eq!(a.feature_gates["B"], "false");
        assert_eq!(a.oidc_client_id.as_deref(), Some("kubernetes"));
        assert_eq!(validate_api_server(&a), []);
        let e = serde_yaml::from_str::<KubeAPIServerConfig>("oidcIssuerUrl: x\n").unwrap_err();
        assert!(e.to_string().contains("oidcIssuerURL"), "{e}");
        let k = kubelet(
            "maxPods: 50\nevictionHard: memory.available<100Mi,nodefs.available<10%\n\
             evictionSoft: memory.available<300Mi\nevictionSoftGracePeriod: memory.available=1m30s\n\
             kubeReserved: {cpu: 100m, memory: 100Mi, ephemeral-storage: 1Gi}\n\
             systemReserved: {memory: 0.5Gi, pid: \"1000\"}\n",
        );
        assert_eq!(validate_kubelet(&k, "spec.kubelet"), []);
        assert!(serde_yaml::from_str::<KubeletConfigSpec>("maxPods: -1\n").is_err());
    }

    #[test]
    fn bad_api_server_values_name_their_field() {
        let e = validate_api_server(&api("enableAdmissionPlugins: [\"\", \"A,B\"]\n\
             disableAdmissionPlugins: [NodeRestriction]\nfeatureGates: {X: maybe}\n\
             auditLogMaxSize: 5\noidcIssuerURL: http://sso.example.com\n"));
        assert_eq!(
            fields(&e),
            [
                "spec.kubeAPIServer.enableAdmissionPlugins[0]",
                "spec.kubeAPIServer.enableAdmissionPlugins[1]",
                "spec.kubeAPIServer.disableAdmissionPlugins",
                "spec.kubeAPIServer.featureGates.X",
                "spec.kubeAPIServer.auditLogMaxSize",
                "spec.kubeAPIServer.oidcIssuerURL",
                "spec.kubeAPIServer.oidcClientID",
            ]
        );
        let e = validate_api_server(&api("auditLogPath: /audit.log\noidcGroupsClaim: groups\n"));
        assert_eq!(
            fields(&e),
            [
                "spec.kubeAPIServer.auditLogPath",
                "spec.kubeAPIServer.oidcGroupsClaim"
            ]
        );
        assert!(e[1].problem.contains("without oidcIssuerURL"), "{}", e[1]);
        for bad in [
            "relative.log",
            "/etc/kubernetes/pki/audit.log",
            "/var/log/../x",
        ] {
            let e = validate_api_server(&api(&format!("auditLogPath: {bad}\n")));
            assert_eq!(fields(&e), ["spec.kubeAPIServer.auditLogPath"], "{bad}");
        }
        let e = validate_api_server(&api("auditLogPath: \"-\"\nauditLogMaxAge: 3\n"));
        assert_eq!(fields(&e), ["spec.kubeAPIServer.auditLogMaxAge"]);
        let e = validate_api_server(&api(
            "oidcIssuerURL: https://sso.example.com?x=1\noidcClientID: k\n",
        ));
        assert_eq!(fields(&e), ["spec.kubeAPIServer.oidcIssuerURL"]);
    }

    #[test]
    fn bad_kubelet_values_name_their_field() {
        let e = validate_kubelet(
            &kubelet(
                "maxPods: 0\nevictionHard: memory.free<1Gi,nodefs.available<lots\n\
                 evictionSoft: memory.available<1Gi\n\
                 kubeReserved: {gpu: \"1\", cpu: lots}\n",
            ),
            "spec.kubelet",
        );
        assert_eq!(
            fields(&e),
            [
                "spec.kubelet.maxPods",
                "spec.kubelet.evictionHard",
                "spec.kubelet.evictionHard",
                "spec.kubelet.evictionSoftGracePeriod",
                "spec.kubelet.kubeReserved.cpu",
                "spec.kubelet.kubeReserved",
            ]
        );
        let e = validate_kubelet(&kubelet("maxPods: 254\n"), "spec.kubelet");
        assert!(e[0].to_string().contains("254"), "{}", e[0]);
        let e = validate_kubelet(
            &kubelet(
                "evictionSoft: memory.available<1Gi\nevictionSoftGracePeriod: memory.available=soon,pid.available=1m\n",
            ),
            "spec.kubelet",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(validate_kubelet(&kubelet("evictionHard: \"\"\n"), "p").len() == 1);
    }

    #[test]
    fn the_group_wins_field_by_field() {
        let c = kubelet(
            "maxPods: 50\nevictionHard: memory.available<100Mi\nkubeReserved: {cpu: 100m, memory: 100Mi}\n",
        );
        let g = kubelet("maxPods: 30\nkubeReserved: {memory: 200Mi}\n");
        let k = KubeletConfigSpec::effective(Some(&c), Some(&g)).unwrap();
        assert_eq!(k.max_pods, Some(30));
        assert_eq!(k.eviction_hard.as_deref(), Some("memory.available<100Mi"));
        assert_eq!(k.kube_reserved["cpu"], "100m");
        assert_eq!(k.kube_reserved["memory"], "200Mi");
        assert_eq!(KubeletConfigSpec::effective(None, None), None);
        assert_eq!(
            KubeletConfigSpec::effective(Some(&KubeletConfigSpec::default()), None),
            None
        );
        assert_eq!(KubeletConfigSpec::effective(None, Some(&g)), Some(g));
    }

    #[test]
    fn hooks_and_file_assets() {
        let hooks: Vec<Hook> = serde_yaml::from_str(
            "- name: cachefiles.service\n  before: [kubelet.service]\n  manifest: |\n    Type=oneshot\n    ExecStart=/sbin/modprobe cachefiles\n",
        )
        .unwrap();
        assert_eq!(
            hooks[0].unit(),
            "[Unit]\nDescription=keelson hook cachefiles.service\nBefore=kubelet.service\n\n[Service]\nType=oneshot\nExecStart=/sbin/modprobe cachefiles\n\n[Install]\nWantedBy=multi-user.target\n"
        );
        let files: Vec<FileAsset> = serde_yaml::from_str("- name: rules\n  content: x\n").unwrap();
        assert_eq!(files[0].path(), "/srv/kubernetes/assets/rules");
        assert_eq!(validate_hooks_and_files(&hooks, &files, "spec"), []);
        let bad_hooks: Vec<Hook> = serde_yaml::from_str(
            "- {name: kubelet.service, manifest: x}\n- {name: x, manifest: \"\", roles: [Bastion]}\n- {name: r.service, manifest: x, useRawManifest: true, before: [a.service]}\n",
        )
        .unwrap();
        let bad_files: Vec<FileAsset> = serde_yaml::from_str(
            "- {name: a, path: relative, content: x}\n- {name: b, path: /etc/keelson/env, content: x}\n- {name: c, path: \"/etc/a b\", content: x}\n",
        )
        .unwrap();
        assert_eq!(
            fields(&validate_hooks_and_files(&bad_hooks, &bad_files, "spec")),
            [
                "spec.hooks[0].name",
                "spec.hooks[1].name",
                "spec.hooks[1].manifest",
                "spec.hooks[1].roles",
                "spec.hooks[2].useRawManifest",
                "spec.fileAssets[0].path",
                "spec.fileAssets[1].path",
                "spec.fileAssets[2].path",
            ]
        );
        assert!(
            serde_yaml::from_str::<Vec<Hook>>("- {name: a.service, execContainer: {image: x}}\n")
                .is_err()
        );
    }

    #[test]
    fn quantities_and_durations() {
        for ok in ["100m", "1", "0.5Gi", "512Mi", "1G"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Mi", "1.2.3", "-1", "1 Gi", "10%"] {
            assert!(!is_quantity(bad), "{bad}");
        }
        assert!(is_threshold("10%") && !is_threshold("101%"));
        for ok in ["90s", "1m30s", "1h", "500ms", "1.5h"] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in ["", "90", "s", "1d", "soon"] {
            assert!(!is_duration(bad), "{bad}");
        }
        assert_eq!(parent_dir("/var/log/a.log"), "/var/log");
        assert_eq!(parent_dir("/a.log"), "/");
    }
}
