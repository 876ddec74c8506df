//! Issue 16's end to end: a cluster with the monitoring and logging bundles
//! enabled previews them, applies on the AWS emulator (the manifests land in
//! the state store), the manifests go into the Kubernetes simulator through
//! real kubectl as the masters' agent applies them (server-side, field manager
//! keelson), and `validate cluster` passes, then fails naming a workload of
//! either bundle that is not available.

use serde_json::Value;

use crate::harness::*;

/// Every manifest of `bundle` the channel lists, applied as the agent does.
fn apply_bundle(sb: &Sandbox, name: &str, kubeconfig: &str, bundle: &str) {
    let channel = sb.object(&format!("{name}/addons/bootstrap-channel.yaml"));
    let paths: Vec<String> = channel
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("manifest: "))
        .filter(|m| m.starts_with(&format!("{bundle}/")))
        .map(str::to_string)
        .collect();
    assert!(
        !paths.is_empty(),
        "{bundle} is not in the channel:\n{channel}"
    );
    for path in paths {
        let file = sb.path(&path.replace('/', "-"));
        std::fs::write(&file, sb.object(&format!("{name}/addons/{path}"))).unwrap();
        let out = std::process::Command::new(crate::bootstrap::tools().join("kubectl"))
            .args([
                "--kubeconfig",
                kubeconfig,
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
            "kubectl apply {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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
fn monitoring_and_logging_preview_apply_and_validate_on_the_emulators() {
    let sb = Sandbox::new("observability");
    let name = sb.cluster("obs");
    create_small(&sb, &name);

    // Both bundles on, through the spec as a user would (get, edit, replace).
    let got = sb.ok(&["get", "cluster", &name, "-o", "yaml"]);
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&got.stdout).unwrap();
    doc["spec"]["addons"] = serde_yaml::from_str(
        "{monitoring: {enabled: true, retentionDays: 10}, logging: {enabled: true, retentionDays: 3}}",
    )
    .unwrap();
    let file = sb.path("cluster.yaml");
    std::fs::write(&file, serde_yaml::to_string(&doc).unwrap()).unwrap();
    sb.ok(&["replace", "-f", file.to_str().unwrap()]);

    // The preview names both bundles; nothing is written by it.
    let before = sb.keys();
    let preview = sb.ok(&["update", "cluster", &name]);
    for want in ["+ monitoring 2.55.1", "+ logging "] {
        assert!(preview.stdout.contains(want), "{want}:\n{}", preview.stdout);
    }
    assert_eq!(sb.keys(), before, "a preview wrote to the state store");

    // Applied: the manifests are in the state store, and the re-plan is empty.
    sb.ok(&["update", "cluster", &name, "--yes"]);
    let again = sb.run(&[
        "update",
        "cluster",
        &name,
        "--detailed-exitcode",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);

    let sim = sb.kube_sim(&name);
    let kc = sim.kubeconfig.to_str().unwrap().to_string();
    apply_bundle(&sb, &name, &kc, "monitoring");
    apply_bundle(&sb, &name, &kc, "logging");
    let r = validate(&sb, &name, &kc, &["--wait", "60s", "--interval", "1s"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // validate sees each bundle's workloads: one of either, unavailable, fails it.
    for (resource, ns, workload, kind, bundle) in [
        (
            "statefulsets",
            "monitoring",
            "prometheus",
            "StatefulSet",
            "monitoring",
        ),
        (
            "daemonsets",
            "logging",
            "fluent-bit",
            "DaemonSet",
            "logging",
        ),
    ] {
        sim.set_unavailable(resource, ns, workload, true);
        let j = validate(&sb, &name, &kc, &["-o", "json"]);
        assert_eq!(j.code, 2, "{}\n{}", j.stdout, j.stderr);
        let report: Value = serde_json::from_str(&j.stdout).unwrap();
        let failures = report["failures"].as_array().unwrap();
        assert_eq!(failures.len(), 1, "{failures:#?}");
        assert_eq!(failures[0]["type"], kind);
        assert_eq!(failures[0]["name"], format!("{ns}/{workload}"));
        let message = failures[0]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("addon bundle {bundle}: {kind} {ns}/{workload}")),
            "{message}"
        );
        sim.set_unavailable(resource, ns, workload, false);
    }
    assert_eq!(validate(&sb, &name, &kc, &[]).code, 0);
}
