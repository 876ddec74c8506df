//! The cluster lock (`NAME/lock`): kops has none, so two operators can corrupt a
//! cluster. Taking it is one exclusive create; a second operator fails at once and
//! is told who holds it. It is released when the work ends, on error and on Ctrl-C.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{StateError, StateStore, layout};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockInfo {
    /// `user@host`.
    pub holder: String,
    pub pid: u32,
    pub command: String,
    /// RFC 3339, UTC.
    pub since: String,
}

impl LockInfo {
    pub fn current(command: &str) -> LockInfo {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "unknown".into());
        LockInfo {
            holder: format!("{user}@{host}"),
            pid: std::process::id(),
            command: command.to_string(),
            since: rfc3339(SystemTime::now()),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} (pid {}, `{}`) since {}",
            self.holder, self.pid, self.command, self.since
        )
    }
}

/// A held lock. Release it with [`LockGuard::release`]; [`with_lock`] does so for you.
pub struct LockGuard {
    store: StateStore,
    cluster: String,
}

impl LockGuard {
    pub async fn release(self) -> Result<(), StateError> {
        self.store
            .backend()
            .delete(&layout::lock(&self.cluster))
            .await
    }
}

impl StateStore {
    /// Takes the cluster's lock, or fails naming who holds it.
    pub async fn lock(&self, cluster: &str, command: &str) -> Result<LockGuard, StateError> {
        let info = LockInfo::current(command);
        let body = serde_yaml::to_string(&info)
            .expect("lock info serializes")
            .into_bytes();
        // A lock released between our attempt and our read of it is simply tried
        // again; a few rounds settle any race.
        for _ in 0..5 {
            if self
                .backend()
                .put_if_absent(&layout::lock(cluster), body.clone())
                .await?
            {
                return Ok(LockGuard {
                    store: self.clone(),
                    cluster: cluster.to_string(),
                });
            }
            if let Some(holder) = self.read_lock(cluster).await? {
                return Err(StateError::Locked {
                    cluster: cluster.to_string(),
                    holder: holder.describe(),
                });
            }
        }
        Err(StateError::Locked {
            cluster: cluster.to_string(),
            holder: "operators that keep taking and releasing it".into(),
        })
    }

    pub async fn read_lock(&self, cluster: &str) -> Result<Option<LockInfo>, StateError> {
        let Some(bytes) = self.backend().get(&layout::lock(cluster)).await? else {
            return Ok(None);
        };
        Ok(Some(serde_yaml::from_slice(&bytes).unwrap_or_else(|_| {
            LockInfo {
                holder: "unknown (unreadable lock object)".into(),
                pid: 0,
                command: String::new(),
                since: String::new(),
            }
        })))
    }

    pub async fn remove_lock(&self, cluster: &str) -> Result<(), StateError> {
        self.backend().delete(&layout::lock(cluster)).await
    }
}

/// Runs `work` holding the cluster's lock, releasing it afterwards whatever the
/// outcome, including Ctrl-C and SIGTERM (which end the work early).
pub async fn with_lock<T, E, F>(
    store: &StateStore,
    cluster: &str,
    command: &str,
    work: F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: From<StateError>,
{
    let guard = store.lock(cluster, command).await?;
    tracing::debug!("took the lock of {cluster}");
    let result = tokio::select! {
        r = work => r,
        _ = interrupted() => Err(StateError::Interrupted.into()),
    };
    let released = guard.release().await;
    tracing::debug!("released the lock of {cluster}");
    match (result, released) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(e)) => Err(e.into()),
        // The work's error matters more than a failed release.
        (Err(e), _) => Err(e),
    }
}

async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// `2026-11-22T02:03:04Z`, without a date crate: days since the epoch to a civil
/// date (Howard Hinnant's algorithm).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_312_984)),
            "2026-11-22T02:03:04Z"
        );
    }
}
