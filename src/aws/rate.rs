//! Client-side request rates: keelson never sends EC2 requests faster than
//! AWS's own buckets refill, so that it does not throttle itself (and, through
//! the account's shared buckets, everything else in the account).
//!
//! AWS, "Request throttling for the Amazon EC2 API"
//! (docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html): EC2
//! throttles per account and per region with a token bucket *per API action*,
//! "each request that you make removes one token from the API's bucket", and
//! the bucket refills at a set rate up to its maximum. Its table "Request token
//! bucket sizes and refill rates" gives, by action category:
//!
//! | category | bucket size | refill per second |
//! | --- | ---: | ---: |
//! | non-mutating (Describe*, Get*, List*, Search*) | 100 | 20 |
//! | unfiltered and unpaginated non-mutating | 50 | 10 |
//! | mutating (Create*, Modify*, Delete*, ...) | 200 | 5 |
//!
//! (the page's own example: "the token bucket size for DescribeHosts, a
//! non-mutating API action, is 100 tokens ... a refill rate of 20 tokens per
//! second"). The same buckets here, one per region and action, held for the
//! process: a request that finds its bucket empty waits for the next token
//! instead of being sent to be refused. The SDK's retries pass through here too.
//!
//! Not modelled: the *resource* buckets (RunInstances' instances per second),
//! since keelson launches through Auto Scaling, which spends them itself; and
//! Auto Scaling, ELB and IAM, whose per-action rates AWS does not publish (their
//! throttling is retried, `aws::retry_config`). A keelson apply stays far below
//! the EC2 figures: the largest burst of one write action measured at 1 and 10
//! groups is 13 (AuthorizeSecurityGroupIngress), and one CreateLaunchTemplate
//! per group makes 50 of a 200 bucket at 50 groups (docs/performance.md).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// An EC2 action's throttling category, with AWS's bucket size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Mutating,
    NonMutating,
    UnfilteredNonMutating,
}

impl Category {
    /// (bucket size, tokens per second), from the table above.
    pub fn bucket(self) -> (f64, f64) {
        match self {
            Category::Mutating => (200.0, 5.0),
            Category::NonMutating => (100.0, 20.0),
            Category::UnfilteredNonMutating => (50.0, 10.0),
        }
    }

    /// The category of an EC2 query-protocol request: its action, and whether
    /// its form narrows the answer (a filter, ids, a page size or token).
    pub fn of(action: &str, form: &str) -> Category {
        let reads = ["Describe", "Get", "List", "Search"];
        if !reads.iter().any(|p| action.starts_with(p)) {
            return Category::Mutating;
        }
        let narrowed = form.split('&').any(|kv| {
            let key = kv.split('=').next().unwrap_or("");
            key.starts_with("Filter.")
                || key == "MaxResults"
                || key == "NextToken"
                || key.contains("Id")
                || key.contains("Name")
        });
        if narrowed {
            Category::NonMutating
        } else {
            Category::UnfilteredNonMutating
        }
    }
}

/// A token bucket that hands out reservations: a request that finds no token
/// takes the next one to arrive, and waits until then.
#[derive(Debug, Clone)]
pub struct Bucket {
    capacity: f64,
    refill: f64,
    /// Tokens at `at`; below zero when requests are queued for future tokens.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket, as AWS's are while an account is idle.
    pub fn new((capacity, refill): (f64, f64), now: Instant) -> Bucket {
        Bucket {
            capacity,
            refill,
            tokens: capacity,
            at: now,
        }
    }

    /// Takes one token at `now`; returns how long the request must wait for it
    /// (zero when one was there).
    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.refill).min(self.capacity) - 1.0;
        self.at = self.at.max(now);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.refill)
        }
    }
}

/// The region and service a request was signed for (SigV4's credential scope:
/// `Credential=KEY/DATE/REGION/SERVICE/aws4_request`).
fn scope(request: &HttpRequest) -> Option<(String, String)> {
    let auth = request.headers().get("authorization")?;
    let cred = auth.split("Credential=").nth(1)?;
    let mut parts = cred.split('/');
    let (_key, _date) = (parts.next()?, parts.next()?);
    Some((parts.next()?.to_string(), parts.next()?.to_string()))
}

/// The bucket key and category of an EC2 request, `None` for anything else.
fn ec2_request(request: &HttpRequest) -> Option<(String, Category)> {
    let (region, service) = scope(request)?;
    if service != "ec2" {
        return None;
    }
    let form = std::str::from_utf8(request.body().bytes()?).ok()?;
    let action = form.split('&').find_map(|kv| kv.strip_prefix("Action="))?;
    Some((format!("{region} {action}"), Category::of(action, form)))
}

fn buckets() -> &'static Mutex<BTreeMap<String, Bucket>> {
    static B: OnceLock<Mutex<BTreeMap<String, Bucket>>> = OnceLock::new();
    B.get_or_init(Default::default)
}

/// How long this request must wait for its bucket (zero for all but EC2).
fn wait_for(request: &HttpRequest) -> Duration {
    let Some((key, category)) = ec2_request(request) else {
        return Duration::ZERO;
    };
    let now = Instant::now();
    buckets()
        .lock()
        .expect("rate buckets")
        .entry(key)
        .or_insert_with(|| Bucket::new(category.bucket(), now))
        .take(now)
}

/// Wraps the process's HTTP client with EC2's request rates.
pub(super) fn limited(inner: SharedHttpClient) -> SharedHttpClient {
    SharedHttpClient::new(RateClient { inner })
}

#[derive(Debug)]
struct RateClient {
    inner: SharedHttpClient,
}

impl HttpClient for RateClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(RateLimited {
            inner: self.inner.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct RateLimited {
    inner: SharedHttpConnector,
}

impl HttpConnector for RateLimited {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let wait = wait_for(&request);
        if wait.is_zero() {
            return self.inner.call(request);
        }
        let inner = self.inner.clone();
        HttpConnectorFuture::new(async move {
            tokio::time::sleep(wait).await;
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_lets_its_size_through_then_paces_at_the_refill_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Category::Mutating.bucket(), t0);
        for _ in 0..200 {
            assert_eq!(b.take(t0), Duration::ZERO);
        }
        // The 201st waits one refill interval (1/5 s), the 202nd two.
        assert_eq!(b.take(t0), Duration::from_millis(200));
        assert_eq!(b.take(t0), Duration::from_millis(400));
        // A second later five tokens have come, of which two were reserved.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..3 {
            assert_eq!(b.take(t1), Duration::ZERO);
        }
        assert_eq!(b.take(t1), Duration::from_millis(200));
    }

    #[test]
    fn an_idle_bucket_refills_only_to_its_size() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Category::NonMutating.bucket(), t0);
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..100 {
            assert_eq!(b.take(later), Duration::ZERO);
        }
        assert_eq!(b.take(later), Duration::from_millis(50));
    }

    #[test]
    fn actions_fall_in_aws_categories() {
        use Category::*;
        let filtered = "Action=DescribeVpcs&Version=2016-11-15&Filter.1.Name=tag-key";
        assert_eq!(Category::of("DescribeVpcs", filtered), NonMutating);
        let by_id = "Action=DescribeNatGateways&NatGatewayId.1=nat-1";
        assert_eq!(Category::of("DescribeNatGateways", by_id), NonMutating);
        let all = "Action=DescribeRegions&Version=2016-11-15";
        assert_eq!(Category::of("DescribeRegions", all), UnfilteredNonMutating);
        let create = "Action=CreateVpc&CidrBlock=10.0.0.0%2F16";
        assert_eq!(Category::of("CreateVpc", create), Mutating);
        assert_eq!(Category::of("AuthorizeSecurityGroupIngress", ""), Mutating);
    }
}
