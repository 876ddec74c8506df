//! AWS that throttles and refuses: through a fault-injecting proxy, an apply
//! still converges to exactly what an undisturbed one builds, and an error names
//! the resource, the operation and AWS's code and message.

use keelson::model::load_balancers::elb_name;

use crate::harness::*;
use crate::proxy::{Failure, Fault, FaultProxy};

/// A hosted zone of its own for this test binary's clusters.
fn zone(domain: &str) -> String {
    let r53 = aws_sdk_route53::Client::new(sdk_config());
    block_on(async {
        r53.create_hosted_zone()
            .name(domain)
            .caller_reference(domain)
            .send()
            .await
            .unwrap()
            .hosted_zone
            .unwrap()
            .id
    })
}

/// keelson with its AWS endpoint (all services, the state store too) at `url`.
fn via(sb: &Sandbox, url: &str, args: &[&str]) -> Run {
    let mut cmd = sb.command(args);
    cmd.args(["--state", &sb.state()])
        .env("AWS_ENDPOINT_URL", url);
    sb.run_cmd(cmd)
}

fn create_args<'a>(name: &'a str, key: &'a str, domain: &'a str) -> Vec<&'a str> {
    vec![
        "create",
        "cluster",
        name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a,us-east-1b,us-east-1c",
        "--topology",
        "private",
        "--bastion",
        "--master-count",
        "3",
        "--node-count",
        "3",
        "--dns-zone",
        domain,
        "--ssh-public-key",
        key,
    ]
}

/// What a cluster is made of, read from AWS and the state store, with the
/// cluster's name (in all its derived forms) replaced by `C` and ids left out:
/// two clusters built from the same flags have the same shape.
fn shape(sb: &Sandbox, name: &str, zone_id: &str) -> Vec<String> {
    let (ec2, asg, iam) = (ec2(), autoscaling(), iam());
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(sdk_config());
    let r53 = aws_sdk_route53::Client::new(sdk_config());
    let tag = format!("kubernetes.io/cluster/{name}");
    let f = || {
        aws_sdk_ec2::types::Filter::builder()
            .name("tag-key")
            .values(&tag)
            .build()
    };
    let name_of = |tags: &[aws_sdk_ec2::types::Tag]| {
        tags.iter()
            .find(|t| t.key() == Some("Name"))
            .and_then(|t| t.value())
            .unwrap_or("?")
            .to_string()
    };
    let mut out: Vec<String> = block_on(async {
        let mut s = Vec::new();
        for v in ec2
            .describe_vpcs()
            .filters(f())
            .send()
            .await
            .unwrap()
            .vpcs()
        {
            s.push(format!("vpc {} {:?}", name_of(v.tags()), v.cidr_block()));
        }
        for x in ec2
            .describe_subnets()
            .filters(f())
            .send()
            .await
            .unwrap()
            .subnets()
        {
            s.push(format!("subnet {} {:?}", name_of(x.tags()), x.cidr_block()));
        }
        for x in ec2
            .describe_route_tables()
            .filters(f())
            .send()
            .await
            .unwrap()
            .route_tables()
        {
            s.push(format!(
                "route table {} routes {} associations {}",
                name_of(x.tags()),
                x.routes().len(),
                x.associations().len()
            ));
        }
        for x in ec2
            .describe_internet_gateways()
            .filters(f())
            .send()
            .await
            .unwrap()
            .internet_gateways()
        {
            s.push(format!(
                "igw {} attached {}",
                name_of(x.tags()),
                x.attachments().len()
            ));
        }
        // The emulator ignores tag filters here: check the tag, skip deleted ones.
        for x in ec2
            .describe_nat_gateways()
            .send()
            .await
            .unwrap()
            .nat_gateways()
        {
            let ours = x.tags().iter().any(|t| t.key() == Some(tag.as_str()));
            if ours && x.state().map(|s| s.as_str()) != Some("deleted") {
                s.push(format!("nat {} {:?}", name_of(x.tags()), x.state()));
            }
        }
        for x in ec2
            .describe_addresses()
            .filters(f())
            .send()
            .await
            .unwrap()
            .addresses()
        {
            s.push(format!("eip {}", name_of(x.tags())));
        }
        for x in ec2
            .describe_security_groups()
            .filters(f())
            .send()
            .await
            .unwrap()
            .security_groups()
        {
            s.push(format!(
                "security group {:?} ingress {} egress {}",
                x.group_name(),
                x.ip_permissions().len(),
                x.ip_permissions_egress().len()
            ));
        }
        for x in ec2
            .describe_key_pairs()
            .filters(f())
            .send()
            .await
            .unwrap()
            .key_pairs()
        {
            s.push(format!("key pair {:?}", x.key_name()));
        }
        for x in ec2
            .describe_launch_templates()
            .filters(f())
            .send()
            .await
            .unwrap()
            .launch_templates()
        {
            s.push(format!(
                "launch template {:?} versions {:?}",
                x.launch_template_name(),
                x.latest_version_number()
            ));
        }
        let af = aws_sdk_autoscaling::types::Filter::builder()
            .name("tag-key")
            .values(&tag)
            .build();
        for g in asg
            .describe_auto_scaling_groups()
            .filters(af)
            .send()
            .await
            .unwrap()
            .auto_scaling_groups()
        {
            s.push(format!(
                "asg {} {}..{} subnets {} target groups {} instances {}",
                g.auto_scaling_group_name().unwrap_or_default(),
                g.min_size().unwrap_or_default(),
                g.max_size().unwrap_or_default(),
                g.vpc_zone_identifier()
                    .unwrap_or_default()
                    .split(',')
                    .count(),
                g.target_group_arns().len(),
                g.instances().len()
            ));
        }
        for lb_name in ["api", "bastion"].map(|p| elb_name(p, name)) {
            // Not found is an error on this call: then there is none.
            let Ok(lbs) = elb.describe_load_balancers().names(&lb_name).send().await else {
                continue;
            };
            for lb in lbs.load_balancers() {
                let listeners = elb
                    .describe_listeners()
                    .load_balancer_arn(lb.load_balancer_arn().unwrap())
                    .send()
                    .await
                    .unwrap();
                s.push(format!(
                    "load balancer {lb_name} {:?} zones {} listeners {}",
                    lb.scheme(),
                    lb.availability_zones().len(),
                    listeners.listeners().len()
                ));
            }
        }
        for tg_name in ["tcp-api", "tcp-bastion"].map(|p| elb_name(p, name)) {
            let Ok(tgs) = elb.describe_target_groups().names(&tg_name).send().await else {
                continue;
            };
            for tg in tgs.target_groups() {
                let health = elb
                    .describe_target_health()
                    .target_group_arn(tg.target_group_arn().unwrap())
                    .send()
                    .await
                    .unwrap();
                s.push(format!(
                    "target group {tg_name} port {:?} targets {}",
                    tg.port(),
                    health.target_health_descriptions().len()
                ));
            }
        }
        let path = format!("/keelson/{name}/");
        for r in iam
            .list_roles()
            .path_prefix(&path)
            .send()
            .await
            .unwrap()
            .roles()
        {
            let policies = iam
                .list_role_policies()
                .role_name(r.role_name())
                .send()
                .await
                .unwrap();
            s.push(format!(
                "role {} policies {:?}",
                r.role_name(),
                policies.policy_names()
            ));
        }
        for p in iam
            .list_instance_profiles()
            .path_prefix(&path)
            .send()
            .await
            .unwrap()
            .instance_profiles()
            // The emulator ignores PathPrefix on this call.
            .iter()
            .filter(|p| p.path() == path)
        {
            s.push(format!(
                "profile {} roles {:?}",
                p.instance_profile_name(),
                p.roles().iter().map(|r| r.role_name()).collect::<Vec<_>>()
            ));
        }
        let records = match zone_id {
            "" => vec![],
            z => r53
                .list_resource_record_sets()
                .hosted_zone_id(z)
                .send()
                .await
                .unwrap()
                .resource_record_sets
                .clone(),
        };
        for r in &records {
            if r.name().ends_with(&format!(".{name}.")) {
                s.push(format!("record {} {}", r.name(), r.r#type().as_str()));
            }
        }
        s
    });
    out.extend(
        sb.keys()
            .into_iter()
            .filter(|k| k.starts_with(&format!("{name}/")))
            .map(|k| format!("state {k}")),
    );
    let mut normal: Vec<String> = out
        .into_iter()
        .map(|line| {
            let mut line = line;
            for p in ["tcp-bastion", "tcp-api", "bastion", "api"] {
                line = line.replace(&elb_name(p, name), &format!("{p}-LB"));
            }
            line.replace(name, "C")
                .replace(&name.replace('.', "-"), "C")
        })
        .collect();
    normal.sort();
    normal
}

#[test]
fn a_throttled_apply_converges_to_exactly_what_an_undisturbed_one_builds() {
    let sb = Sandbox::new("throttle");
    let domain = format!("t{}.test", std::process::id());
    let zone_id = zone(&domain);
    let key = sb.path("admin.pub");
    let key = key.to_str().unwrap();
    let (calm, busy) = (format!("calm.{domain}"), format!("busy.{domain}"));

    let mut args = create_args(&calm, key, &domain);
    args.push("--yes");
    sb.ok(&args);

    // 30% of requests, of every service, state store included, answered with
    // the service's throttling error and never forwarded.
    let proxy = FaultProxy::start(Fault::Throttle {
        percent: 30,
        seed: 20_261_122,
    });
    let mut args = create_args(&busy, key, &domain);
    args.push("--yes");
    let r = via(&sb, &proxy.url, &args);
    assert_eq!(r.code, 0, "the throttled apply failed:\n{}", r.stderr);
    let r = via(
        &sb,
        &proxy.url,
        &["update", "cluster", &busy, "--detailed-exitcode"],
    );
    assert_eq!(
        r.code, 0,
        "the throttled re-plan is not empty:\n{}\n{}",
        r.stdout, r.stderr
    );

    let stats = proxy.stats();
    let share = stats.faulted() as f64 / stats.total() as f64;
    assert!(
        (0.2..0.4).contains(&share),
        "about 30% throttled: {stats:?}"
    );
    for service in [
        "ec2",
        "iam",
        "autoscaling",
        "elasticloadbalancing",
        "route53",
        "s3",
    ] {
        assert!(
            stats.faults.get(service).copied().unwrap_or(0) > 0,
            "{service} was throttled at least once: {stats:?}"
        );
    }

    let (a, b) = (shape(&sb, &calm, &zone_id), shape(&sb, &busy, &zone_id));
    assert!(a.len() > 60, "{a:#?}");
    assert_eq!(a, b, "the throttled cluster differs from the calm one");
}

#[test]
fn an_aws_error_names_resource_operation_and_reason_and_a_rerun_resumes() {
    let sb = Sandbox::new("refused");
    let domain = format!("r{}.test", std::process::id());
    zone(&domain);
    let key = sb.path("admin.pub");
    let name = format!("refused.{domain}");
    sb.ok(&create_args(&name, key.to_str().unwrap(), &domain));

    let proxy = FaultProxy::start(Fault::Fail(vec![
        Failure {
            service: "ec2",
            operation: "CreateLaunchTemplate",
            status: 403,
            code: "UnauthorizedOperation",
            message: "You are not authorized to perform this operation.",
        },
        Failure {
            service: "elasticloadbalancing",
            operation: "CreateTargetGroup",
            status: 400,
            code: "TooManyTargetGroups",
            message: "You have reached the quota on the number of target groups",
        },
    ]));
    let r = via(&sb, &proxy.url, &["update", "cluster", &name, "--yes"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    for line in [
        format!(
            "launch_template.nodes-us-east-1a.{name}: AWS CreateLaunchTemplate failed: UnauthorizedOperation: You are not authorized to perform this operation."
        ),
        format!(
            "target_group.{}: AWS CreateTargetGroup failed: TooManyTargetGroups: You have reached the quota on the number of target groups",
            elb_name("tcp-api", &name)
        ),
        format!(
            "autoscaling_group.nodes-us-east-1a.{name}: not attempted, because launch_template.nodes-us-east-1a.{name} failed"
        ),
    ] {
        assert!(r.stderr.contains(&line), "{line}\nnot in:\n{}", r.stderr);
    }
    // Refusals are not retried: one call each per template and target group.
    let stats = proxy.stats();
    assert_eq!(stats.faults.get("ec2"), Some(&7), "{stats:?}");
    assert_eq!(stats.faults.get("elasticloadbalancing"), Some(&2));
    assert!(!r.stderr.contains("testing"), "no credentials printed");

    // What succeeded stays: the network, groups and roles exist once.
    let done = shape(&sb, &name, "");
    for prefix in ["vpc ", "security group", "role ", "nat ", "load balancer"] {
        assert!(
            done.iter().any(|l| l.starts_with(prefix)),
            "{prefix}: {done:#?}"
        );
    }
    assert!(!done.iter().any(|l| l.starts_with("asg ")));

    // Without the fault, the next run does the rest and converges.
    drop(proxy);
    let r = sb.ok(&["update", "cluster", &name, "--yes"]);
    assert!(
        !r.stderr.contains("created vpc."),
        "the VPC is not made again:\n{}",
        r.stderr
    );
    let r = sb.run(&[
        "update",
        "cluster",
        &name,
        "--detailed-exitcode",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let all = shape(&sb, &name, "");
    assert_eq!(
        all.iter().filter(|l| l.starts_with("vpc ")).count(),
        1,
        "{all:#?}"
    );
    assert_eq!(all.iter().filter(|l| l.starts_with("asg ")).count(), 7);
}

/// Whether `policy` has an Allow statement whose Action matches `call`
/// (`service:Action`; IAM's `*` wildcard). Resources and conditions are not
/// evaluated here: this checks that no call keelson makes is missing outright.
fn allows(policy: &serde_json::Value, call: &str) -> bool {
    fn glob(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => glob(rest, s) || (!s.is_empty() && glob(p, &s[1..])),
            Some((c, rest)) => {
                s.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && glob(rest, &s[1..])
            }
        }
    }
    let matches = |pattern: &str, call: &str| glob(pattern.as_bytes(), call.as_bytes());
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| match &s["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            v => v
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect(),
        })
        .any(|a| matches(&a, call))
}

#[test]
fn the_operator_policy_allows_every_call_a_cluster_lifecycle_makes() {
    let sb = Sandbox::new("operator-policy");
    let name = sb.cluster("oppol");
    let key = sb.path("admin.pub");
    let proxy = FaultProxy::start(Fault::Throttle {
        percent: 0,
        seed: 1,
    });
    let run = |args: &[&str]| {
        let r = via(&sb, &proxy.url, args);
        assert_eq!(r.code, 0, "{args:?}:\n{}", r.stderr);
        r
    };
    run(&[
        "create",
        "cluster",
        &name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
        "--topology",
        "private",
        "--bastion",
        "--master-count",
        "1",
        "--node-count",
        "1",
        "--ssh-public-key",
        key.to_str().unwrap(),
        "--yes",
    ]);
    run(&["update", "cluster", &name]);
    sb.edit_group(
        &name,
        "nodes-us-east-1a",
        "s/machineType: t3.medium/machineType: t3.large/",
    );
    run(&["update", "cluster", &name, "--yes"]);
    run(&["rolling-update", "cluster", &name, "--cloudonly", "--yes"]);
    run(&["delete", "cluster", &name, "--yes"]);
    let policy = run(&["iam", "operator-policy"]);
    let policy: serde_json::Value = serde_json::from_str(&policy.stdout).unwrap();
    let calls = proxy.stats().calls;
    assert!(calls.len() > 30, "the proxy saw the lifecycle: {calls:?}");
    let missing: Vec<&String> = calls.keys().filter(|c| !allows(&policy, c)).collect();
    assert!(
        missing.is_empty(),
        "the operator policy lacks {missing:?} (calls seen: {:?})",
        calls.keys().collect::<Vec<_>>()
    );
}
