//! The engine on the network layer: build, inspect through the SDK, re-plan empty.

use aws_sdk_ec2::types::Filter;

use crate::harness::*;

fn tag_filter(cluster: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:kubernetes.io/cluster/{cluster}"))
        .values("owned")
        .build()
}

/// "ACTION ADDRESS" for each change of a plan printed with `-o json`.
fn planned_changes(json: &str) -> Vec<String> {
    let plan: serde_json::Value = serde_json::from_str(json).unwrap();
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["action"].as_str().unwrap(),
                c["address"].as_str().unwrap()
            )
        })
        .collect()
}

/// A re-plan after apply must be empty and exit 0 with --detailed-exitcode.
fn assert_converged(sb: &Sandbox, cluster: &str) {
    let r = sb.run(&[
        "update",
        "cluster",
        cluster,
        "--detailed-exitcode",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(r.code, 0, "re-plan not empty:\n{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("No changes need to be applied"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout, "");
}

struct Inventory {
    vpcs: Vec<aws_sdk_ec2::types::Vpc>,
    subnets: Vec<aws_sdk_ec2::types::Subnet>,
    nats: Vec<aws_sdk_ec2::types::NatGateway>,
    tables: Vec<aws_sdk_ec2::types::RouteTable>,
    eips: usize,
    igws: usize,
}

fn inventory(cluster: &str) -> Inventory {
    let ec2 = ec2();
    block_on(async {
        let f = || tag_filter(cluster);
        let live = Filter::builder()
            .name("state")
            .values("pending")
            .values("available")
            .build();
        Inventory {
            vpcs: ec2
                .describe_vpcs()
                .filters(f())
                .send()
                .await
                .unwrap()
                .vpcs
                .unwrap_or_default(),
            subnets: ec2
                .describe_subnets()
                .filters(f())
                .send()
                .await
                .unwrap()
                .subnets
                .unwrap_or_default(),
            // The emulator ignores tag filters on this call: check the tag here too.
            nats: ec2
                .describe_nat_gateways()
                .filter(f())
                .filter(live)
                .send()
                .await
                .unwrap()
                .nat_gateways
                .unwrap_or_default()
                .into_iter()
                .filter(|n| {
                    tag(n.tags(), &format!("kubernetes.io/cluster/{cluster}")) == Some("owned")
                })
                .collect(),
            tables: ec2
                .describe_route_tables()
                .filters(f())
                .send()
                .await
                .unwrap()
                .route_tables
                .unwrap_or_default(),
            eips: ec2
                .describe_addresses()
                .filters(f())
                .send()
                .await
                .unwrap()
                .addresses()
                .len(),
            igws: ec2
                .describe_internet_gateways()
                .filters(f())
                .send()
                .await
                .unwrap()
                .internet_gateways()
                .len(),
        }
    })
}

fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

#[test]
fn a_private_three_zone_network_is_built_exactly_and_replans_empty() {
    let sb = Sandbox::new("net-private");
    let name = sb.cluster("netp");
    let name = name.as_str();
    let key = sb.path("admin.pub");
    let r = sb.ok(&[
        "create",
        "cluster",
        "--image",
        "ami-0123456789abcdef0",
        name,
        "--zones",
        "us-east-1a,us-east-1b,us-east-1c",
        "--topology",
        "private",
        "--bastion",
        "--master-count",
        "3",
        "--ssh-public-key",
        key.to_str().unwrap(),
        "--yes",
    ]);
    // 29 network resources, 5 security groups and their 18 rules, the key pair,
    // a role, policy and profile for each of the three roles, and a launch
    // template and ASG for each of the 7 groups, and 2 NLBs with their target
    // groups and listeners.
    assert!(
        r.stderr
            .contains("Applied: 82 added, 0 changed, 0 destroyed."),
        "{}",
        r.stderr
    );

    let inv = inventory(name);
    assert_eq!(inv.vpcs.len(), 1);
    let vpc = &inv.vpcs[0];
    assert_eq!(vpc.cidr_block(), Some("172.20.0.0/16"));
    assert_eq!(tag(vpc.tags(), "Name"), Some(name));
    assert_eq!(tag(vpc.tags(), "KubernetesCluster"), Some(name));
    assert_eq!(inv.igws, 1);
    assert_eq!(inv.eips, 3);
    let mut subnets: Vec<(String, String, String, String)> = inv
        .subnets
        .iter()
        .map(|s| {
            (
                tag(s.tags(), "Name").unwrap().to_string(),
                s.availability_zone().unwrap().to_string(),
                s.cidr_block().unwrap().to_string(),
                tag(s.tags(), "SubnetType").unwrap().to_string(),
            )
        })
        .collect();
    subnets.sort();
    let expect = |n: &str, z: &str, c: &str, t: &str| {
        (
            format!("{n}.{name}"),
            z.to_string(),
            c.to_string(),
            t.to_string(),
        )
    };
    assert_eq!(
        subnets,
        [
            expect("us-east-1a", "us-east-1a", "172.20.64.0/18", "Private"),
            expect("us-east-1b", "us-east-1b", "172.20.128.0/18", "Private"),
            expect("us-east-1c", "us-east-1c", "172.20.192.0/18", "Private"),
            expect(
                "utility-us-east-1a",
                "us-east-1a",
                "172.20.0.0/21",
                "Utility"
            ),
            expect(
                "utility-us-east-1b",
                "us-east-1b",
                "172.20.8.0/21",
                "Utility"
            ),
            expect(
                "utility-us-east-1c",
                "us-east-1c",
                "172.20.16.0/21",
                "Utility"
            ),
        ]
    );
    for s in &inv.subnets {
        assert_eq!(s.vpc_id(), vpc.vpc_id());
        let elb = if tag(s.tags(), "SubnetType") == Some("Private") {
            "kubernetes.io/role/internal-elb"
        } else {
            "kubernetes.io/role/elb"
        };
        assert_eq!(tag(s.tags(), elb), Some("1"));
    }
    // Each private subnet routes through the NAT gateway of its own zone, which
    // sits in that zone's utility subnet.
    let zone_of = |subnet: &str| {
        inv.subnets
            .iter()
            .find(|s| s.subnet_id() == Some(subnet))
            .unwrap()
            .availability_zone()
            .unwrap()
            .to_string()
    };
    assert_eq!(inv.nats.len(), 3);
    for t in &inv.tables {
        let default = t
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .expect("a default route");
        for a in t.associations() {
            let Some(subnet) = a.subnet_id() else {
                continue;
            };
            let s = inv
                .subnets
                .iter()
                .find(|s| s.subnet_id() == Some(subnet))
                .unwrap();
            if tag(s.tags(), "SubnetType") == Some("Private") {
                let nat = inv
                    .nats
                    .iter()
                    .find(|n| n.nat_gateway_id() == default.nat_gateway_id())
                    .expect("private routes go to a NAT");
                assert_eq!(zone_of(nat.subnet_id().unwrap()), zone_of(subnet));
                let nat_subnet = inv
                    .subnets
                    .iter()
                    .find(|x| x.subnet_id() == nat.subnet_id())
                    .unwrap();
                assert_eq!(tag(nat_subnet.tags(), "SubnetType"), Some("Utility"));
            } else {
                assert!(
                    default.gateway_id().is_some_and(|g| g.starts_with("igw-")),
                    "utility subnets route to the internet gateway"
                );
            }
        }
    }
    assert_converged(&sb, name);

    // A fourth zone: exactly its new resources are planned, then applied.
    let mut cluster =
        keelson::spec::parse::parse_cluster(&sb.object(&format!("{name}/config")), "config")
            .unwrap();
    let mut add = |n: &str, cidr: &str, kind| {
        cluster.spec.subnets.push(keelson::spec::ClusterSubnet {
            name: n.into(),
            zone: "us-east-1d".into(),
            cidr: Some(cidr.parse().unwrap()),
            kind,
            id: None,
            egress: None,
        })
    };
    add(
        "us-east-1d",
        "172.20.32.0/19",
        keelson::spec::SubnetType::Private,
    );
    add(
        "utility-us-east-1d",
        "172.20.24.0/21",
        keelson::spec::SubnetType::Utility,
    );
    let original = sb.object(&format!("{name}/config"));
    std::fs::write(
        sb.path("four.yaml"),
        keelson::spec::parse::to_yaml(&cluster),
    )
    .unwrap();
    sb.ok(&["replace", "-f", "four.yaml"]);
    let r = sb.run(&[
        "update",
        "cluster",
        name,
        "-o",
        "json",
        "--detailed-exitcode",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let mut planned = planned_changes(&r.stdout);
    planned.sort();
    let n = |s: &str| s.replace("NAME", name);
    assert_eq!(
        planned,
        [
            n("create elastic_ip.us-east-1d.NAME"),
            n("create nat_gateway.us-east-1d.NAME"),
            n("create route.private-us-east-1d.NAME:0.0.0.0/0"),
            n("create route_table.private-us-east-1d.NAME"),
            n("create route_table_association.us-east-1d.NAME"),
            n("create route_table_association.utility-us-east-1d.NAME"),
            n("create subnet.us-east-1d.NAME"),
            n("create subnet.utility-us-east-1d.NAME"),
            // Both load balancers span the new utility subnet.
            format!(
                "update load_balancer.{}",
                keelson::model::load_balancers::api_name(name)
            ),
            format!(
                "update load_balancer.{}",
                keelson::model::load_balancers::bastion_name(name)
            ),
        ]
    );
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        plan["summary"],
        serde_json::json!({"add": 8, "change": 2, "destroy": 0})
    );
    sb.ok(&["update", "cluster", name, "--yes"]);
    assert_converged(&sb, name);
    assert_eq!(inventory(name).nats.len(), 4);

    // And back to three zones: exactly those eight are deleted.
    std::fs::write(sb.path("three.yaml"), &original).unwrap();
    sb.ok(&["replace", "-f", "three.yaml"]);
    let r = sb.run(&[
        "update",
        "cluster",
        name,
        "-o",
        "json",
        "--state",
        &sb.state(),
    ]);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        plan["summary"],
        serde_json::json!({"add": 0, "change": 2, "destroy": 8})
    );
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["action"] == "delete" || c["kind"] == "load_balancer")
    );
    sb.ok(&["update", "cluster", name, "--yes"]);
    assert_converged(&sb, name);
    let inv = inventory(name);
    assert_eq!(
        (
            inv.subnets.len(),
            inv.nats.len(),
            inv.eips,
            inv.tables.len()
        ),
        (6, 3, 3, 4)
    );
}

#[test]
fn public_topology_and_a_single_nat() {
    let sb = Sandbox::new("net-public");
    let public = &sb.cluster("pub1");
    sb.ok(&[
        "create",
        "cluster",
        "--image",
        "ami-0123456789abcdef0",
        public,
        "--zones",
        "us-east-1a",
        "--yes",
    ]);
    let inv = inventory(public);
    assert_eq!(
        (
            inv.subnets.len(),
            inv.nats.len(),
            inv.eips,
            inv.tables.len(),
            inv.igws
        ),
        (1, 0, 0, 1, 1)
    );
    assert_eq!(inv.subnets[0].cidr_block(), Some("172.20.128.0/17"));
    assert_eq!(tag(inv.subnets[0].tags(), "SubnetType"), Some("Public"));
    // With gossip, the endpoint is the API load balancer's own hostname.
    let yaml = sb.ok(&["get", "cluster", public, "-o", "yaml"]).stdout;
    let lb = keelson::model::load_balancers::api_name(public);
    assert!(yaml.contains(&format!("apiEndpoint: {lb}")), "{yaml}");
    assert_converged(&sb, public);

    let single = &sb.cluster("single");
    sb.ok(&[
        "create",
        "cluster",
        "--image",
        "ami-0123456789abcdef0",
        single,
        "--zones",
        "us-east-1a,us-east-1b",
        "--topology",
        "private",
        "--nat",
        "single",
        "--yes",
    ]);
    let inv = inventory(single);
    assert_eq!(inv.nats.len(), 1);
    let nat = inv.nats[0].nat_gateway_id().unwrap();
    let private_routes: Vec<_> = inv
        .tables
        .iter()
        .filter(|t| tag(t.tags(), "Name").is_some_and(|n| n.starts_with("private-")))
        .flat_map(|t| t.routes().iter().filter_map(|r| r.nat_gateway_id()))
        .collect();
    assert_eq!(private_routes, [nat, nat]);
    assert_converged(&sb, single);

    let one = &sb.cluster("one");
    sb.ok(&[
        "create",
        "cluster",
        "--image",
        "ami-0123456789abcdef0",
        one,
        "--zones",
        "us-east-1c",
        "--topology",
        "private",
        "--yes",
    ]);
    let inv = inventory(one);
    assert_eq!(
        (
            inv.subnets.len(),
            inv.nats.len(),
            inv.eips,
            inv.tables.len(),
            inv.igws
        ),
        (2, 1, 1, 2, 1)
    );
    let mut cidrs: Vec<&str> = inv
        .subnets
        .iter()
        .map(|s| s.cidr_block().unwrap())
        .collect();
    cidrs.sort();
    assert_eq!(cidrs, ["172.20.0.0/20", "172.20.128.0/17"]);
    assert_converged(&sb, one);
}

#[test]
fn a_saved_plan_applies_exactly_and_is_refused_once_stale() {
    let sb = Sandbox::new("saved-plan");
    let name = sb.cluster("saved");
    let name = name.as_str();
    sb.ok(&[
        "create",
        "cluster",
        "--image",
        "ami-0123456789abcdef0",
        name,
        "--zones",
        "us-east-1a",
    ]);
    assert!(
        inventory(name).vpcs.is_empty(),
        "create without --yes builds nothing"
    );
    sb.ok(&["update", "cluster", name, "--out", "plan.json"]);
    let r = sb.ok(&["update", "cluster", name, "--plan", "plan.json", "--yes"]);
    assert!(r.stderr.contains("Applied: "), "{}", r.stderr);
    assert_converged(&sb, name);

    // A plan made before a change to the specs is refused, and nothing is applied.
    let cluster = sb.object(&format!("{name}/config"));
    std::fs::write(
        sb.path("labels.yaml"),
        cluster.replace("spec:\n", "spec:\n  cloudLabels:\n    team: infra\n"),
    )
    .unwrap();
    sb.ok(&["update", "cluster", name, "--out", "before.json"]);
    sb.ok(&["replace", "-f", "labels.yaml"]);
    let r = sb.run(&[
        "update",
        "cluster",
        name,
        "--plan",
        "before.json",
        "--yes",
        "--state",
        &sb.state(),
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("the saved plan is stale: the cluster's specs changed since it was made"),
        "{}",
        r.stderr
    );
    // A plan of the tag change, made now, is refused once the cloud moved.
    sb.ok(&["update", "cluster", name, "--out", "tags.json"]);
    let ec2 = ec2();
    let vpc = inventory(name).vpcs[0].vpc_id().unwrap().to_string();
    block_on(async {
        ec2.delete_tags()
            .resources(&vpc)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("KubernetesCluster")
                    .build(),
            )
            .send()
            .await
            .unwrap()
    });
    let r = sb.run(&[
        "update",
        "cluster",
        name,
        "--plan",
        "tags.json",
        "--yes",
        "--state",
        &sb.state(),
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("the resources in AWS changed since it was made"),
        "{}",
        r.stderr
    );
    assert!(
        !sb.keys().iter().any(|k| k.ends_with("/lock")),
        "the lock is released after a refusal"
    );
}

/// The per-run bucket, and the revisions that hash user-data naming it.
fn redact(text: &str, bucket: &str) -> String {
    // The stand-in agent's path names the test process; its digest is stable.
    text.replace(bucket, "BUCKET")
        .replace(stand_in_agent(), "STAND_IN_AGENT")
        .lines()
        .map(|l| {
            // A summarised script's size and digest cover the run's bucket name.
            if let (Some(from), Some(i)) = (l.find(" lines, "), l.find(" bytes, sha256 ")) {
                let at = i + " bytes, sha256 ".len();
                return format!(
                    "{} lines, SIZE bytes, sha256 DIGEST{}",
                    &l[..from],
                    &l[at + 12..]
                );
            }
            if !l.contains("keelson.dev/revision") {
                return l.to_string();
            }
            let hex = |w: &str| w.len() == 16 && w.bytes().all(|b| b.is_ascii_hexdigit());
            l.split('"')
                .map(|w| if hex(w) { "REVISION" } else { w })
                .collect::<Vec<_>>()
                .join("\"")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn the_preview_of_a_new_cluster() {
    let sb = Sandbox::new("preview");
    let name = "preview.k8s.local";
    sb.ok(&[
        "create",
        "cluster",
        "--image",
        "ami-0123456789abcdef0",
        name,
        "--zones",
        "us-east-1a",
        "--topology",
        "private",
    ]);
    let r = sb.run(&[
        "update",
        "cluster",
        name,
        "--detailed-exitcode",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(r.code, 2, "changes pending");
    assert!(
        r.stderr.contains("Must specify --yes to apply changes"),
        "{}",
        r.stderr
    );
    // The per-run bucket appears in the IAM policies' state-store ARNs.
    insta::assert_snapshot!("preview_private_1_zone", redact(&r.stdout, &sb.bucket));
    let j = sb.run(&[
        "update",
        "cluster",
        name,
        "-o",
        "json",
        "--state",
        &sb.state(),
    ]);
    insta::assert_snapshot!("preview_private_1_zone_json", redact(&j.stdout, &sb.bucket));
    assert!(inventory(name).vpcs.is_empty(), "a preview changes nothing");
}

#[test]
fn an_existing_vpc_is_shared_tagged_and_never_changed() {
    let sb = Sandbox::new("net-shared");
    let name = sb.cluster("shared");
    let name = name.as_str();
    let ec2 = ec2();
    let (vpc, igw) = block_on(async {
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.50.0.0/16")
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
        (vpc, igw)
    });
    let r = sb.ok(&[
        "create",
        "cluster",
        "--image",
        "ami-0123456789abcdef0",
        name,
        "--zones",
        "us-east-1a",
        "--topology",
        "private",
        "--network-id",
        &vpc,
        "--yes",
    ]);
    assert!(r.stderr.contains("Applied:"), "{}", r.stderr);
    let shared = format!("kubernetes.io/cluster/{name}");
    let (vpcs, igws, subnets) = block_on(async {
        let v = ec2
            .describe_vpcs()
            .vpc_ids(&vpc)
            .send()
            .await
            .unwrap()
            .vpcs
            .unwrap_or_default();
        let g = ec2
            .describe_internet_gateways()
            .internet_gateway_ids(&igw)
            .send()
            .await
            .unwrap()
            .internet_gateways
            .unwrap_or_default();
        let s = ec2
            .describe_subnets()
            .filters(Filter::builder().name("vpc-id").values(&vpc).build())
            .send()
            .await
            .unwrap()
            .subnets
            .unwrap_or_default();
        (v, g, s)
    });
    // The VPC and its gateway are only tagged `shared`; keelson made its subnets in it.
    assert_eq!(tag(vpcs[0].tags(), &shared), Some("shared"));
    assert_eq!(
        tag(vpcs[0].tags(), "Name"),
        None,
        "a shared VPC keeps its own name"
    );
    assert_eq!(tag(igws[0].tags(), &shared), Some("shared"));
    let mut cidrs: Vec<&str> = subnets
        .iter()
        .filter(|s| tag(s.tags(), &shared) == Some("owned"))
        .map(|s| s.cidr_block().unwrap())
        .collect();
    cidrs.sort();
    assert_eq!(cidrs, ["10.50.0.0/20", "10.50.128.0/17"]);
    assert_eq!(inventory(name).vpcs.len(), 0, "no VPC of its own");
    assert_converged(&sb, name);
}

#[test]
fn security_groups_iam_and_a_targeted_access_change() {
    let sb = Sandbox::new("sg-iam");
    let name = sb.cluster("sgiam");
    let name = name.as_str();
    let key = sb.path("admin.pub");
    sb.ok(&[
        "create",
        "cluster",
        "--image",
        "ami-0123456789abcdef0",
        name,
        "--zones",
        "us-east-1a",
        "--topology",
        "private",
        "--bastion",
        "--admin-access",
        "203.0.113.0/24",
        "--ssh-public-key",
        key.to_str().unwrap(),
        "--yes",
    ]);
    let ec2 = ec2();
    let groups = block_on(async {
        ec2.describe_security_groups()
            .filters(tag_filter(name))
            .send()
            .await
            .unwrap()
            .security_groups
            .unwrap_or_default()
    });
    let mut names: Vec<&str> = groups.iter().map(|g| g.group_name().unwrap()).collect();
    names.sort();
    let n = |p: &str| format!("{p}.{name}");
    assert_eq!(
        names,
        [
            n("api-elb"),
            n("bastion-elb"),
            n("bastion"),
            n("masters"),
            n("nodes")
        ]
    );
    let id_of = |g: &str| {
        groups
            .iter()
            .find(|x| x.group_name() == Some(g))
            .unwrap()
            .group_id()
            .unwrap()
            .to_string()
    };
    let group = |g: &str| groups.iter().find(|x| x.group_name() == Some(g)).unwrap();
    // SSH reaches masters only from the bastion group; the API only via api-elb.
    let ssh_sources: Vec<String> = group(&n("masters"))
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(22))
        .flat_map(|p| {
            p.user_id_group_pairs()
                .iter()
                .map(|g| g.group_id().unwrap().to_string())
        })
        .collect();
    assert_eq!(ssh_sources, [id_of(&n("bastion"))]);
    let mut api: Vec<&str> = group(&n("api-elb"))
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(443))
        .flat_map(|p| p.ip_ranges().iter().map(|r| r.cidr_ip().unwrap()))
        .collect();
    api.sort();
    // The masters and nodes reach the public API through the NAT gateway: its
    // address is admitted whatever kubernetesApiAccess says.
    let nat_ip = block_on(async {
        ec2.describe_addresses()
            .filters(tag_filter(name))
            .send()
            .await
            .unwrap()
            .addresses()[0]
            .public_ip()
            .unwrap()
            .to_string()
    });
    let mut want = vec!["203.0.113.0/24".to_string(), format!("{nat_ip}/32")];
    want.sort();
    assert_eq!(api, want);
    let keys = block_on(async {
        ec2.describe_key_pairs()
            .send()
            .await
            .unwrap()
            .key_pairs
            .unwrap_or_default()
    });
    assert!(keys.iter().any(|k| {
        k.key_name()
            .is_some_and(|k| k.starts_with(&format!("kubernetes.{name}-")))
    }));
    assert_converged(&sb, name);

    // Changing --admin-access plans exactly the rule changes.
    let cluster = sb
        .object(&format!("{name}/config"))
        .replace("- 203.0.113.0/24", "- 198.51.100.0/24");
    std::fs::write(sb.path("access.yaml"), cluster).unwrap();
    sb.ok(&["replace", "-f", "access.yaml"]);
    let r = sb.run(&[
        "update",
        "cluster",
        name,
        "-o",
        "json",
        "--state",
        &sb.state(),
    ]);
    let mut planned = planned_changes(&r.stdout);
    planned.sort();
    assert_eq!(
        planned,
        [
            format!(
                "create security_group_rule.api-elb.{name}:ingress:tcp:443-443:198.51.100.0/24"
            ),
            format!("delete security_group_rule.api-elb.{name}:ingress:tcp:443-443:203.0.113.0/24"),
        ]
    );
    sb.ok(&["update", "cluster", name, "--yes"]);
    assert_converged(&sb, name);
}

#[test]
fn instance_groups_become_launch_templates_and_asgs_and_edits_touch_only_them() {
    let sb = Sandbox::new("instances");
    let name = sb.cluster("inst");
    let name = name.as_str();
    let key = sb.path("admin.pub");
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
        "--node-count",
        "2",
        "--ssh-public-key",
        key.to_str().unwrap(),
        "--yes",
    ]);
    let (ec2, asg) = (ec2(), autoscaling());
    let (templates, versions, groups) = block_on(async {
        let t = ec2
            .describe_launch_templates()
            .filters(tag_filter(name))
            .send()
            .await
            .unwrap()
            .launch_templates
            .unwrap_or_default();
        let mut v = Vec::new();
        for lt in &t {
            let out = ec2
                .describe_launch_template_versions()
                .launch_template_id(lt.launch_template_id().unwrap())
                .versions("$Latest")
                .send()
                .await
                .unwrap();
            v.push((
                lt.launch_template_name().unwrap().to_string(),
                out.launch_template_versions()[0].clone(),
            ));
        }
        let f = aws_sdk_autoscaling::types::Filter::builder()
            .name("tag-key")
            .values(format!("kubernetes.io/cluster/{name}"))
            .build();
        let g = asg
            .describe_auto_scaling_groups()
            .filters(f)
            .send()
            .await
            .unwrap()
            .auto_scaling_groups
            .unwrap_or_default();
        (t, v, g)
    });
    let n = |s: &str| format!("{s}.{name}");
    let mut names: Vec<String> = templates
        .iter()
        .map(|t| t.launch_template_name().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            n("bastions"),
            format!("master-us-east-1a.masters.{name}"),
            n("nodes-us-east-1a"),
            n("nodes-us-east-1b")
        ]
    );
    for (tname, v) in &versions {
        let d = v.launch_template_data().unwrap();
        assert_eq!(d.image_id(), Some("ami-0123456789abcdef0"));
        assert_eq!(
            d.metadata_options()
                .and_then(|m| m.http_tokens())
                .map(|t| t.as_str()),
            Some("required"),
            "IMDSv2 on {tname}"
        );
        // One hop: a pod's network namespace is a second, so pods cannot reach
        // IMDS and take the instance role.
        assert_eq!(
            d.metadata_options()
                .and_then(|m| m.http_put_response_hop_limit()),
            Some(1),
            "IMDS hop limit on {tname}"
        );
        assert!(
            d.key_name()
                .unwrap()
                .starts_with(&format!("kubernetes.{name}-"))
        );
        let ebs = d.block_device_mappings()[0].ebs().unwrap();
        assert_eq!(ebs.encrypted(), Some(true));
        let itags = &d
            .tag_specifications()
            .iter()
            .find(|s| s.resource_type().map(|r| r.as_str()) == Some("instance"))
            .unwrap()
            .tags();
        assert!(tag(itags, "keelson.dev/revision").is_some_and(|r| r.len() == 16));
        let user_data = String::from_utf8(
            base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                d.user_data().unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
        assert!(user_data.contains(&format!("KEELSON_CLUSTER='{name}'")));
    }
    let mut sizes: Vec<(String, i32, i32, usize)> = groups
        .iter()
        .map(|g| {
            (
                g.auto_scaling_group_name().unwrap().to_string(),
                g.min_size().unwrap(),
                g.max_size().unwrap(),
                g.vpc_zone_identifier().unwrap().split(',').count(),
            )
        })
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [
            (n("bastions"), 1, 1, 2),
            (format!("master-us-east-1a.masters.{name}"), 1, 1, 1),
            (n("nodes-us-east-1a"), 1, 1, 1),
            (n("nodes-us-east-1b"), 1, 1, 1)
        ]
    );
    let nodes = groups
        .iter()
        .find(|g| g.auto_scaling_group_name() == Some(n("nodes-us-east-1a").as_str()))
        .unwrap();
    assert!(
        nodes
            .tags()
            .iter()
            .any(|t| t.key() == Some("k8s.io/cluster-autoscaler/enabled"))
    );
    assert!(
        nodes
            .tags()
            .iter()
            .any(|t| t.key() == Some("k8s.io/role/node"))
    );
    // Masters register in the API target group, bastions in the bastion's.
    let tg_of = |g: &str| {
        groups
            .iter()
            .find(|x| x.auto_scaling_group_name() == Some(g))
            .unwrap()
            .target_group_arns()
            .iter()
            .map(|a| a.rsplit('/').nth(1).unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tg_of(&format!("master-us-east-1a.masters.{name}")),
        [keelson::model::load_balancers::elb_name("tcp-api", name)]
    );
    assert_eq!(
        tg_of(&n("bastions")),
        [keelson::model::load_balancers::elb_name(
            "tcp-bastion",
            name
        )]
    );
    assert!(tg_of(&n("nodes-us-east-1a")).is_empty());
    // IAM: a role, inline policy and profile per role, under the cluster's path.
    let iam = iam();
    let (roles, profiles, policy) = block_on(async {
        let path = format!("/keelson/{name}/");
        let roles = iam
            .list_roles()
            .path_prefix(&path)
            .send()
            .await
            .unwrap()
            .roles;
        let profiles = iam
            .list_instance_profiles()
            .path_prefix(&path)
            .send()
            .await
            .unwrap()
            .instance_profiles
            .into_iter()
            // The emulator ignores PathPrefix on this call: filter here too.
            .filter(|p| p.path() == path)
            .collect::<Vec<_>>();
        let policy = iam
            .get_role_policy()
            .role_name(n("nodes"))
            .policy_name(n("nodes"))
            .send()
            .await
            .unwrap()
            .policy_document;
        (roles, profiles, policy)
    });
    let mut role_names: Vec<&str> = roles.iter().map(|r| r.role_name()).collect();
    role_names.sort();
    assert_eq!(role_names, [n("bastions"), n("masters"), n("nodes")]);
    assert!(
        profiles
            .iter()
            .all(|p| p.roles().len() == 1 && p.roles()[0].role_name() == p.instance_profile_name())
    );
    assert!(
        policy.contains("ecr") || policy.contains("ecr%3A"),
        "nodes may pull from ECR: {policy}"
    );
    assert_converged(&sb, name);

    let plan_of = |sb: &Sandbox| -> Vec<String> {
        let r = sb.run(&[
            "update",
            "cluster",
            name,
            "-o",
            "json",
            "--state",
            &sb.state(),
        ]);
        planned_changes(&r.stdout)
    };
    // A machine type: exactly a new launch template version for that group.
    sb.edit_group(
        name,
        "nodes-us-east-1b",
        "s/machineType: t3.medium/machineType: m7i.large/",
    );
    assert_eq!(
        plan_of(&sb),
        [format!("update launch_template.{}", n("nodes-us-east-1b"))]
    );
    let preview = sb
        .run(&["update", "cluster", name, "--state", &sb.state()])
        .stdout;
    assert!(
        preview.contains("machine_type: \"t3.medium\" -> \"m7i.large\""),
        "{preview}"
    );
    sb.ok(&["update", "cluster", name, "--yes"]);
    assert_converged(&sb, name);
    // A max size: exactly that group's ASG.
    sb.edit_group(name, "nodes-us-east-1a", "s/maxSize: 1/maxSize: 5/");
    assert_eq!(
        plan_of(&sb),
        [format!(
            "update autoscaling_group.{}",
            n("nodes-us-east-1a")
        )]
    );
    sb.ok(&["update", "cluster", name, "--yes"]);
    assert_converged(&sb, name);
}

#[test]
fn a_dns_zone_gets_owned_alias_records_for_the_load_balancers() {
    let sb = Sandbox::new("dns");
    let r53 = aws_sdk_route53::Client::new(sdk_config());
    let domain = format!("z{}.test", std::process::id());
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
    let name = format!("prod.{domain}");
    sb.ok(&[
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
        "--dns-zone",
        &domain,
        "--yes",
    ]);
    let sets = block_on(async {
        r53.list_resource_record_sets()
            .hosted_zone_id(&zone)
            .send()
            .await
            .unwrap()
            .resource_record_sets
    });
    let of = |n: &str, t: &str| {
        sets.iter()
            .find(|s| s.name() == format!("{n}.{name}.") && s.r#type().as_str() == t)
            .cloned()
    };
    for (n, lb) in [
        ("api", keelson::model::load_balancers::api_name(&name)),
        (
            "bastion",
            keelson::model::load_balancers::bastion_name(&name),
        ),
    ] {
        let alias = of(n, "A").unwrap_or_else(|| panic!("{n} alias missing: {sets:?}"));
        assert!(
            alias.alias_target().unwrap().dns_name().starts_with(&lb),
            "{n} points at {lb}"
        );
        let owner = of(n, "TXT").unwrap();
        assert_eq!(
            owner.resource_records()[0].value(),
            format!("\"keelson-owner={name}\"")
        );
    }
    // get cluster shows where the API answers.
    let yaml = sb.ok(&["get", "cluster", &name, "-o", "yaml"]).stdout;
    assert!(
        yaml.contains(&format!("status:\n  apiEndpoint: api.{name}\n")),
        "{yaml}"
    );
    assert_converged(&sb, &name);
}

/// Moving the API balancer from public to internal replaces it, and a balancer
/// is known by its name: the old one (and what refers to it: its listener, the
/// alias record) must go before the new one is made, which AWS enforces and the
/// emulator does not, so the order is read from keelson's own progress lines.
#[test]
fn a_balancer_known_by_name_is_removed_before_it_is_made_again() {
    let sb = Sandbox::new("lb-replace");
    let r53 = aws_sdk_route53::Client::new(sdk_config());
    let domain = format!("l{}.test", std::process::id());
    block_on(async {
        r53.create_hosted_zone()
            .name(&domain)
            .caller_reference(&domain)
            .send()
            .await
            .unwrap()
    });
    let name = format!("lb.{domain}");
    sb.ok(&[
        "create",
        "cluster",
        &name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
        "--topology",
        "private",
        "--dns-zone",
        &domain,
        "--yes",
    ]);
    let editor = script(
        &sb.path("internal.sh"),
        "sed -i '/loadBalancer:/{n;s/type: Public/type: Internal/}' \"$1\"",
    );
    let mut cmd = sb.command(&["edit", "cluster", &name, "--state", &sb.state()]);
    cmd.env("EDITOR", &editor);
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let r = sb.ok(&["update", "cluster", &name, "--yes"]);
    let lb = keelson::model::load_balancers::api_name(&name);
    let at = |line: &str| {
        r.stderr
            .lines()
            .position(|l| l.contains(line))
            .unwrap_or_else(|| panic!("{line:?} not in:\n{}", r.stderr))
    };
    let old_record = at(&format!("deleted dns_record.api.{name}#old "));
    let old_listener = at(&format!("deleted listener.{lb}:443#old "));
    let old_lb = at(&format!("deleted load_balancer.{lb}#old "));
    let new_lb = at(&format!("replaced load_balancer.{lb} "));
    let new_listener = at(&format!("replaced listener.{lb}:443 "));
    let new_record = at(&format!("replaced dns_record.api.{name} "));
    assert!(old_record < old_lb && old_listener < old_lb, "{}", r.stderr);
    assert!(old_lb < new_lb, "{}", r.stderr);
    assert!(new_lb < new_listener && new_lb < new_record, "{}", r.stderr);

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(sdk_config());
    let scheme = block_on(async {
        elb.describe_load_balancers()
            .names(&lb)
            .send()
            .await
            .unwrap()
            .load_balancers()[0]
            .scheme()
            .cloned()
    });
    assert_eq!(
        scheme,
        Some(aws_sdk_elasticloadbalancingv2::types::LoadBalancerSchemeEnum::Internal)
    );
    assert_converged(&sb, &name);
}

/// The API target group does not preserve client IPs (its targets, the masters,
/// are also its clients: an internal NLB does not hairpin a preserved source),
/// the bastion's keeps AWS's default; discovery reads the attribute back, so a
/// re-plan is empty, and a group changed by hand is set right in place.
#[test]
fn the_api_target_group_does_not_preserve_client_ips() {
    use aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute;
    let sb = Sandbox::new("tg-attrs");
    let name = sb.cluster("tga");
    let name = name.as_str();
    sb.ok(&[
        "create",
        "cluster",
        name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
        "--topology",
        "private",
        "--bastion",
        "--api-loadbalancer-type",
        "internal",
        "--yes",
    ]);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(sdk_config());
    let api_tg = keelson::model::load_balancers::elb_name("tcp-api", name);
    let bastion_tg = keelson::model::load_balancers::elb_name("tcp-bastion", name);
    let arn_of = |tg: &str| {
        block_on(async {
            elb.describe_target_groups()
                .names(tg)
                .send()
                .await
                .unwrap()
                .target_groups()[0]
                .target_group_arn()
                .unwrap()
                .to_string()
        })
    };
    let preserve = |arn: &str| {
        block_on(async {
            elb.describe_target_group_attributes()
                .target_group_arn(arn)
                .send()
                .await
                .unwrap()
                .attributes()
                .iter()
                .find(|a| a.key() == Some("preserve_client_ip.enabled"))
                .and_then(|a| a.value().map(str::to_string))
        })
    };
    let (api, bastion) = (arn_of(&api_tg), arn_of(&bastion_tg));
    assert_eq!(preserve(&api).as_deref(), Some("false"));
    // The emulator lists the attribute only once set; AWS's default is on.
    assert_ne!(preserve(&bastion).as_deref(), Some("false"));
    assert_converged(&sb, name);

    // Turned back on by hand: an update of the group, in place.
    block_on(async {
        elb.modify_target_group_attributes()
            .target_group_arn(&api)
            .attributes(
                TargetGroupAttribute::builder()
                    .key("preserve_client_ip.enabled")
                    .value("true")
                    .build(),
            )
            .send()
            .await
            .unwrap()
    });
    let r = sb.run(&[
        "update",
        "cluster",
        name,
        "-o",
        "json",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(
        planned_changes(&r.stdout),
        [format!("update target_group.{api_tg}")]
    );
    sb.ok(&["update", "cluster", name, "--yes"]);
    assert_eq!(preserve(&api).as_deref(), Some("false"));
    assert_eq!(arn_of(&api_tg), api, "changed in place");
    assert_converged(&sb, name);
}

/// A launch template's latest version is read only when it may differ from the
/// model: the template's content tag records the version keelson made and its
/// digest. A version made by hand, a missing or edited tag: read and compared.
#[test]
fn launch_template_versions_are_read_only_when_they_may_have_changed() {
    use crate::proxy::{Fault, FaultProxy};
    let sb = Sandbox::new("lt-content");
    let name = sb.cluster("ltc");
    let name = name.as_str();
    create_small(&sb, name);
    let ec2 = ec2();
    let templates = || {
        block_on(async {
            ec2.describe_launch_templates()
                .filters(tag_filter(name))
                .send()
                .await
                .unwrap()
                .launch_templates
                .unwrap_or_default()
        })
    };
    let content = |t: &aws_sdk_ec2::types::LaunchTemplate| {
        tag(t.tags(), "keelson.dev/content").map(str::to_string)
    };
    let all = templates();
    assert_eq!(all.len(), 3);
    for t in &all {
        let c = content(t).unwrap();
        let (v, d) = c.split_once(':').unwrap();
        assert_eq!(v, "1", "{c}");
        assert_eq!(d.len(), 32, "{c}");
    }
    // Returns the plan's exit code, its text, and how many versions it read.
    let plan = || {
        let proxy = FaultProxy::start(Fault::Fail(vec![]));
        let mut cmd = sb.command(&["update", "cluster", name, "--detailed-exitcode"]);
        cmd.args(["--state", &sb.state()])
            .env("AWS_ENDPOINT_URL", &proxy.url);
        let r = sb.run_cmd(cmd);
        let reads = proxy
            .stats()
            .actions
            .get("DescribeLaunchTemplateVersions")
            .copied()
            .unwrap_or(0);
        (r.code, r.stdout, reads)
    };
    let (code, out, reads) = plan();
    assert_eq!((code, reads), (0, 0), "{out}");

    // A version made by hand (a bigger machine) is seen and planned away.
    let nodes = all
        .iter()
        .find(|t| t.launch_template_name() == Some(&format!("nodes-us-east-1a.{name}")))
        .unwrap();
    let nodes_id = nodes.launch_template_id().unwrap().to_string();
    block_on(async {
        ec2.create_launch_template_version()
            .launch_template_id(&nodes_id)
            .source_version("1")
            .launch_template_data(
                aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                    .instance_type(aws_sdk_ec2::types::InstanceType::M5Xlarge)
                    .build(),
            )
            .send()
            .await
    })
    .unwrap();
    let (code, out, reads) = plan();
    assert_eq!((code, reads), (2, 1), "{out}");
    assert!(
        out.contains(&format!(
            "  ~ 1 launch_template\n    ~ nodes-us-east-1a.{name} ("
        )),
        "{out}"
    );
    sb.ok(&["update", "cluster", name, "--yes"]);
    let after = templates();
    let nodes = after
        .iter()
        .find(|t| t.launch_template_id() == Some(&nodes_id))
        .unwrap();
    assert_eq!(nodes.latest_version_number(), Some(3));
    assert!(
        content(nodes).unwrap().starts_with("3:"),
        "{:?}",
        content(nodes)
    );
    let (code, out, reads) = plan();
    assert_eq!((code, reads), (0, 0), "{out}");

    // A tag edited or removed by hand: the versions are read, nothing changes.
    block_on(async {
        ec2.create_tags()
            .resources(&nodes_id)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("keelson.dev/content")
                    .value(format!("3:{}", "0".repeat(32)))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        for t in &after {
            if t.launch_template_id() != Some(&nodes_id) {
                ec2.delete_tags()
                    .resources(t.launch_template_id().unwrap())
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("keelson.dev/content")
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
        }
    });
    let (code, out, reads) = plan();
    assert_eq!(code, 0, "{out}");
    assert!(
        reads >= 1,
        "the three templates' versions were read: {reads}"
    );
}

/// An ASG update brings its target groups to the spec from what discovery saw
/// (no second read): the API target group, detached by hand, is attached again,
/// and one attached by hand is detached; then nothing is left to do.
#[test]
fn an_asg_update_attaches_and_detaches_target_groups_from_what_was_discovered() {
    let sb = Sandbox::new("asg-targets");
    let name = sb.cluster("tgs");
    create_small(&sb, &name);
    let (asg, elb) = (
        autoscaling(),
        aws_sdk_elasticloadbalancingv2::Client::new(sdk_config()),
    );
    let master = format!("master-us-east-1a.masters.{name}");
    let attached = || {
        block_on(async {
            asg.describe_auto_scaling_groups()
                .auto_scaling_group_names(&master)
                .send()
                .await
                .unwrap()
                .auto_scaling_groups()[0]
                .target_group_arns()
                .to_vec()
        })
    };
    let api = attached();
    assert_eq!(api.len(), 1, "{api:?}");
    let vpc = cluster_vpc(&name);
    let stray = block_on(async {
        elb.create_target_group()
            .name(format!("stray-{}", std::process::id()))
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Tcp)
            .port(8443)
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap()
            .target_groups()[0]
            .target_group_arn()
            .unwrap()
            .to_string()
    });
    block_on(async {
        asg.detach_load_balancer_target_groups()
            .auto_scaling_group_name(&master)
            .set_target_group_arns(Some(api.clone()))
            .send()
            .await
            .unwrap();
        asg.attach_load_balancer_target_groups()
            .auto_scaling_group_name(&master)
            .target_group_arns(&stray)
            .send()
            .await
            .unwrap();
    });

    let r = sb.run(&[
        "update",
        "cluster",
        &name,
        "-o",
        "json",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(
        planned_changes(&r.stdout),
        [format!("update autoscaling_group.{master}")]
    );
    // Through a counting proxy: the group is described once, by discovery.
    let proxy = crate::proxy::FaultProxy::start(crate::proxy::Fault::Fail(vec![]));
    let mut cmd = sb.command(&["update", "cluster", &name, "--yes", "--state", &sb.state()]);
    cmd.env("AWS_ENDPOINT_URL", &proxy.url);
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let actions = proxy.stats().actions;
    for (action, n) in [
        ("DescribeAutoScalingGroups", 1),
        ("UpdateAutoScalingGroup", 1),
        ("AttachLoadBalancerTargetGroups", 1),
        ("DetachLoadBalancerTargetGroups", 1),
    ] {
        assert_eq!(actions.get(action), Some(&n), "{action}: {actions:?}");
    }
    assert_eq!(attached(), api);
    assert_converged(&sb, &name);
}
