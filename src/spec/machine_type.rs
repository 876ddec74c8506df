//! Machine types against what the region offers: each group's type must be
//! offered in every zone of its subnets, and must run its image's architecture
//! (kops refuses both at create). Pure: the AWS answers come in as
//! [`Offerings`] (`aws::instance_types` reads them).

use std::collections::{BTreeMap, BTreeSet};

use super::validate::{FieldError, ValidationErrors};
use super::{Cluster, InstanceGroup};

/// What AWS said, for the groups' types and images.
#[derive(Debug, Clone, Default)]
pub struct Offerings {
    /// Per zone, the asked-for types offered there.
    pub offered: BTreeMap<String, BTreeSet<String>>,
    /// Every type offered in the zones, for suggestions (read only when a type
    /// is not offered; empty otherwise).
    pub all: BTreeSet<String>,
    /// The architectures each type supports (`x86_64`, `arm64`).
    pub architectures: BTreeMap<String, Vec<String>>,
    /// Each image's architecture, by AMI id (an image AWS did not describe is
    /// not checked).
    pub images: BTreeMap<String, String>,
    /// Each described image's state (`available`, `pending`, `failed`, ...).
    pub image_states: BTreeMap<String, String>,
    /// The vCPUs of each type (for the quota check).
    pub vcpus: BTreeMap<String, u64>,
    /// DescribeImages was asked about every AMI id of the groups: an id it did not
    /// describe does not exist in the region, or is not visible to this account.
    pub images_described: bool,
}

/// The zones of a group's subnets.
pub fn zones_of(cluster: &Cluster, group: &InstanceGroup) -> BTreeSet<String> {
    group
        .spec
        .subnets
        .iter()
        .filter_map(|s| cluster.spec.subnets.iter().find(|c| &c.name == s))
        .map(|s| s.zone.clone())
        .collect()
}

/// Checks every group. `images` maps a group's `spec.image` to its AMI id.
pub fn check(
    cluster: &Cluster,
    groups: &[InstanceGroup],
    images: &BTreeMap<String, String>,
    o: &Offerings,
) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    let region = cluster.region().unwrap_or_default();
    for g in groups {
        let ami = images.get(&g.spec.image).unwrap_or(&g.spec.image);
        if o.images_described && ami.starts_with("ami-") {
            let field = format!("InstanceGroup {} spec.image", g.name());
            let fix = format!(
                "use an image that exists in {region} and is available, by AMI id or OWNER/NAME (find one with `aws ec2 describe-images --region {region} --owners 099720109477 --filters 'Name=name,Values=ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*'`); --image at create, or keelson edit ig {}",
                g.name()
            );
            match o.image_states.get(ami) {
                None => {
                    errors.push(FieldError::new(
                        &field,
                        &g.spec.image,
                        format!("does not exist in {region}, or is not visible to this account"),
                        fix,
                    ));
                    continue;
                }
                Some(state) if state != "available" => {
                    errors.push(FieldError::new(
                        &field,
                        &g.spec.image,
                        format!("is {state}, not available: instances cannot launch from it"),
                        fix,
                    ));
                    continue;
                }
                Some(_) => {}
            }
        }
        // The group's type, and every type its mixed instances policy may launch.
        let mixed = g
            .spec
            .mixed_instances_policy
            .iter()
            .flat_map(|p| p.instances.iter().enumerate())
            .map(|(i, t)| (format!("spec.mixedInstancesPolicy.instances[{i}]"), t));
        for (path, t) in
            std::iter::once(("spec.machineType".to_string(), &g.spec.machine_type)).chain(mixed)
        {
            let field = format!("InstanceGroup {} {path}", g.name());
            let missing: Vec<String> = zones_of(cluster, g)
                .into_iter()
                .filter(|z| !o.offered.get(z).is_some_and(|s| s.contains(t)))
                .collect();
            if !missing.is_empty() {
                let near = suggestions(t, &o.all);
                let fix = if near.is_empty() {
                    format!(
                        "use an instance type offered there (aws ec2 describe-instance-type-offerings --location-type availability-zone --filters Name=location,Values={}); set it with keelson edit ig {}",
                        missing.join(","),
                        g.name()
                    )
                } else {
                    format!(
                        "did you mean {}? set it with keelson edit ig {} (or --node-size / --master-size at create)",
                        near.join(", "),
                        g.name()
                    )
                };
                errors.push(FieldError::new(
                    &field,
                    t,
                    format!("is not offered in {}", missing.join(", ")),
                    fix,
                ));
                continue;
            }
            if let (Some(arch), Some(supported)) = (o.images.get(ami), o.architectures.get(t))
                && !supported.iter().any(|a| a == arch)
            {
                errors.push(FieldError::new(
                &field,
                t,
                format!(
                    "runs {}, but the image {} ({ami}) is {arch}",
                    supported.join(", "),
                    g.spec.image
                ),
                format!(
                    "use a {arch} instance type, or an image for {} (spec.image); keelson edit ig {}",
                    supported.join("/"),
                    g.name()
                ),
            ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

/// Up to three offered types close to `t`: the same family first, then by edit
/// distance (at most 2).
fn suggestions(t: &str, all: &BTreeSet<String>) -> Vec<String> {
    let mut near: Vec<(usize, &String)> = all
        .iter()
        .map(|c| (distance(t, c), c))
        .filter(|(d, _)| *d <= 2)
        .collect();
    near.sort();
    near.into_iter().take(3).map(|(_, c)| c.clone()).collect()
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names() {
        let all: BTreeSet<String> = ["t3.large", "t3.xlarge", "t3a.large", "m5.large", "c5.large"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            suggestions("t3.larg", &all),
            ["t3.large", "t3.xlarge", "t3a.large"]
        );
        assert!(suggestions("gpu-monster", &all).is_empty());
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn images_must_exist_and_be_available() {
        let opts = crate::spec::defaults::NewCluster {
            name: "img.k8s.local".into(),
            zones: vec!["us-east-1a".into()],
            image: Some("ami-00000000000000dead".into()),
            ..Default::default()
        };
        let (cluster, groups) = crate::spec::defaults::new_cluster(&opts).unwrap();
        let mut o = Offerings::default();
        for g in &groups {
            o.offered
                .entry("us-east-1a".into())
                .or_default()
                .insert(g.spec.machine_type.clone());
        }
        // Not asked: nothing to say.
        assert!(check(&cluster, &groups, &BTreeMap::new(), &o).is_ok());
        o.images_described = true;
        let e = check(&cluster, &groups, &BTreeMap::new(), &o)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.image: ami-00000000000000dead does not exist in us-east-1"),
            "{e}"
        );
        o.image_states
            .insert("ami-00000000000000dead".into(), "pending".into());
        let e = check(&cluster, &groups, &BTreeMap::new(), &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is pending, not available"), "{e}");
        o.image_states
            .insert("ami-00000000000000dead".into(), "available".into());
        assert!(check(&cluster, &groups, &BTreeMap::new(), &o).is_ok());
    }
}
