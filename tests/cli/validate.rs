//! validate cluster against the emulator and the Kubernetes API simulator.

use serde_json::Value;

use crate::harness::*;

/// Node names and instance ids vary from run to run: replace them by stable
/// placeholders, in the order the JSON report lists them.
fn redact(text: &str, report: &Value, cluster: &str) -> String {
    let mut out = text.replace(cluster, "[cluster]");
    for (i, n) in report["nodes"].as_array().unwrap().iter().enumerate() {
        out = out.replace(n["name"].as_str().unwrap(), &format!("[node-{i}]"));
        out = out.replace(
            n["instanceId"].as_str().unwrap(),
            &format!("[instance-{i}]"),
        );
    }
    for f in report["failures"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        if f["type"] == "Machine" {
            out = out.replace(name, "[unjoined]");
        }
        // ReplicaSet pods end in a generated suffix.
        if let Some(pod) = name.strip_prefix("kube-system/coredns-5d78c9869d-") {
            out = out.replace(pod, "[id]");
        }
    }
    // Columns are as wide as the longest (unredacted) name: keep one gap.
    out.lines()
        .map(|l| {
            l.split("  ")
                .filter(|c| !c.is_empty())
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("  ")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn validate(sb: &Sandbox, name: &str, kubeconfig: &str, extra: &[&str]) -> Run {
    let state = sb.state();
    let mut args = vec![
        "validate",
        "cluster",
        name,
        "--state",
        &state,
        "--kubeconfig",
        kubeconfig,
    ];
    args.extend(extra);
    sb.run(&args)
}

#[test]
fn validate_passes_on_a_healthy_cluster_and_reports_each_fault() {
    let sb = Sandbox::new("validate");
    let name = sb.cluster("val");
    create_small(&sb, &name);
    let sim = sb.kube_sim(&name);
    let kc = sim.kubeconfig.to_str().unwrap().to_string();

    // Nodes join and turn Ready after a delay: --wait rides it out.
    let r = validate(
        &sb,
        &name,
        &kc,
        &["--wait", "60s", "--interval", "1s", "--count", "2"],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("Your cluster {name} is ready")),
        "{}",
        r.stdout
    );
    let j = validate(&sb, &name, &kc, &["-o", "json"]);
    assert_eq!(j.code, 0, "{}", j.stderr);
    let report: Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(
        report["nodes"].as_array().unwrap().len(),
        3,
        "the bastion does not join"
    );
    insta::assert_snapshot!("valid", redact(&r.stdout, &report, &name));

    // The faults the simulator's knobs produce, each reported.
    let nodes = report["nodes"].as_array().unwrap();
    let worker = nodes.iter().find(|n| n["role"] == "node").unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    sim.set_not_ready(&worker, true);
    sim.add_pending_critical_pod("critical-addon");
    // The master's etcd manifest goes: kubeadm's mirror pod with it.
    let master = nodes.iter().find(|n| n["role"] == "control-plane").unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sim.remove_static_pod(&master, "etcd"));
    // An instance that never joins: joins paused, then the ASG replaces a node's instance.
    sim.pause_joins(true);
    let other = nodes.iter().rfind(|n| n["role"] == "node").unwrap()["instanceId"]
        .as_str()
        .unwrap()
        .to_string();
    block_on(
        autoscaling()
            .terminate_instance_in_auto_scaling_group()
            .instance_id(&other)
            .should_decrement_desired_capacity(false)
            .send(),
    )
    .unwrap();
    // A group in the specs that was never applied.
    sb.ok(&[
        "create",
        "instancegroup",
        "extra",
        "--name",
        &name,
        "--subnet",
        "us-east-1a",
    ]);
    wait_for("the terminated instance's node to go", 30, || {
        !sim.node_names().iter().any(|n| {
            nodes
                .iter()
                .any(|x| x["name"] == n.as_str() && x["instanceId"] == other.as_str())
        })
    });

    let j = validate(&sb, &name, &kc, &["-o", "json"]);
    assert_eq!(j.code, 2, "{}\n{}", j.stdout, j.stderr);
    let failed: Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(failed["valid"], false);
    let kinds: Vec<&str> = failed["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    for k in ["InstanceGroup", "Machine", "Node", "Pod"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let t = validate(&sb, &name, &kc, &[]);
    assert_eq!(t.code, 2);
    insta::assert_snapshot!("invalid", redact(&t.stdout, &failed, &name));
    insta::assert_json_snapshot!(
        "invalid_json",
        serde_json::from_str::<Value>(&redact(&j.stdout, &failed, &name)).unwrap()
    );

    // --wait gives up after its deadline with exit 2 and the last report.
    let w = validate(&sb, &name, &kc, &["--wait", "2s", "--interval", "1s"]);
    assert_eq!(w.code, 2);
    assert!(w.stderr.contains("Validation failed with"), "{}", w.stderr);

    // No API reachable: an error (exit 1) naming the server, not "invalid".
    drop(sim);
    let e = validate(&sb, &name, &kc, &[]);
    assert_eq!(e.code, 1, "{}", e.stderr);
    assert!(
        e.stderr.contains("Kubernetes API https://127.0.0.1:"),
        "{}",
        e.stderr
    );
}

#[test]
fn validate_explains_a_missing_kubeconfig_context() {
    let sb = Sandbox::new("validate-kc");
    let name = sb.cluster("valkc");
    sb.ok(&[
        "create",
        "cluster",
        &name,
        "--zones",
        "us-east-1a",
        "--ssh-public-key",
        sb.path("admin.pub").to_str().unwrap(),
    ]);
    let kc = sb.path("kubeconfig");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n",
    )
    .unwrap();
    let r = validate(&sb, &name, kc.to_str().unwrap(), &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "has no context named {name} and no current-context"
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn validate_fails_on_an_unavailable_addon_deployment() {
    let sb = Sandbox::new("validate-addon");
    let name = sb.cluster("vad");
    create_small(&sb, &name);
    let sim = sb.kube_sim(&name);
    let kc = sim.kubeconfig.to_str().unwrap().to_string();
    // The masters applied metrics-server (its stored manifest, as they would).
    let channel = sb.object(&format!("{name}/addons/bootstrap-channel.yaml"));
    let path = channel
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("manifest: "))
        .find(|m| m.starts_with("metrics-server/"))
        .unwrap()
        .to_string();
    let file = sb.path("metrics-server.yaml");
    std::fs::write(&file, sb.object(&format!("{name}/addons/{path}"))).unwrap();
    let out = std::process::Command::new(crate::bootstrap::tools().join("kubectl"))
        .args([
            "--kubeconfig",
            &kc,
            "apply",
            "--server-side",
            "--field-manager",
            "keelson",
            "-f",
        ])
        .arg(&file)
        .env_clear()
        .env("HOME", sb.path("home"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = validate(&sb, &name, &kc, &["--wait", "60s", "--interval", "1s"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    sim.set_unavailable("deployments", "kube-system", "metrics-server", true);
    let j = validate(&sb, &name, &kc, &["-o", "json"]);
    assert_eq!(j.code, 2, "{}\n{}", j.stdout, j.stderr);
    let report: Value = serde_json::from_str(&j.stdout).unwrap();
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(failures[0]["type"], "Deployment");
    assert_eq!(failures[0]["name"], "kube-system/metrics-server");
    assert_eq!(
        failures[0]["message"],
        "addon bundle metrics-server: Deployment kube-system/metrics-server is not available: 0 of 2 replicas available (MinimumReplicasUnavailable: Deployment does not have minimum availability.)"
    );
    sim.set_unavailable("deployments", "kube-system", "metrics-server", false);
    assert_eq!(validate(&sb, &name, &kc, &[]).code, 0);
}
