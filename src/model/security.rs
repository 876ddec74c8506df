//! Security groups and their rules, as kops lays them out, and the key pair.
//!
//! - masters and nodes: all traffic within each group; masters reach nodes on
//!   everything; nodes reach masters on the ports they need (not etcd's
//!   2380-2381 and 4001-4002).
//! - the API on 443 reaches masters only through `api-elb`, which admits
//!   `kubernetesApiAccess`.
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
        let (cidr, source_group) = match peer {
            Peer::Cidr(c) => (Some(c), None),
            Peer::Group(g) => (None, Some(g.clone())),
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
            }),
        )?;
        Ok(())
    }
}

enum Peer<'a> {
    Cidr(crate::spec::Ipv4Cidr),
    Group(&'a Address),
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
    for cidr in &c.spec.kubernetes_api_access {
        r.add(
            &api_elb,
            Direction::Ingress,
            "tcp",
            https,
            Peer::Cidr(*cidr),
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

    #[test]
    fn without_a_bastion_ssh_comes_from_ssh_access() {
        let r = rules(false);
        assert!(r.contains(&"masters.s.k8s.local:ingress:tcp:22-22:0.0.0.0/0".to_string()));
        assert!(!r.iter().any(|x| x.contains("bastion")));
    }
}
