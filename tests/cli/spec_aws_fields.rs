//! The AWS-side spec fields kops users set most, end to end on the emulator:
//! `additionalPolicies`, `additionalSecurityGroups`, `mixedInstancesPolicy`.
//! Set on an applied cluster, applied, read back through the SDK, re-planned
//! empty; bad values refused with nothing written.

use crate::harness::*;
use crate::proxy::{Fault, FaultProxy};

const POLICY: &str = r#"[{"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem"], "Resource": ["arn:aws:dynamodb:us-east-1:111122223333:table/orders"]}]"#;

/// `replace -f` of a stored object's text with `extra` appended to its spec
/// (spec is the last key of a stored object).
fn replace_with(sb: &Sandbox, text: &str, extra: &str) -> Run {
    assert!(
        text.trim_end().lines().last().unwrap().starts_with("  "),
        "{text}"
    );
    let file = sb.path("object.yaml");
    std::fs::write(&file, format!("{}\n{extra}", text.trim_end())).unwrap();
    sb.run(&[
        "replace",
        "-f",
        file.to_str().unwrap(),
        "--state",
        &sb.state(),
    ])
}

fn plan_is_empty(sb: &Sandbox, name: &str) {
    let r = sb.run(&[
        "update",
        "cluster",
        name,
        "--detailed-exitcode",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(r.code, 0, "re-plan not empty:\n{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "");
}

/// The requests of a no-op plan, by Action.
fn noop_requests(sb: &Sandbox, name: &str) -> std::collections::BTreeMap<String, usize> {
    let proxy = FaultProxy::start(Fault::Fail(vec![]));
    let mut cmd = sb.command(&[
        "update",
        "cluster",
        name,
        "--detailed-exitcode",
        "--state",
        &sb.state(),
    ]);
    cmd.env("AWS_ENDPOINT_URL", &proxy.url);
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    proxy.stats().calls
}

fn latest_groups(template: &str) -> Vec<String> {
    block_on(async {
        let out = ec2()
            .describe_launch_template_versions()
            .launch_template_name(template)
            .versions("$Latest")
            .send()
            .await
            .unwrap();
        out.launch_template_versions()[0]
            .launch_template_data()
            .unwrap()
            .network_interfaces()[0]
            .groups()
            .to_vec()
    })
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn policies_security_groups_and_spot_are_applied_read_back_and_replan_empty() {
    let sb = Sandbox::new("aws-fields");
    let name = sb.cluster("fields");
    create_small(&sb, &name);
    let vpc = cluster_vpc(&name);
    let group = format!("nodes-us-east-1a.{name}");
    let (extra_sg, other_vpc_sg) = block_on(async {
        let ec2 = ec2();
        let mine = ec2
            .create_security_group()
            .group_name(format!("extra-{name}"))
            .description("a group of the user's")
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap()
            .group_id
            .unwrap();
        let other = ec2
            .create_vpc()
            .cidr_block("10.99.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc
            .unwrap()
            .vpc_id
            .unwrap();
        let theirs = ec2
            .create_security_group()
            .group_name(format!("elsewhere-{name}"))
            .description("in another VPC")
            .vpc_id(&other)
            .send()
            .await
            .unwrap()
            .group_id
            .unwrap();
        (mine, theirs)
    });
    let plain_noop = noop_requests(&sb, &name);
    let own_groups = latest_groups(&group);
    assert_eq!(own_groups.len(), 1, "{own_groups:?}");

    // Bad values: refused, naming the field, and nothing written.
    let ig_key = format!("{name}/instancegroup/nodes-us-east-1a");
    let config_key = format!("{name}/config");
    let (ig_before, config_before) = (sb.object(&ig_key), sb.object(&config_key));
    for (base, extra, wanted) in [
        (
            &ig_before,
            "  additionalSecurityGroups: [web]\n",
            "spec.additionalSecurityGroups[0]: \"web\" is not a security group id",
        ),
        (
            &ig_before,
            "  mixedInstancesPolicy:\n    instances: [m6i.large]\n    onDemandAboveBase: 150\n",
            "spec.mixedInstancesPolicy.onDemandAboveBase: 150 is not a percentage",
        ),
        (
            &ig_before,
            "  mixedInstancesPolicy:\n    instances: [m6i.large]\n    spotPrice: 1\n",
            "spotPrice",
        ),
        (
            &config_before,
            "  additionalPolicies:\n    node: '{\"Effect\": \"Allow\"}'\n",
            "spec.additionalPolicies.node: is one JSON object",
        ),
        (
            &config_before,
            "  additionalPolicies:\n    nodes: '[]'\n",
            "spec.additionalPolicies.nodes: nodes is not a role",
        ),
    ] {
        let r = replace_with(&sb, base, extra);
        assert_eq!(r.code, 1, "{extra}: {}", r.stderr);
        assert!(r.stderr.contains(wanted), "{extra}:\n{}", r.stderr);
    }
    assert_eq!(sb.object(&ig_key), ig_before);
    assert_eq!(sb.object(&config_key), config_before);

    // A group that does not exist, or is in another VPC, is valid as a spec but
    // refused by the update before anything is written.
    for (sg, wanted) in [
        (
            "sg-0000000000000dead".to_string(),
            "sg-0000000000000dead does not exist in this region".to_string(),
        ),
        (other_vpc_sg.clone(), format!("{other_vpc_sg} is in vpc-")),
    ] {
        let r = replace_with(
            &sb,
            &ig_before,
            &format!("  additionalSecurityGroups: [{sg}]\n"),
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let r = sb.run(&["update", "cluster", &name, "--yes", "--state", &sb.state()]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stderr.contains("spec.additionalSecurityGroups[0]") && r.stderr.contains(&wanted),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains(&format!("not the cluster's VPC {vpc}")) || sg.ends_with("dead"));
        assert_eq!(latest_groups(&group), own_groups, "nothing was written");
    }

    // The fields, applied.
    let r = replace_with(
        &sb,
        &config_before,
        &format!("  additionalPolicies:\n    node: '{POLICY}'\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = replace_with(
        &sb,
        &ig_before,
        &format!(
            "  additionalSecurityGroups: [{extra_sg}]\n  mixedInstancesPolicy:\n    instances: [t3.medium, t3a.medium, m6i.large]\n    onDemandBase: 1\n    onDemandAboveBase: 25\n    spotAllocationStrategy: price-capacity-optimized\n"
        ),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let preview = sb.ok(&["update", "cluster", &name]);
    for wanted in [
        "dynamodb:GetItem",
        &format!("security_group.<{extra_sg}>"),
        "price-capacity-optimized",
    ] {
        assert!(
            preview.stdout.contains(wanted),
            "{wanted}:\n{}",
            preview.stdout
        );
    }
    sb.ok(&["update", "cluster", &name, "--yes"]);

    let mut groups = latest_groups(&group);
    groups.sort();
    let mut wanted = vec![own_groups[0].clone(), extra_sg.clone()];
    wanted.sort();
    assert_eq!(groups, wanted);
    let (policy, asg) = block_on(async {
        let policy = iam()
            .get_role_policy()
            .role_name(format!("nodes.{name}"))
            .policy_name(format!("nodes.{name}"))
            .send()
            .await
            .unwrap()
            .policy_document;
        let asg = autoscaling()
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&group)
            .send()
            .await
            .unwrap()
            .auto_scaling_groups()[0]
            .clone();
        (policy, asg)
    });
    let policy: serde_json::Value = serde_json::from_str(&url_decode(&policy)).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(
        statements.last().unwrap()["Action"],
        serde_json::json!(["dynamodb:GetItem", "dynamodb:PutItem"]),
        "{policy}"
    );
    let mixed = asg
        .mixed_instances_policy()
        .expect("a mixed instances policy");
    let types: Vec<&str> = mixed
        .launch_template()
        .unwrap()
        .overrides()
        .iter()
        .filter_map(|o| o.instance_type())
        .collect();
    assert_eq!(types, ["t3.medium", "t3a.medium", "m6i.large"]);
    let d = mixed.instances_distribution().unwrap();
    assert_eq!(d.on_demand_base_capacity(), Some(1));
    assert_eq!(d.on_demand_percentage_above_base_capacity(), Some(25));
    assert_eq!(
        d.spot_allocation_strategy(),
        Some("price-capacity-optimized")
    );
    plan_is_empty(&sb, &name);
    // The fields cost a no-op plan no request: the security groups are asked
    // about only by an update that makes launch templates.
    assert_eq!(noop_requests(&sb, &name), plain_noop);

    // Taken away again: the group launches from its template alone, the policy
    // loses the statements, the template the group; and the plan is empty again.
    let file = sb.path("object.yaml");
    std::fs::write(&file, &config_before).unwrap();
    sb.ok(&["replace", "-f", file.to_str().unwrap()]);
    std::fs::write(&file, &ig_before).unwrap();
    sb.ok(&["replace", "-f", file.to_str().unwrap()]);
    sb.ok(&["update", "cluster", &name, "--yes"]);
    assert_eq!(latest_groups(&group), own_groups);
    plan_is_empty(&sb, &name);
}
