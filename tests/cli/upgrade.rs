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
    // At the newest supported minor there is nothing to do.
    sb.ok(&[
        "upgrade",
        "cluster",
        &name,
        "--kubernetes-version",
        "1.37.0",
        "--yes",
    ]);
    let r = sb.ok(&["upgrade", "cluster", &name]);
    assert!(r.stderr.contains("No upgrade required"), "{}", r.stderr);
}
