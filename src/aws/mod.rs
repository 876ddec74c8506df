//! AWS clients. One file per resource kind; today the read-only look-ups that
//! `create cluster` needs. Endpoints come from the standard `AWS_ENDPOINT_URL`, so
//! keelson reaches an AWS-compatible emulator exactly as it reaches AWS.

pub mod network;
pub mod zones;

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};
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
    let region = RegionProviderChain::first_try(region.map(|r| Region::new(r.to_string())))
        .or_default_provider()
        .or_else(Region::new(FALLBACK_REGION));
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(region)
        .load()
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("AWS {operation} failed: {message}")]
    Call {
        operation: &'static str,
        message: String,
    },
}

/// AWS's own words for an error: its code and message, or the whole chain when
/// the error never reached AWS (no credentials, no network).
pub fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        _ => DisplayErrorContext(e).to_string(),
    }
}

pub fn call_error<E, R>(operation: &'static str, e: &SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    AwsError::Call {
        operation,
        message: describe(e),
    }
}
