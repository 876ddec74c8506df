//! rolling-update cluster against the emulator and the Kubernetes API simulator.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;

use crate::harness::*;

/// Running instances of the cluster: id -> (group, revision).
fn instances(cluster: &str) -> BTreeMap<String, (String, String)> {
    let ec2 = ec2();
    block_on(async {
        let out = ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("tag:KubernetesCluster")
                    .values(cluster)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("running")
                    .values("pending")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| {
                let tag = |k: &str| {
                    i.tags()
                        .iter()
                        .find(|t| t.key() == Some(k))
                        .and_then(|t| t.value())
                        .unwrap_or("")
                        .to_string()
                };
                (
                    i.instance_id().unwrap().to_string(),
                    (
                        tag("kops.k8s.io/instancegroup"),
                        tag("keelson.dev/revision"),
                    ),
                )
            })
            .collect()
    })
}

fn revisions_of(cluster: &str, group: &str) -> Vec<String> {
    instances(cluster)
        .into_values()
        .filter(|(g, _)| g == group)
        .map(|(_, r)| r)
        .collect()
}

const FAST: &[&str] = &[
    "--bastion-interval",
    "0s",
    "--master-interval",
    "0s",
    "--node-interval",
    "0s",
    "--validation-timeout",
    "60s",
    "--validate-count",
    "1",
];

fn rolling(sb: &Sandbox, name: &str, kubeconfig: Option<&str>, extra: &[&str]) -> Run {
    let state = sb.state();
    let mut args = vec!["rolling-update", "cluster", name, "--state", &state];
    if let Some(k) = kubeconfig {
        args.extend(["--kubeconfig", k]);
    }
    args.extend(extra);
    sb.run(&args)
}

/// A cluster whose node group's machine type changed and was applied.
fn changed_cluster(sb: &Sandbox, prefix: &str) -> String {
    let name = sb.cluster(prefix);
    create_small(sb, &name);
    sb.edit_group(
        &name,
        "nodes-us-east-1a",
        "s/machineType: t3.medium/machineType: t3.large/",
    );
    sb.ok(&["update", "cluster", &name, "--yes"]);
    name
}

fn ready(sb: &Sandbox, name: &str, kc: &str) {
    let state = sb.state();
    let r = sb.run(&[
        "validate",
        "cluster",
        name,
        "--state",
        &state,
        "--kubeconfig",
        kc,
        "--wait",
        "60s",
        "--interval",
        "1s",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

#[test]
fn a_machine_type_change_rolls_only_the_node_group() {
    let sb = Sandbox::new("rolling");
    let name = changed_cluster(&sb, "roll");
    let sim = sb.kube_sim(&name);
    let kc = sim.kubeconfig.to_str().unwrap().to_string();
    ready(&sb, &name, &kc);
    let before = instances(&name);

    let p = rolling(&sb, &name, Some(&kc), &[]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    insta::assert_snapshot!("preview", p.stdout);
    assert!(
        p.stderr.contains("Must specify --yes to rolling-update."),
        "{}",
        p.stderr
    );
    let j = rolling(&sb, &name, Some(&kc), &["-o", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let need: Vec<(&str, u64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["needUpdate"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        need,
        [
            ("bastions", 0),
            ("master-us-east-1a", 0),
            ("nodes-us-east-1a", 2)
        ]
    );

    let mut args = FAST.to_vec();
    args.extend(["--yes", "--drain-timeout", "30s"]);
    let r = rolling(&sb, &name, Some(&kc), &args);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("nodes-us-east-1a: 2 instance(s) to replace, surging 1 at a time"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("complete: 2 instance(s) replaced"),
        "{}",
        r.stderr
    );

    // Every node instance is new and carries the new revision; the others were untouched.
    let after = instances(&name);
    let nodes_after: Vec<&String> = after
        .iter()
        .filter(|(_, (g, _))| g == "nodes-us-east-1a")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(nodes_after.len(), 2);
    assert!(nodes_after.iter().all(|id| !before.contains_key(*id)));
    let revs = revisions_of(&name, "nodes-us-east-1a");
    assert!(
        revs[0] == revs[1]
            && !before
                .values()
                .any(|(g, r)| g == "nodes-us-east-1a" && *r == revs[0])
    );
    for (id, (g, _)) in &before {
        if g != "nodes-us-east-1a" {
            assert!(after.contains_key(id), "{g} instance {id} was replaced");
        }
    }
    let p = rolling(&sb, &name, Some(&kc), &[]);
    assert!(
        p.stderr.contains("No rolling-update required."),
        "{}",
        p.stderr
    );
    assert!(
        sim.unschedulable_nodes().is_empty(),
        "{:?}",
        sim.unschedulable_nodes()
    );
    let state = sb.state();
    let v = sb.run(&[
        "validate",
        "cluster",
        &name,
        "--state",
        &state,
        "--kubeconfig",
        &kc,
        "--wait",
        "30s",
        "--interval",
        "1s",
    ]);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
}

#[test]
fn an_interrupted_roll_resumes_without_rerolling() {
    let sb = Sandbox::new("rolling-resume");
    let name = changed_cluster(&sb, "rres");
    let sim = sb.kube_sim(&name);
    let kc = sim.kubeconfig.to_str().unwrap().to_string();
    ready(&sb, &name, &kc);
    let old: Vec<String> = instances(&name)
        .into_iter()
        .filter(|(_, (g, _))| g == "nodes-us-east-1a")
        .map(|(id, _)| id)
        .collect();

    let state = sb.state();
    let mut args = vec![
        "rolling-update",
        "cluster",
        &name,
        "--state",
        &state,
        "--kubeconfig",
        &kc,
        "--yes",
        "--drain-timeout",
        "30s",
    ];
    args.extend(FAST);
    let child = sb
        .command(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt it once the first instance was replaced, in the middle of the group.
    wait_for("the first old instance to go", 60, || {
        old.iter()
            .filter(|id| instances(&name).contains_key(*id))
            .count()
            < 2
    });
    let first_new: Vec<String> = instances(&name)
        .into_iter()
        .filter(|(id, (g, _))| g == "nodes-us-east-1a" && !old.contains(id))
        .map(|(id, _)| id)
        .collect();
    unsafe { libc_kill(child.id() as i32, 2) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");

    let mut args = FAST.to_vec();
    args.extend(["--yes", "--drain-timeout", "30s"]);
    let r = rolling(&sb, &name, Some(&kc), &args);
    assert_eq!(
        r.code, 0,
        "first run:\n{stderr}\nsecond run:\n{}\n{}",
        r.stdout, r.stderr
    );
    let now: Vec<String> = instances(&name)
        .into_iter()
        .filter(|(_, (g, _))| g == "nodes-us-east-1a")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(now.len(), 2);
    assert!(
        now.iter().all(|id| !old.contains(id)),
        "an old instance survived: {now:?}"
    );
    // What the first run launched was not rolled again.
    for id in &first_new {
        assert!(
            now.contains(id),
            "{id} from the first run was re-rolled; now {now:?}"
        );
    }
    assert!(
        rolling(&sb, &name, Some(&kc), &[])
            .stderr
            .contains("No rolling-update required.")
    );
    assert!(
        sim.unschedulable_nodes().is_empty(),
        "{:?}",
        sim.unschedulable_nodes()
    );
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn a_blocking_disruption_budget_fails_the_drain_after_its_timeout() {
    let sb = Sandbox::new("rolling-pdb");
    let name = changed_cluster(&sb, "rpdb");
    let sim = sb.kube_sim(&name);
    let kc = sim.kubeconfig.to_str().unwrap().to_string();
    ready(&sb, &name, &kc);
    sim.add_blocking_pdb("default", "web", serde_json::json!({"k8s-app": "web"}));
    let mut args = FAST.to_vec();
    args.extend(["--yes", "--drain-timeout", "6s"]);
    let start = std::time::Instant::now();
    let r = rolling(&sb, &name, Some(&kc), &args);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(start.elapsed() >= std::time::Duration::from_secs(6));
    assert!(r.stderr.contains("timed out after 6s"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("raise --drain-timeout"), "{}", r.stderr);
    assert!(
        sim.unschedulable_nodes().is_empty(),
        "the node was left cordoned"
    );
    // The lock was released: the roll can be run again at once.
    assert!(
        !sb.keys().iter().any(|k| k.ends_with("/lock")),
        "{:?}",
        sb.keys()
    );
}

#[test]
fn cloudonly_rolls_with_no_kubernetes_api() {
    let sb = Sandbox::new("rolling-cloudonly");
    let name = changed_cluster(&sb, "rco");
    let old = instances(&name);
    let mut args = FAST.to_vec();
    args.extend(["--yes", "--cloudonly"]);
    let r = rolling(&sb, &name, None, &args);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let now = instances(&name);
    let nodes: Vec<_> = now
        .iter()
        .filter(|(_, (g, _))| g == "nodes-us-east-1a")
        .collect();
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|(id, _)| !old.contains_key(*id)));
    assert!(
        rolling(&sb, &name, None, &["--cloudonly"])
            .stderr
            .contains("No rolling-update required.")
    );
    // Without --cloudonly and with no kubeconfig: a clear error. (The first
    // apply exported one into HOME, as kops does; take it away.)
    std::fs::remove_file(sb.dir.join("home/.kube/config")).unwrap();
    let r = rolling(&sb, &name, None, &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no kubeconfig found"), "{}", r.stderr);
}
