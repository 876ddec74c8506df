//! etcd backups in the state store: `NAME/backups/etcd/<UTC time>-<reason>.db`,
//! each a full snapshot as `etcdctl snapshot save` writes it. Taken every
//! [`EVERY`] by the agent on the masters, and before each master replacement;
//! pruned by [`prune`]; restored by [`restore`] on a new master.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::NodeError;
use super::etcd::Client;
use crate::state::StateStore;

pub const EVERY: Duration = Duration::from_secs(15 * 60);
/// Every backup of the last day is kept, then the newest of each day for this many days.
pub const KEEP_DAILY_DAYS: u64 = 30;

pub fn prefix(cluster: &str) -> String {
    format!("{cluster}/backups/etcd/")
}

/// A stored backup, as its key names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Backup {
    /// The name to pass to a restore: `20261203T101500Z-scheduled`.
    pub name: String,
    pub key: String,
    /// Seconds since the Unix epoch.
    pub taken_at: u64,
    pub reason: String,
}

/// `20261203T101500Z`, which sorts as time does.
pub fn stamp(secs: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn parse_stamp(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let t = time::Time::from_hms(n(9..11)? as u8, n(11..13)? as u8, n(13..15)? as u8).ok()?;
    Some(date.with_time(t).assume_utc().unix_timestamp() as u64)
}

/// The backup a key names, if it names one.
pub fn parse(cluster: &str, key: &str) -> Option<Backup> {
    let name = key.strip_prefix(&prefix(cluster))?.strip_suffix(".db")?;
    let (stamp, reason) = name.split_once('-')?;
    Some(Backup {
        name: name.to_string(),
        key: key.to_string(),
        taken_at: parse_stamp(stamp)?,
        reason: reason.to_string(),
    })
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The cluster's backups, oldest first.
pub async fn list(store: &StateStore, cluster: &str) -> Result<Vec<Backup>, NodeError> {
    let mut all: Vec<Backup> = store
        .backend()
        .list(&prefix(cluster))
        .await?
        .iter()
        .filter_map(|k| parse(cluster, k))
        .collect();
    all.sort_by(|a, b| (a.taken_at, &a.name).cmp(&(b.taken_at, &b.name)));
    Ok(all)
}

/// The backups to delete at `now`: none of the last day, the newest of each day
/// for [`KEEP_DAILY_DAYS`], nothing newer than the newest kept; never the newest.
pub fn prune(backups: &[Backup], now: u64) -> Vec<Backup> {
    const DAY: u64 = 86_400;
    let newest = backups.iter().map(|b| b.taken_at).max();
    let mut newest_of_day = std::collections::BTreeMap::new();
    for b in backups {
        let day = b.taken_at / DAY;
        let e = newest_of_day.entry(day).or_insert(b.taken_at);
        *e = (*e).max(b.taken_at);
    }
    backups
        .iter()
        .filter(|b| {
            let age = now.saturating_sub(b.taken_at);
            let keep = Some(b.taken_at) == newest
                || age < DAY
                || (age < KEEP_DAILY_DAYS * DAY
                    && newest_of_day.get(&(b.taken_at / DAY)) == Some(&b.taken_at));
            !keep
        })
        .cloned()
        .collect()
}

/// Takes a snapshot through the first endpoint that gives one and stores it.
pub async fn save(
    client: &Client,
    endpoints: &[String],
    store: &StateStore,
    cluster: &str,
    reason: &str,
    now: u64,
) -> Result<Backup, NodeError> {
    let mut last = None;
    for e in endpoints {
        match client.snapshot(e).await {
            Ok(snapshot) => {
                let key = format!("{}{}-{reason}.db", prefix(cluster), stamp(now));
                store.backend().put(&key, snapshot).await?;
                return Ok(parse(cluster, &key).expect("a key made by save parses"));
            }
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or(NodeError::Etcd {
        endpoint: String::new(),
        message: "no etcd endpoint to take a snapshot from".into(),
    }))
}

/// Deletes what [`prune`] says; returns the names deleted.
pub async fn apply_retention(
    store: &StateStore,
    cluster: &str,
    now: u64,
) -> Result<Vec<String>, NodeError> {
    let doomed = prune(&list(store, cluster).await?, now);
    for b in &doomed {
        store.backend().delete(&b.key).await?;
    }
    Ok(doomed.into_iter().map(|b| b.name).collect())
}

/// The member a restore brings up: its name and peer URL, as kubeadm's etcd
/// static pod will start it (`--name=NODE`, `--initial-advertise-peer-urls`).
pub struct RestoreTarget<'a> {
    pub name: &'a str,
    pub peer_url: &'a str,
    pub data_dir: &'a Path,
}

/// Restores backup `name` into `target.data_dir`, a new single-member cluster that
/// keeps the data; the other masters then join it. The restore itself is
/// etcd's own (`etcdctl snapshot restore`, which checks the snapshot's hash),
/// run through the host seam.
pub async fn restore(
    store: &StateStore,
    cluster: &str,
    name: &str,
    target: &RestoreTarget<'_>,
    host: &dyn super::host::Host,
) -> Result<(), NodeError> {
    let key = format!("{}{name}.db", prefix(cluster));
    let Some(snapshot) = store.backend().get(&key).await? else {
        let known: Vec<String> = list(store, cluster)
            .await?
            .into_iter()
            .rev()
            .take(5)
            .map(|b| b.name)
            .collect();
        return Err(NodeError::NoBackup {
            cluster: cluster.to_string(),
            name: name.to_string(),
            known: known.join(", "),
        });
    };
    if target.data_dir.exists()
        && std::fs::read_dir(target.data_dir).is_ok_and(|mut d| d.next().is_some())
    {
        return Err(NodeError::DataDirInUse {
            path: target.data_dir.display().to_string(),
        });
    }
    let file = target
        .data_dir
        .with_file_name(format!(".keelson-restore-{name}.db"));
    std::fs::write(&file, &snapshot).map_err(|e| NodeError::Io {
        path: file.display().to_string(),
        message: e.to_string(),
    })?;
    let result = host.run(
        "etcdctl",
        &[
            "snapshot".into(),
            "restore".into(),
            file.display().to_string(),
            format!("--name={}", target.name),
            format!("--initial-cluster={}={}", target.name, target.peer_url),
            format!("--initial-advertise-peer-urls={}", target.peer_url),
            format!("--data-dir={}", target.data_dir.display()),
        ],
        &[("ETCDCTL_API", "3")],
    );
    let _ = std::fs::remove_file(&file);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(cluster: &str, secs: u64) -> Backup {
        parse(
            cluster,
            &format!("{}{}-scheduled.db", prefix(cluster), stamp(secs)),
        )
        .unwrap()
    }

    #[test]
    fn names_round_trip() {
        let x = b("c", 1_796_300_100);
        assert_eq!(x.taken_at, 1_796_300_100);
        assert_eq!(x.reason, "scheduled");
        assert!(x.name.starts_with("2026"));
        assert_eq!(parse("c", "c/backups/etcd/junk.db"), None);
        assert_eq!(parse("c", "other/backups/etcd/x.db"), None);
    }

    #[test]
    fn retention_keeps_a_day_then_dailies() {
        let day = 86_400;
        let now = 100 * day;
        // Every 6 hours for 40 days.
        let all: Vec<Backup> = (0..160).map(|i| b("c", now - i * day / 4)).collect();
        let doomed = prune(&all, now);
        let kept: Vec<&Backup> = all.iter().filter(|x| !doomed.contains(x)).collect();
        // The last day's four (and the one exactly a day old, the newest of its
        // day), then one for each older day up to 30 days.
        assert!(kept.iter().filter(|x| now - x.taken_at < day).count() == 4);
        assert!(kept.iter().all(|x| now - x.taken_at < 30 * day + day));
        assert!(kept.len() >= 30 && kept.len() <= 35, "{}", kept.len());
        // The newest is never pruned, even when very old.
        let lone = [b("c", 10)];
        assert!(prune(&lone, now).is_empty());
    }
}
