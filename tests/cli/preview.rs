//! The preview people read (issue 17): the reference cluster's first preview is
//! grouped by kind and bounded in length and width; `--yes` prints a line per
//! kind; -v and -vv print diagnostics and each AWS request, and never a secret.

use std::process::Command;

use crate::harness::*;

/// The reference cluster of the demo: 3 zones, private, a bastion, 3 masters, 3 nodes.
fn reference_args<'a>(name: &'a str, key: &'a str) -> Vec<&'a str> {
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
        "--networking",
        "flannel",
        "--ssh-public-key",
        key,
    ]
}

/// The command with stderr merged into stdout, in the order it was written.
fn merged(sb: &Sandbox, args: &[&str]) -> Run {
    let inner = sb.command(args);
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$0\" \"$@\" 2>&1"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    if let Some(d) = inner.get_current_dir() {
        cmd.current_dir(d);
    }
    sb.run_cmd(cmd)
}

#[test]
fn the_first_preview_of_the_reference_cluster_is_short_and_narrow() {
    let sb = Sandbox::new("preview-ref");
    let name = sb.cluster("ref");
    let key = sb.path("admin.pub");
    let state = sb.state();
    let mut args = reference_args(&name, key.to_str().unwrap());
    args.extend(["--state", &state]);
    // create: the preview, then the suggestions (as kops), then the next step.
    let c = merged(&sb, &args);
    assert_eq!(c.code, 0, "{}", c.stdout);
    let (plan_at, suggest_at, finally_at) = (
        c.stdout.find("Plan: ").expect("a preview"),
        c.stdout.find("Suggestions:").expect("suggestions"),
        c.stdout
            .find("Finally configure your cluster")
            .expect("next step"),
    );
    assert!(
        plan_at < suggest_at && suggest_at < finally_at,
        "{}",
        c.stdout
    );

    let r = sb.run(&["update", "cluster", &name, "--state", &state]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    // Measured on this cluster: 680 lines before the preview was grouped (the
    // longest 3,500 characters), 422 after.
    assert!(
        (250..=450).contains(&lines.len()),
        "{} lines:\n{}",
        lines.len(),
        r.stdout
    );
    // None wider than 160 characters, but the node agent's object key (a
    // SHA-256 in the name, and the local path it is uploaded from).
    let wide: Vec<&&str> = lines
        .iter()
        .filter(|l| l.len() > 160 && !l.contains("/agent/keelson-"))
        .collect();
    assert!(wide.is_empty(), "lines over 160 characters: {wide:#?}");
    // The tags every resource carries, once.
    let preview = &r.stdout[..r.stdout.find("Plan: ").unwrap()];
    assert_eq!(
        preview.matches("KubernetesCluster: ").count(),
        1,
        "{preview}"
    );
    assert!(!preview.contains("tags.Name:"), "{preview}");
    for expected in [
        "  + 6 subnet\n",
        "  + 18 security_group_rule\n",
        "    + masters tcp/443 from api-elb\n",
        "    + api-elb tcp/443 from 0.0.0.0/0\n",
        "        document:\n          Version: 2012-10-17\n          - Sid: CloudControllerDescribe\n",
        "  + 7 launch_template\n",
    ] {
        assert!(
            preview.contains(expected),
            "{expected:?} missing:\n{preview}"
        );
    }
    // The detail is all in -o json: every resource with every field.
    let j = sb.run(&["update", "cluster", &name, "-o", "json", "--state", &state]);
    let plan: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(
        preview.matches("\n    + ").count(),
        changes.len(),
        "one line per resource"
    );
    assert!(changes.iter().all(|c| c["after"]["tags"].is_null()
        || c["after"]["tags"]["KubernetesCluster"] == serde_json::json!(name)));
}

/// Values no output may carry: the credentials (unique to this test) and
/// what the PKI and user-data hold.
const SECRET: &str = "kt-secret-Zq8wXv3pLm0";
const TOKEN: &str = "kt-session-Rb7nYc2kTd4";

#[test]
fn verbose_shows_diagnostics_and_each_aws_request_but_no_secret() {
    let sb = Sandbox::new("verbose");
    let name = sb.cluster("vv");
    let key = sb.path("admin.pub");
    let state = sb.state();
    let mut cmd = sb.command(&[
        "create",
        "cluster",
        &name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
        "--topology",
        "private",
        "--ssh-public-key",
        key.to_str().unwrap(),
        "--state",
        &state,
        "--yes",
        "-vv",
    ]);
    cmd.env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", TOKEN);
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // --yes: a line per kind and action, not the whole preview.
    assert!(r.stdout.contains("  + 1 vpc\n"), "{}", r.stdout);
    for l in r.stdout.lines() {
        let t = l.trim_start();
        let (mark, rest) = t.split_once(' ').unwrap_or((t, ""));
        let is_kind = ["+", "~", "-", "-/+"].contains(&mark)
            && rest
                .split_once(' ')
                .is_some_and(|(n, kind)| n.parse::<usize>().is_ok() && !kind.contains(' '));
        assert!(
            is_kind
                || l.starts_with("Plan: ")
                || l.starts_with("Will write")
                || l.starts_with("  + "),
            "not a summary line: {l:?}\n{}",
            r.stdout
        );
    }
    assert!(!r.stdout.contains("Tags on every"), "{}", r.stdout);
    let plan_end = r.stdout.find("Plan: ").unwrap();
    assert!(
        !r.stdout[..plan_end].contains("        "),
        "fields: {}",
        r.stdout
    );
    // -vv: keelson's diagnostics, and each request with its service,
    // operation and time (the S3 state store's too).
    for expected in [
        "took the lock of",
        "discovery found 0 resources",
        "] aws EC2.DescribeVpcs ",
        "] aws EC2.CreateVpc ",
        "] aws S3.PutObject ",
        "] aws IAM.CreateRole ",
    ] {
        assert!(
            r.stderr.contains(expected),
            "{expected:?} missing:\n{}",
            r.stderr
        );
    }
    let timed = r
        .stderr
        .lines()
        .filter(|l| l.contains("] aws "))
        .all(|l| l.ends_with("ms") || l.ends_with('s') || l.ends_with("attempts)"));
    assert!(timed, "{}", r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    for secret in [
        SECRET,
        TOKEN,
        "BEGIN",
        "PRIVATE KEY",
        "Signature=",
        "x-amz-security-token",
        "#cloud-config",
        "SdkBody",
        "Extensions {",
    ] {
        assert!(!all.contains(secret), "{secret:?} printed:\n{all}");
    }

    // -v: the diagnostics without the requests.
    let v = sb.run(&["update", "cluster", &name, "-v", "--state", &state]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(v.stderr.contains("discovered 1 vpc in "), "{}", v.stderr);
    assert!(!v.stderr.contains("] aws "), "{}", v.stderr);
    // And none without -v.
    let quiet = sb.run(&["update", "cluster", &name, "--state", &state]);
    assert!(!quiet.stderr.contains("discovered"), "{}", quiet.stderr);
}
