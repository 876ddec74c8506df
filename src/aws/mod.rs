//! AWS clients. One file per resource kind; today the read-only look-ups that
//! `create cluster` needs. Endpoints come from the standard `AWS_ENDPOINT_URL`, so
//! keelson reaches an AWS-compatible emulator exactly as it reaches AWS.

pub mod autoscaling_group;
pub mod dhcp_options;
pub mod discover;
pub mod dns_record;
pub mod elastic_ip;
pub mod iam_role;
pub mod iam_role_policy;
pub mod images;
pub mod instance_profile;
pub mod instance_types;
pub mod internet_gateway;
pub mod key_pair;
pub mod kind;
pub mod launch_template;
pub mod load_balancer;
pub mod nat_gateway;
pub mod network;
pub mod quotas;
pub mod rate;
pub mod reach;
pub mod route;
pub mod route_table;
pub mod route_table_association;
pub mod security_group;
pub mod security_group_rule;
pub mod service_load_balancer;
pub mod subnet;
pub mod timing;
pub mod volume;
pub mod vpc;
pub mod zones;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

/// Where the SDK looks when neither the caller nor the environment names a region.
pub const FALLBACK_REGION: &str = "us-east-1";

/// How many times one request is sent before its error reaches keelson, unless
/// `AWS_MAX_ATTEMPTS` says otherwise. The SDK's default (3) gives up after about
/// a second of throttling; kops retries 13 times, Terraform 25.
pub const MAX_ATTEMPTS: u32 = 10;

/// The retry policy, explicit rather than the SDK's defaults:
/// - every request is retried by the SDK (standard mode) on throttling codes
///   (`RequestLimitExceeded`, `Throttling`, `SlowDown`, ...), 5xx and timeouts,
///   up to [`MAX_ATTEMPTS`], after an exponential backoff from 1 s to 20 s with
///   full jitter;
/// - retries draw from one retry quota per service (the SDK's token bucket,
///   shared by every client of that service in the process, so by all parallel
///   steps): 500 tokens, 5 a throttled retry, given back when it succeeds. Under
///   sustained throttling the quota runs dry and requests stop being retried
///   instead of stampeding;
/// - what still fails reaches the executor, which retries the step after a
///   pause shared by all steps (see `apply::Pacer`).
///
/// Adaptive mode (a client-side rate limiter) is not used: it cuts its rate by
/// 30% at every throttle and stays at the cut for seconds, which turns a burst of
/// throttling into minutes of idling for a short-lived CLI.
pub fn retry_config() -> aws_config::retry::RetryConfig {
    let attempts = std::env::var("AWS_MAX_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(MAX_ATTEMPTS);
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(std::time::Duration::from_secs(1))
        .with_max_backoff(std::time::Duration::from_secs(20))
}

/// Loads the shared SDK configuration. `region` (from the cluster's zones) wins
/// over the environment, since a cluster's resources live in its zones' region.
pub async fn load(region: Option<&str>) -> SdkConfig {
    // The loader's own region chain shares our HTTP client (its IMDS look-up needs one).
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    let mut config = loader.load().await;
    if config.region().is_none() {
        config = config
            .into_builder()
            .region(Region::new(FALLBACK_REGION))
            .build();
    }
    reach::remember(&config);
    // The endpoint is an address, never a credential.
    tracing::debug!(
        "AWS region {}, endpoint {}",
        config.region().map(|r| r.as_ref()).unwrap_or("?"),
        config.endpoint_url().unwrap_or("AWS's own")
    );
    config
}

/// How long a connection may take to open: AWS answers a SYN in milliseconds,
/// and the kernel resends a lost one after 1 s, so 3 s means the endpoint or the
/// network is wrong (see `reach`: not retried on first contact).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

fn timeout_config() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

/// One HTTPS client for the whole process, whatever the number of configs
/// loaded (the state store's, then the cluster region's): its TLS set-up, which
/// parses the system's root certificates, is done once, and connections are
/// pooled across every service client. (Pooled connections belong to the
/// runtime that opened them: keelson runs one for the life of the process.)
fn http_client() -> aws_sdk_ec2::config::SharedHttpClient {
    use aws_smithy_http_client::{Builder, tls};
    static CLIENT: std::sync::OnceLock<aws_sdk_ec2::config::SharedHttpClient> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // EC2's request rates are kept client-side (`rate`), inside the
            // fail-fast rule, so that a request waiting for a token is not a
            // connection that failed.
            reach::fail_fast(rate::limited(
                Builder::new()
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            ))
        })
        .clone()
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("AWS {operation} failed: {message}")]
    Call {
        operation: &'static str,
        code: Option<String>,
        message: String,
    },
    #[error("{0}")]
    Other(String),
}

impl AwsError {
    /// AWS's error code, for deciding whether to retry.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Call { code, .. } => code.as_deref(),
            AwsError::Other(_) => None,
        }
    }
}

/// AWS's own words for an error: its code and message, or the whole chain when
/// the error never reached AWS (no credentials, no network).
pub fn describe<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Some(line) = reach::explain(e, e.code(), e.message()) {
        return line;
    }
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        // Never reached AWS (no credentials, no network), or an unparseable answer:
        // the source chain says why; the raw response is left out.
        _ => match e {
            SdkError::ServiceError(s) => {
                format!("HTTP {} with an unexpected body", s.raw().status().as_u16())
            }
            // Each cause's own words, never the SDK's Debug structures.
            _ => reach::chain(e).join(": "),
        },
    }
}

pub fn call_error<E>(operation: &'static str, e: &SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    AwsError::Call {
        operation,
        code: e.code().map(str::to_string),
        message: describe(e),
    }
}
