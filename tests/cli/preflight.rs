//! Preflight (issue 20): what AWS would refuse halfway through is refused before
//! anything is written, and a broken connection or missing credentials fails in
//! seconds, in one line. See docs/preflight.md.

use std::time::{Duration, Instant};

use crate::harness::*;
use crate::proxy::{Failure, Fault, FaultProxy};

/// No SDK `Debug` structure, one line.
fn assert_one_clear_line(r: &Run) {
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line:\n{}", r.stderr);
    for debug in [
        "DispatchFailure",
        "ConnectorError",
        "ProviderError",
        "CredentialsNotLoaded",
        "{ ",
    ] {
        assert!(!r.stderr.contains(debug), "SDK Debug output:\n{}", r.stderr);
    }
}

fn demo_args<'a>(name: &'a str, key: &'a str) -> Vec<&'a str> {
    vec![
        "create",
        "cluster",
        name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
        "--ssh-public-key",
        key,
    ]
}

#[test]
fn an_unreachable_endpoint_fails_in_seconds_in_one_line() {
    let sb = Sandbox::new("pf_unreachable");
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["update", "cluster", "x.k8s.local"],
        vec!["create", "cluster", "x.k8s.local", "--zones", "us-east-1a"],
    ] {
        let mut cmd = sb.command(&args);
        cmd.args(["--state", &sb.state()])
            .env("AWS_ENDPOINT_URL", &url);
        let start = Instant::now();
        let r = sb.run_cmd(cmd);
        let took = start.elapsed();
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert_one_clear_line(&r);
        assert!(
            r.stderr.contains(&url)
                && r.stderr.contains("Connection refused")
                && r.stderr.contains("AWS_ENDPOINT_URL"),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn no_credentials_name_the_chain_and_the_fix() {
    let sb = Sandbox::new("pf_nocreds");
    let mut cmd = sb.command(&["update", "cluster", "x.k8s.local", "--state", &sb.state()]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_PROFILE", "work");
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_one_clear_line(&r);
    assert!(
        r.stderr.contains("no AWS credentials")
            && r.stderr.contains("\"work\"")
            && r.stderr.contains("aws configure --profile work")
            && r.stderr.contains("aws sso login --profile work"),
        "{}",
        r.stderr
    );
}

#[test]
fn refused_credentials_name_the_code_and_the_fix() {
    let sb = Sandbox::new("pf_refused");
    let key = sb.path("admin.pub");
    let name = sb.cluster("pf-refused");
    // AWS's words (Common Errors, the API references).
    for (status, code, message) in [
        (
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ),
        (
            400,
            "ExpiredToken",
            "The security token included in the request is expired",
        ),
        (
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ),
    ] {
        let proxy = FaultProxy::start(Fault::Fail(vec![Failure {
            service: "ec2",
            operation: "DescribeAvailabilityZones",
            status,
            code,
            message,
        }]));
        let mut cmd = sb.command(&demo_args(&name, key.to_str().unwrap()));
        cmd.args(["--state", &sb.state()])
            .env("AWS_ENDPOINT_URL", &proxy.url);
        let r = sb.run_cmd(cmd);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert_one_clear_line(&r);
        assert!(
            r.stderr.contains(code)
                && r.stderr.contains("AWS_ACCESS_KEY_ID")
                && r.stderr.contains("aws configure")
                && r.stderr.contains("aws sso login"),
            "{}",
            r.stderr
        );
    }
    assert!(sb.keys().is_empty(), "nothing written: {:?}", sb.keys());
}

#[test]
fn a_versioned_bucket_gets_no_versioning_warning() {
    let sb = Sandbox::new("pf_versioned");
    block_on(async {
        s3().put_bucket_versioning()
            .bucket(&sb.bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
    })
    .unwrap();
    let key = sb.path("admin.pub");
    let name = sb.cluster("pf-vbucket");
    let r = sb.ok(&demo_args(&name, key.to_str().unwrap()));
    assert!(
        !r.stderr.contains("not versioned") && !r.stderr.contains("versioning of"),
        "{}",
        r.stderr
    );
    // An unversioned bucket still gets the warning.
    let other = Sandbox::new("pf_unversioned");
    let r = other.ok(&demo_args(&name, key.to_str().unwrap()));
    assert!(r.stderr.contains("is not versioned"), "{}", r.stderr);
}

#[test]
fn a_missing_image_is_refused_at_create() {
    let sb = Sandbox::new("pf_image");
    let key = sb.path("admin.pub");
    let name = sb.cluster("pf-image");
    let mut args = demo_args(&name, key.to_str().unwrap());
    args[4] = "ami-00000000000000dead";
    let mut a = args.clone();
    let state = sb.state();
    a.extend(["--state", &state]);
    let r = sb.run(&a);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("spec.image: ami-00000000000000dead does not exist in us-east-1")
            && r.stderr.contains("aws ec2 describe-images"),
        "{}",
        r.stderr
    );
    assert!(sb.keys().is_empty(), "nothing written: {:?}", sb.keys());
}

/// Service Quotas' GetServiceQuota answer (its API reference's shape).
fn quota_answer(code: &'static str, name: &str, value: u64) -> crate::proxy::Answer {
    crate::proxy::Answer {
        service: "servicequotas",
        operation: "GetServiceQuota",
        when: code,
        status: 200,
        body: format!(
            r#"{{"Quota":{{"ServiceCode":"ec2","ServiceName":"Amazon Elastic Compute Cloud (Amazon EC2)","QuotaArn":"arn:aws:servicequotas:eu-west-3:123456789012:ec2/{code}","QuotaCode":"{code}","QuotaName":"{name}","Value":{value}.0,"Unit":"None","Adjustable":true,"GlobalQuota":false}}}}"#
        ),
    }
}

/// The issue's case: a second 3-zone private cluster (3 NAT gateways, 3 EIPs)
/// in an account allowed 5 Elastic IPs with 3 in use is refused before any
/// write, with the increase command; with room, the preview shows the use.
/// A region of its own (eu-west-3): usage is counted per region, and no other
/// test builds there.
#[test]
fn an_elastic_ip_quota_short_by_one_is_refused_before_anything_is_written() {
    let sb = Sandbox::new("pf_quota");
    let key = sb.path("admin.pub");
    let name = sb.cluster("pf-quota");
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(sdk_config())
            .region(aws_sdk_ec2::config::Region::new("eu-west-3"))
            .build(),
    );
    let used = block_on(async {
        let mut n = ec2
            .describe_addresses()
            .send()
            .await
            .unwrap()
            .addresses()
            .len();
        while n < 3 {
            ec2.allocate_address().send().await.unwrap();
            n += 1;
        }
        n as u64
    });
    sb.ok(&[
        "create",
        "cluster",
        &name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "eu-west-3a,eu-west-3b,eu-west-3c",
        "--topology",
        "private",
        "--bastion",
        "--master-count",
        "3",
        "--node-count",
        "3",
        "--ssh-public-key",
        key.to_str().unwrap(),
    ]);
    let before = sb.keys();
    let proxy = |eips: u64| {
        FaultProxy::start(Fault::Answer {
            answers: vec![
                quota_answer("L-0263D0A3", "EC2-VPC Elastic IPs", eips),
                quota_answer(
                    "L-1216C47A",
                    "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
                    1000,
                ),
                // The emulator implements neither: the bodies of the Service
                // Quotas and Auto Scaling API references.
                crate::proxy::Answer {
                    service: "servicequotas",
                    operation: "ListServiceQuotas",
                    when: "vpc",
                    status: 200,
                    body: r#"{"Quotas":[{"ServiceCode":"vpc","QuotaCode":"L-F678F1CE","QuotaName":"VPCs per Region","Value":50.0,"Unit":"None","Adjustable":true,"GlobalQuota":false},{"ServiceCode":"vpc","QuotaCode":"L-A4707A72","QuotaName":"Internet gateways per Region","Value":50.0,"Unit":"None","Adjustable":true,"GlobalQuota":false},{"ServiceCode":"vpc","QuotaCode":"L-FE5A380F","QuotaName":"NAT gateways per Availability Zone","Value":500.0,"Unit":"None","Adjustable":true,"GlobalQuota":false}]}"#.to_string(),
                },
                crate::proxy::Answer {
                    service: "autoscaling",
                    operation: "DescribeAccountLimits",
                    when: "DescribeAccountLimits",
                    status: 200,
                    body: r#"<DescribeAccountLimitsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><DescribeAccountLimitsResult><NumberOfLaunchConfigurations>0</NumberOfLaunchConfigurations><MaxNumberOfLaunchConfigurations>200</MaxNumberOfLaunchConfigurations><NumberOfAutoScalingGroups>2</NumberOfAutoScalingGroups><MaxNumberOfAutoScalingGroups>200</MaxNumberOfAutoScalingGroups></DescribeAccountLimitsResult><ResponseMetadata><RequestId>f00d</RequestId></ResponseMetadata></DescribeAccountLimitsResponse>"#.to_string(),
                },
            ],
            // What AWS would say halfway through, were it not refused first.
            fail: vec![Failure {
                service: "ec2",
                operation: "AllocateAddress",
                status: 400,
                code: "AddressLimitExceeded",
                message: "The maximum number of addresses has been reached.",
            }],
        })
    };
    // Short by one: 3 used (or more, from earlier runs) + 3 needed > used + 2.
    let short = proxy(used + 2);
    let mut cmd = sb.command(&["update", "cluster", &name, "--yes", "--state", &sb.state()]);
    cmd.env("AWS_ENDPOINT_URL", &short.url)
        .env_remove("KEELSON_QUOTAS");
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let total = used + 3;
    for want in [
        "quota EC2-VPC Elastic IPs (ec2 L-0263D0A3) in eu-west-3".to_string(),
        format!(
            "{used} used + 3 needed = {total} is more than the limit {}",
            used + 2
        ),
        format!(
            "aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-0263D0A3 --desired-value {total} --region eu-west-3"
        ),
    ] {
        assert!(r.stderr.contains(&want), "{want}:\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("AddressLimitExceeded"), "{}", r.stderr);
    // Nothing at all: no cloud write reached the proxy, no state object moved,
    // no VPC of the cluster exists.
    let actions = short.stats().actions;
    let writes: Vec<&String> = actions
        .keys()
        .filter(|a| !a.starts_with("Describe") && !a.starts_with("List") && !a.starts_with("Get"))
        .collect();
    assert!(writes.is_empty(), "cloud writes: {writes:?}");
    assert!(
        short
            .stats()
            .calls
            .contains_key("servicequotas:GetServiceQuota"),
        "{:?}",
        short.stats().calls
    );
    assert_eq!(sb.keys(), before, "no state-store object written");
    let vpcs = block_on(async {
        ec2.describe_vpcs()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name(format!("tag:kubernetes.io/cluster/{name}"))
                    .values("owned")
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .vpcs()
            .len()
    });
    assert_eq!(vpcs, 0, "no VPC created");

    // With room for it, the preview shows what the plan uses.
    let room = proxy(used + 3);
    let mut cmd = sb.command(&["update", "cluster", &name, "--state", &sb.state()]);
    cmd.env("AWS_ENDPOINT_URL", &room.url)
        .env_remove("KEELSON_QUOTAS");
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for want in [
        format!(
            "Elastic IPs: 3 needed, {used} used of {} (ec2 L-0263D0A3)",
            used + 3
        ),
        // The region's count proves room (the NAT limit is 500 here: the shared
        // emulator holds other tests' gateways), so no zone lookup.
        "NAT gateways in eu-west-3a: 1 needed, at most ".to_string(),
        "VPCs: 1 needed".to_string(),
        "vCPUs: ".to_string(),
        "needed, 2 used of 200 (autoscaling L-CDE20ADC)".to_string(),
    ] {
        assert!(r.stderr.contains(&want), "{want}:\n{}", r.stderr);
    }
    // The budget: the limits in 4 requests (one listing for the three VPC
    // quotas, one call per EC2 quota, one DescribeAccountLimits for the ASGs).
    let calls = room.stats().calls;
    let limits: usize = calls
        .iter()
        .filter(|(k, _)| {
            k.starts_with("servicequotas:") || *k == "autoscaling:DescribeAccountLimits"
        })
        .map(|(_, n)| n)
        .sum();
    assert_eq!(limits, 4, "{calls:?}");
    assert_eq!(
        calls.get("servicequotas:ListServiceQuotas"),
        Some(&1),
        "{calls:?}"
    );
    // The whole check, limits and usage, adds at most 8 requests (issue 20):
    // the same preview with the check off, through a proxy of its own, is the
    // baseline.
    let off = proxy(used + 3);
    let mut cmd = sb.command(&["update", "cluster", &name, "--state", &sb.state()]);
    cmd.env("AWS_ENDPOINT_URL", &off.url)
        .env("KEELSON_QUOTAS", "off");
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let base = off.stats().calls;
    let added: Vec<(&String, usize)> = calls
        .iter()
        .map(|(k, n)| (k, n - base.get(k).copied().unwrap_or(0).min(*n)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let total: usize = added.iter().map(|(_, n)| n).sum();
    assert!(total <= 8, "{total} requests added: {added:?}");
}

/// A preview that adds nothing asks no quota, nor images or types.
#[test]
fn a_no_op_plan_reads_no_quota_and_a_missing_image_stops_an_update() {
    let sb = Sandbox::new("pf_noop");
    let name = sb.cluster("pf-noop");
    create_small(&sb, &name);
    let proxy = FaultProxy::start(Fault::Fail(vec![]));
    let mut cmd = sb.command(&["update", "cluster", &name, "--state", &sb.state()]);
    cmd.env("AWS_ENDPOINT_URL", &proxy.url)
        .env_remove("KEELSON_QUOTAS");
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("No changes"), "{}", r.stderr);
    let stats = proxy.stats();
    assert_eq!(stats.requests.get("servicequotas"), None, "{stats:?}");
    for a in [
        "DescribeImages",
        "DescribeInstanceTypes",
        "DescribeInstances",
        "DescribeAccountLimits",
    ] {
        assert!(!stats.actions.contains_key(a), "{a}: {stats:?}");
    }
    // Discovery's own, filtered by the cluster's tag; no account-wide count.
    assert_eq!(
        stats.actions.get("DescribeAddresses"),
        Some(&1),
        "{stats:?}"
    );

    // An image gone missing is refused by the update that would launch from
    // it, before anything is written or made.
    sb.edit_group(
        &name,
        "nodes-us-east-1a",
        "s/image: .*/image: ami-00000000000000dead/",
    );
    let before = sb.keys();
    let r = sb.run(&["update", "cluster", &name, "--yes", "--state", &sb.state()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "InstanceGroup nodes-us-east-1a spec.image: ami-00000000000000dead does not exist in us-east-1"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(sb.keys(), before, "nothing written");
    let templates = block_on(async {
        ec2()
            .describe_launch_template_versions()
            .launch_template_name(format!("nodes-us-east-1a.{name}"))
            .send()
            .await
            .map(|o| {
                o.launch_template_versions()
                    .iter()
                    .filter(|v| {
                        v.launch_template_data().and_then(|d| d.image_id())
                            == Some("ami-00000000000000dead")
                    })
                    .count()
            })
            .unwrap_or(0)
    });
    assert_eq!(
        templates, 0,
        "no launch template version with the missing image"
    );
}
