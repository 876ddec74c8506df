//! keelson's minimal Kubernetes client: just what validate and rolling-update
//! need (nodes, pods, cordon, eviction), over hyper and rustls with the
//! kubeconfig's CA. JSON values rather than typed objects: we read a handful of
//! fields and must not fail on the rest.

pub mod config;

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

pub use config::Connection;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{0}")]
    Config(String),
    #[error("Kubernetes API {server}: {message}")]
    Transport { server: String, message: String },
    #[error("Kubernetes API {method} {path}: HTTP {status}: {message}")]
    Api {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
}

impl KubeError {
    pub fn status(&self) -> Option<u16> {
        match self {
            KubeError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    http: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    conn: Connection,
}

/// The outcome of one eviction request.
#[derive(Debug, PartialEq, Eq)]
pub enum Eviction {
    Evicted,
    /// Already gone: nothing to do.
    Gone,
    /// A PodDisruptionBudget refused it for now (HTTP 429); the API's reason.
    Blocked(String),
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    pub fn new(conn: Connection) -> Result<Client, KubeError> {
        let bad = |what: &str, e: String| {
            KubeError::Config(format!("kubeconfig context {}: {what}: {e}", conn.context))
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&conn.ca_pem) {
            let cert = cert.map_err(|e| bad("certificate-authority", e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| bad("certificate-authority", e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad(
                "certificate-authority",
                "no PEM certificate in it".into(),
            ));
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", e.to_string()))?
        .with_root_certificates(roots);
        let tls = match (&conn.client_cert_pem, &conn.client_key_pem) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("client-certificate", e.to_string()))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| bad("client-key", e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad("client certificate and key", e.to_string()))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(bad(
                    "user",
                    "a client certificate needs both client-certificate and client-key".into(),
                ));
            }
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let http = HyperClient::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        Ok(Client { http, conn })
    }

    /// The client for the cluster's context in the kubeconfig (see [`config::load`]).
    pub fn from_kubeconfig(
        explicit: Option<&std::path::Path>,
        cluster: &str,
    ) -> Result<Client, KubeError> {
        Client::new(config::load(explicit, cluster)?)
    }

    pub fn server(&self) -> &str {
        &self.conn.server
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, KubeError> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.conn.server))
            .header("accept", "application/json")
            .header("user-agent", concat!("keelson/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = &self.conn.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let body = body
            .map(|b| serde_json::to_vec(&b).expect("json"))
            .unwrap_or_default();
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| KubeError::Transport {
                server: self.conn.server.clone(),
                message: e.to_string(),
            })?;
        let transport = |message: String| KubeError::Transport {
            server: self.conn.server.clone(),
            message,
        };
        let resp = tokio::time::timeout(TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| transport(format!("no answer within {}s", TIMEOUT.as_secs())))?
            .map_err(|e| transport(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let message = value["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        let causes: Vec<&str> = value["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["message"].as_str())
            .collect();
        Err(KubeError::Api {
            method,
            path: path.to_string(),
            status,
            message: if causes.is_empty() {
                message
            } else {
                format!("{message} ({})", causes.join("; "))
            },
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, KubeError> {
        self.call("GET", path, None, None).await
    }

    /// The items of a list.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>, KubeError> {
        let v = self.get(path).await?;
        Ok(v["items"].as_array().cloned().unwrap_or_default())
    }

    pub async fn nodes(&self) -> Result<Vec<Value>, KubeError> {
        self.list("/api/v1/nodes").await
    }

    /// Pods of all namespaces, optionally only those on one node.
    pub async fn pods(&self, node: Option<&str>) -> Result<Vec<Value>, KubeError> {
        match node {
            Some(n) => {
                self.list(&format!(
                    "/api/v1/pods?fieldSelector={}",
                    encode(&format!("spec.nodeName={n}"))
                ))
                .await
            }
            None => self.list("/api/v1/pods").await,
        }
    }

    /// Marks a node (un)schedulable, as `kubectl cordon` does, with an annotation
    /// set (or removed, with None) in the same patch.
    pub async fn cordon(
        &self,
        node: &str,
        unschedulable: bool,
        annotation: (&str, Option<&str>),
    ) -> Result<(), KubeError> {
        let patch = json!({
            "metadata": {"annotations": {annotation.0: annotation.1}},
            "spec": {"unschedulable": if unschedulable { json!(true) } else { Value::Null }},
        });
        self.call(
            "PATCH",
            &format!("/api/v1/nodes/{node}"),
            Some("application/strategic-merge-patch+json"),
            Some(patch),
        )
        .await
        .map(|_| ())
    }

    /// One node, or None if there is none of that name.
    pub async fn node(&self, name: &str) -> Result<Option<Value>, KubeError> {
        match self.get(&format!("/api/v1/nodes/{name}")).await {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds (or removes) a taint on a node, as `kubectl taint` does; returns
    /// whether anything changed. `spec.taints` is replaced whole by any patch,
    /// so the patch carries the node's resourceVersion: on a real API server a
    /// concurrent change (the node controller's own taints) fails it with 409,
    /// and it is retried on a fresh read rather than overwriting that change.
    pub async fn set_taint(
        &self,
        node: &Value,
        key: &str,
        effect: &str,
        present: bool,
    ) -> Result<bool, KubeError> {
        let name = self::name(node).to_string();
        let mut node = node.clone();
        for _ in 0..5 {
            let Some(taints) = with_taint(&node["spec"]["taints"], key, effect, present) else {
                return Ok(false);
            };
            let patch = json!({
                "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                "spec": {"taints": if taints.is_empty() { Value::Null } else { Value::Array(taints) }},
            });
            match self
                .call(
                    "PATCH",
                    &format!("/api/v1/nodes/{name}"),
                    Some("application/merge-patch+json"),
                    Some(patch),
                )
                .await
            {
                Ok(_) => return Ok(true),
                // Gone (its instance was terminated meanwhile): nothing to taint.
                Err(e) if e.status() == Some(404) => return Ok(false),
                Err(e) if e.status() == Some(409) => match self.node(&name).await? {
                    Some(n) => node = n,
                    None => return Ok(false),
                },
                Err(e) => return Err(e),
            }
        }
        Err(KubeError::Api {
            method: "PATCH",
            path: format!("/api/v1/nodes/{name}"),
            status: 409,
            message: "the node kept changing while its taints were updated; run the command again"
                .into(),
        })
    }

    /// A JSON POST (the masters' node-credential endpoint speaks the API's way).
    pub async fn post(&self, path: &str, body: Value) -> Result<Value, KubeError> {
        self.call("POST", path, Some("application/json"), Some(body))
            .await
    }

    /// Asks to evict a pod, honouring PodDisruptionBudgets (as `kubectl drain`).
    pub async fn evict(&self, namespace: &str, name: &str) -> Result<Eviction, KubeError> {
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                          "metadata": {"name": name, "namespace": namespace}});
        match self
            .call(
                "POST",
                &format!("/api/v1/namespaces/{namespace}/pods/{name}/eviction"),
                Some("application/json"),
                Some(body),
            )
            .await
        {
            Ok(_) => Ok(Eviction::Evicted),
            Err(e) if e.status() == Some(404) => Ok(Eviction::Gone),
            Err(KubeError::Api {
                status: 429,
                message,
                ..
            }) => Ok(Eviction::Blocked(message)),
            Err(e) => Err(e),
        }
    }

    /// Whether the pod still exists (with the same uid).
    pub async fn pod_exists(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<bool, KubeError> {
        match self
            .get(&format!("/api/v1/namespaces/{namespace}/pods/{name}"))
            .await
        {
            Ok(p) => Ok(p["metadata"]["uid"].as_str() == Some(uid)),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether a node carries the taint `key:effect`.
pub fn has_taint(node: &Value, key: &str, effect: &str) -> bool {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["key"] == key && t["effect"] == effect)
}

/// A node's taints with `key:effect` added or removed; None when they already
/// are as asked (so a rerun never duplicates the taint). Pure.
pub fn with_taint(taints: &Value, key: &str, effect: &str, present: bool) -> Option<Vec<Value>> {
    let list: Vec<Value> = taints.as_array().cloned().unwrap_or_default();
    let ours = |t: &Value| t["key"] == key && t["effect"] == effect;
    let has = list.iter().any(ours);
    match (present, has) {
        (true, true) | (false, false) => None,
        (true, false) => Some(
            list.into_iter()
                .chain([json!({"key": key, "effect": effect})])
                .collect(),
        ),
        (false, true) => Some(list.into_iter().filter(|t| !ours(t)).collect()),
    }
}

/// Whether a node's Ready condition is True.
pub fn node_ready(node: &Value) -> bool {
    condition(node, "Ready")
}

pub fn condition(obj: &Value, kind: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// The instance id in a node's `aws:///ZONE/i-...` provider id.
pub fn instance_id(node: &Value) -> Option<&str> {
    node["spec"]["providerID"]
        .as_str()
        .and_then(|p| p.rsplit('/').next())
        .filter(|id| id.starts_with("i-"))
}

pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_give_instance_ids() {
        let n = json!({"spec": {"providerID": "aws:///us-east-1a/i-0abc"}});
        assert_eq!(instance_id(&n), Some("i-0abc"));
        assert_eq!(
            instance_id(&json!({"spec": {"providerID": "gce://p/z/n"}})),
            None
        );
        assert_eq!(encode("spec.nodeName=ip-1"), "spec.nodeName%3Dip-1");
    }

    #[test]
    fn taints_are_added_once_and_removed_alone() {
        let other = json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"});
        let k = "kops.k8s.io/scheduled-for-update";
        let added = with_taint(&json!([other]), k, "PreferNoSchedule", true).unwrap();
        assert_eq!(
            added,
            vec![
                other.clone(),
                json!({"key": k, "effect": "PreferNoSchedule"})
            ]
        );
        let node = json!({"spec": {"taints": added}});
        assert!(has_taint(&node, k, "PreferNoSchedule"));
        // Already there: no change, so no duplicate.
        assert_eq!(
            with_taint(&node["spec"]["taints"], k, "PreferNoSchedule", true),
            None
        );
        assert_eq!(
            with_taint(&node["spec"]["taints"], k, "PreferNoSchedule", false),
            Some(vec![other.clone()])
        );
        // A taint of the same key with another effect is someone else's.
        assert_eq!(
            with_taint(&json!([other]), k, "PreferNoSchedule", false),
            None
        );
        assert_eq!(
            with_taint(&Value::Null, k, "PreferNoSchedule", true).map(|v| v.len()),
            Some(1)
        );
    }

    #[test]
    fn kubeconfig_contexts_resolve_by_cluster_name_then_current() {
        let dir = std::env::temp_dir().join(format!("keelson-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), "CA").unwrap();
        let path = dir.join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster:\n    server: https://a:443/\n    certificate-authority: ca.crt\n\
             - name: b\n  cluster:\n    server: https://b\n    certificate-authority-data: Qg==\n\
             users:\n- name: u\n  user:\n    token: secret\n\
             contexts:\n- name: first\n  context:\n    cluster: a\n    user: u\n- name: demo.k8s.local\n  context:\n    cluster: b\n    user: u\n\
             current-context: first\n",
        )
        .unwrap();
        let c = config::load(Some(&path), "demo.k8s.local").unwrap();
        assert_eq!(
            (c.server.as_str(), c.ca_pem.as_slice()),
            ("https://b", b"B".as_slice())
        );
        assert_eq!(c.token.as_deref(), Some("secret"));
        // No context of that name: the current one; a relative CA path is relative to the file.
        let c = config::load(Some(&path), "other").unwrap();
        assert_eq!(
            (c.server.as_str(), c.ca_pem.as_slice()),
            ("https://a:443", b"CA".as_slice())
        );
        let e = config::load(Some(&dir.join("missing")), "x")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
