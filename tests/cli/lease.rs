//! The control-plane leader lease on the emulator's S3: conditional writes
//! (`If-None-Match: *` to claim, `If-Match` to renew or take over). moto serves
//! requests one at a time, so these races show the rule, not S3's own atomicity
//! under true concurrency, which AWS documents for conditional writes.

use keelson::node::lease::{Outcome, TTL_SECS, acquire, key, mark_initialized};
use keelson::state::StateStore;

use crate::harness::*;

fn store(sb: &Sandbox) -> StateStore {
    block_on(StateStore::open(&sb.state(), sdk_config(), true)).unwrap()
}

#[test]
fn one_master_wins_a_stale_claim_is_taken_over_a_live_one_is_not() {
    let sb = Sandbox::new("lease");
    let store = store(&sb);
    let cluster = "lease.k8s.local";
    let now = 1_800_000_000;

    // Eight masters claim an empty lease at once: exactly one wins.
    let outcomes: Vec<Outcome> = block_on(async {
        let tries = (0..8).map(|i| {
            let store = store.clone();
            async move { acquire(&store, cluster, &format!("i-{i}"), now, false, false).await }
        });
        futures_join_all(tries).await
    });
    let leaders = outcomes.iter().filter(|o| **o == Outcome::Leader).count();
    assert_eq!(leaders, 1, "{outcomes:?}");
    let lease: serde_json::Value = serde_json::from_str(&sb.object(&key(cluster))).unwrap();
    let holder = lease["holder"].as_str().unwrap().to_string();

    // A live claim is followed, an expired one taken over, but not while an API answers.
    let other = if holder == "i-0" { "i-1" } else { "i-0" };
    let live = block_on(acquire(&store, cluster, other, now + 10, false, false)).unwrap();
    assert_eq!(
        live,
        Outcome::Follower {
            holder: holder.clone()
        }
    );
    let expired = now + TTL_SECS + 1;
    let api_up = block_on(acquire(&store, cluster, other, expired, true, false)).unwrap();
    assert!(matches!(api_up, Outcome::Follower { .. }), "{api_up:?}");
    let took = block_on(acquire(&store, cluster, other, expired, false, false)).unwrap();
    assert_eq!(took, Outcome::Leader);
    // The old holder cannot mark the cluster initialised any more; the new one can.
    assert!(!block_on(mark_initialized(&store, cluster, &holder, expired)).unwrap());
    assert!(block_on(mark_initialized(&store, cluster, other, expired)).unwrap());
    let lease: serde_json::Value = serde_json::from_str(&sb.object(&key(cluster))).unwrap();
    assert_eq!(lease["initialized"], true);
    assert_eq!(lease["holder"], other);
}

/// Runs the futures concurrently on the harness runtime.
async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = Result<T, keelson::node::NodeError>> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap().unwrap());
    }
    out
}

#[test]
fn restore_etcd_asks_the_next_masters_for_a_backup_that_exists() {
    let sb = Sandbox::new("restore-request");
    let name = &sb.cluster("restore");
    create_small(&sb, name);
    let request = format!("{name}/control-plane/restore");
    let state = sb.state();
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", "etcd", name.as_str(), "--state", &state];
        args.extend(extra);
        sb.run(&args)
    };
    // No backup yet: refused, nothing written.
    let r = restore(&["--yes"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("has no etcd backup"), "{}", r.stderr);
    assert!(!sb.keys().contains(&request));
    for b in [
        "20261203T090000Z-scheduled",
        "20261203T101500Z-pre-replacement",
    ] {
        sb.put(&format!("{name}/backups/etcd/{b}.db"), "snapshot");
    }
    // A preview names the newest and writes nothing.
    let r = restore(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("from backup 20261203T101500Z-pre-replacement"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("Must specify --yes"), "{}", r.stderr);
    assert!(!sb.keys().contains(&request));
    // An unknown name: refused with the ones there are.
    let r = restore(&["--backup", "2026-nope", "--yes"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("20261203T090000Z-scheduled"),
        "{}",
        r.stderr
    );
    assert!(!sb.keys().contains(&request));
    sb.ok(&[
        "restore",
        "etcd",
        name,
        "--backup",
        "20261203T090000Z-scheduled",
        "--yes",
    ]);
    let v: serde_json::Value = serde_json::from_str(&sb.object(&request)).unwrap();
    assert_eq!(v["backup"], "20261203T090000Z-scheduled");
    assert!(
        v["restoredAt"].is_null(),
        "pending until a master restores it"
    );
}
