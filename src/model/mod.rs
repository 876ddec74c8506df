//! The desired model: pure functions from specs to a fully concrete graph of AWS
//! resources. Every choice (names, CIDRs, tags, zone placement, routes) is made
//! here, never during apply. Resources refer to each other by [`Address`], so a
//! model, a discovery and a plan are all free of AWS ids and compare directly.

pub mod iam;
pub mod instances;
pub mod load_balancers;
pub mod network;
pub mod resources;
pub mod security;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use resources::*;

/// The kinds of AWS resource keelson manages, in dependency order: a kind only
/// refers to kinds before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Vpc,
    DhcpOptions,
    InternetGateway,
    Subnet,
    RouteTable,
    ElasticIp,
    NatGateway,
    Route,
    RouteTableAssociation,
    SecurityGroup,
    SecurityGroupRule,
    KeyPair,
    IamRole,
    IamRolePolicy,
    InstanceProfile,
    LaunchTemplate,
    LoadBalancer,
    TargetGroup,
    Listener,
    AutoScalingGroup,
    DnsRecord,
    /// Made by Kubernetes for the cluster, found and deleted by `delete cluster` only.
    ServiceLoadBalancer,
    Volume,
}

impl Kind {
    pub const ALL: [Kind; 23] = [
        Kind::Vpc,
        Kind::DhcpOptions,
        Kind::InternetGateway,
        Kind::Subnet,
        Kind::RouteTable,
        Kind::ElasticIp,
        Kind::NatGateway,
        Kind::Route,
        Kind::RouteTableAssociation,
        Kind::SecurityGroup,
        Kind::SecurityGroupRule,
        Kind::KeyPair,
        Kind::IamRole,
        Kind::IamRolePolicy,
        Kind::InstanceProfile,
        Kind::LaunchTemplate,
        Kind::LoadBalancer,
        Kind::TargetGroup,
        Kind::Listener,
        Kind::AutoScalingGroup,
        Kind::DnsRecord,
        Kind::ServiceLoadBalancer,
        Kind::Volume,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Vpc => "vpc",
            Kind::DhcpOptions => "dhcp_options",
            Kind::InternetGateway => "internet_gateway",
            Kind::Subnet => "subnet",
            Kind::RouteTable => "route_table",
            Kind::ElasticIp => "elastic_ip",
            Kind::NatGateway => "nat_gateway",
            Kind::Route => "route",
            Kind::RouteTableAssociation => "route_table_association",
            Kind::SecurityGroup => "security_group",
            Kind::SecurityGroupRule => "security_group_rule",
            Kind::KeyPair => "key_pair",
            Kind::IamRole => "iam_role",
            Kind::IamRolePolicy => "iam_role_policy",
            Kind::InstanceProfile => "instance_profile",
            Kind::LaunchTemplate => "launch_template",
            Kind::AutoScalingGroup => "autoscaling_group",
            Kind::LoadBalancer => "load_balancer",
            Kind::TargetGroup => "target_group",
            Kind::Listener => "listener",
            Kind::DnsRecord => "dns_record",
            Kind::ServiceLoadBalancer => "service_load_balancer",
            Kind::Volume => "volume",
        }
    }
}

/// A resource's identity: its kind and its name (the `Name` tag for tagged kinds).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub kind: Kind,
    pub name: String,
}

impl Address {
    pub fn new(kind: Kind, name: impl Into<String>) -> Address {
        Address {
            kind,
            name: name.into(),
        }
    }

    /// A reference discovered in AWS to an id keelson does not manage (or has not
    /// mapped yet): it never equals a desired address, so it shows in a diff.
    pub fn foreign(kind: Kind, id: &str) -> Address {
        Address {
            kind,
            name: format!("<{id}>"),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.as_str(), self.name)
    }
}

/// Owned resources are created, changed and deleted; shared ones (a user's VPC or
/// subnets) are only read and tagged `shared`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "lifecycle", content = "id")]
pub enum Lifecycle {
    Owned,
    Shared(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredResource {
    pub lifecycle: Lifecycle,
    pub resource: Resource,
}

/// The desired state of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Desired {
    pub cluster: String,
    pub region: String,
    pub resources: BTreeMap<Address, DesiredResource>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("model: {address} is defined twice with different contents; this is a bug in keelson")]
    Conflict { address: Address },
    #[error("{0}")]
    Invalid(String),
}

impl Desired {
    /// Adds a resource; an identical duplicate is fine (builders may both need it),
    /// a conflicting one is a bug caught here rather than in AWS.
    pub fn ensure(
        &mut self,
        lifecycle: Lifecycle,
        resource: Resource,
    ) -> Result<Address, ModelError> {
        let address = resource.address();
        let new = DesiredResource {
            lifecycle,
            resource,
        };
        match self.resources.get(&address) {
            Some(existing) if *existing != new => Err(ModelError::Conflict { address }),
            Some(_) => Ok(address),
            None => {
                self.resources.insert(address.clone(), new);
                Ok(address)
            }
        }
    }
}

/// The pods' addresses: kops' default, inside the non-masquerade range beside the
/// services' 100.64.0.0/13. The CNI bundle and kubeadm both take it from here.
pub const POD_CIDR: &str = "100.96.0.0/11";

/// The ownership tags every owned resource carries (kops' names).
pub fn ownership_tags(cluster: &str, name: &str, extra: &BTreeMap<String, String>) -> Tags {
    let mut t: Tags = extra.clone();
    t.insert("Name".into(), name.into());
    t.insert("KubernetesCluster".into(), cluster.into());
    t.insert(cluster_tag(cluster), "owned".into());
    t
}

/// `kubernetes.io/cluster/NAME`: `owned` or `shared`; discovery filters on it.
pub fn cluster_tag(cluster: &str) -> String {
    format!("kubernetes.io/cluster/{cluster}")
}

pub type Tags = BTreeMap<String, String>;

/// Everything the model is built from: the specs and what else the state store holds.
pub struct Inputs<'a> {
    pub cluster: &'a crate::spec::Cluster,
    pub groups: &'a [crate::spec::InstanceGroup],
    pub ssh_key: Option<&'a crate::spec::ssh_key::SshPublicKey>,
    /// Images as resolved to AMI ids (`OWNER/NAME` -> `ami-...`); ids map to themselves.
    pub images: &'a BTreeMap<String, String>,
    /// The node agent the masters and nodes fetch and run.
    pub node_agent: &'a instances::NodeAgent,
}

/// The whole desired model of a cluster.
pub fn build(inputs: &Inputs) -> Result<Desired, ModelError> {
    let cluster = inputs.cluster;
    let mut d = Desired {
        cluster: cluster.name().to_string(),
        region: cluster.region().unwrap_or_default(),
        resources: BTreeMap::new(),
    };
    network::build(cluster, &mut d)?;
    security::build(cluster, inputs.ssh_key, &mut d)?;
    iam::build(cluster, inputs.groups, &mut d)?;
    load_balancers::build(cluster, &mut d)?;
    instances::build(inputs, &mut d)?;
    Ok(d)
}
