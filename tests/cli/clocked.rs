//! A cluster's whole life on AWS's clock (`crate::clock`, at 1/20 of AWS time):
//! latency on every call, NAT gateways and instances that stay pending, new ids
//! invisible for a while and new instance profiles refused until they have
//! propagated. Each command must finish in one run, with no rerun.

use crate::delete::leftovers;
use crate::harness::*;
use crate::proxy::{Fault, FaultProxy};

/// keelson with its AWS endpoint (all services, the state store too) at `url`.
fn via(sb: &Sandbox, url: &str, args: &[&str]) -> Run {
    let mut cmd = sb.command(args);
    cmd.args(["--state", &sb.state()])
        .env("AWS_ENDPOINT_URL", url);
    sb.run_cmd(cmd)
}

fn ok(sb: &Sandbox, url: &str, args: &[&str]) -> Run {
    let r = via(sb, url, args);
    assert_eq!(
        r.code, 0,
        "keelson {args:?} did not finish in one run on AWS's clock:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

#[test]
fn first_apply_no_op_roll_and_delete_each_finish_in_one_run_on_aws_clock() {
    let sb = Sandbox::new("clocked");
    let name = sb.cluster("clk");
    let proxy = FaultProxy::start(Fault::Clock(crate::clock::Clock::tests(20_260_521)));
    let url = proxy.url.clone();
    let key = sb.path("admin.pub");

    // The first apply: the instance profiles are refused by Auto Scaling until
    // they have propagated, the NAT gateway is pending for seconds.
    ok(
        &sb,
        &url,
        &[
            "create",
            "cluster",
            &name,
            // One of moto's own images, in every emulator (whatever fixtures
            // scripts/moto-server.py adds).
            "--image",
            "ami-1e749f67",
            "--zones",
            "us-east-1a",
            "--topology",
            "private",
            "--bastion",
            "--master-count",
            "1",
            "--node-count",
            "2",
            "--ssh-public-key",
            key.to_str().unwrap(),
            "--yes",
        ],
    );
    let after_apply = proxy.stats();
    assert!(
        after_apply
            .clock_refused
            .get("ValidationError")
            .is_some_and(|n| *n > 0),
        "the clock refused an Auto Scaling group its new instance profile: {after_apply:?}"
    );
    assert!(
        after_apply.clock_rewritten.contains_key("nat pending"),
        "{after_apply:?}"
    );

    // Nothing left to do.
    let r = via(
        &sb,
        &url,
        &["update", "cluster", &name, "--detailed-exitcode"],
    );
    assert_eq!(
        r.code, 0,
        "the re-plan is not empty:\n{}\n{}",
        r.stdout, r.stderr
    );

    // A change, applied, and rolled without Kubernetes.
    sb.edit_group(
        &name,
        "nodes-us-east-1a",
        "s/machineType: t3.medium/machineType: t3.large/",
    );
    ok(&sb, &url, &["update", "cluster", &name, "--yes"]);
    ok(
        &sb,
        &url,
        &[
            "rolling-update",
            "cluster",
            &name,
            "--yes",
            "--cloudonly",
            "--bastion-interval",
            "0s",
            "--master-interval",
            "0s",
            "--node-interval",
            "0s",
        ],
    );
    let r = via(
        &sb,
        &url,
        &["rolling-update", "cluster", &name, "--cloudonly"],
    );
    assert!(
        r.stderr.contains("No rolling-update required."),
        "{}\n{}",
        r.stdout,
        r.stderr
    );

    // The delete waits out the NAT gateway's `deleting`.
    ok(&sb, &url, &["delete", "cluster", &name, "--yes"]);
    let left = leftovers(&name, None);
    assert!(left.is_empty(), "{left:#?}");
    let stats = proxy.stats();
    for what in ["instance pending", "nat deleting"] {
        assert!(
            stats.clock_rewritten.contains_key(what),
            "{what}: {stats:?}"
        );
    }
}
