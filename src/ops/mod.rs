//! The use cases behind the commands that change specs: each resolves its inputs,
//! validates everything, and only then writes, under the cluster's lock.

pub mod create;
pub mod delete;
pub mod edit;
pub mod group;
pub mod kubecfg;
pub mod node_binary;
pub mod replace;
pub mod restore;
pub mod terraform;
pub mod update;
pub mod upgrade;

use crate::aws::AwsError;
use crate::spec::parse::ParseError;
use crate::spec::validate::{ValidationErrors, validate};
use crate::spec::{Cluster, InstanceGroup};
use crate::state::{StateError, StateStore};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(
        "cluster {cluster:?} already exists in {store}; choose another name, change it with `keelson edit cluster {cluster}`, or delete it first"
    )]
    ClusterExists { cluster: String, store: String },
    #[error(
        "instance group {group:?} already exists in cluster {cluster:?}; change it with `keelson edit ig {group} --name {cluster}`"
    )]
    GroupExists { cluster: String, group: String },
    #[error(transparent)]
    Update(#[from] update::UpdateError),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Kubecfg(#[from] kubecfg::KubecfgError),
    #[error(transparent)]
    Addon(#[from] crate::addons::AddonError),
    #[error(
        "cluster {cluster:?}: the state store already holds {key}, and keelson never overwrites a cluster's keys. If it is a leftover of a deleted cluster, remove it with `aws s3 rm --recursive {store}/{cluster}/` (or delete that directory of a file:// store) and create again; if the cluster's PKI is incomplete, restore the missing objects from the bucket's versions"
    )]
    PkiExists {
        cluster: String,
        key: String,
        store: String,
    },
    #[error(transparent)]
    NodeBinary(#[from] node_binary::NodeBinaryError),
    #[error(transparent)]
    Upgrade(#[from] upgrade::UpgradeError),
    #[error(transparent)]
    Terraform(#[from] terraform::TargetError),
    #[error("{0}")]
    Usage(String),
    #[error("editor: {0}")]
    Editor(String),
}

/// A cluster and all its groups: the unit that is validated and written.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSpecs {
    pub cluster: Cluster,
    pub groups: Vec<InstanceGroup>,
}

impl ClusterSpecs {
    pub async fn read(store: &StateStore, name: &str) -> Result<ClusterSpecs, StateError> {
        let cluster = store.read_cluster(name).await?;
        let groups = store.read_groups(name).await?;
        Ok(ClusterSpecs { cluster, groups })
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        validate(&self.cluster, &self.groups)
    }

    pub fn group(&self, name: &str) -> Option<&InstanceGroup> {
        self.groups.iter().find(|g| g.name() == name)
    }

    /// Replaces the group of the same name, or adds it.
    pub fn put_group(&mut self, g: InstanceGroup) {
        match self.groups.iter_mut().find(|x| x.name() == g.name()) {
            Some(slot) => *slot = g,
            None => {
                self.groups.push(g);
                self.groups
                    .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            }
        }
    }
}
