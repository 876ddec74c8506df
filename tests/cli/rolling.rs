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
    assert!(
        live_taints(&sim, &name).values().all(|(_, c)| *c == 0),
        "a node kept the taint: {:?} (old {old:?}, now {now:?})",
        taints(&sim)
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
    let old = instances(&name);
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
    // The interrupted roll left both out-of-date nodes tainted, and a rerun
    // (failing the same way) does not taint them twice.
    let old_nodes = |sim: &kube_sim::Handle| -> Vec<usize> {
        taints(sim)
            .into_values()
            .filter(|(id, _)| old.get(id).is_some_and(|(g, _)| g == "nodes-us-east-1a"))
            .map(|(_, c)| c)
            .collect()
    };
    assert_eq!(old_nodes(&sim), [1, 1], "{:?}", taints(&sim));
    // The replacement the surge launched is up to date: never tainted.
    assert_eq!(
        taints(&sim).values().filter(|(_, c)| *c > 0).count(),
        2,
        "{:?}",
        taints(&sim)
    );
    let mut args = FAST.to_vec();
    args.extend(["--yes", "--drain-timeout", "1s"]);
    let r = rolling(&sb, &name, Some(&kc), &args);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!r.stderr.contains("tainted "), "{}", r.stderr);
    assert_eq!(old_nodes(&sim), [1, 1], "{:?}", taints(&sim));
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

const TAINT: &str = "kops.k8s.io/scheduled-for-update";

/// Node name -> (instance id, how many scheduled-for-update taints it carries).
/// [`taints`] of the nodes whose instances still run. The simulator drops a
/// terminated instance's node at its next poll of EC2 (as the cloud controller
/// deletes it), which under load can come after a roll has returned.
fn live_taints(sim: &kube_sim::Handle, cluster: &str) -> BTreeMap<String, (String, usize)> {
    let live = instances(cluster);
    taints(sim)
        .into_iter()
        .filter(|(_, (id, _))| live.contains_key(id))
        .collect()
}

fn taints(sim: &kube_sim::Handle) -> BTreeMap<String, (String, usize)> {
    sim.nodes()
        .iter()
        .map(|n| {
            let id = n["spec"]["providerID"]
                .as_str()
                .and_then(|p| p.rsplit('/').next())
                .unwrap_or("")
                .to_string();
            let count = n["spec"]["taints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["key"] == TAINT && t["effect"] == "PreferNoSchedule")
                .count();
            (
                n["metadata"]["name"].as_str().unwrap().to_string(),
                (id, count),
            )
        })
        .collect()
}

#[test]
fn without_surge_max_unavailable_instances_go_at_once_and_the_rest_are_tainted() {
    let sb = Sandbox::new("rolling-unavailable");
    let name = sb.cluster("runav");
    let key = sb.path("admin.pub");
    sb.ok(&[
        "create",
        "cluster",
        &name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
        "--master-count",
        "1",
        "--node-count",
        "3",
        "--ssh-public-key",
        key.to_str().unwrap(),
        "--yes",
    ]);
    sb.edit_group(
        &name,
        "nodes-us-east-1a",
        r"s/machineType: t3.medium/machineType: t3.large\n  rollingUpdate:\n    maxSurge: 0\n    maxUnavailable: 2/",
    );
    sb.ok(&["update", "cluster", &name, "--yes"]);
    let sim = sb.kube_sim(&name);
    let kc = sim.kubeconfig.to_str().unwrap().to_string();
    ready(&sb, &name, &kc);
    let old: Vec<String> = instances(&name)
        .into_iter()
        .filter(|(_, (g, _))| g == "nodes-us-east-1a")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(old.len(), 3);
    // A leftover of an earlier run on a node that is up to date: the roll removes it.
    let master = taints(&sim)
        .into_iter()
        .find(|(_, (id, _))| !old.contains(id))
        .map(|(n, _)| n)
        .unwrap();
    sim.add_taint(&master, TAINT, "PreferNoSchedule");

    let mut args = FAST.to_vec();
    args.extend(["--yes", "--drain-timeout", "30s"]);
    // Watch the nodes while the roll runs: which old nodes exist, and their taints.
    let mut seen: Vec<BTreeMap<String, (String, usize)>> = Vec::new();
    let r = std::thread::scope(|s| {
        let roll = s.spawn(|| rolling(&sb, &name, Some(&kc), &args));
        while !roll.is_finished() {
            seen.push(taints(&sim));
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        roll.join().unwrap()
    });
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("nodes-us-east-1a: 3 instance(s) to replace, 2 at a time, without surge"),
        "{}",
        r.stderr
    );
    // Two batches: two instances at once, then the last one alone.
    let batches: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("nodes-us-east-1a: replacing "))
        .collect();
    assert_eq!(batches.len(), 1, "{}", r.stderr);
    assert_eq!(
        old.iter().filter(|id| batches[0].contains(*id)).count(),
        2,
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("nodes-us-east-1a: terminated ").count(),
        3,
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("removed the {TAINT} taint from {master}"))
    );

    // While the first batch was replaced, the old node that goes next carried
    // the taint, once; no new node ever did.
    let all_old = seen.iter().any(|snap| {
        let olds: Vec<&(String, usize)> =
            snap.values().filter(|(id, _)| old.contains(id)).collect();
        olds.len() == 3 && olds.iter().all(|(_, c)| *c == 1)
    });
    assert!(
        all_old,
        "the three old nodes were never seen tainted together"
    );
    let last_old = seen.iter().any(|snap| {
        let olds: Vec<&(String, usize)> =
            snap.values().filter(|(id, _)| old.contains(id)).collect();
        olds.len() == 1 && olds[0].1 == 1
    });
    assert!(last_old, "the last old node was never seen tainted alone");
    for snap in &seen {
        for (node, (id, count)) in snap {
            if old.contains(id) {
                assert!(*count <= 1, "{node} carries the taint {count} times");
            } else if *node != master {
                assert_eq!(*count, 0, "the new node {node} was tainted");
            }
        }
    }

    // Every instance is new and on the new revision; no node keeps the taint.
    let now: Vec<(String, String)> = instances(&name)
        .into_iter()
        .filter(|(_, (g, _))| g == "nodes-us-east-1a")
        .map(|(id, (_, rev))| (id, rev))
        .collect();
    assert_eq!(now.len(), 3);
    assert!(now.iter().all(|(id, _)| !old.contains(id)));
    assert!(
        rolling(&sb, &name, Some(&kc), &[])
            .stderr
            .contains("No rolling-update required.")
    );
    assert!(
        live_taints(&sim, &name).values().all(|(_, c)| *c == 0),
        "{:?}",
        taints(&sim)
    );
    assert!(sim.unschedulable_nodes().is_empty());
    ready(&sb, &name, &kc);
}
