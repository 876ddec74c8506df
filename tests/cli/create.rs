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
        "secrets/node-bootstrap-token",
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
