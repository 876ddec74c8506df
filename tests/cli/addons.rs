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
    let dir = std::env::temp_dir().join(format!("keelson-addons-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(kube_sim::start(kube_sim::Config {
            cluster: "addons.k8s.local".into(),
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
    let log = |_: &str| {};
    let applier = Applier {
        host: &host,
        kubeconfig: &kubeconfig,
        dir: dir.join("addons"),
        attempts: 1,
        retry_pause: Duration::ZERO,
        log: &log,
    };
    let kubectl = |args: &[&str]| -> Value {
        let mut a: Vec<String> = vec!["--kubeconfig".into(), kubeconfig.clone()];
        a.extend(args.iter().map(|s| s.to_string()));
        a.extend(["-o".into(), "json".into()]);
        serde_json::from_str(&host.output("kubectl", &a).unwrap()).unwrap()
    };
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
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
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
