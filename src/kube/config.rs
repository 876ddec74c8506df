//! kubeconfig files: the clusters, users and contexts keelson needs to reach a
//! cluster's API (CA, client certificate and key as data or files, or a token).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::KubeError;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(default)]
    current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: Option<T>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    server: String,
    certificate_authority_data: Option<String>,
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    client_certificate_data: Option<String>,
    client_certificate: Option<PathBuf>,
    client_key_data: Option<String>,
    client_key: Option<PathBuf>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    exec: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct ContextEntry {
    cluster: String,
    #[serde(default)]
    user: String,
}

/// Everything needed to connect, resolved from one context.
#[derive(Clone)]
pub struct Connection {
    pub context: String,
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    pub token: Option<String>,
}

/// The kubeconfig files to read: `--kubeconfig`, else `$KUBECONFIG` (a
/// colon-separated list, the first file naming an entry wins, as kubectl merges),
/// else `~/.kube/config`. The first is also where `export kubecfg` writes.
pub fn paths(explicit: Option<&Path>) -> Vec<PathBuf> {
    paths_in(
        explicit,
        std::env::var_os("KUBECONFIG").as_deref(),
        std::env::var_os("HOME").map(PathBuf::from).as_deref(),
    )
}

/// [`paths`] with the environment passed in.
pub fn paths_in(
    explicit: Option<&Path>,
    kubeconfig: Option<&std::ffi::OsStr>,
    home: Option<&Path>,
) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    if let Some(list) = kubeconfig.filter(|v| !v.is_empty()) {
        return std::env::split_paths(list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    home.map(|h| vec![h.join(".kube/config")])
        .unwrap_or_default()
}

/// Resolves the context named `preferred` (keelson names it after the cluster),
/// else the current context.
pub fn load(explicit: Option<&Path>, preferred: &str) -> Result<Connection, KubeError> {
    let files = paths(explicit);
    let mut merged = File::default();
    let mut read_any = false;
    for path in &files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            // Missing files in $KUBECONFIG are skipped, as kubectl does; an explicit one is not.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => continue,
            Err(e) => return Err(KubeError::Config(format!("{}: {e}", path.display()))),
        };
        read_any = true;
        let f: File = serde_yaml::from_str(&text).map_err(|e| {
            KubeError::Config(format!("{} is not a valid kubeconfig: {e}", path.display()))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        merged.clusters.extend(f.clusters.into_iter().map(|mut c| {
            if let Some(v) = c.value.as_mut() {
                v.certificate_authority = v.certificate_authority.take().map(|p| base.join(p));
            }
            c
        }));
        merged.users.extend(f.users.into_iter().map(|mut u| {
            if let Some(v) = u.value.as_mut() {
                for p in [
                    &mut v.client_certificate,
                    &mut v.client_key,
                    &mut v.token_file,
                ] {
                    *p = p.take().map(|p| base.join(p));
                }
            }
            u
        }));
        merged.contexts.extend(f.contexts);
        merged.current_context = merged.current_context.or(f.current_context);
    }
    let shown = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    if !read_any {
        return Err(KubeError::Config(format!(
            "no kubeconfig found (looked at {shown}); pass --kubeconfig FILE or set KUBECONFIG"
        )));
    }
    let find = |name: &str| {
        merged
            .contexts
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.value.clone())
            .map(|v| (name.to_string(), v))
    };
    let (context, ctx) = find(preferred)
        .or_else(|| merged.current_context.as_deref().and_then(find))
        .ok_or_else(|| {
            KubeError::Config(format!(
                "kubeconfig {shown} has no context named {preferred} and no current-context; \
                 export one with `keelson export kubeconfig {preferred} --admin` or pass --kubeconfig"
            ))
        })?;
    let cluster = merged
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.value.clone())
        .ok_or_else(|| {
            KubeError::Config(format!(
                "kubeconfig context {context} names cluster {:?}, which the kubeconfig does not define",
                ctx.cluster
            ))
        })?;
    let user = merged
        .users
        .iter()
        .find(|u| u.name == ctx.user)
        .and_then(|u| u.value.clone())
        .unwrap_or_default();
    if cluster.insecure_skip_tls_verify {
        return Err(KubeError::Config(format!(
            "kubeconfig cluster {}: insecure-skip-tls-verify is not supported; give certificate-authority-data",
            ctx.cluster
        )));
    }
    if user.exec.is_some() {
        return Err(KubeError::Config(format!(
            "kubeconfig user {}: exec credential plugins are not supported; use a client certificate or a token",
            ctx.user
        )));
    }
    let data = |field: &str,
                b64: &Option<String>,
                file: &Option<PathBuf>|
     -> Result<Option<Vec<u8>>, KubeError> {
        if let Some(d) = b64 {
            let d: String = d.split_whitespace().collect();
            return base64::Engine::decode(&base64::engine::general_purpose::STANDARD, d)
                .map(Some)
                .map_err(|e| {
                    KubeError::Config(format!(
                        "kubeconfig context {context}: {field}-data is not base64: {e}"
                    ))
                });
        }
        match file {
            Some(p) => std::fs::read(p).map(Some).map_err(|e| {
                KubeError::Config(format!(
                    "kubeconfig context {context}: {field} {}: {e}",
                    p.display()
                ))
            }),
            None => Ok(None),
        }
    };
    let ca_pem = data(
        "certificate-authority",
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    )?
    .ok_or_else(|| {
        KubeError::Config(format!(
            "kubeconfig cluster {} has no certificate-authority(-data); keelson always verifies the API server",
            ctx.cluster
        ))
    })?;
    let token = match (&user.token, &user.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(p)) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| {
                    KubeError::Config(format!("kubeconfig tokenFile {}: {e}", p.display()))
                })?
                .trim()
                .to_string(),
        ),
        _ => None,
    };
    Ok(Connection {
        server: cluster.server.trim_end_matches('/').to_string(),
        ca_pem,
        client_cert_pem: data(
            "client-certificate",
            &user.client_certificate_data,
            &user.client_certificate,
        )?,
        client_key_pem: data("client-key", &user.client_key_data, &user.client_key)?,
        token,
        context,
    })
}
