use super::*;
use crate::model::{self, NatGateway};
use crate::spec::defaults::{NewCluster, new_cluster};
use crate::spec::{Cluster, NatMode, TopologyKind};

fn cluster(zones: &[&str]) -> Cluster {
    new_cluster(&NewCluster {
        name: "p.k8s.local".into(),
        zones: zones.iter().map(|z| z.to_string()).collect(),
        topology: TopologyKind::Private,
        nat: NatMode::PerZone,
        ..Default::default()
    })
    .unwrap()
    .0
}

fn desired(zones: &[&str]) -> Desired {
    let c = cluster(zones);
    model::build(&model::Inputs {
        cluster: &c,
        groups: &[],
        ssh_key: None,
        images: &Default::default(),
        node_agent: &model::instances::NodeAgent {
            sha256: "0".repeat(64),
        },
    })
    .unwrap()
}

/// What AWS would hold after applying `d` exactly.
fn applied(d: &Desired) -> Actual {
    let mut a = Actual::default();
    for (i, (_, r)) in d.resources.iter().enumerate() {
        a.insert(ActualResource {
            id: format!("id-{i}"),
            resource: r.resource.clone(),
            owned: true,
            state: None,
        });
    }
    a
}

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

#[test]
fn an_empty_cloud_creates_everything() {
    let d = desired(&ZONES);
    let p = plan(&d, &Actual::default(), "s").unwrap();
    assert_eq!(
        p.summary,
        Summary {
            add: d.resources.len(),
            change: 0,
            destroy: 0
        }
    );
    assert!(p.changes.iter().all(|c| c.action == Action::Create));
    // Dependency order: a VPC comes before anything in it.
    assert_eq!(p.changes[0].kind, Kind::Vpc);
}

#[test]
fn with_no_change_in_the_cloud_the_planner_makes_none() {
    let d = desired(&ZONES);
    let p = plan(&d, &applied(&d), "s").unwrap();
    assert!(p.is_empty(), "{}", render::human(&p));
}

#[test]
fn foreign_tags_are_ignored_and_missing_tags_are_restored() {
    let d = desired(&ZONES);
    let mut a = applied(&d);
    let vpc = Address::new(Kind::Vpc, "p.k8s.local");
    let tags = a
        .resources
        .get_mut(&vpc)
        .unwrap()
        .resource
        .tags_mut()
        .unwrap();
    tags.insert("team".into(), "someone-else".into());
    assert!(plan(&d, &a, "s").unwrap().is_empty());
    a.resources
        .get_mut(&vpc)
        .unwrap()
        .resource
        .tags_mut()
        .unwrap()
        .remove("KubernetesCluster");
    let p = plan(&d, &a, "s").unwrap();
    assert_eq!(p.changes.len(), 1);
    assert_eq!(
        (p.changes[0].action, &p.changes[0].address),
        (Action::Update, &vpc)
    );
    assert!(render::human(&p).contains("  ~ 1 vpc\n    ~ p.k8s.local (id-"));
    assert!(render::human(&p).contains("tags.KubernetesCluster: (none) -> \"p.k8s.local\""));
    // The update starts from what was discovered.
    assert_eq!(
        p.changes[0].existing.as_ref(),
        Some(&a.resources[&vpc].resource)
    );

    // A saved plan without it (an older keelson's) is refused, not applied blind.
    let mut old = p.clone();
    old.changes[0].existing = None;
    let e = crate::ops::update::check_saved(&old, &p).unwrap_err();
    assert!(e.to_string().contains("older keelson"), "{e}");
    assert!(crate::ops::update::check_saved(&p, &p).is_ok());
}

#[test]
fn adding_a_zone_plans_exactly_the_new_resources() {
    let two = desired(&ZONES[..2]);
    let three = desired(&ZONES);
    let p = plan(&three, &applied(&two), "s").unwrap();
    // Subnet CIDRs of existing zones are unchanged only if the split did not move;
    // from 2 to 3 zones the kops split stays at /18s, so this is a pure addition.
    let created: BTreeSet<&Address> = p
        .changes
        .iter()
        .filter(|c| c.action == Action::Create)
        .map(|c| &c.address)
        .collect();
    let expected: BTreeSet<&Address> = three
        .resources
        .keys()
        .filter(|a| !two.resources.contains_key(*a))
        .collect();
    assert_eq!(created, expected);
    // Besides, only the API load balancer changes: it spans the new utility subnet.
    let others: Vec<String> = p
        .changes
        .iter()
        .filter(|c| c.action != Action::Create)
        .map(|c| format!("{:?} {}", c.action, c.address))
        .collect();
    assert_eq!(others, ["Update load_balancer.api-p-k8s-local"]);
    assert_eq!(
        p.summary,
        Summary {
            add: expected.len(),
            change: 1,
            destroy: 0
        }
    );
    // And back: removing the zone plans exactly those deletions.
    let p = plan(&two, &applied(&three), "s").unwrap();
    let deleted: BTreeSet<&Address> = p
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| &c.address)
        .collect();
    assert_eq!(deleted, expected);
    assert_eq!(p.summary.change, 1, "the API load balancer leaves the zone");
}

#[test]
fn a_vpc_cidr_change_is_refused_with_the_fix() {
    let d = desired(&ZONES);
    let mut c = cluster(&ZONES);
    c.spec.network_cidr = "10.1.0.0/16".parse().unwrap();
    for s in &mut c.spec.subnets {
        s.cidr = None;
    }
    let err = plan(&d, &applied(&d), "s").map(|_| ()).and_then(|_| {
        let mut moved = d.clone();
        let vpc = Address::new(Kind::Vpc, "p.k8s.local");
        if let Resource::Vpc(v) = &mut moved.resources.get_mut(&vpc).unwrap().resource {
            v.cidr = "10.1.0.0/16".parse().unwrap();
        }
        plan(&moved, &applied(&d), "s").map(|_| ())
    });
    let msg = err.unwrap_err().to_string();
    assert!(
        msg.contains("vpc.p.k8s.local: cidr cannot change from 172.20.0.0/16 to 10.1.0.0/16"),
        "{msg}"
    );
    assert!(msg.contains("create a new cluster"), "{msg}");
}

#[test]
fn a_failed_nat_is_replaced_and_its_route_repointed() {
    let d = desired(&ZONES);
    let mut a = applied(&d);
    let nat = Address::new(Kind::NatGateway, "us-east-1b.p.k8s.local");
    a.resources.get_mut(&nat).unwrap().state = Some("failed".into());
    let p = plan(&d, &a, "s").unwrap();
    let actions: Vec<(Action, String)> = p
        .changes
        .iter()
        .map(|c| (c.action, c.address.to_string()))
        .collect();
    assert_eq!(
        actions,
        [
            (
                Action::Replace,
                "nat_gateway.us-east-1b.p.k8s.local".to_string()
            ),
            (
                Action::Update,
                "route.private-us-east-1b.p.k8s.local:0.0.0.0/0".to_string()
            ),
        ]
    );
    assert_eq!(
        p.changes[0].reason.as_deref(),
        Some("the existing one is failed")
    );
}

#[test]
fn only_owned_leftovers_and_duplicates_are_deleted() {
    let d = desired(&ZONES);
    let mut a = applied(&d);
    let stray = |name: &str, owned: bool, id: &str| ActualResource {
        id: id.into(),
        resource: Resource::NatGateway(NatGateway {
            name: name.into(),
            subnet: Address::new(Kind::Subnet, "x"),
            elastic_ip: Address::new(Kind::ElasticIp, "x"),
            tags: Default::default(),
        }),
        owned,
        state: None,
    };
    a.insert(stray("old.p.k8s.local", true, "nat-old"));
    a.insert(stray("theirs", false, "nat-theirs"));
    a.insert(stray("us-east-1a.p.k8s.local", true, "nat-dup"));
    let p = plan(&d, &a, "s").unwrap();
    let deleted: Vec<(&str, Option<&str>)> = p
        .changes
        .iter()
        .map(|c| (c.id.as_deref().unwrap(), c.reason.as_deref()))
        .collect();
    assert_eq!(
        deleted,
        [
            ("nat-old", None),
            (
                "nat-dup",
                Some("a duplicate of nat_gateway.us-east-1a.p.k8s.local")
            )
        ]
    );
    assert!(p.changes.iter().all(|c| c.action == Action::Delete));
}

#[test]
fn the_json_view_has_the_documented_fields() {
    let d = desired(&ZONES[..1]);
    let p = plan(&d, &Actual::default(), "s").unwrap();
    let v: Value = serde_json::from_str(&render::json(&p)).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["summary"]["add"], d.resources.len());
    let c = &v["changes"][0];
    let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "address", "kind", "name", "action", "before", "after", "reason"
        ]
    );
    assert_eq!(c["address"], "vpc.p.k8s.local");
    assert_eq!(c["action"], "create");
}

#[test]
fn a_saved_plan_round_trips() {
    let d = desired(&ZONES);
    let p = plan(&d, &Actual::default(), "s").unwrap();
    let back: Plan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p);
}

/// Saved plans carry the cloud fingerprint: it stays the hash of one line per
/// resource (address, id, JSON) and per duplicate, however it is computed, and
/// any field change moves it.
#[test]
fn the_cloud_fingerprint_hashes_one_line_per_resource() {
    let mut a = applied(&desired(&ZONES));
    let dup = a.resources.values().next().unwrap().clone();
    a.duplicates.push(ActualResource {
        id: "id-dup".into(),
        ..dup
    });
    let mut text = String::new();
    for (addr, r) in &a.resources {
        let json = serde_json::to_string(&r.resource).unwrap();
        text.push_str(&format!("{addr} {} {json}\n", r.id));
    }
    text.push_str("dup id-dup\n");
    assert_eq!(a.fingerprint(), hex(&Sha256::digest(text.as_bytes())));

    let before = a.fingerprint();
    let vpc = a
        .resources
        .values_mut()
        .find(|r| r.resource.kind() == Kind::Vpc)
        .unwrap();
    if let Resource::Vpc(v) = &mut vpc.resource {
        v.enable_dns_hostnames = !v.enable_dns_hostnames;
    }
    assert_ne!(a.fingerprint(), before);
}

proptest::proptest! {
    // Whatever part of the cluster exists, the plan creates exactly the rest and
    // deletes nothing; applying it leaves nothing to do.
    #[test]
    fn partial_clouds_converge(mask in proptest::collection::vec(proptest::bool::ANY, 40)) {
        let d = desired(&ZONES);
        let full = applied(&d);
        let mut partial = Actual::default();
        for (i, (a, r)) in full.resources.iter().enumerate() {
            if mask[i % mask.len()] {
                partial.resources.insert(a.clone(), r.clone());
            }
        }
        let p = plan(&d, &partial, "s").unwrap();
        proptest::prop_assert!(p.changes.iter().all(|c| c.action == Action::Create));
        proptest::prop_assert_eq!(p.changes.len(), d.resources.len() - partial.resources.len());
        let mut after = partial.clone();
        for c in &p.changes {
            after.insert(ActualResource { id: format!("new-{}", c.address), resource: c.desired.clone().unwrap().resource, owned: true, state: None });
        }
        proptest::prop_assert!(plan(&d, &after, "s").unwrap().is_empty());
    }
}

/// A load balancer's subnets listed in another order (as terraform's provider
/// sends a set) are no change; another member is.
#[test]
fn set_valued_references_compare_as_sets() {
    let d = desired(&["us-east-1a", "us-east-1b", "us-east-1c"]);
    let mut a = applied(&d);
    let subnets = |a: &mut Actual, f: fn(&mut Vec<Address>)| {
        for r in a.resources.values_mut() {
            if let model::Resource::LoadBalancer(l) = &mut r.resource
                && l.subnets.len() > 1
            {
                f(&mut l.subnets);
            }
        }
    };
    subnets(&mut a, |s| s.reverse());
    assert!(plan(&d, &a, "s").unwrap().is_empty());
    subnets(&mut a, |s| {
        s.pop();
    });
    let p = plan(&d, &a, "s").unwrap();
    assert_eq!(p.summary.change, 1, "{:?}", p.changes);
}
