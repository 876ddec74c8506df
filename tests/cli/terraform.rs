//! The terraform target, checked with real terraform (1.11) and the hashicorp/aws
//! provider (5.100) on the emulator: the reference cluster rendered by
//! `update cluster --target terraform --out DIR`, then `terraform init`,
//! `validate` and `apply`; keelson then plans nothing on that cloud (the two
//! agree on names, tags and attributes) and neither does `terraform plan`.
//! Then the hand-over: `delete cluster` refuses while terraform's resources
//! exist, and removes the state once `terraform destroy` took them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

/// The provider's local plugin directory (the one above `registry.terraform.io`),
/// so `terraform init` works offline; `KEELSON_TF_PLUGIN_DIR` overrides.
fn plugin_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("KEELSON_TF_PLUGIN_DIR") {
        return Some(PathBuf::from(d));
    }
    let d = PathBuf::from("/opt/tf-plugins");
    d.join("registry.terraform.io/hashicorp/aws")
        .is_dir()
        .then_some(d)
}

/// `terraform ARGS` in `dir`, with the emulator's credentials: the exit code
/// and stdout, then stderr.
fn terraform(dir: &Path, args: &[&str]) -> (i32, String) {
    let (code, stdout, stderr) = terraform_out(dir, args);
    (code, format!("{stdout}{stderr}"))
}

fn terraform_out(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let started = std::time::Instant::now();
    // No CLI configuration of the developer's (and no warning about none).
    std::fs::write(dir.join("none.tfrc"), "").unwrap();
    let mut cmd = Command::new("terraform");
    cmd.args(args)
        .current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", dir.join("none.tfrc"));
    for (k, v) in aws_env() {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run terraform");
    eprintln!("terraform {} took {:?}", args[0], started.elapsed());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn endpoint() -> String {
    aws_env()
        .iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .map(|(_, v)| v.clone())
        .expect("the emulator's endpoint")
}

/// The provider pointed at the emulator, in an override file terraform merges
/// into the rendered `provider "aws"` block (the rendered files stay as a user
/// gets them). The account id is requested (`skip_requesting_account_id`
/// false): rules that name another group carry it, and diff without it.
fn emulator_override(dir: &Path) {
    let e = endpoint();
    let services = [
        "autoscaling",
        "ec2",
        "elb",
        "elbv2",
        "iam",
        "route53",
        "s3",
        "sts",
    ];
    let endpoints: serde_json::Map<String, serde_json::Value> = services
        .iter()
        .map(|s| (s.to_string(), serde_json::Value::String(e.clone())))
        .collect();
    let o = serde_json::json!({
        "provider": { "aws": [{
            "access_key": "testing",
            "secret_key": "testing",
            "skip_credentials_validation": true,
            "skip_metadata_api_check": true,
            "skip_requesting_account_id": false,
            "s3_use_path_style": true,
            "endpoints": [endpoints],
        }]}
    });
    std::fs::write(
        dir.join("emulator_override.tf.json"),
        serde_json::to_string_pretty(&o).unwrap(),
    )
    .unwrap();
}

#[test]
fn terraform_applies_what_keelson_would_and_both_agree() {
    let Some(plugins) = plugin_dir() else {
        panic!(
            "the hashicorp/aws provider is not in /opt/tf-plugins; set KEELSON_TF_PLUGIN_DIR to its local plugin directory"
        );
    };
    let sb = Sandbox::new("terraform");
    let name = sb.cluster("tf");
    // The reference cluster (as `Sandbox::create_demo`), on an image the
    // emulator knows.
    let key = sb.path("admin.pub");
    sb.ok(&[
        "create",
        "cluster",
        &name,
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
        "--ssh-public-key",
        key.to_str().unwrap(),
    ]);
    let dir = sb.path("tf");
    let d = dir.to_str().unwrap();

    // Bad input first: nothing is written.
    let r = sb.run(&[
        "update",
        "cluster",
        &name,
        "--target",
        "terraform",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("--target terraform needs --out DIR"),
        "{}",
        r.stderr
    );
    assert!(!sb.keys().iter().any(|k| k.ends_with("/target")));

    let started = std::time::Instant::now();
    let r = sb.ok(&[
        "update",
        "cluster",
        &name,
        "--target",
        "terraform",
        "--out",
        d,
    ]);
    assert!(r.stderr.contains("Next: cd"), "{}", r.stderr);
    let main: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("kubernetes.tf.json")).unwrap())
            .unwrap();
    assert!(dir.join("data").read_dir().unwrap().count() >= 9);
    // The state store holds what `update --yes` writes, and the marker.
    let keys = sb.keys();
    for want in ["/target", "/addons/bootstrap-channel.yaml", "/pki/private/"] {
        assert!(
            keys.iter().any(|k| k.contains(want)),
            "no {want} in {keys:?}"
        );
    }
    assert_eq!(sb.object(&format!("{name}/target")), "terraform");
    // Nothing in AWS yet: keelson made no cloud resource.
    assert!(cluster_vpc_absent(&name));

    emulator_override(&dir);
    let plugin_arg = format!("-plugin-dir={}", plugins.display());
    let (code, out) = terraform(&dir, &["init", "-input=false", &plugin_arg]);
    assert_eq!(code, 0, "terraform init:\n{out}");
    let (code, out) = terraform(&dir, &["validate", "-no-color"]);
    assert_eq!(code, 0, "terraform validate:\n{out}");
    let (code, out) = terraform(
        &dir,
        &[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-parallelism=16",
        ],
    );
    assert_eq!(code, 0, "terraform apply:\n{out}");
    let mut slow: Vec<(u64, &str)> = out
        .lines()
        .filter_map(|l| {
            let (_, t) = l.split_once("complete after ")?;
            let secs = t.split_whitespace().next()?;
            let (m, s) = secs.split_once('m').map_or(("0", secs), |(m, s)| (m, s));
            Some((
                m.parse::<u64>().ok()? * 60 + s.trim_end_matches('s').parse::<u64>().ok()?,
                l,
            ))
        })
        .collect();
    slow.sort();
    for (_, l) in slow.iter().rev().take(12) {
        eprintln!("first apply: {l}");
    }
    // The emulator drops the tags DHCP options are created with, and copies a
    // launch template's tags into its first version; on AWS both are as asked
    // (CreateDhcpOptions and CreateLaunchTemplate take TagSpecifications, EC2 API
    // reference), so the first apply converges there. Here a second apply
    // re-tags what the emulator dropped (docs/terraform.md).
    let (code, out) = terraform(
        &dir,
        &[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-parallelism=16",
        ],
    );
    assert_eq!(code, 0, "terraform apply (second):\n{out}");
    for l in out
        .lines()
        .filter(|l| l.contains("Modifications complete") || l.starts_with("Apply complete"))
    {
        eprintln!("second apply: {l}");
    }
    eprintln!(
        "rendered and applied by terraform in {:?}",
        started.elapsed()
    );

    // keelson's direct target sees exactly its model in what terraform made.
    let r = sb.run(&[
        "update",
        "cluster",
        &name,
        "--detailed-exitcode",
        "--state",
        &sb.state(),
    ]);
    assert_eq!(
        r.code, 0,
        "keelson plans changes on terraform's cloud:\n{}\n{}",
        r.stdout, r.stderr
    );
    let (code, out) = terraform(
        &dir,
        &["plan", "-detailed-exitcode", "-input=false", "-no-color"],
    );
    assert_eq!(code, 0, "terraform plan is not empty:\n{out}");
    let outputs = main["output"].as_object().unwrap();
    for k in [
        "cluster_name",
        "region",
        "vpc_id",
        "subnet_ids",
        "masters_role_arn",
        "kube_api_endpoint",
    ] {
        assert!(outputs.contains_key(k), "no output {k}");
    }
    let (code, out, err) = terraform_out(&dir, &["output", "-json"]);
    assert_eq!(code, 0, "{out}{err}");
    let applied: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(applied["cluster_name"]["value"], name.as_str());
    assert_eq!(applied["vpc_id"]["value"], cluster_vpc(&name).as_str());

    // The hand-over: keelson does not delete what terraform manages.
    let r = sb.run(&["delete", "cluster", &name, "--yes", "--state", &sb.state()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("run `terraform destroy`"), "{}", r.stderr);
    assert!(sb.keys().iter().any(|k| k.ends_with("/config")));
    let (code, out) = terraform(
        &dir,
        &[
            "destroy",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-parallelism=16",
        ],
    );
    assert_eq!(code, 0, "terraform destroy:\n{out}");
    sb.ok(&["delete", "cluster", &name, "--yes"]);
    assert!(
        sb.keys()
            .iter()
            .all(|k| !k.starts_with(&format!("{name}/")))
    );
}

fn cluster_vpc_absent(name: &str) -> bool {
    let ec2 = ec2();
    let tag = format!("tag:kubernetes.io/cluster/{name}");
    block_on(async {
        ec2.describe_vpcs()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name(tag)
                    .values("owned")
                    .build(),
            )
            .send()
            .await
    })
    .unwrap()
    .vpcs()
    .is_empty()
}

/// `create cluster --target terraform --out DIR` writes the specs, then the
/// configuration, and no cloud resource; without `--out` nothing at all.
#[test]
fn create_cluster_renders_for_terraform() {
    let sb = Sandbox::new("terraform-create");
    let name = sb.cluster("tfc");
    let dir = sb.path("tf");
    let d = dir.to_str().unwrap();
    let state = sb.state();
    let create = |extra: &[&str]| {
        let mut args = vec![
            "create",
            "cluster",
            &name,
            "--image",
            "ami-0123456789abcdef0",
            "--zones",
            "us-east-1a",
            "--state",
            &state,
            "--target",
            "terraform",
        ];
        args.extend(extra);
        sb.run(&args)
    };
    let r = create(&[]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(r.stderr.contains("--out"), "{}", r.stderr);
    assert!(sb.keys().is_empty(), "{:?}", sb.keys());

    let r = create(&["--out", d]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let main: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("kubernetes.tf.json")).unwrap())
            .unwrap();
    assert_eq!(main["output"]["cluster_name"]["value"], name.as_str());
    assert!(main["resource"]["aws_autoscaling_group"].is_object());
    assert_eq!(sb.object(&format!("{name}/target")), "terraform");
    assert!(sb.keys().iter().any(|k| k.ends_with("/config")));
    assert!(cluster_vpc_absent(&name));
}
