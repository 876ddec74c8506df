//! Scale: what a cluster costs does not grow with the account. Discovery asks
//! AWS for this cluster's resources by tag (and IAM by the cluster's path, load
//! balancers by their derived names), never for everything to filter
//! client-side, so other clusters in the same account and region add no
//! request (and no page) to a no-op plan.

use crate::harness::*;
use crate::proxy::{Fault, FaultProxy, Stats};

/// A no-op plan of `name` through a counting proxy: its requests by action.
fn no_op(sb: &Sandbox, name: &str) -> Stats {
    let proxy = FaultProxy::start(Fault::Fail(vec![]));
    let mut cmd = sb.command(&["update", "cluster", name, "--detailed-exitcode"]);
    cmd.args(["--state", &sb.state()])
        .env("AWS_ENDPOINT_URL", &proxy.url);
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "not a no-op:\n{}\n{}", r.stdout, r.stderr);
    proxy.stats()
}

#[test]
fn twenty_other_clusters_in_the_account_add_no_request_to_a_no_op_plan() {
    let sb = Sandbox::new("scale-others");
    let name = sb.cluster("scale");
    create_small(&sb, &name);
    let alone = no_op(&sb, &name);

    // Twenty more clusters in the same account, region and state store, each
    // with its own network, groups, roles, templates, ASGs and balancers.
    // Built a few at a time (the emulator serves one request at a time anyway).
    let others: Vec<String> = (0..20).map(|i| sb.cluster(&format!("other{i}"))).collect();
    for chunk in others.chunks(4) {
        std::thread::scope(|s| {
            for other in chunk {
                let sb = &sb;
                s.spawn(move || create_small(sb, other));
            }
        });
    }
    let crowded = no_op(&sb, &name);

    assert_eq!(
        crowded.actions, alone.actions,
        "requests by action, alone vs with 20 other clusters"
    );
    assert_eq!(crowded.requests, alone.requests, "requests by service");
}

/// `create cluster` for a 1-zone private cluster (one master group, one node
/// group), plus `extra` node groups; written only.
fn create_with_groups(sb: &Sandbox, name: &str, extra: usize) {
    create_small_with(sb, name, &[]);
    for i in 0..extra {
        let group = format!("pool{i}");
        sb.ok(&[
            "create",
            "ig",
            &group,
            "--name",
            name,
            "--subnet",
            "us-east-1a",
            "--min-size",
            "1",
            "--max-size",
            "1",
            "--image",
            "ami-0123456789abcdef0",
        ]);
    }
}

/// `update cluster NAME ARGS` through a counting proxy.
fn counted(sb: &Sandbox, name: &str, args: &[&str]) -> (Run, Stats) {
    let proxy = FaultProxy::start(Fault::Fail(vec![]));
    let mut cmd = sb.command(&["update", "cluster", name]);
    cmd.args(args)
        .args(["--state", &sb.state()])
        .env("AWS_ENDPOINT_URL", &proxy.url);
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "update {args:?}:\n{}\n{}", r.stdout, r.stderr);
    (r, proxy.stats())
}

/// Requests per resource for the first apply and a no-op plan, at 1, 10 and 50
/// node groups (docs/performance.md), and the largest burst of one EC2 write,
/// which must stay inside AWS's mutating bucket (`keelson::aws::rate`).
/// Minutes on the emulator: `scripts/test --test cli -- --ignored scale::`.
#[test]
#[ignore]
fn requests_per_resource_at_1_10_and_50_groups() {
    let sb = Sandbox::new("scale-groups");
    println!("groups | resources | first apply | per resource | no-op | largest EC2 write burst");
    for groups in [1usize, 10, 50] {
        let name = sb.cluster(&format!("g{groups}"));
        create_with_groups(&sb, &name, groups - 1);
        let (preview, _) = counted(&sb, &name, &["-o", "json"]);
        let plan: serde_json::Value = serde_json::from_str(&preview.stdout).expect("plan json");
        let resources = plan["summary"]["add"].as_u64().expect("summary.add") as usize;
        let (_, apply) = counted(&sb, &name, &["--yes"]);
        let (_, no_op) = counted(&sb, &name, &["--detailed-exitcode"]);
        let (burst, action) = apply
            .calls
            .iter()
            .filter(|(call, _)| {
                call.strip_prefix("ec2:").is_some_and(|a| {
                    keelson::aws::rate::Category::of(a, "Filter.")
                        == keelson::aws::rate::Category::Mutating
                })
            })
            .map(|(call, n)| (*n, call.clone()))
            .max()
            .unwrap_or_default();
        println!(
            "{groups} | {resources} | {} | {:.2} | {} | {burst} {action}",
            apply.total(),
            apply.total() as f64 / resources as f64,
            no_op.total(),
        );
        let (size, _) = keelson::aws::rate::Category::Mutating.bucket();
        assert!(
            (burst as f64) < size,
            "{action}: {burst} calls in one apply, past AWS's bucket of {size}"
        );
    }
}

/// The emulator pages DescribeLaunchTemplates as AWS does (scripts/moto-server.py,
/// fix 4): MaxResults a page with a NextToken while more remain, and every
/// template without MaxResults. moto alone answers 15 at most and no token, so
/// a 50-group cluster's 16th template on was never discovered.
#[test]
fn the_emulator_pages_launch_templates_as_aws_does() {
    use aws_sdk_ec2::types::{
        Filter, RequestLaunchTemplateData, ResourceType, Tag, TagSpecification,
    };
    let marker = format!("pages-{}", std::process::id());
    let ec2 = ec2();
    block_on(async {
        for i in 0..23 {
            ec2.create_launch_template()
                .launch_template_name(format!("{marker}-{i}"))
                .launch_template_data(
                    RequestLaunchTemplateData::builder()
                        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                        .build(),
                )
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::LaunchTemplate)
                        .tags(Tag::builder().key("keelson-test").value(&marker).build())
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
        let mine = || {
            Filter::builder()
                .name("tag:keelson-test")
                .values(&marker)
                .build()
        };
        // Pages of 5: 5, 5, 5, 5, 3, each but the last with a token.
        let (mut names, mut pages, mut token) = (Vec::new(), Vec::new(), None::<String>);
        loop {
            let out = ec2
                .describe_launch_templates()
                .filters(mine())
                .max_results(5)
                .set_next_token(token.clone())
                .send()
                .await
                .unwrap();
            pages.push(out.launch_templates().len());
            names.extend(
                out.launch_templates()
                    .iter()
                    .filter_map(|t| t.launch_template_name().map(str::to_string)),
            );
            token = out.next_token().map(str::to_string);
            if token.is_none() || pages.len() > 10 {
                break;
            }
        }
        assert_eq!(pages, [5, 5, 5, 5, 3]);
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 23, "{names:?}");
        // Unpaginated: all of them, and no token.
        let all = ec2
            .describe_launch_templates()
            .filters(mine())
            .send()
            .await
            .unwrap();
        assert_eq!(all.launch_templates().len(), 23);
        assert!(all.next_token().is_none());
        for i in 0..23 {
            let _ = ec2
                .delete_launch_template()
                .launch_template_name(format!("{marker}-{i}"))
                .send()
                .await;
        }
    });
}
