//! AWS's timing, in AWS seconds: the one table of figures that both the test
//! harness's clock (`tests/cli/clock.rs`, which puts them in front of the
//! emulator) and the critical path ([`crate::apply::critical`], the lower bound
//! `update --yes` prints) are drawn from. Each figure's source is beside it;
//! docs/aws-clock.md has them as a table.

/// A span of AWS seconds a figure lies in; the clock draws uniformly from it,
/// the critical path takes its middle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub lo: f64,
    pub hi: f64,
}

impl Span {
    /// The expected value of a uniform draw.
    pub fn mid(self) -> f64 {
        (self.lo + self.hi) / 2.0
    }
}

const fn span(lo: f64, hi: f64) -> Span {
    Span { lo, hi }
}

// Per-call latency by service. AWS publishes no latency figures; these are
// round-trip times of a client in the same region as commonly measured, with
// the global endpoints (IAM, Route 53: both served from us-east-1, and IAM
// writes replicated worldwide, see the IAM eventual-consistency note below)
// slower than the regional ones.
pub const LATENCY_EC2: Span = span(0.05, 0.25);
pub const LATENCY_AUTOSCALING: Span = span(0.05, 0.3);
pub const LATENCY_ELB: Span = span(0.05, 0.3);
pub const LATENCY_IAM: Span = span(0.15, 0.6);
pub const LATENCY_ROUTE53: Span = span(0.1, 0.4);
pub const LATENCY_S3: Span = span(0.02, 0.1);
pub const LATENCY_OTHER: Span = span(0.05, 0.2);

/// A new EC2 id is invisible this long. AWS, "Eventual consistency in the
/// Amazon EC2 API" (docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html):
/// "its ID might not have propagated throughout the system, and you will get an
/// error responding that the resource does not exist"; back off "starting with
/// a couple of seconds of wait time, and increasing gradually up to a few minutes".
pub const INVISIBLE: Span = span(0.5, 3.0);

/// A new instance profile is refused by Auto Scaling and RunInstances this
/// long. terraform-provider-aws (internal/service/autoscaling, the launch
/// configuration create): "IAM profiles can take ~10 seconds to propagate in
/// AWS", citing AWS's EC2 user guide (iam-roles-for-amazon-ec2.html); it retries
/// for up to its `propagationTimeout = 2 * time.Minute`
/// (internal/service/iam/wait.go, citing IAM's troubleshooting page on eventual
/// consistency).
pub const PROFILE_PROPAGATION: Span = span(5.0, 15.0);

/// A NAT gateway stays `pending`. AWS documents no figure; botocore's
/// `nat_gateway_available` waiter allows 40 polls 15 s apart (10 minutes), as
/// does terraform's aws_nat_gateway create timeout (10m); terraform's logs show
/// "Still creating... (30s elapsed)" well past the instances beside it (which
/// completed after 22-32 s), and 1-2 minutes is what users report.
pub const NAT_PENDING: Span = span(60.0, 150.0);

/// A deleted NAT gateway stays `deleting` before `deleted` (botocore's
/// `nat_gateway_deleted` waiter: the same 15 s x 40). An estimate.
pub const NAT_DELETING: Span = span(30.0, 60.0);

/// A network load balancer stays `provisioning` before `active`. AWS documents
/// none; moto flips it on the first describe (getmoto/moto#3937), AWS takes
/// minutes (kubernetes-sigs/aws-load-balancer-controller#1786: "about 4 ~ 5min"
/// to provision and register targets).
pub const LB_PROVISIONING: Span = span(120.0, 240.0);

/// An instance stays `pending` before `running`: terraform's aws_instance
/// "Creation complete after 22s ... 32s" (it waits for `running`).
pub const INSTANCE_PENDING: Span = span(20.0, 40.0);

/// The latency of one call to `service` (the signing name: `ec2`, `iam`,
/// `autoscaling`, `elasticloadbalancing`, `route53`, `s3`).
pub fn latency(service: &str) -> Span {
    match service {
        "ec2" => LATENCY_EC2,
        "autoscaling" => LATENCY_AUTOSCALING,
        "elasticloadbalancing" => LATENCY_ELB,
        "iam" => LATENCY_IAM,
        "route53" => LATENCY_ROUTE53,
        "s3" => LATENCY_S3,
        _ => LATENCY_OTHER,
    }
}
