//! `replace -f`: the same YAML `edit` shows, from a file or stdin. Every object in
//! the input must belong to one cluster; all are validated together before any is
//! written.

use crate::spec::parse::Object;
use crate::state::{StateStore, lock::with_lock};

use super::{ClusterSpecs, OpsError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Replaced(String),
    Created(String),
    Unchanged(String),
}

/// Which cluster the objects belong to: the Cluster's name, the groups' label, or
/// `--name`; they must agree.
pub fn cluster_of(objects: &[Object], flag: Option<&str>) -> Result<String, OpsError> {
    let mut names: Vec<(String, String)> = Vec::new();
    for o in objects {
        match o {
            Object::Cluster(c) => {
                names.push((format!("Cluster {}", c.name()), c.name().to_string()))
            }
            Object::InstanceGroup(g) => {
                let labels = g.cluster_labels();
                if labels.is_empty() && flag.is_none() {
                    return Err(OpsError::Usage(format!(
                        "InstanceGroup {}: metadata.labels[{}] is missing; add the label or pass --name CLUSTER",
                        g.name(),
                        crate::spec::CLUSTER_LABEL
                    )));
                }
                for (label, value) in labels {
                    names.push((
                        format!("InstanceGroup {} (label {label})", g.name()),
                        value.to_string(),
                    ));
                }
            }
        }
    }
    if let Some(f) = flag {
        names.push(("--name".into(), f.to_string()));
    }
    let first = names.first().map(|n| n.1.clone()).unwrap_or_default();
    if let Some((who, other)) = names.iter().find(|n| n.1 != first) {
        return Err(OpsError::Usage(format!(
            "{who} names cluster {other}, but {} names cluster {first}; an object goes into one cluster only: fix the label (or --name), and replace one cluster at a time",
            names[0].0
        )));
    }
    Ok(first)
}

/// Replaces (or with `force`, creates) the objects, validating the result as a whole.
pub async fn replace(
    store: &StateStore,
    objects: Vec<Object>,
    flag: Option<&str>,
    force: bool,
) -> Result<Vec<Change>, OpsError> {
    let name = cluster_of(&objects, flag)?;
    with_lock(store, &name, "keelson replace", async {
        let exists = store.cluster_exists(&name).await?;
        let current = if exists { Some(ClusterSpecs::read(store, &name).await?) } else { None };
        // A status (from `get cluster -o yaml`) is keelson's to keep, not input.
        let new_cluster = objects.iter().find_map(|o| match o {
            Object::Cluster(c) => Some(crate::spec::Cluster { status: None, ..(**c).clone() }),
            _ => None,
        });
        let mut specs = match (&current, new_cluster) {
            (Some(cur), Some(c)) => ClusterSpecs { cluster: c, groups: cur.groups.clone() },
            (Some(cur), None) => cur.clone(),
            (None, Some(c)) if force => ClusterSpecs { cluster: c, groups: Vec::new() },
            (None, _) => {
                return Err(crate::state::StateError::ClusterNotFound { cluster: name.clone(), store: store.url().to_string() }.into());
            }
        };
        for o in &objects {
            if let Object::InstanceGroup(g) = o {
                let mut g = (**g).clone();
                g.metadata.labels.entry(crate::spec::CLUSTER_LABEL.to_string()).or_insert_with(|| name.clone());
                if current.as_ref().and_then(|c| c.group(g.name())).is_none() && !force {
                    return Err(OpsError::Usage(format!(
                        "instance group {} does not exist in cluster {name}; pass --force to create it, or use keelson create instancegroup",
                        g.name()
                    )));
                }
                specs.put_group(g);
            }
        }
        specs.validate()?;
        if exists {
            let applied = store.read_status(&name).await?;
            super::upgrade::check_applied(applied.as_ref(), &specs.cluster.spec.kubernetes_version)?;
        }
        let mut changes = Vec::new();
        let old_cluster = current.as_ref().map(|c| &c.cluster);
        for g in &specs.groups {
            let old = current.as_ref().and_then(|c| c.group(g.name()));
            let label = format!("instancegroup/{}", g.name());
            match old {
                Some(o) if o == g => {
                    if objects.iter().any(|x| matches!(x, Object::InstanceGroup(y) if y.name() == g.name())) {
                        changes.push(Change::Unchanged(label));
                    }
                }
                Some(_) => {
                    store.write_group(&name, g).await?;
                    changes.push(Change::Replaced(label));
                }
                None => {
                    store.write_group(&name, g).await?;
                    changes.push(Change::Created(label));
                }
            }
        }
        // The config last, as in create: it is what makes a cluster exist.
        let label = format!("cluster/{name}");
        match old_cluster {
            Some(c) if *c == specs.cluster => {
                if objects.iter().any(|o| matches!(o, Object::Cluster(_))) {
                    changes.push(Change::Unchanged(label));
                }
            }
            Some(_) => {
                store.write_cluster(&specs.cluster).await?;
                changes.push(Change::Replaced(label));
            }
            None => {
                store.write_cluster(&specs.cluster).await?;
                changes.push(Change::Created(label));
            }
        }
        Ok(changes)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(labels: &str) -> Vec<Object> {
        let yaml = format!(
            "apiVersion: keelson.dev/v1alpha1\nkind: InstanceGroup\nmetadata:\n  name: nodes\n  labels:\n{labels}spec:\n  role: Node\n  image: ami-0123456789abcdef0\n  machineType: t3.medium\n  minSize: 1\n  maxSize: 1\n  subnets: [us-east-1a]\n  rootVolume: {{size: 64, type: gp3, encrypted: true}}\n"
        );
        crate::spec::parse::parse_objects(&yaml, "ig.yaml").unwrap()
    }

    #[test]
    fn a_group_labelled_for_another_cluster_is_refused_with_both_names() {
        for label in ["kops.k8s.io/cluster", "keelson.dev/cluster"] {
            let objects = group(&format!("    {label}: other.k8s.local\n"));
            let e = cluster_of(&objects, Some("this.k8s.local"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("other.k8s.local") && e.contains("this.k8s.local") && e.contains(label),
                "{e}"
            );
        }
        // Both labels, disagreeing, without --name.
        let objects =
            group("    keelson.dev/cluster: a.k8s.local\n    kops.k8s.io/cluster: b.k8s.local\n");
        let e = cluster_of(&objects, None).unwrap_err().to_string();
        assert!(
            e.contains("a.k8s.local") && e.contains("b.k8s.local"),
            "{e}"
        );
        // Agreeing labels and flag are fine.
        let objects = group("    kops.k8s.io/cluster: this.k8s.local\n");
        assert_eq!(
            cluster_of(&objects, Some("this.k8s.local")).unwrap(),
            "this.k8s.local"
        );
    }
}
