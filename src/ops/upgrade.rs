//! `upgrade cluster`: moves `spec.kubernetesVersion` to the next supported
//! version, as `kops upgrade cluster`. Only the spec changes here; `update
//! cluster --yes` then renders the new version into the launch templates and the
//! addons, and `rolling-update` replaces masters first (the first new master runs
//! `kubeadm upgrade apply`), then nodes, so kubelets are never newer than the API.

use crate::spec::validate::{SUPPORTED_MINORS, kubernetes_minor};
use crate::state::{StateStore, lock::with_lock};

use super::{ClusterSpecs, OpsError};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpgradeError {
    #[error(
        "spec.kubernetesVersion: {target} is older than the cluster's {current}; Kubernetes cannot be downgraded in place (kubeadm refuses it): keep {current}, or build a new cluster and move the workloads"
    )]
    Downgrade { current: String, target: String },
    #[error(
        "spec.kubernetesVersion: {target} skips a minor version from {current}; the control plane upgrades one minor at a time (Kubernetes' version skew policy): upgrade to 1.{next}.0 first (`keelson upgrade cluster NAME --yes`, then update and rolling-update), then again"
    )]
    Skip {
        current: String,
        target: String,
        next: u32,
    },
    #[error(
        "--kubernetes-version {target}: keelson supports 1.{min} to 1.{max}; choose a version in that range"
    )]
    Unsupported { target: String, min: u32, max: u32 },
    #[error("--kubernetes-version {target}: not a version like 1.36.0; use MAJOR.MINOR.PATCH")]
    Malformed { target: String },
}

fn parts(v: &str) -> Option<(u32, u32)> {
    let minor = kubernetes_minor(v)?;
    let patch = v.trim_start_matches('v').rsplit('.').next()?.parse().ok()?;
    Some((minor, patch))
}

/// The version to move to: `target` if given and allowed, else the next minor's
/// first release; `None` when the cluster is already at the newest supported
/// minor (or at `target`). Pure.
pub fn next_version(current: &str, target: Option<&str>) -> Result<Option<String>, UpgradeError> {
    let (minor, patch) = parts(current).ok_or_else(|| UpgradeError::Malformed {
        target: current.to_string(),
    })?;
    let Some(t) = target else {
        let next = minor + 1;
        return Ok(SUPPORTED_MINORS
            .contains(&next)
            .then(|| format!("1.{next}.0")));
    };
    let (tm, tp) = parts(t).ok_or_else(|| UpgradeError::Malformed {
        target: t.to_string(),
    })?;
    let t = t.trim_start_matches('v').to_string();
    if !SUPPORTED_MINORS.contains(&tm) {
        return Err(UpgradeError::Unsupported {
            target: t,
            min: *SUPPORTED_MINORS.start(),
            max: *SUPPORTED_MINORS.end(),
        });
    }
    check_step(current, &t)?;
    Ok(((tm, tp) != (minor, patch)).then_some(t))
}

/// Whether a cluster at `current` may move to `wanted`: never down, at most one
/// minor up (kubeadm refuses both: Kubernetes' version skew policy). Versions
/// that do not parse pass here; spec validation names them. Pure.
pub fn check_step(current: &str, wanted: &str) -> Result<(), UpgradeError> {
    let (Some((minor, patch)), Some((tm, tp))) = (parts(current), parts(wanted)) else {
        return Ok(());
    };
    let target = wanted.trim_start_matches('v').to_string();
    if (tm, tp) < (minor, patch) {
        return Err(UpgradeError::Downgrade {
            current: current.to_string(),
            target,
        });
    }
    if tm > minor + 1 {
        return Err(UpgradeError::Skip {
            current: current.to_string(),
            target,
            next: minor + 1,
        });
    }
    Ok(())
}

/// The version the cluster's launch templates carry (the last `update --yes`),
/// checked against the spec's: an edit, a replace or a hand-written spec in the
/// state store may not move the cluster down or skip a minor, as `upgrade
/// cluster` may not. A never-applied cluster may take any supported version.
pub fn check_applied(
    status: Option<&crate::spec::ClusterStatus>,
    wanted: &str,
) -> Result<(), UpgradeError> {
    match status.and_then(|s| s.kubernetes_version.as_deref()) {
        Some(applied) => check_step(applied, wanted),
        None => Ok(()),
    }
}

/// What an upgrade changes: (item, property, old, new).
pub type Change = (String, String, String, String);

/// Reads the cluster, decides, and with `yes` writes the spec under the lock.
/// Returns the changes (empty: nothing to upgrade).
pub async fn upgrade(
    store: &StateStore,
    cluster: &str,
    target: Option<&str>,
    yes: bool,
) -> Result<Vec<Change>, OpsError> {
    let specs = ClusterSpecs::read(store, cluster).await?;
    let current = specs.cluster.spec.kubernetes_version.clone();
    let Some(next) = next_version(&current, target)? else {
        return Ok(Vec::new());
    };
    // The spec may be ahead of the instances (upgraded, not yet applied): the
    // step is judged from what was applied too.
    check_applied(store.read_status(cluster).await?.as_ref(), &next)?;
    let changes = vec![(
        "Cluster".to_string(),
        "KubernetesVersion".to_string(),
        current.clone(),
        next.clone(),
    )];
    if !yes {
        return Ok(changes);
    }
    let command = format!("keelson upgrade cluster {cluster} --yes");
    with_lock(store, cluster, &command, async {
        let mut fresh = ClusterSpecs::read(store, cluster).await?;
        if fresh.cluster.spec.kubernetes_version != current {
            return Err(OpsError::Usage(format!(
                "cluster {cluster}'s kubernetesVersion changed to {} while upgrading; nothing was written: run the upgrade again",
                fresh.cluster.spec.kubernetes_version
            )));
        }
        fresh.cluster.spec.kubernetes_version = next.clone();
        fresh.validate()?;
        store.write_cluster(&fresh.cluster).await?;
        Ok(changes)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_minor_at_a_time_never_down() {
        assert_eq!(next_version("1.35.0", None), Ok(Some("1.36.0".into())));
        assert_eq!(next_version("1.37.2", None), Ok(None));
        assert_eq!(
            next_version("1.35.0", Some("1.35.4")),
            Ok(Some("1.35.4".into()))
        );
        assert_eq!(
            next_version("1.35.0", Some("v1.36.1")),
            Ok(Some("1.36.1".into()))
        );
        assert_eq!(next_version("1.35.4", Some("1.35.4")), Ok(None));
        assert!(matches!(
            next_version("1.35.4", Some("1.35.1")),
            Err(UpgradeError::Downgrade { .. })
        ));
        assert!(matches!(
            next_version("1.35.0", Some("1.34.9")),
            Err(UpgradeError::Downgrade { .. })
        ));
        let skip = next_version("1.34.0", Some("1.36.0")).unwrap_err();
        assert!(
            skip.to_string().contains("upgrade to 1.35.0 first"),
            "{skip}"
        );
        assert!(matches!(
            next_version("1.35.0", Some("1.40.0")),
            Err(UpgradeError::Unsupported { .. })
        ));
        assert!(matches!(
            next_version("1.35.0", Some("latest")),
            Err(UpgradeError::Malformed { .. })
        ));
    }

    #[test]
    fn a_spec_may_not_move_below_or_two_minors_past_what_was_applied() {
        let applied = |v: &str| crate::spec::ClusterStatus {
            kubernetes_version: Some(v.into()),
            ..Default::default()
        };
        assert_eq!(check_applied(None, "1.32.0"), Ok(()));
        assert_eq!(check_applied(Some(&applied("1.35.2")), "1.35.2"), Ok(()));
        assert_eq!(check_applied(Some(&applied("1.35.2")), "1.36.0"), Ok(()));
        assert!(matches!(
            check_applied(Some(&applied("1.35.2")), "1.35.1"),
            Err(UpgradeError::Downgrade { .. })
        ));
        let skip = check_applied(Some(&applied("1.34.0")), "1.36.0").unwrap_err();
        assert!(
            skip.to_string().contains("upgrade to 1.35.0 first"),
            "{skip}"
        );
        // The status of an older keelson has no version: nothing to hold to.
        assert_eq!(
            check_applied(Some(&crate::spec::ClusterStatus::default()), "1.30.0"),
            Ok(())
        );
    }
}
