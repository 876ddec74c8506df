//! The whole bootstrap with a recording host and a file state store holding a
//! real cluster PKI: the commands and the kubeadm configurations of the first
//! master, a second master and a node against golden files, then upgrades,
//! skew, reruns and the lease. The world beyond the host (the load balancer,
//! the API, etcd) is [`Net`], answering as told and noting each question in
//! the transcript; the real one is tested below against the API simulator, and
//! with real etcd in tests/cli/etcd.rs.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;
use crate::node::host::{REDACTED, Recorder};
use crate::node::membership::Report;
use crate::pki::ClusterPki;

const CLUSTER: &str = "demo.example.com";

struct World {
    dir: PathBuf,
    store: StateStore,
    pki: ClusterPki,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn world(test: &str) -> World {
    let dir = std::env::temp_dir().join(format!("keelson-bootstrap-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = StateStore::open(
        &format!("file://{}", dir.display()),
        &aws_config::SdkConfig::builder().build(),
        true,
    )
    .await
    .unwrap();
    let pki = ClusterPki::generate().unwrap();
    let b = store.backend();
    let put = |key: String, body: &str| {
        let body = body.as_bytes().to_vec();
        async move { b.put(&key, body).await.unwrap() }
    };
    put(layout::pki_public(CLUSTER, "ca.crt"), &pki.ca.cert_pem).await;
    put(layout::pki_private(CLUSTER, "ca.key"), pki.ca.key.expose()).await;
    put(
        layout::pki_public(CLUSTER, "front-proxy-ca.crt"),
        &pki.front_proxy_ca.cert_pem,
    )
    .await;
    put(
        layout::pki_private(CLUSTER, "front-proxy-ca.key"),
        pki.front_proxy_ca.key.expose(),
    )
    .await;
    put(
        layout::pki_public(CLUSTER, "etcd-ca.crt"),
        &pki.etcd_ca.cert_pem,
    )
    .await;
    put(
        layout::pki_private(CLUSTER, "etcd-ca.key"),
        pki.etcd_ca.key.expose(),
    )
    .await;
    put(
        layout::pki_public(CLUSTER, "sa.pub"),
        &pki.service_account_public_pem,
    )
    .await;
    put(
        layout::pki_private(CLUSTER, "sa.key"),
        pki.service_account_key.expose(),
    )
    .await;
    put(
        layout::encryption_config(CLUSTER),
        pki.encryption_config.expose(),
    )
    .await;
    let bundles = [
        ("networking.flannel", "0.26.7", "kind: ConfigMap\n"),
        (
            "aws-cloud-controller-manager",
            "1.31.0",
            "kind: DaemonSet\n",
        ),
    ]
    .map(|(name, version, manifest)| crate::addons::Rendered {
        name: name.into(),
        version: version.into(),
        path: format!("{name}/v{version}.yaml"),
        manifest: manifest.into(),
    });
    for r in &bundles {
        put(layout::addon(CLUSTER, &r.path), &r.manifest).await;
    }
    put(
        layout::addon(CLUSTER, crate::addons::CHANNEL),
        &crate::addons::channel(&bundles),
    )
    .await;
    World { dir, store, pki }
}

impl World {
    fn secrets(&self) -> Vec<String> {
        vec![
            self.pki.encryption_config.expose().to_string(),
            self.pki.ca.key.expose().to_string(),
            self.pki.front_proxy_ca.key.expose().to_string(),
            self.pki.etcd_ca.key.expose().to_string(),
            self.pki.service_account_key.expose().to_string(),
        ]
    }

    fn recorder(&self) -> Arc<Recorder> {
        self.watch(Recorder::new())
    }

    fn watch(&self, r: Recorder) -> Arc<Recorder> {
        r.answer(
            "containerd config default",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = false\n",
        );
        // The addon applier's listings: nothing to prune, nothing recorded.
        r.answer(
            "kubectl --kubeconfig /etc/kubernetes/admin.conf get ",
            r#"{"items": []}"#,
        );
        r.answer(
            "kubectl --kubeconfig /etc/kubernetes/admin.conf get namespace kube-system",
            r#"{"metadata": {"name": "kube-system"}}"#,
        );
        Arc::new(r)
    }

    async fn lease(&self) -> Option<lease::Lease> {
        let b = self
            .store
            .backend()
            .get(&lease::key(CLUSTER))
            .await
            .unwrap()?;
        Some(serde_json::from_slice(&b).unwrap())
    }

    /// The cluster as another master left it: initialised.
    async fn initialised_by(&self, holder: &str) {
        let now = now_secs();
        assert_eq!(
            lease::acquire(&self.store, CLUSTER, holder, now, false, false)
                .await
                .unwrap(),
            lease::Outcome::Leader
        );
        assert!(
            lease::mark_initialized(&self.store, CLUSTER, holder, now)
                .await
                .unwrap()
        );
    }
}

/// Answers in order; the last one stays.
struct Script<T>(Mutex<VecDeque<T>>);

impl<T: Clone> Script<T> {
    fn new(items: impl IntoIterator<Item = T>) -> Script<T> {
        Script(Mutex::new(items.into_iter().collect()))
    }

    fn next(&self) -> T {
        let mut q = self.0.lock().unwrap();
        if q.len() > 1 {
            q.pop_front().unwrap()
        } else {
            q.front().cloned().expect("a scripted answer")
        }
    }
}

struct Net {
    rec: Arc<Recorder>,
    load_balancer: Script<Option<String>>,
    probes: Script<ApiProbe>,
    versions: Script<&'static str>,
    removed: Vec<String>,
}

impl Net {
    fn new(rec: &Arc<Recorder>) -> Net {
        Net {
            rec: rec.clone(),
            load_balancer: Script::new([None]),
            probes: Script::new([ApiProbe::Down]),
            versions: Script::new(["v1.31.4"]),
            removed: Vec::new(),
        }
    }
}

impl Remote for Net {
    fn load_balancer_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, NodeError>> {
        let answer = self.load_balancer.next();
        self.rec.note(&format!(
            "remote: DescribeLoadBalancers {name} -> {answer:?}"
        ));
        Box::pin(async move { Ok(answer) })
    }

    fn probe<'a>(
        &'a self,
        endpoint: &'a str,
        _ca: &'a [u8],
        credential: &'a NodeCredential,
    ) -> BoxFuture<'a, ApiProbe> {
        assert!(credential.cert_pem.contains("BEGIN CERTIFICATE"));
        let answer = self.probes.next();
        self.rec.note(&format!(
            "remote: GET https://{endpoint}/readyz -> {answer:?}"
        ));
        Box::pin(async move { answer })
    }

    fn cluster_version<'a>(
        &'a self,
        endpoint: &'a str,
        ca: &'a [u8],
        credential: &'a NodeCredential,
    ) -> BoxFuture<'a, Result<Version, NodeError>> {
        // What it is given is what the real one needs.
        assert!(String::from_utf8_lossy(ca).contains("BEGIN CERTIFICATE"));
        assert!(credential.key.expose().contains("PRIVATE KEY"));
        let answer = self.versions.next();
        self.rec.note(&format!(
            "remote: https://{endpoint} kube-system/kubeadm-config -> {answer}"
        ));
        Box::pin(async move { Ok(Version::parse(answer).unwrap()) })
    }

    fn node_credential<'a>(
        &'a self,
        ca: &'a [u8],
    ) -> BoxFuture<'a, Result<NodeCredential, NodeError>> {
        assert!(String::from_utf8_lossy(ca).contains("BEGIN CERTIFICATE"));
        self.rec
            .note("remote: a node credential from the masters' agents (attested)");
        let ca_key = ClusterPki::generate().unwrap().ca.key;
        let (cert_pem, key) = crate::pki::client_credential(
            &ca_key,
            "kubernetes-ca",
            "system:node:n",
            Some("system:nodes"),
            Duration::from_secs(60),
        )
        .unwrap();
        Box::pin(async move { Ok(NodeCredential { cert_pem, key }) })
    }

    fn restore_etcd<'a>(
        &'a self,
        backup: &'a str,
        _host: &'a dyn Host,
    ) -> BoxFuture<'a, Result<(), NodeError>> {
        self.rec.note(&format!(
            "remote: restore etcd backup {backup} into /var/lib/etcd"
        ));
        Box::pin(async { Ok(()) })
    }

    fn prune_members(&self) -> BoxFuture<'_, Result<Report, NodeError>> {
        self.rec.note("remote: etcd membership pass (joining)");
        let removed = self.removed.clone();
        Box::pin(async move {
            Ok(Report {
                members: vec![],
                masters: vec![],
                healthy: 2,
                quorum: true,
                removed,
                checked_at: 0,
            })
        })
    }
}

fn env(role: &str, group: &str, version: &str) -> NodeEnv {
    NodeEnv {
        cluster: CLUSTER.into(),
        role: role.into(),
        instance_group: group.into(),
        kubernetes_version: version.into(),
        state_bucket: "keelson-state".into(),
        state_prefix: format!("{CLUSTER}/"),
        api_name: format!("api.{CLUSTER}"),
        api_load_balancer: String::new(),
        pod_cidr: "100.96.0.0/11".into(),
        service_cidr: "100.64.0.0/13".into(),
        networking: "flannel".into(),
        node_labels: String::new(),
        taints: String::new(),
        config: Default::default(),
    }
}

fn me(id: &str, ip: &str) -> Identity {
    Identity {
        instance_id: id.into(),
        private_ip: ip.into(),
        private_dns: format!("ip-{}.ec2.internal", ip.replace('.', "-")),
        region: "us-east-1".into(),
    }
}

fn fast() -> Timing {
    Timing {
        retry_pause: Duration::from_millis(1),
        attempts: 3,
        api_poll: Duration::from_millis(1),
        api_wait: Duration::from_secs(5),
        lost_pause: Duration::from_millis(1),
        // No renewal in the golden transcripts: kubeadm returns at once here.
        renew_every: Duration::from_secs(3600),
    }
}

struct Run {
    result: Result<Done, NodeError>,
    log: Vec<String>,
}

async fn bootstrap(
    w: &World,
    env: &NodeEnv,
    me: &Identity,
    rec: &Arc<Recorder>,
    net: &Net,
    timing: Timing,
) -> Run {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let say = move |m: &str| sink.lock().unwrap().push(m.to_string());
    let result = Bootstrap {
        env,
        me,
        store: &w.store,
        host: rec.clone(),
        remote: net,
        timing,
        log: &say,
    }
    .run()
    .await;
    let log = log.lock().unwrap().clone();
    Run { result, log }
}

/// The transcript and every kubeadm configuration written, redacted, after
/// checking that no secret shows anywhere but where it must (the raw kubeadm
/// configuration, the 0600 key files) and that the configuration is gone.
fn golden(w: &World, rec: &Recorder, run: &Run) -> String {
    let transcript = rec.transcript().join("\n");
    let configs = rec.writes(KUBEADM_CONFIG);
    for s in w.secrets() {
        let s = s.trim();
        assert!(!transcript.contains(s), "a secret in the transcript");
        assert!(!run.log.join("\n").contains(s), "a secret in the log");
        assert!(
            !configs.iter().any(|c| c.contains(s)),
            "a secret in a config"
        );
    }
    for raw in rec.writes_raw(BOOTSTRAP_KUBECONFIG) {
        let raw = String::from_utf8(raw).unwrap();
        assert!(
            raw.contains("client-key-data"),
            "a join discovers and TLS-bootstraps with the node's credential"
        );
    }
    let files = rec.files();
    for gone in [KUBEADM_CONFIG, BOOTSTRAP_KUBECONFIG] {
        assert!(
            !files.iter().any(|(f, _)| f == gone),
            "{gone} is removed after kubeadm"
        );
    }
    for (f, mode) in &files {
        if f.ends_with(".key") {
            assert_eq!(*mode, 0o600, "{f}");
        }
    }
    let mut out = transcript;
    for c in configs {
        out.push_str(&format!("\n--- {KUBEADM_CONFIG}\n{c}"));
    }
    out
}

fn position(rec: &Recorder, prefix: &str) -> usize {
    rec.transcript()
        .iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {:#?}", rec.transcript()))
}

#[tokio::test]
async fn the_first_master_initialises() {
    let w = world("first").await;
    let rec = w.recorder();
    let net = Net::new(&rec);
    let env = env("master", "master-us-east-1a", "1.31.4");
    let run = bootstrap(
        &w,
        &env,
        &me("i-0first", "172.20.32.10"),
        &rec,
        &net,
        fast(),
    )
    .await;
    assert_eq!(*run.result.as_ref().unwrap(), Done::Initialized);
    let lease = w.lease().await.unwrap();
    assert_eq!(lease.holder, "i-0first");
    assert!(lease.initialized);
    // The CA keys went where kubeadm looks, owner-only, intact.
    assert_eq!(
        rec.writes_raw("/etc/kubernetes/pki/etcd/ca.key")[0],
        w.pki.etcd_ca.key.expose().as_bytes()
    );
    assert!(rec.writes("/etc/containerd/config.toml")[0].contains("SystemdCgroup = true\n"));
    assert!(run.log.iter().any(|l| l.contains("holds the leader lease")));
    insta::assert_snapshot!("first_master", golden(&w, &rec, &run));

    // Every boot runs the unit again: a finished bootstrap does nothing.
    let before = rec.transcript().len();
    let again = bootstrap(
        &w,
        &env,
        &me("i-0first", "172.20.32.10"),
        &rec,
        &net,
        fast(),
    )
    .await;
    assert_eq!(again.result.unwrap(), Done::Already);
    assert_eq!(rec.transcript().len(), before);

    // The agent's addon pass: the channel the bootstrap applied is not applied
    // again; one an update changed is, once.
    let log = |_: &str| {};
    let (me, env) = (me("i-0first", "172.20.32.10"), env);
    let agent = Bootstrap {
        env: &env,
        me: &me,
        store: &w.store,
        host: rec.clone(),
        remote: &net,
        timing: fast(),
        log: &log,
    };
    assert!(!agent.reapply_channel().await.unwrap());
    let bundle = crate::addons::Rendered {
        name: "networking.flannel".into(),
        version: "0.26.8".into(),
        path: "networking.flannel/v0.26.8.yaml".into(),
        manifest: "kind: ConfigMap\nmetadata: {name: changed}\n".into(),
    };
    let b = w.store.backend();
    b.put(
        &layout::addon(CLUSTER, &bundle.path),
        bundle.manifest.clone().into_bytes(),
    )
    .await
    .unwrap();
    b.put(
        &layout::addon(CLUSTER, crate::addons::CHANNEL),
        crate::addons::channel(std::slice::from_ref(&bundle)).into_bytes(),
    )
    .await
    .unwrap();
    let before = rec.transcript().len();
    assert!(agent.reapply_channel().await.unwrap());
    let applied: Vec<String> = rec.transcript()[before..].to_vec();
    assert!(
        applied
            .iter()
            .any(|l| l.contains("kubectl") && l.contains("networking.flannel/v0.26.8.yaml")),
        "{applied:#?}"
    );
    assert!(!agent.reapply_channel().await.unwrap());
}

#[tokio::test]
async fn a_second_master_prunes_etcd_then_joins_the_control_plane() {
    let w = world("second").await;
    w.initialised_by("i-0first").await;
    let rec = w.recorder();
    let mut net = Net::new(&rec);
    net.probes = Script::new([ApiProbe::Answers(200)]);
    net.removed = vec!["ip-172-20-32-10.ec2.internal (instance i-0first is gone)".into()];
    let env = env("master", "master-us-east-1b", "1.31.4");
    let run = bootstrap(
        &w,
        &env,
        &me("i-0second", "172.20.64.11"),
        &rec,
        &net,
        fast(),
    )
    .await;
    assert_eq!(
        *run.result.as_ref().unwrap(),
        Done::Joined {
            control_plane: true,
            upgrade: Upgrade::None
        }
    );
    // The dead member goes before kubeadm checks the members.
    assert!(position(&rec, "remote: etcd membership pass") < position(&rec, "run: kubeadm join"));
    assert!(
        run.log
            .iter()
            .any(|l| l.contains("removed etcd member ip-172-20-32-10"))
    );
    // The lease stays the first master's.
    assert_eq!(w.lease().await.unwrap().holder, "i-0first");
    assert!(
        !rec.transcript()
            .iter()
            .any(|l| l.starts_with("run: kubectl"))
    );
    insta::assert_snapshot!("second_master", golden(&w, &rec, &run));
}

#[tokio::test]
async fn a_node_of_a_gossip_cluster_finds_the_balancer_waits_for_the_api_and_joins() {
    let w = world("node").await;
    w.initialised_by("i-0first").await;
    let rec = w.recorder();
    let mut net = Net::new(&rec);
    net.load_balancer = Script::new([
        None,
        Some("api-demo-0123456789.elb.us-east-1.amazonaws.com".to_string()),
    ]);
    net.probes = Script::new([
        ApiProbe::Down,
        ApiProbe::Answers(500),
        ApiProbe::Answers(200),
    ]);
    let mut env = env("node", "nodes-us-east-1a", "1.31.4");
    env.api_name = String::new();
    env.api_load_balancer = "api-demo-example-com".into();
    env.node_labels = "team=data,tier=batch".into();
    env.taints = "dedicated=gpu:NoSchedule,spot:PreferNoSchedule".into();
    let run = bootstrap(&w, &env, &me("i-0node", "172.20.96.12"), &rec, &net, fast()).await;
    assert_eq!(
        *run.result.as_ref().unwrap(),
        Done::Joined {
            control_plane: false,
            upgrade: Upgrade::None
        }
    );
    // A node reads no private key and takes no part in etcd or the lease.
    assert!(!rec.files().iter().any(|(f, _)| f.ends_with(".key")));
    assert!(
        !rec.transcript()
            .iter()
            .any(|l| l.contains("etcd membership"))
    );
    let config = &rec.writes(KUBEADM_CONFIG)[0];
    assert!(config.contains(BOOTSTRAP_KUBECONFIG), "{config}");
    assert!(
        rec.transcript()
            .iter()
            .any(|l| l.contains("a node credential from the masters"))
    );
    insta::assert_snapshot!("node", golden(&w, &rec, &run));
}

#[tokio::test]
async fn the_first_master_on_a_new_minor_joins_then_upgrades_the_cluster() {
    let w = world("upgrade-apply").await;
    w.initialised_by("i-0old").await;
    let rec = w.recorder();
    let mut net = Net::new(&rec);
    net.probes = Script::new([ApiProbe::Answers(200)]);
    net.versions = Script::new(["v1.31.4", "v1.31.4"]);
    let env = env("master", "master-us-east-1a", "1.32.1");
    let run = bootstrap(&w, &env, &me("i-0new", "172.20.32.20"), &rec, &net, fast()).await;
    assert_eq!(
        *run.result.as_ref().unwrap(),
        Done::Joined {
            control_plane: true,
            upgrade: Upgrade::Apply(Version::parse("1.32.1").unwrap())
        }
    );
    assert!(rec.writes(KUBEADM_CONFIG)[0].contains("ignorePreflightErrors:\n  - KubeletVersion"));
    assert!(
        position(&rec, "run: kubeadm join")
            < position(&rec, "run: kubeadm upgrade apply v1.32.1 --yes")
    );
    assert!(
        position(&rec, "run: kubeadm upgrade apply")
            < position(
                &rec,
                "run: kubectl --kubeconfig /etc/kubernetes/admin.conf apply"
            )
    );
    insta::assert_snapshot!("upgrade_apply", golden(&w, &rec, &run));
}

#[tokio::test]
async fn a_master_that_joined_before_another_upgraded_runs_upgrade_node() {
    let w = world("upgrade-node").await;
    w.initialised_by("i-0old").await;
    let rec = w.recorder();
    let mut net = Net::new(&rec);
    net.probes = Script::new([ApiProbe::Answers(200)]);
    net.versions = Script::new(["v1.31.4", "v1.32.1"]);
    let env = env("master", "master-us-east-1b", "1.32.1");
    let run = bootstrap(&w, &env, &me("i-0new2", "172.20.64.21"), &rec, &net, fast()).await;
    assert_eq!(
        *run.result.as_ref().unwrap(),
        Done::Joined {
            control_plane: true,
            upgrade: Upgrade::Node
        }
    );
    let t = rec.transcript();
    let tail: Vec<&String> = t[position(&rec, "run: kubeadm join")..].iter().collect();
    insta::assert_snapshot!(
        "upgrade_node",
        tail.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn the_spec_fields_reach_kubeadm_on_a_node_and_a_joining_master() {
    let w = world("spec-fields").await;
    w.initialised_by("i-0first").await;
    // A node: its kubelet settings as kubeadm's kubelet patch, named by the join.
    let rec = w.recorder();
    let mut net = Net::new(&rec);
    net.probes = Script::new([ApiProbe::Answers(200)]);
    let mut node = env("node", "nodes-us-east-1a", "1.31.4");
    node.config = crate::spec::components::NodeConfig::parse("kubelet:\n  maxPods: 30\n").unwrap();
    let run = bootstrap(
        &w,
        &node,
        &me("i-0node", "172.20.96.12"),
        &rec,
        &net,
        fast(),
    )
    .await;
    run.result.as_ref().unwrap();
    assert_eq!(rec.writes(kubeadm::KUBELET_PATCH), ["maxPods: 30\n"]);
    assert!(
        position(&rec, &format!("write: {}", kubeadm::KUBELET_PATCH))
            < position(&rec, "run: kubeadm join")
    );
    let join = &rec.writes(KUBEADM_CONFIG)[0];
    assert!(
        join.contains(&format!(
            "patches:\n  directory: {}\n",
            kubeadm::PATCHES_DIR
        )),
        "{join}"
    );

    // A joining master: keelson's audit policy, then its own API server
    // rendered from the spec after the join.
    let rec = w.recorder();
    let mut net = Net::new(&rec);
    net.probes = Script::new([ApiProbe::Answers(200)]);
    let mut master = env("master", "master-us-east-1b", "1.31.4");
    master.config = crate::spec::components::NodeConfig::parse(
        "kubeAPIServer:\n  auditLogPath: /var/log/kube-apiserver/audit.log\n  oidcIssuerURL: https://sso.example.com\n  oidcClientID: k\n",
    )
    .unwrap();
    let run = bootstrap(
        &w,
        &master,
        &me("i-0m2", "172.20.64.11"),
        &rec,
        &net,
        fast(),
    )
    .await;
    run.result.as_ref().unwrap();
    assert_eq!(
        rec.writes(kubeadm::DEFAULT_AUDIT_POLICY_PATH),
        [kubeadm::DEFAULT_AUDIT_POLICY]
    );
    let configs = rec.writes(KUBEADM_CONFIG);
    assert_eq!(configs.len(), 2, "the join's, then the API server's");
    assert!(
        configs[1].contains("value: https://sso.example.com"),
        "{}",
        configs[1]
    );
    assert!(
        position(&rec, "run: kubeadm join")
            < position(&rec, "run: kubeadm init phase control-plane apiserver")
    );
    assert!(
        position(&rec, "run: kubeadm init phase control-plane apiserver")
            < position(&rec, "run: kubeadm init phase upload-config kubeadm")
    );

    // A policy file the spec names and the image lacks: refused before kubeadm.
    let rec = w.recorder();
    let net = Net::new(&rec);
    master.config = crate::spec::components::NodeConfig::parse(
        "kubeAPIServer:\n  auditLogPath: /var/log/a/audit.log\n  auditPolicyFile: /etc/audit/policy.yaml\n",
    )
    .unwrap();
    let run = bootstrap(
        &w,
        &master,
        &me("i-0m3", "172.20.64.12"),
        &rec,
        &net,
        fast(),
    )
    .await;
    let e = run.result.unwrap_err().to_string();
    assert!(
        e.contains("/etc/audit/policy.yaml") && e.contains("spec.kubeAPIServer.auditPolicyFile"),
        "{e}"
    );
    assert!(
        !rec.transcript()
            .iter()
            .any(|l| l.starts_with("run: kubeadm"))
    );
}

#[tokio::test]
async fn a_skew_is_refused_before_anything_joins() {
    let w = world("skew").await;
    w.initialised_by("i-0old").await;
    for (role, version, want) in [
        ("master", "1.33.0", "more than one minor version ahead"),
        ("master", "1.30.2", "never downgrades"),
        ("node", "1.32.0", "version skew policy forbids"),
    ] {
        let rec = w.recorder();
        let mut net = Net::new(&rec);
        net.probes = Script::new([ApiProbe::Answers(200)]);
        let env = env(role, "g", version);
        let run = bootstrap(&w, &env, &me("i-0skew", "172.20.32.30"), &rec, &net, fast()).await;
        let e = run.result.unwrap_err();
        assert!(matches!(e, NodeError::Skew(_)), "{e}");
        assert!(e.to_string().contains(want), "{e}");
        assert!(!rec.transcript().iter().any(|l| l.contains("kubeadm join")));
        assert!(
            !rec.transcript()
                .iter()
                .any(|l| l.contains("etcd membership"))
        );
    }
}

#[tokio::test]
async fn a_failed_init_is_reset_and_retried_by_the_same_leader() {
    let w = world("retry-init").await;
    let rec = w.recorder();
    rec.fail("kubeadm init", 1);
    let net = Net::new(&rec);
    let env = env("master", "master-us-east-1a", "1.31.4");
    let id = me("i-0first", "172.20.32.10");
    let first = bootstrap(&w, &env, &id, &rec, &net, fast()).await;
    assert!(matches!(first.result, Err(NodeError::Command { .. })));
    assert!(!rec.files().iter().any(|(f, _)| f == KUBEADM_CONFIG));
    assert!(!w.lease().await.unwrap().initialized);
    // What the failed init left behind.
    rec.put_file(
        "/etc/kubernetes/manifests/kube-apiserver.yaml",
        "kind: Pod\n",
    );
    let before = rec.transcript().len();
    let second = bootstrap(&w, &env, &id, &rec, &net, fast()).await;
    assert_eq!(second.result.unwrap(), Done::Initialized);
    let t = rec.transcript()[before..].to_vec();
    let reset = t
        .iter()
        .position(|l| l == "run: kubeadm reset --force")
        .unwrap();
    let fetch = t
        .iter()
        .position(|l| l.starts_with("write: /etc/kubernetes/pki/ca.crt"))
        .unwrap();
    let init = t
        .iter()
        .position(|l| l.starts_with("run: kubeadm init"))
        .unwrap();
    // Reset empties the PKI directory: the material comes after it.
    assert!(reset < fetch && fetch < init, "{t:#?}");
    assert!(w.lease().await.unwrap().initialized);
}

#[tokio::test]
async fn a_bootstrap_that_failed_after_init_finishes_without_a_second_init() {
    let w = world("retry-channel").await;
    let rec = w.recorder();
    let net = Net::new(&rec);
    let env = env("master", "master-us-east-1a", "1.31.4");
    let id = me("i-0first", "172.20.32.10");
    // The API never takes the first manifest: every attempt fails.
    rec.fail("kubectl", fast().attempts as usize);
    let first = bootstrap(&w, &env, &id, &rec, &net, fast()).await;
    let e = first.result.unwrap_err();
    assert!(matches!(e, NodeError::Addon { .. }), "{e}");
    let before = rec.transcript().len();
    // One failure more: the retry within the run deals with it.
    rec.fail("kubectl", 1);
    let second = bootstrap(&w, &env, &id, &rec, &net, fast()).await;
    assert_eq!(second.result.unwrap(), Done::Initialized);
    let t = rec.transcript()[before..].to_vec();
    assert!(
        !t.iter()
            .any(|l| l.contains("kubeadm init") || l.contains("kubeadm reset"))
    );
    assert_eq!(
        t.iter()
            .filter(|l| l.starts_with("run: kubectl")
                && l.contains(" apply ")
                && !l.ends_with("# fails"))
            .count(),
        2,
        "{t:#?}"
    );
    assert!(
        second
            .log
            .iter()
            .any(|l| l.contains("failed") && l.contains("retrying"))
    );
}

#[tokio::test]
async fn a_stale_claim_is_taken_over_and_a_live_one_waited_on() {
    let w = world("lease").await;
    let stale = lease::Lease {
        holder: "i-0dead".into(),
        renewed_at: now_secs() - lease::TTL_SECS - 10,
        ttl_seconds: lease::TTL_SECS,
        initialized: false,
    };
    w.store
        .backend()
        .put(&lease::key(CLUSTER), serde_json::to_vec(&stale).unwrap())
        .await
        .unwrap();
    let rec = w.recorder();
    let net = Net::new(&rec);
    let env = env("master", "master-us-east-1b", "1.31.4");
    let run = bootstrap(
        &w,
        &env,
        &me("i-0alive", "172.20.64.11"),
        &rec,
        &net,
        fast(),
    )
    .await;
    assert_eq!(*run.result.as_ref().unwrap(), Done::Initialized);
    assert_eq!(w.lease().await.unwrap().holder, "i-0alive");

    // A live claim of another master, and no API: wait, then fail for systemd
    // to try again (by then the claim may have expired).
    let w = world("lease-live").await;
    lease::acquire(&w.store, CLUSTER, "i-0busy", now_secs(), false, false)
        .await
        .unwrap();
    let rec = w.recorder();
    let net = Net::new(&rec);
    let mut t = fast();
    t.api_wait = Duration::from_millis(30);
    let run = bootstrap(&w, &env, &me("i-0alive", "172.20.64.11"), &rec, &net, t).await;
    let e = run.result.unwrap_err();
    assert!(matches!(e, NodeError::ApiNotReady { .. }), "{e}");
    assert!(e.to_string().contains("i-0busy"), "{e}");
    assert!(
        !rec.transcript()
            .iter()
            .any(|l| l.starts_with("run: kubeadm"))
    );
    assert_eq!(w.lease().await.unwrap().holder, "i-0busy");
}

#[tokio::test]
async fn the_leader_renews_its_lease_while_kubeadm_init_runs() {
    let w = world("renew").await;
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = log.clone();
    // kubeadm init lasts until a renewal happened (or 20 s, failing the test).
    let rec = w.watch(Recorder::new().on_run(move |line| {
        if line.starts_with("kubeadm init") {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if seen.lock().unwrap().iter().any(|l| l.contains("renewed")) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }));
    let net = Net::new(&rec);
    let env = env("master", "master-us-east-1a", "1.31.4");
    let mut timing = fast();
    timing.renew_every = Duration::from_millis(10);
    let sink = log.clone();
    let say = move |m: &str| sink.lock().unwrap().push(m.to_string());
    let id = me("i-0first", "172.20.32.10");
    let result = Bootstrap {
        env: &env,
        me: &id,
        store: &w.store,
        host: rec.clone(),
        remote: &net,
        timing,
        log: &say,
    }
    .run()
    .await;
    assert_eq!(result.unwrap(), Done::Initialized);
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l == "renewed the leader lease")
    );
}

#[tokio::test]
async fn bad_env_values_are_refused_with_their_name() {
    let w = world("bad-env").await;
    for (field, value, name) in [
        ("role", "bastion", "KEELSON_ROLE"),
        ("version", "latest", "KEELSON_KUBERNETES_VERSION"),
        ("taints", "gpu", "KEELSON_TAINTS"),
    ] {
        let mut env = env("master", "g", "1.31.4");
        match field {
            "role" => env.role = value.into(),
            "version" => env.kubernetes_version = value.into(),
            _ => env.taints = value.into(),
        }
        let rec = w.recorder();
        let net = Net::new(&rec);
        let run = bootstrap(&w, &env, &me("i-0", "10.0.0.1"), &rec, &net, fast()).await;
        let e = run.result.unwrap_err().to_string();
        assert!(e.contains(name) && e.contains(value), "{e}");
        assert!(rec.transcript().is_empty(), "nothing done");
    }
}

#[test]
fn the_channel_is_read_as_update_writes_it() {
    let bundles = [crate::addons::Rendered {
        name: "networking.cilium".into(),
        version: "1.17.4".into(),
        path: "networking.cilium/v1.17.4.yaml".into(),
        manifest: "kind: ConfigMap\n".into(),
    }];
    let text = crate::addons::channel(&bundles);
    assert_eq!(
        parse_channel(text.as_bytes()).unwrap(),
        [(bundles[0].path.clone(), Some(bundles[0].hash()))]
    );
    for bad in ["../x.yaml", "/etc/passwd", "a//b.yaml"] {
        let t = format!("spec:\n  addons:\n    - manifest: {bad}\n");
        assert!(parse_channel(t.as_bytes()).is_err(), "{bad}");
    }
    assert!(REDACTED.starts_with('<'));
}

/// The real probe and version read, against the Kubernetes API simulator
/// (real TLS with its own CA, a client certificate, the kubeadm-config ConfigMap of
/// a mirrored master).
#[tokio::test]
async fn the_real_api_probe_and_version_read() {
    let dir = std::env::temp_dir().join(format!("keelson-bootstrap-sim-{}", std::process::id()));
    let sim = kube_sim::start(kube_sim::Config {
        cluster: CLUSTER.into(),
        dir: dir.clone(),
        port: 0,
        ready_after: Duration::from_millis(10),
        poll: Duration::from_millis(20),
        kubernetes_version: "v1.31.4".into(),
        ec2: None,
        extra_instances: vec![kube_sim::Instance {
            id: "i-0sim".into(),
            private_dns: "ip-10-0-0-1.ec2.internal".into(),
            zone: "us-east-1a".into(),
            instance_type: "t3.medium".into(),
            role: "master".into(),
            group: "master-us-east-1a".into(),
            private_ip: String::new(),
        }],
    })
    .await
    .unwrap();
    let endpoint = sim.server.strip_prefix("https://").unwrap().to_string();
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    // The simulator's own client certificate (it takes any its CA signed,
    // as the API server takes a node's).
    let conn = crate::kube::config::load(Some(&dir.join("kubeconfig")), CLUSTER).unwrap();
    let token = NodeCredential {
        cert_pem: String::from_utf8(conn.client_cert_pem.unwrap()).unwrap(),
        key: Secret::new(String::from_utf8(conn.client_key_pem.unwrap()).unwrap()),
    };
    assert_eq!(
        probe_api(&endpoint, &ca, &token).await,
        ApiProbe::Answers(200)
    );
    // Another CA's endpoint is not this cluster's API.
    let other = ClusterPki::generate().unwrap();
    assert_eq!(
        probe_api(&endpoint, other.ca.cert_pem.as_bytes(), &token).await,
        ApiProbe::Down
    );
    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    assert_eq!(probe_api(&closed, &ca, &token).await, ApiProbe::Down);
    // The ConfigMap appears once the simulator mirrored its master.
    let start = Instant::now();
    let version = loop {
        match read_cluster_version(&endpoint, &ca, &token).await {
            Ok(v) => break v,
            Err(e) if start.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(version, Version::parse("1.31.4").unwrap());
    drop(sim);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn after_every_master_was_lost_a_requested_restore_brings_the_cluster_back() {
    let w = world("restore").await;
    // The cluster was initialised long ago; its masters are gone (no API).
    let old = lease::Lease {
        holder: "i-0gone".into(),
        renewed_at: now_secs() - 3 * lease::TTL_SECS,
        ttl_seconds: lease::TTL_SECS,
        initialized: true,
    };
    let put = |k: String, v: Vec<u8>| {
        let b = w.store.backend();
        async move { b.put(&k, v).await.unwrap() }
    };
    put(lease::key(CLUSTER), serde_json::to_vec(&old).unwrap()).await;
    let env = env("master", "master-us-east-1a", "1.31.4");
    let me_ = me("i-0new", "172.20.32.20");

    // Without a request a new master waits for the lost API: it never
    // initialises an empty cluster over the old one's state.
    let rec = w.recorder();
    let net = Net::new(&rec);
    let mut t = fast();
    t.api_wait = Duration::from_millis(30);
    let run = bootstrap(&w, &env, &me_, &rec, &net, t).await;
    assert!(matches!(run.result, Err(NodeError::ApiNotReady { .. })));
    assert!(
        !rec.transcript()
            .iter()
            .any(|l| l.starts_with("run: kubeadm init"))
    );

    // `keelson restore etcd` asked for a backup: this master takes the lease,
    // restores it into etcd's empty data directory, then kubeadm init keeps it.
    let request = lease::RestoreRequest {
        backup: "20261203T101500Z-scheduled".into(),
        requested_at: now_secs(),
        restored_by: None,
        restored_at: None,
    };
    put(
        lease::restore_key(CLUSTER),
        serde_json::to_vec(&request).unwrap(),
    )
    .await;
    let rec = w.recorder();
    let net = Net::new(&rec);
    let run = bootstrap(&w, &env, &me_, &rec, &net, fast()).await;
    assert_eq!(*run.result.as_ref().unwrap(), Done::Initialized);
    let restored = position(
        &rec,
        "remote: restore etcd backup 20261203T101500Z-scheduled",
    );
    assert!(restored < position(&rec, "run: kubeadm init"));
    let config = &rec.writes(KUBEADM_CONFIG)[0];
    assert!(config.contains("- DirAvailable--var-lib-etcd"), "{config}");
    let lease = w.lease().await.unwrap();
    assert!(lease.holder == "i-0new" && lease.initialized);
    // Done once: the request records who carried it out, and is no longer pending.
    assert!(
        lease::pending_restore(&w.store, CLUSTER)
            .await
            .unwrap()
            .is_none()
    );
    let b = w
        .store
        .backend()
        .get(&lease::restore_key(CLUSTER))
        .await
        .unwrap()
        .unwrap();
    let done: lease::RestoreRequest = serde_json::from_slice(&b).unwrap();
    assert_eq!(done.restored_by.as_deref(), Some("i-0new"));
}
