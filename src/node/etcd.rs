//! A small etcd v3 client over etcd's JSON gateway (`/v3/...`, served on every
//! client URL since etcd 3.3; 3.4 and later at `/v3/`), on the same hyper and
//! rustls stack as the rest of keelson: a gRPC stack would be a heavy dependency
//! for the five calls the agent makes. Member IDs are uint64 and the gateway
//! writes them as JSON strings (proto3's JSON mapping).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use super::NodeError;

/// One member as `MemberList` reports it. A member added but not yet started has
/// no name and no client URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl Member {
    pub fn started(&self) -> bool {
        !self.name.is_empty() && !self.client_urls.is_empty()
    }

    /// The host of the member's first peer URL: kubeadm advertises the node's
    /// private IP there (`https://IP:2380`, cmd/kubeadm/app/phases/etcd/local.go).
    pub fn peer_host(&self) -> Option<&str> {
        let url = self.peer_urls.first()?;
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let host = rest.split('/').next()?;
        Some(host.rsplit_once(':').map_or(host, |(h, _)| h))
    }
}

/// The client certificate etcd asks for (kubeadm runs etcd with
/// `--client-cert-auth`), with the etcd CA to check the server against.
pub struct Tls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Clone)]
pub struct Client {
    http: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn err(endpoint: &str, what: &str, message: impl ToString) -> NodeError {
    NodeError::Etcd {
        endpoint: endpoint.to_string(),
        message: format!("{what}: {}", message.to_string()),
    }
}

fn id_of(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        v => v.as_u64().unwrap_or(0),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Client {
    /// A client for `http://` endpoints (tests) and, with `tls`, `https://` ones.
    pub fn new(tls: Option<&Tls>) -> Result<Client, NodeError> {
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| err("-", "TLS", e))?;
        let config = match tls {
            Some(t) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(t.ca_pem.as_bytes()) {
                    roots
                        .add(c.map_err(|e| err("-", "etcd CA", e))?)
                        .map_err(|e| err("-", "etcd CA", e))?;
                }
                let chain = CertificateDer::pem_slice_iter(t.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| err("-", "client certificate", e))?;
                let key = PrivateKeyDer::from_pem_slice(t.key_pem.as_bytes())
                    .map_err(|e| err("-", "client key", e))?;
                builder
                    .with_root_certificates(roots)
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| err("-", "client certificate", e))?
            }
            None => builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Client {
            http: HyperClient::builder(hyper_util::rt::TokioExecutor::new()).build(https),
        })
    }

    async fn send(
        &self,
        endpoint: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Bytes, NodeError> {
        let url = format!("{}{path}", endpoint.trim_end_matches('/'));
        let req = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .map_err(|e| err(endpoint, path, e))?;
        let call = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| err(endpoint, path, e))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| err(endpoint, path, e))?
                .to_bytes();
            if !status.is_success() {
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let msg = v["error"]
                    .as_str()
                    .or(v["message"].as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
                return Err(err(endpoint, path, format!("HTTP {status}: {msg}")));
            }
            Ok(bytes)
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| err(endpoint, path, format!("no answer in {timeout:?}")))?
    }

    async fn post(&self, endpoint: &str, path: &str, body: Value) -> Result<Value, NodeError> {
        let bytes = self
            .send(endpoint, "POST", path, Some(body), TIMEOUT)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| err(endpoint, path, e))
    }

    pub async fn member_list(&self, endpoint: &str) -> Result<Vec<Member>, NodeError> {
        let v = self
            .post(endpoint, "/v3/cluster/member/list", json!({}))
            .await?;
        Ok(v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| Member {
                id: id_of(&m["ID"]),
                name: m["name"].as_str().unwrap_or("").to_string(),
                peer_urls: strings(&m["peerURLs"]),
                client_urls: strings(&m["clientURLs"]),
            })
            .collect())
    }

    /// Removes a member. etcd commits this through raft, so it needs quorum.
    pub async fn member_remove(&self, endpoint: &str, id: u64) -> Result<(), NodeError> {
        self.post(
            endpoint,
            "/v3/cluster/member/remove",
            json!({"ID": id.to_string()}),
        )
        .await
        .map(|_| ())
    }

    /// Whether the member at `client_url` answers its health check with a leader
    /// (etcd's `/health`: `{"health":"true"}` only when the member has one).
    pub async fn healthy(&self, client_url: &str) -> bool {
        match self
            .send(client_url, "GET", "/health", None, Duration::from_secs(3))
            .await
        {
            Ok(b) => serde_json::from_slice::<Value>(&b)
                .is_ok_and(|v| v["health"] == "true" || v["health"] == true),
            Err(_) => false,
        }
    }

    /// The member's status: its etcd version and the database's size.
    pub async fn status(&self, endpoint: &str) -> Result<Value, NodeError> {
        self.post(endpoint, "/v3/maintenance/status", json!({}))
            .await
    }

    /// A point-in-time snapshot of the database, as `etcdctl snapshot save`
    /// writes it (the bolt file with its SHA-256 trailer, which `snapshot restore`
    /// checks). The gateway streams it as JSON messages with base64 blobs.
    pub async fn snapshot(&self, endpoint: &str) -> Result<Vec<u8>, NodeError> {
        let path = "/v3/maintenance/snapshot";
        let bytes = self
            .send(
                endpoint,
                "POST",
                path,
                Some(json!({})),
                Duration::from_secs(600),
            )
            .await?;
        let mut out = Vec::new();
        for msg in serde_json::Deserializer::from_slice(&bytes).into_iter::<Value>() {
            let msg = msg.map_err(|e| err(endpoint, path, e))?;
            if let Some(e) = msg.get("error") {
                return Err(err(endpoint, path, e));
            }
            if let Some(blob) = msg["result"]["blob"].as_str() {
                out.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(blob)
                        .map_err(|e| err(endpoint, path, e))?,
                );
            }
        }
        if out.len() < 32 {
            return Err(err(endpoint, path, "an empty snapshot"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_hosts_and_started_members() {
        let m = Member {
            id: 1,
            name: "ip-10-0-1-5.ec2.internal".into(),
            peer_urls: vec!["https://10.0.1.5:2380".into()],
            client_urls: vec!["https://10.0.1.5:2379".into()],
        };
        assert_eq!(m.peer_host(), Some("10.0.1.5"));
        assert!(m.started());
        let unstarted = Member {
            name: String::new(),
            client_urls: vec![],
            ..m
        };
        assert!(!unstarted.started());
        assert_eq!(id_of(&json!("17246141271758541805")), 17246141271758541805);
    }
}
