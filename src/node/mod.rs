//! The node side: what runs on keelson's instances (`keelson node ...`). On the
//! masters, the agent keeps etcd's membership equal to the master instances
//! ([`membership`]), takes etcd backups into the state store ([`backup`]) and
//! publishes what it saw for `rolling-update`; [`lease`] decides which master
//! initialises the control plane. It reaches IMDS, S3 and EC2 through the SDK, so
//! the standard endpoint variables point it at an emulator.

pub mod addons;
pub mod agent;
pub mod attest;
pub mod backup;
pub mod bootstrap;
pub mod env;
pub mod etcd;
pub mod host;
pub mod identity;
pub mod kubeadm;
pub mod lease;
pub mod membership;
pub mod serve;

use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "{path}: {message}; the user-data writes this file, so check the instance's launch template"
    )]
    Env { path: String, message: String },
    #[error(
        "cluster {cluster}'s state store is not on S3, so its instances cannot read it; use an s3:// state store for clusters that run"
    )]
    NoS3Store { cluster: String },
    #[error("instance metadata {path}: {message}; is this an EC2 instance with IMDSv2 reachable?")]
    Imds { path: &'static str, message: String },
    #[error("etcd {endpoint}: {message}")]
    Etcd { endpoint: String, message: String },
    #[error(
        "etcd of cluster {cluster} has lost quorum ({healthy} of {members} members healthy): no member can be removed or added; restore the newest backup (`keelson get backups {cluster}`)"
    )]
    NoQuorum {
        cluster: String,
        healthy: usize,
        members: usize,
    },
    #[error(
        "cluster {cluster} has no etcd backup {name:?}; the newest are: {known} (`keelson get backups {cluster}` lists them all)"
    )]
    NoBackup {
        cluster: String,
        name: String,
        known: String,
    },
    #[error(
        "etcd data directory {path} is not empty; a restore starts a new member and never writes over data (move it aside first)"
    )]
    DataDirInUse { path: String },
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("EC2 {operation}: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },
    #[error(
        "{name}={value:?} in the env file: {message}; the user-data writes it from the cluster's spec, so fix the spec and run `keelson update cluster --yes`"
    )]
    EnvValue {
        name: &'static str,
        value: String,
        message: String,
    },
    #[error(
        "cannot read {key} from the state store after {attempts} attempts ({message}); check that `keelson update cluster --yes` wrote it and that this instance's IAM role may read it"
    )]
    StoreObject {
        key: String,
        attempts: u32,
        message: String,
    },
    #[error(
        "the API load balancer {name}: {message}; `keelson update cluster --yes` creates it, and this instance's IAM role must allow elasticloadbalancing:DescribeLoadBalancers"
    )]
    LoadBalancer { name: String, message: String },
    #[error(
        "the Kubernetes API at {endpoint} did not become ready in {waited_secs}s ({why}); check the control plane's instances (the leader's bootstrap log: `journalctl -u keelson-bootstrap`); systemd retries this bootstrap"
    )]
    ApiNotReady {
        endpoint: String,
        waited_secs: u64,
        why: String,
    },
    #[error("the Kubernetes API at {endpoint}: {message}")]
    Kube { endpoint: String, message: String },
    #[error(
        "cluster {cluster}'s leader lease is held by {holder}, which took it over while this master ran kubeadm init (this master could not renew it in time), so two control planes may have been initialised; terminate this instance: its group replaces it and the replacement joins"
    )]
    LeaseLost { cluster: String, holder: String },
    #[error(
        "node attestation, {what}: {message}; nodes prove who they are to the masters' agents on port 3988 (docs/bootstrap.md, \"Node identity\")"
    )]
    Attest { what: String, message: String },
    #[error("addon {manifest}: {message}")]
    Addon { manifest: String, message: String },
    #[error("Kubernetes version skew: {0}")]
    Skew(#[from] kubeadm::Skew),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Where the agent on the masters publishes the last [`membership::Report`].
pub fn status_key(cluster: &str) -> String {
    format!("{cluster}/control-plane/etcd-status.json")
}

/// The cluster's master instances that are pending or running, from EC2 by the
/// tags every keelson master carries (model/instances.rs).
pub async fn masters(
    ec2: &aws_sdk_ec2::Client,
    cluster: &str,
) -> Result<Vec<membership::Master>, NodeError> {
    use aws_sdk_ec2::types::Filter;
    let filter = |name: &str, values: &[&str]| {
        Filter::builder()
            .name(name)
            .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
            .build()
    };
    let mut out = Vec::new();
    let mut pages = ec2
        .describe_instances()
        .filters(filter("tag:KubernetesCluster", &[cluster]))
        .filters(filter("tag-key", &["k8s.io/role/master"]))
        .filters(filter("instance-state-name", &["pending", "running"]))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| NodeError::Aws {
            operation: "DescribeInstances",
            message: crate::aws::describe(&e),
        })?;
        for r in page.reservations() {
            for i in r.instances() {
                out.push(membership::Master {
                    instance_id: i.instance_id().unwrap_or_default().to_string(),
                    private_ip: i.private_ip_address().unwrap_or_default().to_string(),
                    private_dns: i.private_dns_name().unwrap_or_default().to_string(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(out)
}
