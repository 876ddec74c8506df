//! Reaching AWS: what a broken connection or bad credentials look like to a
//! user. Two parts:
//! - the HTTP client fails fast on first contact: a connection that cannot be
//!   made (refused, no such host, connect timeout) before any response came back
//!   in this process is not retried (the SDK would retry it for about 70 s), since
//!   the endpoint or the network is wrong, not busy. Once one response came back,
//!   the same failure is a blip and is retried as any other;
//! - [`explain`] turns the errors that never reached AWS, or that AWS refused
//!   for the credentials, into one line naming the endpoint or the credential
//!   chain, the cause and the fix, never the SDK's `Debug` structures.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// Set once any HTTP response (whatever its status) came back.
static REACHED: AtomicBool = AtomicBool::new(false);

/// For the node agent, which runs at boot while the network may still be
/// coming up: every connect failure is retried, as the SDK does.
pub fn retry_first_contact() {
    REACHED.store(true, Ordering::Relaxed);
}

/// The endpoint and region of the last configuration loaded, for messages.
fn target() -> &'static Mutex<(Option<String>, String)> {
    static T: OnceLock<Mutex<(Option<String>, String)>> = OnceLock::new();
    T.get_or_init(|| Mutex::new((None, super::FALLBACK_REGION.to_string())))
}

pub(super) fn remember(config: &aws_config::SdkConfig) {
    let region = config
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| super::FALLBACK_REGION.to_string());
    *target().lock().expect("target lock") = (config.endpoint_url().map(str::to_string), region);
}

/// Wraps the process's HTTP client with the fail-fast rule above.
pub(super) fn fail_fast(inner: SharedHttpClient) -> SharedHttpClient {
    SharedHttpClient::new(FailFastClient { inner })
}

#[derive(Debug)]
struct FailFastClient {
    inner: SharedHttpClient,
}

impl HttpClient for FailFastClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(FailFast {
            inner: self.inner.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct FailFast {
    inner: SharedHttpConnector,
}

impl HttpConnector for FailFast {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let call = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            match call.await {
                Ok(r) => {
                    REACHED.store(true, Ordering::Relaxed);
                    Ok(r)
                }
                // `other` without a retry kind: the SDK's classifiers leave it alone.
                Err(e) if !REACHED.load(Ordering::Relaxed) && is_connect_failure(&e) => {
                    Err(ConnectorError::other(Box::new(e), None))
                }
                Err(e) => Err(e),
            }
        })
    }
}

/// The connection was never made: refused, a name that does not resolve, or
/// the connect timeout.
fn is_connect_failure(e: &ConnectorError) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper_util::client::legacy::Error>()
            && h.is_connect()
        {
            return true;
        }
        if err.to_string().contains("HTTP connect timeout") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Each error of the chain once, by its `Display` (never `Debug`), outermost first.
pub fn chain(e: &(dyn StdError + 'static)) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        // Wrappers repeat their source's text, or say only "io error", "other".
        if !s.is_empty() && !out.iter().any(|o| o.contains(&s)) {
            out.push(s);
        }
        cur = err.source();
    }
    out
}

/// The profile in use, as the SDK picks it.
fn profile() -> String {
    std::env::var("AWS_PROFILE")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// Where the credentials came from, for a message about refused ones.
fn credential_source() -> String {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        "the environment (AWS_ACCESS_KEY_ID)".into()
    } else {
        format!("profile {:?}", profile())
    }
}

/// The fix for missing or refused credentials.
fn credentials_fix() -> String {
    let p = profile();
    let flag = if p == "default" {
        String::new()
    } else {
        format!(" --profile {p}")
    };
    format!(
        "run `aws configure{flag}` (access keys) or `aws sso login{flag}` (IAM Identity Center), or set AWS_PROFILE to a profile that has credentials"
    )
}

/// One line for an error that is about reaching AWS or its credentials; `None`
/// for any other error. `code` and `message` are AWS's, when it answered.
pub fn explain(
    err: &(dyn StdError + 'static),
    code: Option<&str>,
    message: Option<&str>,
) -> Option<String> {
    if let Some(code) = code {
        return refused(code, message.unwrap_or(""));
    }
    let mut cur = Some(err);
    let mut connector = false;
    while let Some(e) = cur {
        if let Some(c) = e.downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
        {
            return Some(no_credentials(c));
        }
        connector |= e.downcast_ref::<ConnectorError>().is_some();
        cur = e.source();
    }
    if !connector {
        return None;
    }
    let causes = chain(err);
    let cause = causes.last().cloned().unwrap_or_default();
    let (endpoint, region) = target().lock().expect("target lock").clone();
    Some(unreachable(endpoint.as_deref(), &region, &cause))
}

fn no_credentials(c: &aws_credential_types::provider::error::CredentialsError) -> String {
    use aws_credential_types::provider::error::CredentialsError as C;
    match c {
        C::CredentialsNotLoaded(_) => format!(
            "no AWS credentials found: the chain looked in the environment (AWS_ACCESS_KEY_ID), profile {:?} (~/.aws/credentials, ~/.aws/config), web identity, and the container and instance metadata; {}",
            profile(),
            credentials_fix()
        ),
        other => {
            let why = chain(other).join(": ").replace('\n', " ");
            format!(
                "loading AWS credentials failed (profile {:?} in use): {why}; {}",
                profile(),
                credentials_fix()
            )
        }
    }
}

/// AWS answered, refusing the credentials (or a region this account cannot use).
fn refused(code: &str, message: &str) -> Option<String> {
    let what = match code {
        "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "InvalidAccessKeyId"
        | "AuthFailure" => "AWS does not know these credentials",
        "ExpiredToken" | "ExpiredTokenException" | "TokenRefreshRequired" => {
            "the AWS credentials have expired"
        }
        "SignatureDoesNotMatch" => "the secret access key does not match the access key id",
        "RequestExpired" => {
            return Some(format!(
                "AWS refused the request as expired ({code}: {message}); this machine's clock is probably wrong: set it right (NTP) and try again"
            ));
        }
        _ => return None,
    };
    let region = target().lock().expect("target lock").1.clone();
    Some(format!(
        "{what} ({code}: {message}), from {}, in region {region}; {}; if they are right, the region may not be enabled for this account (AWS console, Account, AWS Regions)",
        credential_source(),
        credentials_fix()
    ))
}

/// The connection could not be made.
pub fn unreachable(endpoint: Option<&str>, region: &str, cause: &str) -> String {
    let dns = cause.contains("dns error") || cause.contains("lookup address");
    match endpoint {
        Some(url) => format!(
            "cannot reach AWS at {url} (AWS_ENDPOINT_URL): {cause}; check that the endpoint is up and AWS_ENDPOINT_URL is right, or unset it to use AWS itself"
        ),
        None if dns => format!(
            "cannot reach AWS in region {region}: {cause}; check the region's name (AWS_REGION, the profile's region, the cluster's zones) and this machine's DNS and network"
        ),
        None => format!(
            "cannot reach AWS in region {region}: {cause}; check this machine's network (a proxy: HTTPS_PROXY) and the region"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_endpoint_cause_and_fix() {
        let m = unreachable(
            Some("http://127.0.0.1:9"),
            "us-east-1",
            "tcp connect error: Connection refused (os error 111)",
        );
        assert!(m.contains("http://127.0.0.1:9") && m.contains("Connection refused"));
        assert!(m.contains("AWS_ENDPOINT_URL"));
        let m = unreachable(
            None,
            "us-east-9",
            "dns error: failed to lookup address information: Name or service not known",
        );
        assert!(
            m.contains("us-east-9") && m.contains("region's name"),
            "{m}"
        );
        for code in [
            "InvalidClientTokenId",
            "ExpiredToken",
            "SignatureDoesNotMatch",
        ] {
            let m = refused(code, "no").unwrap();
            assert!(m.contains(code) && m.contains("aws configure"), "{m}");
            assert!(m.contains("aws sso login"), "{m}");
        }
        assert!(refused("InvalidParameterValue", "x").is_none());
    }
}
