//! The control-plane leader lease: which master runs `kubeadm init`.
//!
//! One object, `NAME/control-plane/leader`, written only by conditional writes
//! (S3 `If-None-Match: *` to claim, `If-Match: ETAG` to renew or take over), so of
//! masters racing for it at most one wins each round. A claim expires: if its
//! holder dies or its bootstrap fails before the cluster is initialised, another
//! master takes over once the claim is older than its time to live and no API
//! answers. [`decide`] is the pure rule; [`acquire`] does the reads and writes.

use serde::{Deserialize, Serialize};

use super::NodeError;
use crate::state::StateStore;

/// How long a claim lasts without renewal. The holder renews every
/// [`RENEW_EVERY`] while it bootstraps; `kubeadm init` itself takes about a
/// minute or two (its default wait for the control plane is 4 minutes).
pub const TTL_SECS: u64 = 300;
pub const RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

pub fn key(cluster: &str) -> String {
    format!("{cluster}/control-plane/leader")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub holder: String,
    /// When the holder last renewed it, in seconds since the Unix epoch.
    pub renewed_at: u64,
    pub ttl_seconds: u64,
    /// Set by the holder once `kubeadm init` succeeded: from then on masters join.
    #[serde(default)]
    pub initialized: bool,
}

impl Lease {
    pub fn expired(&self, now: u64) -> bool {
        now >= self.renewed_at.saturating_add(self.ttl_seconds)
    }
}

/// Where `keelson restore etcd` asks the next masters to come up from a backup
/// (the disaster case: every master lost).
pub fn restore_key(cluster: &str) -> String {
    format!("{cluster}/control-plane/restore")
}

/// A request to restore, and once done who carried it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequest {
    pub backup: String,
    pub requested_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_at: Option<u64>,
}

impl RestoreRequest {
    pub fn pending(&self) -> bool {
        self.restored_at.is_none()
    }
}

/// The pending restore request, if any (an unreadable one is reported).
pub async fn pending_restore(
    store: &StateStore,
    cluster: &str,
) -> Result<Option<RestoreRequest>, NodeError> {
    let k = restore_key(cluster);
    let Some(b) = store.backend().get(&k).await? else {
        return Ok(None);
    };
    let r: RestoreRequest = serde_json::from_slice(&b).map_err(|e| NodeError::Io {
        path: k,
        message: format!("not a restore request ({e}); write it again with `keelson restore etcd`"),
    })?;
    Ok(r.pending().then_some(r))
}

/// Records that `me` restored the request's backup (it stays, as a record).
pub async fn mark_restored(
    store: &StateStore,
    cluster: &str,
    request: &RestoreRequest,
    me: &str,
    now: u64,
) -> Result<(), NodeError> {
    let done = RestoreRequest {
        restored_by: Some(me.to_string()),
        restored_at: Some(now),
        ..request.clone()
    };
    store
        .backend()
        .put(
            &restore_key(cluster),
            serde_json::to_vec_pretty(&done).expect("a request serializes"),
        )
        .await?;
    Ok(())
}

/// What a master does about the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No lease: claim it (If-None-Match).
    Claim,
    /// Ours: renew it (If-Match).
    Renew,
    /// Someone else's, expired, and no API answers: take it over (If-Match).
    TakeOver { from: String },
    /// Someone else's and live (or the API answers): join.
    Follow { holder: String },
}

/// The rule. `api_answers` is whether the cluster's API answered just now: a
/// live API means the cluster exists whatever the lease says, so nobody inits.
/// `restore`: a restore is requested, so an initialised cluster whose claim
/// expired and whose API is silent (every master lost) is initialised again,
/// from the backup, by whoever takes the lease over.
pub fn decide(
    current: Option<&Lease>,
    me: &str,
    now: u64,
    api_answers: bool,
    restore: bool,
) -> Decision {
    match current {
        None if api_answers => Decision::Follow {
            holder: String::new(),
        },
        None => Decision::Claim,
        Some(l) if l.holder == me && !l.initialized => Decision::Renew,
        Some(l) if restore && l.initialized && !api_answers && l.expired(now) => {
            Decision::TakeOver {
                from: l.holder.clone(),
            }
        }
        Some(l) if l.initialized || api_answers || !l.expired(now) => Decision::Follow {
            holder: l.holder.clone(),
        },
        Some(l) => Decision::TakeOver {
            from: l.holder.clone(),
        },
    }
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This master holds the lease and initialises.
    Leader,
    /// Another master holds it (or the cluster is up): join.
    Follower { holder: String },
    /// A racing master wrote first: ask again.
    Lost,
}

fn parse(body: &[u8]) -> Lease {
    // An older keelson's leader object held a bare instance id and never
    // expired: read as an expired claim, so a live cluster still follows its API.
    serde_json::from_slice::<Lease>(body).unwrap_or_else(|_| Lease {
        holder: String::from_utf8_lossy(body).trim().to_string(),
        renewed_at: 0,
        ttl_seconds: 0,
        initialized: false,
    })
}

fn body(lease: &Lease) -> Vec<u8> {
    serde_json::to_vec_pretty(lease).expect("a lease serializes")
}

/// One round: read the lease, decide, write conditionally.
pub async fn acquire(
    store: &StateStore,
    cluster: &str,
    me: &str,
    now: u64,
    api_answers: bool,
    restore: bool,
) -> Result<Outcome, NodeError> {
    let k = key(cluster);
    let current = store.backend().get_versioned(&k).await?;
    let lease = current.as_ref().map(|(b, _)| parse(b));
    let mine = Lease {
        holder: me.to_string(),
        renewed_at: now,
        ttl_seconds: TTL_SECS,
        initialized: false,
    };
    let won = match (
        decide(lease.as_ref(), me, now, api_answers, restore),
        &current,
    ) {
        (Decision::Follow { holder }, _) => return Ok(Outcome::Follower { holder }),
        (Decision::Claim, _) => store.backend().put_if_absent(&k, body(&mine)).await?,
        (Decision::Renew | Decision::TakeOver { .. }, Some((_, version))) => {
            store
                .backend()
                .put_if_match(&k, body(&mine), version)
                .await?
        }
        (_, None) => false,
    };
    Ok(if won { Outcome::Leader } else { Outcome::Lost })
}

/// Marks the cluster initialised, by the holder only (If-Match on its own lease).
pub async fn mark_initialized(
    store: &StateStore,
    cluster: &str,
    me: &str,
    now: u64,
) -> Result<bool, NodeError> {
    let k = key(cluster);
    let Some((b, version)) = store.backend().get_versioned(&k).await? else {
        return Ok(false);
    };
    match parse(&b) {
        l if l.holder == me => {
            let done = Lease {
                renewed_at: now,
                initialized: true,
                ..l
            };
            Ok(store
                .backend()
                .put_if_match(&k, body(&done), &version)
                .await?)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_at: u64) -> Lease {
        Lease {
            holder: holder.into(),
            renewed_at,
            ttl_seconds: TTL_SECS,
            initialized: false,
        }
    }

    #[test]
    fn the_rule() {
        assert_eq!(decide(None, "i-1", 1000, false, false), Decision::Claim);
        assert!(matches!(
            decide(None, "i-1", 1000, true, false),
            Decision::Follow { .. }
        ));
        let live = lease("i-2", 1000);
        assert_eq!(
            decide(Some(&live), "i-1", 1000 + TTL_SECS - 1, false, false),
            Decision::Follow {
                holder: "i-2".into()
            }
        );
        assert_eq!(
            decide(Some(&live), "i-1", 1000 + TTL_SECS, false, false),
            Decision::TakeOver { from: "i-2".into() }
        );
        // An expired claim is not taken over while an API answers.
        assert!(matches!(
            decide(Some(&live), "i-1", 1000 + TTL_SECS, true, false),
            Decision::Follow { .. }
        ));
        assert_eq!(
            decide(Some(&live), "i-2", 5000, false, false),
            Decision::Renew
        );
        // Once initialised, everyone joins, the holder too.
        let done = Lease {
            initialized: true,
            ..live
        };
        assert!(matches!(
            decide(Some(&done), "i-1", 99999, false, false),
            Decision::Follow { .. }
        ));
        assert!(matches!(
            decide(Some(&done), "i-2", 99999, false, false),
            Decision::Follow { .. }
        ));
        // A restore is asked for: a lost cluster (claim expired, API silent) is
        // taken over to be initialised from the backup; a live one never.
        assert_eq!(
            decide(Some(&done), "i-9", 1000 + TTL_SECS, false, true),
            Decision::TakeOver { from: "i-2".into() }
        );
        assert!(matches!(
            decide(Some(&done), "i-9", 1000 + TTL_SECS, true, true),
            Decision::Follow { .. }
        ));
        assert!(matches!(
            decide(Some(&done), "i-9", 1000 + TTL_SECS - 1, false, true),
            Decision::Follow { .. }
        ));
    }

    #[tokio::test]
    async fn claims_renewals_and_takeovers_on_a_store() {
        let dir = std::env::temp_dir().join(format!("keelson-lease-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let url = format!("file://{}", dir.display());
        let store = StateStore::open(&url, &aws_config::SdkConfig::builder().build(), true)
            .await
            .unwrap();
        assert_eq!(
            acquire(&store, "c", "i-1", 100, false, false)
                .await
                .unwrap(),
            Outcome::Leader
        );
        assert_eq!(
            acquire(&store, "c", "i-2", 101, false, false)
                .await
                .unwrap(),
            Outcome::Follower {
                holder: "i-1".into()
            }
        );
        assert_eq!(
            acquire(&store, "c", "i-1", 150, false, false)
                .await
                .unwrap(),
            Outcome::Leader
        );
        // i-1 died before init: after the TTL, i-2 takes over.
        assert_eq!(
            acquire(&store, "c", "i-2", 150 + TTL_SECS, false, false)
                .await
                .unwrap(),
            Outcome::Leader
        );
        assert!(!mark_initialized(&store, "c", "i-1", 999).await.unwrap());
        assert!(mark_initialized(&store, "c", "i-2", 999).await.unwrap());
        assert!(matches!(
            acquire(&store, "c", "i-3", 99999, false, false)
                .await
                .unwrap(),
            Outcome::Follower { .. }
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
