//! Security groups and their rules, as kops lays them out, and the key pair.
//!
//! - masters and nodes: all traffic within each group; masters reach nodes on
//!   everything; nodes reach masters on the ports they need (not etcd's
//!   2380-2381 and 4001-4002).
//! - the API on 443 reaches masters only through `api-elb`, which admits
//!   `kubernetesApiAccess` and, when that is restricted, the cluster's own
//!   instances (see [`in_cluster_api_sources`]).
//! - SSH: with a bastion, masters and nodes admit it only from `bastion`, which
//!   admits it only from `bastion-elb`, which admits `sshAccess`; without one,
//!   masters and nodes admit `sshAccess` directly.
//! - egress is open everywhere.

use super::*;
use crate::spec::Cluster;
use crate::spec::ssh_key::SshPublicKey;

/// `masters.NAME`, `nodes.NAME`, `bastion.NAME`, `api-elb.NAME`, `bastion-elb.NAME`.
pub fn group_name(role: &str, cluster: &str) -> String {
    format!("{role}.{cluster}")
}

pub fn key_pair_name(cluster: &str, key: &SshPublicKey) -> String {
    format!("kubernetes.{cluster}-{}", key.fingerprint())
}

struct Rules<'a> {
    d: &'a mut Desired,
}

impl Rules<'_> {
    fn add(
        &mut self,
        group: &Address,
        direction: Direction,
        protocol: &str,
        ports: (i32, i32),
        peer: Peer,
    ) -> Result<(), ModelError> {
        let (cidr, source_group, elastic_ip) = match peer {
            Peer::Cidr(c) => (Some(c), None, None),
            Peer::Group(g) => (None, Some(g.clone()), None),
            Peer::ElasticIp(e) => (None, None, Some(e.clone())),
        };
        self.d.ensure(
            Lifecycle::Owned,
            Resource::SecurityGroupRule(SecurityGroupRule {
                group: group.clone(),
                direction,
                protocol: protocol.into(),
                from_port: ports.0,
                to_port: ports.1,
                cidr,
                source_group,
                elastic_ip,
            }),
        )?;
        Ok(())
    }
}

enum Peer<'a> {
    Cidr(crate::spec::Ipv4Cidr),
    Group(&'a Address),
    ElasticIp(&'a Address),
}

/// Where the cluster's own instances (kubelets, the control plane, the cloud
/// controller, all calling `api.NAME`) come from as the API balancer's security
/// group sees them, so that `api-elb` admits them however `kubernetesApiAccess`
/// is restricted. A balancer's group filters the client's own source address;
/// client IP preservation only decides what the *targets* see (the balancer's
/// private address when off, as for the API's target group), and the masters
/// admit `api-elb` by group either way
/// (https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-security-groups.html).
///
/// - An internal balancer has private addresses only: callers reach it from
///   their private addresses, inside the VPC, so the VPC's CIDR.
/// - An internet-facing one has public addresses only: an instance in a private
///   subnet reaches it through its zone's NAT gateway, whose elastic IP is the
///   source (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-nat-gateway.html:
///   "the NAT gateway replaces the source IP address of the instances with the
///   IP address of the NAT gateway"), so each NAT elastic IP's /32. (Instances
///   in public subnets come from their own public addresses, unknown before
///   launch; validation refuses that combination.)
///
/// Nothing is added when the access list already admits everyone.
pub fn in_cluster_api_sources(c: &Cluster) -> (Vec<crate::spec::Ipv4Cidr>, Vec<Address>) {
    let any: crate::spec::Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
    if c.spec.kubernetes_api_access.contains(&any) {
        return (Vec::new(), Vec::new());
    }
    if c.spec.api.load_balancer.kind == crate::spec::LoadBalancerType::Internal {
        (vec![c.spec.network_cidr], Vec::new())
    } else {
        (Vec::new(), super::network::nat_elastic_ips(c))
    }
}

pub fn build(
    c: &Cluster,
    ssh_key: Option<&SshPublicKey>,
    d: &mut Desired,
) -> Result<(), ModelError> {
    let cluster = c.name();
    let vpc = Address::new(Kind::Vpc, cluster);
    let bastion = c.spec.topology.bastion.is_some();
    let mut group = |role: &str, what: &str| -> Result<Address, ModelError> {
        let name = group_name(role, cluster);
        d.ensure(
            Lifecycle::Owned,
            Resource::SecurityGroup(SecurityGroup {
                name: name.clone(),
                vpc: vpc.clone(),
                description: format!("Security group for {what}"),
                tags: ownership_tags(cluster, &name, &c.spec.cloud_labels),
            }),
        )
    };
    let masters = group("masters", "masters")?;
    let nodes = group("nodes", "nodes")?;
    let api_elb = group("api-elb", "the API load balancer")?;
    let bastions = if bastion {
        Some((
            group("bastion", "the bastion")?,
            group("bastion-elb", "the bastion load balancer")?,
        ))
    } else {
        None
    };

    let any: crate::spec::Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
    let mut r = Rules { d };
    let all = (0, 0);
    let ssh = (22, 22);
    let https = (443, 443);
    let mut groups = vec![&masters, &nodes, &api_elb];
    if let Some((b, be)) = &bastions {
        groups.push(b);
        groups.push(be);
    }
    for g in &groups {
        r.add(g, Direction::Egress, "-1", all, Peer::Cidr(any))?;
    }
    r.add(
        &masters,
        Direction::Ingress,
        "-1",
        all,
        Peer::Group(&masters),
    )?;
    r.add(&nodes, Direction::Ingress, "-1", all, Peer::Group(&nodes))?;
    r.add(&nodes, Direction::Ingress, "-1", all, Peer::Group(&masters))?;
    for ports in [(1, 2379), (2382, 4000), (4003, 65535)] {
        r.add(
            &masters,
            Direction::Ingress,
            "tcp",
            ports,
            Peer::Group(&nodes),
        )?;
    }
    r.add(
        &masters,
        Direction::Ingress,
        "udp",
        (1, 65535),
        Peer::Group(&nodes),
    )?;
    // IP-in-IP, only for calico's overlay (as kops).
    if c.spec.networking.calico.is_some() {
        r.add(&masters, Direction::Ingress, "4", all, Peer::Group(&nodes))?;
    }
    r.add(
        &masters,
        Direction::Ingress,
        "tcp",
        https,
        Peer::Group(&api_elb),
    )?;
    let (own_cidrs, own_ips) = in_cluster_api_sources(c);
    for cidr in c.spec.kubernetes_api_access.iter().chain(&own_cidrs) {
        r.add(
            &api_elb,
            Direction::Ingress,
            "tcp",
            https,
            Peer::Cidr(*cidr),
        )?;
    }
    for eip in &own_ips {
        r.add(
            &api_elb,
            Direction::Ingress,
            "tcp",
            https,
            Peer::ElasticIp(eip),
        )?;
    }
    match &bastions {
        Some((b, be)) => {
            r.add(&masters, Direction::Ingress, "tcp", ssh, Peer::Group(b))?;
            r.add(&nodes, Direction::Ingress, "tcp", ssh, Peer::Group(b))?;
            r.add(b, Direction::Ingress, "tcp", ssh, Peer::Group(be))?;
            for cidr in &c.spec.ssh_access {
                r.add(be, Direction::Ingress, "tcp", ssh, Peer::Cidr(*cidr))?;
            }
        }
        None => {
            for cidr in &c.spec.ssh_access {
                r.add(&masters, Direction::Ingress, "tcp", ssh, Peer::Cidr(*cidr))?;
                r.add(&nodes, Direction::Ingress, "tcp", ssh, Peer::Cidr(*cidr))?;
            }
        }
    }

    if let Some(key) = ssh_key {
        let name = key_pair_name(cluster, key);
        d.ensure(
            Lifecycle::Owned,
            Resource::KeyPair(KeyPair {
                name: name.clone(),
                public_key: key.line(),
                tags: ownership_tags(cluster, &name, &c.spec.cloud_labels),
            }),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TopologyKind;
    use crate::spec::defaults::{NewCluster, new_cluster};

    fn rules(bastion: bool) -> Vec<String> {
        let (c, _) = new_cluster(&NewCluster {
            name: "s.k8s.local".into(),
            zones: vec!["us-east-1a".into()],
            topology: if bastion {
                TopologyKind::Private
            } else {
                TopologyKind::Public
            },
            bastion,
            admin_access: vec!["203.0.113.0/24".parse().unwrap()],
            ..Default::default()
        })
        .unwrap();
        let mut d = Desired::default();
        build(&c, None, &mut d).unwrap();
        d.resources
            .keys()
            .filter(|a| a.kind == Kind::SecurityGroupRule)
            .map(|a| a.name.clone())
            .collect()
    }

    #[test]
    fn ssh_only_through_the_bastion() {
        let r = rules(true);
        assert!(
            r.contains(&"masters.s.k8s.local:ingress:tcp:22-22:bastion.s.k8s.local".to_string())
        );
        assert!(r.contains(&"nodes.s.k8s.local:ingress:tcp:22-22:bastion.s.k8s.local".to_string()));
        assert!(r.contains(
            &"bastion.s.k8s.local:ingress:tcp:22-22:bastion-elb.s.k8s.local".to_string()
        ));
        assert!(r.contains(&"bastion-elb.s.k8s.local:ingress:tcp:22-22:0.0.0.0/0".to_string()));
        assert!(
            !r.iter()
                .any(|x| x.starts_with("masters.") && x.contains(":tcp:22-22:0.0.0.0/0"))
        );
        assert!(r.contains(&"api-elb.s.k8s.local:ingress:tcp:443-443:203.0.113.0/24".to_string()));
        assert!(
            r.contains(&"masters.s.k8s.local:ingress:tcp:443-443:api-elb.s.k8s.local".to_string())
        );
        assert!(
            !r.iter()
                .any(|x| x.starts_with("masters.") && x.contains(":tcp:2380")),
            "etcd is not open to nodes"
        );
    }

    fn api_sources(internal: bool, access: &str, nat_single: bool) -> Vec<String> {
        let (mut c, _) = new_cluster(&NewCluster {
            name: "a.k8s.local".into(),
            zones: vec!["us-east-1a".into(), "us-east-1b".into()],
            topology: TopologyKind::Private,
            admin_access: vec![access.parse().unwrap()],
            ..Default::default()
        })
        .unwrap();
        if internal {
            c.spec.api.load_balancer.kind = crate::spec::LoadBalancerType::Internal;
        }
        if nat_single {
            c.spec.nat = crate::spec::NatMode::Single;
        }
        let mut d = Desired::default();
        build(&c, None, &mut d).unwrap();
        d.resources
            .keys()
            .filter(|a| a.kind == Kind::SecurityGroupRule)
            .filter_map(|a| {
                a.name
                    .strip_prefix("api-elb.a.k8s.local:ingress:tcp:443-443:")
            })
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_restricted_api_still_admits_the_clusters_own_instances() {
        // Internal: callers come from their private addresses, in the VPC.
        assert_eq!(
            api_sources(true, "203.0.113.0/24", false),
            ["172.20.0.0/16", "203.0.113.0/24"]
        );
        // Public, instances in private subnets: from their zone's NAT address.
        assert_eq!(
            api_sources(false, "203.0.113.0/24", false),
            [
                "203.0.113.0/24",
                "elastic_ip.us-east-1a.a.k8s.local/32",
                "elastic_ip.us-east-1b.a.k8s.local/32",
            ]
        );
        assert_eq!(
            api_sources(false, "203.0.113.0/24", true),
            ["203.0.113.0/24", "elastic_ip.us-east-1a.a.k8s.local/32"]
        );
        // Open to all: nothing more.
        assert_eq!(api_sources(false, "0.0.0.0/0", false), ["0.0.0.0/0"]);
        assert_eq!(api_sources(true, "0.0.0.0/0", false), ["0.0.0.0/0"]);
    }

    #[test]
    fn the_nat_addresses_admitted_are_the_network_s_own() {
        let (c, _) = new_cluster(&NewCluster {
            name: "a.k8s.local".into(),
            zones: vec!["us-east-1a".into(), "us-east-1b".into()],
            topology: TopologyKind::Private,
            ..Default::default()
        })
        .unwrap();
        let mut d = Desired::default();
        crate::model::network::build(&c, &mut d).unwrap();
        let made: Vec<Address> = d
            .resources
            .keys()
            .filter(|a| a.kind == Kind::ElasticIp)
            .cloned()
            .collect();
        assert_eq!(made, crate::model::network::nat_elastic_ips(&c));
    }

    #[test]
    fn without_a_bastion_ssh_comes_from_ssh_access() {
        let r = rules(false);
        assert!(r.contains(&"masters.s.k8s.local:ingress:tcp:22-22:0.0.0.0/0".to_string()));
        assert!(!r.iter().any(|x| x.contains("bastion")));
    }
}
