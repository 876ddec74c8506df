//! The component fields of the specs, end to end: `spec.kubeAPIServer` and
//! `spec.kubelet` (cluster and group) refused when bad with nothing written,
//! shown by the preview as a change of the launch templates' user-data, and
//! the instances they reach seen out of date by rolling-update.

use std::process::Command;

use crate::harness::*;

/// The cluster's YAML (`get cluster -o yaml`) with `fields` added to its spec.
fn with_spec_fields(sb: &Sandbox, name: &str, fields: &str) -> String {
    let yaml = sb.ok(&["get", "cluster", name, "-o", "yaml"]).stdout;
    assert!(yaml.contains("\nspec:\n"), "{yaml}");
    yaml.replacen("\nspec:\n", &format!("\nspec:\n{fields}"), 1)
}

fn replace(sb: &Sandbox, file: &str, yaml: &str) -> Run {
    std::fs::write(sb.path(file), yaml).unwrap();
    let state = sb.state();
    sb.run(&["replace", "-f", file, "--state", &state])
}

fn need_update(sb: &Sandbox, name: &str) -> Vec<(String, u64)> {
    let state = sb.state();
    let r = sb.run(&[
        "rolling-update",
        "cluster",
        name,
        "--cloudonly",
        "-o",
        "json",
        "--state",
        &state,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["needUpdate"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn kube_api_server_and_kubelet_fields_reach_the_user_data_and_roll_the_instances() {
    let sb = Sandbox::new("spec-fields");
    let name = &sb.cluster("fields");
    create_small(&sb, name);
    let config_key = format!("{name}/config");
    let config_before = sb.object(&config_key);
    let keys_before = sb.keys();

    // Bad values: refused, each naming its field, and nothing written.
    let bad = with_spec_fields(
        &sb,
        name,
        "  kubeAPIServer:\n    oidcIssuerURL: http://sso.example.com\n    enableAdmissionPlugins: [\"\"]\n  kubelet:\n    maxPods: 0\n  hooks:\n  - name: kubelet.service\n    manifest: x\n",
    );
    let r = replace(&sb, "bad.yaml", &bad);
    assert_ne!(r.code, 0);
    for want in [
        format!(
            "Cluster {name} spec.kubeAPIServer.oidcIssuerURL: http://sso.example.com is not an https URL"
        ),
        format!("Cluster {name} spec.kubeAPIServer.oidcClientID: is missing"),
        format!(
            "Cluster {name} spec.kubeAPIServer.enableAdmissionPlugins[0]: \"\" is not an admission plugin name"
        ),
        format!("Cluster {name} spec.kubelet.maxPods: 0 is not between 1 and 253"),
        format!("Cluster {name} spec.hooks[0].name: kubelet.service is a unit keelson runs itself"),
    ] {
        assert!(r.stderr.contains(&want), "{want}\n{}", r.stderr);
    }
    let typo = with_spec_fields(&sb, name, "  kubelet:\n    maxPod: 50\n");
    let r = replace(&sb, "typo.yaml", &typo);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("spec.kubelet.maxPod: unknown field `maxPod`"),
        "{}",
        r.stderr
    );
    assert_eq!(sb.object(&config_key), config_before, "nothing written");
    assert_eq!(sb.keys(), keys_before);

    // Good values: the cluster's API server and kubelet, the nodes' own kubelet.
    let good = with_spec_fields(
        &sb,
        name,
        "  kubeAPIServer:\n    auditLogPath: /var/log/kube-apiserver/audit.log\n    auditLogMaxAge: 10\n    oidcIssuerURL: https://sso.example.com\n    oidcClientID: kubernetes\n    oidcGroupsClaim: groups\n  kubelet:\n    maxPods: 50\n    evictionHard: memory.available<100Mi\n  hooks:\n  - name: cachefiles.service\n    before: [kubelet.service]\n    manifest: |\n      Type=oneshot\n      ExecStart=/sbin/modprobe cachefiles\n  fileAssets:\n  - name: rules\n    path: /etc/myapp/rules.yaml\n    roles: [Node]\n    content: |\n      a: 1\n",
    );
    let r = replace(&sb, "good.yaml", &good);
    assert_eq!(r.code, 0, "{}", r.stderr);
    sb.edit_group(
        name,
        "nodes-us-east-1a",
        "s/^spec:$/spec:\\n  kubelet:\\n    maxPods: 30/",
    );
    assert!(
        sb.object(&format!("{name}/instancegroup/nodes-us-east-1a"))
            .contains("kubelet:\n    maxPods: 30")
    );

    // The preview: the master's and the nodes' launch templates change, with
    // the settings in their user-data; the bastion's does not.
    let r = sb.ok(&["update", "cluster", name, "-o", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let templates: Vec<(String, String, String)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "launch_template")
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
                c["after"]["user_data"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(templates.len(), 2, "{templates:#?}");
    let master = templates
        .iter()
        .find(|t| t.0.contains(".masters."))
        .unwrap();
    let node = templates
        .iter()
        .find(|t| t.0.contains("nodes-us-east-1a"))
        .unwrap();
    assert!(master.2.contains("oidcIssuerURL: https://sso.example.com"));
    assert!(master.2.contains("maxPods: 50"));
    assert!(node.2.contains("maxPods: 30"), "the group's own wins");
    assert!(node.2.contains("path: /etc/myapp/rules.yaml"));
    assert!(
        !master.2.contains("path: /etc/myapp/rules.yaml"),
        "roles: [Node]"
    );
    for t in [master, node] {
        assert!(t.2.contains("[systemctl, enable, --now, --no-block, cachefiles.service]"));
    }
    assert!(
        !node.2.contains("oidcIssuerURL"),
        "only masters run the API server"
    );
    let human = sb.ok(&["update", "cluster", name]).stdout;
    assert!(human.contains("maxPods: 30"), "{human}");
    assert!(
        human.contains("auditLogPath: /var/log/kube-apiserver/audit.log"),
        "{human}"
    );

    // What the instances get is still valid cloud-config.
    crate::bootstrap::tools();
    for (address, _, text) in &templates {
        let file = sb.path("user-data.yaml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(&file)
            .output()
            .expect("cloud-init");
        assert!(
            out.status.success(),
            "{address}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Applied, the master and the nodes are out of date, the bastion is not.
    sb.ok(&["update", "cluster", name, "--yes"]);
    let need = need_update(&sb, name);
    assert_eq!(
        need,
        [
            ("bastions".to_string(), 0),
            ("master-us-east-1a".to_string(), 1),
            ("nodes-us-east-1a".to_string(), 2)
        ]
    );
    let r = sb.ok(&["update", "cluster", name]);
    assert!(
        r.stderr.contains("No changes need to be applied")
            || r.stdout.contains("No changes need to be applied"),
        "{}{}",
        r.stdout,
        r.stderr
    );
}
