//! `rolling-update cluster`: replace the instances whose `keelson.dev/revision`
//! tag differs from their launch template's, group by group, without downtime.
//!
//! All progress is read back from the cloud and the cluster on every step (the
//! revision tags, instances detached from their ASG, nodes we cordoned), never
//! kept in memory alone: an interrupted run is simply run again and continues.

pub mod etcd;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::aws::kind::Clients;
use crate::aws::{AwsError, call_error};
use crate::kube::{self, Eviction, KubeError};
use crate::spec::{InstanceGroup, IntOrPercent, Role, RollingUpdate};
use crate::validate::cloud::{CloudGroup, inventory};
use crate::validate::{Target, ValidateError};

/// Marks the nodes a roll cordoned, so that a later run can tell them from
/// nodes an operator cordoned, and uncordon them if they are not replaced.
pub const CORDONED_BY: &str = "keelson.dev/cordoned-by-rolling-update";

/// The taint put on every out-of-date node of a group before its roll starts,
/// so that pods evicted from the first nodes prefer nodes that are staying.
/// kops' own key, not a keelson one: users coming from kops already tolerate,
/// alert on or configure their descheduler for it, and it means exactly this.
pub const SCHEDULED_FOR_UPDATE: &str = "kops.k8s.io/scheduled-for-update";
pub const SCHEDULED_FOR_UPDATE_EFFECT: &str = "PreferNoSchedule";

#[derive(Debug, thiserror::Error)]
pub enum RollingError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error(
        "draining node {node} timed out after {timeout:?}: {pods}; the node was uncordoned and its instance {instance} left running. \
         Fix what blocks the eviction (often a PodDisruptionBudget) or raise --drain-timeout, then run rolling-update again: it continues from here"
    )]
    DrainTimeout {
        node: String,
        instance: String,
        timeout: Duration,
        pods: String,
    },
    #[error(
        "instance group {group}: {what} within --validation-timeout {timeout:?}; run rolling-update again to continue, or check the group with `keelson validate cluster`"
    )]
    Timeout {
        group: String,
        what: String,
        timeout: Duration,
    },
    #[error(
        "the cluster did not validate after replacing instances of {group}: {message}; run `keelson validate cluster` to see why, or pass --fail-on-validate-error=false"
    )]
    Invalid { group: String, message: String },
    #[error(
        "instance group {group}: no master was replaced, because {reason} (waited {timeout:?}). Wait for etcd to be whole (`keelson validate cluster`; on a master, `journalctl -u keelson-agent`), then run rolling-update again; --cloudonly skips this check, for recovering a control plane already lost"
    )]
    EtcdNotReady {
        group: String,
        reason: String,
        timeout: Duration,
    },
    #[error(
        "instance group {group}: the node agent on the masters took no pre-replacement etcd backup within {timeout:?}, so no master was replaced; check keelson-agent on the masters (`journalctl -u keelson-agent`), then run rolling-update again"
    )]
    NoBackup { group: String, timeout: Duration },
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(
        "instance group {group}: spec.rollingUpdate.{field} {value} {problem}; {fix} (`keelson edit ig {group}`, or the cluster's spec.rollingUpdate default)"
    )]
    Settings {
        group: String,
        field: &'static str,
        value: String,
        problem: String,
        fix: &'static str,
    },
}

#[derive(Debug, Clone)]
pub struct Options {
    pub force: bool,
    pub cloud_only: bool,
    /// Only these groups (empty: all).
    pub groups: Vec<String>,
    /// Only these roles (empty: all).
    pub roles: Vec<Role>,
    pub bastion_interval: Duration,
    pub master_interval: Duration,
    pub node_interval: Duration,
    pub fail_on_validate_error: bool,
    pub drain_timeout: Duration,
    pub validation_timeout: Duration,
    pub validate_count: u32,
}

/// How many instances of a group one step replaces (kops' maxSurge and maxUnavailable, resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Detached first: the group launches their replacements before they go.
    pub surge: usize,
    /// Terminated in place: capacity is short by this many until replacements join.
    pub unavailable: usize,
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.surge, self.unavailable) {
            (0, 1) => write!(f, "one at a time, without surge"),
            (0, u) => write!(f, "{u} at a time, without surge"),
            (s, 0) => write!(f, "surging {s} at a time"),
            (s, u) => write!(f, "surging {s} and {u} more unavailable at a time"),
        }
    }
}

/// Resolves a group's settings against its ASG's desired capacity, as kops:
/// maxSurge defaults to 1 and a percentage rounds up; maxUnavailable defaults to
/// 0 with surge and 1 without, and a percentage rounds down but not below 1 (so
/// that `10%` of a small group still makes progress). Masters never surge and go
/// one at a time whatever the spec says: etcd keeps quorum only so. Pure.
pub fn budget(
    group: &str,
    role: Role,
    ru: &RollingUpdate,
    desired: usize,
) -> Result<Budget, RollingError> {
    if role == Role::Master {
        return Ok(Budget {
            surge: 0,
            unavailable: 1,
        });
    }
    let bad = |field: &'static str, v: &IntOrPercent| RollingError::Settings {
        group: group.to_string(),
        field,
        value: v.to_string(),
        problem: "is not a count or a percentage".into(),
        fix: "use a number such as 1, or a percentage such as 25%",
    };
    let surge = match &ru.max_surge {
        None => 1,
        Some(v) => v.scaled(desired, true).ok_or_else(|| bad("maxSurge", v))?,
    };
    let unavailable = match &ru.max_unavailable {
        None => usize::from(surge == 0),
        Some(v @ IntOrPercent::Int(_)) => v.scaled(desired, false).unwrap_or(0),
        Some(v) if v.is_zero() => 0,
        Some(v) => v
            .scaled(desired, false)
            .ok_or_else(|| bad("maxUnavailable", v))?
            .max(1),
    };
    if surge == 0 && unavailable == 0 {
        return Err(RollingError::Settings {
            group: group.to_string(),
            field: "maxUnavailable",
            value: ru
                .max_unavailable
                .as_ref()
                .map_or("0".into(), |v| v.to_string()),
            problem: format!(
                "with maxSurge {} resolves to 0 of {desired} instances: nothing would ever be replaced",
                ru.max_surge.as_ref().map_or("1".into(), |v| v.to_string())
            ),
            fix: "set maxUnavailable (or maxSurge) to at least 1",
        });
    }
    Ok(Budget { surge, unavailable })
}

/// One step of a group's roll.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// To detach now (the group then launches their replacements).
    pub detach: Vec<String>,
    /// Detached, by this step or an earlier (perhaps interrupted) run: drained and
    /// terminated once their replacements have joined.
    pub surged: Vec<String>,
    /// Terminated while still members: the group replaces them afterwards.
    pub in_place: Vec<String>,
}

/// The next step: instances already detached, topped up to the surge by detaching
/// more, plus up to `unavailable` members replaced in place. Non-empty whenever
/// `todo` is (a budget has surge or unavailable > 0). Pure.
pub fn next_batch(todo: &[String], detached: &[String], b: Budget) -> Batch {
    let surged_before: Vec<String> = todo
        .iter()
        .filter(|id| detached.contains(id))
        .cloned()
        .collect();
    let mut rest = todo.iter().filter(|id| !detached.contains(id)).cloned();
    let detach: Vec<String> = rest
        .by_ref()
        .take(b.surge.saturating_sub(surged_before.len()))
        .collect();
    let in_place: Vec<String> = rest.take(b.unavailable).collect();
    Batch {
        surged: surged_before.into_iter().chain(detach.clone()).collect(),
        detach,
        in_place,
    }
}

/// One row of the kops table.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub name: String,
    pub role: String,
    pub status: String,
    pub need_update: usize,
    pub ready: usize,
    pub min: i32,
    pub target: i32,
    pub max: i32,
    pub nodes: usize,
}

fn outdated(cg: &CloudGroup, force_ids: Option<&BTreeSet<String>>) -> Vec<String> {
    cg.instances
        .iter()
        .filter(|i| !i.leaving() || i.detached())
        .filter(|i| {
            i.detached() || cg.needs_update(i) || force_ids.is_some_and(|ids| ids.contains(&i.id))
        })
        .map(|i| i.id.clone())
        .collect()
}

/// The table rows. Pure.
pub fn rows(cloud: &[CloudGroup], nodes: &[Value], force: bool) -> Vec<Row> {
    cloud
        .iter()
        .filter(|cg| cg.exists)
        .map(|cg| {
            let all: BTreeSet<String> = cg.members().map(|i| i.id.clone()).collect();
            let todo = outdated(cg, force.then_some(&all));
            let need = todo.len();
            // Members that stay: up to date and in the group.
            let ready = cg.members().filter(|i| !todo.contains(&i.id)).count();
            let joined = cg
                .instances
                .iter()
                .filter(|i| nodes.iter().any(|n| kube::instance_id(n) == Some(&i.id)))
                .count();
            Row {
                name: cg.name.clone(),
                role: cg.role.as_str().to_string(),
                status: if need > 0 { "NeedsUpdate" } else { "Ready" }.into(),
                need_update: need,
                ready,
                min: cg.min,
                target: cg.desired,
                max: cg.max,
                nodes: joined,
            }
        })
        .collect()
}

/// The groups to roll, in kops' order: bastions, masters, nodes (each by name).
pub fn selected<'a>(groups: &'a [InstanceGroup], o: &Options) -> Vec<&'a InstanceGroup> {
    let mut v: Vec<&InstanceGroup> = groups
        .iter()
        .filter(|g| o.groups.is_empty() || o.groups.iter().any(|n| n == g.name()))
        .filter(|g| o.roles.is_empty() || o.roles.contains(&g.spec.role))
        .collect();
    v.sort_by(|a, b| (a.spec.role, a.name()).cmp(&(b.spec.role, b.name())));
    v
}

pub struct Roller<'a> {
    pub cluster: &'a str,
    pub groups: &'a [InstanceGroup],
    /// The cluster's `spec.rollingUpdate`: the groups' defaults.
    pub defaults: Option<&'a RollingUpdate>,
    pub clients: &'a Clients,
    /// Where the node agent publishes etcd's state and takes backups.
    pub store: &'a crate::state::StateStore,
    pub kube: Option<&'a kube::Client>,
    pub options: &'a Options,
    pub progress: &'a (dyn Fn(String) + Sync),
}

const POLL: Duration = Duration::from_secs(2);

impl Roller<'_> {
    /// Rolls every selected group that needs it. Returns how many instances were replaced.
    pub async fn run(&self) -> Result<usize, RollingError> {
        let o = self.options;
        let initial = inventory(self.clients, self.cluster, self.groups).await?;
        self.clean_leftovers(&initial).await?;
        let mut replaced = 0;
        for g in selected(self.groups, o) {
            let Some(cg) = initial.iter().find(|c| c.name == g.name() && c.exists) else {
                continue;
            };
            // --force replaces the instances that exist now, once each.
            let force_ids: Option<BTreeSet<String>> = o
                .force
                .then(|| cg.instances.iter().map(|i| i.id.clone()).collect());
            if outdated(cg, force_ids.as_ref()).is_empty() {
                continue;
            }
            replaced += self.roll_group(g, force_ids.as_ref()).await?;
        }
        Ok(replaced)
    }

    async fn group(&self, g: &InstanceGroup) -> Result<CloudGroup, RollingError> {
        let all = inventory(self.clients, self.cluster, std::slice::from_ref(g)).await?;
        Ok(all
            .into_iter()
            .next()
            .expect("one group asked, one answered"))
    }

    fn interval(&self, role: Role) -> Duration {
        match role {
            Role::Bastion => self.options.bastion_interval,
            Role::Master => self.options.master_interval,
            Role::Node => self.options.node_interval,
        }
    }

    async fn roll_group(
        &self,
        g: &InstanceGroup,
        force_ids: Option<&BTreeSet<String>>,
    ) -> Result<usize, RollingError> {
        let name = g.name();
        let settings = RollingUpdate::effective(g.spec.rolling_update.as_ref(), self.defaults);
        let mut replaced = 0;
        let mut announced = false;
        // As kops: a group starts only on a valid cluster.
        self.validate(name).await?;
        loop {
            let cg = self.group(g).await?;
            let todo = outdated(&cg, force_ids);
            if todo.is_empty() {
                (self.progress)(format!("{name}: done, {replaced} instance(s) replaced"));
                return Ok(replaced);
            }
            let budget = budget(name, g.spec.role, &settings, cg.desired.max(0) as usize)?;
            if !announced {
                (self.progress)(format!(
                    "{name}: {} instance(s) to replace, {budget}",
                    todo.len()
                ));
                announced = true;
            }
            // Every step, not only the first: a rerun, or a node that joined
            // late, is tainted too; nodes already tainted are left alone.
            if let Some(kube) = self.kube {
                self.taint_outdated(kube, name, &todo).await?;
            }
            let detached: Vec<String> = cg
                .instances
                .iter()
                .filter(|i| i.detached())
                .map(|i| i.id.clone())
                .collect();
            let batch = next_batch(&todo, &detached, budget);
            if g.spec.role == Role::Master && self.kube.is_some() {
                self.etcd_gate(name).await?;
            }
            if !batch.detach.is_empty() {
                self.clients
                    .autoscaling
                    .detach_instances()
                    .auto_scaling_group_name(&cg.asg)
                    .set_instance_ids(Some(batch.detach.clone()))
                    // The ASG launches a replacement for each: that is the surge.
                    .should_decrement_desired_capacity(false)
                    .send()
                    .await
                    .map_err(|e| call_error("DetachInstances", &e))?;
                (self.progress)(format!(
                    "{name}: detached {}; the group launches replacements",
                    batch.detach.join(", ")
                ));
            }
            if !batch.surged.is_empty() {
                self.wait_for_group(g).await?;
            }
            let all: Vec<&String> = batch.surged.iter().chain(&batch.in_place).collect();
            if all.len() > 1 {
                (self.progress)(format!(
                    "{name}: replacing {} at once",
                    all.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(kube) = self.kube {
                self.drain_batch(kube, &all).await?;
            }
            for id in &batch.surged {
                self.clients
                    .ec2
                    .terminate_instances()
                    .instance_ids(id)
                    .send()
                    .await
                    .map_err(|e| call_error("TerminateInstances", &e))?;
                (self.progress)(format!("{name}: terminated {id}"));
                replaced += 1;
            }
            for id in &batch.in_place {
                self.clients
                    .autoscaling
                    .terminate_instance_in_auto_scaling_group()
                    .instance_id(id)
                    .should_decrement_desired_capacity(false)
                    .send()
                    .await
                    .map_err(|e| call_error("TerminateInstanceInAutoScalingGroup", &e))?;
                (self.progress)(format!("{name}: terminated {id}"));
                replaced += 1;
            }
            if !batch.in_place.is_empty() {
                self.wait_for_group(g).await?;
            }
            tokio::time::sleep(self.interval(g.spec.role)).await;
            self.validate(name).await?;
        }
    }

    /// Before a master goes: etcd whole (see [`etcd::not_ready`]), waited for up
    /// to --validation-timeout, then a backup the agent takes on request.
    async fn etcd_gate(&self, group: &str) -> Result<(), RollingError> {
        let timeout = self.options.validation_timeout;
        let deadline = Instant::now() + timeout;
        let status_key = crate::node::status_key(self.cluster);
        loop {
            let masters = crate::node::masters(&self.clients.ec2, self.cluster).await?;
            let status = self
                .store
                .backend()
                .get(&status_key)
                .await?
                .and_then(|b| serde_json::from_slice(&b).ok());
            let now = crate::node::backup::now_secs();
            match etcd::not_ready(status.as_ref(), &masters, now) {
                None => break,
                Some(reason) if Instant::now() > deadline => {
                    return Err(RollingError::EtcdNotReady {
                        group: group.to_string(),
                        reason,
                        timeout,
                    });
                }
                Some(reason) => {
                    (self.progress)(format!("{group}: waiting for etcd: {reason}"));
                    tokio::time::sleep(POLL.max(timeout / 30).min(Duration::from_secs(15))).await;
                }
            }
        }
        let deadline = Instant::now() + timeout;
        let asked = crate::node::backup::now_secs();
        self.store
            .backend()
            .put(
                &etcd::request_key(self.cluster),
                serde_json::to_vec(&serde_json::json!({"requestedAt": asked}))
                    .expect("a request serializes"),
            )
            .await?;
        (self.progress)(format!("{group}: asked the node agent for an etcd backup"));
        loop {
            let taken = crate::node::backup::list(self.store, self.cluster)
                .await?
                .into_iter()
                .rev()
                .find(|b| b.reason == "pre-replacement" && b.taken_at >= asked);
            if let Some(b) = taken {
                (self.progress)(format!("{group}: etcd backed up as {}", b.name));
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RollingError::NoBackup {
                    group: group.to_string(),
                    timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Cordons every node of the batch before draining any, so that pods evicted
    /// from one do not land on another that goes in the same step. If a drain
    /// fails, the whole batch is uncordoned: none of it was replaced.
    async fn drain_batch(
        &self,
        kube: &kube::Client,
        batch: &[&String],
    ) -> Result<(), RollingError> {
        let mut nodes = Vec::new();
        for id in batch {
            if let Some(node) = self.node_of(kube, id).await? {
                self.set_cordon(kube, &node, true).await?;
                nodes.push((node, id.as_str()));
            }
        }
        for (node, id) in &nodes {
            if let Err(e) = self.drain(kube, node, id).await {
                for (other, _) in &nodes {
                    self.set_cordon(kube, other, false).await?;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Taints the nodes of these instances that do not carry the taint yet.
    async fn taint_outdated(
        &self,
        kube: &kube::Client,
        group: &str,
        todo: &[String],
    ) -> Result<(), RollingError> {
        let mut tainted = Vec::new();
        for n in kube.nodes().await? {
            if kube::instance_id(&n).is_some_and(|id| todo.iter().any(|t| t == id))
                && kube
                    .set_taint(&n, SCHEDULED_FOR_UPDATE, SCHEDULED_FOR_UPDATE_EFFECT, true)
                    .await?
            {
                tainted.push(kube::name(&n).to_string());
            }
        }
        if !tainted.is_empty() {
            (self.progress)(format!(
                "{group}: tainted {} with {SCHEDULED_FOR_UPDATE}:{SCHEDULED_FOR_UPDATE_EFFECT}",
                tainted.join(", ")
            ));
        }
        Ok(())
    }

    /// Waits until the group has its desired number of members and every
    /// up-to-date member has joined as a Ready node.
    async fn wait_for_group(&self, g: &InstanceGroup) -> Result<(), RollingError> {
        let deadline = Instant::now() + self.options.validation_timeout;
        loop {
            let cg = self.group(g).await?;
            let fresh: Vec<&str> = cg
                .members()
                .filter(|i| !cg.needs_update(i))
                .map(|i| i.id.as_str())
                .collect();
            let mut missing = String::new();
            if (cg.members().count() as i32) < cg.desired {
                missing = format!(
                    "the group has {} of {} instances",
                    cg.members().count(),
                    cg.desired
                );
            } else if let Some(kube) = self.kube.filter(|_| g.spec.role != Role::Bastion) {
                let nodes = kube.nodes().await?;
                for id in &fresh {
                    let ready = nodes
                        .iter()
                        .any(|n| kube::instance_id(n) == Some(id) && kube::node_ready(n));
                    if !ready {
                        missing = format!("instance {id} has not joined as a Ready node");
                        break;
                    }
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RollingError::Timeout {
                    group: g.name().to_string(),
                    what: missing,
                    timeout: self.options.validation_timeout,
                });
            }
            tokio::time::sleep(POLL.min(self.options.validation_timeout / 4)).await;
        }
    }

    async fn validate(&self, group: &str) -> Result<(), RollingError> {
        let Some(kube) = self.kube else {
            return Ok(());
        };
        let target = Target {
            cluster: self.cluster,
            groups: self.groups,
            clients: self.clients,
            kube,
            // Addon workloads do not gate a roll: nodes do.
            bundles: &[],
        };
        let report = target
            .until(
                Some(self.options.validation_timeout),
                self.options.validate_count,
                POLL.min(self.options.validation_timeout / 4),
                &|_, _| {},
            )
            .await?;
        if report.valid {
            return Ok(());
        }
        let message = report
            .failures
            .iter()
            .map(|f| f.message.clone())
            .collect::<Vec<_>>()
            .join("; ");
        if self.options.fail_on_validate_error {
            return Err(RollingError::Invalid {
                group: group.to_string(),
                message,
            });
        }
        (self.progress)(format!(
            "{group}: the cluster does not validate ({message}); continuing as --fail-on-validate-error=false asks"
        ));
        Ok(())
    }

    async fn node_of(&self, kube: &kube::Client, id: &str) -> Result<Option<String>, RollingError> {
        Ok(kube
            .nodes()
            .await?
            .iter()
            .find(|n| kube::instance_id(n) == Some(id))
            .map(|n| kube::name(n).to_string()))
    }

    /// Undoes what an earlier, interrupted run did to nodes whose instances are
    /// not going to be replaced after all (the spec was reverted, or they were
    /// replaced otherwise): uncordons those it cordoned and removes the taint.
    async fn clean_leftovers(&self, cloud: &[CloudGroup]) -> Result<(), RollingError> {
        let Some(kube) = self.kube else {
            return Ok(());
        };
        for n in kube.nodes().await? {
            let cordoned = !n["metadata"]["annotations"][CORDONED_BY].is_null();
            let tainted = kube::has_taint(&n, SCHEDULED_FOR_UPDATE, SCHEDULED_FOR_UPDATE_EFFECT);
            if !cordoned && !tainted {
                continue;
            }
            let id = kube::instance_id(&n).unwrap_or("");
            let doomed = cloud
                .iter()
                .any(|cg| outdated(cg, None).iter().any(|i| i == id));
            if doomed {
                continue;
            }
            if cordoned {
                self.set_cordon(kube, kube::name(&n), false).await?;
                (self.progress)(format!(
                    "uncordoned {}, left cordoned by an interrupted rolling-update",
                    kube::name(&n)
                ));
            }
            if tainted {
                // The taint patch must see the node as it is now, uncordoned.
                let fresh = kube.node(kube::name(&n)).await?;
                if let Some(fresh) = fresh {
                    kube.set_taint(
                        &fresh,
                        SCHEDULED_FOR_UPDATE,
                        SCHEDULED_FOR_UPDATE_EFFECT,
                        false,
                    )
                    .await?;
                }
                (self.progress)(format!(
                    "removed the {SCHEDULED_FOR_UPDATE} taint from {}: it is up to date",
                    kube::name(&n)
                ));
            }
        }
        Ok(())
    }

    async fn set_cordon(
        &self,
        kube: &kube::Client,
        node: &str,
        on: bool,
    ) -> Result<(), RollingError> {
        kube.cordon(node, on, (CORDONED_BY, on.then_some("true")))
            .await?;
        Ok(())
    }

    /// Evicts every pod of a cordoned node but DaemonSet and mirror pods,
    /// retrying PodDisruptionBudget refusals until --drain-timeout.
    async fn drain(
        &self,
        kube: &kube::Client,
        node: &str,
        instance: &str,
    ) -> Result<(), RollingError> {
        (self.progress)(format!("draining node {node} ({instance})"));
        let deadline = Instant::now() + self.options.drain_timeout;
        let mut blocked: Vec<String>;
        loop {
            let pods: Vec<Value> = kube
                .pods(Some(node))
                .await?
                .into_iter()
                .filter(evictable)
                .collect();
            if pods.is_empty() {
                return Ok(());
            }
            blocked = Vec::new();
            for p in &pods {
                let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
                let pod = kube::name(p);
                match kube.evict(ns, pod).await? {
                    Eviction::Evicted | Eviction::Gone => {}
                    Eviction::Blocked(why) => blocked.push(format!("pod {ns}/{pod}: {why}")),
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            // As kubectl drain: a refused eviction is tried again after 5 s.
            let wait = if blocked.is_empty() {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(5)
            };
            tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
        // The caller uncordons it: its instance is not replaced this time.
        Err(RollingError::DrainTimeout {
            node: node.to_string(),
            instance: instance.to_string(),
            timeout: self.options.drain_timeout,
            pods: if blocked.is_empty() {
                "pods were still terminating".into()
            } else {
                blocked.join("; ")
            },
        })
    }
}

/// Drain skips DaemonSet pods (their controller ignores cordons), mirror pods
/// (the kubelet owns them) and pods that already finished.
fn evictable(p: &Value) -> bool {
    let m = &p["metadata"];
    let daemon = m["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|o| o["kind"] == "DaemonSet" && o["controller"] == true);
    let mirror = !m["annotations"]["kubernetes.io/config.mirror"].is_null();
    let finished = matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    !daemon && !mirror && !finished
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::cloud::CloudInstance;
    use serde_json::json;

    fn inst(id: &str, rev: &str, lifecycle: &str) -> CloudInstance {
        CloudInstance {
            id: id.into(),
            lifecycle: lifecycle.into(),
            revision: Some(rev.into()),
        }
    }

    #[test]
    fn rows_count_outdated_and_detached_instances() {
        let cg = CloudGroup {
            name: "nodes".into(),
            role: Role::Node,
            asg: "nodes.c".into(),
            exists: true,
            min: 2,
            max: 2,
            desired: 2,
            revision: Some("new".into()),
            instances: vec![
                inst("i-1", "old", "InService"),
                inst("i-2", "new", "InService"),
                inst("i-3", "old", "Detached"),
            ],
        };
        let nodes = vec![json!({"spec": {"providerID": "aws:///z/i-1"}})];
        let r = &rows(std::slice::from_ref(&cg), &nodes, false)[0];
        assert_eq!(
            (r.status.as_str(), r.need_update, r.ready, r.target, r.nodes),
            ("NeedsUpdate", 2, 1, 2, 1)
        );
        assert_eq!(
            rows(std::slice::from_ref(&cg), &nodes, true)[0].need_update,
            3
        );
        let mut done = cg.clone();
        done.instances = vec![
            inst("i-4", "new", "InService"),
            inst("i-2", "new", "InService"),
        ];
        assert_eq!(rows(&[done], &nodes, false)[0].status, "Ready");
    }

    fn ru(surge: Option<IntOrPercent>, unavailable: Option<IntOrPercent>) -> RollingUpdate {
        RollingUpdate {
            max_surge: surge,
            max_unavailable: unavailable,
        }
    }
    use IntOrPercent::{Int, Percent};
    fn pct(s: &str) -> Option<IntOrPercent> {
        Some(Percent(s.into()))
    }
    fn b(surge: usize, unavailable: usize) -> Budget {
        Budget { surge, unavailable }
    }

    #[test]
    fn budgets_resolve_as_kops() {
        let node = |r: &RollingUpdate, n| budget("nodes", Role::Node, r, n).unwrap();
        // Defaults: surge 1; no unavailability with surge, one without.
        assert_eq!(node(&ru(None, None), 3), b(1, 0));
        assert_eq!(node(&ru(Some(Int(0)), None), 3), b(0, 1));
        assert_eq!(node(&ru(Some(Int(0)), Some(Int(2))), 3), b(0, 2));
        assert_eq!(node(&ru(Some(Int(2)), Some(Int(1))), 3), b(2, 1));
        // Percentages of the desired capacity: surge rounds up, unavailable down...
        assert_eq!(node(&ru(pct("50%"), None), 3), b(2, 0));
        assert_eq!(node(&ru(Some(Int(0)), pct("50%")), 3), b(0, 1));
        assert_eq!(node(&ru(Some(Int(0)), pct("70%")), 10), b(0, 7));
        // ...but not below 1, unless it is 0%.
        assert_eq!(node(&ru(Some(Int(0)), pct("10%")), 3), b(0, 1));
        assert_eq!(node(&ru(None, pct("0%")), 3), b(1, 0));
        // A surge percentage that resolves to 0 brings the no-surge default.
        assert_eq!(node(&ru(pct("10%"), None), 0), b(0, 1));
        // Masters go one at a time whatever the spec says.
        let m = budget("m", Role::Master, &ru(Some(Int(3)), Some(Int(3))), 3).unwrap();
        assert_eq!(m, b(0, 1));
    }

    #[test]
    fn a_budget_that_replaces_nothing_is_an_error_naming_the_field() {
        let e = budget("nodes", Role::Node, &ru(Some(Int(0)), Some(Int(0))), 3)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("instance group nodes: spec.rollingUpdate.maxUnavailable 0 with maxSurge 0")
                && e.contains("set maxUnavailable (or maxSurge) to at least 1"),
            "{e}"
        );
        let e = budget("nodes", Role::Node, &ru(pct("0%"), pct("0%")), 3).unwrap_err();
        assert!(e.to_string().contains("maxUnavailable 0%"), "{e}");
        let e = budget("nodes", Role::Node, &ru(pct("x%"), None), 3).unwrap_err();
        assert!(
            e.to_string()
                .contains("spec.rollingUpdate.maxSurge x% is not a count"),
            "{e}"
        );
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn batches_replace_up_to_max_unavailable_in_place() {
        let todo = ids(&["i-1", "i-2", "i-3"]);
        let first = next_batch(&todo, &[], b(0, 2));
        assert_eq!(first.in_place, ids(&["i-1", "i-2"]));
        assert!(first.detach.is_empty() && first.surged.is_empty());
        assert_eq!(next_batch(&todo[2..], &[], b(0, 2)).in_place, ids(&["i-3"]));
    }

    #[test]
    fn batches_keep_what_an_interrupted_run_detached() {
        let todo = ids(&["i-1", "i-2", "i-3", "i-4"]);
        // i-3 was detached earlier: it counts against the surge, nothing more is detached.
        let batch = next_batch(&todo, &ids(&["i-3"]), b(1, 1));
        assert_eq!(
            batch,
            Batch {
                detach: vec![],
                surged: ids(&["i-3"]),
                in_place: ids(&["i-1"]),
            }
        );
        let batch = next_batch(&todo, &ids(&["i-3"]), b(2, 0));
        assert_eq!(
            (batch.detach, batch.surged),
            (ids(&["i-1"]), ids(&["i-3", "i-1"]))
        );
    }

    proptest::proptest! {
        /// Rolling a group batch by batch replaces every instance exactly once,
        /// never more than the budget at once, in ceil(n / (surge + unavailable)) steps.
        #[test]
        fn batches_replace_everything_once_within_the_budget(
            n in 0usize..40, surge in 0usize..6, unavailable in 0usize..6,
        ) {
            proptest::prop_assume!(surge + unavailable > 0);
            let budget = b(surge, unavailable);
            let mut todo: Vec<String> = (0..n).map(|i| format!("i-{i}")).collect();
            let mut replaced: Vec<String> = Vec::new();
            let mut steps = 0;
            while !todo.is_empty() {
                let batch = next_batch(&todo, &[], budget);
                proptest::prop_assert!(batch.surged.len() <= surge);
                proptest::prop_assert!(batch.in_place.len() <= unavailable);
                proptest::prop_assert_eq!(&batch.detach, &batch.surged);
                let step: Vec<String> = batch.surged.into_iter().chain(batch.in_place).collect();
                proptest::prop_assert!(!step.is_empty());
                for id in &step {
                    proptest::prop_assert!(todo.contains(id) && !replaced.contains(id));
                }
                todo.retain(|id| !step.contains(id));
                replaced.extend(step);
                steps += 1;
            }
            proptest::prop_assert_eq!(replaced.len(), n);
            proptest::prop_assert_eq!(steps, n.div_ceil(surge + unavailable));
        }
    }

    #[test]
    fn drain_skips_daemonset_mirror_and_finished_pods() {
        assert!(evictable(
            &json!({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "controller": true}]}})
        ));
        assert!(!evictable(
            &json!({"metadata": {"ownerReferences": [{"kind": "DaemonSet", "controller": true}]}})
        ));
        assert!(!evictable(
            &json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}})
        ));
        assert!(!evictable(
            &json!({"metadata": {}, "status": {"phase": "Succeeded"}})
        ));
    }
}
