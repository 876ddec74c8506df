//! `validate cluster`: the kops checks, as a pure function of what the cloud and
//! the Kubernetes API report, plus the waiting loop around it.

pub mod cloud;

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::aws::AwsError;
use crate::kube::{self, KubeError};
use crate::spec::{InstanceGroup, Role};
use cloud::CloudGroup;

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupRow {
    pub name: String,
    pub role: String,
    pub machine_type: String,
    pub min: u32,
    pub max: u32,
    pub subnets: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub name: String,
    pub role: String,
    pub ready: bool,
    pub instance_group: String,
    pub instance_id: String,
}

/// One problem, as kops words it: KIND NAME MESSAGE.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub cluster: String,
    pub valid: bool,
    pub instance_groups: Vec<GroupRow>,
    pub nodes: Vec<NodeRow>,
    pub failures: Vec<Failure>,
}

/// The static pods kubeadm runs on every control-plane node (stacked etcd
/// included), which a master must show as mirror pods. kops checks the same
/// four.
const CONTROL_PLANE_PODS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
/// kubeadm labels its static pods `component=<name>` and `tier=control-plane`
/// (cmd/kubeadm/app/util/staticpod/utils.go ComponentPod); it never sets
/// kops' `k8s-app`.
const COMPONENT_LABEL: &str = "component";
const TIER_LABEL: &str = "tier";
const CONTROL_PLANE_TIER: &str = "control-plane";
/// The node labels keelson's bootstrap passes to the kubelet (`--node-labels`).
const ROLE_LABEL: &str = "keelson.dev/role";
const INSTANCE_GROUP_LABEL: &str = "keelson.dev/instance-group";
/// kops' node label for the same, read from clusters it labelled.
const KOPS_INSTANCE_GROUP_LABEL: &str = "kops.k8s.io/instancegroup";
const CRITICAL: [&str; 2] = ["system-cluster-critical", "system-node-critical"];

/// The checks. `groups` are the specs, `cloud` what AWS has for them, `nodes`
/// and `pods` what the API lists. Pure.
pub fn check(
    cluster: &str,
    groups: &[InstanceGroup],
    cloud: &[CloudGroup],
    nodes: &[Value],
    pods: &[Value],
) -> Report {
    let mut failures = Vec::new();
    let fail = |failures: &mut Vec<Failure>, kind: &str, name: &str, message: String| {
        failures.push(Failure {
            kind: kind.into(),
            name: name.into(),
            message,
        })
    };
    let node_of = |id: &str| nodes.iter().find(|n| kube::instance_id(n) == Some(id));
    let mut rows = Vec::new();
    for g in groups {
        let Some(cg) = cloud.iter().find(|c| c.name == g.name()) else {
            continue;
        };
        if !cg.exists {
            fail(
                &mut failures,
                "InstanceGroup",
                g.name(),
                format!(
                    "InstanceGroup {:?} is missing from the cloud (no autoscaling group {}); run `keelson update cluster {cluster} --yes`",
                    g.name(),
                    cg.asg
                ),
            );
            continue;
        }
        let members: Vec<_> = cg.members().collect();
        // kops' bastions never join the cluster: only their count is checked.
        let joined = if g.spec.role == Role::Bastion {
            members.len()
        } else {
            members.iter().filter(|i| node_of(&i.id).is_some()).count()
        };
        if joined < g.spec.min_size as usize {
            fail(
                &mut failures,
                "InstanceGroup",
                g.name(),
                format!(
                    "InstanceGroup {:?} did not have enough nodes {joined} vs {}",
                    g.name(),
                    g.spec.min_size
                ),
            );
        }
        if g.spec.role == Role::Bastion {
            continue;
        }
        // Every instance of the group (detached ones too: they still serve) must have joined.
        for i in cg.instances.iter().filter(|i| !i.leaving() || i.detached()) {
            match node_of(&i.id) {
                None => fail(
                    &mut failures,
                    "Machine",
                    &i.id,
                    format!("machine {:?} has not yet joined cluster", i.id),
                ),
                Some(n) => rows.push(NodeRow {
                    name: kube::name(n).to_string(),
                    role: node_role(n),
                    ready: kube::node_ready(n),
                    instance_group: g.name().to_string(),
                    instance_id: i.id.clone(),
                }),
            }
        }
    }
    for n in nodes {
        let name = kube::name(n);
        if !rows.iter().any(|r| r.name == name) {
            rows.push(NodeRow {
                name: name.to_string(),
                role: node_role(n),
                ready: kube::node_ready(n),
                instance_group: node_instance_group(n).to_string(),
                instance_id: kube::instance_id(n).unwrap_or("").to_string(),
            });
        }
    }
    rows.sort_by(|a, b| (&a.role, &a.name).cmp(&(&b.role, &b.name)));
    for r in &rows {
        if !r.ready {
            fail(
                &mut failures,
                "Node",
                &r.name,
                format!("node {:?} of role {:?} is not ready", r.name, r.role),
            );
        }
    }
    for r in rows.iter().filter(|r| r.role == "control-plane") {
        for c in CONTROL_PLANE_PODS {
            let present = pods.iter().any(|p| {
                let labels = &p["metadata"]["labels"];
                p["metadata"]["namespace"] == "kube-system"
                    && p["spec"]["nodeName"] == r.name.as_str()
                    && labels[COMPONENT_LABEL] == c
                    && labels[TIER_LABEL] == CONTROL_PLANE_TIER
            });
            if !present {
                fail(
                    &mut failures,
                    "Node",
                    &r.name,
                    format!("control-plane node {:?} is missing {c} pod", r.name),
                );
            }
        }
    }
    for p in pods {
        let Some(priority) = p["spec"]["priorityClassName"]
            .as_str()
            .filter(|c| CRITICAL.contains(c))
        else {
            continue;
        };
        let name = kube::name(p);
        let phase = p["status"]["phase"].as_str().unwrap_or("");
        if phase == "Pending" {
            fail(
                &mut failures,
                "Pod",
                &format!(
                    "{}/{name}",
                    p["metadata"]["namespace"].as_str().unwrap_or("")
                ),
                format!("{priority} pod {name:?} is pending"),
            );
        } else if phase == "Running" && !kube::condition(p, "Ready") {
            fail(
                &mut failures,
                "Pod",
                &format!(
                    "{}/{name}",
                    p["metadata"]["namespace"].as_str().unwrap_or("")
                ),
                format!("{priority} pod {name:?} is not ready"),
            );
        }
    }
    let instance_groups = groups
        .iter()
        .map(|g| GroupRow {
            name: g.name().to_string(),
            role: g.spec.role.as_str().to_string(),
            machine_type: g.spec.machine_type.clone(),
            min: g.spec.min_size,
            max: g.spec.max_size,
            subnets: g.spec.subnets.clone(),
        })
        .collect();
    Report {
        cluster: cluster.to_string(),
        valid: failures.is_empty(),
        instance_groups,
        nodes: rows,
        failures,
    }
}

/// The workload kinds an addon bundle is judged by, with where they are listed.
/// Items of a list carry no `kind` of their own (the API server sends it on the
/// list only), so the kind is the list's.
pub const WORKLOADS: [(&str, &str); 3] = [
    ("Deployment", "/apis/apps/v1/deployments"),
    ("DaemonSet", "/apis/apps/v1/daemonsets"),
    ("StatefulSet", "/apis/apps/v1/statefulsets"),
];

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// The unavailable workloads of the enabled `bundles`: `listed` holds, per kind
/// of [`WORKLOADS`], what the API lists with keelson's labels. Judged by the
/// status each controller reports, never by the simulator's convenience:
/// - a Deployment by its `Available` condition (the deployment controller sets
///   it True once availableReplicas reach replicas minus maxUnavailable), and
///   a status for the current generation;
/// - a DaemonSet by numberAvailable against desiredNumberScheduled;
/// - a StatefulSet by readyReplicas against spec.replicas (default 1).
///
/// Pure.
pub fn workloads(bundles: &[String], listed: &[(&str, Vec<Value>)]) -> Vec<Failure> {
    let mut out = Vec::new();
    for (kind, items) in listed {
        for o in items {
            let labels = &o["metadata"]["labels"];
            let Some(bundle) = labels[crate::addons::BUNDLE_LABEL]
                .as_str()
                .filter(|b| bundles.iter().any(|x| x == b))
            else {
                continue;
            };
            if labels[crate::addons::MANAGED_BY.0] != crate::addons::MANAGED_BY.1 {
                continue;
            }
            let ns = o["metadata"]["namespace"].as_str().unwrap_or("");
            let name = format!("{ns}/{}", kube::name(o));
            let st = &o["status"];
            let spec_replicas = o["spec"]["replicas"].as_i64().unwrap_or(1);
            let generation = int(&o["metadata"]["generation"]);
            let stale = generation > 0 && int(&st["observedGeneration"]) < generation;
            let short = match *kind {
                _ if st.is_null() || stale => Some(format!(
                    "its controller has not reported on generation {generation} yet"
                )),
                "Deployment" => {
                    let cond = st["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|c| c["type"] == "Available");
                    match cond {
                        Some(c) if c["status"] == "True" => None,
                        c => Some(format!(
                            "{} of {spec_replicas} replicas available{}",
                            int(&st["availableReplicas"]),
                            c.map(|c| format!(
                                " ({}: {})",
                                c["reason"].as_str().unwrap_or(""),
                                c["message"].as_str().unwrap_or("")
                            ))
                            .unwrap_or_else(|| " (no Available condition)".into())
                        )),
                    }
                }
                "DaemonSet" => {
                    let (avail, desired) = (
                        int(&st["numberAvailable"]),
                        int(&st["desiredNumberScheduled"]),
                    );
                    (avail < desired)
                        .then(|| format!("{avail} of {desired} scheduled pods available"))
                }
                _ => {
                    let ready = int(&st["readyReplicas"]);
                    (ready < spec_replicas)
                        .then(|| format!("{ready} of {spec_replicas} replicas ready"))
                }
            };
            if let Some(short) = short {
                out.push(Failure {
                    kind: kind.to_string(),
                    name: name.clone(),
                    message: format!(
                        "addon bundle {bundle}: {kind} {name} is not available: {short}"
                    ),
                });
            }
        }
    }
    out
}

/// kubeadm labels a control-plane node `node-role.kubernetes.io/control-plane`
/// (before 1.24 `.../master`) only after the kubelet registered it; until then
/// keelson's own role label, which the kubelet registers with, tells. kubeadm
/// gives workers no node-role label.
fn node_role(n: &Value) -> String {
    let labels = &n["metadata"]["labels"];
    if labels
        .get("node-role.kubernetes.io/control-plane")
        .is_some()
        || labels.get("node-role.kubernetes.io/master").is_some()
        || labels[ROLE_LABEL] == "master"
    {
        "control-plane".into()
    } else {
        "node".into()
    }
}

fn node_instance_group(n: &Value) -> &str {
    let labels = &n["metadata"]["labels"];
    labels[INSTANCE_GROUP_LABEL]
        .as_str()
        .or_else(|| labels[KOPS_INSTANCE_GROUP_LABEL].as_str())
        .unwrap_or("")
}

/// What one validation needs: the specs, AWS and the API.
pub struct Target<'a> {
    pub cluster: &'a str,
    pub groups: &'a [InstanceGroup],
    pub clients: &'a crate::aws::kind::Clients,
    pub kube: &'a kube::Client,
    /// The enabled addon bundles, whose workloads must be available (empty:
    /// not checked).
    pub bundles: &'a [String],
}

impl Target<'_> {
    pub async fn once(&self) -> Result<Report, ValidateError> {
        let cloud = cloud::inventory(self.clients, self.cluster, self.groups).await?;
        let nodes = self.kube.nodes().await?;
        let pods = self.kube.pods(None).await?;
        let mut report = check(self.cluster, self.groups, &cloud, &nodes, &pods);
        if !self.bundles.is_empty() {
            let selector = kube::encode(&format!(
                "{}={}",
                crate::addons::MANAGED_BY.0,
                crate::addons::MANAGED_BY.1
            ));
            let mut listed = Vec::new();
            for (kind, path) in WORKLOADS {
                let items = self
                    .kube
                    .list(&format!("{path}?labelSelector={selector}"))
                    .await?;
                listed.push((kind, items));
            }
            report.failures.extend(workloads(self.bundles, &listed));
            report.valid = report.failures.is_empty();
        }
        Ok(report)
    }

    /// Validates until `count` consecutive validations pass or `wait` runs out
    /// (kops' --wait and --count); `on_failure` hears about each failed one.
    /// Returns the last report. API errors while waiting count as failures (the
    /// API may not be up yet) and are retried; without --wait they end it.
    pub async fn until(
        &self,
        wait: Option<Duration>,
        count: u32,
        interval: Duration,
        on_attempt: &(dyn Fn(&Result<Report, ValidateError>, u32) + Sync),
    ) -> Result<Report, ValidateError> {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut passes = 0;
        loop {
            let r = self.once().await;
            match &r {
                Ok(rep) if rep.valid => passes += 1,
                _ => passes = 0,
            }
            let done = passes >= count.max(1);
            let expired = deadline.is_none_or(|d| Instant::now() + interval > d);
            if done || expired {
                return r;
            }
            on_attempt(&r, passes);
            tokio::time::sleep(interval).await;
        }
    }
}

#[cfg(test)]
mod tests;
