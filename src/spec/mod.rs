//! The Cluster and InstanceGroup API types (`keelson.dev/v1alpha1`), modelled on
//! kops' v1alpha2 fields. Every struct denies unknown fields so that a misspelled
//! field is an error naming its path instead of being silently ignored.

pub mod aws_fields;
pub mod cidr;
pub mod components;
pub mod defaults;
pub mod machine_type;
pub mod parse;
pub mod ssh_key;
pub mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use cidr::Ipv4Cidr;

pub const API_VERSION: &str = "keelson.dev/v1alpha1";
/// The label that ties an InstanceGroup to its cluster (kops: `kops.k8s.io/cluster`).
pub const CLUSTER_LABEL: &str = "keelson.dev/cluster";
/// kops's own label; an InstanceGroup YAML from kops carries it.
pub const KOPS_CLUSTER_LABEL: &str = "kops.k8s.io/cluster";

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cluster {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ClusterSpec,
    /// What keelson learned when it last applied (shown by `get cluster`); never
    /// stored in the spec, and ignored when given back to `replace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ClusterStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Where the Kubernetes API answers: `api.NAME` with DNS, else the API load
    /// balancer's own hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_endpoint: Option<String>,
    /// The Kubernetes version the last apply rendered into the launch templates:
    /// a later spec may not go below it or skip a minor past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Always `aws` today; kept so that specs read like kops'.
    pub cloud_provider: String,
    pub kubernetes_version: String,
    /// Where this cluster's objects live in the state store, e.g. `s3://bucket/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_base: Option<String>,
    #[serde(rename = "networkCIDR")]
    pub network_cidr: Ipv4Cidr,
    /// An existing VPC (`vpc-...`): shared, read and tagged, never changed or deleted.
    #[serde(default, rename = "networkID", skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,
    #[serde(rename = "nonMasqueradeCIDR")]
    pub non_masquerade_cidr: Ipv4Cidr,
    #[serde(rename = "serviceClusterIPRange")]
    pub service_cluster_ip_range: Ipv4Cidr,
    pub subnets: Vec<ClusterSubnet>,
    pub topology: Topology,
    pub api: ApiSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_zone: Option<String>,
    /// NAT gateways for private subnets: one per zone (kops) or one shared.
    #[serde(default)]
    pub nat: NatMode,
    pub networking: NetworkingSpec,
    pub etcd_clusters: Vec<EtcdCluster>,
    /// CIDRs allowed to SSH (to the bastion, or to the instances in a public topology).
    pub ssh_access: Vec<Ipv4Cidr>,
    /// CIDRs allowed to reach the Kubernetes API.
    pub kubernetes_api_access: Vec<Ipv4Cidr>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cloud_labels: BTreeMap<String, String>,
    /// The default of every instance group's `rollingUpdate`, field by field (as kops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
    /// The addon bundles' configuration, by bundle name (`addons/README.md`):
    /// checked against each bundle's settings and objects by validation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addons: BTreeMap<String, AddonSpec>,
    /// kops' `additionalPolicies`: per role (`master`/`control-plane`, `node`,
    /// `bastion`), a JSON list of IAM statements added to the role's policy.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_policies: BTreeMap<String, String>,
    /// The API server's settings (kops' `kubeAPIServer`; `spec::components`).
    #[serde(
        default,
        rename = "kubeAPIServer",
        skip_serializing_if = "Option::is_none"
    )]
    pub kube_api_server: Option<components::KubeAPIServerConfig>,
    /// Every instance's kubelet settings; a group's own `kubelet` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<components::KubeletConfigSpec>,
    /// kops' `hooks`: systemd units on masters and nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<components::Hook>,
    /// kops' `fileAssets`: files on the instances of the roles named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_assets: Vec<components::FileAsset>,
}

/// `spec.addons.<bundle>`: whether it runs, its settings (flat, each bundle's
/// own; unknown ones are refused by validation, which knows the bundle), and
/// overrides: a JSON merge patch (RFC 7386) per rendered object, keyed
/// `Kind/name`, applied after rendering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AddonSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, serde_yaml::Value>,
    #[serde(flatten)]
    pub settings: BTreeMap<String, serde_yaml::Value>,
}

impl Eq for AddonSpec {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSubnet {
    pub name: String,
    pub zone: String,
    /// Absent only for an existing subnet (`id`) whose CIDR is read from AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Ipv4Cidr>,
    #[serde(rename = "type")]
    pub kind: SubnetType,
    /// An existing subnet (`subnet-...`): shared, never changed or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// An existing egress for a private subnet (`nat-...`), instead of keelson's NAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubnetType {
    Private,
    Utility,
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TopologyKind {
    #[default]
    Public,
    Private,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Topology {
    pub control_plane: TopologyKind,
    pub nodes: TopologyKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bastion: Option<BastionSpec>,
    pub dns: DnsSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BastionSpec {
    /// The DNS name of the bastion load balancer, e.g. `bastion.NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsSpec {
    #[serde(rename = "type")]
    pub kind: DnsType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum DnsType {
    Public,
    Private,
    /// Gossip (`.k8s.local`): no DNS zone, the load balancer's own hostname.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiSpec {
    pub load_balancer: LoadBalancerSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    #[serde(rename = "type")]
    pub kind: LoadBalancerType,
    /// Only `Network` (an NLB), as kops uses today.
    pub class: LoadBalancerClass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum LoadBalancerType {
    Public,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadBalancerClass {
    Network,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum NatMode {
    #[default]
    #[value(name = "perZone", alias = "per-zone")]
    PerZone,
    Single,
}

/// Exactly one field is set, like kops' NetworkingSpec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkingSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flannel: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cilium: Option<Empty>,
}

/// A plugin with no settings yet: written `flannel: {}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkingPlugin {
    Flannel,
    Calico,
    Cilium,
}

impl NetworkingPlugin {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkingPlugin::Flannel => "flannel",
            NetworkingPlugin::Calico => "calico",
            NetworkingPlugin::Cilium => "cilium",
        }
    }
}

impl NetworkingSpec {
    pub fn of(plugin: NetworkingPlugin) -> Self {
        let mut n = NetworkingSpec::default();
        match plugin {
            NetworkingPlugin::Flannel => n.flannel = Some(Empty {}),
            NetworkingPlugin::Calico => n.calico = Some(Empty {}),
            NetworkingPlugin::Cilium => n.cilium = Some(Empty {}),
        }
        n
    }

    /// The plugins that are set; valid specs have exactly one.
    pub fn plugins(&self) -> Vec<NetworkingPlugin> {
        let mut v = Vec::new();
        if self.flannel.is_some() {
            v.push(NetworkingPlugin::Flannel);
        }
        if self.calico.is_some() {
            v.push(NetworkingPlugin::Calico);
        }
        if self.cilium.is_some() {
            v.push(NetworkingPlugin::Cilium);
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EtcdCluster {
    pub name: String,
    pub members: Vec<EtcdMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EtcdMember {
    pub name: String,
    pub instance_group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstanceGroup {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: InstanceGroupSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstanceGroupSpec {
    pub role: Role,
    pub image: String,
    pub machine_type: String,
    pub min_size: u32,
    pub max_size: u32,
    /// Names of the cluster's subnets the group's instances are placed in.
    pub subnets: Vec<String>,
    pub root_volume: RootVolume,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
    /// `key=value:Effect` or `key:Effect`, as kubelet's --register-with-taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cloud_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
    /// Give each instance a public IP (only meaningful in public subnets).
    #[serde(default, skip_serializing_if = "is_false")]
    pub associate_public_ip: bool,
    /// Security groups (`sg-...`) the instances get besides keelson's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_security_groups: Vec<String>,
    /// Several instance types, and spot instances (kops' field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixed_instances_policy: Option<aws_fields::MixedInstancesPolicy>,
    /// This group's kubelet settings, over the cluster's `spec.kubelet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<components::KubeletConfigSpec>,
    /// This group's own hooks (replacing the cluster's of the same name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<components::Hook>,
    /// This group's own file assets (replacing the cluster's of the same path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_assets: Vec<components::FileAsset>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
pub enum Role {
    /// Rolls first, so it sorts first.
    Bastion,
    /// kops' newer name, `ControlPlane` (`control-plane` on the command line), is
    /// accepted wherever `Master` is.
    #[serde(alias = "ControlPlane")]
    #[value(alias = "control-plane", alias = "controlplane")]
    Master,
    Node,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bastion => "Bastion",
            Role::Master => "Master",
            Role::Node => "Node",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RootVolume {
    /// GiB.
    pub size: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub encrypted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollingUpdate {
    /// An instance count or a percentage such as `25%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrPercent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrPercent {
    Int(u32),
    Percent(String),
}

impl IntOrPercent {
    /// The count for a group of `of` instances: a percentage rounds up or down
    /// as asked. None for a malformed percentage (validation rejects those).
    pub fn scaled(&self, of: usize, round_up: bool) -> Option<usize> {
        match self {
            IntOrPercent::Int(n) => Some(*n as usize),
            IntOrPercent::Percent(p) => {
                let pct: usize = p.strip_suffix('%')?.parse().ok()?;
                let x = of * pct;
                Some(if round_up { x.div_ceil(100) } else { x / 100 })
            }
        }
    }

    /// Zero whatever the group's size: `0` or `0%`.
    pub fn is_zero(&self) -> bool {
        self.scaled(100, true) == Some(0)
    }
}

impl std::fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrPercent::Int(n) => write!(f, "{n}"),
            IntOrPercent::Percent(p) => f.write_str(p),
        }
    }
}

impl RollingUpdate {
    /// The group's settings over the cluster's defaults, field by field.
    pub fn effective(
        group: Option<&RollingUpdate>,
        cluster: Option<&RollingUpdate>,
    ) -> RollingUpdate {
        let pick = |f: fn(&RollingUpdate) -> &Option<IntOrPercent>| {
            group
                .and_then(|g| f(g).clone())
                .or_else(|| cluster.and_then(|c| f(c).clone()))
        };
        RollingUpdate {
            max_surge: pick(|r| &r.max_surge),
            max_unavailable: pick(|r| &r.max_unavailable),
        }
    }
}

impl Cluster {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The region all zones are in (validation guarantees they agree).
    pub fn region(&self) -> Option<String> {
        self.spec
            .subnets
            .first()
            .and_then(|s| region_of_zone(&s.zone))
    }

    pub fn zones(&self) -> Vec<String> {
        let mut z: Vec<String> = self.spec.subnets.iter().map(|s| s.zone.clone()).collect();
        z.sort();
        z.dedup();
        z
    }

    pub fn subnet(&self, name: &str) -> Option<&ClusterSubnet> {
        self.spec.subnets.iter().find(|s| s.name == name)
    }

    pub fn is_gossip(&self) -> bool {
        self.metadata.name.ends_with(".k8s.local")
    }
}

impl InstanceGroup {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    pub fn cluster_label(&self) -> Option<&str> {
        self.metadata.labels.get(CLUSTER_LABEL).map(String::as_str)
    }

    /// Every label that names the group's cluster (keelson's, kops's), with its value.
    pub fn cluster_labels(&self) -> Vec<(&'static str, &str)> {
        [CLUSTER_LABEL, KOPS_CLUSTER_LABEL]
            .into_iter()
            .filter_map(|l| self.metadata.labels.get(l).map(|v| (l, v.as_str())))
            .collect()
    }
}

/// `us-east-1a` -> `us-east-1`.
pub fn region_of_zone(zone: &str) -> Option<String> {
    let last = zone.chars().last()?;
    if !last.is_ascii_lowercase() {
        return None;
    }
    let region = &zone[..zone.len() - 1];
    is_region(region).then(|| region.to_string())
}

/// `xx-name-N`, with an optional `-gov` part: `us-east-1`, `us-gov-west-1`, `ap-southeast-2`.
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let alpha = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    match parts.as_slice() {
        [geo, dir, n] => geo.len() == 2 && alpha(geo) && alpha(dir) && n.parse::<u8>().is_ok(),
        [geo, "gov" | "iso" | "isob", dir, n] => {
            geo.len() == 2 && alpha(geo) && alpha(dir) && n.parse::<u8>().is_ok()
        }
        _ => false,
    }
}
