//! The cluster lock: a second operator fails fast, naming the holder.

use crate::harness::*;

const LOCK: &str = "holder: alice@laptop\npid: 4242\ncommand: keelson edit cluster locked.k8s.local\nsince: 2026-11-22T01:00:00Z\n";

#[test]
fn a_held_lock_stops_every_mutating_command() {
    let sb = Sandbox::new("lock-held");
    sb.create_demo("locked.k8s.local");
    // Another operator's lock, as their keelson wrote it.
    sb.put("locked.k8s.local/lock", LOCK);
    std::fs::write(
        sb.path("ig.yaml"),
        sb.object("locked.k8s.local/instancegroup/nodes-us-east-1a")
            .replace("t3.medium", "t3.large"),
    )
    .unwrap();
    let editor = script(
        &sb.path("editor.sh"),
        "sed -i 's/t3.medium/t3.large/' \"$1\"",
    );
    let state = sb.state();
    let before: Vec<(String, String)> = sb
        .keys()
        .into_iter()
        .map(|k| (sb.object(&k), k))
        .map(|(v, k)| (k, v))
        .collect();
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "create",
            "cluster",
            "locked.k8s.local",
            "--zones",
            "us-east-1a",
        ],
        vec![
            "create",
            "ig",
            "extra",
            "--name",
            "locked.k8s.local",
            "--subnet",
            "us-east-1a",
        ],
        vec!["edit", "cluster", "locked.k8s.local"],
        vec![
            "edit",
            "ig",
            "nodes-us-east-1a",
            "--name",
            "locked.k8s.local",
        ],
        vec!["replace", "-f", "ig.yaml"],
        vec!["update", "cluster", "locked.k8s.local", "--yes"],
        vec!["delete", "cluster", "locked.k8s.local", "--yes"],
    ];
    for args in &commands {
        let mut cmd = sb.command(args);
        cmd.args(["--state", &state]).env("EDITOR", &editor);
        let r = sb.run_cmd(cmd);
        assert_ne!(r.code, 0, "{args:?} ran despite the lock");
        assert!(
            r.stderr.contains("cluster \"locked.k8s.local\" is locked by alice@laptop (pid 4242, `keelson edit cluster locked.k8s.local`) since 2026-11-22T01:00:00Z"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains("keelson unlock cluster locked.k8s.local --yes"),
            "{}",
            r.stderr
        );
    }
    let after: Vec<(String, String)> = sb
        .keys()
        .into_iter()
        .map(|k| (k.clone(), sb.object(&k)))
        .collect();
    assert_eq!(before, after, "nothing was written while locked");

    // unlock shows the holder and, without --yes, keeps the lock.
    let r = sb.ok(&["unlock", "cluster", "locked.k8s.local"]);
    assert!(
        r.stdout.contains("locked by alice@laptop (pid 4242"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("Must specify --yes"), "{}", r.stderr);
    assert!(sb.keys().contains(&"locked.k8s.local/lock".to_string()));
    sb.ok(&["unlock", "cluster", "locked.k8s.local", "--yes"]);
    assert!(!sb.keys().contains(&"locked.k8s.local/lock".to_string()));
    // And now the edit goes through, leaving no lock behind.
    let mut cmd = sb.command(&[
        "edit",
        "ig",
        "nodes-us-east-1a",
        "--name",
        "locked.k8s.local",
        "--state",
        &state,
    ]);
    cmd.env("EDITOR", &editor);
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        sb.object("locked.k8s.local/instancegroup/nodes-us-east-1a")
            .contains("machineType: t3.large")
    );
    assert!(!sb.keys().iter().any(|k| k.ends_with("/lock")));
}

#[test]
fn concurrent_creates_of_one_cluster_exactly_one_wins() {
    let sb = Sandbox::new("lock-race");
    let state = sb.state();
    // Eight processes race to create the same cluster. Without a lock, several
    // could pass the "does it exist" check and overwrite each other.
    let children: Vec<_> = (0..8)
        .map(|i| {
            let mut cmd = sb.command(&[
                "create",
                "cluster",
                "race.k8s.local",
                "--zones",
                "us-east-1a",
                "--node-count",
                &i.to_string(),
                "--state",
                &state,
            ]);
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().unwrap()))
        .collect();
    let winners: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.code == 0)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one create succeeds: {:?}",
        runs.iter().map(|r| &r.stderr).collect::<Vec<_>>()
    );
    for (i, r) in runs.iter().enumerate() {
        if r.code != 0 {
            assert!(
                r.stderr.contains("is locked by tester@") || r.stderr.contains("already exists"),
                "loser {i}: {}",
                r.stderr
            );
        }
    }
    // The stored spec is the winner's, whole: its node count.
    let winner = winners[0] as u32;
    let g = keelson::spec::parse::parse_instance_group(
        &sb.object("race.k8s.local/instancegroup/nodes-us-east-1a"),
        "g",
    )
    .unwrap();
    assert_eq!(g.spec.min_size, winner);
    assert!(
        !sb.keys().contains(&"race.k8s.local/lock".to_string()),
        "the lock is released"
    );
}

#[test]
fn the_lock_is_released_after_an_error() {
    let sb = Sandbox::new("lock-error");
    sb.create_demo("err.k8s.local");
    let r = sb.run(&[
        "create",
        "cluster",
        "err.k8s.local",
        "--zones",
        "us-east-1a",
        "--state",
        &sb.state(),
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert!(!sb.keys().iter().any(|k| k.ends_with("/lock")));
}

#[test]
fn of_two_concurrent_updates_exactly_one_proceeds() {
    let sb = Sandbox::new("lock-update");
    let name = sb.cluster("twoops");
    sb.ok(&[
        "create",
        "cluster",
        &name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a,us-east-1b",
        "--topology",
        "private",
    ]);
    let state = sb.state();
    let spawn = || {
        let mut cmd = sb.command(&["update", "cluster", &name, "--yes", "--state", &state]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let runs = [
        Run::from(a.wait_with_output().unwrap()),
        Run::from(b.wait_with_output().unwrap()),
    ];
    let winners = runs.iter().filter(|r| r.code == 0).count();
    assert_eq!(
        winners,
        1,
        "exactly one applies: {:?}",
        runs.iter().map(|r| &r.stderr).collect::<Vec<_>>()
    );
    let loser = runs.iter().find(|r| r.code != 0).unwrap();
    assert!(
        loser
            .stderr
            .contains(&format!("cluster \"{name}\" is locked by tester@")),
        "{}",
        loser.stderr
    );
    assert!(
        loser.stderr.contains("`keelson update cluster"),
        "the holder's command is named: {}",
        loser.stderr
    );
    // The winner's apply is whole: nothing left to do, and no lock left behind.
    let r = sb.run(&[
        "update",
        "cluster",
        &name,
        "--detailed-exitcode",
        "--state",
        &state,
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(!sb.keys().iter().any(|k| k.ends_with("/lock")));
}
