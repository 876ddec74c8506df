//! One struct per resource kind: the fields keelson decides and compares. The
//! same types describe what is desired and what was discovered.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{Address, Kind, Tags};
use crate::spec::Ipv4Cidr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub name: String,
    pub cidr: Ipv4Cidr,
    pub enable_dns_support: bool,
    pub enable_dns_hostnames: bool,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpOptions {
    pub name: String,
    pub domain_name: String,
    pub domain_name_servers: Vec<String>,
    /// The VPC these options are associated with.
    pub vpc: Address,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetGateway {
    pub name: String,
    /// The VPC it is attached to.
    pub vpc: Address,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub name: String,
    pub vpc: Address,
    pub cidr: Ipv4Cidr,
    pub zone: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub name: String,
    pub vpc: Address,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElasticIp {
    pub name: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatGateway {
    pub name: String,
    pub subnet: Address,
    pub elastic_ip: Address,
    pub tags: Tags,
}

/// A route in a route table; untagged, found through its table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub route_table: Address,
    pub destination: Ipv4Cidr,
    /// An internet gateway or a NAT gateway.
    pub target: Address,
}

/// The association of a subnet with a route table; untagged, found through the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTableAssociation {
    pub subnet: Address,
    pub route_table: Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub name: String,
    pub vpc: Address,
    pub description: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Ingress,
    Egress,
}

/// One permission of a security group. Every field is identity: a changed rule
/// is a new rule, so a change touches only the rules it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    pub group: Address,
    pub direction: Direction,
    /// `tcp`, `udp`, `4` (IP-in-IP) or `-1` (all).
    pub protocol: String,
    pub from_port: i32,
    pub to_port: i32,
    /// The peer: a CIDR, or another group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Ipv4Cidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_group: Option<Address>,
    /// Or the /32 of one of the cluster's elastic IPs (a NAT gateway's), whose
    /// address AWS picks at allocation: apply reads it, discovery maps it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic_ip: Option<Address>,
}

/// The admin SSH key, imported. Its name carries the key's fingerprint, so a new
/// key is a new key pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPair {
    pub name: String,
    pub public_key: String,
    pub tags: Tags,
}

/// An IAM role for instances, under the cluster's IAM path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamRole {
    pub name: String,
    pub path: String,
    pub assume_role_policy: Value,
    /// Given at creation; IAM's list calls do not return tags, so not compared.
    pub tags: Tags,
}

/// The role's inline policy, named after the role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamRolePolicy {
    pub role: Address,
    pub document: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceProfile {
    pub name: String,
    pub path: String,
    pub role: Address,
    pub tags: Tags,
}

/// An instance group's launch template. A change makes a new version, which the
/// group's ASG uses (`$Latest`); every version tags its instances with
/// `keelson.dev/revision`, a hash of its content, which rolling-update compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplate {
    pub name: String,
    pub image: String,
    pub machine_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pair: Option<Address>,
    pub security_groups: Vec<Address>,
    pub instance_profile: Address,
    pub root_volume_size: u32,
    pub root_volume_type: String,
    pub root_volume_encrypted: bool,
    pub associate_public_ip: bool,
    /// IMDSv2's PUT response hop limit: 1 keeps the instance role from pods,
    /// which sit one network hop further than the host.
    #[serde(default)]
    pub metadata_hop_limit: u32,
    pub user_data: String,
    pub instance_tags: Tags,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoScalingGroup {
    pub name: String,
    pub launch_template: Address,
    pub min_size: u32,
    pub max_size: u32,
    pub subnets: Vec<Address>,
    /// Load balancer target groups its instances are registered in.
    #[serde(default)]
    pub target_groups: Vec<Address>,
    /// Several instance types and spot instances: the group launches from its
    /// template through a MixedInstancesPolicy instead of directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixed_instances: Option<MixedInstances>,
    pub tags: Tags,
}

/// An ASG's MixedInstancesPolicy as keelson sets it and reads it back: one
/// launch template override per type, and the distribution with every value
/// given (AWS's defaults filled in by the model), so that a no-op compares equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixedInstances {
    pub instance_types: Vec<String>,
    pub on_demand_base: u32,
    pub on_demand_above_base: u32,
    pub spot_allocation_strategy: String,
}

/// A network load balancer (the API's, the bastion's). Its name is at most 32
/// characters of letters, digits and dashes, so it is derived from the cluster's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub name: String,
    pub internal: bool,
    pub subnets: Vec<Address>,
    pub security_groups: Vec<Address>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroup {
    pub name: String,
    pub vpc: Address,
    pub port: i32,
    /// The `preserve_client_ip.enabled` attribute (AWS's default for instance
    /// targets over TCP is on). Off, targets see the balancer's private address
    /// as the source, which a target that is also a client of an internal
    /// balancer needs (NLBs do not hairpin a preserved client IP).
    #[serde(default = "preserve_client_ip_default")]
    pub preserve_client_ip: bool,
    pub tags: Tags,
}

/// AWS's default for instance target groups over TCP.
fn preserve_client_ip_default() -> bool {
    true
}

/// An alias A record in the cluster's Route53 zone pointing at a load balancer.
/// A TXT record beside it says which cluster owns it: only owned records are
/// ever changed or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    pub name: String,
    pub zone: String,
    pub private_zone: bool,
    pub target: Address,
}

/// A TCP listener forwarding one port of a load balancer to a target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub load_balancer: Address,
    pub port: i32,
    pub target_group: Address,
}

/// A load balancer that the cloud controller made for a `type: LoadBalancer`
/// Service (a classic ELB, its default, or an NLB). Never desired: only
/// `delete cluster` finds it (by the cluster's `owned` tag) and deletes it,
/// before the subnets, security groups and VPC it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLoadBalancer {
    pub name: String,
    pub classic: bool,
    pub subnets: Vec<Address>,
    pub security_groups: Vec<Address>,
    /// An NLB's target groups (ARNs), which the controller made with it and
    /// which go with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_groups: Vec<String>,
    pub tags: Tags,
}

/// An EBS volume made for the cluster by Kubernetes (the EBS CSI driver's
/// persistent volumes). Never desired: only `delete cluster` finds and deletes it,
/// after the instances it may be attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    Vpc(Vpc),
    DhcpOptions(DhcpOptions),
    InternetGateway(InternetGateway),
    Subnet(Subnet),
    RouteTable(RouteTable),
    ElasticIp(ElasticIp),
    NatGateway(NatGateway),
    Route(Route),
    RouteTableAssociation(RouteTableAssociation),
    SecurityGroup(SecurityGroup),
    SecurityGroupRule(SecurityGroupRule),
    KeyPair(KeyPair),
    IamRole(IamRole),
    IamRolePolicy(IamRolePolicy),
    InstanceProfile(InstanceProfile),
    LaunchTemplate(LaunchTemplate),
    AutoScalingGroup(AutoScalingGroup),
    LoadBalancer(LoadBalancer),
    TargetGroup(TargetGroup),
    Listener(Listener),
    DnsRecord(DnsRecord),
    ServiceLoadBalancer(ServiceLoadBalancer),
    Volume(Volume),
}

/// What a difference in a field means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldChange {
    /// Changed in place.
    Update,
    /// Only by a new resource; the reason says why.
    Replace(&'static str),
    /// Not at all: too disruptive to do automatically; the text says what to do.
    Refuse(&'static str),
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Vpc(_) => Kind::Vpc,
            Resource::DhcpOptions(_) => Kind::DhcpOptions,
            Resource::InternetGateway(_) => Kind::InternetGateway,
            Resource::Subnet(_) => Kind::Subnet,
            Resource::RouteTable(_) => Kind::RouteTable,
            Resource::ElasticIp(_) => Kind::ElasticIp,
            Resource::NatGateway(_) => Kind::NatGateway,
            Resource::Route(_) => Kind::Route,
            Resource::RouteTableAssociation(_) => Kind::RouteTableAssociation,
            Resource::SecurityGroup(_) => Kind::SecurityGroup,
            Resource::SecurityGroupRule(_) => Kind::SecurityGroupRule,
            Resource::KeyPair(_) => Kind::KeyPair,
            Resource::IamRole(_) => Kind::IamRole,
            Resource::IamRolePolicy(_) => Kind::IamRolePolicy,
            Resource::InstanceProfile(_) => Kind::InstanceProfile,
            Resource::LaunchTemplate(_) => Kind::LaunchTemplate,
            Resource::AutoScalingGroup(_) => Kind::AutoScalingGroup,
            Resource::LoadBalancer(_) => Kind::LoadBalancer,
            Resource::TargetGroup(_) => Kind::TargetGroup,
            Resource::Listener(_) => Kind::Listener,
            Resource::DnsRecord(_) => Kind::DnsRecord,
            Resource::ServiceLoadBalancer(_) => Kind::ServiceLoadBalancer,
            Resource::Volume(_) => Kind::Volume,
        }
    }

    /// The name part of the address: the Name tag, or for untagged children a name
    /// derived from their parent.
    pub fn name(&self) -> String {
        match self {
            Resource::Vpc(r) => r.name.clone(),
            Resource::DhcpOptions(r) => r.name.clone(),
            Resource::InternetGateway(r) => r.name.clone(),
            Resource::Subnet(r) => r.name.clone(),
            Resource::RouteTable(r) => r.name.clone(),
            Resource::ElasticIp(r) => r.name.clone(),
            Resource::NatGateway(r) => r.name.clone(),
            Resource::Route(r) => format!("{}:{}", r.route_table.name, r.destination),
            Resource::RouteTableAssociation(r) => r.subnet.name.clone(),
            Resource::SecurityGroup(r) => r.name.clone(),
            Resource::SecurityGroupRule(r) => {
                let peer = match (&r.cidr, &r.source_group, &r.elastic_ip) {
                    (Some(c), _, _) => c.to_string(),
                    (None, Some(g), _) => g.name.clone(),
                    (None, None, Some(e)) => format!("{e}/32"),
                    (None, None, None) => "none".into(),
                };
                let dir = match r.direction {
                    Direction::Ingress => "ingress",
                    Direction::Egress => "egress",
                };
                let ports = if r.protocol == "-1" {
                    "all".to_string()
                } else {
                    format!("{}:{}-{}", r.protocol, r.from_port, r.to_port)
                };
                format!("{}:{dir}:{ports}:{peer}", r.group.name)
            }
            Resource::KeyPair(r) => r.name.clone(),
            Resource::IamRole(r) => r.name.clone(),
            Resource::IamRolePolicy(r) => r.role.name.clone(),
            Resource::InstanceProfile(r) => r.name.clone(),
            Resource::LaunchTemplate(r) => r.name.clone(),
            Resource::AutoScalingGroup(r) => r.name.clone(),
            Resource::LoadBalancer(r) => r.name.clone(),
            Resource::TargetGroup(r) => r.name.clone(),
            Resource::Listener(r) => format!("{}:{}", r.load_balancer.name, r.port),
            Resource::DnsRecord(r) => r.name.clone(),
            Resource::ServiceLoadBalancer(r) => r.name.clone(),
            Resource::Volume(r) => r.name.clone(),
        }
    }

    pub fn address(&self) -> Address {
        Address::new(self.kind(), self.name())
    }

    /// The resources this one refers to, which must exist first.
    pub fn deps(&self) -> Vec<&Address> {
        match self {
            Resource::Vpc(_) | Resource::ElasticIp(_) => vec![],
            Resource::DhcpOptions(r) => vec![&r.vpc],
            Resource::InternetGateway(r) => vec![&r.vpc],
            Resource::Subnet(r) => vec![&r.vpc],
            Resource::RouteTable(r) => vec![&r.vpc],
            Resource::NatGateway(r) => vec![&r.subnet, &r.elastic_ip],
            Resource::Route(r) => vec![&r.route_table, &r.target],
            Resource::RouteTableAssociation(r) => vec![&r.subnet, &r.route_table],
            Resource::SecurityGroup(r) => vec![&r.vpc],
            Resource::SecurityGroupRule(r) => std::iter::once(&r.group)
                .chain(r.source_group.iter())
                .chain(r.elastic_ip.iter())
                .collect(),
            Resource::KeyPair(_) | Resource::IamRole(_) => vec![],
            Resource::IamRolePolicy(r) => vec![&r.role],
            Resource::InstanceProfile(r) => vec![&r.role],
            Resource::LaunchTemplate(r) => r
                .key_pair
                .iter()
                .chain(r.security_groups.iter())
                .chain(std::iter::once(&r.instance_profile))
                .collect(),
            Resource::AutoScalingGroup(r) => std::iter::once(&r.launch_template)
                .chain(r.subnets.iter())
                .chain(r.target_groups.iter())
                .collect(),
            Resource::LoadBalancer(r) => r.subnets.iter().chain(r.security_groups.iter()).collect(),
            Resource::TargetGroup(r) => vec![&r.vpc],
            Resource::Listener(r) => vec![&r.load_balancer, &r.target_group],
            Resource::DnsRecord(r) => vec![&r.target],
            Resource::ServiceLoadBalancer(r) => {
                r.subnets.iter().chain(r.security_groups.iter()).collect()
            }
            Resource::Volume(_) => vec![],
        }
    }

    pub fn tags(&self) -> Option<&Tags> {
        match self {
            Resource::Vpc(r) => Some(&r.tags),
            Resource::DhcpOptions(r) => Some(&r.tags),
            Resource::InternetGateway(r) => Some(&r.tags),
            Resource::Subnet(r) => Some(&r.tags),
            Resource::RouteTable(r) => Some(&r.tags),
            Resource::ElasticIp(r) => Some(&r.tags),
            Resource::NatGateway(r) => Some(&r.tags),
            Resource::SecurityGroup(r) => Some(&r.tags),
            Resource::KeyPair(r) => Some(&r.tags),
            Resource::LaunchTemplate(r) => Some(&r.tags),
            Resource::AutoScalingGroup(r) => Some(&r.tags),
            Resource::LoadBalancer(r) => Some(&r.tags),
            Resource::TargetGroup(r) => Some(&r.tags),
            Resource::ServiceLoadBalancer(r) => Some(&r.tags),
            Resource::Volume(r) => Some(&r.tags),
            // IAM tags are given at creation only (see IamRole).
            Resource::Route(_)
            | Resource::RouteTableAssociation(_)
            | Resource::SecurityGroupRule(_)
            | Resource::IamRole(_)
            | Resource::IamRolePolicy(_)
            | Resource::InstanceProfile(_)
            | Resource::Listener(_)
            | Resource::DnsRecord(_) => None,
        }
    }

    pub fn tags_mut(&mut self) -> Option<&mut Tags> {
        match self {
            Resource::Vpc(r) => Some(&mut r.tags),
            Resource::DhcpOptions(r) => Some(&mut r.tags),
            Resource::InternetGateway(r) => Some(&mut r.tags),
            Resource::Subnet(r) => Some(&mut r.tags),
            Resource::RouteTable(r) => Some(&mut r.tags),
            Resource::ElasticIp(r) => Some(&mut r.tags),
            Resource::NatGateway(r) => Some(&mut r.tags),
            Resource::SecurityGroup(r) => Some(&mut r.tags),
            Resource::KeyPair(r) => Some(&mut r.tags),
            Resource::LaunchTemplate(r) => Some(&mut r.tags),
            Resource::AutoScalingGroup(r) => Some(&mut r.tags),
            Resource::LoadBalancer(r) => Some(&mut r.tags),
            Resource::TargetGroup(r) => Some(&mut r.tags),
            Resource::ServiceLoadBalancer(r) => Some(&mut r.tags),
            Resource::Volume(r) => Some(&mut r.tags),
            // IAM tags are given at creation only (see IamRole).
            Resource::Route(_)
            | Resource::RouteTableAssociation(_)
            | Resource::SecurityGroupRule(_)
            | Resource::IamRole(_)
            | Resource::IamRolePolicy(_)
            | Resource::InstanceProfile(_)
            | Resource::Listener(_)
            | Resource::DnsRecord(_) => None,
        }
    }

    /// Every reference, mutably: discovery rewrites AWS ids into addresses.
    pub fn refs_mut(&mut self) -> Vec<&mut Address> {
        match self {
            Resource::Vpc(_) | Resource::ElasticIp(_) => vec![],
            Resource::DhcpOptions(r) => vec![&mut r.vpc],
            Resource::InternetGateway(r) => vec![&mut r.vpc],
            Resource::Subnet(r) => vec![&mut r.vpc],
            Resource::RouteTable(r) => vec![&mut r.vpc],
            Resource::NatGateway(r) => vec![&mut r.subnet, &mut r.elastic_ip],
            Resource::Route(r) => vec![&mut r.route_table, &mut r.target],
            Resource::RouteTableAssociation(r) => vec![&mut r.subnet, &mut r.route_table],
            Resource::SecurityGroup(r) => vec![&mut r.vpc],
            Resource::SecurityGroupRule(r) => std::iter::once(&mut r.group)
                .chain(r.source_group.iter_mut())
                .chain(r.elastic_ip.iter_mut())
                .collect(),
            Resource::KeyPair(_) | Resource::IamRole(_) => vec![],
            Resource::IamRolePolicy(r) => vec![&mut r.role],
            Resource::InstanceProfile(r) => vec![&mut r.role],
            Resource::LaunchTemplate(r) => r
                .key_pair
                .iter_mut()
                .chain(r.security_groups.iter_mut())
                .chain(std::iter::once(&mut r.instance_profile))
                .collect(),
            Resource::AutoScalingGroup(r) => std::iter::once(&mut r.launch_template)
                .chain(r.subnets.iter_mut())
                .chain(r.target_groups.iter_mut())
                .collect(),
            Resource::LoadBalancer(r) => r
                .subnets
                .iter_mut()
                .chain(r.security_groups.iter_mut())
                .collect(),
            Resource::TargetGroup(r) => vec![&mut r.vpc],
            Resource::Listener(r) => vec![&mut r.load_balancer, &mut r.target_group],
            Resource::DnsRecord(r) => vec![&mut r.target],
            Resource::ServiceLoadBalancer(r) => r
                .subnets
                .iter_mut()
                .chain(r.security_groups.iter_mut())
                .collect(),
            Resource::Volume(_) => vec![],
        }
    }

    /// The fields compared and shown in a plan, by name. The name and the address
    /// parts are identity, not fields.
    pub fn fields(&self) -> BTreeMap<String, Value> {
        let mut v = match serde_json::to_value(self).expect("resources serialize") {
            Value::Object(m) => m,
            _ => unreachable!("resources are structs"),
        };
        v.remove("kind");
        v.remove("name");
        // The key material is identity (its fingerprint is in the name), and AWS
        // does not hand it back in the form it was given.
        if let Resource::KeyPair(_) = self {
            v.remove("public_key");
        }
        if let Resource::IamRole(_) | Resource::InstanceProfile(_) = self {
            v.remove("tags");
        }
        v.into_iter().collect()
    }

    /// What a change to `field` takes for this kind.
    pub fn field_change(&self, field: &str) -> FieldChange {
        match (self.kind(), field) {
            (_, "tags") => FieldChange::Update,
            (Kind::Vpc, "cidr") => FieldChange::Refuse(
                "a VPC's CIDR cannot change; keep spec.networkCIDR, or create a new cluster with the new network",
            ),
            (Kind::Vpc, _) => FieldChange::Update,
            (Kind::Subnet, "cidr" | "zone" | "vpc") => FieldChange::Refuse(
                "a subnet's CIDR and zone cannot change while instances may use it; add a new subnet (and zone) instead, move the instance groups, then remove the old one",
            ),
            (Kind::Route, "target") => FieldChange::Update,
            (Kind::RouteTableAssociation, "route_table") => FieldChange::Update,
            (Kind::DhcpOptions, _) => FieldChange::Replace("DHCP options cannot be modified"),
            (Kind::InternetGateway, _) => FieldChange::Replace("the gateway moves to another VPC"),
            (Kind::RouteTable, _) => {
                FieldChange::Replace("a route table cannot move to another VPC")
            }
            (Kind::NatGateway, _) => {
                FieldChange::Replace("a NAT gateway's subnet and address cannot change")
            }
            (Kind::SecurityGroup, _) => {
                FieldChange::Replace("a security group's VPC and description cannot change")
            }
            (Kind::IamRole, "assume_role_policy") | (Kind::IamRolePolicy, _) => FieldChange::Update,
            // A profile left without its role (a run stopped between the two calls) gets it.
            (Kind::InstanceProfile, "role") => FieldChange::Update,
            (Kind::IamRole | Kind::InstanceProfile, _) => {
                FieldChange::Replace("an IAM path or a profile's role cannot change in place")
            }
            // A new launch template version; a group's size, subnets and template in place.
            (Kind::LaunchTemplate | Kind::AutoScalingGroup, _) => FieldChange::Update,
            (Kind::LoadBalancer, "security_groups" | "subnets") => FieldChange::Update,
            (Kind::Listener, "target_group") => FieldChange::Update,
            (Kind::DnsRecord, "target") => FieldChange::Update,
            (Kind::DnsRecord, _) => FieldChange::Replace("a record moves to another zone"),
            (Kind::LoadBalancer, _) => {
                FieldChange::Replace("a load balancer's scheme cannot change")
            }
            (Kind::TargetGroup, "preserve_client_ip") => FieldChange::Update,
            (Kind::TargetGroup, _) => {
                FieldChange::Replace("a target group's VPC and port cannot change")
            }
            _ => FieldChange::Replace("this field cannot be changed in place"),
        }
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (kind, name) = s
            .split_once('.')
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not KIND.NAME")))?;
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| serde::de::Error::custom(format!("{kind:?} is not a resource kind")))?;
        Ok(Address::new(kind, name))
    }
}
