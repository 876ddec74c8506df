//! Building a new cluster's specs from `create cluster` options, with kops' defaults.
//! Pure: the caller has already checked the zones against AWS.

use std::collections::BTreeMap;

use super::cidr::{Ipv4Cidr, kops_split};
use super::validate::{FieldError, ValidationErrors};
use super::*;

pub const DEFAULT_NETWORK_CIDR: &str = "172.20.0.0/16";
pub const DEFAULT_NON_MASQUERADE_CIDR: &str = "100.64.0.0/10";
pub const DEFAULT_SERVICE_CIDR: &str = "100.64.0.0/13";
pub const DEFAULT_KUBERNETES_VERSION: &str = "1.35.0";
/// Canonical's Ubuntu 24.04 image, by owner/name; resolved to an AMI id at update time.
pub const DEFAULT_IMAGE: &str =
    "099720109477/ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250610";
pub const DEFAULT_MASTER_SIZE: &str = "t3.medium";
pub const DEFAULT_NODE_SIZE: &str = "t3.medium";
pub const DEFAULT_BASTION_SIZE: &str = "t3.micro";

/// The `create cluster` choices, already parsed into types by the CLI.
#[derive(Debug, Clone, Default)]
pub struct NewCluster {
    pub name: String,
    pub zones: Vec<String>,
    pub master_zones: Vec<String>,
    pub master_count: Option<u32>,
    pub node_count: Option<u32>,
    pub master_size: Option<String>,
    pub node_size: Option<String>,
    pub topology: TopologyKind,
    pub bastion: bool,
    pub networking: Option<NetworkingPlugin>,
    pub image: Option<String>,
    pub kubernetes_version: Option<String>,
    pub api_load_balancer_type: Option<LoadBalancerType>,
    pub dns: Option<DnsType>,
    pub dns_zone: Option<String>,
    pub network_cidr: Option<Ipv4Cidr>,
    /// An existing VPC and its CIDR, as read from AWS.
    pub network: Option<(String, Ipv4Cidr)>,
    /// Existing subnets (id, zone, cidr), as read from AWS; private (or public) ones.
    pub subnets: Vec<(String, String, Ipv4Cidr)>,
    pub utility_subnets: Vec<(String, String, Ipv4Cidr)>,
    pub nat: NatMode,
    pub admin_access: Vec<Ipv4Cidr>,
    pub ssh_access: Vec<Ipv4Cidr>,
    pub config_base: Option<String>,
    pub cloud_labels: BTreeMap<String, String>,
}

fn err(
    field: &str,
    value: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> FieldError {
    FieldError::new(field, value, problem, fix)
}

/// Checks the options that name flags, then builds the Cluster and its groups.
/// Errors name the flag the user typed; the full spec is validated afterwards.
pub fn new_cluster(o: &NewCluster) -> Result<(Cluster, Vec<InstanceGroup>), ValidationErrors> {
    let mut errors = Vec::new();
    let zones = dedup(&o.zones);
    if zones.is_empty() {
        errors.push(err(
            "--zones",
            "",
            "is required",
            "list the availability zones, e.g. --zones us-east-1a,us-east-1b,us-east-1c",
        ));
    }
    if zones.len() != o.zones.len() {
        errors.push(err(
            "--zones",
            o.zones.join(","),
            "lists a zone twice",
            "name each zone once",
        ));
    }
    let master_zones = if o.master_zones.is_empty() {
        Vec::new()
    } else {
        dedup(&o.master_zones)
    };
    for z in &master_zones {
        if !zones.contains(z) {
            errors.push(err(
                "--master-zones",
                z,
                "is not one of --zones",
                format!("use zones from --zones ({})", zones.join(",")),
            ));
        }
    }
    if !master_zones.is_empty() && master_zones.len() % 2 == 0 {
        errors.push(err(
            "--master-zones",
            master_zones.join(","),
            "is an even number of zones",
            "use an odd number of zones (1, 3 or 5) so etcd keeps a quorum",
        ));
    }
    let master_count = o.master_count.unwrap_or(if master_zones.is_empty() {
        1
    } else {
        master_zones.len() as u32
    });
    if master_count == 0 || master_count.is_multiple_of(2) {
        errors.push(err(
            "--master-count",
            master_count.to_string(),
            "is not odd",
            "use an odd count (1, 3 or 5) so etcd keeps a quorum",
        ));
    }
    if o.bastion && o.topology != TopologyKind::Private {
        errors.push(err(
            "--bastion",
            "true",
            "needs a private topology",
            "add --topology private, or drop --bastion",
        ));
    }
    if o.nat == NatMode::Single && o.topology != TopologyKind::Private {
        errors.push(err(
            "--nat",
            "single",
            "only applies to a private topology",
            "add --topology private, or drop --nat",
        ));
    }
    if let (Some(cidr), Some(_)) = (o.network_cidr, &o.network) {
        errors.push(err(
            "--network-cidr",
            cidr.to_string(),
            "cannot be combined with --network-id",
            "drop --network-cidr: an existing VPC's CIDR is read from AWS",
        ));
    }
    let gossip = o.name.ends_with(".k8s.local");
    let dns = o.dns.unwrap_or(if gossip {
        DnsType::None
    } else {
        DnsType::Public
    });
    if gossip && (dns != DnsType::None || o.dns_zone.is_some()) {
        errors.push(err(
            "--dns",
            format!("{dns:?}").to_lowercase(),
            "is set for a gossip cluster (a name ending in .k8s.local)",
            "drop --dns and --dns-zone, or choose a name in your DNS zone",
        ));
    }
    if !gossip && dns == DnsType::None {
        errors.push(err(
            "--dns",
            "none",
            "needs a gossip cluster name",
            "name the cluster NAME.k8s.local, or use --dns public|private",
        ));
    }
    check_existing_subnets("--subnets", &o.subnets, &zones, &mut errors);
    check_existing_subnets("--utility-subnets", &o.utility_subnets, &zones, &mut errors);
    if (!o.subnets.is_empty() || !o.utility_subnets.is_empty()) && o.network.is_none() {
        errors.push(err(
            "--subnets",
            "",
            "needs --network-id",
            "add --network-id with the VPC those subnets are in",
        ));
    }
    if o.topology == TopologyKind::Public && !o.utility_subnets.is_empty() {
        errors.push(err(
            "--utility-subnets",
            "",
            "only applies to a private topology",
            "add --topology private, or drop --utility-subnets",
        ));
    }
    let network_cidr = o
        .network
        .as_ref()
        .map(|(_, c)| *c)
        .or(o.network_cidr)
        .unwrap_or_else(|| DEFAULT_NETWORK_CIDR.parse().unwrap());
    let subnets = match build_subnets(o, &zones, network_cidr) {
        Ok(s) => s,
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    };
    if !errors.is_empty() {
        return Err(ValidationErrors(errors));
    }

    let name = o.name.clone();
    let private = o.topology == TopologyKind::Private;
    let master_zones = if master_zones.is_empty() {
        // kops: the first master-count zones, or every zone (several masters each).
        zones.iter().take(master_count as usize).cloned().collect()
    } else {
        master_zones
    };
    let mut groups = Vec::new();
    let mut members = Vec::new();
    for (i, zone) in placements(&master_zones, master_count) {
        let suffix = i.map(|i| format!("-{i}")).unwrap_or_default();
        let ig_name = format!("master-{zone}{suffix}");
        let letter = zone.chars().last().unwrap();
        members.push(EtcdMember {
            name: format!("{letter}{suffix}"),
            instance_group: ig_name.clone(),
        });
        groups.push(group(
            &name,
            &ig_name,
            Role::Master,
            o.master_size.as_deref().unwrap_or(DEFAULT_MASTER_SIZE),
            1,
            1,
            vec![zone.clone()],
            64,
            o,
        ));
    }
    let node_count = o.node_count.unwrap_or(zones.len() as u32);
    for (i, zone) in zones.iter().enumerate() {
        // Spread the nodes evenly, the first zones taking the remainder.
        let n = node_count / zones.len() as u32
            + u32::from((i as u32) < node_count % zones.len() as u32);
        groups.push(group(
            &name,
            &format!("nodes-{zone}"),
            Role::Node,
            o.node_size.as_deref().unwrap_or(DEFAULT_NODE_SIZE),
            n,
            n,
            vec![zone.clone()],
            128,
            o,
        ));
    }
    if o.bastion {
        let utility = zones.iter().map(|z| format!("utility-{z}")).collect();
        groups.push(group(
            &name,
            "bastions",
            Role::Bastion,
            DEFAULT_BASTION_SIZE,
            1,
            1,
            utility,
            32,
            o,
        ));
    }

    let topology = Topology {
        control_plane: o.topology,
        nodes: o.topology,
        bastion: o.bastion.then(|| BastionSpec {
            public_name: (!gossip).then(|| format!("bastion.{name}")),
        }),
        dns: DnsSpec { kind: dns },
    };
    let dns_zone = o.dns_zone.clone().or_else(|| {
        // kops: without --dns-zone, the zone is the parent of the cluster name.
        (!gossip)
            .then(|| name.split_once('.').map(|(_, rest)| rest.to_string()))
            .flatten()
    });
    let all_access = vec!["0.0.0.0/0".parse().unwrap()];
    let cluster = Cluster {
        api_version: API_VERSION.to_string(),
        kind: "Cluster".to_string(),
        metadata: ObjectMeta {
            name: name.clone(),
            labels: BTreeMap::new(),
        },
        status: None,
        spec: ClusterSpec {
            cloud_provider: "aws".to_string(),
            kubernetes_version: o
                .kubernetes_version
                .clone()
                .unwrap_or_else(|| DEFAULT_KUBERNETES_VERSION.to_string()),
            config_base: o.config_base.clone(),
            network_cidr,
            network_id: o.network.as_ref().map(|(id, _)| id.clone()),
            non_masquerade_cidr: DEFAULT_NON_MASQUERADE_CIDR.parse().unwrap(),
            service_cluster_ip_range: DEFAULT_SERVICE_CIDR.parse().unwrap(),
            subnets,
            topology,
            api: ApiSpec {
                load_balancer: LoadBalancerSpec {
                    kind: o.api_load_balancer_type.unwrap_or(LoadBalancerType::Public),
                    class: LoadBalancerClass::Network,
                },
            },
            dns_zone,
            nat: if private { o.nat } else { NatMode::PerZone },
            networking: NetworkingSpec::of(o.networking.unwrap_or(NetworkingPlugin::Flannel)),
            etcd_clusters: ["main", "events"]
                .iter()
                .map(|n| EtcdCluster {
                    name: n.to_string(),
                    members: members.clone(),
                })
                .collect(),
            ssh_access: if o.ssh_access.is_empty() {
                all_access.clone()
            } else {
                o.ssh_access.clone()
            },
            kubernetes_api_access: if o.admin_access.is_empty() {
                all_access
            } else {
                o.admin_access.clone()
            },
            cloud_labels: o.cloud_labels.clone(),
            rolling_update: None,
            addons: BTreeMap::new(),
            additional_policies: BTreeMap::new(),
            kube_api_server: None,
            kubelet: None,
            hooks: Vec::new(),
            file_assets: Vec::new(),
        },
    };
    Ok((cluster, groups))
}

fn dedup(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in v {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// Where each master goes: one per zone, or several per zone (numbered) when the
/// count exceeds the zones, as kops does.
fn placements(zones: &[String], count: u32) -> Vec<(Option<u32>, String)> {
    if zones.is_empty() {
        return Vec::new();
    }
    let per_zone = count.div_ceil(zones.len() as u32);
    let mut out = Vec::new();
    for i in 0..count as usize {
        let zone = zones[i % zones.len()].clone();
        let n = (i / zones.len()) as u32 + 1;
        out.push(((per_zone > 1).then_some(n), zone));
    }
    out.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
    out
}

fn check_existing_subnets(
    flag: &str,
    subnets: &[(String, String, Ipv4Cidr)],
    zones: &[String],
    errors: &mut Vec<FieldError>,
) {
    if subnets.is_empty() {
        return;
    }
    let mut seen = Vec::new();
    for (id, zone, _) in subnets {
        if !zones.contains(zone) {
            errors.push(err(
                flag,
                id,
                format!("is in zone {zone}, which is not in --zones"),
                format!(
                    "add {zone} to --zones or pick a subnet in {}",
                    zones.join(",")
                ),
            ));
        }
        if seen.contains(zone) {
            errors.push(err(
                flag,
                id,
                format!("is a second subnet in zone {zone}"),
                "give one subnet per zone",
            ));
        }
        seen.push(zone.clone());
    }
    for z in zones {
        if !seen.contains(z) {
            errors.push(err(
                flag,
                subnets
                    .iter()
                    .map(|s| s.0.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                format!("has no subnet in zone {z}"),
                "give one subnet for each zone in --zones",
            ));
        }
    }
}

fn build_subnets(
    o: &NewCluster,
    zones: &[String],
    network: Ipv4Cidr,
) -> Result<Vec<ClusterSubnet>, FieldError> {
    let private = o.topology == TopologyKind::Private;
    let big_kind = if private {
        SubnetType::Private
    } else {
        SubnetType::Public
    };
    let existing = |list: &[(String, String, Ipv4Cidr)], zone: &str| {
        list.iter().find(|s| s.1 == zone).cloned()
    };
    let (big, little) = kops_split(network, zones.len(), if private { zones.len() } else { 0 })
        .ok_or_else(|| {
            err(
                if o.network.is_some() {
                    "--network-id"
                } else {
                    "--network-cidr"
                },
                network.to_string(),
                format!(
                    "is too small to split into subnets for {} zones",
                    zones.len()
                ),
                "use a larger network, such as a /16",
            )
        })?;
    let mut out = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        let given = existing(&o.subnets, zone);
        out.push(ClusterSubnet {
            name: zone.clone(),
            zone: zone.clone(),
            cidr: Some(given.as_ref().map(|s| s.2).unwrap_or(big[i])),
            kind: big_kind,
            id: given.map(|s| s.0),
            egress: None,
        });
    }
    if private {
        for (i, zone) in zones.iter().enumerate() {
            let given = existing(&o.utility_subnets, zone);
            out.push(ClusterSubnet {
                name: format!("utility-{zone}"),
                zone: zone.clone(),
                cidr: Some(given.as_ref().map(|s| s.2).unwrap_or(little[i])),
                kind: SubnetType::Utility,
                id: given.map(|s| s.0),
                egress: None,
            });
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn group(
    cluster: &str,
    name: &str,
    role: Role,
    machine: &str,
    min: u32,
    max: u32,
    subnets: Vec<String>,
    disk: u32,
    o: &NewCluster,
) -> InstanceGroup {
    InstanceGroup {
        api_version: API_VERSION.to_string(),
        kind: "InstanceGroup".to_string(),
        metadata: ObjectMeta {
            name: name.to_string(),
            labels: BTreeMap::from([(CLUSTER_LABEL.to_string(), cluster.to_string())]),
        },
        spec: new_group_spec(
            role,
            machine,
            min,
            max,
            subnets,
            disk,
            o.image.as_deref(),
            o.topology,
        ),
    }
}

/// The spec of a new group of `role`; also used by `create instancegroup`.
#[allow(clippy::too_many_arguments)]
pub fn new_group_spec(
    role: Role,
    machine: &str,
    min: u32,
    max: u32,
    subnets: Vec<String>,
    disk: u32,
    image: Option<&str>,
    topology: TopologyKind,
) -> InstanceGroupSpec {
    InstanceGroupSpec {
        role,
        image: image.unwrap_or(DEFAULT_IMAGE).to_string(),
        machine_type: machine.to_string(),
        min_size: min,
        max_size: max,
        subnets,
        root_volume: RootVolume {
            size: disk,
            kind: "gp3".to_string(),
            encrypted: true,
        },
        node_labels: BTreeMap::new(),
        taints: Vec::new(),
        cloud_labels: BTreeMap::new(),
        rolling_update: None,
        associate_public_ip: topology == TopologyKind::Public && role != Role::Bastion,
        additional_security_groups: Vec::new(),
        mixed_instances_policy: None,
        kubelet: None,
        hooks: Vec::new(),
        file_assets: Vec::new(),
    }
}

/// The defaults `create instancegroup` uses per role: machine type, disk GiB, size.
pub fn role_defaults(role: Role) -> (&'static str, u32, u32) {
    match role {
        Role::Master => (DEFAULT_MASTER_SIZE, 64, 1),
        Role::Node => (DEFAULT_NODE_SIZE, 128, 2),
        Role::Bastion => (DEFAULT_BASTION_SIZE, 32, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(zones: &[&str]) -> NewCluster {
        NewCluster {
            name: "demo.k8s.local".into(),
            zones: zones.iter().map(|z| z.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn kops_defaults_for_a_private_three_zone_cluster() {
        let mut o = opts(&["us-east-1a", "us-east-1b", "us-east-1c"]);
        o.topology = TopologyKind::Private;
        o.bastion = true;
        o.master_count = Some(3);
        o.node_count = Some(3);
        let (c, igs) = new_cluster(&o).unwrap();
        let names: Vec<_> = igs.iter().map(|g| g.name()).collect();
        assert_eq!(
            names,
            [
                "master-us-east-1a",
                "master-us-east-1b",
                "master-us-east-1c",
                "nodes-us-east-1a",
                "nodes-us-east-1b",
                "nodes-us-east-1c",
                "bastions"
            ]
        );
        let cidrs: Vec<_> = c
            .spec
            .subnets
            .iter()
            .map(|s| (s.name.as_str(), s.cidr.unwrap().to_string()))
            .collect();
        assert_eq!(cidrs[0], ("us-east-1a", "172.20.64.0/18".to_string()));
        assert_eq!(
            cidrs[5],
            ("utility-us-east-1c", "172.20.16.0/21".to_string())
        );
        assert_eq!(c.spec.etcd_clusters[0].members.len(), 3);
        assert_eq!(c.spec.topology.dns.kind, DnsType::None);
        crate::spec::validate::validate(&c, &igs).unwrap();
    }

    #[test]
    fn nodes_spread_with_remainder_first() {
        let mut o = opts(&["us-east-1a", "us-east-1b", "us-east-1c"]);
        o.node_count = Some(4);
        let (_, igs) = new_cluster(&o).unwrap();
        let sizes: Vec<_> = igs
            .iter()
            .filter(|g| g.spec.role == Role::Node)
            .map(|g| g.spec.min_size)
            .collect();
        assert_eq!(sizes, [2, 1, 1]);
    }

    #[test]
    fn more_masters_than_zones_are_numbered() {
        let mut o = opts(&["us-east-1a"]);
        o.master_count = Some(3);
        let (c, igs) = new_cluster(&o).unwrap();
        let masters: Vec<_> = igs
            .iter()
            .filter(|g| g.spec.role == Role::Master)
            .map(|g| g.name().to_string())
            .collect();
        assert_eq!(
            masters,
            [
                "master-us-east-1a-1",
                "master-us-east-1a-2",
                "master-us-east-1a-3"
            ]
        );
        assert_eq!(c.spec.etcd_clusters[0].members[2].name, "a-3");
        crate::spec::validate::validate(&c, &igs).unwrap();
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let mut o = opts(&["us-east-1a"]);
        o.master_count = Some(2);
        o.bastion = true;
        let e = new_cluster(&o).unwrap_err().to_string();
        assert!(e.contains("--master-count: 2 is not odd"), "{e}");
        assert!(
            e.contains("--bastion: true needs a private topology; add --topology private"),
            "{e}"
        );
    }

    #[test]
    fn a_real_dns_name_gets_its_parent_zone() {
        let o = NewCluster {
            name: "prod.example.com".into(),
            ..opts(&["eu-west-1a"])
        };
        let (c, _) = new_cluster(&o).unwrap();
        assert_eq!(c.spec.dns_zone.as_deref(), Some("example.com"));
        assert_eq!(c.spec.topology.dns.kind, DnsType::Public);
    }
}
