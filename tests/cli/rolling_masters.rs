//! rolling-update of masters: refused unless etcd is whole as the node agent on
//! the masters last published it, and preceded by a backup the agent takes.
//!
//! These instances run no etcd (nothing boots on the emulator), so a stand-in
//! plays the agent's two outputs: the status `keelson node agent` writes each pass
//! (the library's own `membership::Report`, with a healthy member for each running
//! master: what the real agent reports of a whole etcd, as tests/cli/etcd.rs shows
//! against real etcd) and the pre-replacement backup it takes on request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keelson::node::membership::{MemberState, Report};

use crate::harness::*;

struct AgentStandIn {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AgentStandIn {
    fn start(sb: &Sandbox, cluster: &str) -> AgentStandIn {
        let stop = Arc::new(AtomicBool::new(false));
        let (bucket, cluster, s) = (sb.bucket.clone(), cluster.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                block_on(pass(&bucket, &cluster));
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        });
        AgentStandIn {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for AgentStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now() -> u64 {
    keelson::node::backup::now_secs()
}

async fn pass(bucket: &str, cluster: &str) {
    let masters = keelson::node::masters(&ec2(), cluster).await.unwrap();
    let report = Report {
        members: masters
            .iter()
            .map(|m| MemberState {
                id: m.instance_id.clone(),
                name: m.private_dns.clone(),
                peer_host: m.private_ip.clone(),
                healthy: true,
                instance_id: Some(m.instance_id.clone()),
            })
            .collect(),
        healthy: masters.len(),
        quorum: true,
        masters,
        removed: vec![],
        checked_at: now(),
    };
    let s3 = s3();
    s3.put_object()
        .bucket(bucket)
        .key(keelson::node::status_key(cluster))
        .body(serde_json::to_vec(&report).unwrap().into())
        .send()
        .await
        .unwrap();
    let asked = s3
        .get_object()
        .bucket(bucket)
        .key(keelson::rolling::etcd::request_key(cluster))
        .send()
        .await;
    if asked.is_ok() {
        let key = format!(
            "{}{}-pre-replacement.db",
            keelson::node::backup::prefix(cluster),
            keelson::node::backup::stamp(now())
        );
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(b"a snapshot".to_vec().into())
            .send()
            .await
            .unwrap();
        let _ = s3
            .delete_object()
            .bucket(bucket)
            .key(keelson::rolling::etcd::request_key(cluster))
            .send()
            .await;
    }
}

const FAST: &[&str] = &[
    "--bastion-interval",
    "0s",
    "--master-interval",
    "0s",
    "--node-interval",
    "0s",
    "--validate-count",
    "1",
    "--drain-timeout",
    "30s",
    "--yes",
];

fn master_ids(cluster: &str) -> Vec<String> {
    let mut ids: Vec<String> = block_on(keelson::node::masters(&ec2(), cluster))
        .unwrap()
        .into_iter()
        .map(|m| m.instance_id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn masters_roll_only_with_etcd_whole_and_after_a_backup() {
    let sb = Sandbox::new("rolling-masters");
    let name = sb.cluster("rollm");
    create_small(&sb, &name);
    sb.edit_group(
        &name,
        "master-us-east-1a",
        "s/machineType: .*/machineType: m6i.large/",
    );
    sb.ok(&["update", "cluster", &name, "--yes"]);
    let sim = sb.kube_sim(&name);
    let kc = sim.kubeconfig.to_str().unwrap().to_string();
    let before = master_ids(&name);
    assert_eq!(before.len(), 1);
    let state = sb.state();
    let roll = |extra: &[&str]| {
        let mut args = vec![
            "rolling-update",
            "cluster",
            &name,
            "--state",
            &state,
            "--kubeconfig",
            &kc,
            "--instance-group-roles",
            "master",
        ];
        args.extend(FAST);
        args.extend(extra);
        sb.run(&args)
    };

    // No agent has published etcd's state: the master is not touched.
    let r = roll(&["--validation-timeout", "3s"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("no master was replaced")
            && r.stderr.contains("published no etcd status"),
        "{}",
        r.stderr
    );
    assert_eq!(master_ids(&name), before);

    // With the agent's status, a whole etcd: backed up first, then replaced.
    let agent = AgentStandIn::start(&sb, &name);
    let r = roll(&["--validation-timeout", "60s"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("etcd backed up as"), "{}", r.stderr);
    let backups = sb.ok(&["get", "backups", &name]);
    assert!(
        backups.stdout.contains("pre-replacement"),
        "{}",
        backups.stdout
    );
    let after = master_ids(&name);
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "the master was replaced");
    drop(agent);
}

#[test]
fn a_stale_or_short_etcd_status_holds_the_masters() {
    let sb = Sandbox::new("rolling-masters-stale");
    let name = sb.cluster("rollms");
    create_small(&sb, &name);
    sb.edit_group(
        &name,
        "master-us-east-1a",
        "s/machineType: .*/machineType: m6i.large/",
    );
    sb.ok(&["update", "cluster", &name, "--yes"]);
    let sim = sb.kube_sim(&name);
    let kc = sim.kubeconfig.to_str().unwrap().to_string();
    let before = master_ids(&name);
    // What the agent wrote when one member was down, ten minutes ago.
    let masters = block_on(keelson::node::masters(&ec2(), &name)).unwrap();
    let report = Report {
        members: vec![MemberState {
            id: "1".into(),
            name: masters[0].private_dns.clone(),
            peer_host: masters[0].private_ip.clone(),
            healthy: false,
            instance_id: Some(masters[0].instance_id.clone()),
        }],
        healthy: 0,
        quorum: false,
        masters: masters.clone(),
        removed: vec![],
        checked_at: now(),
    };
    let key = keelson::node::status_key(&name);
    sb.put(&key, &serde_json::to_string(&report).unwrap());
    let state = sb.state();
    let mut args = vec![
        "rolling-update",
        "cluster",
        &name,
        "--state",
        &state,
        "--kubeconfig",
        &kc,
        "--validation-timeout",
        "3s",
    ];
    args.extend(FAST);
    let r = sb.run(&args);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("0 of 1 members healthy"), "{}", r.stderr);
    let stale = Report {
        checked_at: now() - 600,
        members: vec![MemberState {
            healthy: true,
            ..report.members[0].clone()
        }],
        healthy: 1,
        quorum: true,
        ..report
    };
    sb.put(&key, &serde_json::to_string(&stale).unwrap());
    let r = sb.run(&args);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("minutes old"), "{}", r.stderr);
    assert_eq!(master_ids(&name), before);
}
