use super::*;
use crate::spec::defaults::{NewCluster, new_cluster};
use std::collections::BTreeMap;

fn cluster(networking: NetworkingPlugin) -> Cluster {
    new_cluster(&NewCluster {
        name: "addons.k8s.local".into(),
        zones: vec!["us-east-1a".into()],
        networking: Some(networking),
        ..Default::default()
    })
    .unwrap()
    .0
}

fn with_addons(yaml: &str) -> Cluster {
    let mut c = cluster(NetworkingPlugin::Flannel);
    c.spec.addons = serde_yaml::from_str(yaml).unwrap();
    c
}

fn errors(c: &Cluster) -> Vec<String> {
    validate(c).iter().map(|e| e.to_string()).collect()
}

#[test]
fn bundles_and_channel() {
    for plugin in [NetworkingPlugin::Flannel, NetworkingPlugin::Cilium] {
        let c = cluster(plugin);
        let bundles = bundles(&c).unwrap();
        let names: Vec<&str> = bundles.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            names,
            [
                &format!("networking.{}", plugin.as_str()) as &str,
                "aws-cloud-controller-manager",
                "aws-ebs-csi-driver",
                "metrics-server",
                "aws-node-termination-handler",
            ]
        );
        assert!(bundles[0].manifest.contains(crate::model::POD_CIDR));
        let ch = channel(&bundles);
        // The bootstrap script reads the manifests with this sed expression.
        let listed: Vec<&str> = ch
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("manifest: "))
            .collect();
        let paths: Vec<&str> = bundles.iter().map(|b| b.path.as_str()).collect();
        assert_eq!(listed, paths);
        let parsed = parse_channel(ch.as_bytes()).unwrap();
        assert_eq!(parsed.len(), bundles.len());
        assert_eq!(parsed[2].name, "aws-ebs-csi-driver");
        assert_eq!(parsed[2].hash.as_deref(), Some(bundles[2].hash().as_str()));
        for b in &bundles {
            // The network bundles per plugin; the rest are the same for both.
            if b.name.starts_with("networking.") || plugin == NetworkingPlugin::Flannel {
                insta::assert_snapshot!(format!("{}_{}", plugin.as_str(), b.name), b.manifest);
            }
        }
    }
}

#[test]
fn every_object_is_labelled_and_every_kind_is_prunable() {
    let c = with_addons("{cluster-autoscaler: {enabled: true}}");
    for b in BUNDLES {
        let r = render(b, &c).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&r.manifest) {
            let o = Value::deserialize(doc).unwrap();
            let labels = &o["metadata"]["labels"];
            assert_eq!(labels[MANAGED_BY.0].as_str(), Some(MANAGED_BY.1), "{o:?}");
            assert_eq!(labels[BUNDLE_LABEL].as_str(), Some(b.name), "{o:?}");
            let kind = o["kind"].as_str().unwrap();
            assert!(
                NEVER_PRUNED.contains(&kind) || PRUNABLE.iter().any(|(k, _, _)| *k == kind),
                "{}: {kind} is neither prunable nor never pruned",
                b.name
            );
            // Images are pinned.
            let text = serde_yaml::to_string(&o).unwrap();
            assert!(!text.contains(":latest"), "{}", b.name);
        }
    }
}

#[test]
fn crds_come_before_their_custom_resources() {
    let b = Bundle {
        name: "test",
        when: When::OptIn,
        template: "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\n\
                   apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n---\n\
                   apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\n",
        iam: None,
        settings: &[],
        version: |_| "1".into(),
        image_tag: none,
    };
    let r = render(&b, &cluster(NetworkingPlugin::Flannel)).unwrap();
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&r.manifest)
        .map(|d| {
            Value::deserialize(d).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["CustomResourceDefinition", "Namespace", "Widget"]);
}

#[test]
fn settings_and_overrides_change_the_rendering() {
    let c = with_addons(
        r#"
metrics-server:
  replicas: 3
  overrides:
    Deployment/metrics-server:
      spec:
        template:
          spec:
            nodeSelector:
              keelson.dev/role: master
aws-ebs-csi-driver:
  defaultStorageClass: false
  volumeType: io2
  overrides:
    StorageClass/gp3:
      parameters:
        iopsPerGB: "50"
        csi.storage.k8s.io/fstype: null
"#,
    );
    assert_eq!(errors(&c), Vec::<String>::new());
    let all = bundles(&c).unwrap();
    let ms = &all
        .iter()
        .find(|b| b.name == "metrics-server")
        .unwrap()
        .manifest;
    assert!(ms.contains("replicas: 3"), "{ms}");
    assert!(ms.contains("keelson.dev/role: master"), "{ms}");
    // The override merges: the template's selector stays.
    assert!(ms.contains("kubernetes.io/os: linux"), "{ms}");
    assert!(ms.contains("kind: PodDisruptionBudget"));
    let ebs = &all
        .iter()
        .find(|b| b.name == "aws-ebs-csi-driver")
        .unwrap()
        .manifest;
    assert!(
        ebs.contains("type: io2") && ebs.contains("iopsPerGB: '50'"),
        "{ebs}"
    );
    assert!(!ebs.contains("is-default-class") && !ebs.contains("csi.storage.k8s.io/fstype"));
    insta::assert_snapshot!("metrics-server_with_overrides", ms);
}

#[test]
fn bundles_are_switched_on_and_off() {
    let c =
        with_addons("{aws-ebs-csi-driver: {enabled: false}, cluster-autoscaler: {enabled: true}}");
    let names: Vec<String> = bundles(&c).unwrap().into_iter().map(|b| b.name).collect();
    assert!(!names.contains(&"aws-ebs-csi-driver".to_string()));
    let c = with_addons("{metrics-server: {replicas: 1}}");
    let ms = bundles(&c).unwrap();
    let ms = &ms
        .iter()
        .find(|b| b.name == "metrics-server")
        .unwrap()
        .manifest;
    assert!(
        !ms.contains("PodDisruptionBudget"),
        "one replica, no budget"
    );
}

#[test]
fn bad_configuration_is_refused_with_field_value_and_fix() {
    let cases = [
        (
            "{ebs: {enabled: true}}",
            "spec.addons.ebs: is not an addon bundle; use one of networking.flannel, networking.cilium, aws-cloud-controller-manager, aws-ebs-csi-driver",
        ),
        (
            "{metrics-server: {replica: 2}}",
            "spec.addons.metrics-server.replica: is not a setting of this bundle; use one of replicas, `enabled` or `overrides`",
        ),
        (
            "{metrics-server: {replicas: 9}}",
            "spec.addons.metrics-server.replicas: 9 is out of range; use a whole number from 1 to 5",
        ),
        (
            "{metrics-server: {replicas: two}}",
            "spec.addons.metrics-server.replicas: two is not a whole number",
        ),
        (
            "{aws-ebs-csi-driver: {volumeType: gp1}}",
            "spec.addons.aws-ebs-csi-driver.volumeType: gp1 is not a choice of this setting; use one of gp3, gp2, io2, st1, sc1",
        ),
        (
            "{aws-ebs-csi-driver: {defaultStorageClass: yes please}}",
            "spec.addons.aws-ebs-csi-driver.defaultStorageClass: yes please is not a boolean; use true or false",
        ),
        (
            "{metrics-server: {overrides: {Deployment/metric-server: {spec: {replicas: 1}}}}}",
            "spec.addons.metrics-server.overrides: Deployment/metric-server names no object of this bundle; use one of ServiceAccount/metrics-server,",
        ),
        (
            "{metrics-server: {overrides: {metrics-server: {spec: {}}}}}",
            "spec.addons.metrics-server.overrides: metrics-server is not a Kind/name key",
        ),
        (
            "{metrics-server: {overrides: {Deployment/metrics-server: {metadata: {name: other}}}}}",
            "spec.addons.metrics-server.overrides.Deployment/metrics-server.metadata.name: cannot be overridden",
        ),
        (
            "{metrics-server: {overrides: {Deployment/metrics-server: [1]}}}",
            "spec.addons.metrics-server.overrides.Deployment/metrics-server: is not a mapping",
        ),
        (
            "{cluster-autoscaler: {expander: price}}",
            "spec.addons.cluster-autoscaler.expander: price is not a choice of this setting; use one of least-waste, most-pods, least-nodes, random",
        ),
        (
            "{cluster-autoscaler: {scaleDownUtilizationThreshold: 1.5}}",
            "spec.addons.cluster-autoscaler.scaleDownUtilizationThreshold: 1.5 is out of range; use a number from 0 to 1",
        ),
        (
            "{cluster-autoscaler: {scaleDownUtilizationThreshold: half}}",
            "spec.addons.cluster-autoscaler.scaleDownUtilizationThreshold: half is not a number; use a number from 0 to 1",
        ),
        (
            "{networking.flannel: {enabled: false}}",
            "spec.addons.networking.flannel.enabled: false cannot be set on a network bundle; choose the network with spec.networking",
        ),
        (
            "{aws-cloud-controller-manager: {enabled: false}}",
            "spec.addons.aws-cloud-controller-manager.enabled: false cannot be set",
        ),
        (
            "{aws-cloud-controller-manager: {replicas: 2}}",
            "spec.addons.aws-cloud-controller-manager.replicas: is not a setting of this bundle; remove it: the bundle has no settings",
        ),
    ];
    for (yaml, want) in cases {
        let got = errors(&with_addons(yaml));
        assert_eq!(got.len(), 1, "{yaml}: {got:?}");
        assert!(
            got[0].starts_with(want),
            "{yaml}:\n got {}\nwant {want}",
            got[0]
        );
    }
    // Through the cluster's validation, with the object named.
    let c = with_addons("{ebs: {}}");
    let e = crate::spec::validate::validate(&c, &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Cluster addons.k8s.local spec.addons.ebs: is not an addon bundle"),
        "{e}"
    );
}

#[test]
fn the_masters_statements_follow_the_enabled_bundles() {
    let on = masters_statements(&cluster(NetworkingPlugin::Flannel)).unwrap();
    let names: Vec<&str> = on.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["aws-ebs-csi-driver"]);
    // Every statement that changes a resource is scoped by the cluster's tag.
    for s in &on[0].1 {
        let actions = s["Action"].to_string();
        if actions.contains("Describe") {
            continue;
        }
        let cond = s["Condition"].to_string();
        assert!(
            cond.contains("addons.k8s.local") || cond.contains("ec2:CreateAction"),
            "{s}"
        );
    }
    let off = masters_statements(&with_addons("{aws-ebs-csi-driver: {enabled: false}}")).unwrap();
    assert!(off.is_empty());
    // The cluster autoscaler's join only when it is enabled, and change only the
    // groups tagged as this cluster's (the nodes' ASGs).
    let ca = masters_statements(&with_addons("{cluster-autoscaler: {enabled: true}}")).unwrap();
    let names: Vec<&str> = ca.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["aws-ebs-csi-driver", "cluster-autoscaler"]);
    let scoped = &ca[1].1[1];
    assert_eq!(
        scoped["Action"],
        serde_json::json!([
            "autoscaling:SetDesiredCapacity",
            "autoscaling:TerminateInstanceInAutoScalingGroup"
        ])
    );
    assert_eq!(
        scoped["Condition"]["StringEquals"]["aws:ResourceTag/k8s.io/cluster-autoscaler/addons.k8s.local"],
        "owned"
    );
    for s in &ca[1].1 {
        if s.get("Condition").is_none() {
            let actions = s["Action"].to_string();
            assert!(
                !actions.contains("SetDesired") && !actions.contains("Terminate"),
                "{s}"
            );
        }
    }
    let ca_off =
        masters_statements(&with_addons("{cluster-autoscaler: {enabled: false}}")).unwrap();
    assert_eq!(ca_off.len(), 1);
}

#[test]
fn the_cluster_autoscaler_is_opt_in_and_discovers_the_nodes_groups() {
    assert!(
        !bundles(&cluster(NetworkingPlugin::Flannel))
            .unwrap()
            .iter()
            .any(|b| b.name == "cluster-autoscaler")
    );
    let c = with_addons("{cluster-autoscaler: {enabled: true}}");
    assert_eq!(errors(&c), Vec::<String>::new());
    let all = bundles(&c).unwrap();
    let last = all.last().unwrap();
    assert_eq!(last.name, "cluster-autoscaler");
    // Released per Kubernetes minor.
    let minor = crate::spec::validate::kubernetes_minor(&c.spec.kubernetes_version).unwrap();
    assert_eq!(last.version, format!("1.{minor}.0"));
    assert!(last.manifest.contains(&format!(
        "image: registry.k8s.io/autoscaling/cluster-autoscaler:v1.{minor}.0"
    )));
    // The tags the nodes' Auto Scaling groups carry (src/model/instances.rs).
    assert!(last.manifest.contains(
        "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/addons.k8s.local"
    ));
    assert!(last.manifest.contains("hostNetwork: true"));
    assert!(last.manifest.contains("--expander=least-waste"));
    assert!(
        last.manifest
            .contains("--scale-down-utilization-threshold=0.5")
    );
    insta::assert_snapshot!("flannel_cluster-autoscaler", last.manifest);
    let c = with_addons(
        "{cluster-autoscaler: {enabled: true, expander: most-pods, scaleDownUtilizationThreshold: 0.65}}",
    );
    assert_eq!(errors(&c), Vec::<String>::new());
    let r = render(bundle("cluster-autoscaler").unwrap(), &c).unwrap();
    assert!(
        r.manifest.contains("--expander=most-pods"),
        "{}",
        r.manifest
    );
    assert!(
        r.manifest
            .contains("--scale-down-utilization-threshold=0.65"),
        "{}",
        r.manifest
    );
    // A whole number is a number too.
    let c = with_addons("{cluster-autoscaler: {enabled: true, scaleDownUtilizationThreshold: 1}}");
    assert_eq!(errors(&c), Vec::<String>::new());
}

#[test]
fn merge_patch_is_rfc_7386() {
    let mut t: Value = serde_yaml::from_str("{a: b, c: {d: e, f: g}}").unwrap();
    merge_patch(
        &mut t,
        &serde_yaml::from_str("{a: z, c: {f: null}}").unwrap(),
    );
    assert_eq!(
        t,
        serde_yaml::from_str::<Value>("{a: z, c: {d: e}}").unwrap()
    );
    merge_patch(&mut t, &serde_yaml::from_str("{a: [1]}").unwrap());
    assert_eq!(t["a"], serde_yaml::from_str::<Value>("[1]").unwrap());
}

#[test]
fn manifest_objects_name_kind_namespace_and_name() {
    let r = render(
        bundle("metrics-server").unwrap(),
        &cluster(NetworkingPlugin::Flannel),
    )
    .unwrap();
    let objects = manifest_objects(&r.manifest);
    assert!(objects.contains(&(
        "Deployment".into(),
        "kube-system".into(),
        "metrics-server".into()
    )));
    assert!(objects.contains(&(
        "APIService".into(),
        String::new(),
        "v1beta1.metrics.k8s.io".into()
    )));
}

#[test]
fn the_preview_diffs_each_changed_bundle_against_the_store() {
    let before = with_addons("{aws-ebs-csi-driver: {enabled: false}}");
    let stored_bundles = bundles(&before).unwrap();
    let stored_channel = channel(&stored_bundles);
    let stored: BTreeMap<String, String> = stored_bundles
        .iter()
        .map(|b| (b.path.clone(), b.manifest.clone()))
        .collect();
    // Nothing changed: nothing to show.
    assert!(
        preview(&before, Some(stored_channel.as_bytes()), &stored)
            .unwrap()
            .is_empty()
    );
    // Enabled the CSI driver, changed metrics-server, disabled the termination handler.
    let after = with_addons(
        "{metrics-server: {replicas: 3}, aws-node-termination-handler: {enabled: false}}",
    );
    assert_eq!(
        paths_to_compare(&after, Some(stored_channel.as_bytes())),
        ["metrics-server/v0.8.0.yaml"]
    );
    let changes = preview(&after, Some(stored_channel.as_bytes()), &stored).unwrap();
    let text: String = changes.iter().map(|c| c.describe()).collect();
    // (Not a golden file: src/addons/snapshots holds manifests only, which the
    // CLI tests feed to kubernetes-validate.)
    assert!(
        text.starts_with(
            "+ aws-ebs-csi-driver 1.44.0 (new bundle)\n    + CSIDriver/ebs.csi.aws.com\n"
        ),
        "{text}"
    );
    assert!(text.contains("~ metrics-server 0.8.0\n    --- metrics-server/v0.8.0.yaml\n    +++ metrics-server/v0.8.0.yaml\n"), "{text}");
    assert!(
        text.ends_with(
            "- aws-node-termination-handler 1.25.0 (disabled: the masters delete its objects)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("-  replicas: 2\n    +  replicas: 3"),
        "{text}"
    );
    assert!(
        text.contains("+ EbsCsiCreateVolume: ec2:CreateVolume when"),
        "{text}"
    );
}
