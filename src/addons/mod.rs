//! Addon bundles (`addons/` at the top of the repository): the manifests a cluster
//! cannot live without, rendered for one cluster, and the bootstrap channel that
//! lists them in the order the first master applies them. Pure: writing them to
//! the state store is `ops::update`'s job.

use sha2::{Digest, Sha256};

use crate::spec::{Cluster, NetworkingPlugin};

#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    #[error("addon bundle {bundle}: the template does not render: {message}")]
    Render { bundle: String, message: String },
}

/// A bundle in `addons/`: one manifest template and its version.
struct Bundle {
    name: &'static str,
    template: &'static str,
}

const FLANNEL: Bundle = Bundle {
    name: "networking.flannel",
    template: include_str!("../../addons/networking.flannel/flannel.yaml.j2"),
};
const FLANNEL_VERSION: &str = "0.26.7";

const CILIUM: Bundle = Bundle {
    name: "networking.cilium",
    template: include_str!("../../addons/networking.cilium/cilium.yaml.j2"),
};
const CILIUM_VERSION: &str = "1.17.4";

const CLOUD_CONTROLLER: Bundle = Bundle {
    name: "aws-cloud-controller-manager",
    template: include_str!("../../addons/aws-cloud-controller-manager/ccm.yaml.j2"),
};

/// The channel's own path under `NAME/addons/`.
pub const CHANNEL: &str = "bootstrap-channel.yaml";

/// One rendered bundle, ready for the state store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub name: String,
    pub version: String,
    /// The path under `NAME/addons/`.
    pub path: String,
    pub manifest: String,
}

impl Rendered {
    pub fn hash(&self) -> String {
        format!(
            "sha256:{}",
            crate::plan::hex(&Sha256::digest(self.manifest.as_bytes()))
        )
    }
}

fn render(b: &Bundle, version: &str, image_tag: &str, c: &Cluster) -> Result<Rendered, AddonError> {
    let minor = c
        .spec
        .kubernetes_version
        .split('.')
        .nth(1)
        .unwrap_or_default();
    let ctx = minijinja::context! {
        cluster => c.name(),
        version => version,
        image_tag => image_tag,
        pod_cidr => crate::model::POD_CIDR,
        service_cidr => c.spec.service_cluster_ip_range.to_string(),
        kubernetes_version => c.spec.kubernetes_version,
        kubernetes_minor => minor,
    };
    let manifest = minijinja::Environment::new()
        .render_str(b.template, ctx)
        .map_err(|e| AddonError::Render {
            bundle: b.name.into(),
            message: e.to_string(),
        })?;
    Ok(Rendered {
        name: b.name.to_string(),
        version: version.to_string(),
        path: format!("{}/v{version}.yaml", b.name),
        manifest: format!("{}\n", manifest.trim_end()),
    })
}

/// The bootstrap bundles of a cluster, in the order they must be applied: the
/// network first (nothing else schedules before it), then the cloud controller
/// (which removes the `uninitialized` taint from nodes).
pub fn bootstrap_bundles(c: &Cluster) -> Result<Vec<Rendered>, AddonError> {
    let mut out = Vec::new();
    for plugin in c.spec.networking.plugins() {
        out.push(match plugin {
            NetworkingPlugin::Flannel => render(&FLANNEL, FLANNEL_VERSION, "", c)?,
            NetworkingPlugin::Cilium => render(&CILIUM, CILIUM_VERSION, "", c)?,
            // Validation refuses calico until its bundle exists; see spec::validate.
            NetworkingPlugin::Calico => continue,
        });
    }
    // The cloud controller is released per Kubernetes minor, as v1.MINOR.PATCH.
    let minor = c
        .spec
        .kubernetes_version
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    let version = format!("{minor}.0");
    out.push(render(
        &CLOUD_CONTROLLER,
        &version,
        &format!("v{version}"),
        c,
    )?);
    Ok(out)
}

/// The channel: what the first master applies, in order, with each manifest's
/// hash so that a changed bundle is visible in the state store's history.
pub fn channel(bundles: &[Rendered]) -> String {
    let mut s = String::from(
        "# Written by `keelson update cluster --yes`. The first master applies these\n\
         # manifests in this order with `kubectl apply --server-side`.\n\
         kind: Addons\nmetadata:\n  name: bootstrap\nspec:\n  addons:\n",
    );
    for b in bundles {
        s.push_str(&format!(
            "    - name: {}\n      version: {}\n      manifest: {}\n      manifestHash: {}\n",
            b.name,
            b.version,
            b.path,
            b.hash()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::defaults::{NewCluster, new_cluster};

    fn cluster(networking: NetworkingPlugin) -> Cluster {
        new_cluster(&NewCluster {
            name: "addons.k8s.local".into(),
            zones: vec!["us-east-1a".into()],
            networking: Some(networking),
            ..Default::default()
        })
        .unwrap()
        .0
    }

    #[test]
    fn bundles_and_channel() {
        for plugin in [NetworkingPlugin::Flannel, NetworkingPlugin::Cilium] {
            let c = cluster(plugin);
            let bundles = bootstrap_bundles(&c).unwrap();
            assert_eq!(bundles.len(), 2);
            assert_eq!(bundles[0].name, format!("networking.{}", plugin.as_str()));
            assert!(bundles[0].manifest.contains(crate::model::POD_CIDR));
            assert_eq!(bundles[1].name, "aws-cloud-controller-manager");
            let ch = channel(&bundles);
            // The bootstrap script reads the manifests with this sed expression.
            let listed: Vec<&str> = ch
                .lines()
                .filter_map(|l| l.trim_start().strip_prefix("manifest: "))
                .collect();
            assert_eq!(listed, [bundles[0].path.as_str(), bundles[1].path.as_str()]);
            for b in &bundles {
                insta::assert_snapshot!(format!("{}_{}", plugin.as_str(), b.name), b.manifest);
            }
        }
    }
}
