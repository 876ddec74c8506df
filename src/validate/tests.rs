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

fn node(name: &str, id: &str, master: bool, ready: bool) -> Value {
    let role = if master { "control-plane" } else { "node" };
    json!({"metadata": {"name": name, "labels": {format!("node-role.kubernetes.io/{role}"): ""}},
           "spec": {"providerID": format!("aws:///us-east-1a/{id}")},
           "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn cp_pods(node: &str) -> Vec<Value> {
    CONTROL_PLANE_PODS
        .iter()
        .map(|c| json!({"metadata": {"name": format!("{c}-{node}"), "namespace": "kube-system", "labels": {"k8s-app": c}},
                         "spec": {"nodeName": node, "priorityClassName": "system-node-critical"},
                         "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}))
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
    pods2.remove(2);
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
