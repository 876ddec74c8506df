//! upgrade cluster: one minor at a time, never down; only the spec changes, and
//! the next update shows what the new version changes.

use crate::harness::*;

#[test]
fn upgrade_moves_one_minor_and_refuses_skips_and_downgrades() {
    let sb = Sandbox::new("upgrade");
    let name = sb.cluster("upg");
    create_small(&sb, &name);
    let config_key = format!("{name}/config");
    let before = sb.object(&config_key);
    assert!(before.contains("kubernetesVersion: 1.35.0"), "{before}");

    // Without --yes: the table, and nothing written.
    let r = sb.ok(&["upgrade", "cluster", &name]);
    assert!(
        r.stdout.contains("KubernetesVersion")
            && r.stdout.contains("1.35.0")
            && r.stdout.contains("1.36.0"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("Must specify --yes"), "{}", r.stderr);
    assert_eq!(sb.object(&config_key), before);

    // A skip and a downgrade: refused, naming the field and the fix; nothing written.
    let state = sb.state();
    for (version, says) in [
        ("1.37.0", "upgrade to 1.36.0 first"),
        ("1.34.0", "cannot be downgraded"),
    ] {
        let r = sb.run(&[
            "upgrade",
            "cluster",
            &name,
            "--state",
            &state,
            "--kubernetes-version",
            version,
            "--yes",
        ]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stderr.contains("spec.kubernetesVersion") && r.stderr.contains(says),
            "{}",
            r.stderr
        );
        assert_eq!(sb.object(&config_key), before);
    }

    sb.ok(&["upgrade", "cluster", &name, "-y"]);
    assert!(sb.object(&config_key).contains("kubernetesVersion: 1.36.0"));
    // The next update carries the version to the instances and the addons.
    let r = sb.ok(&["update", "cluster", &name]);
    assert!(
        r.stdout.contains("KEELSON_KUBERNETES_VERSION='1.36.0'"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("aws-cloud-controller-manager"),
        "{}",
        r.stdout
    );
    // The spec is at 1.36 but the cluster runs 1.35 (created with --yes): a
    // second minor waits for the first to be applied.
    let to_137 = [
        "upgrade",
        "cluster",
        &name,
        "--kubernetes-version",
        "1.37.0",
        "--yes",
        "--state",
        &state,
    ];
    let r = sb.run(&to_137);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("upgrade to 1.36.0 first"), "{}", r.stderr);
    assert!(sb.object(&config_key).contains("kubernetesVersion: 1.36.0"));
    sb.ok(&["update", "cluster", &name, "--yes"]);
    assert!(
        sb.object(&format!("{name}/status"))
            .contains("kubernetesVersion: 1.36.0")
    );

    // Edit and replace hold to the same rules against what was applied, and
    // write nothing when they refuse.
    let at_136 = sb.object(&config_key);
    let editor = script(
        &sb.path("downgrade.sh"),
        "sed -i 's/kubernetesVersion: 1.36.0/kubernetesVersion: 1.35.0/' \"$1\"",
    );
    let mut cmd = sb.command(&["edit", "cluster", &name, "--state", &state]);
    cmd.env("EDITOR", &editor);
    let r = sb.run_cmd(cmd);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("cannot be downgraded"), "{}", r.stderr);
    let file = sb.path("downgraded.yaml");
    std::fs::write(&file, at_136.replace("1.36.0", "1.35.0")).unwrap();
    let r = sb.run(&["replace", "-f", file.to_str().unwrap(), "--state", &state]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("spec.kubernetesVersion") && r.stderr.contains("cannot be downgraded"),
        "{}",
        r.stderr
    );
    assert_eq!(sb.object(&config_key), at_136);
    // A spec written by hand into the store is refused by the next update,
    // before anything is written or made.
    sb.put(&config_key, &at_136.replace("1.36.0", "1.34.0"));
    let keys = sb.keys();
    let r = sb.run(&["update", "cluster", &name, "--state", &state, "--yes"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cannot be downgraded"), "{}", r.stderr);
    assert_eq!(sb.keys(), keys);
    sb.put(&config_key, &at_136);

    // At the newest supported minor there is nothing to do.
    let r = sb.run(&to_137);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sb.ok(&["upgrade", "cluster", &name]);
    assert!(r.stderr.contains("No upgrade required"), "{}", r.stderr);
}
