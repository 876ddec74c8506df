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
