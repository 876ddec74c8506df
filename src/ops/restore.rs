//! `restore etcd`: the disaster case, every master lost. It writes a restore
//! request (`NAME/control-plane/restore`); the next master to take the leader
//! lease restores that backup into its etcd and runs `kubeadm init` on it, and
//! the other masters join it (src/node/bootstrap.rs). kops does the same through
//! etcd-manager (`etcd-manager-ctl restore-backup`).

use crate::node::lease::{self, RestoreRequest};
use crate::node::{NodeError, backup};
use crate::state::{StateError, StateStore};

/// The request for `backup` (the newest when `None`), written only with `yes`.
pub async fn request(
    store: &StateStore,
    cluster: &str,
    backup_name: Option<&str>,
    yes: bool,
) -> Result<RestoreRequest, NodeError> {
    if !store.cluster_exists(cluster).await? {
        return Err(StateError::ClusterNotFound {
            cluster: cluster.to_string(),
            store: store.url().to_string(),
        }
        .into());
    }
    let all = backup::list(store, cluster).await?;
    let known = || {
        let names: Vec<String> = all.iter().rev().take(5).map(|b| b.name.clone()).collect();
        if names.is_empty() {
            "none yet (the agent on the masters takes one every 15 minutes)".to_string()
        } else {
            names.join(", ")
        }
    };
    let chosen = match backup_name {
        Some(n) => all.iter().find(|b| b.name == n),
        None => all.last(),
    }
    .ok_or_else(|| NodeError::NoBackup {
        cluster: cluster.to_string(),
        name: backup_name.unwrap_or("(the newest)").to_string(),
        known: known(),
    })?;
    let request = RestoreRequest {
        backup: chosen.name.clone(),
        requested_at: backup::now_secs(),
        restored_by: None,
        restored_at: None,
    };
    if yes {
        store
            .backend()
            .put(
                &lease::restore_key(cluster),
                serde_json::to_vec_pretty(&request).expect("a request serializes"),
            )
            .await?;
    }
    Ok(request)
}
