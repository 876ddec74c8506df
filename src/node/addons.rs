//! The masters' addon applier: each bundle of the channel applied on its own
//! (server-side, field manager `keelson`), so that a failing bundle does not
//! block the others; then the objects that left the bundle pruned. kubectl's
//! `apply --prune` is not available with `--server-side` in every version, so
//! the applier lists the bundle's objects by its labels
//! (`addons.keelson.dev/bundle`, `app.kubernetes.io/managed-by: keelson`) and
//! deletes those the manifest no longer has. What was applied is recorded on
//! the `kube-system` namespace (`addons.keelson.dev/NAME: VERSION sha256:HEX`),
//! which is how a bundle that left the channel altogether is found and pruned,
//! and what `keelson get addons` reads. Every command goes through [`Host`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::NodeError;
use super::host::Host;
use crate::addons::{APPLIED_ANNOTATION, BUNDLE_LABEL, CLUSTER_SCOPED, MANAGED_BY, PRUNABLE};

/// One bundle of the channel, its manifest checked against the channel's hash.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub name: String,
    pub version: String,
    pub hash: String,
    /// The manifest's path under `addons/`.
    pub manifest: String,
    pub body: Vec<u8>,
}

pub struct Applier<'a> {
    pub host: &'a dyn Host,
    pub kubeconfig: &'a str,
    /// Where manifests are written before kubectl reads them.
    pub dir: PathBuf,
    pub attempts: u32,
    pub retry_pause: Duration,
    pub log: &'a (dyn Fn(&str) + Send + Sync),
}

/// What one pass did, per bundle.
#[derive(Debug, Default)]
pub struct Report {
    pub applied: Vec<String>,
    /// (bundle, object `resource/name` or `resource/namespace/name`) deleted.
    pub pruned: Vec<(String, String)>,
    pub failed: Vec<(String, NodeError)>,
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// kubectl's name for a kind's resource: `plural` or `plural.group`.
fn resource(kind: &str) -> Option<String> {
    PRUNABLE
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, g, r)| {
            if g.is_empty() {
                r.to_string()
            } else {
                format!("{r}.{g}")
            }
        })
}

impl Applier<'_> {
    fn kubectl(&self, args: &[&str]) -> Vec<String> {
        let mut a = strings(&["--kubeconfig", self.kubeconfig]);
        a.extend(strings(args));
        a
    }

    async fn retried(&self, what: &str, args: &[String]) -> Result<(), NodeError> {
        let mut attempt = 1;
        loop {
            match self.host.run("kubectl", args, &[]) {
                Ok(()) => return Ok(()),
                Err(e) if attempt < self.attempts => {
                    (self.log)(&format!(
                        "applying {what} failed ({e}; attempt {attempt}); retrying"
                    ));
                    attempt += 1;
                    tokio::time::sleep(self.retry_pause).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn apply_args(&self, file: &Path) -> Vec<String> {
        self.kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "keelson",
            "-f",
            &file.display().to_string(),
        ])
    }

    /// Applies every bundle in order, then prunes what left them; bundles that
    /// were applied before but are not in `bundles` are pruned whole.
    pub async fn apply(&self, bundles: &[Bundle]) -> Report {
        let mut report = Report::default();
        for b in bundles {
            match self.apply_one(b, &mut report).await {
                Ok(()) => {
                    (self.log)(&format!("applied {}", b.manifest));
                    report.applied.push(b.name.clone());
                }
                Err(e) => {
                    (self.log)(&format!("bundle {} failed: {e}", b.name));
                    report.failed.push((b.name.clone(), e));
                }
            }
        }
        let wanted: BTreeSet<&str> = bundles.iter().map(|b| b.name.as_str()).collect();
        match self.recorded() {
            Ok(recorded) => {
                for gone in recorded.iter().filter(|n| !wanted.contains(n.as_str())) {
                    let r = self
                        .prune(gone, &BTreeSet::new(), &mut report)
                        .and_then(|()| {
                            let key = format!("{APPLIED_ANNOTATION}{gone}-");
                            self.host.run(
                                "kubectl",
                                &self.kubectl(&["annotate", "namespace", "kube-system", &key]),
                                &[],
                            )
                        });
                    if let Err(e) = r {
                        report.failed.push((gone.clone(), e));
                    } else {
                        (self.log)(&format!("removed bundle {gone}"));
                    }
                }
            }
            Err(e) => report.failed.push(("kube-system namespace".into(), e)),
        }
        report
    }

    async fn apply_one(&self, b: &Bundle, report: &mut Report) -> Result<(), NodeError> {
        let file = self.dir.join(&b.manifest);
        if let Some(parent) = file.parent() {
            self.host.create_dir(parent, 0o700)?;
        }
        self.host.write_file(&file, &b.body, 0o600)?;
        let text = String::from_utf8_lossy(&b.body);
        // CRDs first, on their own, and established before anything uses them:
        // kubectl maps every object of a file before it applies any.
        let crds = crds(&text);
        if !crds.is_empty() {
            let crd_file = file.with_extension("crds.yaml");
            self.host
                .write_file(&crd_file, crds_manifest(&text).as_bytes(), 0o600)?;
            self.retried(&b.manifest, &self.apply_args(&crd_file))
                .await?;
            let mut wait = strings(&["wait", "--for", "condition=established", "--timeout=60s"]);
            wait.extend(crds.iter().map(|n| format!("crd/{n}")));
            let wait: Vec<&str> = wait.iter().map(String::as_str).collect();
            self.retried(&b.manifest, &self.kubectl(&wait)).await?;
        }
        self.retried(&b.manifest, &self.apply_args(&file)).await?;
        self.prune(&b.name, &crate::addons::manifest_objects(&text), report)?;
        let value = format!("{}{}={} {}", APPLIED_ANNOTATION, b.name, b.version, b.hash);
        self.host.run(
            "kubectl",
            &self.kubectl(&[
                "annotate",
                "--overwrite",
                "namespace",
                "kube-system",
                &value,
            ]),
            &[],
        )
    }

    /// Deletes the bundle's labelled objects that `keep` does not list.
    fn prune(
        &self,
        bundle: &str,
        keep: &BTreeSet<(String, String, String)>,
        report: &mut Report,
    ) -> Result<(), NodeError> {
        let types: Vec<String> = PRUNABLE
            .iter()
            .filter_map(|(k, _, _)| resource(k))
            .collect();
        let selector = format!("{BUNDLE_LABEL}={bundle},{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let out = self.host.output(
            "kubectl",
            &self.kubectl(&[
                "get",
                &types.join(","),
                "--all-namespaces",
                "-l",
                &selector,
                "-o",
                "json",
            ]),
        )?;
        let list: serde_json::Value = serde_json::from_str(&out).map_err(|e| NodeError::Addon {
            manifest: bundle.to_string(),
            message: format!("kubectl get printed no JSON list: {e}"),
        })?;
        for item in list["items"].as_array().into_iter().flatten() {
            let kind = item["kind"].as_str().unwrap_or_default().to_string();
            let name = item["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ns = item["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if keep.contains(&(kind.clone(), ns.clone(), name.clone())) {
                continue;
            }
            let Some(res) = resource(&kind) else { continue };
            let mut args = vec!["delete", res.as_str(), name.as_str(), "--ignore-not-found"];
            if !ns.is_empty() && !CLUSTER_SCOPED.contains(&kind.as_str()) {
                args.extend(["-n", ns.as_str()]);
            }
            self.host.run("kubectl", &self.kubectl(&args), &[])?;
            let what = if ns.is_empty() {
                format!("{res}/{name}")
            } else {
                format!("{res}/{ns}/{name}")
            };
            (self.log)(&format!("pruned {what} (no longer in bundle {bundle})"));
            report.pruned.push((bundle.to_string(), what));
        }
        Ok(())
    }

    /// The bundles the `kube-system` namespace records as applied.
    fn recorded(&self) -> Result<Vec<String>, NodeError> {
        let out = self.host.output(
            "kubectl",
            &self.kubectl(&["get", "namespace", "kube-system", "-o", "json"]),
        )?;
        let ns: serde_json::Value = serde_json::from_str(&out).map_err(|e| NodeError::Addon {
            manifest: "kube-system namespace".into(),
            message: format!("kubectl get printed no JSON: {e}"),
        })?;
        Ok(applied_versions(&ns).into_iter().map(|(n, _)| n).collect())
    }
}

/// (bundle, `VERSION sha256:HEX`) from a `kube-system` Namespace's annotations.
pub fn applied_versions(namespace: &serde_json::Value) -> Vec<(String, String)> {
    namespace["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(APPLIED_ANNOTATION)?;
            Some((name.to_string(), v.as_str()?.to_string()))
        })
        .collect()
}

fn docs(text: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|d| serde_yaml::Value::deserialize(d).ok())
        .filter(|v| !v.is_null())
        .collect()
}

fn is_crd(v: &serde_yaml::Value) -> bool {
    v.get("kind").and_then(serde_yaml::Value::as_str) == Some("CustomResourceDefinition")
}

fn crds(text: &str) -> Vec<String> {
    docs(text)
        .iter()
        .filter(|v| is_crd(v))
        .filter_map(|v| v["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn crds_manifest(text: &str) -> String {
    docs(text)
        .iter()
        .filter(|v| is_crd(v))
        .map(|v| serde_yaml::to_string(v).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::host::Recorder;

    const K: &str = "kubectl --kubeconfig /k";

    fn bundle(name: &str, body: &str) -> Bundle {
        Bundle {
            name: name.into(),
            version: "1.0.0".into(),
            hash: "sha256:00".into(),
            manifest: format!("{name}/v1.0.0.yaml"),
            body: body.as_bytes().to_vec(),
        }
    }

    fn listing(bundle: &str) -> String {
        let types: Vec<String> = PRUNABLE
            .iter()
            .filter_map(|(k, _, _)| resource(k))
            .collect();
        format!(
            "{K} get {} --all-namespaces -l {BUNDLE_LABEL}={bundle},",
            types.join(",")
        )
    }

    #[tokio::test]
    async fn each_bundle_applies_alone_then_what_left_it_is_pruned() {
        let rec = Recorder::new();
        let cm = |name: &str| {
            format!(
                r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "{name}", "namespace": "kube-system"}}}}"#
            )
        };
        rec.answer(
            &listing("a"),
            &format!(r#"{{"items": [{}, {}]}}"#, cm("keep"), cm("old")),
        );
        rec.answer(&listing("c"), r#"{"items": []}"#);
        rec.answer(
            &listing("gone"),
            r#"{"items": [{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "gp9"}}]}"#,
        );
        rec.answer(
            &format!("{K} get namespace kube-system"),
            r#"{"metadata": {"annotations": {"addons.keelson.dev/a": "0.9.0 sha256:01", "addons.keelson.dev/gone": "1.0.0 sha256:02", "other": "x"}}}"#,
        );
        rec.fail(
            &format!("{K} apply --server-side --force-conflicts --field-manager keelson -f /w/b/"),
            2,
        );
        let log = |_: &str| {};
        let applier = Applier {
            host: &rec,
            kubeconfig: "/k",
            dir: PathBuf::from("/w"),
            attempts: 2,
            retry_pause: Duration::ZERO,
            log: &log,
        };
        let keep =
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  namespace: kube-system\n";
        let report = applier
            .apply(&[bundle("a", keep), bundle("b", keep), bundle("c", keep)])
            .await;
        assert_eq!(
            report.applied,
            ["a", "c"],
            "a failing bundle does not block c"
        );
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, "b");
        assert_eq!(
            report.pruned,
            [
                ("a".to_string(), "configmaps/kube-system/old".to_string()),
                (
                    "gone".to_string(),
                    "storageclasses.storage.k8s.io/gp9".to_string()
                ),
            ]
        );
        let t = rec.transcript().join("\n");
        // b is not pruned: its apply failed, so what is live stays.
        assert!(!t.contains(&format!("{BUNDLE_LABEL}=b,")), "{t}");
        insta::assert_snapshot!("addon_applier", t);
    }

    #[tokio::test]
    async fn crds_are_applied_and_established_first() {
        let rec = Recorder::new();
        rec.answer(&format!("{K} get "), r#"{"items": []}"#);
        rec.answer(&format!("{K} get namespace"), r#"{"metadata": {}}"#);
        let log = |_: &str| {};
        let applier = Applier {
            host: &rec,
            kubeconfig: "/k",
            dir: PathBuf::from("/w"),
            attempts: 1,
            retry_pause: Duration::ZERO,
            log: &log,
        };
        let body = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n";
        let report = applier.apply(&[bundle("x", body)]).await;
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let runs: Vec<String> = rec
            .transcript()
            .into_iter()
            .filter(|l| l.starts_with("run: "))
            .collect();
        assert!(runs[0].ends_with("-f /w/x/v1.0.0.crds.yaml"), "{runs:#?}");
        assert!(
            runs[1]
                .contains("wait --for condition=established --timeout=60s crd/widgets.example.com")
        );
        assert!(runs[2].ends_with("-f /w/x/v1.0.0.yaml"));
        assert_eq!(
            rec.writes("/w/x/v1.0.0.crds.yaml"),
            [
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n"
            ]
        );
    }
}
