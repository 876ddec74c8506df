//! The executor: runs a plan's changes over their dependency graph, in parallel
//! up to a bound, retrying throttling and eventual-consistency errors with
//! backoff and jitter, and reporting progress as events.
//!
//! Creates and updates run first, each after the changes it depends on; then
//! deletes (and the old halves of replacements), each after the deletes of what
//! refers to it. Whatever succeeded stays done: the next run plans the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::aws::AwsError;
use crate::aws::kind::{Clients, Ids, kind_of};
use crate::model::{Address, Resource};
use crate::plan::{Action, Change, Plan};

/// How many changes run at once: enough to overlap waits, few enough not to be throttled.
pub const PARALLELISM: usize = 8;
/// How long one step may keep retrying.
pub const STEP_DEADLINE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        address: String,
        action: Action,
    },
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
        attempt: u32,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{failed} of {total} changes failed ({done} done; rerun to continue):\n{}", errors.join("\n"))]
    Failed {
        total: usize,
        done: usize,
        failed: usize,
        errors: Vec<String>,
    },
}

/// Errors worth retrying: throttling, and the "not found" that AWS's eventual
/// consistency returns for a resource created a moment ago, and "still in use"
/// while a dependent goes away.
pub fn retryable(e: &AwsError) -> bool {
    let Some(code) = e.code() else { return false };
    matches!(
        code,
        "RequestLimitExceeded"
            | "Throttling"
            | "ThrottlingException"
            | "ServiceUnavailable"
            | "Unavailable"
            | "InternalError"
            | "DependencyViolation"
            | "InvalidDhcpOptionID.NotFound"
    ) || (code.starts_with("Invalid") && code.ends_with(".NotFound"))
}

/// Cheap jitter without a random-number crate: the clock's nanoseconds.
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_nanos(u64::from(nanos) % max.as_nanos().max(1) as u64)
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
}

impl Ids for Shared {
    fn id(&self, a: &Address) -> Result<String, AwsError> {
        self.ids.lock().unwrap().id(a)
    }
}

enum Step {
    Put(Box<Change>),
    Remove {
        address: Address,
        id: String,
        existing: Box<Resource>,
    },
}

impl Step {
    fn address(&self) -> &Address {
        match self {
            Step::Put(c) => &c.address,
            Step::Remove { address, .. } => address,
        }
    }
}

pub async fn apply(
    plan: &Plan,
    aws: &Clients,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<BTreeMap<Address, String>, ApplyError> {
    let shared = Arc::new(Shared {
        ids: Mutex::new(plan.ids.clone()),
    });
    let total = plan.changes.len();
    let mut done = 0usize;
    let mut errors = Vec::new();

    // Phase 1: creates, updates and the new halves of replacements.
    let puts: Vec<Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .cloned()
        .collect();
    let pending: BTreeSet<Address> = puts.iter().map(|c| c.address.clone()).collect();
    let steps: Vec<(Step, Vec<Address>)> = puts
        .into_iter()
        .map(|c| {
            let deps = c
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
            (Step::Put(Box::new(c)), deps)
        })
        .collect();
    run(
        steps,
        plan,
        aws,
        &shared,
        on_event,
        total,
        &mut done,
        &mut errors,
    )
    .await;

    // Phase 2: deletes, and the old halves of replacements, children first.
    let removes: Vec<(Address, String, Resource)> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        .filter_map(|c| {
            Some((
                if c.action == Action::Replace {
                    Address::new(c.kind, format!("{}#old", c.name))
                } else {
                    c.address.clone()
                },
                c.id.clone()?,
                c.existing.clone()?,
            ))
        })
        .collect();
    if errors.is_empty() {
        let by_addr: BTreeMap<Address, Address> = removes
            .iter()
            .map(|(a, _, r)| (r.address(), a.clone()))
            .collect();
        let steps: Vec<(Step, Vec<Address>)> = removes
            .iter()
            .map(|(address, id, existing)| {
                // Wait for the removal of everything that refers to this one.
                let blockers = removes
                    .iter()
                    .filter(|(_, _, other)| other.deps().contains(&&existing.address()))
                    .filter_map(|(_, _, other)| by_addr.get(&other.address()).cloned())
                    .filter(|b| b != address)
                    .collect();
                (
                    Step::Remove {
                        address: address.clone(),
                        id: id.clone(),
                        existing: Box::new(existing.clone()),
                    },
                    blockers,
                )
            })
            .collect();
        run(
            steps,
            plan,
            aws,
            &shared,
            on_event,
            total,
            &mut done,
            &mut errors,
        )
        .await;
    } else if !removes.is_empty() {
        errors.push(format!(
            "{} deletions were not attempted because creates failed",
            removes.len()
        ));
    }
    if errors.is_empty() {
        Ok(shared.ids.lock().unwrap().clone())
    } else {
        Err(ApplyError::Failed {
            total,
            done,
            failed: errors.len(),
            errors,
        })
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    steps: Vec<(Step, Vec<Address>)>,
    plan: &Plan,
    aws: &Clients,
    shared: &Arc<Shared>,
    on_event: &(dyn Fn(Event) + Sync),
    total: usize,
    done: &mut usize,
    errors: &mut Vec<String>,
) {
    let mut waiting: Vec<(Step, Vec<Address>)> = steps;
    let mut finished: BTreeSet<Address> = BTreeSet::new();
    let mut failed: BTreeSet<Address> = BTreeSet::new();
    let mut running = tokio::task::JoinSet::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    loop {
        // Start whatever is ready, up to the bound; skip what depends on a failure.
        let mut i = 0;
        while i < waiting.len() {
            if let Some(bad) = waiting[i].1.iter().find(|d| failed.contains(*d)).cloned() {
                let (step, _) = waiting.remove(i);
                errors.push(format!(
                    "{}: not attempted, because {bad} failed",
                    step.address()
                ));
                failed.insert(step.address().clone());
                continue;
            }
            if running.len() < PARALLELISM && waiting[i].1.iter().all(|d| finished.contains(d)) {
                let (step, _) = waiting.remove(i);
                let (aws, shared, cluster, tx) = (
                    aws.clone(),
                    shared.clone(),
                    plan.cluster.clone(),
                    tx.clone(),
                );
                running.spawn(async move {
                    let address = step.address().clone();
                    let result = execute(&step, &aws, &shared, &cluster, &tx).await;
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
                        *done += 1;
                        let action = match &step { Step::Put(c) => c.action, Step::Remove { .. } => Action::Delete };
                        on_event(Event::Done { address: address.to_string(), action, id, done: *done, total });
                        finished.insert(address);
                    }
                    Err(e) => {
                        errors.push(format!("{address}: {e}"));
                        failed.insert(address);
                    }
                }
            }
            Some(ev) = rx.recv() => on_event(ev),
        }
    }
    while let Ok(ev) = rx.try_recv() {
        on_event(ev);
    }
    for (step, _) in waiting {
        errors.push(format!(
            "{}: not attempted (its dependencies never finished)",
            step.address()
        ));
    }
}

async fn execute(
    step: &Step,
    aws: &Clients,
    shared: &Arc<Shared>,
    cluster: &str,
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
) -> Result<String, AwsError> {
    let deadline = Instant::now() + STEP_DEADLINE;
    let mut delay = Duration::from_millis(250);
    let mut attempt = 0;
    if let Step::Put(c) = step {
        let _ = tx.send(Event::Started {
            address: c.address.to_string(),
            action: c.action,
        });
    }
    loop {
        attempt += 1;
        let result = match step {
            Step::Put(c) => put(c, aws, shared, cluster).await,
            Step::Remove { id, existing, .. } => kind_of(existing.kind())
                .delete(aws, id, existing, shared.as_ref())
                .await
                .map(|_| id.clone()),
        };
        match result {
            Err(e) if retryable(&e) && Instant::now() + delay < deadline => {
                let _ = tx.send(Event::Retrying {
                    address: step.address().to_string(),
                    error: e.to_string(),
                    attempt,
                });
                tokio::time::sleep(delay + jitter(delay)).await;
                delay = (delay * 2).min(Duration::from_secs(20));
            }
            other => return other,
        }
    }
}

async fn put(
    c: &Change,
    aws: &Clients,
    shared: &Arc<Shared>,
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
            k.update(aws, &id, &d.resource, shared.as_ref())
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
