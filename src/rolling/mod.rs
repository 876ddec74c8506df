//! `rolling-update cluster`: replace the instances whose `keelson.dev/revision`
//! tag differs from their launch template's, group by group, without downtime.
//!
//! All progress is read back from the cloud and the cluster on every step (the
//! revision tags, instances detached from their ASG, nodes we cordoned), never
//! kept in memory alone: an interrupted run is simply run again and continues.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::aws::kind::Clients;
use crate::aws::{AwsError, call_error};
use crate::kube::{self, Eviction, KubeError};
use crate::spec::{InstanceGroup, IntOrPercent, Role};
use crate::validate::cloud::{CloudGroup, inventory};
use crate::validate::{Target, ValidateError};

/// Marks the nodes a roll cordoned, so that a later run can tell them from
/// nodes an operator cordoned, and uncordon them if they are not replaced.
pub const CORDONED_BY: &str = "keelson.dev/cordoned-by-rolling-update";

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

/// How many instances a group replaces at once by surging: masters never surge
/// (etcd quorum); a percentage is of the group's desired size, at least 1.
pub fn max_surge(g: &InstanceGroup, desired: i32) -> usize {
    if g.spec.role == Role::Master {
        return 0;
    }
    match g
        .spec
        .rolling_update
        .as_ref()
        .and_then(|r| r.max_surge.as_ref())
    {
        None => 1,
        Some(IntOrPercent::Int(n)) => *n as usize,
        Some(IntOrPercent::Percent(p)) => {
            let pct: usize = p.trim_end_matches('%').parse().unwrap_or(0);
            (desired.max(0) as usize * pct).div_ceil(100).max(1)
        }
    }
}

pub struct Roller<'a> {
    pub cluster: &'a str,
    pub groups: &'a [InstanceGroup],
    pub clients: &'a Clients,
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
        self.uncordon_leftovers(&initial).await?;
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
        let mut replaced = 0;
        let mut announced = false;
        loop {
            let cg = self.group(g).await?;
            let todo = outdated(&cg, force_ids);
            if todo.is_empty() {
                (self.progress)(format!("{name}: done, {replaced} instance(s) replaced"));
                return Ok(replaced);
            }
            let surge = max_surge(g, cg.desired);
            if !announced {
                (self.progress)(format!(
                    "{name}: {} instance(s) to replace, {}",
                    todo.len(),
                    if surge > 0 {
                        format!("surging {surge} at a time")
                    } else {
                        "one at a time, without surge".to_string()
                    }
                ));
                announced = true;
            }
            // The batch: instances already detached (surged earlier, perhaps by an
            // interrupted run), topped up by detaching more, or one ASG member.
            let detached: Vec<String> = cg
                .instances
                .iter()
                .filter(|i| i.detached())
                .map(|i| i.id.clone())
                .collect();
            let batch: Vec<String> = if surge > 0 {
                let more: Vec<String> = todo
                    .iter()
                    .filter(|id| !detached.contains(id))
                    .take(surge.saturating_sub(detached.len()))
                    .cloned()
                    .collect();
                if !more.is_empty() {
                    self.clients
                        .autoscaling
                        .detach_instances()
                        .auto_scaling_group_name(&cg.asg)
                        .set_instance_ids(Some(more.clone()))
                        // The ASG launches a replacement for each: that is the surge.
                        .should_decrement_desired_capacity(false)
                        .send()
                        .await
                        .map_err(|e| call_error("DetachInstances", &e))?;
                    (self.progress)(format!(
                        "{name}: detached {}; the group launches replacements",
                        more.join(", ")
                    ));
                }
                detached.into_iter().chain(more).collect()
            } else {
                vec![todo[0].clone()]
            };
            if surge > 0 {
                self.wait_for_group(g).await?;
            }
            for id in &batch {
                if let Some(kube) = self.kube
                    && let Some(node) = self.node_of(kube, id).await?
                {
                    self.drain(kube, &node, id).await?;
                }
                if surge > 0 {
                    self.clients
                        .ec2
                        .terminate_instances()
                        .instance_ids(id)
                        .send()
                        .await
                        .map_err(|e| call_error("TerminateInstances", &e))?;
                } else {
                    self.clients
                        .autoscaling
                        .terminate_instance_in_auto_scaling_group()
                        .instance_id(id)
                        .should_decrement_desired_capacity(false)
                        .send()
                        .await
                        .map_err(|e| call_error("TerminateInstanceInAutoScalingGroup", &e))?;
                }
                (self.progress)(format!("{name}: terminated {id}"));
                replaced += 1;
            }
            if surge == 0 {
                self.wait_for_group(g).await?;
            }
            tokio::time::sleep(self.interval(g.spec.role)).await;
            self.validate(name).await?;
        }
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

    /// Uncordons the nodes an earlier, interrupted run cordoned whose instances
    /// are not going to be replaced after all.
    async fn uncordon_leftovers(&self, cloud: &[CloudGroup]) -> Result<(), RollingError> {
        let Some(kube) = self.kube else {
            return Ok(());
        };
        for n in kube.nodes().await? {
            if n["metadata"]["annotations"][CORDONED_BY].is_null() {
                continue;
            }
            let id = kube::instance_id(&n).unwrap_or("");
            let doomed = cloud
                .iter()
                .any(|cg| outdated(cg, None).iter().any(|i| i == id));
            if !doomed {
                self.set_cordon(kube, kube::name(&n), false).await?;
                (self.progress)(format!(
                    "uncordoned {}, left cordoned by an interrupted rolling-update",
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

    /// Cordon, then evict every pod but DaemonSet and mirror pods, retrying
    /// PodDisruptionBudget refusals until --drain-timeout.
    async fn drain(
        &self,
        kube: &kube::Client,
        node: &str,
        instance: &str,
    ) -> Result<(), RollingError> {
        self.set_cordon(kube, node, true).await?;
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
        // Leave the node serving: its instance is not replaced this time.
        self.set_cordon(kube, node, false).await?;
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
