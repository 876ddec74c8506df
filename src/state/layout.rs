//! Where each object of a cluster lives in the state store (kops' layout):
//!
//! ```text
//! NAME/config                                  the Cluster spec
//! NAME/instancegroup/<group>                   one InstanceGroup spec each
//! NAME/pki/ssh/public/admin/<fingerprint>      the admin SSH public key
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
