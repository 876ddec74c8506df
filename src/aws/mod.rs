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
pub mod internet_gateway;
pub mod key_pair;
pub mod kind;
pub mod launch_template;
pub mod load_balancer;
pub mod nat_gateway;
pub mod network;
pub mod route;
pub mod route_table;
pub mod route_table_association;
pub mod security_group;
pub mod security_group_rule;
pub mod subnet;
pub mod vpc;
pub mod zones;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Where the SDK looks when neither the caller nor the environment names a region.
pub const FALLBACK_REGION: &str = "us-east-1";

/// Loads the shared SDK configuration. `region` (from the cluster's zones) wins
/// over the environment, since a cluster's resources live in its zones' region.
pub async fn load(region: Option<&str>) -> SdkConfig {
    use aws_smithy_http_client::{Builder, tls};
    let http = Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    // The loader's own region chain shares our HTTP client (its IMDS look-up needs one).
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    let config = loader.load().await;
    if config.region().is_some() {
        return config;
    }
    config
        .into_builder()
        .region(Region::new(FALLBACK_REGION))
        .build()
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
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        // Never reached AWS (no credentials, no network), or an unparseable answer:
        // the source chain says why; the raw response is left out.
        _ => match e {
            SdkError::ServiceError(s) => {
                format!("HTTP {} with an unexpected body", s.raw().status().as_u16())
            }
            _ => DisplayErrorContext(e).to_string(),
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
