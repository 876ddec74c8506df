//! `export kubecfg`: a cluster, user and context merged into a kubeconfig file,
//! with an admin client certificate signed by the cluster CA (kops' `--admin`).

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::state::StateStore;

use super::OpsError;

#[derive(Debug, thiserror::Error)]
pub enum KubecfgError {
    #[error(
        "the API endpoint of cluster {cluster:?} is not known yet; run `keelson update cluster {cluster} --yes` first"
    )]
    NoEndpoint { cluster: String },
    #[error(
        "cluster {cluster:?} has no CA in the state store; run `keelson update cluster {cluster} --yes` to create its PKI"
    )]
    NoCa { cluster: String },
    #[error("--kubeconfig {path}: {message}; fix or move the file (nothing was written)")]
    File { path: String, message: String },
    #[error("no kubeconfig path: set --kubeconfig PATH or KUBECONFIG, or HOME for ~/.kube/config")]
    NoPath,
}

/// Where the kubeconfig goes: the first file [`crate::kube::config::paths`]
/// names, as kubectl writes to it.
pub fn kubeconfig_path(flag: Option<&Path>) -> Result<PathBuf, KubecfgError> {
    crate::kube::config::paths(flag)
        .into_iter()
        .next()
        .ok_or(KubecfgError::NoPath)
}

/// Exports the admin credential of `cluster` into the file at `path`; returns the
/// server it points at.
pub async fn export(
    store: &StateStore,
    cluster: &str,
    admin: std::time::Duration,
    path: &Path,
) -> Result<String, OpsError> {
    let c = store.read_cluster(cluster).await?;
    let host = match crate::model::load_balancers::api_dns_name(&c) {
        Some(name) => name,
        None => store
            .read_status(cluster)
            .await?
            .and_then(|s| s.api_endpoint)
            .ok_or_else(|| KubecfgError::NoEndpoint {
                cluster: cluster.into(),
            })?,
    };
    let server = format!("https://{host}");
    let (ca_cert, ca_key) = store
        .read_ca(cluster)
        .await?
        .ok_or_else(|| KubecfgError::NoCa {
            cluster: cluster.into(),
        })?;
    let (cert, key) = crate::pki::admin_credential(&ca_key, admin)?;
    let existing = read(path)?;
    let merged = merge(existing, cluster, &server, &ca_cert, &cert, key.expose());
    write(path, &merged)?;
    Ok(server)
}

fn file_err(path: &Path, message: impl ToString) -> KubecfgError {
    KubecfgError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn read(path: &Path) -> Result<Option<Value>, KubecfgError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => serde_yaml::from_str::<Value>(&text)
            .map(Some)
            .map_err(|e| file_err(path, format!("is not a kubeconfig ({e})"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(path, e)),
    }
}

fn b64(s: &str) -> Value {
    use base64::Engine as _;
    Value::from(base64::engine::general_purpose::STANDARD.encode(s))
}

fn entry(name: &str, key: &str, body: Mapping) -> Value {
    let mut m = Mapping::new();
    m.insert("name".into(), name.into());
    m.insert(key.into(), Value::Mapping(body));
    Value::Mapping(m)
}

/// Replaces the entry named `name` in the list `list` of `config`, or appends it.
fn upsert(config: &mut Mapping, list: &str, name: &str, value: Value) {
    let items = config
        .entry(list.into())
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if !items.is_sequence() {
        *items = Value::Sequence(Vec::new());
    }
    let seq = items.as_sequence_mut().expect("made a sequence above");
    match seq
        .iter_mut()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
    {
        Some(slot) => *slot = value,
        None => seq.push(value),
    }
}

/// The kubeconfig with this cluster's entries added or replaced, everything else kept.
pub fn merge(
    existing: Option<Value>,
    cluster: &str,
    server: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Value {
    let mut config = match existing {
        Some(Value::Mapping(m)) => m,
        _ => Mapping::new(),
    };
    config.insert("apiVersion".into(), "v1".into());
    config.insert("kind".into(), "Config".into());
    let mut c = Mapping::new();
    c.insert("server".into(), server.into());
    c.insert("certificate-authority-data".into(), b64(ca_pem));
    upsert(
        &mut config,
        "clusters",
        cluster,
        entry(cluster, "cluster", c),
    );
    let mut u = Mapping::new();
    u.insert("client-certificate-data".into(), b64(cert_pem));
    u.insert("client-key-data".into(), b64(key_pem));
    upsert(&mut config, "users", cluster, entry(cluster, "user", u));
    let mut x = Mapping::new();
    x.insert("cluster".into(), cluster.into());
    x.insert("user".into(), cluster.into());
    upsert(
        &mut config,
        "contexts",
        cluster,
        entry(cluster, "context", x),
    );
    config.insert("current-context".into(), cluster.into());
    Value::Mapping(config)
}

/// Written whole and owner-only (it holds a private key), replacing the old file
/// in one rename.
fn write(path: &Path, config: &Value) -> Result<(), KubecfgError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let text = serde_yaml::to_string(config).map_err(|e| file_err(path, e))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| file_err(path, e))?;
    let tmp = dir.join(format!(
        ".{}.keelson-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(file_err(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_other_entries_and_replaces_ours() {
        let other: Value = serde_yaml::from_str(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: https://o}\n\
             users:\n- name: other\n  user: {token: t}\ncontexts:\n- name: other\n  context: {cluster: other, user: other}\n\
             current-context: other\npreferences: {}\n",
        )
        .unwrap();
        let once = merge(Some(other), "c.k8s.local", "https://a", "CA", "CERT", "KEY");
        let twice = merge(
            Some(once.clone()),
            "c.k8s.local",
            "https://b",
            "CA",
            "CERT",
            "KEY",
        );
        for list in ["clusters", "users", "contexts"] {
            let names: Vec<&str> = twice[list]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["other", "c.k8s.local"], "{list}");
        }
        assert_eq!(twice["clusters"][1]["cluster"]["server"], "https://b");
        assert_eq!(twice["current-context"], "c.k8s.local");
        assert!(twice.get("preferences").is_some());
    }

    #[test]
    fn path_order() {
        use crate::kube::config::paths_in;
        let home = Path::new("/home/u");
        let env = |v: &str| Some(std::ffi::OsStr::new(v).to_owned());
        assert_eq!(
            paths_in(Some(Path::new("/x")), env("/y").as_deref(), Some(home)),
            [Path::new("/x")]
        );
        assert_eq!(
            paths_in(None, env(":/y:/z").as_deref(), Some(home)),
            [Path::new("/y"), Path::new("/z")]
        );
        assert_eq!(
            paths_in(None, None, Some(home)),
            [Path::new("/home/u/.kube/config")]
        );
        assert!(paths_in(None, env("").as_deref(), None).is_empty());
    }
}
