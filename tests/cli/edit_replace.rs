//! edit and replace: round trips through $EDITOR, files and stdin.

use std::io::Write;
use std::process::Stdio;

use crate::harness::*;

#[test]
fn edit_saves_a_valid_change_and_reports_no_change() {
    let sb = Sandbox::new("edit");
    sb.create_demo("edit.k8s.local");
    let state = sb.state();
    let key = "edit.k8s.local/instancegroup/nodes-us-east-1a";
    let original = sb.object(key);

    // An editor that saves without changes: nothing is written.
    let mut cmd = sb.command(&[
        "edit",
        "ig",
        "nodes-us-east-1a",
        "--name",
        "edit.k8s.local",
        "--state",
        &state,
    ]);
    cmd.env("EDITOR", "true");
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no changes made"), "{}", r.stderr);
    assert_eq!(sb.object(key), original);

    // A real change is saved.
    let editor = script(
        &sb.path("bigger.sh"),
        "sed -i 's/maxSize: 1/maxSize: 5/' \"$1\"",
    );
    let mut cmd = sb.command(&[
        "edit",
        "ig",
        "nodes-us-east-1a",
        "--name",
        "edit.k8s.local",
        "--state",
        &state,
    ]);
    cmd.env("EDITOR", &editor);
    assert_eq!(sb.run_cmd(cmd).code, 0);
    let out = sb
        .ok(&[
            "get",
            "ig",
            "nodes-us-east-1a",
            "--name",
            "edit.k8s.local",
            "-o",
            "yaml",
        ])
        .stdout;
    assert!(out.contains("maxSize: 5"), "{out}");

    // The cluster itself, with the positional name.
    let editor = script(
        &sb.path("access.sh"),
        "sed -i 's|^  kubernetesApiAccess:|  kubernetesApiAccess:\\n  - 203.0.113.0/24|' \"$1\"",
    );
    let mut cmd = sb.command(&["edit", "cluster", "edit.k8s.local", "--state", &state]);
    cmd.env("EDITOR", &editor);
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        sb.object("edit.k8s.local/config")
            .contains("203.0.113.0/24")
    );
}

#[test]
fn an_invalid_edit_reopens_the_editor_with_the_error() {
    let sb = Sandbox::new("edit-reopen");
    sb.create_demo("reopen.k8s.local");
    let state = sb.state();
    // First pass: an invalid maxSize. Second pass: the error must be on top; fix it.
    let editor = script(
        &sb.path("twice.sh"),
        &format!(
            "n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}\n\
             if [ $n = 1 ]; then sed -i 's/maxSize: 1/maxSize: 0/' \"$1\"; exit 0; fi\n\
             cp \"$1\" {seen}\n\
             sed -i 's/maxSize: 0/maxSize: 2/' \"$1\"",
            count = sb.path("count").display(),
            seen = sb.path("seen.yaml").display()
        ),
    );
    let mut cmd = sb.command(&[
        "edit",
        "ig",
        "nodes-us-east-1b",
        "--name",
        "reopen.k8s.local",
        "--state",
        &state,
    ]);
    cmd.env("EDITOR", &editor);
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = std::fs::read_to_string(sb.path("seen.yaml")).unwrap();
    assert!(
        seen.starts_with("# Please edit the object below."),
        "{seen}"
    );
    assert!(seen.contains("# invalid cluster specification:"), "{seen}");
    assert!(
        seen.contains(
            "#   - InstanceGroup nodes-us-east-1b spec.minSize: 1 is greater than spec.maxSize 0"
        ),
        "{seen}"
    );
    assert!(
        seen.contains("\n  maxSize: 0\n"),
        "the user's edit is kept: {seen}"
    );
    assert!(
        sb.object("reopen.k8s.local/instancegroup/nodes-us-east-1b")
            .contains("maxSize: 2")
    );

    // Saving the same invalid text again aborts and writes nothing.
    let before = sb.object("reopen.k8s.local/config");
    let editor = script(
        &sb.path("bad.sh"),
        "sed -i 's/^  networkCIDR: .*/  networkCIDR: 10.0.0.0\\/8/' \"$1\"",
    );
    let mut cmd = sb.command(&["edit", "cluster", "reopen.k8s.local", "--state", &state]);
    cmd.env("EDITOR", &editor);
    let r = sb.run_cmd(cmd);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("saved unchanged with errors; nothing was written"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("spec.networkCIDR: 10.0.0.0/8"),
        "{}",
        r.stderr
    );
    assert_eq!(sb.object("reopen.k8s.local/config"), before);
}

#[test]
fn replace_round_trips_get_output_from_file_and_stdin() {
    let sb = Sandbox::new("replace");
    sb.create_demo("rep.k8s.local");
    let state = sb.state();
    // get -o yaml | edit | replace -f FILE
    let yaml = sb
        .ok(&[
            "get",
            "ig",
            "nodes-us-east-1c",
            "--name",
            "rep.k8s.local",
            "-o",
            "yaml",
        ])
        .stdout;
    std::fs::write(sb.path("ig.yaml"), yaml.replace("t3.medium", "m7i.large")).unwrap();
    let r = sb.ok(&["replace", "-f", "ig.yaml"]);
    assert!(
        r.stderr.contains("instancegroup/nodes-us-east-1c replaced"),
        "{}",
        r.stderr
    );
    assert!(
        sb.object("rep.k8s.local/instancegroup/nodes-us-east-1c")
            .contains("machineType: m7i.large")
    );
    // The same again: unchanged, nothing written.
    let r = sb.ok(&["replace", "-f", "ig.yaml"]);
    assert!(
        r.stderr
            .contains("instancegroup/nodes-us-east-1c unchanged"),
        "{}",
        r.stderr
    );

    // Cluster and a new group together from stdin; --force creates the group.
    let cluster = sb
        .ok(&["get", "cluster", "rep.k8s.local", "-o", "yaml"])
        .stdout;
    let new_group = yaml.replace("nodes-us-east-1c", "spot-us-east-1c");
    let input = format!(
        "{}{}",
        cluster.replace(
            "- 0.0.0.0/0\n  kubernetesApiAccess",
            "- 198.51.100.0/24\n  kubernetesApiAccess"
        ),
        new_group
    );
    let run_stdin = |force: bool| {
        let mut args = vec!["replace", "-f", "-", "--state", &state];
        if force {
            args.push("--force");
        }
        let mut child = sb
            .command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Run::from(child.wait_with_output().unwrap())
    };
    let r = run_stdin(false);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(
            "instance group spot-us-east-1c does not exist in cluster rep.k8s.local; pass --force"
        ),
        "{}",
        r.stderr
    );
    assert!(
        !sb.object("rep.k8s.local/config")
            .contains("198.51.100.0/24"),
        "nothing written on refusal"
    );
    let r = run_stdin(true);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("instancegroup/spot-us-east-1c created"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("cluster/rep.k8s.local replaced"),
        "{}",
        r.stderr
    );
    assert!(
        sb.object("rep.k8s.local/config")
            .contains("198.51.100.0/24")
    );
    assert!(
        sb.keys()
            .contains(&"rep.k8s.local/instancegroup/spot-us-east-1c".to_string())
    );
}
