use crate::harness::*;

#[test]
fn create_writes_the_spec_groups_and_key() {
    let sb = Sandbox::new("create-demo");
    sb.create_demo("demo.k8s.local");
    let mut keys = sb.keys();
    keys.sort();
    let fingerprint = keys
        .iter()
        .find_map(|k| k.strip_prefix("demo.k8s.local/pki/ssh/public/admin/"))
        .expect("ssh key stored")
        .to_string();
    let mut expected: Vec<String> = ["config", "instancegroup/bastions"]
        .iter()
        .map(|k| format!("demo.k8s.local/{k}"))
        .collect();
    for z in ["a", "b", "c"] {
        expected.push(format!("demo.k8s.local/instancegroup/master-us-east-1{z}"));
        expected.push(format!("demo.k8s.local/instancegroup/nodes-us-east-1{z}"));
    }
    expected.push(format!("demo.k8s.local/pki/ssh/public/admin/{fingerprint}"));
    // The cluster's PKI, made once at create.
    for k in [
        "pki/private/ca.key",
        "pki/private/etcd-ca.key",
        "pki/private/front-proxy-ca.key",
        "pki/private/sa.key",
        "pki/public/ca.crt",
        "pki/public/etcd-ca.crt",
        "pki/public/front-proxy-ca.crt",
        "pki/public/sa.pub",
        "secrets/encryption-config.yaml",
    ] {
        expected.push(format!("demo.k8s.local/{k}"));
    }
    expected.sort();
    assert_eq!(
        keys, expected,
        "exactly the spec, 7 groups, the key and the PKI; no lock left behind"
    );

    // The stored objects are the documented YAML, server-side encrypted.
    let config =
        keelson::spec::parse::parse_cluster(&sb.object("demo.k8s.local/config"), "config").unwrap();
    assert_eq!(config.spec.network_cidr.to_string(), "172.20.0.0/16");
    assert_eq!(
        config.spec.config_base.as_deref(),
        Some(format!("s3://{}/demo.k8s.local", sb.bucket).as_str())
    );
    let cidrs: Vec<String> = config
        .spec
        .subnets
        .iter()
        .map(|s| format!("{} {}", s.name, s.cidr.unwrap()))
        .collect();
    assert_eq!(
        cidrs,
        [
            "us-east-1a 172.20.64.0/18",
            "us-east-1b 172.20.128.0/18",
            "us-east-1c 172.20.192.0/18",
            "utility-us-east-1a 172.20.0.0/21",
            "utility-us-east-1b 172.20.8.0/21",
            "utility-us-east-1c 172.20.16.0/21"
        ]
    );
    assert_eq!(
        sb.object(&format!(
            "demo.k8s.local/pki/ssh/public/admin/{fingerprint}"
        ))
        .trim(),
        ED25519
    );
    let client = s3();
    let sse = block_on(async {
        client
            .head_object()
            .bucket(&sb.bucket)
            .key("demo.k8s.local/config")
            .send()
            .await
            .unwrap()
    });
    assert_eq!(
        sse.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );

    // get ig -o json lists the seven groups.
    let out = sb.ok(&["get", "ig", "--name", "demo.k8s.local", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "bastions",
            "master-us-east-1a",
            "master-us-east-1b",
            "master-us-east-1c",
            "nodes-us-east-1a",
            "nodes-us-east-1b",
            "nodes-us-east-1c"
        ]
    );

    let table = sb.ok(&["get", "ig", "--name", "demo.k8s.local"]).stdout;
    assert!(table.starts_with("NAME "), "{table}");
    assert!(
        table.contains("nodes-us-east-1b   Node     t3.medium    1    1    us-east-1b"),
        "{table}"
    );
    let clusters = sb.ok(&["get", "clusters"]).stdout;
    assert_eq!(
        clusters,
        "NAME            CLOUD  ZONES\ndemo.k8s.local  aws    us-east-1a,us-east-1b,us-east-1c\n"
    );
    // The positional name and KEELSON_CLUSTER_NAME both select the cluster.
    let mut cmd = sb.command(&["get", "ig", "bastions", "--state", &sb.state()]);
    cmd.env("KEELSON_CLUSTER_NAME", "demo.k8s.local");
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 2);
}

#[test]
fn dry_run_prints_the_specs_and_writes_nothing() {
    let sb = Sandbox::new("dry-run");
    let key = sb.path("admin.pub");
    // The state store need not exist for a dry run: it is only named in configBase.
    let r = sb.run(&[
        "create",
        "cluster",
        "demo.k8s.local",
        "--state",
        "s3://snapshot-bucket",
        "--zones",
        "us-east-1a,us-east-1b,us-east-1c",
        "--topology",
        "private",
        "--bastion",
        "--master-count",
        "3",
        "--node-count",
        "3",
        "--ssh-public-key",
        key.to_str().unwrap(),
        "--dry-run",
        "-o",
        "yaml",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    insta::assert_snapshot!("dry_run_private_3_zones", r.stdout);
    let json = sb.run(&[
        "create",
        "cluster",
        "small.k8s.local",
        "--zones",
        "eu-west-1a",
        "--dry-run",
        "-o",
        "json",
    ]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    insta::assert_snapshot!("dry_run_public_1_zone_json", json.stdout);
    assert!(sb.keys().is_empty());
}

#[test]
fn the_kops_state_store_variable_is_a_fallback() {
    let sb = Sandbox::new("kops-env");
    let mut cmd = sb.command(&[
        "create",
        "cluster",
        "env.k8s.local",
        "--zones",
        "us-east-1a",
    ]);
    cmd.env("KOPS_STATE_STORE", sb.state());
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no SSH public key"), "{}", r.stderr);
    // KEELSON_STATE_STORE wins over KOPS_STATE_STORE.
    let mut cmd = sb.command(&["get", "clusters"]);
    cmd.env("KOPS_STATE_STORE", "s3://no-such-bucket-here")
        .env("KEELSON_STATE_STORE", sb.state());
    assert_eq!(sb.run_cmd(cmd).stdout.lines().count(), 2);
}

#[test]
fn a_file_state_store_has_the_same_layout() {
    let sb = Sandbox::new("file-store");
    let state = format!("file://{}", sb.path("state").display());
    let key = sb.path("admin.pub");
    let r = sb.run(&[
        "create",
        "cluster",
        "f.k8s.local",
        "--state",
        &state,
        "--zones",
        "us-east-1a",
        "--ssh-public-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let root = sb.path("state/f.k8s.local");
    assert!(root.join("config").is_file());
    assert!(root.join("instancegroup/master-us-east-1a").is_file());
    assert!(root.join("instancegroup/nodes-us-east-1a").is_file());
    assert_eq!(
        std::fs::read_dir(root.join("pki/ssh/public/admin"))
            .unwrap()
            .count(),
        1
    );
    assert!(!root.join("lock").exists());
    let r = sb.run(&[
        "get",
        "ig",
        "--name",
        "f.k8s.local",
        "--state",
        &state,
        "-o",
        "yaml",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.matches("kind: InstanceGroup").count(), 2);
}

#[test]
fn existing_vpc_and_subnets_are_read_from_aws() {
    let sb = Sandbox::new("existing-vpc");
    let ec2 = ec2();
    let (vpc, subnet) = block_on(async {
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.40.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc
            .unwrap()
            .vpc_id
            .unwrap();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.40.3.0/24")
            .availability_zone("us-east-1b")
            .send()
            .await
            .unwrap()
            .subnet
            .unwrap()
            .subnet_id
            .unwrap();
        (vpc, subnet)
    });
    let r = sb.run(&[
        "create",
        "cluster",
        "shared.k8s.local",
        "--zones",
        "us-east-1b",
        "--network-id",
        &vpc,
        "--subnets",
        &subnet,
        "--dry-run",
        "-o",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let spec = &v["items"][0]["spec"];
    assert_eq!(spec["networkCIDR"], "10.40.0.0/16");
    assert_eq!(spec["networkID"], vpc.as_str());
    assert_eq!(spec["subnets"][0]["id"], subnet.as_str());
    assert_eq!(spec["subnets"][0]["cidr"], "10.40.3.0/24");
    // A subnet in another zone than --zones is refused, naming both.
    let r = sb.run(&[
        "create",
        "cluster",
        "shared.k8s.local",
        "--zones",
        "us-east-1a",
        "--network-id",
        &vpc,
        "--subnets",
        &subnet,
        "--dry-run",
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!(
            "--subnets: {subnet} is in zone us-east-1b, which is not in --zones"
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn create_instancegroup_adds_a_validated_group() {
    let sb = Sandbox::new("create-ig");
    sb.create_demo("ig.k8s.local");
    sb.ok(&[
        "create",
        "ig",
        "gpu",
        "--name",
        "ig.k8s.local",
        "--subnet",
        "us-east-1a,us-east-1b",
        "--machine-type",
        "g5.xlarge",
        "--max-size",
        "4",
    ]);
    let g = keelson::spec::parse::parse_instance_group(
        &sb.object("ig.k8s.local/instancegroup/gpu"),
        "gpu",
    )
    .unwrap();
    assert_eq!(
        (
            g.spec.machine_type.as_str(),
            g.spec.min_size,
            g.spec.max_size
        ),
        ("g5.xlarge", 2, 4)
    );
    // A second time: refused, nothing changed.
    let before = sb.keys();
    let r = sb.run(&[
        "create",
        "ig",
        "gpu",
        "--name",
        "ig.k8s.local",
        "--subnet",
        "us-east-1a",
        "--state",
        &sb.state(),
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("instance group \"gpu\" already exists"),
        "{}",
        r.stderr
    );
    // A node group in a utility subnet is refused by validation.
    let r = sb.run(&[
        "create",
        "ig",
        "edge",
        "--name",
        "ig.k8s.local",
        "--subnet",
        "utility-us-east-1a",
        "--state",
        &sb.state(),
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("spec.subnets[0]: utility-us-east-1a is a Utility subnet; Node groups belong in Private subnets"), "{}", r.stderr);
    assert_eq!(sb.keys(), before);
}

#[test]
fn version_help_and_completion() {
    let sb = Sandbox::new("version");
    let v = sb.run(&["version"]);
    assert_eq!(v.stdout, format!("keelson {}\n", env!("CARGO_PKG_VERSION")));
    let c = sb.run(&["completion", "bash"]);
    assert_eq!(c.code, 0);
    assert!(
        c.stdout.contains("_keelson()"),
        "a bash completion function"
    );
    let h = sb.run(&["--help"]);
    insta::assert_snapshot!("help", h.stdout);
    // rolling-update (issue 7) parses now; without a state store it is an error, not a usage error.
    let u = sb.run(&["rolling-update", "cluster", "x"]);
    assert_eq!(u.code, 1, "{}", u.stderr);
}

/// A cluster named in DNS whose Route53 zone does not exist is refused before
/// anything is written or built (it used to be saved with a warning, and then
/// neither `update` nor `delete` could get past the zone).
#[test]
fn a_dns_name_without_its_zone_is_refused_and_nothing_is_written() {
    let sb = Sandbox::new("create-nozone");
    let domain = format!("nozone{}.test", std::process::id());
    let name = format!("dns.{domain}");
    for extra in [&[][..], &["--yes"][..]] {
        let mut args = vec![
            "create",
            "cluster",
            &name,
            "--image",
            "ami-0123456789abcdef0",
            "--zones",
            "us-east-1a",
            "--state",
        ];
        let state = sb.state();
        args.push(&state);
        args.extend(extra);
        let r = sb.run(&args);
        assert_eq!(r.code, 1, "{extra:?}: {}\n{}", r.stdout, r.stderr);
        let want = format!(
            "--dns-zone: {domain} is not a public Route53 hosted zone of this account; create it first (aws route53 create-hosted-zone --name {domain}"
        );
        assert!(r.stderr.contains(&want), "{want}\nnot in:\n{}", r.stderr);
        assert!(r.stderr.contains(".k8s.local"), "{}", r.stderr);
        assert_eq!(
            sb.keys(),
            Vec::<String>::new(),
            "{extra:?}: nothing written"
        );
        assert_eq!(
            block_on(
                ec2()
                    .describe_vpcs()
                    .filters(
                        aws_sdk_ec2::types::Filter::builder()
                            .name("tag-key")
                            .values(format!("kubernetes.io/cluster/{name}"))
                            .build()
                    )
                    .send()
            )
            .unwrap()
            .vpcs()
            .len(),
            0,
            "{extra:?}: nothing built"
        );
    }
    // The same request with the zone in place is accepted.
    let r53 = aws_sdk_route53::Client::new(sdk_config());
    block_on(
        r53.create_hosted_zone()
            .name(&domain)
            .caller_reference(&domain)
            .send(),
    )
    .unwrap();
    sb.ok(&[
        "create",
        "cluster",
        &name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
    ]);
    assert!(sb.keys().contains(&format!("{name}/config")));
}

/// Machine types are checked against the region's offerings per zone and the
/// image's architecture: at create, at create instancegroup, and by an update
/// that would make launch templates (a type edited in), before anything is
/// built. A misspelled type gets close names.
#[test]
fn machine_types_are_checked_against_the_offerings_and_the_image() {
    let sb = Sandbox::new("create-types");
    let name = sb.cluster("types");
    let state = sb.state();
    let create = |extra: &[&str]| {
        let mut args = vec![
            "create",
            "cluster",
            name.as_str(),
            "--zones",
            "us-east-1a",
            "--state",
            &state,
        ];
        args.extend(extra);
        sb.run(&args)
    };
    let r = create(&["--image", "ami-0123456789abcdef0", "--node-size", "t3.larg"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let want = "InstanceGroup nodes-us-east-1a spec.machineType: t3.larg is not offered in us-east-1a; did you mean t3.large";
    assert!(r.stderr.contains(want), "{want}\nnot in:\n{}", r.stderr);
    assert_eq!(sb.keys(), Vec::<String>::new(), "nothing written");
    // An x86_64 image (one the emulator knows) on an arm64 type.
    let r = create(&["--image", "ami-1e749f67", "--master-size", "m6g.large"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let want = "spec.machineType: m6g.large runs arm64, but the image ami-1e749f67 (ami-1e749f67) is x86_64; use a x86_64 instance type, or an image for arm64 (spec.image)";
    assert!(r.stderr.contains(want), "{want}\nnot in:\n{}", r.stderr);
    assert_eq!(sb.keys(), Vec::<String>::new(), "nothing written");

    let r = create(&["--image", "ami-0123456789abcdef0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sb.run(&[
        "create",
        "ig",
        "big",
        "--name",
        &name,
        "--subnet",
        "us-east-1a",
        "--machine-type",
        "m5.xlarg",
        "--state",
        &state,
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("InstanceGroup big spec.machineType: m5.xlarg is not offered in us-east-1a; did you mean m5.xlarge"),
        "{}",
        r.stderr
    );
    assert!(!sb.keys().contains(&format!("{name}/instancegroup/big")));

    // Edited in, it stops the update before anything is built.
    sb.edit_group(
        &name,
        "nodes-us-east-1a",
        "s/machineType: .*/machineType: t3.larg/",
    );
    for yes in [false, true] {
        let mut args = vec!["update", "cluster", name.as_str(), "--state", &state];
        if yes {
            args.push("--yes");
        }
        let r = sb.run(&args);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stderr.contains(
                "InstanceGroup nodes-us-east-1a spec.machineType: t3.larg is not offered in us-east-1a"
            ),
            "{}",
            r.stderr
        );
    }
    assert!(
        block_on(
            ec2()
                .describe_vpcs()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("tag-key")
                        .values(format!("kubernetes.io/cluster/{name}"))
                        .build()
                )
                .send()
        )
        .unwrap()
        .vpcs()
        .is_empty(),
        "nothing built"
    );
}
