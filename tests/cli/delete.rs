//! delete cluster: nothing of the cluster is left, nothing else is touched.

use aws_sdk_ec2::types::Filter;

use crate::harness::*;

fn owned(cluster: &str) -> Filter {
    Filter::builder()
        .name("tag-key")
        .values(format!("kubernetes.io/cluster/{cluster}"))
        .build()
}

/// Everything in AWS carrying the cluster's tag (NAT gateways not yet deleted).
fn leftovers(cluster: &str) -> Vec<String> {
    let (ec2, asg, iam) = (ec2(), autoscaling(), iam());
    block_on(async {
        let mut left = Vec::new();
        let f = || owned(cluster);
        left.extend(
            ec2.describe_vpcs()
                .filters(f())
                .send()
                .await
                .unwrap()
                .vpcs()
                .iter()
                .map(|v| format!("vpc {:?}", v.vpc_id())),
        );
        left.extend(
            ec2.describe_subnets()
                .filters(f())
                .send()
                .await
                .unwrap()
                .subnets()
                .iter()
                .map(|v| format!("subnet {:?}", v.subnet_id())),
        );
        left.extend(
            ec2.describe_route_tables()
                .filters(f())
                .send()
                .await
                .unwrap()
                .route_tables()
                .iter()
                .map(|v| format!("route table {:?}", v.route_table_id())),
        );
        left.extend(
            ec2.describe_internet_gateways()
                .filters(f())
                .send()
                .await
                .unwrap()
                .internet_gateways()
                .iter()
                .map(|v| format!("igw {:?}", v.internet_gateway_id())),
        );
        left.extend(
            ec2.describe_addresses()
                .filters(f())
                .send()
                .await
                .unwrap()
                .addresses()
                .iter()
                .map(|v| format!("eip {:?}", v.allocation_id())),
        );
        left.extend(
            ec2.describe_security_groups()
                .filters(f())
                .send()
                .await
                .unwrap()
                .security_groups()
                .iter()
                .map(|v| format!("sg {:?}", v.group_id())),
        );
        left.extend(
            ec2.describe_launch_templates()
                .filters(f())
                .send()
                .await
                .unwrap()
                .launch_templates()
                .iter()
                .map(|v| format!("lt {:?}", v.launch_template_id())),
        );
        left.extend(
            ec2.describe_key_pairs()
                .filters(f())
                .send()
                .await
                .unwrap()
                .key_pairs()
                .iter()
                .map(|v| format!("key {:?}", v.key_name())),
        );
        let tag = format!("kubernetes.io/cluster/{cluster}");
        for n in ec2
            .describe_nat_gateways()
            .send()
            .await
            .unwrap()
            .nat_gateways()
        {
            let ours = n.tags().iter().any(|t| t.key() == Some(tag.as_str()));
            if ours && n.state().map(|s| s.as_str()) != Some("deleted") {
                left.push(format!("nat {:?}", n.nat_gateway_id()));
            }
        }
        let af = aws_sdk_autoscaling::types::Filter::builder()
            .name("tag-key")
            .values(&tag)
            .build();
        left.extend(
            asg.describe_auto_scaling_groups()
                .filters(af)
                .send()
                .await
                .unwrap()
                .auto_scaling_groups()
                .iter()
                .map(|g| format!("asg {:?}", g.auto_scaling_group_name())),
        );
        left.extend(
            iam.list_roles()
                .path_prefix(format!("/keelson/{cluster}/"))
                .send()
                .await
                .unwrap()
                .roles()
                .iter()
                .map(|r| format!("role {}", r.role_name())),
        );
        left.extend(
            iam.list_instance_profiles()
                .path_prefix(format!("/keelson/{cluster}/"))
                .send()
                .await
                .unwrap()
                .instance_profiles()
                .iter()
                // The emulator ignores PathPrefix on this call: filter here too.
                .filter(|p| p.path() == format!("/keelson/{cluster}/"))
                .map(|r| format!("profile {}", r.instance_profile_name())),
        );
        left
    })
}

#[test]
fn deleting_one_cluster_leaves_nothing_of_it_and_touches_nothing_else() {
    let sb = Sandbox::new("delete");
    let key = sb.path("admin.pub");
    let (a, b, s) = (sb.cluster("dela"), sb.cluster("delb"), sb.cluster("dels"));
    for name in [&a, &b] {
        sb.ok(&[
            "create",
            "cluster",
            name,
            "--image",
            "ami-0123456789abcdef0",
            "--zones",
            "us-east-1a,us-east-1b",
            "--topology",
            "private",
            "--bastion",
            "--ssh-public-key",
            key.to_str().unwrap(),
            "--yes",
        ]);
    }
    // A third cluster in an existing VPC.
    let ec2 = ec2();
    let vpc = block_on(async {
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.60.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc
            .unwrap()
            .vpc_id
            .unwrap();
        let igw = ec2
            .create_internet_gateway()
            .send()
            .await
            .unwrap()
            .internet_gateway
            .unwrap()
            .internet_gateway_id
            .unwrap();
        ec2.attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap();
        vpc
    });
    sb.ok(&[
        "create",
        "cluster",
        &s,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
        "--network-id",
        &vpc,
        "--yes",
    ]);
    assert!(!leftovers(&a).is_empty());

    // Without --yes: the list, and nothing deleted.
    let r = sb.ok(&["delete", "cluster", &a]);
    assert!(r.stdout.starts_with("KIND"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!("vpc                      {a}")),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("Must specify --yes"), "{}", r.stderr);

    sb.ok(&["delete", "cluster", &a, "--yes"]);
    assert_eq!(
        leftovers(&a),
        Vec::<String>::new(),
        "nothing of {a} is left"
    );
    assert!(
        !sb.keys().iter().any(|k| k.starts_with(&format!("{a}/"))),
        "its state is gone: {:?}",
        sb.keys()
    );
    // The other cluster is whole.
    let r = sb.run(&[
        "update",
        "cluster",
        &b,
        "--detailed-exitcode",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // The shared VPC survives, without the cluster's tag.
    sb.ok(&["delete", "cluster", &s, "--yes"]);
    assert_eq!(leftovers(&s), Vec::<String>::new());
    let tags = block_on(async {
        ec2.describe_vpcs()
            .vpc_ids(&vpc)
            .send()
            .await
            .unwrap()
            .vpcs
            .unwrap_or_default()
    });
    assert_eq!(tags.len(), 1, "the shared VPC still exists");
    assert!(
        !tags[0]
            .tags()
            .iter()
            .any(|t| t.key() == Some(format!("kubernetes.io/cluster/{s}").as_str()))
    );
    // Deleting again: nothing is there.
    let r = sb.run(&["delete", "cluster", &a, "--yes", "--state", &sb.state()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
}
