//! The order of the executor's steps, which AWS enforces and the emulator does
//! not: children before parents on the way out, and for resources known by
//! their name, the old one gone before the new one is made.

use std::collections::BTreeMap;

use super::*;
use crate::model::{self, Desired};
use crate::plan::{Actual, ActualResource, plan};
use crate::spec::defaults::{NewCluster, new_cluster};
use crate::spec::{NatMode, TopologyKind};

const IMAGE: &str = "ami-0123456789abcdef0";

/// The full footprint: 3 zones, private, bastion, NAT per zone, SSH key.
pub(super) fn desired() -> Desired {
    let (c, groups) = new_cluster(&NewCluster {
        name: "o.k8s.local".into(),
        zones: ["us-east-1a", "us-east-1b", "us-east-1c"]
            .map(String::from)
            .to_vec(),
        topology: TopologyKind::Private,
        bastion: true,
        nat: NatMode::PerZone,
        image: Some(IMAGE.into()),
        ..Default::default()
    })
    .unwrap();
    let key = crate::spec::ssh_key::SshPublicKey::parse(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJlU/LYUVmNa5ryLb+i/gjjrF0cnQumo/6n217TlW2IJ t@k",
    )
    .unwrap();
    model::build(&model::Inputs {
        cluster: &c,
        groups: &groups,
        ssh_key: Some(&key),
        images: &BTreeMap::from([(IMAGE.to_string(), IMAGE.to_string())]),
        node_agent: &model::instances::NodeAgent {
            sha256: "0".repeat(64),
        },
    })
    .unwrap()
}

pub(super) fn applied(d: &Desired) -> Actual {
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

/// One serial run of the schedule: each phase's steps in waves of those whose
/// prerequisites are done. Panics on a cycle.
fn serial(s: &[Vec<Scheduled>; 2]) -> Vec<String> {
    let mut order = Vec::new();
    for phase in s {
        let mut done: BTreeSet<&Address> = BTreeSet::new();
        let mut left: Vec<&Scheduled> = phase.iter().collect();
        while !left.is_empty() {
            let ready: Vec<&Scheduled> = left
                .iter()
                .filter(|(_, deps)| deps.iter().all(|d| done.contains(d)))
                .copied()
                .collect();
            assert!(!ready.is_empty(), "a cycle among {:?}", left.len());
            for (step, _) in &ready {
                done.insert(step.address());
                order.push(label(step));
            }
            left.retain(|(step, _)| !done.contains(step.address()));
        }
    }
    order
}

fn label(s: &Step) -> String {
    match s {
        Step::Put(c) => format!("put {}", c.address),
        Step::Remove { address, .. } => format!("remove {address}"),
    }
}

fn position(order: &[String], step: &str) -> usize {
    order
        .iter()
        .position(|s| s == step)
        .unwrap_or_else(|| panic!("{step} is not in the schedule: {order:#?}"))
}

fn before(order: &[String], first: &str, then: &str) {
    assert!(
        position(order, first) < position(order, then),
        "{first} must come before {then}"
    );
}

#[test]
fn deleting_a_cluster_removes_children_before_what_they_use() {
    let d = desired();
    let actual = applied(&d);
    let nothing = Desired {
        cluster: d.cluster.clone(),
        region: d.region.clone(),
        resources: Default::default(),
    };
    let p = plan(&nothing, &actual, "s").unwrap();
    assert_eq!(p.changes.len(), d.resources.len());
    let s = schedule(&p);
    assert!(s[0].is_empty(), "a delete is all phase 2");
    let order = serial(&s);
    assert_eq!(order.len(), d.resources.len());

    // Every resource goes after everything that refers to it.
    let mut pairs = 0;
    for r in actual.resources.values() {
        for dep in r.resource.deps() {
            if actual.resources.contains_key(dep) {
                before(
                    &order,
                    &format!("remove {}", r.resource.address()),
                    &format!("remove {dep}"),
                );
                pairs += 1;
            }
        }
    }
    assert!(pairs > 100, "{pairs}");

    // The orders AWS insists on, spelled out.
    let n = "o.k8s.local";
    let kinds_of = |k: Kind| -> Vec<String> {
        actual
            .resources
            .keys()
            .filter(|a| a.kind == k)
            .map(|a| format!("remove {a}"))
            .collect()
    };
    for nat in kinds_of(Kind::NatGateway) {
        let zone = nat.trim_start_matches("remove nat_gateway.");
        before(&order, &nat, &format!("remove elastic_ip.{zone}"));
    }
    let igw = format!("remove internet_gateway.{n}");
    for k in [
        Kind::NatGateway,
        Kind::ElasticIp,
        Kind::LoadBalancer,
        Kind::AutoScalingGroup,
    ] {
        for x in kinds_of(k) {
            before(&order, &x, &igw);
        }
    }
    for rule in kinds_of(Kind::SecurityGroupRule) {
        for sg in kinds_of(Kind::SecurityGroup) {
            before(&order, &rule, &sg);
        }
    }
    before(
        &order,
        &format!("remove autoscaling_group.nodes-us-east-1a.{n}"),
        &format!("remove launch_template.nodes-us-east-1a.{n}"),
    );
    before(
        &order,
        &format!("remove launch_template.nodes-us-east-1a.{n}"),
        &format!("remove instance_profile.nodes.{n}"),
    );
    before(
        &order,
        &format!("remove instance_profile.nodes.{n}"),
        &format!("remove iam_role.nodes.{n}"),
    );
    for x in order.iter().filter(|s| !s.starts_with("remove vpc.")) {
        if !x.contains("key_pair") && !x.contains("iam_") && !x.contains("instance_profile") {
            before(&order, x, &format!("remove vpc.{n}"));
        }
    }
}

#[test]
fn a_security_group_known_by_name_is_removed_before_it_is_made_again() {
    let d = desired();
    let mut actual = applied(&d);
    let sg = Address::new(Kind::SecurityGroup, "masters.o.k8s.local");
    match &mut actual.resources.get_mut(&sg).unwrap().resource {
        Resource::SecurityGroup(g) => g.description = "an old description".into(),
        _ => unreachable!(),
    }
    let p = plan(&d, &actual, "s").unwrap();
    let replaced: Vec<String> = p
        .changes
        .iter()
        .filter(|c| c.action == Action::Replace)
        .map(|c| c.address.to_string())
        .collect();
    assert!(replaced.contains(&sg.to_string()), "{replaced:?}");
    let s = schedule(&p);
    let order = serial(&s);
    let phase1: Vec<String> = s[0].iter().map(|(st, _)| label(st)).collect();

    for r in &replaced {
        let kind = r.split('.').next().unwrap();
        let (old, new) = (format!("remove {r}#old"), format!("put {r}"));
        assert!(phase1.contains(&new), "{new}");
        if ["security_group", "launch_template", "autoscaling_group"].contains(&kind)
            || kind == "security_group_rule"
        {
            // Known by name (or in one with a name): the old is gone first.
            assert!(phase1.contains(&old), "{old} runs in phase 1");
            before(&order, &old, &new);
        }
    }
    // The group's old rules and the templates using it go before it does, and the
    // new ones come after the new group.
    let old_sg = format!("remove {sg}#old");
    let new_sg = format!("put {sg}");
    let mut rules = 0;
    for c in p
        .changes
        .iter()
        .filter(|c| c.action == Action::Replace && c.kind != Kind::SecurityGroup)
    {
        let refers = c
            .existing
            .as_ref()
            .unwrap()
            .deps()
            .into_iter()
            .any(|a| *a == sg);
        if refers {
            before(&order, &format!("remove {}#old", c.address), &old_sg);
            before(&order, &new_sg, &format!("put {}", c.address));
            rules += 1;
        }
    }
    assert!(rules >= 5, "{rules} dependents of the group");
}

#[test]
fn a_failed_nat_gateway_is_made_again_before_the_old_one_goes() {
    let d = desired();
    let mut actual = applied(&d);
    let nat = Address::new(Kind::NatGateway, "us-east-1b.o.k8s.local");
    actual.resources.get_mut(&nat).unwrap().state = Some("failed".into());
    let p = plan(&d, &actual, "s").unwrap();
    let s = schedule(&p);
    let order = serial(&s);
    // Not known by name: the route moves to the new gateway, then the old goes.
    assert_eq!(
        order,
        [
            format!("put {nat}"),
            "put route.private-us-east-1b.o.k8s.local:0.0.0.0/0".to_string(),
            format!("remove {nat}#old"),
        ]
    );
    assert_eq!(s[1].len(), 1, "the old half is phase 2");
}

#[test]
fn errors_are_sorted_into_what_a_retry_can_fix() {
    let e = |code: &str| AwsError::Call {
        operation: "X",
        code: Some(code.into()),
        message: format!("{code}: m"),
    };
    for c in [
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "SlowDown",
        "ServiceUnavailable",
    ] {
        assert_eq!(classify(&e(c)), Some(Retry::Busy), "{c}");
    }
    for c in ["DependencyViolation", "ResourceInUse", "DeleteConflict"] {
        assert_eq!(classify(&e(c)), Some(Retry::InUse), "{c}");
    }
    assert_eq!(classify(&e("InvalidVpcID.NotFound")), Some(Retry::NotYet));
    for c in [
        "UnauthorizedOperation",
        "AccessDenied",
        "VpcLimitExceeded",
        "InvalidParameterValue",
    ] {
        assert_eq!(classify(&e(c)), None, "{c}");
    }
    assert_eq!(classify(&AwsError::Other("x".into())), None);
}

#[test]
fn only_aws_words_for_an_unpropagated_instance_profile_are_retried() {
    let e = |code: &str, message: &str| AwsError::Call {
        operation: "X",
        code: Some(code.into()),
        message: format!("{code}: {message}"),
    };
    // As Auto Scaling and EC2 answer, and terraform's AWS provider retries.
    for (code, message) in [
        (
            "ValidationError",
            "You must use a valid fully-formed launch template. Value (nodes.c.k8s.local) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
        ),
        (
            "ValidationError",
            "Invalid IamInstanceProfile: nodes.c.k8s.local",
        ),
        (
            "InvalidParameterValue",
            "Value (nodes.c.k8s.local) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
        ),
        (
            "InvalidParameterValue",
            "Value (nodes.c.k8s.local) for parameter iamInstanceProfile.name is invalid. The specified instance profile has no associated IAM Roles",
        ),
    ] {
        assert_eq!(
            classify(&e(code, message)),
            Some(Retry::Propagating),
            "{code}: {message}"
        );
    }
    // Any other invalid parameter is final, even from the same calls.
    for (code, message) in [
        (
            "ValidationError",
            "Max bound, 1, must be greater than or equal to min bound, 2",
        ),
        (
            "ValidationError",
            "You must use a valid fully-formed launch template. The requested configuration is currently not supported.",
        ),
        (
            "InvalidParameterValue",
            "Invalid value 't9.huge' for InstanceType.",
        ),
        // The right words under another code are not a propagation delay.
        ("AccessDenied", "Invalid IAM Instance Profile name"),
    ] {
        assert_eq!(classify(&e(code, message)), None, "{code}: {message}");
    }
}

#[tokio::test]
async fn a_pause_is_shared_and_only_ever_extended() {
    let pacer = Pacer::default();
    pacer.ready().await; // no pause: returns at once
    let hour = Duration::from_secs(3600);
    pacer.pause(hour);
    let long = pacer.until.lock().unwrap().unwrap();
    assert!(long >= tokio::time::Instant::now() + hour - Duration::from_secs(60));
    // A shorter pause from another step does not cut the longer one short.
    pacer.pause(Duration::from_secs(1));
    assert_eq!(pacer.until.lock().unwrap().unwrap(), long);
}
