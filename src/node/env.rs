//! `/etc/keelson/env`: what the user-data tells an instance about its cluster and
//! group (written by `templates/bootstrap/cloud-config.yaml.j2`, one
//! `NAME='value'` line each, values in POSIX single quotes).

use std::collections::BTreeMap;
use std::path::Path;

use super::NodeError;
use crate::spec::components::NodeConfig;

/// The default place of the env file on an instance.
pub const DEFAULT_PATH: &str = "/etc/keelson/env";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeEnv {
    pub cluster: String,
    /// `master`, `node` or `bastion`.
    pub role: String,
    pub instance_group: String,
    pub kubernetes_version: String,
    pub state_bucket: String,
    /// The cluster's prefix inside the bucket: the store's own prefix, then the
    /// cluster's name (`team/demo.k8s.local/`), as the spec's configBase has it.
    pub state_prefix: String,
    pub api_name: String,
    pub api_load_balancer: String,
    pub pod_cidr: String,
    pub service_cidr: String,
    pub networking: String,
    pub node_labels: String,
    pub taints: String,
    /// `node-config.yaml` beside the env file (absent: nothing set).
    pub config: crate::spec::components::NodeConfig,
}

impl NodeEnv {
    pub fn load(path: &Path) -> Result<NodeEnv, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|e| NodeError::Env {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut env = NodeEnv::parse(&text).map_err(|message| NodeError::Env {
            path: path.display().to_string(),
            message,
        })?;
        // The user-data writes it next to the env file, only when the spec sets
        // something (spec::components::NODE_CONFIG_PATH).
        let config = path.with_file_name("node-config.yaml");
        match std::fs::read_to_string(&config) {
            Ok(text) => {
                env.config = NodeConfig::parse(&text).map_err(|message| NodeError::Env {
                    path: config.display().to_string(),
                    message,
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(NodeError::Env {
                    path: config.display().to_string(),
                    message: e.to_string(),
                });
            }
        }
        Ok(env)
    }

    pub fn parse(text: &str) -> Result<NodeEnv, String> {
        let mut vars = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected NAME='value'", n + 1))?;
            vars.insert(
                name.trim().to_string(),
                unquote(value).map_err(|e| format!("line {} ({name}): {e}", n + 1))?,
            );
        }
        let mut get = |k: &str| vars.remove(k).unwrap_or_default();
        let env = NodeEnv {
            cluster: get("KEELSON_CLUSTER"),
            role: get("KEELSON_ROLE"),
            instance_group: get("KEELSON_INSTANCE_GROUP"),
            kubernetes_version: get("KEELSON_KUBERNETES_VERSION"),
            state_bucket: get("KEELSON_STATE_BUCKET"),
            state_prefix: get("KEELSON_STATE_PREFIX"),
            api_name: get("KEELSON_API_NAME"),
            api_load_balancer: get("KEELSON_API_LOAD_BALANCER"),
            pod_cidr: get("KEELSON_POD_CIDR"),
            service_cidr: get("KEELSON_SERVICE_CIDR"),
            networking: get("KEELSON_NETWORKING"),
            node_labels: get("KEELSON_NODE_LABELS"),
            taints: get("KEELSON_TAINTS"),
            config: NodeConfig::default(),
        };
        if env.cluster.is_empty() {
            return Err("KEELSON_CLUSTER is missing".into());
        }
        Ok(env)
    }

    /// The state store holding this cluster, as `keelson --state` takes it.
    pub fn state_url(&self) -> Result<String, NodeError> {
        if self.state_bucket.is_empty() {
            return Err(NodeError::NoS3Store {
                cluster: self.cluster.clone(),
            });
        }
        // The cluster's prefix less its own name is the store's root.
        let prefix = self.state_prefix.trim_matches('/');
        let prefix = prefix
            .strip_suffix(self.cluster.as_str())
            .unwrap_or(prefix)
            .trim_end_matches('/');
        Ok(if prefix.is_empty() {
            format!("s3://{}", self.state_bucket)
        } else {
            format!("s3://{}/{prefix}", self.state_bucket)
        })
    }
}

/// The inverse of the template's `shell_quote`: `'it'\''s'` is `it's`.
fn unquote(v: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = v.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => out.push(c),
                    None => return Err("unterminated quote".into()),
                }
            },
            '\\' => out.push(chars.next().ok_or("a trailing backslash")?),
            c if c.is_whitespace() => return Err("unquoted space".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_template_writes() {
        let env = NodeEnv::parse(
            "KEELSON_CLUSTER='demo.k8s.local'\nKEELSON_ROLE='master'\n\
             KEELSON_STATE_BUCKET='b.dotted'\nKEELSON_STATE_PREFIX='team/demo.k8s.local/'\n\
             KEELSON_NODE_LABELS='a=it'\\''s'\n",
        )
        .unwrap();
        assert_eq!(env.cluster, "demo.k8s.local");
        assert_eq!(env.role, "master");
        assert_eq!(env.node_labels, "a=it's");
        assert_eq!(env.state_url().unwrap(), "s3://b.dotted/team");
        let root = NodeEnv::parse(
            "KEELSON_CLUSTER='c'\nKEELSON_STATE_BUCKET='b'\nKEELSON_STATE_PREFIX='c/'",
        )
        .unwrap();
        assert_eq!(root.state_url().unwrap(), "s3://b");
        assert!(NodeEnv::parse("KEELSON_ROLE='master'").is_err());
        assert!(NodeEnv::parse("KEELSON_CLUSTER='x").is_err());
    }
}
