//! The executor: runs a plan's changes over their dependency graph, in parallel
//! up to a bound, retrying throttling and eventual-consistency errors with
//! backoff and jitter, and reporting progress as events.
//!
//! Creates and updates run first, each after the changes it depends on; then
//! deletes (and the old halves of replacements), each after the deletes of what
//! refers to it; resources AWS knows by name are removed before they are made
//! again ([`schedule`]). Whatever succeeded stays done: the next run plans the
//! rest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::aws::AwsError;
use crate::aws::kind::{Clients, Ids, kind_of};
use crate::model::{Address, Kind, Resource};
use crate::plan::{Action, Change, Plan};

pub mod critical;
pub mod timings;

/// How many changes run at once: enough to overlap waits, few enough not to be throttled.
pub const PARALLELISM: usize = 8;
/// How long one step may keep retrying.
pub const STEP_DEADLINE: Duration = Duration::from_secs(600);
/// How long a step refused a new instance profile keeps retrying: the IAM
/// propagation timeout of terraform's AWS provider (`propagationTimeout = 2 *
/// time.Minute`, internal/service/iam/wait.go), past which a profile AWS still
/// refuses is not a propagation delay but a wrong name.
pub const IAM_PROPAGATION: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Everything it depends on is done: from now on it waits only for a slot
    /// (or a pause for throttling).
    Ready { address: String },
    /// An attempt is sent (the first, or a retry).
    Started {
        address: String,
        action: Action,
        attempt: u32,
    },
    /// Created, and waited for until AWS has it ready (a NAT gateway
    /// `pending`); what may use it pending starts now ([`usable_pending`]).
    Pending { address: String, id: String },
    Done {
        address: String,
        action: Action,
        id: String,
        done: usize,
        total: usize,
    },
    Retrying {
        address: String,
        error: String,
        /// AWS's error code, when AWS answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        attempt: u32,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Each failure names the resource, the AWS operation and AWS's code and
    /// message; what was not attempted because of one is listed after them.
    #[error(
        "{} of {total} changes failed, {} not attempted ({done} done; rerun to continue):\n{}",
        failed.len(),
        skipped.len(),
        failed.iter().chain(skipped).cloned().collect::<Vec<_>>().join("\n")
    )]
    Failed {
        total: usize,
        done: usize,
        failed: Vec<String>,
        skipped: Vec<String>,
    },
}

/// Whether `dependent` may be made while `dep` is still pending at AWS (created,
/// its id known, not yet usable): a route may point at a NAT gateway that is
/// still `pending` (AWS accepts the route; traffic flows once the gateway is
/// `available`). Nothing else waits on a pending state: a DNS alias needs only
/// the load balancer's name, which its create returns (and load balancers are
/// never waited for `active`).
pub fn usable_pending(dep: Kind, dependent: Kind) -> bool {
    matches!((dep, dependent), (Kind::NatGateway, Kind::Route))
}

/// How a run went so far.
#[derive(Default)]
struct Outcome {
    done: usize,
    failed: Vec<String>,
    skipped: Vec<String>,
}

/// Why a failed request is worth another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// AWS is throttling or briefly unwell: every step pauses, not just this one.
    Busy,
    /// Something still uses the resource (a dependent on its way out): retried
    /// until the wait (`delete --wait`) runs out.
    InUse,
    /// AWS's eventual consistency: a resource created a moment ago is not yet
    /// visible to another call.
    NotYet,
    /// IAM's eventual consistency: an instance profile made a moment ago is
    /// refused by Auto Scaling or EC2 until it has propagated (seconds);
    /// retried for up to [`IAM_PROPAGATION`].
    Propagating,
}

/// Whether AWS refused an instance profile it does not see yet, in the exact
/// words terraform's AWS provider retries (tfawserr.ErrMessageContains):
/// Auto Scaling's `ValidationError` ("... Value (NAME) for parameter
/// iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name" for a
/// launch template, "Invalid IamInstanceProfile" for a launch configuration),
/// and EC2's `InvalidParameterValue` with the first, or "... has no associated
/// IAM Roles" while the profile's role has not propagated. Every other
/// `ValidationError` or `InvalidParameterValue` is a wrong parameter, final.
fn profile_not_yet_propagated(code: &str, message: &str) -> bool {
    match code {
        "ValidationError" => {
            message.contains("Invalid IAM Instance Profile")
                || message.contains("Invalid IamInstanceProfile")
        }
        "InvalidParameterValue" => {
            message.contains("Invalid IAM Instance Profile")
                || message.contains(" has no associated IAM Roles")
        }
        _ => false,
    }
}

/// What kind of retry an error calls for; `None` for errors a retry cannot fix
/// (permissions, quotas, invalid parameters), which fail the step at once.
pub fn classify(e: &AwsError) -> Option<Retry> {
    let code = e.code()?;
    if let AwsError::Call { message, .. } = e
        && profile_not_yet_propagated(code, message)
    {
        return Some(Retry::Propagating);
    }
    match code {
        // The SDK retries these itself first (aws::retry_config); they get here
        // when its attempts or its retry quota ran out.
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "ThrottledException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "PriorRequestNotComplete"
        | "SlowDown"
        | "ServiceUnavailable"
        | "Unavailable"
        | "InternalError"
        | "InternalFailure" => Some(Retry::Busy),
        "DependencyViolation"
        | "ResourceInUse"
        | "ResourceInUseException"
        | "DeleteConflict"
        | "ScalingActivityInProgress"
        | "InvalidGroup.InUse"
        | "InvalidIPAddress.InUse"
        | "VolumeInUse" => Some(Retry::InUse),
        c if c.starts_with("Invalid") && c.ends_with(".NotFound") => Some(Retry::NotYet),
        _ => None,
    }
}

/// Cheap jitter without a random-number crate: the clock's nanoseconds.
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_nanos(u64::from(nanos) % max.as_nanos().max(1) as u64)
}

/// The pause that all parallel steps share: when AWS throttles one step, the
/// others would be throttled too, so none sends until the pause is over.
/// (Per request, the SDK already backs off and draws on a shared retry quota;
/// this is for what still gets through it.)
#[derive(Default)]
pub struct Pacer {
    until: Mutex<Option<tokio::time::Instant>>,
}

impl Pacer {
    /// Waits until no pause is in force.
    async fn ready(&self) {
        loop {
            let until = *self.until.lock().unwrap();
            match until {
                Some(t) if t > tokio::time::Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }

    /// Extends the shared pause to at least `pause` from now.
    fn pause(&self, pause: Duration) {
        let t = tokio::time::Instant::now() + pause;
        let mut until = self.until.lock().unwrap();
        if until.is_none_or(|u| u < t) {
            *until = Some(t);
        }
    }
}

/// How the executor treats a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Retries of "in use" errors stop at this instant (`delete --wait`), and an
    /// attempt still running then (a waiter) is cut; without it, each step
    /// retries for up to [`STEP_DEADLINE`].
    pub until: Option<Instant>,
    /// At most this many attempts in flight (`update --parallelism`); `None`
    /// is [`PARALLELISM`], `Some(0)` unbounded.
    pub parallelism: Option<usize>,
}

impl Options {
    /// The slots the run's semaphore starts with.
    pub fn slots(&self) -> usize {
        match self.parallelism {
            None => PARALLELISM,
            Some(0) => tokio::sync::Semaphore::MAX_PERMITS,
            Some(n) => n,
        }
    }
}

/// A client token for a create: the same for the same resource of the same
/// cluster (so a retry after a crash is idempotent), different for a replacement.
pub fn client_token(cluster: &str, c: &Change) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "{cluster}\n{}\n{}",
        c.address,
        c.id.as_deref().unwrap_or("")
    ));
    crate::plan::hex(&h.finalize())[..32].to_string()
}

struct Shared {
    ids: Mutex<BTreeMap<Address, String>>,
    pacer: Pacer,
    opts: Options,
    /// The bound on attempts in flight ([`Options::slots`]). A step holds a slot
    /// only while it is attempting, never while it waits to retry: a step
    /// waiting out AWS's eventual consistency (an Auto Scaling group whose
    /// instance profile has not propagated) must not keep unrelated ready work
    /// from running.
    slots: tokio::sync::Semaphore,
}

impl Ids for Shared {
    fn id(&self, a: &Address) -> Result<String, AwsError> {
        self.ids.lock().unwrap().id(a)
    }
}

pub enum Step {
    Put(Box<Change>),
    Remove {
        address: Address,
        id: String,
        existing: Box<Resource>,
    },
}

impl Step {
    pub fn address(&self) -> &Address {
        match self {
            Step::Put(c) => &c.address,
            Step::Remove { address, .. } => address,
        }
    }
}

/// A step and the steps (by address) that must finish before it starts.
pub type Scheduled = (Step, Vec<Address>);

/// The order of a plan's steps, in two phases. Pure, so that the order AWS
/// insists on (and the emulator does not) is unit-tested here.
///
/// Phase 1: creates, updates and the new halves of replacements, each after what
/// it refers to. Replacing a resource that AWS knows by its name (a security
/// group, a load balancer, an IAM role ...) cannot create the new one first: AWS
/// refuses the duplicate name. Those old halves are removed in phase 1, before
/// their new halves, after everything being removed that refers to them (which
/// the planner replaces too, so those are removed early as well).
///
/// Phase 2 (only if phase 1 succeeded): deletes and the other old halves,
/// children first, once every new resource exists and everything re-pointed.
pub fn schedule(plan: &Plan) -> [Vec<Scheduled>; 2] {
    struct Removal {
        address: Address,
        id: String,
        existing: Resource,
        replaced: bool,
    }
    let removals: Vec<Removal> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        .filter_map(|c| {
            Some(Removal {
                address: if c.action == Action::Replace {
                    old_half(&c.address)
                } else {
                    c.address.clone()
                },
                id: c.id.clone()?,
                existing: c.existing.clone()?,
                replaced: c.action == Action::Replace,
            })
        })
        .collect();
    // Which removals run early: replaced resources known by name, and, closed
    // over "refers to", every removal that refers to one of those.
    let mut early: BTreeSet<usize> = removals
        .iter()
        .enumerate()
        .filter(|(_, r)| r.replaced && identified_by_name(r.existing.kind()))
        .map(|(i, _)| i)
        .collect();
    loop {
        let targets: BTreeSet<Address> = early
            .iter()
            .map(|i| removals[*i].existing.address())
            .collect();
        let more: Vec<usize> = removals
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                !early.contains(i) && r.existing.deps().iter().any(|d| targets.contains(*d))
            })
            .map(|(i, _)| i)
            .collect();
        if more.is_empty() {
            break;
        }
        early.extend(more);
    }
    // A removal waits for the removals (in its phase) of what refers to it.
    let blockers = |i: usize| -> Vec<Address> {
        let me = &removals[i];
        let target = me.existing.address();
        removals
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i && early.contains(j) == early.contains(&i))
            .filter(|(_, other)| {
                other.existing.deps().contains(&&target)
                    || must_go_before(other.existing.kind(), me.existing.kind())
            })
            .map(|(_, other)| other.address.clone())
            .collect()
    };
    let remove_step = |i: usize| -> Scheduled {
        let r = &removals[i];
        (
            Step::Remove {
                address: r.address.clone(),
                id: r.id.clone(),
                existing: Box::new(r.existing.clone()),
            },
            blockers(i),
        )
    };

    let early_old: BTreeSet<Address> = early
        .iter()
        .filter(|i| removals[**i].replaced)
        .map(|i| removals[*i].address.clone())
        .collect();
    let puts: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .collect();
    let pending: BTreeSet<&Address> = puts.iter().map(|c| &c.address).collect();
    let mut first: Vec<Scheduled> = puts
        .into_iter()
        .map(|c| {
            let mut deps: Vec<Address> = c
                .desired
                .as_ref()
                .map(|d| {
                    d.resource
                        .deps()
                        .into_iter()
                        .filter(|a| pending.contains(*a) && **a != c.address)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let old = old_half(&c.address);
            if early_old.contains(&old) {
                deps.push(old);
            }
            (Step::Put(Box::new(c.clone())), deps)
        })
        .collect();
    first.extend(early.iter().map(|i| remove_step(*i)));
    let second = (0..removals.len())
        .filter(|i| !early.contains(i))
        .map(remove_step)
        .collect();
    [first, second]
}

/// The address of the old half of a replacement.
fn old_half(a: &Address) -> Address {
    Address::new(a.kind, format!("{}#old", a.name))
}

/// Kinds AWS identifies by a name keelson chooses, so that two cannot coexist:
/// a security group (per VPC), IAM roles, their policies and profiles, a key
/// pair, a launch template, an auto scaling group, a load balancer, a target
/// group, a listener (per port) and a DNS record (per zone).
pub fn identified_by_name(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::SecurityGroup
            | Kind::IamRole
            | Kind::IamRolePolicy
            | Kind::InstanceProfile
            | Kind::KeyPair
            | Kind::LaunchTemplate
            | Kind::AutoScalingGroup
            | Kind::LoadBalancer
            | Kind::TargetGroup
            | Kind::Listener
            | Kind::DnsRecord
    )
}

/// Removal orders that no reference expresses: AWS does not detach an internet
/// gateway while the VPC still has public addresses mapped (NAT gateways, their
/// elastic IPs, load balancers, instances); a volume Kubernetes made is deleted
/// once the instances it may be attached to are gone.
fn must_go_before(first: Kind, then: Kind) -> bool {
    (then == Kind::InternetGateway
        && matches!(
            first,
            Kind::NatGateway
                | Kind::ElasticIp
                | Kind::LoadBalancer
                | Kind::ServiceLoadBalancer
                | Kind::AutoScalingGroup
        ))
        || (then == Kind::Volume && first == Kind::AutoScalingGroup)
}

pub async fn apply(
    plan: &Plan,
    aws: &Clients,
    opts: Options,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<BTreeMap<Address, String>, ApplyError> {
    let ctx = Arc::new(Shared {
        ids: Mutex::new(plan.ids.clone()),
        pacer: Pacer::default(),
        opts,
        slots: tokio::sync::Semaphore::new(opts.slots()),
    });
    let total = plan.changes.len();
    let mut outcome = Outcome::default();
    let [first, second] = schedule(plan);
    run(first, plan, aws, &ctx, on_event, total, &mut outcome).await;
    if outcome.failed.is_empty() && outcome.skipped.is_empty() {
        run(second, plan, aws, &ctx, on_event, total, &mut outcome).await;
    } else {
        outcome.skipped.extend(
            second
                .iter()
                .map(|(s, _)| format!("{}: not attempted, because creates failed", s.address())),
        );
    }
    if outcome.failed.is_empty() && outcome.skipped.is_empty() {
        Ok(ctx.ids.lock().unwrap().clone())
    } else {
        Err(ApplyError::Failed {
            total,
            done: outcome.done,
            failed: outcome.failed,
            skipped: outcome.skipped,
        })
    }
}

async fn run(
    steps: Vec<Scheduled>,
    plan: &Plan,
    aws: &Clients,
    shared: &Arc<Shared>,
    on_event: &(dyn Fn(Event) + Sync),
    total: usize,
    outcome: &mut Outcome,
) {
    let mut waiting: Vec<Scheduled> = steps;
    let mut finished: BTreeSet<Address> = BTreeSet::new();
    // Created and still settling at AWS ([`Event::Pending`]), by event address.
    let mut settling: BTreeSet<String> = BTreeSet::new();
    let mut failed: BTreeSet<Address> = BTreeSet::new();
    let mut running = tokio::task::JoinSet::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    // Removals resolve references with the ids as discovered: by the time an old
    // half goes, its address may already name the new resource.
    let discovered = Arc::new(plan.ids.clone());
    loop {
        // Start whatever is ready, up to the bound; skip what depends on a failure.
        let mut i = 0;
        while i < waiting.len() {
            if let Some(bad) = waiting[i].1.iter().find(|d| failed.contains(*d)).cloned() {
                let (step, _) = waiting.remove(i);
                outcome.skipped.push(format!(
                    "{}: not attempted, because {bad} failed",
                    step.address()
                ));
                failed.insert(step.address().clone());
                continue;
            }
            // Every ready step starts; `Shared::slots` bounds the attempts in flight.
            let me = waiting[i].0.address().kind;
            if waiting[i].1.iter().all(|d| {
                finished.contains(d)
                    || (usable_pending(d.kind, me) && settling.contains(&d.to_string()))
            }) {
                let (step, _) = waiting.remove(i);
                on_event(Event::Ready {
                    address: step.address().to_string(),
                });
                let (aws, shared, discovered, cluster, tx) = (
                    aws.clone(),
                    shared.clone(),
                    discovered.clone(),
                    plan.cluster.clone(),
                    tx.clone(),
                );
                running.spawn(async move {
                    let address = step.address().clone();
                    let result = execute(&step, &aws, &shared, &discovered, &cluster, &tx).await;
                    (step, address, result)
                });
                continue;
            }
            i += 1;
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some(joined) = running.join_next() => {
                let (step, address, result) = joined.expect("apply task panicked");
                match result {
                    Ok(id) => {
                        // The old half of a replacement completes no change of its own.
                        let action = match &step {
                            Step::Put(c) => c.action,
                            Step::Remove { .. } => Action::Delete,
                        };
                        if !address.name.ends_with("#old") {
                            outcome.done += 1;
                        }
                        on_event(Event::Done { address: address.to_string(), action, id, done: outcome.done, total });
                        finished.insert(address);
                    }
                    Err(e) => {
                        outcome.failed.push(format!("{address}: {e}"));
                        failed.insert(address);
                    }
                }
            }
            Some(ev) = rx.recv() => {
                if let Event::Pending { address, .. } = &ev {
                    settling.insert(address.clone());
                }
                on_event(ev)
            }
        }
    }
    while let Ok(ev) = rx.try_recv() {
        on_event(ev);
    }
    for (step, _) in waiting {
        outcome.skipped.push(format!(
            "{}: not attempted (its dependencies never finished)",
            step.address()
        ));
    }
}

/// A step that failed for good: AWS's error, and how long it was retried.
#[derive(Debug)]
struct StepError {
    error: AwsError,
    attempts: u32,
    retried_for: Option<Duration>,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)?;
        if let Some(d) = self.retried_for {
            write!(
                f,
                " (still failing after {} attempts over {}s; rerun to continue)",
                self.attempts,
                d.as_secs()
            )?;
        }
        Ok(())
    }
}

async fn execute(
    step: &Step,
    aws: &Clients,
    shared: &Arc<Shared>,
    discovered: &BTreeMap<Address, String>,
    cluster: &str,
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
) -> Result<String, StepError> {
    let started = Instant::now();
    let step_deadline = started + STEP_DEADLINE;
    let mut delay = Duration::from_millis(250);
    let mut attempt = 0;
    let mut last: Option<AwsError> = None;
    loop {
        attempt += 1;
        shared.pacer.ready().await;
        let slot = shared
            .slots
            .acquire()
            .await
            .expect("the executor's slots are never closed");
        let _ = tx.send(Event::Started {
            address: step.address().to_string(),
            action: match step {
                Step::Put(c) => c.action,
                Step::Remove { .. } => Action::Delete,
            },
            attempt,
        });
        let attempt_fut = async {
            let id = match step {
                Step::Put(c) => put(c, aws, shared, discovered, cluster).await,
                Step::Remove { id, existing, .. } => kind_of(existing.kind())
                    .delete(aws, id, existing, discovered)
                    .await
                    .map(|_| id.clone()),
            }?;
            // A wait for AWS (a NAT gateway `pending`) holds no slot, and what
            // may use the resource pending starts meanwhile.
            drop(slot);
            if let Step::Put(c) = step
                && matches!(c.action, Action::Create | Action::Replace)
                && let Some(settle) = kind_of(c.kind).settle(aws, &id)
            {
                let _ = tx.send(Event::Pending {
                    address: c.address.to_string(),
                    id: id.clone(),
                });
                settle.await?;
            }
            Ok(id)
        };
        // With a wait (`delete --wait`), no attempt outlives it: that bounds the
        // kinds' own waiters too (an ASG or NAT gateway going away), which
        // otherwise give AWS up to 10 minutes. What was cut is rediscovered and
        // finished by the next run.
        let result = match shared.opts.until {
            Some(until) => match tokio::time::timeout_at(until.into(), attempt_fut).await {
                Ok(r) => r,
                // An earlier attempt's failure says more than the cut.
                Err(_) => {
                    return Err(match last {
                        Some(error) => StepError {
                            error,
                            attempts: attempt - 1,
                            retried_for: Some(started.elapsed()),
                        },
                        None => StepError {
                            error: AwsError::Other(format!(
                                "still in progress when the wait ran out after {}s",
                                started.elapsed().as_secs()
                            )),
                            attempts: attempt,
                            retried_for: None,
                        },
                    });
                }
            },
            None => attempt_fut.await,
        };
        let e = match result {
            Ok(id) => return Ok(id),
            Err(e) => e,
        };
        let deadline = match (classify(&e), shared.opts.until) {
            (None, _) => {
                return Err(StepError {
                    error: e,
                    attempts: attempt,
                    retried_for: None,
                });
            }
            (Some(Retry::InUse), Some(until)) => until,
            (Some(Retry::Propagating), _) => step_deadline.min(started + IAM_PROPAGATION),
            _ => step_deadline,
        };
        if Instant::now() + delay >= deadline {
            return Err(StepError {
                error: e,
                attempts: attempt,
                retried_for: (attempt > 1).then(|| started.elapsed()),
            });
        }
        let _ = tx.send(Event::Retrying {
            address: step.address().to_string(),
            error: e.to_string(),
            code: e.code().map(str::to_string),
            attempt,
        });
        let pause = delay + jitter(delay);
        if classify(&e) == Some(Retry::Busy) {
            shared.pacer.pause(pause);
        } else {
            tokio::time::sleep(pause).await;
        }
        delay = (delay * 2).min(Duration::from_secs(20));
        last = Some(e);
    }
}

/// The resource as discovered, its references turned into the AWS ids they had
/// then: the live ids move on as replacements are made (a replaced target
/// group's address names the new one once it exists), what the resource held
/// does not.
fn with_discovered_ids(existing: &Resource, discovered: &BTreeMap<Address, String>) -> Resource {
    let mut r = existing.clone();
    for a in r.refs_mut() {
        if let Some(id) = discovered.get(a) {
            *a = Address::foreign(a.kind, id);
        }
    }
    r
}

async fn put(
    c: &Change,
    aws: &Clients,
    shared: &Arc<Shared>,
    discovered: &BTreeMap<Address, String>,
    cluster: &str,
) -> Result<String, AwsError> {
    let d = c.desired.as_ref().ok_or_else(|| {
        AwsError::Other(format!(
            "{}: the plan has no desired state for it",
            c.address
        ))
    })?;
    let k = kind_of(c.kind);
    let id = match c.action {
        Action::Create | Action::Replace => {
            k.create(aws, &d.resource, shared.as_ref(), &client_token(cluster, c))
                .await?
        }
        Action::Update => {
            let id =
                c.id.clone()
                    .ok_or_else(|| AwsError::Other(format!("{}: no id to update", c.address)))?;
            let existing = c.existing.as_ref().ok_or_else(|| {
                AwsError::Other(format!(
                    "{}: the plan has no discovered state for it",
                    c.address
                ))
            })?;
            let existing = with_discovered_ids(existing, discovered);
            k.update(aws, &id, &d.resource, &existing, shared.as_ref())
                .await?
                .unwrap_or(id)
        }
        Action::Delete => unreachable!("deletes run in phase 2"),
    };
    shared
        .ids
        .lock()
        .unwrap()
        .insert(c.address.clone(), id.clone());
    Ok(id)
}

#[cfg(test)]
mod tests;
