//! Both ends of node attestation ([`super::attest`]) over the network: the
//! masters' agent serves `POST https://IP:3988/node-credential` with a server
//! certificate of the cluster CA for its own address, and a node asks the
//! running masters (from EC2) in turn until one grants it a credential.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::NodeError;
use super::attest::{self, Expect, Granted, InstanceFacts, Refusal, Request};
use crate::pki::Secret;

/// What a node holds after attestation, or a master makes itself: a client
/// certificate for `system:node:NAME` and its key.
pub struct NodeCredential {
    pub cert_pem: String,
    pub key: Secret,
}

/// The node-name identity Kubernetes' Node authorizer knows.
pub fn node_user(node_name: &str) -> String {
    format!("system:node:{node_name}")
}
pub const NODES_GROUP: &str = "system:nodes";

/// The masters' side: checks a request and grants a certificate.
pub struct Issuer {
    pub cluster: String,
    pub account: String,
    pub node_roles: Vec<String>,
    sts: String,
    ca_key: Secret,
    ec2: aws_sdk_ec2::Client,
    http: StsClient,
    seen: attest::Seen,
}

type StsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn sts_client() -> Result<StsClient, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .map_err(|e| format!("the system's CA certificates: {e}"))?
        // http only for an emulator named by AWS_ENDPOINT_URL.
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    )
}

/// Sends a signed `GetCallerIdentity` to STS at `endpoint`; its answer (XML).
async fn ask_sts(http: &StsClient, endpoint: &str, req: &Request) -> Result<String, Refusal> {
    let mut r = hyper::Request::builder()
        .method("POST")
        .uri(format!("{endpoint}/"));
    for (k, v) in &req.headers {
        // hyper sets the host from the URI, the one the node signed.
        if k != "host" {
            r = r.header(k.as_str(), v.as_str());
        }
    }
    let r = r
        .body(Full::new(Bytes::from_static(attest::STS_BODY.as_bytes())))
        .map_err(|e| Refusal::Malformed(format!("a header: {e}")))?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(20), http.request(r))
        .await
        .map_err(|_| Refusal::Unavailable(format!("STS at {endpoint} did not answer in 20s")))?
        .map_err(|e| Refusal::Unavailable(format!("STS at {endpoint}: {e}")))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Refusal::Unavailable(format!("STS at {endpoint}: {e}")))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        // STS's error: `<Code>SignatureDoesNotMatch</Code>`, `ExpiredToken`, ...
        let code = text
            .split("<Code>")
            .nth(1)
            .and_then(|t| t.split('<').next())
            .unwrap_or("no error code");
        return Err(Refusal::Sts(format!("HTTP {}: {code}", status.as_u16())));
    }
    Ok(text.into_owned())
}

impl Issuer {
    /// The issuer of a master: the cluster CA's key from the state store, the
    /// account from STS (this master's own identity, signed the same way).
    pub async fn new(node: &super::agent::Node) -> Result<Issuer, NodeError> {
        let cluster = node.env.cluster.clone();
        let key = crate::state::layout::pki_private(&cluster, "ca.key");
        let ca_key = node
            .store
            .backend()
            .get(&key)
            .await?
            .ok_or_else(|| NodeError::Io {
                path: key.clone(),
                message: "missing from the state store".into(),
            })?;
        let http = sts_client().map_err(|message| NodeError::Io {
            path: "CA certificates".into(),
            message,
        })?;
        let sts = attest::sts_endpoint(&node.me.region);
        let creds = node.credentials().await?;
        let own_key = rcgen::KeyPair::generate().map_err(|e| NodeError::Io {
            path: "a key".into(),
            message: e.to_string(),
        })?;
        let req = attest::sign(
            &creds,
            &node.me.region,
            &sts,
            &cluster,
            &node.me.private_dns,
            own_key.public_key_raw(),
            std::time::SystemTime::now(),
        )
        .map_err(|message| NodeError::Attest {
            what: "signing this master's own identity request".into(),
            message,
        })?;
        let what = || format!("asking STS ({sts}) which account this master is in");
        let answer = ask_sts(&http, &sts, &req)
            .await
            .map_err(|r| NodeError::Attest {
                what: what(),
                message: r.to_string(),
            })?;
        let account = attest::xml_field(&answer, "Account").ok_or_else(|| NodeError::Attest {
            what: what(),
            message: "no Account in its answer".into(),
        })?;
        Ok(Issuer {
            node_roles: vec![crate::model::iam::role_name(
                crate::spec::Role::Node,
                &cluster,
            )],
            cluster,
            account,
            sts,
            ca_key: Secret::new(String::from_utf8_lossy(&ca_key).into_owned()),
            ec2: node.ec2.clone(),
            http,
            seen: attest::Seen::default(),
        })
    }

    async fn instance(&self, id: &str) -> Result<Option<InstanceFacts>, Refusal> {
        let out = match self.ec2.describe_instances().instance_ids(id).send().await {
            Ok(o) => o,
            Err(e) => {
                use aws_sdk_ec2::error::ProvideErrorMetadata;
                if e.code() == Some("InvalidInstanceID.NotFound") {
                    return Ok(None);
                }
                return Err(Refusal::Unavailable(format!(
                    "EC2 DescribeInstances: {}",
                    crate::aws::describe(&e)
                )));
            }
        };
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id))
            .map(|i| InstanceFacts {
                state: i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default(),
                tags: i
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                    .collect(),
                private_dns: i.private_dns_name().unwrap_or_default().to_string(),
            }))
    }

    /// The whole check, then the certificate. Only a request that passed the
    /// checks without the network reaches STS and EC2.
    pub async fn grant(&self, req: &Request, now: u64) -> Result<Granted, Refusal> {
        let checked = attest::check_request(req, &self.cluster, now)?;
        if !self.seen.first_use(&checked.signature, now) {
            return Err(Refusal::Replayed);
        }
        let caller = attest::parse_caller(&ask_sts(&self.http, &self.sts, req).await?)?;
        let instance = self.instance(&caller.session).await?;
        attest::admit(
            &caller,
            instance.as_ref(),
            &Expect {
                cluster: &self.cluster,
                account: &self.account,
                node_roles: &self.node_roles,
            },
            &req.node_name,
        )?;
        let certificate = crate::pki::certify_client_key(
            &self.ca_key,
            "kubernetes-ca",
            &node_user(&req.node_name),
            Some(NODES_GROUP),
            &crate::pki::P256PublicKey(checked.public_key),
            attest::CREDENTIAL_LIFETIME,
        )
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        Ok(Granted { certificate })
    }
}

fn answer(status: u16, body: serde_json::Value) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a response")
}

async fn handle(
    issuer: Arc<Issuer>,
    req: hyper::Request<hyper::body::Incoming>,
    peer: SocketAddr,
    log: Arc<dyn Fn(&str) + Send + Sync>,
) -> hyper::Response<Full<Bytes>> {
    if req.method() != hyper::Method::POST || req.uri().path() != attest::PATH {
        return answer(
            404,
            serde_json::json!({"message": format!("only POST {}", attest::PATH)}),
        );
    }
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return answer(400, serde_json::json!({"message": e.to_string()})),
    };
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return answer(
                400,
                serde_json::json!({"message": format!("not a request: {e}")}),
            );
        }
    };
    match issuer.grant(&request, attest::now_secs()).await {
        Ok(g) => {
            log(&format!(
                "granted a credential to {} ({peer})",
                request.node_name
            ));
            answer(200, serde_json::to_value(g).expect("json"))
        }
        Err(r) => {
            log(&format!(
                "refused a credential to {:?} ({peer}): {r}",
                request.node_name
            ));
            answer(r.status(), serde_json::json!({"message": r.to_string()}))
        }
    }
}

/// Serves until the process ends, on `ip`:[`attest::PORT`] (or `port`), with a
/// server certificate of the cluster CA for `ip`.
pub async fn serve(
    issuer: Arc<Issuer>,
    ip: IpAddr,
    port: u16,
    log: Arc<dyn Fn(&str) + Send + Sync>,
) -> Result<(), NodeError> {
    let io = |message: String| NodeError::Io {
        path: format!("{ip}:{port}"),
        message,
    };
    // A day's certificate; the agent restarts daily at worst (systemd), making a new one.
    let (cert, key) = crate::pki::server_credential(
        &issuer.ca_key,
        "kubernetes-ca",
        "keelson-node-credentials",
        ip,
        std::time::Duration::from_secs(365 * 24 * 3600),
    )
    .map_err(|e| io(e.to_string()))?;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io(e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_slice(key.expose().as_bytes()).map_err(|e| io(e.to_string()))?;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| io(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| io(e.to_string()))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind((ip, port))
        .await
        .map_err(|e| io(format!("cannot listen: {e}")))?;
    log(&format!(
        "serving node credentials on https://{ip}:{port}{}",
        attest::PATH
    ));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log(&format!("accept: {e}"));
                continue;
            }
        };
        let (acceptor, issuer, log) = (acceptor.clone(), issuer.clone(), log.clone());
        tokio::spawn(async move {
            let Ok(tls) =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
                    .await
            else {
                return;
            };
            let Ok(tls) = tls else { return };
            let svc = service_fn(move |req| {
                let (issuer, log) = (issuer.clone(), log.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(issuer, req, peer, log).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// The node's side: a new key, a signed request, and the masters in turn until
/// one grants it (the request is returned too, for diagnosis). Errors name
/// every master tried and its answer.
pub async fn request_credential(
    node: &super::agent::Node,
    ca_pem: &[u8],
    port: u16,
) -> Result<(NodeCredential, Request), NodeError> {
    let key = rcgen::KeyPair::generate().map_err(|e| NodeError::Io {
        path: "a key".into(),
        message: e.to_string(),
    })?;
    let creds = node.credentials().await?;
    let sts = attest::sts_endpoint(&node.me.region);
    let req = attest::sign(
        &creds,
        &node.me.region,
        &sts,
        &node.env.cluster,
        &node.me.private_dns,
        key.public_key_raw(),
        std::time::SystemTime::now(),
    )
    .map_err(|message| NodeError::Attest {
        what: "signing the identity request".into(),
        message,
    })?;
    let cert_pem = send(node, ca_pem, port, &req).await?;
    Ok((
        NodeCredential {
            cert_pem,
            key: Secret::new(key.serialize_pem()),
        },
        req,
    ))
}

/// Sends `req` to each running master; the first certificate wins.
pub async fn send(
    node: &super::agent::Node,
    ca_pem: &[u8],
    port: u16,
    req: &Request,
) -> Result<String, NodeError> {
    let masters = super::masters(&node.ec2, &node.env.cluster).await?;
    let mut tried = Vec::new();
    for m in masters.iter().filter(|m| !m.private_ip.is_empty()) {
        let server = format!("https://{}:{port}", m.private_ip);
        let answer = async {
            let client = crate::kube::Client::new(crate::kube::Connection {
                context: "keelson-node-credential".into(),
                server: server.clone(),
                ca_pem: ca_pem.to_vec(),
                client_cert_pem: None,
                client_key_pem: None,
                token: None,
            })
            .map_err(|e| e.to_string())?;
            let v = client
                .post(attest::PATH, serde_json::to_value(req).expect("json"))
                .await
                .map_err(|e| e.to_string())?;
            serde_json::from_value::<Granted>(v).map_err(|e| e.to_string())
        };
        match answer.await {
            Ok(g) => return Ok(g.certificate),
            Err(e) => tried.push(format!("{} ({}): {e}", m.instance_id, m.private_ip)),
        }
    }
    Err(NodeError::Attest {
        what: format!(
            "asking the masters of {} for a node credential",
            node.env.cluster
        ),
        message: if tried.is_empty() {
            "no master instance is running yet".into()
        } else {
            tried.join("; ")
        },
    })
}
