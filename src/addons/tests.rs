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

/// Both observability bundles on, with one receiver of each kind.
pub(crate) const OBSERVABILITY: &str = r##"
monitoring:
  enabled: true
  receivers:
    - name: ops-slack
      matchers: ['severity=~"warning|critical"']
      slack: {channel: "#alerts", secret: alertmanager-slack}
    - name: oncall
      matchers: [severity=critical]
      pagerduty: {secret: alertmanager-pagerduty}
    - name: mail
      email: {to: ops@example.com, from: alertmanager@example.com, smarthost: "smtp.example.com:587", username: alertmanager, secret: alertmanager-smtp}
    - name: hook
      webhook: {url: "https://hooks.example.com/alerts", secret: alertmanager-webhook}
logging:
  enabled: true
"##;

/// The data of a ConfigMap in a manifest.
pub(crate) fn config_map(manifest: &str, name: &str, key: &str) -> String {
    for doc in serde_yaml::Deserializer::from_str(manifest) {
        let o = Value::deserialize(doc).unwrap();
        if o["kind"] == "ConfigMap" && o["metadata"]["name"] == name {
            return o["data"][key].as_str().unwrap().to_string();
        }
    }
    panic!("no ConfigMap {name}")
}

fn observability() -> (String, String) {
    let c = with_addons(OBSERVABILITY);
    assert_eq!(errors(&c), Vec::<String>::new());
    let all = bundles(&c).unwrap();
    let get = |n: &str| all.iter().find(|b| b.name == n).unwrap().manifest.clone();
    (get("monitoring"), get("logging"))
}

#[test]
fn monitoring_and_logging_are_opt_in_and_render() {
    let names: Vec<String> = bundles(&cluster(NetworkingPlugin::Flannel))
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert!(!names.iter().any(|n| n == "monitoring" || n == "logging"));
    let (m, l) = observability();
    for want in [
        "kind: StatefulSet\nmetadata:\n  name: prometheus",
        "--storage.tsdb.retention.time=15d",
        "--storage.tsdb.retention.size=42GB",
        "storage: 50Gi",
        "storageClassName: gp3",
        "image: quay.io/prometheus/prometheus:v2.55.1",
        "api_url_file: /etc/alertmanager/secrets/ops-slack/url",
        "routing_key_file: /etc/alertmanager/secrets/oncall/routing-key",
        "auth_password_file: /etc/alertmanager/secrets/mail/password",
        "credentials_file: /etc/alertmanager/secrets/hook/token",
        "secretName: alertmanager-pagerduty",
        "name: node-exporter",
        "name: kube-state-metrics",
    ] {
        assert!(m.contains(want), "{want}");
    }
    for want in [
        "replicas: 3",
        "vm.max_map_count=262144",
        "privileged: true",
        "name: opensearch-retention-7d",
        "\"min_index_age\":\"7d\"",
        "storage: 100Gi",
        "name: opensearch-dashboards",
    ] {
        assert!(l.contains(want), "{want}");
    }
    // Without a zone, no Ingress even with the setting on.
    assert!(!m.contains("kind: Ingress") && !l.contains("kind: Ingress"));
    insta::assert_snapshot!("flannel_monitoring", m);
    insta::assert_snapshot!("flannel_logging", l);

    // The settings change the rendering.
    let mut c = with_addons(
        "{monitoring: {enabled: true, retentionDays: 30, storageGi: 200, ingress: true}, logging: {enabled: true, retentionDays: 14, storageGi: 20, ingress: true, clusterIssuer: internal}, traefik: {enabled: true}, cert-manager: {enabled: true, email: ops@example.com}}",
    );
    c.spec.dns_zone = Some("example.com".into());
    assert_eq!(errors(&c), Vec::<String>::new());
    let m = render(bundle("monitoring").unwrap(), &c).unwrap().manifest;
    let l = render(bundle("logging").unwrap(), &c).unwrap().manifest;
    assert!(m.contains("retention.time=30d") && m.contains("retention.size=170GB"));
    assert!(m.contains("storage: 200Gi"));
    assert!(m.contains("host: grafana.example.com") && m.contains("ingressClassName: traefik"));
    assert!(m.contains("cert-manager.io/cluster-issuer: letsencrypt"));
    assert!(!m.contains("host: prometheus."), "no sign-on: no ingress");
    assert!(
        l.contains("name: opensearch-retention-14d") && l.contains("\"min_index_age\":\"14d\"")
    );
    assert!(l.contains("host: logs.example.com") && l.contains("cluster-issuer: internal"));
    insta::assert_snapshot!("flannel_monitoring_ingress", m);
}

#[test]
fn an_observability_ingress_needs_a_zone_traefik_and_cert_manager() {
    // A gossip cluster: no zone, so no host to serve Grafana at.
    let c = with_addons("{monitoring: {enabled: true, ingress: true}}");
    let e = errors(&c);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "spec.addons.monitoring.ingress: true needs a DNS zone for the host grafana.ZONE"
        ) && e[0].contains("kubectl port-forward"),
        "{e:?}"
    );
    let mut c = with_addons("{logging: {enabled: true, ingress: true}}");
    c.spec.dns_zone = Some("example.com".into());
    let e = errors(&c);
    assert!(
        e.iter()
            .any(|m| m.starts_with("spec.addons.logging.ingress: true needs the traefik bundle")),
        "{e:?}"
    );
    let mut c = with_addons("{logging: {enabled: true, ingress: true}, traefik: {enabled: true}}");
    c.spec.dns_zone = Some("example.com".into());
    let e = errors(&c);
    assert!(
        e.iter()
            .any(|m| m.contains("needs the cert-manager bundle")),
        "{e:?}"
    );
    // A disabled bundle's setting is not held against the cluster.
    assert_eq!(
        errors(&with_addons(
            "{monitoring: {enabled: false, ingress: true}}"
        )),
        Vec::<String>::new()
    );
}

/// A Fluent Bit section: its header and its `Key Value` entries, in order.
type Section = (String, Vec<(String, String)>);

/// Fluent Bit's classic format: `[SECTION]` headers, then `Key Value` lines
/// indented under them; comments and blank lines aside.
fn parse_fluent_bit(text: &str) -> Result<Vec<Section>, String> {
    let mut sections: Vec<Section> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(h) = t.strip_prefix('[') {
            let h = h
                .strip_suffix(']')
                .ok_or(format!("line {n}: unclosed section header"))?;
            if line.starts_with(' ') {
                return Err(format!("line {n}: an indented section header"));
            }
            if ![
                "SERVICE",
                "INPUT",
                "FILTER",
                "OUTPUT",
                "PARSER",
                "MULTILINE_PARSER",
            ]
            .contains(&h)
            {
                return Err(format!("line {n}: unknown section {h}"));
            }
            sections.push((h.to_string(), Vec::new()));
            continue;
        }
        if !line.starts_with("    ") {
            return Err(format!("line {n}: a key outside a section or not indented"));
        }
        let (k, v) = t
            .split_once(char::is_whitespace)
            .ok_or(format!("line {n}: a key without a value"))?;
        let Some((_, entries)) = sections.last_mut() else {
            return Err(format!("line {n}: a key before any section"));
        };
        entries.push((k.to_string(), v.trim().to_string()));
    }
    Ok(sections)
}

#[test]
fn fluent_bit_configuration_is_well_formed() {
    assert!(parse_fluent_bit("[INPUT]\nName tail\n").is_err());
    assert!(parse_fluent_bit("[INPUT\n    Name tail\n").is_err());
    assert!(parse_fluent_bit("[INPUTS]\n    Name tail\n").is_err());
    assert!(parse_fluent_bit("[INPUT]\n    Name\n").is_err());
    let (_, l) = observability();
    let conf = config_map(&l, "fluent-bit", "fluent-bit.conf");
    let sections = parse_fluent_bit(&conf).unwrap();
    let value = |s: &[(String, String)], k: &str| {
        s.iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    // One [SERVICE], and every plugin section names its plugin once; inputs
    // are tagged and every other plugin matches.
    assert_eq!(sections.iter().filter(|(h, _)| h == "SERVICE").count(), 1);
    let plugins = |kind: &str| -> Vec<String> {
        sections
            .iter()
            .filter(|(h, _)| h == kind)
            .map(|(_, s)| {
                let names = value(s, "Name");
                assert_eq!(names.len(), 1, "{kind}: {s:?}");
                if kind == "INPUT" {
                    assert_eq!(value(s, "Tag").len(), 1, "{s:?}");
                } else {
                    assert_eq!(value(s, "Match").len(), 1, "{s:?}");
                }
                names[0].clone()
            })
            .collect()
    };
    assert_eq!(plugins("INPUT"), ["tail", "systemd"]);
    assert_eq!(plugins("FILTER"), ["kubernetes", "record_modifier"]);
    assert_eq!(plugins("OUTPUT"), ["opensearch", "opensearch"]);
    let tail = &sections
        .iter()
        .find(|(h, s)| h == "INPUT" && value(s, "Name") == ["tail"])
        .unwrap()
        .1;
    assert_eq!(value(tail, "Path"), ["/var/log/containers/*.log"]);
    let journal = &sections
        .iter()
        .find(|(_, s)| value(s, "Name") == ["systemd"])
        .unwrap()
        .1;
    assert_eq!(
        value(journal, "Systemd_Filter"),
        [
            "_SYSTEMD_UNIT=kubelet.service",
            "_SYSTEMD_UNIT=containerd.service"
        ]
    );
    // Each input's tag is matched by an output.
    for (prefix, out) in [("kube.", "logs-kube"), ("host.", "logs-host")] {
        assert!(sections.iter().any(|(h, s)| h == "OUTPUT"
            && value(s, "Match") == [format!("{prefix}*")]
            && value(s, "Logstash_Prefix") == [out]));
    }
    // The password comes from the environment (the Secret), not the file.
    for (_, s) in sections.iter().filter(|(h, _)| h == "OUTPUT") {
        assert_eq!(value(s, "HTTP_Passwd"), ["${OPENSEARCH_PASSWORD}"]);
    }
    // The retention policy's index pattern covers both outputs' indices.
    let policy: serde_json::Value =
        serde_json::from_str(&config_map(&l, "opensearch-retention", "policy.json")).unwrap();
    assert_eq!(
        policy["policy"]["ism_template"][0]["index_patterns"],
        serde_json::json!(["logs-*"])
    );
}

#[test]
fn no_secret_reaches_a_manifest_or_an_error() {
    let (m, l) = observability();
    for manifest in [&m, &l] {
        for doc in serde_yaml::Deserializer::from_str(manifest) {
            let o = Value::deserialize(doc).unwrap();
            // No Secret object at all: credentials live in Secrets made in the
            // cluster (by hand, or by the generator Jobs), never in a manifest.
            assert_ne!(o["kind"], "Secret");
        }
        // Inline credential fields of Alertmanager are never used, only *_file.
        for inline in [
            "api_url:",
            "routing_key:",
            "service_key:",
            "auth_password:",
            "credentials:",
        ] {
            assert!(!manifest.contains(inline), "{inline}");
        }
        assert!(!manifest.contains("OPENSEARCH_INITIAL_ADMIN_PASSWORD\n              value"));
    }
    // A credential put in the spec by mistake is refused, without being repeated.
    for yaml in [
        "{monitoring: {receivers: [{name: s, slack: {channel: '#a', url: 'https://hooks.slack.com/services/T0/B0/SECRETVALUE'}}]}}",
        "{monitoring: {receivers: [{name: p, pagerduty: {routingKey: SECRETVALUE, secret: pd}}]}}",
        "{monitoring: {receivers: [{name: e, email: {to: a@b.c, from: d@e.f, smarthost: 'smtp.e.f:587', password: SECRETVALUE, secret: smtp}}]}}",
    ] {
        let e = errors(&with_addons(yaml));
        assert_eq!(e.len(), 1, "{yaml}");
        assert!(!e[0].contains("SECRETVALUE"), "{}", e[0]);
        assert!(
            e[0].contains("credentials go in the Secret named by secret"),
            "{}",
            e[0]
        );
    }
}

#[test]
fn bad_observability_settings_are_refused_with_field_and_fix() {
    let cases = [
        (
            "{monitoring: {retentionDays: 0}}",
            "spec.addons.monitoring.retentionDays: 0 is out of range; use a whole number from 1 to 365",
        ),
        (
            "{monitoring: {storageGi: 5}}",
            "spec.addons.monitoring.storageGi: 5 is out of range; use a whole number from 10 to 16384",
        ),
        (
            "{logging: {retentionDays: a week}}",
            "spec.addons.logging.retentionDays: a week is not a whole number",
        ),
        (
            "{logging: {replicas: 5}}",
            "spec.addons.logging.replicas: is not a setting of this bundle; use one of retentionDays, storageGi, ingress, clusterIssuer",
        ),
        (
            "{logging: {clusterIssuer: Lets Encrypt}}",
            "spec.addons.logging.clusterIssuer: is not a ClusterIssuer's name",
        ),
        (
            "{monitoring: {receivers: {name: x}}}",
            "spec.addons.monitoring.receivers: is not a list",
        ),
        (
            "{monitoring: {receivers: [{slack: {channel: '#a', secret: s}}]}}",
            "spec.addons.monitoring.receivers: receivers[0] has no name; add name: NAME",
        ),
        (
            "{monitoring: {receivers: [{name: a, slack: {channel: '#a'}}]}}",
            "spec.addons.monitoring.receivers: receivers[0].slack names no secret; add secret: NAME, a Secret in the monitoring namespace whose key `url` holds the credential",
        ),
        (
            "{monitoring: {receivers: [{name: a, slack: {channel: alerts, secret: s}}]}}",
            "spec.addons.monitoring.receivers: receivers[0].slack.channel alerts is not a channel; use #name",
        ),
        (
            "{monitoring: {receivers: [{name: a, pagerduty: {secret: p}, slack: {channel: '#a', secret: s}}]}}",
            "spec.addons.monitoring.receivers: receivers[0] (a) has 2 kinds; give exactly one of slack, email, webhook, pagerduty",
        ),
        (
            "{monitoring: {receivers: [{name: a, pagerduty: {secret: p}}, {name: a, pagerduty: {secret: q}}]}}",
            "spec.addons.monitoring.receivers: receivers[1].name a is given twice",
        ),
        (
            "{monitoring: {receivers: [{name: a, pagerduty: {secret: Bad_Name}}]}}",
            "spec.addons.monitoring.receivers: receivers[0].pagerduty.secret Bad_Name is not a Secret's name",
        ),
        (
            "{monitoring: {receivers: [{name: a, webhook: {url: 'ftp://x'}}]}}",
            "spec.addons.monitoring.receivers: receivers[0].webhook.url ftp://x is not an http(s) URL",
        ),
        (
            "{monitoring: {receivers: [{name: a, email: {to: ops, from: a@b.c, smarthost: 'h:25', secret: s}}]}}",
            "spec.addons.monitoring.receivers: receivers[0].email.to ops is not an email address",
        ),
        (
            "{monitoring: {receivers: [{name: a, email: {to: o@b.c, from: a@b.c, smarthost: h, secret: s}}]}}",
            "spec.addons.monitoring.receivers: receivers[0].email.smarthost h is not HOST:PORT",
        ),
        (
            "{monitoring: {receivers: [{name: a, matchers: ['severity>1'], pagerduty: {secret: p}}]}}",
            "spec.addons.monitoring.receivers: receivers[0].matchers has a bad matcher severity>1",
        ),
        (
            "{monitoring: {receivers: [{name: a, route: x, pagerduty: {secret: p}}]}}",
            "spec.addons.monitoring.receivers: receivers[0].route is not a field of a receiver",
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
}

/// A cluster in the Route53 zone example.com (external-dns needs one).
fn dns_cluster(addons: &str) -> Cluster {
    let mut c = new_cluster(&NewCluster {
        name: "addons.example.com".into(),
        zones: vec!["us-east-1a".into()],
        dns: Some(crate::spec::DnsType::Public),
        dns_zone: Some("example.com".into()),
        ..Default::default()
    })
    .unwrap()
    .0;
    c.spec.addons = serde_yaml::from_str(addons).unwrap();
    c
}

fn rendered(c: &Cluster, name: &str) -> String {
    render(bundle(name).unwrap(), c).unwrap().manifest
}

/// Every object of a rendering is of a prunable (or never pruned) kind.
fn assert_prunable(manifest: &str) {
    for doc in serde_yaml::Deserializer::from_str(manifest) {
        let o = Value::deserialize(doc).unwrap();
        let kind = o["kind"].as_str().unwrap();
        assert!(
            NEVER_PRUNED.contains(&kind) || PRUNABLE.iter().any(|(k, _, _)| *k == kind),
            "{kind} is neither prunable nor never pruned"
        );
        assert_eq!(
            o["metadata"]["labels"][MANAGED_BY.0].as_str(),
            Some("keelson")
        );
    }
    assert!(!manifest.contains(":latest"));
}

#[test]
fn external_dns_writes_the_clusters_zone_from_the_control_plane() {
    let c = dns_cluster("{external-dns: {enabled: true}}");
    assert_eq!(errors(&c), Vec::<String>::new());
    let names: Vec<String> = bundles(&c).unwrap().into_iter().map(|b| b.name).collect();
    assert!(names.contains(&"external-dns".to_string()), "{names:?}");
    let m = rendered(&c, "external-dns");
    for want in [
        "image: registry.k8s.io/external-dns/external-dns:v0.20.0",
        "- --provider=aws",
        "- --source=service",
        "- --source=ingress",
        "- --domain-filter=example.com",
        "- --txt-owner-id=addons.example.com",
        "- --policy=upsert-only",
        "- --aws-zone-type=public",
        "hostNetwork: true",
        "node-role.kubernetes.io/control-plane: ''",
    ] {
        assert!(m.contains(want), "{want}:\n{m}");
    }
    assert!(!m.contains("zone-id-filter"));
    assert_prunable(&m);
    insta::assert_snapshot!("external-dns", m);
    let c = dns_cluster("{external-dns: {enabled: true, policy: sync, hostedZoneId: Z0123ABC}}");
    assert_eq!(errors(&c), Vec::<String>::new());
    let m = rendered(&c, "external-dns");
    assert!(m.contains("- --policy=sync") && m.contains("- --zone-id-filter=Z0123ABC"));
}

#[test]
fn external_dns_on_a_gossip_cluster_is_refused_naming_the_field_and_the_fix() {
    let c = with_addons("{external-dns: {enabled: true}}");
    let got = errors(&c);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("spec.addons.external-dns.enabled: true needs a Route53 zone, and cluster addons.k8s.local has none"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("--dns-zone, spec.dnsZone"), "{}", got[0]);
    assert!(matches!(bundles(&c), Err(AddonError::Invalid(_))));
    // Through the cluster's validation, which every writing command runs first.
    let e = crate::spec::validate::validate(&c, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("spec.addons.external-dns.enabled"), "{e}");
    // Disabled, its settings are still checked, and the zone is not needed.
    assert!(errors(&with_addons("{external-dns: {policy: sync}}")).is_empty());
}

#[test]
fn the_masters_policy_grows_and_shrinks_with_external_dns() {
    let sids = |c: &Cluster| -> Vec<String> {
        masters_statements(c)
            .unwrap()
            .into_iter()
            .flat_map(|(_, s)| s)
            .map(|s| s["Sid"].as_str().unwrap().to_string())
            .collect()
    };
    let off = sids(&dns_cluster("{}"));
    assert!(!off.iter().any(|s| s.starts_with("ExternalDns")), "{off:?}");
    let c = dns_cluster("{external-dns: {enabled: true}}");
    let on = sids(&c);
    assert_eq!(on.len(), off.len() + 2, "{on:?}");
    let st = masters_statements(&c).unwrap();
    let (name, ext) = st.last().unwrap();
    assert_eq!(*name, "external-dns");
    assert_eq!(
        ext[0]["Action"],
        serde_json::json!(["route53:ChangeResourceRecordSets"])
    );
    assert_eq!(
        ext[0]["Resource"],
        serde_json::json!(["arn:aws:route53:::hostedzone/*"])
    );
    // Only the names of the cluster's zone, whatever the zone's id.
    assert_eq!(
        ext[0]["Condition"]["ForAllValues:StringLike"]["route53:ChangeResourceRecordSetsNormalizedRecordNames"],
        serde_json::json!(["example.com", "*.example.com"])
    );
    assert_eq!(
        ext[1]["Action"],
        serde_json::json!([
            "route53:ListHostedZones",
            "route53:ListResourceRecordSets",
            "route53:ListTagsForResource"
        ])
    );
    // With the zone's id: that zone's ARN only.
    let c = dns_cluster("{external-dns: {enabled: true, hostedZoneId: /hostedzone/Z0123ABC}}");
    assert!(errors(&c).is_empty());
    let c = dns_cluster("{external-dns: {enabled: true, hostedZoneId: Z0123ABC}}");
    let st = masters_statements(&c).unwrap();
    assert_eq!(
        st.last().unwrap().1[0]["Resource"],
        serde_json::json!(["arn:aws:route53:::hostedzone/Z0123ABC"])
    );
    // And in the masters' role policy the model builds.
    let policy = |c: &Cluster| -> String {
        let mut d = crate::model::Desired::default();
        let groups = new_cluster(&NewCluster {
            name: "addons.example.com".into(),
            zones: vec!["us-east-1a".into()],
            dns: Some(crate::spec::DnsType::Public),
            dns_zone: Some("example.com".into()),
            ..Default::default()
        })
        .unwrap()
        .1;
        crate::model::iam::build(c, &groups, &mut d).unwrap();
        d.resources
            .values()
            .filter_map(|r| match &r.resource {
                crate::model::Resource::IamRolePolicy(p) if p.role.name.contains("master") => {
                    Some(p.document.to_string())
                }
                _ => None,
            })
            .collect()
    };
    assert!(policy(&c).contains("route53:ChangeResourceRecordSets"));
    assert!(!policy(&dns_cluster("{external-dns: {enabled: false}}")).contains("route53:"));
}

#[test]
fn traefik_serves_ingresses_behind_an_nlb() {
    let c = with_addons("{traefik: {enabled: true}}");
    assert_eq!(errors(&c), Vec::<String>::new());
    let m = rendered(&c, "traefik");
    for want in [
        "image: docker.io/library/traefik:v3.6.9",
        "kind: IngressClass",
        "controller: traefik.io/ingress-controller",
        "ingressclass.kubernetes.io/is-default-class: 'true'",
        "service.beta.kubernetes.io/aws-load-balancer-type: nlb",
        "service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags: KubernetesCluster=addons.k8s.local",
        "type: LoadBalancer",
        "- --providers.kubernetesIngress.ingressClass=traefik",
        "replicas: 2",
        "kind: PodDisruptionBudget",
    ] {
        assert!(m.contains(want), "{want}:\n{m}");
    }
    assert!(!m.contains("kubernetesIngressNGINX") && !m.contains("name: nginx"));
    // No Traefik CRDs, nor their custom resources.
    assert!(!m.contains("CustomResourceDefinition") && !m.contains("traefik.io/v1"));
    assert_prunable(&m);
    insta::assert_snapshot!("traefik", m);
    let c = with_addons(
        "{traefik: {enabled: true, replicas: 1, defaultClass: false, nginxAnnotations: true}}",
    );
    assert_eq!(errors(&c), Vec::<String>::new());
    let m = rendered(&c, "traefik");
    assert!(
        m.contains("- --providers.kubernetesIngressNGINX=true"),
        "{m}"
    );
    assert!(m.contains("controller: k8s.io/ingress-nginx"), "{m}");
    assert!(!m.contains("is-default-class") && !m.contains("PodDisruptionBudget"));
    insta::assert_snapshot!("traefik_nginx_annotations", m);
}

#[test]
fn headlamp_is_read_only_and_keeps_secrets_out_of_the_manifest() {
    let c = with_addons("{headlamp: {enabled: true, groups: [platform-viewers]}}");
    assert_eq!(errors(&c), Vec::<String>::new());
    let m = rendered(&c, "headlamp");
    assert!(m.contains("image: ghcr.io/headlamp-k8s/headlamp:v0.32.0"));
    assert!(!m.contains("name: cluster-admin") && !m.contains("oauth2-proxy:"));
    assert!(!m.contains("kind: Ingress"), "no host, no Ingress");
    for doc in serde_yaml::Deserializer::from_str(&m) {
        let o = Value::deserialize(doc).unwrap();
        match o["kind"].as_str().unwrap() {
            "ClusterRole" => {
                for rule in o["rules"].as_sequence().unwrap() {
                    let verbs: Vec<&str> = rule["verbs"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap())
                        .collect();
                    assert_eq!(verbs, ["get", "list", "watch"], "{rule:?}");
                    let resources = serde_yaml::to_string(&rule["resources"]).unwrap();
                    assert!(!resources.contains("secrets"), "{rule:?}");
                    if resources.contains('*') {
                        assert!(
                            !rule["apiGroups"]
                                .as_sequence()
                                .unwrap()
                                .contains(&"".into()),
                            "{rule:?}"
                        );
                    }
                }
            }
            "ClusterRoleBinding" => {
                assert_eq!(o["roleRef"]["name"], "headlamp-read-only");
                assert_eq!(o["subjects"][1]["kind"], "Group");
                assert_eq!(o["subjects"][1]["name"], "platform-viewers");
            }
            "Service" => assert_eq!(o["spec"]["type"], "ClusterIP"),
            _ => {}
        }
    }
    assert_prunable(&m);
    insta::assert_snapshot!("headlamp", m);

    let c = with_addons(
        r#"{headlamp: {enabled: true, oauth2Proxy: true, issuerURL: "https://login.example.com/realms/ops",
            clientID: headlamp, allowedGroups: [sre], host: headlamp.example.com}}"#,
    );
    assert_eq!(errors(&c), Vec::<String>::new());
    let m = rendered(&c, "headlamp");
    for want in [
        "image: quay.io/oauth2-proxy/oauth2-proxy:v7.11.0",
        "- --oidc-issuer-url=https://login.example.com/realms/ops",
        "- --client-id=headlamp",
        "- --allowed-group=sre",
        "- --redirect-url=https://headlamp.example.com/oauth2/callback",
        "- --upstream=http://headlamp.kube-system.svc:80",
        "ingressClassName: traefik",
        "- host: headlamp.example.com",
        "name: headlamp-oauth2-proxy",
        "key: client-secret",
        "key: cookie-secret",
    ] {
        assert!(m.contains(want), "{want}:\n{m}");
    }
    // The credentials are only referenced: no Secret object, no value.
    assert!(
        !m.contains("kind: Secret")
            && !m.contains("--client-secret")
            && !m.contains("--cookie-secret")
    );
    assert_prunable(&m);
    insta::assert_snapshot!("headlamp_oauth2-proxy", m);
}

#[test]
fn bad_platform_settings_are_refused_with_field_value_and_fix() {
    let cases = [
        (
            "{external-dns: {policy: create-only}}",
            "spec.addons.external-dns.policy: create-only is not a choice of this setting; use one of upsert-only, sync",
        ),
        (
            "{external-dns: {hostedZoneId: example.com}}",
            "spec.addons.external-dns.hostedZoneId: example.com is not a Route53 hosted zone id; use the zone's id",
        ),
        (
            "{traefik: {replicas: 0}}",
            "spec.addons.traefik.replicas: 0 is out of range; use a whole number from 1 to 10",
        ),
        (
            "{traefik: {nginxAnnotations: maybe}}",
            "spec.addons.traefik.nginxAnnotations: maybe is not a boolean; use true or false",
        ),
        (
            "{traefik: {ingressClass: nginx}}",
            "spec.addons.traefik.ingressClass: is not a setting of this bundle; use one of replicas, defaultClass, nginxAnnotations",
        ),
        (
            "{headlamp: {groups: admins}}",
            "spec.addons.headlamp.groups: admins is not a list; use a list of group names",
        ),
        (
            "{headlamp: {groups: [ok, 'two words']}}",
            "spec.addons.headlamp.groups: item 1 (two words) is not a group name",
        ),
        (
            "{headlamp: {oauth2Proxy: true, clientID: headlamp}}",
            "spec.addons.headlamp.issuerURL: is required with oauth2Proxy: true; set issuerURL to your identity provider's issuer URL",
        ),
        (
            "{headlamp: {oauth2Proxy: true, issuerURL: 'https://id.example.com'}}",
            "spec.addons.headlamp.clientID: is required with oauth2Proxy: true; set clientID to your identity provider's client id",
        ),
        (
            "{headlamp: {oauth2Proxy: true, issuerURL: 'http://id.example.com', clientID: h}}",
            "spec.addons.headlamp.issuerURL: http://id.example.com is not an https URL; use the issuer's https URL",
        ),
        (
            "{headlamp: {host: headlamp.example.com}}",
            "spec.addons.headlamp.host: headlamp.example.com is set but oauth2Proxy is false (the dashboard is exposed only behind single sign-on); set oauth2Proxy: true, or remove host",
        ),
        (
            "{headlamp: {oauth2Proxy: true, issuerURL: 'https://id.example.com', clientID: h, host: Headlamp_Example}}",
            "spec.addons.headlamp.host: Headlamp_Example is not a DNS name; use a lowercase host name",
        ),
        (
            "{headlamp: {clientSecret: hunter2}}",
            "spec.addons.headlamp.clientSecret: is not a setting of this bundle; use one of groups, oauth2Proxy",
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
    // A secret mistaken for a setting is never repeated in the error.
    let got = errors(&with_addons("{headlamp: {clientSecret: hunter2}}"));
    assert!(!got[0].contains("hunter2"), "{got:?}");
}

#[test]
fn the_preview_shows_a_new_platform_bundle_and_its_iam_statements() {
    let before = dns_cluster("{}");
    let stored_bundles = bundles(&before).unwrap();
    let stored_channel = channel(&stored_bundles);
    let stored: BTreeMap<String, String> = stored_bundles
        .iter()
        .map(|b| (b.path.clone(), b.manifest.clone()))
        .collect();
    let after = dns_cluster("{external-dns: {enabled: true}, traefik: {enabled: true}}");
    let text: String = preview(&after, Some(stored_channel.as_bytes()), &stored)
        .unwrap()
        .iter()
        .map(|c| c.describe())
        .collect();
    assert!(
        text.contains("+ external-dns 0.20.0 (new bundle)\n    + ClusterRole/external-dns\n"),
        "{text}"
    );
    assert!(
        text.contains("+ Deployment/external-dns (namespace kube-system)\n"),
        "{text}"
    );
    assert!(
        text.contains("      + ExternalDnsChangeRecords: route53:ChangeResourceRecordSets when"),
        "{text}"
    );
    assert!(
        text.contains("+ traefik 3.6.9 (new bundle)\n")
            && text.contains("+ IngressClass/traefik\n"),
        "{text}"
    );
    // Disabled again: the preview says its objects go, and its statements too.
    let text: String = {
        let now = bundles(&after).unwrap();
        let ch = channel(&now);
        let st: BTreeMap<String, String> = now
            .iter()
            .map(|b| (b.path.clone(), b.manifest.clone()))
            .collect();
        preview(&before, Some(ch.as_bytes()), &st)
            .unwrap()
            .iter()
            .map(|c| c.describe())
            .collect()
    };
    assert!(
        text.contains("- external-dns 0.20.0 (disabled: the masters delete its objects)\n"),
        "{text}"
    );
    assert!(text.contains("- ExternalDnsChangeRecords"), "{text}");
}
