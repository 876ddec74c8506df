//! A test instance metadata service: IMDSv2 as AWS documents it ("Use the
//! Instance Metadata Service to access instance metadata", IMDSv2): a session
//! token from `PUT /latest/api/token` (with `X-aws-ec2-metadata-token-ttl-seconds`,
//! which the answer carries back),
//! then `GET /latest/meta-data/...` with `X-aws-ec2-metadata-token`; a GET without
//! a valid token is refused with 401, as on an instance that requires tokens
//! (keelson's launch templates do). One server is one instance.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::harness::runtime;

pub struct Imds {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

const TOKEN: &str = "AQAEAtest-imds-session-token==";

impl Imds {
    /// Serves `meta-data/KEY` for each entry of `data`.
    pub fn start(data: BTreeMap<String, String>) -> Imds {
        let data = Arc::new(data);
        let listener = runtime()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = runtime().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let data = data.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, data.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Imds { url, task }
    }

    /// An instance's metadata, as EC2 gives it.
    pub fn instance(id: &str, ip: &str, dns: &str, region: &str) -> Imds {
        Imds::start(BTreeMap::from([
            ("instance-id".into(), id.into()),
            ("local-ipv4".into(), ip.into()),
            ("local-hostname".into(), dns.into()),
            ("placement/region".into(), region.into()),
        ]))
    }
}

impl Drop for Imds {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: StatusCode, body: &str) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}

async fn handle(
    req: Request<Incoming>,
    data: Arc<BTreeMap<String, String>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/latest/api/token" {
        let ttl = req
            .headers()
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Some(ttl) = ttl.filter(|_| req.method() == hyper::Method::PUT) else {
            return reply(StatusCode::BAD_REQUEST, "");
        };
        // IMDS answers the token with its lifetime in the same header.
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("x-aws-ec2-metadata-token-ttl-seconds", ttl)
            .body(Full::new(Bytes::from(TOKEN)))
            .unwrap());
    }
    if req
        .headers()
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        != Some(TOKEN)
    {
        return reply(StatusCode::UNAUTHORIZED, "");
    }
    match path
        .strip_prefix("/latest/meta-data/")
        .and_then(|k| data.get(k))
    {
        Some(v) => reply(StatusCode::OK, v),
        None => reply(StatusCode::NOT_FOUND, ""),
    }
}
