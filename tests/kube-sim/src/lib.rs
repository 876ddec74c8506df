//! kube-sim: a small Kubernetes API server for keelson's tests and demo.
//!
//! It serves, over HTTPS with its own CA, the parts of the API that `kubectl get`,
//! `cordon`, `drain` and `apply --server-side` use, and mirrors an AWS emulator:
//! each running instance tagged with the cluster becomes a Node that turns Ready
//! after a delay; terminated instances' Nodes go away. Nodes, the control
//! plane's mirror pods and the kubeadm-config ConfigMap have the shapes the
//! kubelet, kubeadm and the cloud controller give them (see [`world`]). Knobs
//! (methods on [`Handle`], or `POST /sim/...`) make a node NotReady, add a
//! Pending critical pod, add a PodDisruptionBudget that blocks eviction, take a
//! static pod off a master, or stop nodes joining.

pub mod api;
pub mod tls;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub use world::Instance;
use world::World;

pub struct Config {
    /// The cluster whose instances become nodes (tag `KubernetesCluster`); also
    /// the name of the kubeconfig's cluster, user and context.
    pub cluster: String,
    /// Where the kubeconfig (and the bearer token) are written.
    pub dir: PathBuf,
    /// 0 for any free port.
    pub port: u16,
    /// How long a joined node stays NotReady.
    pub ready_after: Duration,
    /// How often EC2 is polled.
    pub poll: Duration,
    pub kubernetes_version: String,
    /// The EC2 to mirror; None serves an API with no nodes of its own.
    pub ec2: Option<aws_sdk_ec2::Client>,
    /// Instances that exist whatever EC2 says (for tests without an emulator).
    pub extra_instances: Vec<Instance>,
}

pub struct Handle {
    pub kubeconfig: PathBuf,
    /// A second kubeconfig that authenticates with the bearer token instead.
    pub kubeconfig_token: PathBuf,
    pub server: String,
    shared: Arc<api::Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Handle {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.shared.world.lock().expect("world")
    }
    pub fn set_not_ready(&self, node: &str, not_ready: bool) {
        let mut w = self.world();
        if not_ready {
            w.forced_not_ready.insert(node.to_string());
        } else {
            w.forced_not_ready.remove(node);
        }
        w.tick();
    }
    pub fn add_pending_critical_pod(&self, name: &str) {
        self.world().add_pending_critical_pod(name);
    }
    pub fn add_blocking_pdb(&self, ns: &str, name: &str, match_labels: Value) {
        self.world().add_blocking_pdb(ns, name, match_labels);
    }
    /// Takes a control-plane component's static pod manifest off a master
    /// (`etcd`, `kube-apiserver`, ...): its mirror pod goes. Returns whether it ran.
    pub fn remove_static_pod(&self, node: &str, component: &str) -> bool {
        self.world().remove_static_pod(node, component)
    }
    /// Reports a workload (`deployments`, `daemonsets` or `statefulsets`) with
    /// no available pod (or, `false`, available again), as its controller would.
    pub fn set_unavailable(&self, resource: &str, ns: &str, name: &str, unavailable: bool) {
        self.world()
            .set_unavailable(resource, ns, name, unavailable);
    }
    pub fn pause_joins(&self, paused: bool) {
        self.world().joins_paused = paused;
    }
    pub fn node_names(&self) -> Vec<String> {
        self.world().node_names()
    }
    /// Every node object, as the API would return it.
    pub fn nodes(&self) -> Vec<Value> {
        let w = self.world();
        w.list(
            world::resource("", "v1", "nodes").expect("nodes"),
            None,
            None,
            None,
        )
        .unwrap_or_default()
    }
    /// Adds a taint to a node, as `kubectl taint` would.
    pub fn add_taint(&self, node: &str, key: &str, effect: &str) {
        let mut w = self.world();
        let r = world::resource("", "v1", "nodes").expect("nodes");
        let n = w.get(r, "", node).expect("the node exists");
        let mut taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
        taints.push(serde_json::json!({"key": key, "effect": effect}));
        w.patch(
            r,
            "",
            node,
            &serde_json::json!({"spec": {"taints": taints}}),
        )
        .expect("patch");
    }
    /// The cordoned nodes.
    pub fn unschedulable_nodes(&self) -> Vec<String> {
        let w = self.world();
        let nodes = world::RESOURCES
            .iter()
            .find(|r| r.plural == "nodes")
            .expect("nodes");
        w.list(nodes, None, None, Some("spec.unschedulable=true"))
            .unwrap_or_default()
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect()
    }
    /// Stops serving and mirroring (also on drop).
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the server and the mirror on the current tokio runtime.
pub async fn start(config: Config) -> Result<Handle, String> {
    let pki = tls::generate()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
        .await
        .map_err(|e| format!("listen on 127.0.0.1:{}: {e}", config.port))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let server = format!("https://127.0.0.1:{port}");
    let token = random_token()?;
    std::fs::create_dir_all(&config.dir).map_err(|e| format!("{}: {e}", config.dir.display()))?;
    let kubeconfig = config.dir.join("kubeconfig");
    let kubeconfig_token = config.dir.join("kubeconfig-token");
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let user_cert = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&pki.client_cert_pem),
        b64(&pki.client_key_pem)
    );
    write_private(
        &kubeconfig,
        &kubeconfig_text(&config.cluster, &server, &b64(&pki.ca_pem), &user_cert),
    )?;
    write_private(
        &kubeconfig_token,
        &kubeconfig_text(
            &config.cluster,
            &server,
            &b64(&pki.ca_pem),
            &format!("    token: {token}\n"),
        ),
    )?;
    write_private(&config.dir.join("token"), &token)?;
    write_private(&config.dir.join("ca.crt"), &pki.ca_pem)?;

    let address = format!("127.0.0.1:{port}");
    let mut world = World::new(&config.kubernetes_version, config.ready_after);
    world.cluster = config.cluster.clone();
    // Where clients reach the API, as kubeadm's controlPlaneEndpoint says.
    world.control_plane_endpoint = address.clone();
    let shared = Arc::new(api::Shared {
        world: Mutex::new(world),
        token,
        address,
    });
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    let serve_shared = shared.clone();
    let serve = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, shared) = (acceptor.clone(), serve_shared.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let cert = tls::has_client_cert(tls.get_ref().1.peer_certificates());
                let svc = service_fn(move |req| {
                    let shared = shared.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(api::handle(shared, cert, req).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let mut tasks = vec![serve];
    let mirror_shared = shared.clone();
    let (cluster, poll, ec2) = (config.cluster.clone(), config.poll, config.ec2);
    let extra = config.extra_instances;
    tasks.push(tokio::spawn(async move {
        loop {
            let found = match &ec2 {
                Some(ec2) => instances(ec2, &cluster).await,
                None => Ok(vec![]),
            };
            match found {
                Ok(mut list) => {
                    list.extend(extra.iter().cloned());
                    mirror_shared
                        .world
                        .lock()
                        .expect("world")
                        .sync_instances(&list)
                }
                // A failed poll changes nothing: nodes must not vanish on a hiccup.
                Err(e) => eprintln!("kube-sim: describing instances: {e}"),
            }
            mirror_shared.world.lock().expect("world").tick();
            tokio::time::sleep(poll).await;
        }
    }));
    Ok(Handle {
        kubeconfig,
        kubeconfig_token,
        server,
        shared,
        tasks,
    })
}

fn kubeconfig_text(cluster: &str, server: &str, ca: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n- name: {cluster}\n  user:\n{user}contexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {cluster}\n\
         current-context: {cluster}\n"
    )
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn random_token() -> Result<String, String> {
    let mut b = [0u8; 24];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The cluster's running instances (pending ones have not booted, so have not joined).
async fn instances(ec2: &aws_sdk_ec2::Client, cluster: &str) -> Result<Vec<Instance>, String> {
    use aws_sdk_ec2::types::Filter;
    let mut out = Vec::new();
    let mut pages = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:KubernetesCluster")
                .values(cluster)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_sdk_ec2::error::DisplayErrorContext(e).to_string())?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let tag = |k: &str| {
                i.tags()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
                    .unwrap_or("")
                    .to_string()
            };
            let role = ["master", "node", "bastion"]
                .into_iter()
                .find(|r| !tag(&format!("k8s.io/role/{r}")).is_empty())
                .unwrap_or("node");
            out.push(Instance {
                id: i.instance_id().unwrap_or("").to_string(),
                private_dns: i.private_dns_name().unwrap_or("").to_string(),
                zone: i
                    .placement()
                    .and_then(|p| p.availability_zone())
                    .unwrap_or("")
                    .to_string(),
                instance_type: i
                    .instance_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                role: role.to_string(),
                // keelson's EC2 tag, which its bootstrap passes on as the
                // keelson.dev/instance-group node label.
                group: tag("kops.k8s.io/instancegroup"),
                private_ip: i.private_ip_address().unwrap_or("").to_string(),
            });
        }
    }
    Ok(out)
}
