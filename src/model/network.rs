//! The network layer of a cluster, as kops lays it out: VPC, DHCP options,
//! internet gateway, subnets, one public route table, one private route table and
//! one NAT gateway (with its EIP) per zone (or one NAT for all with `nat: single`).

use super::*;
use crate::spec::{Cluster, NatMode, SubnetType};

/// The name of the public route table, the VPC, its DHCP options and gateway.
fn main_name(c: &Cluster) -> String {
    c.name().to_string()
}

fn subnet_name(c: &Cluster, subnet: &str) -> String {
    format!("{subnet}.{}", c.name())
}

fn private_table_name(c: &Cluster, zone: &str) -> String {
    format!("private-{zone}.{}", c.name())
}

fn nat_name(c: &Cluster, zone: &str) -> String {
    format!("{zone}.{}", c.name())
}

/// The zones that get a NAT gateway, in the utility subnet: each zone with
/// private subnets that name no egress of their own, or only the first with
/// `nat: single`.
fn nat_zones(c: &Cluster) -> Vec<&str> {
    let mut zones: Vec<&str> = c
        .spec
        .subnets
        .iter()
        .filter(|s| s.kind == SubnetType::Private && s.egress.is_none())
        .map(|s| s.zone.as_str())
        .collect();
    zones.sort();
    zones.dedup();
    if c.spec.nat == NatMode::Single {
        zones.truncate(1);
    }
    zones
}

/// The elastic IPs of the cluster's own NAT gateways: the public addresses its
/// instances in private subnets reach the internet (and a public API) from.
pub fn nat_elastic_ips(c: &Cluster) -> Vec<Address> {
    nat_zones(c)
        .into_iter()
        .map(|z| Address::new(Kind::ElasticIp, nat_name(c, z)))
        .collect()
}

/// The tag a shared resource gets: ownership is explicit, and discovery finds it.
fn shared_tags(c: &Cluster) -> Tags {
    Tags::from([(cluster_tag(c.name()), "shared".to_string())])
}

pub fn build(c: &Cluster, d: &mut Desired) -> Result<(), ModelError> {
    let cluster = c.name();
    let extra = &c.spec.cloud_labels;
    let tags = |name: &str| ownership_tags(cluster, name, extra);
    let region = c
        .region()
        .ok_or_else(|| ModelError::Invalid("the cluster has no subnets, so no region".into()))?;

    let vpc_name = main_name(c);
    let vpc_lifecycle = match &c.spec.network_id {
        Some(id) => Lifecycle::Shared(id.clone()),
        None => Lifecycle::Owned,
    };
    let shared_vpc = vpc_lifecycle != Lifecycle::Owned;
    let vpc = d.ensure(
        vpc_lifecycle.clone(),
        Resource::Vpc(Vpc {
            name: vpc_name.clone(),
            cidr: c.spec.network_cidr,
            enable_dns_support: true,
            enable_dns_hostnames: true,
            tags: if shared_vpc {
                shared_tags(c)
            } else {
                tags(&vpc_name)
            },
        }),
    )?;
    // A shared VPC keeps its own DHCP options and internet gateway: keelson uses
    // the gateway attached to it and changes neither.
    if !shared_vpc {
        d.ensure(
            Lifecycle::Owned,
            Resource::DhcpOptions(DhcpOptions {
                name: vpc_name.clone(),
                domain_name: if region == "us-east-1" {
                    "ec2.internal".into()
                } else {
                    format!("{region}.compute.internal")
                },
                domain_name_servers: vec!["AmazonProvidedDNS".into()],
                vpc: vpc.clone(),
                tags: tags(&vpc_name),
            }),
        )?;
    }
    let igw = d.ensure(
        if shared_vpc {
            Lifecycle::Shared(String::new())
        } else {
            Lifecycle::Owned
        },
        Resource::InternetGateway(InternetGateway {
            name: vpc_name.clone(),
            vpc: vpc.clone(),
            tags: if shared_vpc {
                shared_tags(c)
            } else {
                tags(&vpc_name)
            },
        }),
    )?;

    let public_table = d.ensure(
        Lifecycle::Owned,
        Resource::RouteTable(RouteTable {
            name: vpc_name.clone(),
            vpc: vpc.clone(),
            tags: tags(&vpc_name),
        }),
    )?;
    d.ensure(
        Lifecycle::Owned,
        Resource::Route(Route {
            route_table: public_table.clone(),
            destination: any(),
            target: igw.clone(),
        }),
    )?;

    let mut subnets = std::collections::BTreeMap::new();
    for s in &c.spec.subnets {
        let name = subnet_name(c, &s.name);
        let (lifecycle, subnet_tags) = match &s.id {
            Some(id) => (Lifecycle::Shared(id.clone()), shared_tags(c)),
            None => {
                let mut t = tags(&name);
                t.insert("SubnetType".into(), format!("{:?}", s.kind));
                match s.kind {
                    SubnetType::Private => {
                        t.insert("kubernetes.io/role/internal-elb".into(), "1".into())
                    }
                    SubnetType::Utility | SubnetType::Public => {
                        t.insert("kubernetes.io/role/elb".into(), "1".into())
                    }
                };
                (Lifecycle::Owned, t)
            }
        };
        let cidr = s
            .cidr
            .ok_or_else(|| ModelError::Invalid(format!("subnet {} has no CIDR", s.name)))?;
        let addr = d.ensure(
            lifecycle,
            Resource::Subnet(Subnet {
                name,
                vpc: vpc.clone(),
                cidr,
                zone: s.zone.clone(),
                tags: subnet_tags,
            }),
        )?;
        subnets.insert(s.name.clone(), addr);
    }

    let mut nats = std::collections::BTreeMap::new();
    for zone in &nat_zones(c) {
        let utility = c
            .spec
            .subnets
            .iter()
            .find(|s| s.kind == SubnetType::Utility && s.zone == *zone)
            .ok_or_else(|| {
                ModelError::Invalid(format!(
                    "zone {zone} has private subnets but no utility subnet for its NAT gateway"
                ))
            })?;
        let name = nat_name(c, zone);
        let eip = d.ensure(
            Lifecycle::Owned,
            Resource::ElasticIp(ElasticIp {
                name: name.clone(),
                tags: tags(&name),
            }),
        )?;
        let nat = d.ensure(
            Lifecycle::Owned,
            Resource::NatGateway(NatGateway {
                name: name.clone(),
                subnet: subnets[&utility.name].clone(),
                elastic_ip: eip,
                tags: tags(&name),
            }),
        )?;
        nats.insert(zone.to_string(), nat);
    }

    for s in &c.spec.subnets {
        if s.id.is_some() {
            continue; // a shared subnet keeps its own routing
        }
        let table = match s.kind {
            SubnetType::Utility | SubnetType::Public => public_table.clone(),
            SubnetType::Private => {
                let name = private_table_name(c, &s.zone);
                let table = d.ensure(
                    Lifecycle::Owned,
                    Resource::RouteTable(RouteTable {
                        name: name.clone(),
                        vpc: vpc.clone(),
                        tags: tags(&name),
                    }),
                )?;
                let target = match &s.egress {
                    Some(id) => Address::foreign(Kind::NatGateway, id),
                    None => nats
                        .get(&s.zone)
                        .or_else(|| nats.values().next())
                        .cloned()
                        .ok_or_else(|| {
                            ModelError::Invalid(format!("no NAT gateway for zone {}", s.zone))
                        })?,
                };
                d.ensure(
                    Lifecycle::Owned,
                    Resource::Route(Route {
                        route_table: table.clone(),
                        destination: any(),
                        target,
                    }),
                )?;
                table
            }
        };
        d.ensure(
            Lifecycle::Owned,
            Resource::RouteTableAssociation(RouteTableAssociation {
                subnet: subnets[&s.name].clone(),
                route_table: table,
            }),
        )?;
    }
    Ok(())
}

fn any() -> crate::spec::Ipv4Cidr {
    "0.0.0.0/0".parse().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TopologyKind;
    use crate::spec::defaults::{NewCluster, new_cluster};

    fn model(zones: &[&str], topology: TopologyKind, nat: NatMode) -> Desired {
        let (c, _) = new_cluster(&NewCluster {
            name: "m.k8s.local".into(),
            zones: zones.iter().map(|z| z.to_string()).collect(),
            topology,
            nat,
            ..Default::default()
        })
        .unwrap();
        let mut d = Desired::default();
        build(&c, &mut d).unwrap();
        d
    }

    fn count(d: &Desired, kind: Kind) -> usize {
        d.resources.keys().filter(|a| a.kind == kind).count()
    }

    #[test]
    fn private_three_zones() {
        let d = model(
            &["us-east-1a", "us-east-1b", "us-east-1c"],
            TopologyKind::Private,
            NatMode::PerZone,
        );
        assert_eq!(count(&d, Kind::Subnet), 6);
        assert_eq!(count(&d, Kind::NatGateway), 3);
        assert_eq!(count(&d, Kind::ElasticIp), 3);
        assert_eq!(count(&d, Kind::RouteTable), 4);
        assert_eq!(count(&d, Kind::Route), 4);
        assert_eq!(count(&d, Kind::RouteTableAssociation), 6);
        // Each private table routes to the NAT of its own zone.
        let route = &d.resources
            [&Address::new(Kind::Route, "private-us-east-1b.m.k8s.local:0.0.0.0/0")]
            .resource;
        let Resource::Route(r) = route else { panic!() };
        assert_eq!(
            r.target,
            Address::new(Kind::NatGateway, "us-east-1b.m.k8s.local")
        );
        let nat = &d.resources[&r.target].resource;
        let Resource::NatGateway(n) = nat else {
            panic!()
        };
        assert_eq!(
            n.subnet,
            Address::new(Kind::Subnet, "utility-us-east-1b.m.k8s.local")
        );
    }

    #[test]
    fn single_nat_serves_every_zone() {
        let d = model(
            &["us-east-1a", "us-east-1b"],
            TopologyKind::Private,
            NatMode::Single,
        );
        assert_eq!(count(&d, Kind::NatGateway), 1);
        for zone in ["us-east-1a", "us-east-1b"] {
            let Resource::Route(r) = &d.resources
                [&Address::new(Kind::Route, format!("private-{zone}.m.k8s.local:0.0.0.0/0"))]
                .resource
            else {
                panic!()
            };
            assert_eq!(r.target.name, "us-east-1a.m.k8s.local");
        }
    }

    #[test]
    fn public_topology_has_no_nat() {
        let d = model(&["eu-west-1a"], TopologyKind::Public, NatMode::PerZone);
        assert_eq!(count(&d, Kind::NatGateway), 0);
        assert_eq!(count(&d, Kind::RouteTable), 1);
        let Resource::DhcpOptions(o) =
            &d.resources[&Address::new(Kind::DhcpOptions, "m.k8s.local")].resource
        else {
            panic!()
        };
        assert_eq!(o.domain_name, "eu-west-1.compute.internal");
    }

    #[test]
    fn every_reference_points_into_the_model() {
        let d = model(
            &["us-east-1a", "us-east-1b", "us-east-1c"],
            TopologyKind::Private,
            NatMode::PerZone,
        );
        for r in d.resources.values() {
            for dep in r.resource.deps() {
                assert!(
                    d.resources.contains_key(dep),
                    "{} -> {dep}",
                    r.resource.address()
                );
            }
        }
    }
}
