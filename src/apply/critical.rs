//! The critical path: the lower bound on an apply's time, from the plan alone.
//! It is the longest chain of the executor's dependency graph ([`schedule`]),
//! each step costing AWS's time for it as `crate::aws::timing` models it (the
//! middle of each span: the calls' latencies, the pending states a step waits
//! out, the eventual-consistency windows a dependent must sit out). With
//! unbounded parallelism and no time lost to retries, an apply takes exactly
//! this long; `scripts/bench` compares the measured time against it.
//!
//! Per step, in AWS seconds from the moment it may start:
//! - `created`: its calls, in sequence (and a create's own follow-up calls on
//!   the id it just got, which wait for it to be visible, `kind::once_visible`);
//! - `done`: `created` plus the wait the step itself makes (a NAT gateway
//!   `pending`, `deleting`);
//! - what its dependents wait for: its `done`, or its `created` for what may
//!   use it pending ([`usable_pending`]: a route to a NAT gateway); an EC2
//!   call naming a new EC2 id waits until that id is visible
//!   ([`timing::INVISIBLE`] after the create call answered, which a create
//!   with follow-ups on its id has waited out itself); an Auto Scaling group waits until
//!   the instance profile its launch template names has propagated
//!   ([`timing::PROFILE_PROPAGATION`] after it was made).
//!
//! Pure and synchronous, like the planner.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Scheduled, Step, schedule, usable_pending};
use crate::aws::timing::{self, Span};
use crate::model::{Address, Kind};
use crate::plan::{Action, Plan};

/// What one step costs at AWS, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Cost {
    /// Until its create (or update, or delete) call has answered, follow-ups included.
    pub created: f64,
    /// The wait after that, until the step is done (a NAT gateway `pending`).
    pub settle: f64,
    /// After the step, how long others still cannot use what it made (an
    /// instance profile not yet seen by Auto Scaling).
    pub propagation: f64,
}

/// One step on the path, with its start and end from the apply's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub address: Address,
    pub action: Action,
    pub start: Duration,
    pub end: Duration,
}

/// The longest chain, first step first, and its length.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CriticalPath {
    pub total: Duration,
    pub chain: Vec<Link>,
    /// Every step's start and end in the ideal run (by address), for the
    /// timings report.
    pub steps: BTreeMap<Address, (Duration, Duration)>,
}

impl CriticalPath {
    /// `4m12s (vpc -> subnet -> nat_gateway -> route)`: the kinds along it.
    pub fn describe(&self) -> String {
        let mut kinds: Vec<&str> = Vec::new();
        for l in &self.chain {
            let k = l.address.kind.as_str();
            if kinds.last() != Some(&k) {
                kinds.push(k);
            }
        }
        format!("{} ({})", human(self.total), kinds.join(" -> "))
    }

    /// Whether `a` is on the path.
    pub fn contains(&self, a: &Address) -> bool {
        self.chain.iter().any(|l| &l.address == a)
    }
}

/// `4m12s`, `52.3s`, `850ms`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 {
        let whole = s.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else if s >= 1.0 {
        format!("{s:.1}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn call(service: &str) -> f64 {
    timing::latency(service).mid()
}

const EC2: &str = "ec2";
const IAM: &str = "iam";
const ELB: &str = "elasticloadbalancing";
const ASG: &str = "autoscaling";
const R53: &str = "route53";

/// The kinds made through the EC2 API, whose calls AWS refuses while an id
/// they name is not yet visible.
fn ec2_api(k: Kind) -> bool {
    matches!(
        k,
        Kind::Vpc
            | Kind::DhcpOptions
            | Kind::InternetGateway
            | Kind::Subnet
            | Kind::RouteTable
            | Kind::ElasticIp
            | Kind::NatGateway
            | Kind::Route
            | Kind::RouteTableAssociation
            | Kind::SecurityGroup
            | Kind::SecurityGroupRule
            | Kind::KeyPair
            | Kind::LaunchTemplate
            | Kind::Volume
    )
}

/// The kinds whose new ids are invisible for a while ([`timing::INVISIBLE`]),
/// as the test clock models them.
fn invisible_at_first(k: Kind) -> bool {
    matches!(
        k,
        Kind::Vpc
            | Kind::DhcpOptions
            | Kind::InternetGateway
            | Kind::Subnet
            | Kind::RouteTable
            | Kind::ElasticIp
            | Kind::NatGateway
            | Kind::SecurityGroup
            | Kind::LaunchTemplate
    )
}

/// AWS's time for a step, from `crate::aws::timing` (the middle of each span).
pub fn model_cost(kind: Kind, action: Action) -> Cost {
    let invisible = timing::INVISIBLE.mid();
    let mid = |s: Span| s.mid();
    let created = match (kind, action) {
        (_, Action::Delete) => match kind {
            Kind::IamRole | Kind::IamRolePolicy => call(IAM),
            // Removed from its role, then deleted.
            Kind::InstanceProfile => 2.0 * call(IAM),
            Kind::LoadBalancer | Kind::TargetGroup | Kind::Listener => call(ELB),
            Kind::AutoScalingGroup => 2.0 * call(ASG),
            Kind::DnsRecord => 3.0 * call(R53),
            // Detached, then deleted.
            Kind::InternetGateway => 2.0 * call(EC2),
            _ => call(EC2),
        },
        // A create's follow-ups on the id it just got wait until it is visible.
        (Kind::Vpc, _) => 2.0 * call(EC2) + invisible,
        (Kind::InternetGateway, _) => 2.0 * call(EC2) + invisible,
        (Kind::DhcpOptions, _) => 3.0 * call(EC2) + invisible,
        (Kind::IamRole | Kind::IamRolePolicy, _) => call(IAM),
        (Kind::InstanceProfile, _) => 2.0 * call(IAM),
        (Kind::LoadBalancer | Kind::Listener, _) => call(ELB),
        // And its client-IP preservation, when the model turns it off.
        (Kind::TargetGroup, _) => 2.0 * call(ELB),
        (Kind::AutoScalingGroup, _) => call(ASG),
        // The zone's id, the balancer's name, the change.
        (Kind::DnsRecord, _) => 2.0 * call(R53) + call(ELB),
        // A version and its content tag.
        (Kind::LaunchTemplate, Action::Update) => 2.0 * call(EC2),
        _ => call(EC2),
    };
    let settle = match (kind, action) {
        (Kind::NatGateway, Action::Create | Action::Replace) => mid(timing::NAT_PENDING),
        (Kind::NatGateway, Action::Delete) => mid(timing::NAT_DELETING),
        _ => 0.0,
    };
    let propagation = match (kind, action) {
        (Kind::InstanceProfile, Action::Create | Action::Replace) => {
            mid(timing::PROFILE_PROPAGATION)
        }
        _ => 0.0,
    };
    Cost {
        created,
        settle,
        propagation,
    }
}

fn action_of(step: &Step) -> Action {
    match step {
        Step::Put(c) => c.action,
        Step::Remove { .. } => Action::Delete,
    }
}

/// The critical path of `plan`, each step costing [`model_cost`].
pub fn critical_path(plan: &Plan) -> CriticalPath {
    critical_path_with(plan, &model_cost)
}

/// The critical path with another cost per step (kind, action).
pub fn critical_path_with(plan: &Plan, cost: &dyn Fn(Kind, Action) -> Cost) -> CriticalPath {
    let per_step = |s: &Step| cost(s.address().kind, action_of(s));
    path_over(plan, &per_step, true)
}

/// The critical path over the durations one run actually took (its events,
/// stamped from the apply's start, as [`super::timings::Recorder`] keeps them):
/// each step costs the time from its first attempt to its `pending` (`created`)
/// and from there to done (`settle`), whatever AWS did in it (latency,
/// invisible ids retried, a drawn NAT `pending`, the waiter's polling).
/// AWS's consistency windows are inside those durations (a dependent started
/// early retries until it sees the id), so no gate is added for them. What it
/// leaves out is the time a ready step waited for a slot and the executor's
/// own scheduling: the run's wall time over this bound is what the executor
/// lost to serialising, at that run's AWS times. A step without events (not
/// run) costs nothing.
pub fn observed_path(plan: &Plan, events: &[(Duration, super::Event)]) -> CriticalPath {
    use super::Event;
    #[derive(Default)]
    struct Seen {
        first: Option<f64>,
        pending: Option<f64>,
        done: Option<f64>,
    }
    let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
    for (at, e) in events {
        let t = at.as_secs_f64();
        match e {
            Event::Started { address, .. } => {
                let s = seen.entry(address).or_default();
                s.first.get_or_insert(t);
            }
            Event::Pending { address, .. } => seen.entry(address).or_default().pending = Some(t),
            Event::Done { address, .. } => seen.entry(address).or_default().done = Some(t),
            Event::Ready { .. } | Event::Retrying { .. } => {}
        }
    }
    let cost = |s: &Step| {
        let Some(Seen {
            first: Some(first),
            pending,
            done: Some(done),
        }) = seen.get(s.address().to_string().as_str())
        else {
            return Cost::default();
        };
        let created = pending.unwrap_or(*done);
        Cost {
            created: (created - first).max(0.0),
            settle: (done - created).max(0.0),
            propagation: 0.0,
        }
    };
    path_over(plan, &cost, false)
}

/// Both phases, one after the other. `gates`: whether a dependent also waits
/// out the model's consistency windows (an id invisible, a profile propagating).
fn path_over(plan: &Plan, cost: &dyn Fn(&Step) -> Cost, gates: bool) -> CriticalPath {
    let mut out = CriticalPath::default();
    let mut offset = 0.0;
    for phase in schedule(plan) {
        let end = longest(&phase, offset, cost, gates, &mut out);
        offset = offset.max(end);
    }
    out.total = Duration::from_secs_f64(offset);
    out
}

/// When each step of one phase can start and ends, and the chain to the last
/// one to end; returns that end.
fn longest(
    phase: &[Scheduled],
    offset: f64,
    cost: &dyn Fn(&Step) -> Cost,
    gates: bool,
    out: &mut CriticalPath,
) -> f64 {
    #[derive(Clone, Copy)]
    struct Times {
        start: f64,
        created: f64,
        done: f64,
        /// When what it made is usable by an Auto Scaling group (an instance
        /// profile propagated, carried through the launch template).
        ready: f64,
        /// When its new EC2 id is visible to other calls: [`timing::INVISIBLE`]
        /// after its create call answered (its first call). A create with
        /// follow-ups on the id (a VPC's attributes) has already waited that
        /// out by the time it is done, so its dependents do not wait again.
        visible: f64,
    }
    let index: BTreeMap<&Address, usize> = phase
        .iter()
        .enumerate()
        .map(|(i, (s, _))| (s.address(), i))
        .collect();
    let mut times: Vec<Option<Times>> = vec![None; phase.len()];
    let mut by: Vec<Option<usize>> = vec![None; phase.len()];
    // Steps in an order where dependencies come first (the schedule has no
    // cycles; a step left over by one would be skipped, as the executor would).
    let mut left: Vec<usize> = (0..phase.len()).collect();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|&i| {
            let (step, deps) = &phase[i];
            let deps: Vec<usize> = deps.iter().filter_map(|d| index.get(d).copied()).collect();
            if deps.iter().any(|d| times[*d].is_none()) {
                return true;
            }
            let me = step.address().kind;
            let mut start = offset;
            let mut from = None;
            let mut ready_in = 0.0f64;
            for d in deps {
                let t = times[d].expect("checked above");
                let dk = phase[d].0.address().kind;
                let mut gate = if usable_pending(dk, me) {
                    t.created
                } else {
                    t.done
                };
                if gates && invisible_at_first(dk) && ec2_api(me) {
                    gate = gate.max(t.visible);
                }
                if gates && me == Kind::AutoScalingGroup {
                    gate = gate.max(t.ready);
                }
                ready_in = ready_in.max(t.ready);
                if gate > start {
                    start = gate;
                    from = Some(d);
                }
            }
            let c = cost(step);
            let created = start + c.created;
            let done = created + c.settle;
            // Only a new id is invisible (an update's or a delete's is not).
            let new_id = matches!(action_of(step), Action::Create | Action::Replace);
            let visible = if new_id && invisible_at_first(me) {
                start + call(EC2) + timing::INVISIBLE.mid()
            } else {
                start
            };
            times[i] = Some(Times {
                start,
                created,
                done,
                ready: (done + c.propagation).max(ready_in),
                visible,
            });
            by[i] = from;
            false
        });
        if left.len() == before {
            break;
        }
    }
    let mut last: Option<usize> = None;
    for (i, t) in times.iter().enumerate() {
        let Some(t) = t else { continue };
        out.steps.insert(
            phase[i].0.address().clone(),
            (
                Duration::from_secs_f64(t.start),
                Duration::from_secs_f64(t.done),
            ),
        );
        if last.is_none_or(|l| times[l].expect("set").done < t.done) {
            last = Some(i);
        }
    }
    let Some(end) = last else { return offset };
    let mut chain = Vec::new();
    let mut at = Some(end);
    while let Some(i) = at {
        let t = times[i].expect("set");
        chain.push(Link {
            address: phase[i].0.address().clone(),
            action: action_of(&phase[i].0),
            start: Duration::from_secs_f64(t.start),
            end: Duration::from_secs_f64(t.done),
        });
        at = by[i];
    }
    chain.reverse();
    out.chain.extend(chain);
    times[end].expect("set").done
}

#[cfg(test)]
mod tests;
