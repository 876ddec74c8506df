//! A fault-injecting HTTP proxy on loopback between keelson and the emulator:
//! keelson's `AWS_ENDPOINT_URL` points here, and each request is either answered
//! with the error AWS would give, in that service's protocol, without reaching
//! the emulator, or forwarded to it unchanged.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::clock::{Clock, Timeline};
use crate::harness::{aws_env, runtime};

#[derive(Clone, Debug)]
pub enum Fault {
    /// Throttle `percent` of all requests, chosen by a seeded generator per
    /// service in the order that service's requests arrive (one stream for all
    /// would let the interleaving of concurrent services decide which are hit).
    Throttle { percent: u64, seed: u64 },
    /// Answer every call of these operations with an error.
    Fail(Vec<Failure>),
    /// Answer S3 requests signed for any other region as S3 does for a bucket
    /// that lives in `region`: 301, with the bucket's region in a header.
    BucketIn { region: &'static str },
    /// Hold every call of this operation for `by` before forwarding it, as an
    /// AWS call that takes long (or a waiter that does not end) would.
    Delay {
        service: &'static str,
        operation: &'static str,
        by: std::time::Duration,
    },
    /// Answer calls of an operation whose body contains `when` with `body`
    /// (e.g. Service Quotas values the emulator lacks), and fail as `Fail` does.
    Answer {
        answers: Vec<Answer>,
        fail: Vec<Failure>,
    },
    /// AWS's timing (`crate::clock`): latency per service, pending states that
    /// last, and eventual consistency, at the clock's scale.
    Clock(Clock),
}

/// A canned answer for [`Fault::Answer`].
#[derive(Clone, Debug)]
pub struct Answer {
    pub service: &'static str,
    pub operation: &'static str,
    pub when: &'static str,
    pub status: u16,
    pub body: String,
}

#[derive(Clone, Debug)]
pub struct Failure {
    pub service: &'static str,
    pub operation: &'static str,
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
}

/// What the proxy saw, by service (the SigV4 signing name: ec2, iam, s3 ...).
#[derive(Default, Debug, Clone)]
pub struct Stats {
    pub requests: BTreeMap<String, usize>,
    pub faults: BTreeMap<String, usize>,
    /// Requests by "SERVICE REGION", the region they were signed for.
    pub signed: BTreeMap<String, usize>,
    /// Query-protocol requests (EC2, IAM, Auto Scaling, ELB) by their Action.
    pub actions: BTreeMap<String, usize>,
    /// The same as IAM names them, `SERVICE:Action` (the signing name is the
    /// IAM prefix for these services).
    pub calls: BTreeMap<String, usize>,
    /// With the clock on: requests it refused (by AWS error code) and answers
    /// it rewrote (by what: `nat pending`, `hidden` ...).
    pub clock_refused: BTreeMap<String, usize>,
    pub clock_rewritten: BTreeMap<String, usize>,
}

impl Stats {
    pub fn total(&self) -> usize {
        self.requests.values().sum()
    }
    pub fn faulted(&self) -> usize {
        self.faults.values().sum()
    }
}

struct State {
    fault: Fault,
    seed: u64,
    /// Each service's generator state, started from the seed and its name.
    rngs: BTreeMap<String, u64>,
    stats: Stats,
    timeline: Timeline,
}

pub struct FaultProxy {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub fn start(fault: Fault) -> FaultProxy {
        let upstream = aws_env()
            .iter()
            .find(|(k, _)| k == "AWS_ENDPOINT_URL")
            .map(|(_, v)| v.clone())
            .unwrap();
        let seed = match &fault {
            Fault::Throttle { seed, .. } => *seed,
            Fault::Clock(c) => c.seed,
            Fault::Fail(_) | Fault::BucketIn { .. } | Fault::Delay { .. } => 0,
            Fault::Answer { .. } => 0,
        };
        let state = Arc::new(Mutex::new(State {
            fault,
            seed,
            rngs: BTreeMap::new(),
            stats: Stats::default(),
            timeline: Timeline::default(),
        }));
        let listener = runtime()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let st = state.clone();
        let task = runtime().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, client, upstream) = (st.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(req, st.clone(), client.clone(), upstream.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FaultProxy { url, state, task }
    }

    pub fn stats(&self) -> Stats {
        let st = self.state.lock().unwrap();
        let mut stats = st.stats.clone();
        stats.clock_refused = st.timeline.refused.clone();
        stats.clock_rewritten = st
            .timeline
            .rewritten
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        stats
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// splitmix64: a seeded, reproducible sequence without a random-number crate.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A part of a request's SigV4 credential scope
/// (`Credential=AKID/DATE/REGION/SERVICE/aws4_request`): 2 the region, 3 the service.
fn scope(req: &Request<Incoming>, part: usize) -> String {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(part))
        .unwrap_or("unknown")
        .to_string()
}

/// The operation of a query-protocol request (EC2, IAM, Auto Scaling, ELB):
/// the `Action` form field.
fn action(body: &[u8]) -> Option<String> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map(str::to_string)
}

/// The throttling error as each service's protocol spells it.
fn throttle(service: &str, head: bool) -> (u16, String) {
    match service {
        "ec2" => (
            503,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>f00d</RequestID></Response>".into(),
        ),
        // S3 HEAD answers carry no body; the status says it all.
        "s3" if head => (503, String::new()),
        "s3" => (
            503,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>f00d</RequestId><HostId>h</HostId></Error>".into(),
        ),
        // IAM, Auto Scaling, ELBv2 (query) and Route53 (REST-XML) share the shape.
        _ => (400, query_error("Throttling", "Rate exceeded")),
    }
}

fn query_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>f00d</RequestId></ErrorResponse>"
    )
}

fn ec2_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>f00d</RequestID></Response>"
    )
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (service, region) = (scope(&req, 3), scope(&req, 2));
    let head = req.method() == hyper::Method::HEAD;
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // JSON-protocol services (Service Quotas) name the operation in a header.
    let op = action(&body).or_else(|| {
        let target = parts.headers.get("x-amz-target")?.to_str().ok()?;
        Some(target.rsplit('.').next()?.to_string())
    });
    let fault = {
        let mut st = state.lock().unwrap();
        if let Some(op) = &op {
            *st.stats.actions.entry(op.clone()).or_default() += 1;
            *st.stats.calls.entry(format!("{service}:{op}")).or_default() += 1;
        }
        *st.stats.requests.entry(service.clone()).or_default() += 1;
        *st.stats
            .signed
            .entry(format!("{service} {region}"))
            .or_default() += 1;
        let fault = match &st.fault {
            Fault::Delay { .. } | Fault::Clock(_) => None,
            Fault::Throttle { percent, .. } => {
                let percent = *percent;
                let start = service
                    .bytes()
                    .fold(st.seed, |h, b| next(&mut (h ^ u64::from(b))));
                let rng = st.rngs.entry(service.clone()).or_insert(start);
                (next(rng) % 100 < percent).then(|| throttle(&service, head))
            }
            Fault::Answer { answers, fail } => answers
                .iter()
                .find(|a| {
                    a.service == service
                        && op.as_deref() == Some(a.operation)
                        && String::from_utf8_lossy(&body).contains(a.when)
                })
                .map(|a| (a.status, a.body.clone()))
                .or_else(|| {
                    fail.iter()
                        .find(|f| f.service == service && op.as_deref() == Some(f.operation))
                        .map(|f| {
                            let body = if service == "ec2" {
                                ec2_error(f.code, f.message)
                            } else {
                                query_error(f.code, f.message)
                            };
                            (f.status, body)
                        })
                }),
            Fault::Fail(failures) => failures
                .iter()
                .find(|f| f.service == service && op.as_deref() == Some(f.operation))
                .map(|f| {
                    let body = if service == "ec2" {
                        ec2_error(f.code, f.message)
                    } else {
                        query_error(f.code, f.message)
                    };
                    (f.status, body)
                }),
            Fault::BucketIn { region: there } => (service == "s3" && region != *there).then(|| {
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message></Error>";
                (301, if head { String::new() } else { body.to_string() })
            }),
        };
        if fault.is_some() {
            *st.stats.faults.entry(service.clone()).or_default() += 1;
        }
        fault
    };
    if let Some((status, body)) = fault {
        let bucket_region = match &state.lock().unwrap().fault {
            Fault::BucketIn { region } => *region,
            _ => "",
        };
        let mut resp = Response::builder();
        if !bucket_region.is_empty() {
            resp = resp.header("x-amz-bucket-region", bucket_region);
        }
        return Ok(resp
            .status(status)
            .header("content-type", "text/xml")
            .body(Full::new(Bytes::from(body)))
            .unwrap());
    }

    let clock = match &state.lock().unwrap().fault {
        Fault::Clock(c) => Some(c.clone()),
        _ => None,
    };
    let form = crate::clock::form(&body);
    let hold = match &state.lock().unwrap().fault {
        Fault::Delay {
            service: s,
            operation,
            by,
        } if *s == service && op.as_deref() == Some(*operation) => Some(*by),
        _ => None,
    };
    let hold = match &clock {
        Some(c) => Some(state.lock().unwrap().timeline.latency(c, &service)),
        None => hold,
    };
    if let Some(by) = hold {
        tokio::time::sleep(by).await;
    }
    if clock.is_some() {
        // Decided after the latency: AWS sees the request when it arrives.
        let refusal =
            state
                .lock()
                .unwrap()
                .timeline
                .refuse(&service, op.as_deref().unwrap_or(""), &form);
        if let Some(r) = refusal {
            let body = if service == "ec2" {
                ec2_error(&r.code, &r.message)
            } else {
                query_error(&r.code, &r.message)
            };
            return Ok(Response::builder()
                .status(r.status)
                .header("content-type", "text/xml")
                .body(Full::new(Bytes::from(body)))
                .unwrap());
        }
    }
    let uri = format!(
        "{upstream}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut up = Request::builder().method(parts.method).uri(uri);
    for (k, v) in &parts.headers {
        // The body is forwarded whole: hyper sets the framing again.
        if k != "host" && k != "content-length" && k != "transfer-encoding" {
            up = up.header(k, v);
        }
    }
    let resp = match client.request(up.body(Full::new(body)).unwrap()).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Full::new(Bytes::from(format!("proxy: {e}"))))
                .unwrap());
        }
    };
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut down = Response::builder().status(parts.status);
    for (k, v) in &parts.headers {
        if k != "content-length" && k != "transfer-encoding" {
            down = down.header(k, v);
        }
    }
    // A HEAD answer keeps the length of the body it does not carry.
    if head && let Some(len) = parts.headers.get("content-length") {
        down = down.header("content-length", len);
    }
    // KEELSON_PROXY_LOG=FILE: one line a forwarded request, to see what a
    // test's keelson did.
    if let Some(path) = std::env::var_os("KEELSON_PROXY_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(
                f,
                "{service} {} {} {}",
                op.as_deref().unwrap_or(parts.status.as_str()),
                parts.status.as_u16(),
                String::from_utf8_lossy(&body[..body.len().min(300)]).replace('\n', " ")
            );
        }
    }
    let body = match (&clock, &op, std::str::from_utf8(&body)) {
        (Some(c), Some(op), Ok(text)) => Bytes::from(state.lock().unwrap().timeline.answered(
            c,
            &service,
            op,
            &form,
            parts.status.as_u16(),
            text.to_string(),
        )),
        _ => body,
    };
    Ok(down.body(Full::new(body)).unwrap())
}
