//! Load balancers: the API on a network load balancer (public in the utility or
//! public subnets, or internal in the private subnets), TCP 443 to the masters;
//! with a bastion, a public NLB on TCP 22 to it.

use sha2::{Digest, Sha256};

use super::*;
use crate::spec::{Cluster, LoadBalancerType, Role, SubnetType};

/// ELB names: at most 32 letters, digits and dashes. Long names keep a hash of
/// the whole, so two clusters never share one.
pub fn elb_name(prefix: &str, cluster: &str) -> String {
    let full = format!("{prefix}-{}", cluster.replace('.', "-"));
    if full.len() <= 32 {
        return full;
    }
    let hash = crate::plan::hex(&Sha256::digest(full.as_bytes()))[..6].to_string();
    format!("{}-{hash}", full[..25].trim_end_matches('-'))
}

/// `api.NAME` when the cluster has DNS; a gossip cluster uses the load
/// balancer's own hostname, known only once it exists.
pub fn api_dns_name(c: &Cluster) -> Option<String> {
    (!c.is_gossip() && c.spec.dns_zone.is_some()).then(|| format!("api.{}", c.name()))
}

pub fn api_name(cluster: &str) -> String {
    elb_name("api", cluster)
}

pub fn bastion_name(cluster: &str) -> String {
    elb_name("bastion", cluster)
}

/// The target groups a role's instances register in.
pub fn target_groups_of(c: &Cluster, role: Role) -> Vec<Address> {
    match role {
        Role::Master => vec![Address::new(
            Kind::TargetGroup,
            elb_name("tcp-api", c.name()),
        )],
        Role::Bastion if c.spec.topology.bastion.is_some() => vec![Address::new(
            Kind::TargetGroup,
            elb_name("tcp-bastion", c.name()),
        )],
        _ => vec![],
    }
}

fn subnets_of(c: &Cluster, kinds: &[SubnetType]) -> Vec<Address> {
    c.spec
        .subnets
        .iter()
        .filter(|s| kinds.contains(&s.kind))
        .map(|s| Address::new(Kind::Subnet, format!("{}.{}", s.name, c.name())))
        .collect()
}

pub fn build(c: &Cluster, d: &mut Desired) -> Result<(), ModelError> {
    let cluster = c.name();
    let vpc = Address::new(Kind::Vpc, cluster);
    let tags = |name: &str| ownership_tags(cluster, name, &c.spec.cloud_labels);
    let internal = c.spec.api.load_balancer.kind == LoadBalancerType::Internal;
    let public_subnets = subnets_of(c, &[SubnetType::Utility, SubnetType::Public]);
    let api_subnets = if internal {
        let private = subnets_of(c, &[SubnetType::Private]);
        if private.is_empty() {
            public_subnets.clone()
        } else {
            private
        }
    } else {
        public_subnets.clone()
    };
    let mut nlb = |name: String,
                   tg: String,
                   port: i32,
                   internal: bool,
                   preserve_client_ip: bool,
                   subnets: Vec<Address>,
                   sg: &str|
     -> Result<(), ModelError> {
        let lb = d.ensure(
            Lifecycle::Owned,
            Resource::LoadBalancer(LoadBalancer {
                name: name.clone(),
                internal,
                subnets,
                security_groups: vec![Address::new(
                    Kind::SecurityGroup,
                    super::security::group_name(sg, cluster),
                )],
                tags: tags(&name),
            }),
        )?;
        let target = d.ensure(
            Lifecycle::Owned,
            Resource::TargetGroup(TargetGroup {
                name: tg.clone(),
                vpc: vpc.clone(),
                port,
                preserve_client_ip,
                tags: tags(&tg),
            }),
        )?;
        d.ensure(
            Lifecycle::Owned,
            Resource::Listener(Listener {
                load_balancer: lb,
                port,
                target_group: target,
            }),
        )?;
        Ok(())
    };
    // The API's targets are also its clients (kubelets and the control plane on
    // the masters call `api.NAME`). With the client's IP preserved, an internal
    // balancer that sends a master's own connection back to it delivers a packet
    // whose source and destination are both that master, which it drops: the
    // first master's `kubeadm init` times out. With preservation off the targets
    // see the balancer's private address. Their security group admits the
    // balancer's group, which holds either way, and access is filtered by the
    // balancer's own group (`api-elb`), which sees the real client. See
    // https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-troubleshooting.html#loopback-timeout
    // and .../network/edit-target-group-attributes.html#client-ip-preservation.
    nlb(
        api_name(cluster),
        elb_name("tcp-api", cluster),
        443,
        internal,
        false,
        api_subnets,
        "api-elb",
    )?;
    if c.spec.topology.bastion.is_some() {
        nlb(
            bastion_name(cluster),
            elb_name("tcp-bastion", cluster),
            22,
            false,
            // The bastion is nobody's client: it keeps AWS's default, so its
            // sshd logs the real client address.
            true,
            public_subnets,
            "bastion-elb",
        )?;
    }
    // With a DNS zone (not gossip): `api.NAME` and `bastion.NAME` alias the balancers.
    if let (false, Some(zone)) = (c.is_gossip(), &c.spec.dns_zone) {
        let private_zone = c.spec.topology.dns.kind == crate::spec::DnsType::Private;
        let mut record = |name: String, lb: String| {
            d.ensure(
                Lifecycle::Owned,
                Resource::DnsRecord(DnsRecord {
                    name,
                    zone: zone.clone(),
                    private_zone,
                    target: Address::new(Kind::LoadBalancer, lb),
                }),
            )
        };
        record(format!("api.{cluster}"), api_name(cluster))?;
        if c.spec.topology.bastion.is_some() {
            record(format!("bastion.{cluster}"), bastion_name(cluster))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_api_target_group_drops_client_ip_preservation() {
        use super::*;
        use crate::spec::defaults::{NewCluster, new_cluster};
        let (c, _) = new_cluster(&NewCluster {
            name: "t.k8s.local".into(),
            zones: vec!["us-east-1a".into()],
            topology: crate::spec::TopologyKind::Private,
            bastion: true,
            ..Default::default()
        })
        .unwrap();
        let mut d = Desired::default();
        build(&c, &mut d).unwrap();
        let preserve =
            |name: &str| match &d.resources[&Address::new(Kind::TargetGroup, name)].resource {
                Resource::TargetGroup(t) => t.preserve_client_ip,
                other => panic!("{other:?}"),
            };
        assert!(!preserve("tcp-api-t-k8s-local"));
        assert!(preserve("tcp-bastion-t-k8s-local"));
    }

    #[test]
    fn names_fit_elb_rules() {
        assert_eq!(
            super::elb_name("api", "demo.k8s.local"),
            "api-demo-k8s-local"
        );
        let long = super::elb_name("tcp-bastion", "a-rather-long-cluster-name.example.com");
        assert!(
            long.len() <= 32 && long.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{long}"
        );
        assert_ne!(
            long,
            super::elb_name("tcp-bastion", "a-rather-long-cluster-name.example.org")
        );
    }
}
