//! Where each object of a cluster lives in the state store (kops' layout):
//!
//! ```text
//! NAME/config                                  the Cluster spec
//! NAME/instancegroup/<group>                   one InstanceGroup spec each
//! NAME/pki/ssh/public/admin/<fingerprint>      the admin SSH public key
//! NAME/pki/public/{ca,front-proxy-ca,etcd-ca}.crt, sa.pub   certificates (nodes may read)
//! NAME/pki/private/{ca,front-proxy-ca,etcd-ca}.key, sa.key  keys (masters only)
//! NAME/secrets/encryption-config.yaml        the key Secrets are encrypted with in etcd (masters only)
//! NAME/addons/bootstrap-channel.yaml           the manifests masters apply, in order
//! NAME/addons/<bundle>/<file>.yaml             one rendered addon bundle each
//! NAME/control-plane/leader                    written by the master that runs kubeadm init
//! NAME/lock                                    held while a command mutates the cluster
//! NAME/status                                  what the last apply learned (the API endpoint)
//! ```

pub fn config(cluster: &str) -> String {
    format!("{cluster}/config")
}

pub fn instance_group_prefix(cluster: &str) -> String {
    format!("{cluster}/instancegroup/")
}

pub fn instance_group(cluster: &str, group: &str) -> String {
    format!("{cluster}/instancegroup/{group}")
}

pub fn ssh_public_key_prefix(cluster: &str) -> String {
    format!("{cluster}/pki/ssh/public/admin/")
}

pub fn ssh_public_key(cluster: &str, fingerprint: &str) -> String {
    format!("{}{fingerprint}", ssh_public_key_prefix(cluster))
}

pub fn status(cluster: &str) -> String {
    format!("{cluster}/status")
}

pub fn lock(cluster: &str) -> String {
    format!("{cluster}/lock")
}

/// `NAME/config` -> `NAME`.
pub fn cluster_of_config(key: &str) -> Option<&str> {
    key.strip_suffix("/config")
        .filter(|c| !c.is_empty() && !c.contains('/'))
}

pub fn pki_prefix(cluster: &str) -> String {
    format!("{cluster}/pki/")
}

pub fn pki_public(cluster: &str, file: &str) -> String {
    format!("{cluster}/pki/public/{file}")
}

pub fn pki_private(cluster: &str, file: &str) -> String {
    format!("{cluster}/pki/private/{file}")
}

/// The API server's EncryptionConfiguration, with its key (masters only).
pub fn encryption_config(cluster: &str) -> String {
    format!("{cluster}/secrets/encryption-config.yaml")
}

/// Where keelson before node attestation kept a shared join token; an update
/// removes it (nodes prove who they are with AWS now).
pub fn legacy_bootstrap_token(cluster: &str) -> String {
    format!("{cluster}/secrets/node-bootstrap-token")
}

pub fn addons_prefix(cluster: &str) -> String {
    format!("{cluster}/addons/")
}

/// A file under the cluster's `addons/` (the channel, or `<bundle>/<file>`).
pub fn addon(cluster: &str, path: &str) -> String {
    format!("{cluster}/addons/{path}")
}
