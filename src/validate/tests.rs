use serde_json::json;

use super::cloud::{CloudGroup, CloudInstance};
use super::*;

fn group(name: &str, role: &str, min: u32) -> InstanceGroup {
    crate::spec::parse::parse_instance_group(
        &format!(
            "apiVersion: keelson.dev/v1alpha1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  role: {role}\n  image: ami-0123456789abcdef0\n  machineType: t3.medium\n  minSize: {min}\n  maxSize: {min}\n  subnets: [us-east-1a]\n  rootVolume: {{size: 64, type: gp3, encrypted: true}}\n"
        ),
        "test",
    )
    .unwrap()
}

fn cloud(g: &InstanceGroup, ids: &[&str]) -> CloudGroup {
    CloudGroup {
        name: g.name().into(),
        role: g.spec.role,
        asg: format!("{}.c", g.name()),
        exists: true,
        min: g.spec.min_size as i32,
        max: g.spec.max_size as i32,
        desired: ids.len() as i32,
        revision: Some("r1".into()),
        instances: ids
            .iter()
            .map(|i| CloudInstance {
                id: i.to_string(),
                lifecycle: "InService".into(),
                revision: Some("r1".into()),
            })
            .collect(),
    }
}

/// A node as the kubelet, keelson's `--node-labels` and (on a master) kubeadm's
/// mark-control-plane phase label it: workers get no node-role label.
fn node(name: &str, id: &str, master: bool, ready: bool) -> Value {
    let mut labels = json!({
        "kubernetes.io/hostname": name,
        "keelson.dev/role": if master { "master" } else { "node" },
        "keelson.dev/instance-group": if master { "master-us-east-1a" } else { "nodes" },
    });
    if master {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = json!("");
    }
    json!({"metadata": {"name": name, "labels": labels},
           "spec": {"providerID": format!("aws:///us-east-1a/{id}")},
           "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

/// The mirror pods of kubeadm's static pods on `node`, labelled as kubeadm
/// labels them (component, tier) and annotated as the kubelet annotates them.
fn cp_pods(node: &str) -> Vec<Value> {
    CONTROL_PLANE_PODS
        .iter()
        .map(|c| {
            json!({"metadata": {"name": format!("{c}-{node}"), "namespace": "kube-system",
                                "labels": {"component": c, "tier": "control-plane"},
                                "annotations": {"kubernetes.io/config.mirror": "0123456789abcdef0123456789abcdef",
                                                "kubernetes.io/config.source": "file"}},
                   "spec": {"nodeName": node, "priorityClassName": "system-node-critical", "priority": 2_000_001_000},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
        })
        .collect()
}

fn missing(r: &Report) -> Vec<String> {
    r.failures
        .iter()
        .filter(|f| f.message.contains(" is missing "))
        .map(|f| f.message.clone())
        .collect()
}

#[test]
fn a_healthy_cluster_is_valid_and_each_fault_is_reported() {
    let groups = [
        group("master-us-east-1a", "Master", 1),
        group("nodes", "Node", 2),
        group("bastions", "Bastion", 1),
    ];
    let clouds = vec![
        cloud(&groups[0], &["i-m"]),
        cloud(&groups[1], &["i-a", "i-b"]),
        cloud(&groups[2], &["i-x"]),
    ];
    let nodes = vec![
        node("m", "i-m", true, true),
        node("a", "i-a", false, true),
        node("b", "i-b", false, true),
    ];
    let pods = cp_pods("m");
    let r = check("c", &groups, &clouds, &nodes, &pods);
    assert!(r.valid, "{:?}", r.failures);
    assert_eq!(r.nodes.len(), 3);

    // A node not ready, a machine that never joined (so too few nodes), a
    // missing control-plane pod, a pending critical pod, a missing group.
    let mut clouds2 = clouds.clone();
    clouds2[2].exists = false;
    let nodes2 = vec![node("m", "i-m", true, true), node("a", "i-a", false, false)];
    let mut pods2 = cp_pods("m");
    pods2.pop(); // kube-scheduler
    pods2.push(json!({"metadata": {"name": "coredns-1", "namespace": "kube-system"},
                      "spec": {"priorityClassName": "system-cluster-critical"}, "status": {"phase": "Pending"}}));
    let r = check("c", &groups, &clouds2, &nodes2, &pods2);
    assert!(!r.valid);
    let got: Vec<(String, String)> = r
        .failures
        .iter()
        .map(|f| (f.kind.clone(), f.message.clone()))
        .collect();
    let want = [
        (
            "InstanceGroup",
            "InstanceGroup \"nodes\" did not have enough nodes 1 vs 2",
        ),
        ("Machine", "machine \"i-b\" has not yet joined cluster"),
        (
            "InstanceGroup",
            "InstanceGroup \"bastions\" is missing from the cloud (no autoscaling group bastions.c); run `keelson update cluster c --yes`",
        ),
        ("Node", "node \"a\" of role \"node\" is not ready"),
        (
            "Node",
            "control-plane node \"m\" is missing kube-scheduler pod",
        ),
        (
            "Pod",
            "system-cluster-critical pod \"coredns-1\" is pending",
        ),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, m)| (k.to_string(), m.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_control_plane_pod_counts_only_with_kubeadm_labels_on_its_node() {
    let groups = [group("master-us-east-1a", "Master", 1)];
    let clouds = vec![cloud(&groups[0], &["i-m"])];
    let nodes = vec![node("m", "i-m", true, true)];
    let mut pods = cp_pods("m");
    // kops' label alone (which kubeadm never sets) is not kubeadm's etcd.
    pods[0]["metadata"]["labels"] = json!({"k8s-app": "etcd"});
    // Without tier=control-plane it is not the control plane's.
    pods[1]["metadata"]["labels"] = json!({"component": "kube-apiserver"});
    // Another namespace, or another node, does not count either.
    pods[2]["metadata"]["namespace"] = json!("default");
    pods[3]["spec"]["nodeName"] = json!("elsewhere");
    let r = check("c", &groups, &clouds, &nodes, &pods);
    assert!(!r.valid);
    assert_eq!(
        missing(&r),
        [
            "control-plane node \"m\" is missing etcd pod",
            "control-plane node \"m\" is missing kube-apiserver pod",
            "control-plane node \"m\" is missing kube-controller-manager pod",
            "control-plane node \"m\" is missing kube-scheduler pod",
        ]
    );
    // With kubeadm's labels, and kops' too, they all count.
    let mut pods = cp_pods("m");
    pods[0]["metadata"]["labels"]["k8s-app"] = json!("etcd");
    assert!(check("c", &groups, &clouds, &nodes, &pods).valid);
}

#[test]
fn roles_and_groups_come_from_kubeadm_and_keelson_labels() {
    // A master kubeadm has not marked yet: keelson's role label makes it one,
    // so its missing control plane is reported.
    let mut unmarked = node("m", "i-m", true, true);
    let labels = unmarked["metadata"]["labels"].as_object_mut().unwrap();
    labels.remove("node-role.kubernetes.io/control-plane");
    // A master marked the pre-1.24 way, with kops' group label only.
    let mut legacy = node("old", "i-old", false, true);
    legacy["metadata"]["labels"] = json!({"node-role.kubernetes.io/master": "",
                                          "kops.k8s.io/instancegroup": "masters-legacy"});
    // A worker with keelson's labels and no node-role label.
    let worker = node("w", "i-w", false, true);
    let mut pods = cp_pods("old");
    pods.extend(
        cp_pods("m")
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["component"] != "etcd"),
    );
    let r = check("c", &[], &[], &[unmarked, legacy, worker], &pods);
    let rows: Vec<(&str, &str, &str)> = r
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.role.as_str(), n.instance_group.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("m", "control-plane", "master-us-east-1a"),
            ("old", "control-plane", "masters-legacy"),
            ("w", "node", "nodes"),
        ]
    );
    assert_eq!(
        missing(&r),
        ["control-plane node \"m\" is missing etcd pod"]
    );
}

/// A workload as the API lists it: no `kind` on the item (the list has it).
fn workload(bundle: &str, name: &str, spec: Value, status: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": "kube-system", "generation": 2,
                        "labels": {"app.kubernetes.io/managed-by": "keelson",
                                   "addons.keelson.dev/bundle": bundle}},
           "spec": spec, "status": status})
}

#[test]
fn an_enabled_bundles_unavailable_workloads_fail_validation() {
    let available = |t: &str| {
        json!([{"type": "Available", "status": t, "reason": if t == "True" { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                "message": if t == "True" { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." }}])
    };
    let listed = vec![
        (
            "Deployment",
            vec![
                workload(
                    "metrics-server",
                    "metrics-server",
                    json!({"replicas": 2}),
                    json!({"observedGeneration": 2, "availableReplicas": 0, "conditions": available("False")}),
                ),
                workload(
                    "aws-ebs-csi-driver",
                    "ebs-csi-controller",
                    json!({"replicas": 2}),
                    json!({"observedGeneration": 2, "availableReplicas": 2, "conditions": available("True")}),
                ),
                // A bundle not enabled: not judged.
                workload(
                    "cluster-autoscaler",
                    "cluster-autoscaler",
                    json!({}),
                    json!({}),
                ),
                // The controller has not caught up with the spec.
                workload(
                    "aws-ebs-csi-driver",
                    "stale",
                    json!({"replicas": 1}),
                    json!({"observedGeneration": 1, "conditions": available("True")}),
                ),
            ],
        ),
        (
            "DaemonSet",
            vec![workload(
                "aws-node-termination-handler",
                "aws-node-termination-handler",
                json!({}),
                json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "numberAvailable": 1}),
            )],
        ),
        (
            "StatefulSet",
            vec![workload(
                "metrics-server",
                "store",
                json!({"replicas": 3}),
                json!({"observedGeneration": 2, "readyReplicas": 3}),
            )],
        ),
    ];
    let bundles: Vec<String> = [
        "metrics-server",
        "aws-ebs-csi-driver",
        "aws-node-termination-handler",
    ]
    .map(String::from)
    .to_vec();
    let f = workloads(&bundles, &listed);
    let messages: Vec<&str> = f.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "addon bundle metrics-server: Deployment kube-system/metrics-server is not available: 0 of 2 replicas available (MinimumReplicasUnavailable: Deployment does not have minimum availability.)",
            "addon bundle aws-ebs-csi-driver: Deployment kube-system/stale is not available: its controller has not reported on generation 2 yet",
            "addon bundle aws-node-termination-handler: DaemonSet kube-system/aws-node-termination-handler is not available: 1 of 3 scheduled pods available",
        ]
    );
    assert_eq!(f[0].kind, "Deployment");
    assert_eq!(f[0].name, "kube-system/metrics-server");
}
