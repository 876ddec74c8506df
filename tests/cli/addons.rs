//! The addon bundles against the Kubernetes API simulator with the real kubectl:
//! keelson's own applier (src/node/addons.rs) runs every default bundle through
//! kubectl server-side, twice (the second changes nothing), then lands an
//! override, prunes an object that left a bundle, and a bundle disabled whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keelson::node::NodeError;
use keelson::node::addons::{Applier, Bundle};
use keelson::node::host::{Host, System};
use keelson::spec::defaults::{NewCluster, new_cluster};
use serde_json::Value;

use crate::bootstrap::tools;

/// This machine, with kubectl the pinned one and its discovery cache in `home`.
struct Kubectl {
    bin: PathBuf,
    home: PathBuf,
}

impl Host for Kubectl {
    fn run(&self, program: &str, args: &[String], _: &[(&str, &str)]) -> Result<(), NodeError> {
        self.output(program, args).map(|_| ())
    }
    fn output(&self, program: &str, args: &[String]) -> Result<String, NodeError> {
        assert_eq!(program, "kubectl", "the applier runs only kubectl");
        let out = std::process::Command::new(&self.bin)
            .args(args)
            .env_clear()
            .env("HOME", &self.home)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into())
        } else {
            Err(NodeError::Command {
                command: format!("kubectl {}", args.join(" ")),
                message: String::from_utf8_lossy(&out.stderr).into(),
            })
        }
    }
    fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), NodeError> {
        System.write_file(path, contents, mode)
    }
    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, NodeError> {
        System.read_file(path)
    }
    fn remove_file(&self, path: &Path) -> Result<(), NodeError> {
        System.remove_file(path)
    }
    fn create_dir(&self, path: &Path, mode: u32) -> Result<(), NodeError> {
        System.create_dir(path, mode)
    }
}

/// A simulator and the real kubectl, with keelson's applier pointed at them: the
/// set-up every apply test here shares.
struct Rig {
    rt: tokio::runtime::Runtime,
    dir: PathBuf,
    sim: kube_sim::Handle,
    host: Kubectl,
    kubeconfig: String,
}

fn quiet(_: &str) {}

impl Rig {
    fn start(tag: &str, cluster: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sim = rt
            .block_on(kube_sim::start(kube_sim::Config {
                cluster: cluster.into(),
                dir: dir.join("sim"),
                port: 0,
                ready_after: Duration::ZERO,
                poll: Duration::from_millis(200),
                kubernetes_version: "v1.35.0".into(),
                ec2: None,
                extra_instances: vec![],
            }))
            .unwrap();
        let host = Kubectl {
            bin: tools().join("kubectl"),
            home: dir.join("home"),
        };
        let kubeconfig = sim.kubeconfig.display().to_string();
        Rig {
            rt,
            dir,
            sim,
            host,
            kubeconfig,
        }
    }

    fn applier(&self) -> Applier<'_> {
        Applier {
            host: &self.host,
            kubeconfig: &self.kubeconfig,
            dir: self.dir.join("addons"),
            attempts: 1,
            retry_pause: Duration::ZERO,
            log: &quiet,
        }
    }

    /// Stops the simulator, then removes its directory.
    fn finish(self) {
        let Rig { dir, sim, .. } = self;
        drop(sim);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `kubectl ARGS -o json`, parsed.
    fn kubectl(&self, args: &[&str]) -> Value {
        let mut a: Vec<String> = vec!["--kubeconfig".into(), self.kubeconfig.clone()];
        a.extend(args.iter().map(|s| s.to_string()));
        a.extend(["-o".into(), "json".into()]);
        serde_json::from_str(&self.host.output("kubectl", &a).unwrap()).unwrap()
    }
}

fn cluster(addons: &str) -> keelson::spec::Cluster {
    let mut c = new_cluster(&NewCluster {
        name: "addons.k8s.local".into(),
        zones: vec!["us-east-1a".into()],
        ..Default::default()
    })
    .unwrap()
    .0;
    c.spec.addons = serde_yaml::from_str(addons).unwrap();
    assert!(keelson::addons::validate(&c).is_empty());
    c
}

fn channel(c: &keelson::spec::Cluster) -> Vec<Bundle> {
    keelson::addons::bundles(c)
        .unwrap()
        .into_iter()
        .map(|r| Bundle {
            hash: r.hash(),
            name: r.name,
            version: r.version,
            manifest: r.path,
            body: r.manifest.into_bytes(),
        })
        .collect()
}

#[test]
fn real_kubectl_applies_every_bundle_idempotently_and_prunes() {
    let rig = Rig::start("keelson-addons", "addons.k8s.local");
    let rt = &rig.rt;
    let applier = rig.applier();
    let kubectl = |args: &[&str]| rig.kubectl(args);
    let types: Vec<String> = keelson::addons::PRUNABLE
        .iter()
        .map(|(_, g, r)| {
            if g.is_empty() {
                r.to_string()
            } else {
                format!("{r}.{g}")
            }
        })
        .collect();
    let types = types.join(",");
    // (kind/namespace/name, resourceVersion) of everything keelson manages.
    let managed = || -> Vec<(String, String)> {
        let l = kubectl(&[
            "get",
            &types,
            "-A",
            "-l",
            "app.kubernetes.io/managed-by=keelson",
        ]);
        let mut v: Vec<(String, String)> = l["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let m = &i["metadata"];
                (
                    format!(
                        "{}/{}/{}",
                        i["kind"].as_str().unwrap(),
                        m["namespace"].as_str().unwrap_or(""),
                        m["name"].as_str().unwrap()
                    ),
                    m["resourceVersion"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };

    let c = cluster("{}");
    let bundles = channel(&c);
    let first = rt.block_on(applier.apply(&bundles));
    assert!(first.failed.is_empty(), "{:#?}", first.failed);
    assert_eq!(first.applied.len(), 5);
    let after_first = managed();
    for want in [
        "StorageClass//gp3",
        "CSIDriver//ebs.csi.aws.com",
        "Deployment/kube-system/ebs-csi-controller",
        "DaemonSet/kube-system/aws-node-termination-handler",
        "APIService//v1beta1.metrics.k8s.io",
        "Deployment/kube-system/metrics-server",
    ] {
        assert!(
            after_first.iter().any(|(k, _)| k == want),
            "{want}: {after_first:#?}"
        );
    }
    let ns = kubectl(&["get", "namespace", "kube-system"]);
    let recorded = keelson::node::addons::applied_versions(&ns);
    assert_eq!(recorded.len(), 5, "{recorded:?}");
    assert!(
        recorded
            .iter()
            .any(|(n, v)| n == "metrics-server" && v.starts_with("0.8.0 sha256:"))
    );

    // The same channel again: nothing changes, nothing is pruned.
    let second = rt.block_on(applier.apply(&bundles));
    assert!(
        second.failed.is_empty() && second.pruned.is_empty(),
        "{second:#?}"
    );
    assert_eq!(managed(), after_first, "a second apply changed objects");

    // An override lands; one replica drops metrics-server's budget, which is pruned.
    let c = cluster(
        "{metrics-server: {replicas: 1, overrides: {Deployment/metrics-server: {spec: {template: {spec: {nodeSelector: {keelson.dev/role: master}}}}}}}}",
    );
    let third = rt.block_on(applier.apply(&channel(&c)));
    assert!(third.failed.is_empty(), "{:#?}", third.failed);
    assert_eq!(
        third.pruned,
        [(
            "metrics-server".to_string(),
            "poddisruptionbudgets.policy/kube-system/metrics-server".to_string()
        )]
    );
    let d = kubectl(&["get", "deployment", "metrics-server", "-n", "kube-system"]);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["template"]["spec"]["nodeSelector"]["keelson.dev/role"],
        "master"
    );

    // A bundle disabled: every object of it goes, and so does its record.
    let c = cluster("{aws-node-termination-handler: {enabled: false}}");
    let fourth = rt.block_on(applier.apply(&channel(&c)));
    assert!(fourth.failed.is_empty(), "{:#?}", fourth.failed);
    let gone: Vec<&str> = fourth
        .pruned
        .iter()
        .filter(|(b, _)| b == "aws-node-termination-handler")
        .map(|(_, o)| o.as_str())
        .collect();
    assert_eq!(gone.len(), 4, "{:#?}", fourth.pruned);
    assert!(
        !managed()
            .iter()
            .any(|(k, _)| k.contains("aws-node-termination-handler"))
    );
    let ns = kubectl(&["get", "namespace", "kube-system"]);
    assert!(
        !keelson::node::addons::applied_versions(&ns)
            .iter()
            .any(|(n, _)| n == "aws-node-termination-handler")
    );
    rig.finish();
}

#[test]
fn get_addons_lists_desired_and_applied_versions() {
    use crate::harness::*;
    let sb = Sandbox::new("get-addons");
    let name = &sb.cluster("gad");
    create_small_with(&sb, name, &[]);
    // No API yet: the desired side alone, and a note saying why.
    let r = sb.ok(&[
        "get",
        "addons",
        name,
        "--kubeconfig",
        sb.path("none").to_str().unwrap(),
    ]);
    assert!(
        r.stderr.contains("applied versions unknown"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("metrics-server"), "{}", r.stdout);
    // The masters recorded two bundles on kube-system (one since disabled).
    let sim = sb.kube_sim(name);
    let kubectl = tools().join("kubectl");
    let out = std::process::Command::new(&kubectl)
        .args([
            "--kubeconfig",
            sim.kubeconfig.to_str().unwrap(),
            "annotate",
            "namespace",
            "kube-system",
            "addons.keelson.dev/metrics-server=0.7.2 sha256:00",
            "addons.keelson.dev/old-bundle=1.0.0 sha256:01",
        ])
        .env("HOME", sb.path("home"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = sb.ok(&[
        "get",
        "addons",
        name,
        "--kubeconfig",
        sim.kubeconfig.to_str().unwrap(),
    ]);
    insta::assert_snapshot!("get_addons", r.stdout);
    let r = sb.ok(&[
        "get",
        "addons",
        name,
        "--kubeconfig",
        sim.kubeconfig.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let ms = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "metrics-server")
        .unwrap();
    assert_eq!(ms["desired"], "0.8.0");
    assert_eq!(ms["applied"], "0.7.2");
}

/// The monitoring bundle's configuration through the real Prometheus and
/// Alertmanager tools (Debian's, from `scripts/tools`): `promtool check config`
/// on prometheus.yml, `promtool check rules` and `promtool test rules`
/// (addons/monitoring/tests/) on the rule set, `amtool check-config` on
/// alertmanager.yml with one receiver of each kind.
#[test]
fn the_monitoring_configuration_passes_promtool_and_amtool() {
    let _ = tools();
    let c = cluster(
        r##"
monitoring:
  enabled: true
  receivers:
    - {name: ops-slack, matchers: ['severity=~"warning|critical"'], slack: {channel: "#alerts", secret: alertmanager-slack}}
    - {name: oncall, matchers: [severity=critical], pagerduty: {secret: alertmanager-pagerduty}}
    - {name: mail, email: {to: ops@example.com, from: am@example.com, smarthost: "smtp.example.com:587", username: am, secret: alertmanager-smtp}}
    - {name: hook, webhook: {url: "https://hooks.example.com/alerts", secret: alertmanager-webhook}}
"##,
    );
    let r = keelson::addons::bundles(&c)
        .unwrap()
        .into_iter()
        .find(|b| b.name == "monitoring")
        .unwrap();
    let mut data = std::collections::BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(&r.manifest) {
        let o: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
        if o["kind"] == "ConfigMap" {
            for (k, v) in o["data"].as_mapping().unwrap() {
                data.insert(
                    k.as_str().unwrap().to_string(),
                    v.as_str().unwrap().to_string(),
                );
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("keelson-promtool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run = |cmd: &str, args: &[&str]| {
        let out = std::process::Command::new(cmd)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e}; run scripts/tools install"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{cmd} {args:?}:\n{text}");
        text
    };

    // Debian builds Prometheus without Kubernetes service discovery (it leaves
    // client-go out), so its promtool refuses `kubernetes_sd_configs`: each is
    // checked here (roles, namespaces), then swapped for a file SD so that
    // promtool checks everything else (relabelling, TLS, auth, globals).
    let mut prom: serde_yaml::Value = serde_yaml::from_str(&data["prometheus.yml"]).unwrap();
    let mut jobs = Vec::new();
    for s in prom["scrape_configs"].as_sequence_mut().unwrap() {
        jobs.push(s["job_name"].as_str().unwrap().to_string());
        let m = s.as_mapping_mut().unwrap();
        if let Some(sd) = m.remove("kubernetes_sd_configs") {
            for k in sd.as_sequence().unwrap() {
                let role = k["role"].as_str().unwrap();
                assert!(["node", "endpoints", "pod"].contains(&role), "{role}");
                for key in k.as_mapping().unwrap().keys() {
                    assert!(["role", "namespaces"].contains(&key.as_str().unwrap()));
                }
            }
            m.insert(
                "file_sd_configs".into(),
                serde_yaml::from_str("[{files: [/etc/prometheus/targets/*.json]}]").unwrap(),
            );
        }
    }
    for want in [
        "apiserver",
        "kubelet",
        "cadvisor",
        "etcd",
        "node-exporter",
        "kube-state-metrics",
        "coredns",
        "pods",
    ] {
        assert!(jobs.iter().any(|j| j == want), "{want}: {jobs:?}");
    }
    std::fs::write(
        dir.join("prometheus.yml"),
        serde_yaml::to_string(&prom).unwrap(),
    )
    .unwrap();
    run(
        "promtool",
        &["check", "config", "--syntax-only", "prometheus.yml"],
    );

    std::fs::write(dir.join("keelson.yaml"), &data["keelson.yaml"]).unwrap();
    let out = run("promtool", &["check", "rules", "keelson.yaml"]);
    assert!(out.contains("SUCCESS: 15 rules found"), "{out}");
    // Every alert has a unit test (each test file names the alerts it covers).
    let tests_dir = crate::harness::manifest_dir().join("addons/monitoring/tests");
    let mut tests_text = String::new();
    for e in std::fs::read_dir(&tests_dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        tests_text.push_str(&std::fs::read_to_string(&p).unwrap());
        let out = run(
            "promtool",
            &["test", "rules", p.file_name().unwrap().to_str().unwrap()],
        );
        assert!(out.contains("SUCCESS"), "{out}");
    }
    for l in data["keelson.yaml"].lines() {
        if let Some(alert) = l.trim().strip_prefix("- alert: ") {
            assert!(
                tests_text.contains(&format!("alertname: {alert}\n")),
                "{alert} has no promtool test in addons/monitoring/tests/"
            );
        }
    }

    std::fs::write(dir.join("alertmanager.yml"), &data["alertmanager.yml"]).unwrap();
    let out = run("amtool", &["check-config", "alertmanager.yml"]);
    assert!(out.contains("5 receivers"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The platform bundles (external-dns, traefik, headlamp behind oauth2-proxy
/// with its Ingress) applied by the real kubectl to the simulator through
/// keelson's applier: every object lands, a second apply changes nothing, and
/// turning oauth2-proxy off prunes its objects.
#[test]
fn real_kubectl_applies_the_platform_bundles() {
    let rig = Rig::start("keelson-platform", "addons.example.com");
    let rt = &rig.rt;
    let applier = rig.applier();
    let get = |args: &[&str]| rig.kubectl(args);
    let spec = |addons: &str| {
        let mut c = new_cluster(&NewCluster {
            name: "addons.example.com".into(),
            zones: vec!["us-east-1a".into()],
            dns: Some(keelson::spec::DnsType::Public),
            dns_zone: Some("example.com".into()),
            ..Default::default()
        })
        .unwrap()
        .0;
        c.spec.addons = serde_yaml::from_str(addons).unwrap();
        assert!(keelson::addons::validate(&c).is_empty());
        c
    };
    let all = spec(
        r#"{external-dns: {enabled: true}, traefik: {enabled: true, nginxAnnotations: true},
            headlamp: {enabled: true, groups: [viewers], oauth2Proxy: true,
                       issuerURL: "https://id.example.com", clientID: headlamp, host: headlamp.example.com}}"#,
    );
    let first = rt.block_on(applier.apply(&channel(&all)));
    assert!(first.failed.is_empty(), "{:#?}", first.failed);
    for (kind, ns, name) in [
        ("deployment", "kube-system", "external-dns"),
        ("deployment", "kube-system", "traefik"),
        ("service", "kube-system", "traefik"),
        ("ingressclass", "", "traefik"),
        ("ingressclass", "", "nginx"),
        ("deployment", "kube-system", "headlamp"),
        ("deployment", "kube-system", "headlamp-oauth2-proxy"),
        ("ingress", "kube-system", "headlamp"),
        ("clusterrolebinding", "", "headlamp-read-only"),
    ] {
        let mut args = vec!["get", kind, name];
        if !ns.is_empty() {
            args.extend(["-n", ns]);
        }
        let o = get(&args);
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"], "keelson",
            "{kind}/{name}"
        );
    }
    let svc = get(&["get", "service", "traefik", "-n", "kube-system"]);
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(
        svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-type"],
        "nlb"
    );
    let second = rt.block_on(applier.apply(&channel(&all)));
    assert!(
        second.failed.is_empty() && second.pruned.is_empty(),
        "{second:#?}"
    );
    // oauth2-proxy turned off (and so the Ingress): its objects are pruned.
    let plain = spec(
        "{external-dns: {enabled: true}, traefik: {enabled: true, nginxAnnotations: true}, headlamp: {enabled: true, groups: [viewers]}}",
    );
    let third = rt.block_on(applier.apply(&channel(&plain)));
    assert!(third.failed.is_empty(), "{:#?}", third.failed);
    let mut pruned: Vec<&str> = third.pruned.iter().map(|(_, o)| o.as_str()).collect();
    pruned.sort();
    assert_eq!(
        pruned,
        [
            "deployments.apps/kube-system/headlamp-oauth2-proxy",
            "ingresses.networking.k8s.io/kube-system/headlamp",
            "services/kube-system/headlamp-oauth2-proxy",
        ],
        "{:#?}",
        third.pruned
    );
    rig.finish();
}

#[test]
fn every_bundle_passes_strict_validation_for_every_supported_minor() {
    // kubernetes-validate --strict against each minor keelson supports, every
    // bundle rendered for that minor (those whose version follows the minor
    // differ). Custom resources pass it silently (it has
    // no schema for them): src/addons/crd_check.rs checks those.
    let dir = std::env::temp_dir().join(format!("keelson-addons-kv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for minor in keelson::spec::validate::SUPPORTED_MINORS {
        let version = format!("1.{minor}.0");
        let mut files = Vec::new();
        // cert-manager needs its ACME address to render.
        let mut c = cluster("{cert-manager: {enabled: true, email: ops@example.com}}");
        c.spec.kubernetes_version = version.clone();
        // Every bundle, enabled or not (both network plugins among them).
        for b in keelson::addons::BUNDLES {
            let r = keelson::addons::render(b, &c)
                .unwrap_or_else(|e| panic!("bundle {} for {version}: {e}", b.name));
            let f = dir.join(format!("{minor}-{}.yaml", b.name));
            std::fs::write(&f, r.manifest).unwrap();
            files.push(f);
        }
        let out = std::process::Command::new(tools().join("kubernetes-validate"))
            .args(["--strict", "--quiet", "--no-warn", "-k", &version])
            .args(&files)
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "Kubernetes {version}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn real_kubectl_applies_cert_manager_with_its_crds_established_first() {
    // The simulator serves the CRDs' kinds once created, as the API server:
    // keelson's applier applies the CRDs, waits for Established (kubectl wait),
    // then the ClusterIssuers, which could not be mapped before.
    let rig = Rig::start("keelson-addons-cm", "addons.k8s.local");
    let rt = &rig.rt;
    let applier = rig.applier();
    let kubectl = |args: &[&str]| rig.kubectl(args);
    let c = cluster("{cert-manager: {enabled: true, email: ops@example.com}}");
    let bundles: Vec<Bundle> = channel(&c)
        .into_iter()
        .filter(|b| b.name == "cert-manager")
        .collect();
    assert_eq!(bundles.len(), 1);
    let first = rt.block_on(applier.apply(&bundles));
    assert!(first.failed.is_empty(), "{:#?}", first.failed);
    let crds = kubectl(&["get", "crd"]);
    let crds = crds["items"].as_array().unwrap();
    assert!(
        crds.iter()
            .any(|c| c["metadata"]["name"] == "clusterissuers.cert-manager.io"),
        "{crds:#?}"
    );
    for crd in crds {
        assert!(
            crd["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        );
    }
    let issuers = |k: &dyn Fn(&[&str]) -> Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = k(&["get", "clusterissuers.cert-manager.io"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["metadata"]["name"].as_str().unwrap().to_string(),
                    i["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = issuers(&kubectl);
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["letsencrypt", "letsencrypt-staging"]);
    let deployments = |k: &dyn Fn(&[&str]) -> Value| -> Value {
        k(&["get", "deployments", "-n", "cert-manager"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["metadata"]["resourceVersion"].clone())
            .collect()
    };
    let d = deployments(&kubectl);
    assert!(!d.as_array().unwrap().is_empty());

    // Again: nothing changes.
    let second = rt.block_on(applier.apply(&bundles));
    assert!(
        second.failed.is_empty() && second.pruned.is_empty(),
        "{second:#?}"
    );
    assert_eq!(
        issuers(&kubectl),
        before,
        "a second apply changed an issuer"
    );
    assert_eq!(
        deployments(&kubectl),
        d,
        "a second apply changed a Deployment"
    );
    rig.finish();
}
