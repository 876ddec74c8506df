//! `update cluster NAME --target terraform --out DIR`: the same desired model the
//! direct target applies, written as terraform configuration (src/terraform),
//! and the state-store side of an update (PKI, node agent, addon channel)
//! written as `update --yes` writes it. Terraform owns the cloud resources from
//! then on; the state store records that (`NAME/target`), and `delete cluster`
//! refuses to delete what terraform manages (docs/terraform.md).

use std::path::{Path, PathBuf};

use crate::model;
use crate::state::StateStore;

use super::update::{StateChanges, UpdateError, state_changes, write_state_changes};
use super::{ClusterSpecs, OpsError};

/// The marker's content: the cluster's cloud resources are terraform's.
pub const TERRAFORM: &str = "terraform";

/// The state-store key that says which target renders the cluster's cloud.
pub fn target_key(cluster: &str) -> String {
    format!("{cluster}/target")
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Render(#[from] crate::terraform::TerraformError),
    #[error("--out {dir}: {message}; give a directory keelson may write to")]
    Out { dir: String, message: String },
    #[error(
        "cluster {cluster:?} was rendered for terraform (`keelson update cluster {cluster} --target terraform`), and terraform manages its {count} cloud resource(s); run `terraform destroy` in the directory it was rendered to first, then `keelson delete cluster {cluster} --yes` removes its state"
    )]
    ManagedByTerraform { cluster: String, count: usize },
}

/// The rendered configuration and what goes to the state store with it.
pub struct Target {
    pub rendered: crate::terraform::Rendered,
    pub state: StateChanges,
    pub cluster: crate::spec::Cluster,
    /// The count of model resources rendered.
    pub resources: usize,
}

/// Reads and validates the specs and builds the model, as `update` does, and
/// renders it. Reads only; nothing is discovered (terraform owns the cloud).
pub async fn prepare(
    store: &StateStore,
    cluster: &str,
    node_binary: Option<&Path>,
) -> Result<Target, OpsError> {
    let stored = store.read_for_plan(cluster).await?;
    let specs = ClusterSpecs {
        cluster: stored.cluster,
        groups: stored.groups,
    };
    specs.validate()?;
    let binary = super::node_binary::locate(node_binary, &specs.groups)?;
    let region = specs.cluster.region().unwrap_or_default();
    let aws = crate::aws::load(Some(&region)).await;
    let clients = crate::aws::kind::Clients::new(&aws);
    let wanted: Vec<(String, String)> = specs
        .groups
        .iter()
        .map(|g| (g.spec.image.clone(), g.name().to_string()))
        .collect();
    let images = crate::aws::images::resolve(&clients.ec2, &wanted, &region).await?;
    // The same refusals as an update that makes launch templates.
    super::create::check_machine_types(&clients.ec2, &specs.cluster, &specs.groups, &images)
        .await?;
    let desired = model::build(&model::Inputs {
        cluster: &specs.cluster,
        groups: &specs.groups,
        ssh_key: stored.ssh_key.as_ref(),
        images: &images,
        node_agent: &model::instances::NodeAgent {
            sha256: binary.sha256.clone(),
        },
    })
    .map_err(UpdateError::from)?;
    let rendered = crate::terraform::render(
        &desired,
        &crate::terraform::Context {
            cluster: &specs.cluster,
        },
    )
    .map_err(TargetError::from)?;
    let mut state = state_changes(
        &specs.cluster,
        stored.has_pki,
        stored.addon_channel.as_deref(),
    )?;
    state.encryption_config = stored.has_pki && !stored.has_encryption_config;
    state.remove_legacy_token = stored.has_legacy_token;
    if !stored
        .agent_keys
        .contains(&binary.key(specs.cluster.name()))
    {
        state.agent = Some(binary);
    }
    Ok(Target {
        resources: desired.resources.len(),
        rendered,
        state,
        cluster: specs.cluster,
    })
}

/// Writes the configuration into `dir` (made if missing): `kubernetes.tf.json`
/// and `data/`. Files keelson did not write are left alone.
pub fn write_files(dir: &Path, rendered: &crate::terraform::Rendered) -> Result<(), TargetError> {
    let out = |e: std::io::Error, path: &Path| TargetError::Out {
        dir: dir.display().to_string(),
        message: format!("cannot write {}: {e}", path.display()),
    };
    if dir.exists() && !dir.is_dir() {
        return Err(TargetError::Out {
            dir: dir.display().to_string(),
            message: "it is a file, not a directory".into(),
        });
    }
    let data: PathBuf = dir.join(crate::terraform::DATA_DIR);
    std::fs::create_dir_all(&data).map_err(|e| out(e, &data))?;
    for (name, bytes) in &rendered.files {
        let path = data.join(name);
        std::fs::write(&path, bytes).map_err(|e| out(e, &path))?;
    }
    // The configuration last: it is complete only once its files are there.
    let main = dir.join(crate::terraform::MAIN_FILE);
    std::fs::write(&main, rendered.main_text()).map_err(|e| out(e, &main))?;
    Ok(())
}

/// The state-store writes, under the cluster's lock: what `update --yes`
/// writes, then the marker.
pub async fn write_state(
    store: &StateStore,
    cluster: &str,
    changes: &StateChanges,
) -> Result<(), OpsError> {
    write_state_changes(store, cluster, changes).await?;
    let key = target_key(cluster);
    if store.backend().get(&key).await?.as_deref() != Some(TERRAFORM.as_bytes()) {
        store
            .backend()
            .put(&key, TERRAFORM.as_bytes().to_vec())
            .await?;
    }
    Ok(())
}

/// Whether the cluster was rendered for terraform.
pub async fn is_terraform(store: &StateStore, cluster: &str) -> Result<bool, OpsError> {
    Ok(store.backend().get(&target_key(cluster)).await?.as_deref() == Some(TERRAFORM.as_bytes()))
}

/// `delete cluster` of a cluster terraform manages: refused while any resource
/// is left for it to delete (terraform's state would no longer match the
/// cloud); with none left, only the state goes.
pub fn refuse_delete(cluster: &str, terraform: bool, remaining: usize) -> Result<(), TargetError> {
    if terraform && remaining > 0 {
        return Err(TargetError::ManagedByTerraform {
            cluster: cluster.to_string(),
            count: remaining,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_refuses_only_what_terraform_still_manages() {
        let e = refuse_delete("c.k8s.local", true, 82)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("terraform manages its 82 cloud resource(s)"),
            "{e}"
        );
        assert!(e.contains("run `terraform destroy`"), "{e}");
        // After `terraform destroy`, only the state is left to delete.
        assert!(refuse_delete("c.k8s.local", true, 0).is_ok());
        // A cluster keelson applies itself is deleted as ever.
        assert!(refuse_delete("c.k8s.local", false, 82).is_ok());
    }

    #[test]
    fn files_are_written_into_a_directory_only() {
        let dir = std::env::temp_dir().join(format!("keelson-tf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rendered = crate::terraform::Rendered {
            main: serde_json::json!({ "resource": {} }),
            files: [("f".to_string(), b"x".to_vec())].into(),
        };
        write_files(&dir, &rendered).unwrap();
        assert_eq!(std::fs::read(dir.join("data/f")).unwrap(), b"x");
        assert!(dir.join(crate::terraform::MAIN_FILE).is_file());
        let file = dir.join(crate::terraform::MAIN_FILE);
        let e = write_files(&file, &rendered).unwrap_err().to_string();
        assert!(e.contains("it is a file, not a directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
