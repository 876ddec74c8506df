//! The critical path of the reference cluster, against AWS's figures.

use super::*;
use crate::apply::tests::{applied, desired};
use crate::plan::{Actual, plan};

fn first_apply() -> Plan {
    plan(&desired(), &Actual::default(), "s").unwrap()
}

fn close(a: Duration, b: f64) -> bool {
    (a.as_secs_f64() - b).abs() < 1e-6
}

#[test]
fn the_first_apply_of_the_reference_cluster_waits_on_a_nat_gateway() {
    let p = first_apply();
    let cp = critical_path(&p);
    let kinds: Vec<&str> = cp.chain.iter().map(|l| l.address.kind.as_str()).collect();
    assert_eq!(kinds, ["vpc", "subnet", "nat_gateway"], "{cp:#?}");
    // The VPC (create, then its attributes once it is visible), the subnet
    // right after (the VPC's attributes waited out its invisibility), the NAT
    // gateway once the subnet is visible, then its `pending`.
    let (ec2, invisible) = (timing::LATENCY_EC2.mid(), timing::INVISIBLE.mid());
    let vpc_created = 2.0 * ec2 + invisible;
    let subnet_created = vpc_created + ec2;
    let nat = (subnet_created + invisible) + ec2 + timing::NAT_PENDING.mid();
    assert!(close(cp.total, nat), "{} vs {nat}", cp.total.as_secs_f64());
    assert_eq!(cp.chain.last().unwrap().end, cp.total);
    assert!(
        cp.describe().starts_with("1m49s")
            && cp.describe().ends_with("(vpc -> subnet -> nat_gateway)"),
        "{}",
        cp.describe()
    );
    // Every step is in the ideal run, and none ends after the path.
    assert_eq!(cp.steps.len(), p.changes.len());
    assert!(cp.steps.values().all(|(s, e)| s <= e && *e <= cp.total));
}

#[test]
fn routes_start_while_their_nat_gateway_is_pending_and_groups_wait_for_profiles() {
    let p = first_apply();
    let cp = critical_path(&p);
    let nat = cp
        .steps
        .iter()
        .find(|(a, _)| a.kind == Kind::NatGateway)
        .map(|(_, t)| *t)
        .unwrap();
    let to_nat: Vec<&Address> = p
        .changes
        .iter()
        .filter(|c| {
            c.kind == Kind::Route
                && c.desired
                    .as_ref()
                    .is_some_and(|d| d.resource.deps().iter().any(|a| a.kind == Kind::NatGateway))
        })
        .map(|c| &c.address)
        .collect();
    let routes: Vec<_> = cp
        .steps
        .iter()
        .filter(|(a, _)| to_nat.contains(a))
        .collect();
    assert!(!routes.is_empty());
    // A route to a NAT gateway is made while the gateway is pending.
    assert!(
        routes.iter().all(|(_, (_, end))| *end < nat.1),
        "{routes:?} vs {nat:?}"
    );
    // An Auto Scaling group starts only once its profile has propagated.
    let profile_end = cp
        .steps
        .iter()
        .filter(|(a, _)| a.kind == Kind::InstanceProfile)
        .map(|(_, (_, e))| *e)
        .min()
        .unwrap();
    let asg_start = cp
        .steps
        .iter()
        .filter(|(a, _)| a.kind == Kind::AutoScalingGroup)
        .map(|(_, (s, _))| *s)
        .min()
        .unwrap();
    assert!(
        asg_start.as_secs_f64()
            >= profile_end.as_secs_f64() + timing::PROFILE_PROPAGATION.mid() - 1e-6,
        "{asg_start:?} vs {profile_end:?}"
    );
}

#[test]
fn a_no_op_plan_has_no_path_and_a_delete_runs_after_nothing() {
    let d = desired();
    let actual = applied(&d);
    let none = critical_path(&plan(&d, &actual, "s").unwrap());
    assert_eq!(none.total, Duration::ZERO);
    assert!(none.chain.is_empty());

    // A delete: children first; the NAT gateway's `deleting` is waited out
    // before its subnet and address go, so it is on the path.
    let nothing = crate::model::Desired {
        cluster: d.cluster.clone(),
        region: d.region.clone(),
        resources: Default::default(),
    };
    let cp = critical_path(&plan(&nothing, &actual, "s").unwrap());
    assert!(
        cp.chain.iter().any(|l| l.address.kind == Kind::NatGateway),
        "{cp:#?}"
    );
    assert!(cp.total.as_secs_f64() > timing::NAT_DELETING.mid());
}

#[test]
fn a_custom_cost_counts_every_step_of_the_chain() {
    let p = first_apply();
    // One second a step and no waits of its own (the visibility windows of
    // new EC2 ids still gate EC2 dependents): a second a link at least.
    let cp = critical_path_with(&p, &|_, _| Cost {
        created: 1.0,
        ..Cost::default()
    });
    assert!(cp.total.as_secs_f64() >= cp.chain.len() as f64, "{cp:#?}");
    assert_eq!(cp.chain.last().unwrap().end, cp.total);
    for w in cp.chain.windows(2) {
        assert!(w[0].end <= w[1].start);
    }
}

#[test]
fn the_observed_path_costs_what_each_step_took_and_leaves_out_slot_waits() {
    use crate::apply::Event;
    let p = first_apply();
    let deps = |a: &Address| -> Vec<Address> {
        p.changes
            .iter()
            .find(|c| &c.address == a)
            .and_then(|c| c.desired.as_ref())
            .map(|d| d.resource.deps().into_iter().cloned().collect())
            .unwrap_or_default()
    };
    let nat = p
        .changes
        .iter()
        .find(|c| c.kind == Kind::NatGateway)
        .unwrap()
        .address
        .clone();
    let subnet = deps(&nat)
        .into_iter()
        .find(|a| a.kind == Kind::Subnet)
        .unwrap();
    let vpc = deps(&subnet)
        .into_iter()
        .find(|a| a.kind == Kind::Vpc)
        .unwrap();
    let route = p
        .changes
        .iter()
        .find(|c| c.kind == Kind::Route && deps(&c.address).contains(&nat))
        .unwrap()
        .address
        .clone();
    let at = |s: f64| Duration::from_secs_f64(s);
    let started = |a: &Address| Event::Started {
        address: a.to_string(),
        action: Action::Create,
        attempt: 1,
    };
    let done = |a: &Address| Event::Done {
        address: a.to_string(),
        action: Action::Create,
        id: "x".into(),
        done: 0,
        total: 0,
    };
    // The VPC takes 1 s; the subnet is ready at 1 s but waits 4 s for a
    // slot, then retries once (1 s in all); the NAT gateway's create takes
    // 1 s, then it is pending 93 s; the route goes on while it is pending.
    let events = vec![
        (at(0.0), started(&vpc)),
        (at(1.0), done(&vpc)),
        (
            at(1.0),
            Event::Ready {
                address: subnet.to_string(),
            },
        ),
        (at(5.0), started(&subnet)),
        (
            at(5.5),
            Event::Retrying {
                address: subnet.to_string(),
                error: "not yet".into(),
                code: None,
                attempt: 1,
            },
        ),
        (at(6.0), done(&subnet)),
        (at(6.0), started(&nat)),
        (
            at(7.0),
            Event::Pending {
                address: nat.to_string(),
                id: "nat-1".into(),
            },
        ),
        (at(7.5), started(&route)),
        (at(8.0), done(&route)),
        (at(100.0), done(&nat)),
    ];
    let cp = observed_path(&p, &events);
    // 1 + 1 + (1 + 93): the 4 s for a slot are the executor's, not AWS's.
    assert!(close(cp.total, 96.0), "{cp:#?}");
    let chain: Vec<&Address> = cp.chain.iter().map(|l| &l.address).collect();
    assert_eq!(chain, [&vpc, &subnet, &nat]);
    // The route starts on the pending gateway, as it did.
    let (start, end) = cp.steps[&route];
    assert!(close(start, 3.0) && close(end, 3.5), "{start:?} {end:?}");
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(human(Duration::from_secs(252)), "4m12s");
    assert_eq!(human(Duration::from_millis(52_340)), "52.3s");
    assert_eq!(human(Duration::from_millis(850)), "850ms");
}
