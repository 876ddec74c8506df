//! Issue 17, the CLI: hints that work, kops' muscle memory, the day-2 verbs and
//! less noise, run as a kops user would.

use clap::Parser;
use keelson::cli::Cli;

use crate::harness::*;

/// Every `keelson ...` command in backticks in the source (the hints keelson
/// prints), with its placeholders filled in, parses with keelson's own parser.
#[test]
fn every_hint_in_the_source_parses() {
    let mut hints = Vec::new();
    let mut stack = vec![manifest_dir().join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, part) in text.split('`').enumerate() {
                    if i % 2 == 1 && part.starts_with("keelson ") && !part.contains('\n') {
                        hints.push((p.display().to_string(), part.to_string()));
                    }
                }
            }
        }
    }
    assert!(hints.len() > 10, "{hints:?}");
    let mut bad = Vec::new();
    for (file, hint) in &hints {
        let filled = hint
            .replace("{cluster}", "c.k8s.local")
            .replace("{name}", "c.k8s.local")
            .replace("{group}", "nodes")
            .replace("{}", "x");
        if filled.contains('{') || filled.contains("...") {
            continue; // a format argument we cannot fill, or an elision
        }
        let filled = filled.split('|').next().unwrap_or_default();
        if filled.split_whitespace().count() < 3 {
            continue; // a fragment (`keelson --state`), not a command
        }
        let words: Vec<&str> = filled
            .split_whitespace()
            .filter(|w| !w.starts_with('[') && !w.ends_with(']'))
            .collect();
        if let Err(e) = Cli::try_parse_from(&words) {
            bad.push(format!("{file}: `{hint}`: {}", e.kind()));
        }
    }
    assert!(
        bad.is_empty(),
        "hints that do not parse:\n{}",
        bad.join("\n")
    );
}

#[test]
fn kops_spellings_parse() {
    for args in [
        "keelson export kubecfg c --admin",
        "keelson export kubeconfig c --admin",
        "keelson export kubeconfig c --admin 2h",
        "keelson update cluster c -y",
        "keelson create cluster c --zones us-east-1a -y",
        "keelson delete cluster c -y",
        "keelson rolling-update cluster c -y",
        "keelson unlock cluster c -y",
        "keelson delete instancegroup nodes --name c -y",
        "keelson delete ig nodes --name c",
        "keelson create ig cp --role control-plane --subnet us-east-1a --name c",
        "keelson rolling-update cluster c --instance-group-roles ControlPlane,Node",
        "keelson get",
        "keelson get -o yaml",
        "keelson get all c",
        "keelson get instances c -o json",
        "keelson get secrets c",
        "keelson create -f cluster.yaml",
        "keelson toolbox dump c -o json",
    ] {
        let words: Vec<&str> = args.split_whitespace().collect();
        if let Err(e) = Cli::try_parse_from(&words) {
            panic!("{args}: {e}");
        }
    }
    for v in ["control-plane", "ControlPlane", "master"] {
        assert_eq!(
            <keelson::spec::Role as clap::ValueEnum>::from_str(v, true),
            Ok(keelson::spec::Role::Master)
        );
    }
}

#[test]
fn completion_into_a_closed_pipe_does_not_panic() {
    let sb = Sandbox::new("hb_completion");
    let mut cmd = sb.command(&["completion", "zsh"]);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer);
    let r = sb.run_cmd(cmd);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// create without --yes ends with the update hint; the versioning warning comes
/// at create and not again; -q silences it; KOPS_CLUSTER_NAME names the cluster;
/// `keelson get` alone lists clusters; control-plane is a role; get secrets,
/// get all, get instances, toolbox dump; delete instancegroup refuses the last
/// master group and then removes a node group, whose ASG the next update deletes.
#[test]
fn a_kops_users_first_hour() {
    let sb = Sandbox::new("hb_hour");
    let name = sb.cluster("hb-hour");
    let key = sb.path("admin.pub");
    let state = sb.state();
    let create = sb.ok(&[
        "create",
        "cluster",
        &name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
        "--master-count",
        "1",
        "--node-count",
        "1",
        "--ssh-public-key",
        key.to_str().unwrap(),
    ]);
    let hint = format!("keelson update cluster {name} --yes");
    assert!(create.stderr.contains(&hint), "{}", create.stderr);
    assert!(
        create.stderr.contains("is not versioned"),
        "{}",
        create.stderr
    );
    // Once per bucket: not on the next writes.
    let unlock = sb.run(&["unlock", "cluster", &name, "-y", "--state", &state]);
    assert!(!unlock.stderr.contains("versioned"), "{}", unlock.stderr);
    // The hints create printed parse.
    for line in create.stderr.lines() {
        if let Some(i) = line.find("keelson ") {
            let words: Vec<&str> = line[i..].split_whitespace().collect();
            Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }
    // -q hides warnings: a fresh bucket warns at create, not with -q.
    let quiet = Sandbox::new("hb_quiet");
    let r = quiet.ok(&[
        "create",
        "cluster",
        &name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
        "--ssh-public-key",
        key.to_str().unwrap(),
        "-q",
    ]);
    assert!(!r.stderr.contains("Warning"), "{}", r.stderr);

    let r = sb.ok(&["get"]);
    assert!(r.stdout.contains(&name), "{}", r.stdout);
    let mut cmd = sb.command(&["get", "ig", "--state", &state]);
    cmd.env("KOPS_CLUSTER_NAME", &name);
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("nodes-us-east-1a"), "{}", r.stdout);

    let r = sb.ok(&["get", "secrets", &name]);
    assert!(
        r.stdout.contains("PrivateKey") && r.stdout.contains("ca"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("BEGIN"), "no values: {}", r.stdout);
    let r = sb.ok(&["get", "all", &name]);
    assert!(
        r.stdout.contains("Instance Groups") && r.stdout.contains("master-us-east-1a"),
        "{}",
        r.stdout
    );
    let r = sb.ok(&["get", "instances", &name]);
    assert!(r.stderr.contains("no instances"), "{}", r.stderr);

    // control-plane is Master (refused here only for its missing etcd member).
    let r = sb.run(&[
        "create",
        "ig",
        "cp2",
        "--role",
        "control-plane",
        "--subnet",
        "us-east-1a",
        "--name",
        &name,
        "--dry-run",
        "--state",
        &state,
    ]);
    assert!(r.stderr.contains("cp2 is a master group"), "{}", r.stderr);

    // The last master group is refused; nothing changes.
    let before = sb.keys();
    let r = sb.run(&[
        "delete",
        "ig",
        "master-us-east-1a",
        "--name",
        &name,
        "-y",
        "--state",
        &state,
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("last control-plane group"),
        "{}",
        r.stderr
    );
    assert_eq!(sb.keys(), before);
    // A node group: listed, then removed with -y.
    let r = sb.ok(&["delete", "ig", "nodes-us-east-1a", "--name", &name]);
    assert!(
        r.stdout.contains(&format!("nodes-us-east-1a.{name}")),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("Must specify --yes"), "{}", r.stderr);
    let r = sb.ok(&["delete", "ig", "nodes-us-east-1a", "--name", &name, "-y"]);
    assert!(r.stderr.contains(&hint), "{}", r.stderr);
    assert!(
        !sb.keys()
            .iter()
            .any(|k| k.ends_with("instancegroup/nodes-us-east-1a"))
    );
    let r = sb.ok(&["get", "ig", "--name", &name]);
    assert!(!r.stdout.contains("nodes-us-east-1a"), "{}", r.stdout);

    let r = sb.ok(&["toolbox", "dump", &name, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["cluster"], name.as_str());
    assert!(!r.stdout.contains("PRIVATE KEY"));
}

/// create -f: a Cluster and its groups from one file; bad input names the
/// field and writes nothing.
#[test]
fn create_from_one_file() {
    let sb = Sandbox::new("hb_file");
    let name = sb.cluster("hb-file");
    let key = sb.path("admin.pub");
    let dry = sb.ok(&[
        "create",
        "cluster",
        &name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
        "--ssh-public-key",
        key.to_str().unwrap(),
        "--dry-run",
    ]);
    let file = sb.path("cluster.yaml");
    // Bad input first: a negative size, named with its field; nothing written.
    std::fs::write(&file, dry.stdout.replacen("maxSize: 1", "maxSize: -1", 1)).unwrap();
    let r = sb.run(&[
        "create",
        "-f",
        file.to_str().unwrap(),
        "--state",
        &sb.state(),
    ]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("maxSize"), "{}", r.stderr);
    assert!(sb.keys().is_empty(), "{:?}", sb.keys());
    std::fs::write(&file, &dry.stdout).unwrap();
    let r = sb.ok(&[
        "create",
        "-f",
        file.to_str().unwrap(),
        "--ssh-public-key",
        key.to_str().unwrap(),
    ]);
    assert!(
        r.stderr
            .contains(&format!("keelson update cluster {name} --yes")),
        "{}",
        r.stderr
    );
    let r = sb.ok(&["get", "ig", "--name", &name]);
    assert!(r.stdout.contains("master-us-east-1a"), "{}", r.stdout);
    // Again: the cluster exists.
    let r = sb.run(&[
        "create",
        "-f",
        file.to_str().unwrap(),
        "--state",
        &sb.state(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
}
