//! Addon bundles (`addons/` at the top of the repository): the manifests keelson
//! installs in a cluster, rendered for one cluster, and the channel that lists
//! them in the order the masters apply them. Pure: writing them to the state
//! store is `ops::update`'s job, applying them `node::addons`'.
//!
//! A bundle is configured by `spec.addons.<bundle>` ([`crate::spec::AddonSpec`]):
//! `enabled`, its few typed [`Setting`]s, and `overrides`, a JSON merge patch
//! (RFC 7386) per rendered object keyed `Kind/name`, applied after rendering.
//! Every rendered object is labelled [`MANAGED_BY`] and [`BUNDLE_LABEL`], which
//! is how the applier finds what to prune; CRDs come first.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};

use crate::spec::validate::FieldError;
use crate::spec::{AddonSpec, Cluster, NetworkingPlugin};

#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    #[error("addon bundle {bundle}: the template does not render: {message}")]
    Render { bundle: String, message: String },
    #[error("{0}")]
    Invalid(FieldError),
}

/// `app.kubernetes.io/managed-by: keelson` on every object keelson applies.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "keelson");
/// `addons.keelson.dev/bundle: NAME`: the bundle an object belongs to.
pub const BUNDLE_LABEL: &str = "addons.keelson.dev/bundle";
/// The annotation prefix on the `kube-system` namespace recording, per bundle,
/// the version and manifest hash a master applied (`VERSION sha256:HEX`).
pub const APPLIED_ANNOTATION: &str = "addons.keelson.dev/";

/// The channel's own path under `NAME/addons/`.
pub const CHANNEL: &str = "bootstrap-channel.yaml";

/// The type of a bundle's setting, checked by validation.
#[derive(Debug, Clone, Copy)]
pub enum SettingKind {
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    Choice(&'static [&'static str]),
    /// A number (fractions allowed) from `min` to `max`.
    Number {
        min: f64,
        max: f64,
    },
    /// A Go duration of whole seconds, minutes or hours (`30s`, `10m`, `1h`).
    Duration,
    /// A structured value checked by the bundle's own function, which returns
    /// the problem and the fix (with the offending part named) when it is bad.
    Custom(fn(&Value) -> Result<(), (String, String)>),
}

#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub kind: SettingKind,
    /// The default, as YAML.
    pub default: &'static str,
    pub doc: &'static str,
}

/// When a bundle is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Chosen by `spec.networking`, not by `enabled`.
    Networking(NetworkingPlugin),
    /// Always: the cluster does not work without it.
    Always,
    /// Unless `enabled: false`.
    Default,
    /// Only with `enabled: true`.
    OptIn,
}

/// A bundle in `addons/`.
pub struct Bundle {
    pub name: &'static str,
    pub when: When,
    template: &'static str,
    /// IAM statements (a JSON array, minijinja) the masters' role gets while the
    /// bundle is enabled.
    iam: Option<&'static str>,
    pub settings: &'static [Setting],
    version: fn(minor: u32) -> String,
    image_tag: fn(version: &str) -> String,
}

fn v(tag: &str) -> String {
    format!("v{tag}")
}
fn none(_: &str) -> String {
    String::new()
}

/// Every bundle, in the order the masters apply them: the network first
/// (nothing else schedules before it), then the cloud controller (which removes
/// the `uninitialized` taint from nodes), then the rest.
pub const BUNDLES: &[Bundle] = &[
    Bundle {
        name: "networking.flannel",
        when: When::Networking(NetworkingPlugin::Flannel),
        template: include_str!("../../addons/networking.flannel/flannel.yaml.j2"),
        iam: None,
        settings: &[],
        version: |_| "0.26.7".into(),
        image_tag: none,
    },
    Bundle {
        name: "networking.cilium",
        when: When::Networking(NetworkingPlugin::Cilium),
        template: include_str!("../../addons/networking.cilium/cilium.yaml.j2"),
        iam: None,
        settings: &[],
        version: |_| "1.17.4".into(),
        image_tag: none,
    },
    Bundle {
        name: "aws-cloud-controller-manager",
        when: When::Always,
        template: include_str!("../../addons/aws-cloud-controller-manager/ccm.yaml.j2"),
        iam: None,
        settings: &[],
        // Released per Kubernetes minor, as v1.MINOR.PATCH.
        version: |minor| format!("1.{minor}.0"),
        image_tag: v,
    },
    Bundle {
        name: "aws-ebs-csi-driver",
        when: When::Default,
        template: include_str!("../../addons/aws-ebs-csi-driver/ebs-csi.yaml.j2"),
        iam: Some(include_str!("../../addons/aws-ebs-csi-driver/iam.json.j2")),
        settings: &[
            Setting {
                name: "controllerReplicas",
                kind: SettingKind::Int { min: 1, max: 5 },
                default: "2",
                doc: "replicas of the controller (on the control plane)",
            },
            Setting {
                name: "defaultStorageClass",
                kind: SettingKind::Bool,
                default: "true",
                doc: "whether the `gp3` StorageClass is the cluster's default",
            },
            Setting {
                name: "volumeType",
                kind: SettingKind::Choice(&["gp3", "gp2", "io2", "st1", "sc1"]),
                default: "gp3",
                doc: "the EBS volume type of the `gp3` StorageClass",
            },
        ],
        version: |_| "1.44.0".into(),
        image_tag: v,
    },
    Bundle {
        name: "metrics-server",
        when: When::Default,
        template: include_str!("../../addons/metrics-server/metrics-server.yaml.j2"),
        iam: None,
        settings: &[Setting {
            name: "replicas",
            kind: SettingKind::Int { min: 1, max: 5 },
            default: "2",
            doc: "replicas (with a PodDisruptionBudget of minAvailable 1 above one)",
        }],
        // metrics-server's compatibility matrix: 0.8.x for Kubernetes 1.31+,
        // 0.7.x for 1.27-1.30 (keelson supports 1.32+).
        version: |minor| if minor >= 31 { "0.8.0" } else { "0.7.2" }.into(),
        image_tag: v,
    },
    Bundle {
        name: "aws-node-termination-handler",
        when: When::Default,
        template: include_str!("../../addons/aws-node-termination-handler/nth.yaml.j2"),
        iam: None,
        settings: &[
            Setting {
                name: "enableSpotInterruptionDraining",
                kind: SettingKind::Bool,
                default: "true",
                doc: "drain a node on a Spot interruption notice",
            },
            Setting {
                name: "enableScheduledEventDraining",
                kind: SettingKind::Bool,
                default: "true",
                doc: "drain a node before an EC2 scheduled maintenance event",
            },
            Setting {
                name: "enableRebalanceMonitoring",
                kind: SettingKind::Bool,
                default: "false",
                doc: "cordon a node on a rebalance recommendation",
            },
        ],
        version: |_| "1.25.0".into(),
        image_tag: v,
    },
    Bundle {
        name: "cluster-autoscaler",
        when: When::OptIn,
        template: include_str!("../../addons/cluster-autoscaler/cluster-autoscaler.yaml.j2"),
        iam: Some(include_str!("../../addons/cluster-autoscaler/iam.json.j2")),
        settings: &[
            Setting {
                name: "expander",
                kind: SettingKind::Choice(&["least-waste", "most-pods", "least-nodes", "random"]),
                default: "least-waste",
                doc: "how a node group is chosen to grow (`--expander`)",
            },
            Setting {
                name: "scaleDownUtilizationThreshold",
                kind: SettingKind::Number { min: 0.0, max: 1.0 },
                default: "0.5",
                doc: "a node below this share of requested CPU and memory may be removed",
            },
        ],
        // Released per Kubernetes minor, as v1.MINOR.PATCH, each minor's
        // release supporting its own Kubernetes minor.
        version: |minor| format!("1.{minor}.0"),
        image_tag: v,
    },
    Bundle {
        name: "cert-manager",
        when: When::OptIn,
        // The template, then keelson's own CRDs (sorted first when rendered).
        template: concat!(
            include_str!("../../addons/cert-manager/cert-manager.yaml.j2"),
            "\n---\n",
            include_str!("../../addons/cert-manager/crds.yaml")
        ),
        iam: Some(include_str!("../../addons/cert-manager/iam.json.j2")),
        settings: &[
            Setting {
                name: "email",
                kind: SettingKind::Custom(cert_manager::email),
                default: "\"\"",
                doc: "the ACME account's contact address (required when enabled)",
            },
            Setting {
                name: "issuers",
                kind: SettingKind::Choice(&["both", "staging", "production"]),
                default: "both",
                doc: "which Let's Encrypt ClusterIssuers: `letsencrypt-staging`, `letsencrypt` (production) or both",
            },
            Setting {
                name: "ingressClass",
                kind: SettingKind::Custom(cert_manager::ingress_class),
                default: "traefik",
                doc: "the IngressClass that serves HTTP-01 challenges",
            },
        ],
        version: |_| "1.19.2".into(),
        image_tag: v,
    },
    Bundle {
        name: "external-dns",
        when: When::OptIn,
        template: include_str!("../../addons/external-dns/external-dns.yaml.j2"),
        iam: Some(include_str!("../../addons/external-dns/iam.json.j2")),
        settings: &[
            Setting {
                name: "policy",
                kind: SettingKind::Choice(&["upsert-only", "sync"]),
                default: "upsert-only",
                doc: "upsert-only never deletes a record; sync also deletes the records it owns",
            },
            Setting {
                name: "hostedZoneId",
                kind: SettingKind::Custom(platform::zone_id),
                default: "null",
                doc: "the id of spec.dnsZone's Route53 zone: scopes the policy to that zone's ARN",
            },
        ],
        version: |_| "0.20.0".into(),
        image_tag: v,
    },
    Bundle {
        name: "traefik",
        when: When::OptIn,
        template: include_str!("../../addons/traefik/traefik.yaml.j2"),
        iam: None,
        settings: &[
            Setting {
                name: "replicas",
                kind: SettingKind::Int { min: 1, max: 10 },
                default: "2",
                doc: "replicas (with a PodDisruptionBudget of minAvailable 1 above one)",
            },
            Setting {
                name: "defaultClass",
                kind: SettingKind::Bool,
                default: "true",
                doc: "whether the IngressClass `traefik` is the cluster's default",
            },
            Setting {
                name: "nginxAnnotations",
                kind: SettingKind::Bool,
                default: "false",
                doc: "also serve Ingresses of class `nginx` with their ingress-nginx annotations",
            },
        ],
        version: |_| "3.6.9".into(),
        image_tag: v,
    },
    Bundle {
        name: "headlamp",
        when: When::OptIn,
        template: include_str!("../../addons/headlamp/headlamp.yaml.j2"),
        iam: None,
        settings: &[
            Setting {
                name: "groups",
                kind: SettingKind::Custom(platform::groups),
                default: "[]",
                doc: "groups bound to the read-only ClusterRole",
            },
            Setting {
                name: "oauth2Proxy",
                kind: SettingKind::Bool,
                default: "false",
                doc: "oauth2-proxy in front of Headlamp (OIDC single sign-on)",
            },
            Setting {
                name: "issuerURL",
                kind: SettingKind::Custom(platform::https_url),
                default: "null",
                doc: "the OIDC issuer oauth2-proxy signs users in with",
            },
            Setting {
                name: "clientID",
                kind: SettingKind::Custom(platform::client_id),
                default: "null",
                doc: "oauth2-proxy's OIDC client id (its secret is in a Secret, never in the spec)",
            },
            Setting {
                name: "allowedGroups",
                kind: SettingKind::Custom(platform::groups),
                default: "[]",
                doc: "only members of these groups pass oauth2-proxy (all signed-in users if empty)",
            },
            Setting {
                name: "host",
                kind: SettingKind::Custom(platform::hostname),
                default: "null",
                doc: "an Ingress (class traefik) for this host routes to oauth2-proxy",
            },
        ],
        version: |_| "0.32.0".into(),
        image_tag: v,
    },
    Bundle {
        name: "monitoring",
        when: When::OptIn,
        template: include_str!("../../addons/monitoring/monitoring.yaml.j2"),
        iam: None,
        settings: &[
            Setting {
                name: "retentionDays",
                kind: SettingKind::Int { min: 1, max: 365 },
                default: "15",
                doc: "days Prometheus keeps its samples",
            },
            Setting {
                name: "storageGi",
                kind: SettingKind::Int {
                    min: 10,
                    max: 16384,
                },
                default: "50",
                doc: "the size of Prometheus' gp3 volume (GiB); samples also go at 85% of it",
            },
            Setting {
                name: "receivers",
                kind: SettingKind::Custom(observability::receivers),
                default: "[]",
                doc: "Alertmanager's receivers, each naming the Secret with its credential",
            },
            Setting {
                name: "ingress",
                kind: SettingKind::Bool,
                default: "false",
                doc: "with spec.dnsZone, Grafana at grafana.ZONE through the traefik ingress",
            },
            Setting {
                name: "clusterIssuer",
                kind: SettingKind::Custom(observability::issuer),
                default: "letsencrypt",
                doc: "the cert-manager ClusterIssuer of the ingress' certificate",
            },
        ],
        version: |_| "2.55.1".into(),
        image_tag: v,
    },
    Bundle {
        name: "logging",
        when: When::OptIn,
        template: include_str!("../../addons/logging/logging.yaml.j2"),
        iam: None,
        settings: &[
            Setting {
                name: "retentionDays",
                kind: SettingKind::Int { min: 1, max: 365 },
                default: "7",
                doc: "days an index of logs is kept (the ISM policy deletes older ones)",
            },
            Setting {
                name: "storageGi",
                kind: SettingKind::Int {
                    min: 10,
                    max: 16384,
                },
                default: "100",
                doc: "the size of each OpenSearch node's gp3 volume (GiB)",
            },
            Setting {
                name: "ingress",
                kind: SettingKind::Bool,
                default: "false",
                doc: "with spec.dnsZone, OpenSearch Dashboards at logs.ZONE through the traefik ingress",
            },
            Setting {
                name: "clusterIssuer",
                kind: SettingKind::Custom(observability::issuer),
                default: "letsencrypt",
                doc: "the cert-manager ClusterIssuer of the ingress' certificate",
            },
        ],
        version: |_| "2.19.2".into(),
        image_tag: none,
    },
];

/// The kinds keelson's bundles render, with their resources, as the applier
/// lists them to prune. Namespaces and CRDs are never pruned (deleting either
/// deletes everything in it); a test checks every rendered kind is here or one
/// of those.
pub const PRUNABLE: &[(&str, &str, &str)] = &[
    // (kind, API group, resource)
    ("ConfigMap", "", "configmaps"),
    ("StatefulSet", "apps", "statefulsets"),
    ("Job", "batch", "jobs"),
    ("Ingress", "networking.k8s.io", "ingresses"),
    ("IngressClass", "networking.k8s.io", "ingressclasses"),
    ("NetworkPolicy", "networking.k8s.io", "networkpolicies"),
    ("Secret", "", "secrets"),
    ("Service", "", "services"),
    ("ServiceAccount", "", "serviceaccounts"),
    ("DaemonSet", "apps", "daemonsets"),
    ("Deployment", "apps", "deployments"),
    ("PodDisruptionBudget", "policy", "poddisruptionbudgets"),
    ("ClusterRole", "rbac.authorization.k8s.io", "clusterroles"),
    (
        "ClusterRoleBinding",
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
    ),
    ("Role", "rbac.authorization.k8s.io", "roles"),
    ("RoleBinding", "rbac.authorization.k8s.io", "rolebindings"),
    ("StorageClass", "storage.k8s.io", "storageclasses"),
    ("CSIDriver", "storage.k8s.io", "csidrivers"),
    ("PriorityClass", "scheduling.k8s.io", "priorityclasses"),
    ("APIService", "apiregistration.k8s.io", "apiservices"),
    (
        "MutatingWebhookConfiguration",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    (
        "ValidatingWebhookConfiguration",
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
];

/// Kinds applied but never pruned. Custom resources (cert-manager's
/// ClusterIssuers) are not listed to prune: the listing names every bundle's
/// kinds at once, and a CRD's kind is served only while its bundle is.
pub const NEVER_PRUNED: &[&str] = &["Namespace", "CustomResourceDefinition", "ClusterIssuer"];

pub fn bundle(name: &str) -> Option<&'static Bundle> {
    BUNDLES.iter().find(|b| b.name == name)
}

/// One rendered bundle, ready for the state store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub name: String,
    pub version: String,
    /// The path under `NAME/addons/`.
    pub path: String,
    pub manifest: String,
}

impl Rendered {
    pub fn hash(&self) -> String {
        format!(
            "sha256:{}",
            crate::plan::hex(&Sha256::digest(self.manifest.as_bytes()))
        )
    }
}

fn minor(c: &Cluster) -> u32 {
    crate::spec::validate::kubernetes_minor(&c.spec.kubernetes_version).unwrap_or_default()
}

fn field(bundle: &str, rest: &str) -> String {
    if rest.is_empty() {
        format!("spec.addons.{bundle}")
    } else {
        format!("spec.addons.{bundle}.{rest}")
    }
}

fn known_bundles() -> String {
    BUNDLES
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Bundle {
    pub fn version(&self, c: &Cluster) -> String {
        (self.version)(minor(c))
    }

    /// Whether the cluster runs this bundle.
    pub fn enabled(&self, c: &Cluster) -> bool {
        let set = c.spec.addons.get(self.name).and_then(|a| a.enabled);
        match self.when {
            When::Networking(p) => c.spec.networking.plugins().contains(&p),
            When::Always => true,
            When::Default => set.unwrap_or(true),
            When::OptIn => set.unwrap_or(false),
        }
    }

    /// The settings with defaults filled in, each checked against its type.
    fn settings(&self, spec: Option<&AddonSpec>) -> Result<Mapping, FieldError> {
        let mut out = Mapping::new();
        if let Some(spec) = spec {
            for (k, value) in &spec.settings {
                let Some(s) = self.settings.iter().find(|s| s.name == k) else {
                    let known: Vec<&str> = self.settings.iter().map(|s| s.name).collect();
                    return Err(FieldError::new(
                        &field(self.name, k),
                        "",
                        "is not a setting of this bundle",
                        if known.is_empty() {
                            "remove it: the bundle has no settings (use `overrides` to patch its objects)".to_string()
                        } else {
                            format!("use one of {}, `enabled` or `overrides`", known.join(", "))
                        },
                    ));
                };
                check_setting(self.name, s, value)?;
                out.insert(Value::from(s.name), value.clone());
            }
        }
        for s in self.settings {
            if !out.contains_key(s.name) {
                let d: Value =
                    serde_yaml::from_str(s.default).expect("a setting's default is YAML");
                out.insert(Value::from(s.name), d);
            }
        }
        Ok(out)
    }

    /// The bundle rendered for `c` with its settings, before overrides, as
    /// objects in template order.
    fn objects(&self, c: &Cluster, settings: &Mapping) -> Result<(String, Vec<Value>), AddonError> {
        let version = self.version(c);
        let ctx = minijinja::context! {
            cluster => c.name(),
            version => version,
            image_tag => (self.image_tag)(&version),
            pod_cidr => crate::model::POD_CIDR,
            service_cidr => c.spec.service_cluster_ip_range.to_string(),
            kubernetes_version => c.spec.kubernetes_version,
            kubernetes_minor => minor(c).to_string(),
            region => c.region().unwrap_or_default(),
            dns_zone => c.spec.dns_zone.clone().unwrap_or_default(),
            zone_type => if c.spec.topology.dns.kind == crate::spec::DnsType::Private { "private" } else { "public" },
            oauth2_proxy_tag => platform::OAUTH2_PROXY_TAG,
            settings => settings,
        };
        let render_err = |message: String| AddonError::Render {
            bundle: self.name.into(),
            message,
        };
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let text = env
            .render_str(self.template, ctx)
            .map_err(|e| render_err(e.to_string()))?;
        let mut out = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).map_err(|e| render_err(format!("not YAML: {e}")))?;
            if v.is_null() {
                continue;
            }
            if v.get("kind").and_then(Value::as_str).is_none()
                || v.get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    .is_none()
            {
                return Err(render_err(
                    "an object without a kind or metadata.name".into(),
                ));
            }
            out.push(v);
        }
        // The template's opening comment says what the bundle is: kept.
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        Ok((header, out))
    }

    /// The statements this bundle adds to the masters' policy (JSON).
    pub fn iam_statements(&self, c: &Cluster) -> Result<Vec<serde_json::Value>, String> {
        let Some(t) = self.iam else {
            return Ok(Vec::new());
        };
        // The bundle's settings and the cluster's zone are the template's too.
        let settings = self
            .settings(c.spec.addons.get(self.name))
            .map_err(|e| e.to_string())?;
        let v = crate::model::iam::render_with(t, c, &settings).map_err(|e| e.to_string())?;
        match v {
            serde_json::Value::Array(a) => Ok(a),
            _ => Err(format!("{}: IAM template is not a JSON array", self.name)),
        }
    }
}

use serde::Deserialize;

fn check_setting(bundle: &str, s: &Setting, value: &Value) -> Result<(), FieldError> {
    let f = field(bundle, s.name);
    let shown = serde_yaml::to_string(value)
        .unwrap_or_default()
        .trim()
        .to_string();
    let bad = |problem: String, fix: String| Err(FieldError::new(&f, shown.clone(), problem, fix));
    match s.kind {
        SettingKind::Int { min, max } => match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(()),
            Some(_) => bad(
                "is out of range".to_string(),
                format!("use a whole number from {min} to {max}"),
            ),
            None => bad(
                "is not a whole number".into(),
                format!("use a whole number from {min} to {max}"),
            ),
        },
        SettingKind::Bool => match value {
            Value::Bool(_) => Ok(()),
            _ => bad("is not a boolean".into(), "use true or false".into()),
        },
        SettingKind::Choice(choices) => match value.as_str() {
            Some(x) if choices.contains(&x) => Ok(()),
            _ => bad(
                "is not a choice of this setting".into(),
                format!("use one of {}", choices.join(", ")),
            ),
        },
        SettingKind::Number { min, max } => match value.as_f64() {
            Some(n) if n >= min && n <= max => Ok(()),
            Some(_) => bad(
                "is out of range".to_string(),
                format!("use a number from {min} to {max}"),
            ),
            None => bad(
                "is not a number".into(),
                format!("use a number from {min} to {max}, e.g. 0.5"),
            ),
        },
        SettingKind::Duration => match value.as_str() {
            Some(x)
                if x.len() > 1
                    && x[..x.len() - 1].bytes().all(|b| b.is_ascii_digit())
                    && matches!(x.as_bytes()[x.len() - 1], b's' | b'm' | b'h') =>
            {
                Ok(())
            }
            _ => bad(
                "is not a duration".into(),
                "use a whole number of seconds, minutes or hours, e.g. 10m".into(),
            ),
        },
        // The value is not repeated: it may be long, and hold what a user
        // mistook for a setting (a credential); the problem names the part.
        SettingKind::Custom(check) => {
            check(value).map_err(|(problem, fix)| FieldError::new(&f, "", problem, fix))
        }
    }
}

fn object_key(o: &Value) -> (String, String) {
    let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    (kind.to_string(), name.to_string())
}

/// RFC 7386: a mapping merges key by key, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Mapping(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_mapping() {
        *target = Value::Mapping(Mapping::new());
    }
    let t = target.as_mapping_mut().expect("a mapping");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// What identifies an object must not be patched: the applier finds (and
/// prunes) objects by it.
fn check_override(bundle: &str, key: &str, patch: &Value) -> Result<(), FieldError> {
    let f = field(bundle, &format!("overrides.{key}"));
    let Value::Mapping(p) = patch else {
        return Err(FieldError::new(
            &f,
            "",
            "is not a mapping",
            "give a merge patch of the object, e.g. {spec: {replicas: 3}}",
        ));
    };
    let touches = |path: &[&str]| -> bool {
        let mut v = Some(patch);
        for k in path {
            v = v.and_then(|x| x.get(*k));
        }
        v.is_some()
    };
    for path in [
        &["kind"][..],
        &["apiVersion"],
        &["metadata", "name"],
        &["metadata", "namespace"],
        &["metadata", "labels", BUNDLE_LABEL],
        &["metadata", "labels", MANAGED_BY.0],
    ] {
        if touches(path) {
            return Err(FieldError::new(
                &format!("{f}.{}", path.join(".")),
                "",
                "cannot be overridden: keelson finds the bundle's objects by it",
                "patch other fields; to drop an object, disable the bundle",
            ));
        }
    }
    let _ = p;
    Ok(())
}

/// Renders one bundle for `c`: settings, overrides, labels, CRDs first.
pub fn render(b: &Bundle, c: &Cluster) -> Result<Rendered, AddonError> {
    let spec = c.spec.addons.get(b.name);
    let settings = b.settings(spec).map_err(AddonError::Invalid)?;
    platform::check(b, c, &settings).map_err(AddonError::Invalid)?;
    let (header, mut objects) = b.objects(c, &settings)?;
    if let Some(spec) = spec {
        for (key, patch) in &spec.overrides {
            let Some((kind, name)) = key.split_once('/') else {
                return Err(AddonError::Invalid(FieldError::new(
                    &field(b.name, "overrides"),
                    key.clone(),
                    "is not a Kind/name key",
                    "key each override by the object's kind and name, e.g. Deployment/metrics-server",
                )));
            };
            check_override(b.name, key, patch).map_err(AddonError::Invalid)?;
            let Some(o) = objects
                .iter_mut()
                .find(|o| object_key(o) == (kind.to_string(), name.to_string()))
            else {
                let have: Vec<String> = objects
                    .iter()
                    .map(|o| {
                        let (k, n) = object_key(o);
                        format!("{k}/{n}")
                    })
                    .collect();
                return Err(AddonError::Invalid(FieldError::new(
                    &field(b.name, "overrides"),
                    key.clone(),
                    "names no object of this bundle",
                    format!("use one of {}", have.join(", ")),
                )));
            };
            merge_patch(o, patch);
        }
    }
    for o in &mut objects {
        let m = o["metadata"].as_mapping_mut().expect("checked when parsed");
        let labels = m
            .entry(Value::from("labels"))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if !labels.is_mapping() {
            *labels = Value::Mapping(Mapping::new());
        }
        let labels = labels.as_mapping_mut().expect("a mapping");
        labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
        labels.insert(BUNDLE_LABEL.into(), b.name.into());
    }
    // CRDs, then namespaces, before anything that may live in or be one of them.
    objects.sort_by_key(|o| match o.get("kind").and_then(Value::as_str) {
        Some("CustomResourceDefinition") => 0,
        Some("Namespace") => 1,
        _ => 2,
    });
    let version = b.version(c);
    let mut manifest = format!(
        "# Bundle {} {version}, rendered by keelson from addons/{}/.\n{header}",
        b.name, b.name
    );
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            manifest.push_str("---\n");
        }
        manifest.push_str(&serde_yaml::to_string(o).map_err(|e| AddonError::Render {
            bundle: b.name.into(),
            message: e.to_string(),
        })?);
    }
    Ok(Rendered {
        name: b.name.to_string(),
        version: version.clone(),
        path: format!("{}/v{version}.yaml", b.name),
        manifest,
    })
}

/// The configuration errors of `spec.addons`, all at once: unknown bundles,
/// `enabled` where a bundle cannot be switched, bad settings and overrides.
pub fn validate(c: &Cluster) -> Vec<FieldError> {
    let mut errors = Vec::new();
    errors.extend(cert_manager::required(c));
    for (name, spec) in &c.spec.addons {
        let Some(b) = bundle(name) else {
            errors.push(FieldError::new(
                &field(name, ""),
                "",
                "is not an addon bundle",
                format!("use one of {}", known_bundles()),
            ));
            continue;
        };
        match (b.when, spec.enabled) {
            (When::Networking(_), Some(_)) => errors.push(FieldError::new(
                &field(name, "enabled"),
                spec.enabled.unwrap_or_default().to_string(),
                "cannot be set on a network bundle",
                "choose the network with spec.networking",
            )),
            (When::Always, Some(false)) => errors.push(FieldError::new(
                &field(name, "enabled"),
                "false",
                "cannot be set: the cluster does not work without this bundle",
                "remove it",
            )),
            _ => {}
        }
        // Settings and overrides are checked even for a disabled bundle, so that
        // enabling it later meets no surprise.
        match render(b, c) {
            Ok(_) => {}
            Err(AddonError::Invalid(e)) => errors.push(e),
            Err(e) => errors.push(FieldError::new(
                &field(name, ""),
                "",
                e.to_string(),
                "report this: keelson's own template failed",
            )),
        }
    }
    errors
}

/// The enabled bundles of a cluster, rendered, in the order they are applied.
pub fn bundles(c: &Cluster) -> Result<Vec<Rendered>, AddonError> {
    BUNDLES
        .iter()
        .filter(|b| b.enabled(c))
        .map(|b| render(b, c))
        .collect()
}

/// The bundles a cluster runs (kept under its old name for callers).
pub fn bootstrap_bundles(c: &Cluster) -> Result<Vec<Rendered>, AddonError> {
    bundles(c)
}

/// The IAM statements the enabled bundles add to the masters' policy, by bundle.
pub fn masters_statements(
    c: &Cluster,
) -> Result<Vec<(&'static str, Vec<serde_json::Value>)>, String> {
    let mut out = Vec::new();
    for b in BUNDLES.iter().filter(|b| b.enabled(c) && b.iam.is_some()) {
        out.push((b.name, b.iam_statements(c)?));
    }
    Ok(out)
}

/// The channel: what the masters apply, in order, with each manifest's hash so
/// that a changed bundle is visible in the state store's history.
pub fn channel(bundles: &[Rendered]) -> String {
    let mut s = String::from(
        "# Written by `keelson update cluster --yes`. The masters apply these\n\
         # manifests in this order with `kubectl apply --server-side`.\n\
         kind: Addons\nmetadata:\n  name: bootstrap\nspec:\n  addons:\n",
    );
    for b in bundles {
        s.push_str(&format!(
            "    - name: {}\n      version: {}\n      manifest: {}\n      manifestHash: {}\n",
            b.name,
            b.version,
            b.path,
            b.hash()
        ));
    }
    s
}

/// One entry of a stored channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEntry {
    pub name: String,
    pub version: String,
    pub manifest: String,
    pub hash: Option<String>,
}

/// Reads a channel as [`channel`] writes it; `None` if it is not one.
pub fn parse_channel(text: &[u8]) -> Option<Vec<ChannelEntry>> {
    let v: Value = serde_yaml::from_slice(text).ok()?;
    let list = v.get("spec")?.get("addons")?.as_sequence()?;
    list.iter()
        .map(|a| {
            let manifest = a.get("manifest")?.as_str()?.to_string();
            let name = a
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| manifest.split('/').next().unwrap_or_default().to_string());
            Some(ChannelEntry {
                name,
                version: a
                    .get("version")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                manifest,
                hash: a
                    .get("manifestHash")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect()
}

/// The (kind, namespace, name) of every object in a manifest, as the applier
/// compares them with what the API lists (a namespaced object without a
/// namespace lands in `default`, as kubectl puts it).
pub fn manifest_objects(manifest: &str) -> BTreeSet<(String, String, String)> {
    let namespaced = |kind: &str| {
        PRUNABLE
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(k, _, _)| !CLUSTER_SCOPED.contains(k))
            .unwrap_or(false)
    };
    let mut out = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(manifest) {
        let Ok(v) = Value::deserialize(doc) else {
            continue;
        };
        let (kind, name) = object_key(&v);
        if kind.is_empty() {
            continue;
        }
        let ns = match v["metadata"].get("namespace").and_then(Value::as_str) {
            Some(ns) => ns.to_string(),
            None if namespaced(&kind) => "default".into(),
            None => String::new(),
        };
        out.insert((kind, ns, name));
    }
    out
}

/// The cluster-scoped kinds of [`PRUNABLE`].
pub const CLUSTER_SCOPED: &[&str] = &[
    "IngressClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "CSIDriver",
    "PriorityClass",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Each bundle's desired version, by name (for `get addons`).
pub fn desired(c: &Cluster) -> BTreeMap<&'static str, String> {
    BUNDLES
        .iter()
        .filter(|b| b.enabled(c))
        .map(|b| (b.name, b.version(c)))
        .collect()
}

/// How one bundle changes with an update: what `update cluster` previews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleChange {
    pub name: String,
    /// The stored version, `None` for a bundle new to the cluster.
    pub before: Option<String>,
    /// The new version, `None` for a bundle disabled or gone.
    pub after: Option<String>,
    /// A unified diff of the manifests (changed bundles), or the objects (new ones).
    pub diff: String,
    /// `+ Sid: actions` / `- Sid: actions` for the masters' policy.
    pub iam: Vec<String>,
}

/// The stored manifests a preview needs: those of bundles whose hash changed.
pub fn paths_to_compare(c: &Cluster, stored_channel: Option<&[u8]>) -> Vec<String> {
    let Ok(now) = bundles(c) else {
        return Vec::new();
    };
    let stored = stored_channel.and_then(parse_channel).unwrap_or_default();
    stored
        .into_iter()
        .filter(|e| {
            now.iter()
                .find(|b| b.name == e.name)
                .is_some_and(|b| Some(b.hash()) != e.hash)
        })
        .map(|e| e.manifest)
        .collect()
}

fn iam_lines(mark: char, b: &Bundle, c: &Cluster) -> Vec<String> {
    b.iam_statements(c)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let actions = match &s["Action"] {
                serde_json::Value::String(a) => a.clone(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => String::new(),
            };
            let scope = if s.get("Condition").is_some() {
                format!(" when {}", s["Condition"])
            } else {
                String::new()
            };
            format!(
                "{mark} {}: {actions}{scope}",
                s["Sid"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Each bundle's change against what the state store holds (its channel and the
/// manifests of [`paths_to_compare`]). Pure.
pub fn preview(
    c: &Cluster,
    stored_channel: Option<&[u8]>,
    stored_manifests: &BTreeMap<String, String>,
) -> Result<Vec<BundleChange>, AddonError> {
    let now = bundles(c)?;
    let stored = stored_channel.and_then(parse_channel).unwrap_or_default();
    let mut out = Vec::new();
    for r in &now {
        let old = stored.iter().find(|e| e.name == r.name);
        if old.is_some_and(|e| e.hash.as_deref() == Some(r.hash().as_str())) {
            continue;
        }
        let b = bundle(&r.name).expect("rendered from BUNDLES");
        let (diff, iam) = match old {
            Some(e) => {
                let before = stored_manifests
                    .get(&e.manifest)
                    .map(String::as_str)
                    .unwrap_or("");
                let d = similar::TextDiff::from_lines(before, r.manifest.as_str());
                let text = d
                    .unified_diff()
                    .context_radius(3)
                    .header(&e.manifest, &r.path)
                    .to_string();
                (text, Vec::new())
            }
            None => {
                let objects: String = manifest_objects(&r.manifest)
                    .into_iter()
                    .map(|(k, ns, n)| {
                        if ns.is_empty() {
                            format!("+ {k}/{n}\n")
                        } else {
                            format!("+ {k}/{n} (namespace {ns})\n")
                        }
                    })
                    .collect();
                (objects, iam_lines('+', b, c))
            }
        };
        out.push(BundleChange {
            name: r.name.clone(),
            before: old.map(|e| e.version.clone()),
            after: Some(r.version.clone()),
            diff,
            iam,
        });
    }
    for e in stored
        .iter()
        .filter(|e| !now.iter().any(|b| b.name == e.name))
    {
        out.push(BundleChange {
            name: e.name.clone(),
            before: Some(e.version.clone()),
            after: None,
            diff: String::new(),
            iam: bundle(&e.name)
                .map(|b| iam_lines('-', b, c))
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

impl BundleChange {
    /// The preview's text for this bundle.
    pub fn describe(&self) -> String {
        let head = match (&self.before, &self.after) {
            (None, Some(v)) => format!("+ {} {v} (new bundle)", self.name),
            (Some(a), Some(b)) if a == b => format!("~ {} {b}", self.name),
            (Some(a), Some(b)) => format!("~ {} {a} -> {b}", self.name),
            (Some(a), None) => format!(
                "- {} {a} (disabled: the masters delete its objects)",
                self.name
            ),
            (None, None) => format!("? {}", self.name),
        };
        let mut s = format!("{head}\n");
        for l in self.diff.lines() {
            s.push_str(&format!("    {l}\n"));
        }
        if !self.iam.is_empty() {
            s.push_str("    IAM statements of the masters' role:\n");
            for l in &self.iam {
                s.push_str(&format!("      {l}\n"));
            }
        }
        s
    }
}

mod cert_manager;
#[cfg(test)]
mod crd_check;
mod observability;
mod platform;

#[cfg(test)]
mod tests;
