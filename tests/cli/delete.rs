//! delete cluster: nothing of the cluster is left, nothing else is touched.

use aws_sdk_ec2::types::Filter;

use keelson::model::load_balancers::elb_name;

use crate::harness::*;

fn owned(cluster: &str) -> Filter {
    Filter::builder()
        .name("tag-key")
        .values(format!("kubernetes.io/cluster/{cluster}"))
        .build()
}

/// Everything of the cluster left in AWS: what carries its tag (NAT gateways
/// not yet deleted, instances not terminated), its load balancers and target
/// groups by name, its IAM path, and with `zone` its records there.
pub(crate) fn leftovers(cluster: &str, zone: Option<&str>) -> Vec<String> {
    let (ec2, asg, iam) = (ec2(), autoscaling(), iam());
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(sdk_config());
    let r53 = aws_sdk_route53::Client::new(sdk_config());
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
        let live = Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .values("stopping")
            .values("stopped")
            .build();
        for r in ec2
            .describe_instances()
            .filters(f())
            .filters(live)
            .send()
            .await
            .unwrap()
            .reservations()
        {
            left.extend(
                r.instances()
                    .iter()
                    .map(|i| format!("instance {:?}", i.instance_id())),
            );
        }
        for name in ["api", "bastion"].map(|p| elb_name(p, cluster)) {
            // Not found is an error on these calls.
            if let Ok(out) = elb.describe_load_balancers().names(&name).send().await {
                left.extend(
                    out.load_balancers()
                        .iter()
                        .map(|l| format!("load balancer {:?}", l.load_balancer_name())),
                );
            }
        }
        for name in ["tcp-api", "tcp-bastion"].map(|p| elb_name(p, cluster)) {
            if let Ok(out) = elb.describe_target_groups().names(&name).send().await {
                left.extend(
                    out.target_groups()
                        .iter()
                        .map(|t| format!("target group {:?}", t.target_group_name())),
                );
            }
        }
        if let Some(zone) = zone {
            let sets = r53
                .list_resource_record_sets()
                .hosted_zone_id(zone)
                .send()
                .await
                .unwrap();
            left.extend(
                sets.resource_record_sets()
                    .iter()
                    .filter(|r| r.name().ends_with(&format!(".{cluster}.")))
                    .map(|r| format!("record {} {}", r.name(), r.r#type().as_str())),
            );
        }
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
    // Two clusters with DNS records in one zone, each in its own VPC.
    let domain = format!("d{}.test", std::process::id());
    let r53 = aws_sdk_route53::Client::new(sdk_config());
    let zone = block_on(async {
        r53.create_hosted_zone()
            .name(&domain)
            .caller_reference(&domain)
            .send()
            .await
            .unwrap()
            .hosted_zone
            .unwrap()
            .id
    });
    let (a, b, s) = (
        format!("dela.{domain}"),
        format!("delb.{domain}"),
        sb.cluster("dels"),
    );
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
            "--dns-zone",
            &domain,
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
    let before = leftovers(&a, Some(&zone));
    for kind in [
        "vpc ",
        "subnet ",
        "route table ",
        "igw ",
        "eip ",
        "sg ",
        "lt ",
        "key ",
        "nat ",
        "asg ",
        "role ",
        "profile ",
        "instance ",
        "load balancer ",
        "target group ",
        "record ",
    ] {
        assert!(
            before.iter().any(|l| l.starts_with(kind)),
            "the check sees {kind:?} at all: {before:#?}"
        );
    }

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
        leftovers(&a, Some(&zone)),
        Vec::<String>::new(),
        "nothing of {a} is left"
    );
    assert!(
        !sb.keys().iter().any(|k| k.starts_with(&format!("{a}/"))),
        "its state is gone: {:?}",
        sb.keys()
    );
    // The other clusters are whole: nothing to do for either.
    for other in [&b, &s] {
        let r = sb.run(&[
            "update",
            "cluster",
            other,
            "--detailed-exitcode",
            "--state",
            &sb.state(),
        ]);
        assert_eq!(r.code, 0, "{other}:\n{}\n{}", r.stdout, r.stderr);
    }
    assert!(
        leftovers(&b, Some(&zone))
            .iter()
            .any(|l| l.starts_with("record ")),
        "{b} keeps its records"
    );

    // The shared VPC survives, without the cluster's tag.
    sb.ok(&["delete", "cluster", &s, "--yes"]);
    assert_eq!(leftovers(&s, None), Vec::<String>::new());
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

#[test]
fn what_aws_keeps_refusing_is_reported_after_the_wait_and_a_rerun_finishes() {
    let sb = Sandbox::new("delete-wait");
    let name = sb.cluster("delw");
    sb.ok(&[
        "create",
        "cluster",
        &name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
        "--yes",
    ]);
    // Somebody else's route table in the cluster's VPC: AWS refuses to delete the VPC.
    let ec2 = ec2();
    let vpc = cluster_vpc(&name);
    let foreign = block_on(async {
        ec2.create_route_table()
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap()
            .route_table
            .unwrap()
            .route_table_id
            .unwrap()
    });

    let r = sb.run(&[
        "delete",
        "cluster",
        &name,
        "--yes",
        "--wait",
        "2s",
        "--state",
        &sb.state(),
    ]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    let line = format!(
        "vpc.{name}: AWS DeleteVpc failed: DependencyViolation: The vpc {vpc} has dependencies and cannot be deleted. (still failing after "
    );
    assert!(r.stderr.contains(&line), "{line}\nnot in:\n{}", r.stderr);
    assert!(r.stderr.contains("rerun to continue"), "{}", r.stderr);
    // While it waited, it said what for.
    assert!(
        r.stderr.contains(&format!(
            "retrying vpc.{name} (attempt 1): AWS DeleteVpc failed: DependencyViolation"
        )),
        "{}",
        r.stderr
    );
    // Everything else went; the cluster's state stays for the rerun.
    let left = leftovers(&name, None);
    assert_eq!(left, [format!("vpc {:?}", Some(&vpc))], "{left:#?}");
    assert!(sb.keys().contains(&format!("{name}/config")));

    block_on(async {
        ec2.delete_route_table()
            .route_table_id(&foreign)
            .send()
            .await
    })
    .unwrap();
    sb.ok(&["delete", "cluster", &name, "--yes"]);
    assert_eq!(leftovers(&name, None), Vec::<String>::new());
    assert!(!sb.keys().iter().any(|k| k.starts_with(&format!("{name}/"))));
}

#[test]
fn the_wait_is_a_duration() {
    let sb = Sandbox::new("delete-wait-bad");
    let h = sb.run(&["delete", "cluster", "--help"]);
    insta::assert_snapshot!("delete_help", h.stdout);
    let r = sb.run(&[
        "delete",
        "cluster",
        "x.k8s.local",
        "--yes",
        "--wait",
        "10",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "\"10\" is not a duration; use a number with a unit, like 30s, 10m, 1h or 1m30s"
        ),
        "{}",
        r.stderr
    );
}

/// `--wait` bounds the whole delete, waiters included: an Auto Scaling group
/// whose deletion does not finish (held 90 s here, as a group with draining
/// instances can be on AWS) is reported once the wait runs out, not 10 minutes
/// later; what depends on it is not attempted, and a rerun finishes.
#[test]
fn a_deletion_still_in_progress_is_cut_when_the_wait_runs_out() {
    let sb = Sandbox::new("delete-cut");
    let name = sb.cluster("cut");
    create_small(&sb, &name);
    let proxy = crate::proxy::FaultProxy::start(crate::proxy::Fault::Delay {
        service: "autoscaling",
        operation: "DeleteAutoScalingGroup",
        by: std::time::Duration::from_secs(90),
    });
    let mut cmd = sb.command(&[
        "delete",
        "cluster",
        &name,
        "--yes",
        "--wait",
        "3s",
        "--state",
        &sb.state(),
    ]);
    cmd.env("AWS_ENDPOINT_URL", &proxy.url);
    let started = std::time::Instant::now();
    let r = sb.run_cmd(cmd);
    let took = started.elapsed();
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        took < std::time::Duration::from_secs(60),
        "took {took:?}\n{}",
        r.stderr
    );
    let cut = format!(
        "autoscaling_group.nodes-us-east-1a.{name}: still in progress when the wait ran out after "
    );
    assert!(r.stderr.contains(&cut), "{cut}\nnot in:\n{}", r.stderr);
    assert!(r.stderr.contains("rerun to continue"), "{}", r.stderr);
    assert!(sb.keys().contains(&format!("{name}/config")));

    sb.ok(&["delete", "cluster", &name, "--yes"]);
    let left = leftovers(&name, None);
    assert!(left.is_empty(), "{left:#?}");
}

/// Deletes the records named in `zone` that `keep` does not keep.
fn delete_records(zone: &str, keep: impl Fn(&aws_sdk_route53::types::ResourceRecordSet) -> bool) {
    use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, RrType};
    let r53 = aws_sdk_route53::Client::new(sdk_config());
    block_on(async {
        let sets = r53
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .send()
            .await
            .unwrap();
        let changes: Vec<Change> = sets
            .resource_record_sets()
            .iter()
            .filter(|s| !matches!(s.r#type(), RrType::Soa | RrType::Ns) && !keep(s))
            .map(|s| {
                Change::builder()
                    .action(ChangeAction::Delete)
                    .resource_record_set(s.clone())
                    .build()
                    .unwrap()
            })
            .collect();
        r53.change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(
                ChangeBatch::builder()
                    .set_changes(Some(changes))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
}

fn new_zone(domain: &str) -> String {
    let r53 = aws_sdk_route53::Client::new(sdk_config());
    block_on(
        r53.create_hosted_zone()
            .name(domain)
            .caller_reference(domain)
            .send(),
    )
    .unwrap()
    .hosted_zone
    .unwrap()
    .id
}

/// `delete cluster` works whatever DNS it finds: records removed by hand (an
/// owner TXT without its alias is removed too), or the whole zone gone (it
/// used to fail on the zone, and the cluster could only be removed by hand).
#[test]
fn delete_works_whatever_dns_it_finds() {
    use aws_sdk_route53::types::RrType;
    let sb = Sandbox::new("delete-dns");
    let pid = std::process::id();
    let (with_zone, without) = (format!("dr{pid}.test"), format!("dz{pid}.test"));
    let (zone, zone_gone) = (new_zone(&with_zone), new_zone(&without));
    let (records_gone, zone_deleted) = (format!("rg.{with_zone}"), format!("zg.{without}"));
    create_small_with(&sb, &records_gone, &["--dns-zone", &with_zone, "--yes"]);
    create_small_with(&sb, &zone_deleted, &["--dns-zone", &without, "--yes"]);
    // Half the records gone: the api alias (its owner TXT stays) and the bastion's.
    let api = format!("api.{records_gone}.");
    delete_records(&zone, |s| s.name() == api && s.r#type() == &RrType::Txt);
    let left: Vec<String> = leftovers(&records_gone, Some(&zone))
        .into_iter()
        .filter(|l| l.starts_with("record "))
        .collect();
    assert_eq!(left, [format!("record {api} TXT")]);
    // The other zone emptied and deleted.
    delete_records(&zone_gone, |_| false);
    block_on(
        aws_sdk_route53::Client::new(sdk_config())
            .delete_hosted_zone()
            .id(&zone_gone)
            .send(),
    )
    .unwrap();

    for name in [&records_gone, &zone_deleted] {
        sb.ok(&["delete", "cluster", name]);
        sb.ok(&["delete", "cluster", name, "--yes"]);
        assert!(
            !sb.keys().iter().any(|k| k.starts_with(&format!("{name}/"))),
            "{name}: its state is gone: {:?}",
            sb.keys()
        );
    }
    assert_eq!(leftovers(&records_gone, Some(&zone)), Vec::<String>::new());
    assert_eq!(leftovers(&zone_deleted, None), Vec::<String>::new());
}

/// What Kubernetes makes for a cluster, seeded as its controllers make it: the
/// cloud controller's classic ELB (its default for `type: LoadBalancer`) with
/// its `k8s-elb-` security group and the ingress rule it adds to the nodes'
/// group, its NLB with a target group, and an EBS CSI volume. The delete lists
/// them, deletes them before the VPC, and leaves another cluster's balancer.
#[test]
fn delete_removes_what_kubernetes_made_for_the_cluster() {
    use aws_sdk_ec2::types::{IpPermission, ResourceType, Tag, TagSpecification, UserIdGroupPair};
    let sb = Sandbox::new("delete-k8s");
    let name = sb.cluster("k8s");
    create_small(&sb, &name);
    let (ec2, elb) = (
        ec2(),
        aws_sdk_elasticloadbalancing::Client::new(sdk_config()),
    );
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(sdk_config());
    let vpc = cluster_vpc(&name);
    let owned = format!("kubernetes.io/cluster/{name}");
    let pid = std::process::id();
    // The in-tree controller names a balancer "a" + the Service's uid, 32 characters.
    let (classic, nlb, foreign) = (
        format!("a{:031x}", u128::from(pid) << 64 | 1),
        format!("a{:031x}", u128::from(pid) << 64 | 2),
        format!("a{:031x}", u128::from(pid) << 64 | 3),
    );
    let (sg, nodes_sg, subnet, volume, tg) = block_on(async {
        let subnet = ec2
            .describe_subnets()
            .filters(owned_filter(&name))
            .send()
            .await
            .unwrap()
            .subnets()
            .iter()
            .find(|s| {
                s.tags()
                    .iter()
                    .any(|t| t.key() == Some("Name") && t.value().unwrap().starts_with("utility-"))
            })
            .and_then(|s| s.subnet_id().map(str::to_string))
            .expect("a utility subnet");
        let nodes_sg = ec2
            .describe_security_groups()
            .filters(
                Filter::builder()
                    .name("group-name")
                    .values(format!("nodes.{name}"))
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .security_groups()[0]
            .group_id()
            .unwrap()
            .to_string();
        let tags = |extra: &[(&str, &str)]| {
            std::iter::once((owned.as_str(), "owned"))
                .chain(extra.iter().copied())
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect::<Vec<_>>()
        };
        let sg = ec2
            .create_security_group()
            .group_name(format!("k8s-elb-{classic}"))
            .description(format!(
                "Security group for Kubernetes ELB {classic} (default/web)"
            ))
            .vpc_id(&vpc)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .set_tags(Some(tags(&[])))
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .group_id
            .unwrap();
        ec2.authorize_security_group_ingress()
            .group_id(&nodes_sg)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("-1")
                    .user_id_group_pairs(UserIdGroupPair::builder().group_id(&sg).build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        for (lb, cluster) in [(&classic, name.as_str()), (&foreign, "other.k8s.local")] {
            elb.create_load_balancer()
                .load_balancer_name(lb)
                .listeners(
                    aws_sdk_elasticloadbalancing::types::Listener::builder()
                        .protocol("TCP")
                        .load_balancer_port(80)
                        .instance_protocol("TCP")
                        .instance_port(30080)
                        .build()
                        .unwrap(),
                )
                .subnets(&subnet)
                .security_groups(&sg)
                .tags(
                    aws_sdk_elasticloadbalancing::types::Tag::builder()
                        .key(format!("kubernetes.io/cluster/{cluster}"))
                        .value("owned")
                        .build()
                        .unwrap(),
                )
                .tags(
                    aws_sdk_elasticloadbalancing::types::Tag::builder()
                        .key("kubernetes.io/service-name")
                        .value("default/web")
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
        let v2_tags = || {
            vec![
                aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                    .key(&owned)
                    .value("owned")
                    .build(),
                aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                    .key("kubernetes.io/service-name")
                    .value("default/nlb")
                    .build(),
            ]
        };
        let nlb_arn = elbv2
            .create_load_balancer()
            .name(&nlb)
            .r#type(aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum::Network)
            .subnets(&subnet)
            .set_tags(Some(v2_tags()))
            .send()
            .await
            .unwrap()
            .load_balancers()[0]
            .load_balancer_arn()
            .unwrap()
            .to_string();
        let tg = elbv2
            .create_target_group()
            .name(format!("k8s-default-nlb-{:010x}", pid))
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Tcp)
            .port(30081)
            .vpc_id(&vpc)
            .set_tags(Some(v2_tags()))
            .send()
            .await
            .unwrap()
            .target_groups()[0]
            .target_group_arn()
            .unwrap()
            .to_string();
        elbv2
            .create_listener()
            .load_balancer_arn(&nlb_arn)
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Tcp)
            .port(80)
            .default_actions(
                aws_sdk_elasticloadbalancingv2::types::Action::builder()
                    .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward)
                    .target_group_arn(&tg)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        // The EBS CSI driver's tags, with --k8s-tag-cluster-id.
        let volume = ec2
            .create_volume()
            .availability_zone("us-east-1a")
            .size(1)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags(&[
                        ("CSIVolumeName", "pvc-0a1b2c3d"),
                        ("ebs.csi.aws.com/cluster", "true"),
                        ("KubernetesCluster", name.as_str()),
                        ("kubernetes.io/created-for/pvc/name", "data"),
                    ])))
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .volume_id
            .unwrap();
        (sg, nodes_sg, subnet, volume, tg)
    });
    let _ = (&nodes_sg, &subnet);

    // An update leaves them to Kubernetes.
    let r = sb.run(&[
        "update",
        "cluster",
        &name,
        "--detailed-exitcode",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    let r = sb.ok(&["delete", "cluster", &name]);
    for (kind, n, id) in [
        ("service_load_balancer", classic.as_str(), classic.as_str()),
        ("service_load_balancer", nlb.as_str(), ""),
        ("security_group", &format!("k8s-elb-{classic}"), sg.as_str()),
        ("volume", "pvc-0a1b2c3d", volume.as_str()),
    ] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with(kind) && l.contains(n) && l.contains(id)),
            "{kind} {n} {id} not listed:\n{}",
            r.stdout
        );
    }
    assert!(
        !r.stdout.contains(&foreign),
        "another cluster's balancer is not listed:\n{}",
        r.stdout
    );

    let r = sb.ok(&["delete", "cluster", &name, "--yes"]);
    // Deleted before the VPC (emulator or not, the order is keelson's).
    let at = |what: &str| {
        r.stderr
            .find(what)
            .unwrap_or_else(|| panic!("{what} not in:\n{}", r.stderr))
    };
    let vpc_at = at(&format!("vpc.{name}"));
    for what in [
        format!("service_load_balancer.{classic}"),
        format!("service_load_balancer.{nlb}"),
        format!("security_group.k8s-elb-{classic}"),
    ] {
        assert!(at(&what) < vpc_at, "{what} after the VPC:\n{}", r.stderr);
    }
    assert_eq!(
        leftovers(&name, None),
        Vec::<String>::new(),
        "the VPC is gone too"
    );
    block_on(async {
        let left = elb
            .describe_load_balancers()
            .send()
            .await
            .unwrap()
            .load_balancer_descriptions()
            .iter()
            .filter_map(|l| l.load_balancer_name().map(str::to_string))
            .collect::<Vec<_>>();
        assert!(!left.contains(&classic), "{left:?}");
        assert!(
            left.contains(&foreign),
            "another cluster's is kept: {left:?}"
        );
        let v2 = elbv2
            .describe_load_balancers()
            .send()
            .await
            .unwrap()
            .load_balancers()
            .iter()
            .filter_map(|l| l.load_balancer_name().map(str::to_string))
            .collect::<Vec<_>>();
        assert!(!v2.contains(&nlb), "{v2:?}");
        assert!(
            elbv2
                .describe_target_groups()
                .target_group_arns(&tg)
                .send()
                .await
                .is_err(),
            "the NLB's target group is gone"
        );
        let volumes = ec2
            .describe_volumes()
            .filters(Filter::builder().name("volume-id").values(&volume).build())
            .send()
            .await
            .unwrap();
        assert!(volumes.volumes().is_empty(), "{volumes:?}");
        let groups = ec2
            .describe_security_groups()
            .filters(Filter::builder().name("group-id").values(&sg).build())
            .send()
            .await
            .unwrap();
        assert!(groups.security_groups().is_empty(), "{groups:?}");
        elb.delete_load_balancer()
            .load_balancer_name(&foreign)
            .send()
            .await
            .unwrap();
    });
}

fn owned_filter(cluster: &str) -> Filter {
    owned(cluster)
}
