//! `create cluster`: flags -> checked against AWS -> specs -> validated -> written.

use crate::aws::{network, zones};
use crate::spec::defaults::{NewCluster, new_cluster};
use crate::spec::region_of_zone;
use crate::spec::ssh_key::SshPublicKey;
use crate::spec::validate::{FieldError, ValidationErrors};
use crate::state::{StateStore, lock::with_lock};

use super::{ClusterSpecs, OpsError};

/// What the user asked for, before anything is looked up.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub options: NewCluster,
    pub network_id: Option<String>,
    pub subnet_ids: Vec<String>,
    pub utility_subnet_ids: Vec<String>,
    /// The path (for messages) and contents of the SSH public key file.
    pub ssh_public_key: Option<(String, String)>,
}

/// A new cluster, complete and valid, not yet written.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub specs: ClusterSpecs,
    pub ssh_key: Option<SshPublicKey>,
}

fn invalid(
    field: &str,
    value: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> OpsError {
    OpsError::Invalid(ValidationErrors(vec![FieldError::new(
        field, value, problem, fix,
    )]))
}

/// The region of `--zones`, checked for syntax and agreement before any AWS call.
pub fn region_of(zones: &[String]) -> Result<String, OpsError> {
    let mut region: Option<String> = None;
    for z in zones {
        let Some(r) = region_of_zone(z) else {
            return Err(invalid(
                "--zones",
                z,
                "is not an availability zone name",
                "use zones such as us-east-1a,us-east-1b",
            ));
        };
        match &region {
            Some(first) if *first != r => {
                return Err(invalid(
                    "--zones",
                    zones.join(","),
                    format!("spans regions {first} and {r}"),
                    "use zones of one region",
                ));
            }
            _ => region = Some(r),
        }
    }
    region.ok_or_else(|| {
        invalid(
            "--zones",
            "",
            "is required",
            "list the availability zones, e.g. --zones us-east-1a,us-east-1b,us-east-1c",
        )
    })
}

/// Resolves the request against AWS (zones, an existing VPC and subnets) and builds
/// the validated specs. Reads only.
pub async fn prepare(
    req: &CreateRequest,
    ec2: &aws_sdk_ec2::Client,
    route53: &aws_sdk_route53::Client,
) -> Result<Prepared, OpsError> {
    let ssh_key = match &req.ssh_public_key {
        Some((path, text)) => Some(SshPublicKey::parse(text).map_err(|p| {
            invalid(
                "--ssh-public-key",
                path,
                p,
                "pass an OpenSSH public key file such as ~/.ssh/id_ed25519.pub",
            )
        })?),
        None => None,
    };
    let region = region_of(&req.options.zones)?;
    let available = zones::available(ec2).await?;
    let unknown: Vec<&String> = req
        .options
        .zones
        .iter()
        .chain(&req.options.master_zones)
        .filter(|z| !available.contains(z))
        .collect();
    if let Some(z) = unknown.first() {
        return Err(invalid(
            "--zones",
            z.as_str(),
            format!("is not an available zone of region {region}"),
            format!("use zones from: {}", available.join(", ")),
        ));
    }
    let mut options = req.options.clone();
    if let Some(vpc) = &req.network_id {
        let cidr = network::vpc_cidr(ec2, vpc).await?.ok_or_else(|| {
            invalid(
                "--network-id",
                vpc,
                format!("is not a VPC in region {region}"),
                "give the id of an existing VPC, or drop --network-id to create one",
            )
        })?;
        options.network = Some((vpc.clone(), cidr));
        let ids: Vec<String> = req
            .subnet_ids
            .iter()
            .chain(&req.utility_subnet_ids)
            .cloned()
            .collect();
        let found = network::subnets(ec2, &ids).await?;
        let resolve = |flag: &str,
                       ids: &[String]|
         -> Result<Vec<(String, String, crate::spec::Ipv4Cidr)>, OpsError> {
            ids.iter()
                .map(|id| match found.iter().find(|s| &s.id == id) {
                    None => Err(invalid(
                        flag,
                        id,
                        format!("is not a subnet in region {region}"),
                        "give the ids of existing subnets",
                    )),
                    Some(s) if s.vpc_id != *vpc => Err(invalid(
                        flag,
                        id,
                        format!("is in {}, not in --network-id {vpc}", s.vpc_id),
                        "give subnets of that VPC",
                    )),
                    Some(s) => Ok((s.id.clone(), s.zone.clone(), s.cidr)),
                })
                .collect()
        };
        options.subnets = resolve("--subnets", &req.subnet_ids)?;
        options.utility_subnets = resolve("--utility-subnets", &req.utility_subnet_ids)?;
    } else if !req.subnet_ids.is_empty() || !req.utility_subnet_ids.is_empty() {
        return Err(invalid(
            "--subnets",
            req.subnet_ids.join(","),
            "needs --network-id",
            "add --network-id with the VPC those subnets are in",
        ));
    }
    let (cluster, groups) = new_cluster(&options)?;
    let specs = ClusterSpecs { cluster, groups };
    specs.validate()?;
    check_machine_types(ec2, &specs.cluster, &specs.groups, &Default::default()).await?;
    check_dns_zone(&specs.cluster, route53).await?;
    Ok(Prepared { specs, ssh_key })
}

/// A cluster named in DNS needs its Route53 zone: keelson writes its records
/// there and does not create zones, so a missing one is refused here, before
/// anything is written (kops refuses it too), not found by `update` later.
async fn check_dns_zone(
    cluster: &crate::spec::Cluster,
    route53: &aws_sdk_route53::Client,
) -> Result<(), OpsError> {
    let (false, Some(zone)) = (cluster.is_gossip(), &cluster.spec.dns_zone) else {
        return Ok(());
    };
    let private = cluster.spec.topology.dns.kind == crate::spec::DnsType::Private;
    if crate::aws::dns_record::find_zone(route53, zone, private)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let kind = if private { "private" } else { "public" };
    Err(invalid(
        "--dns-zone",
        zone,
        format!("is not a {kind} Route53 hosted zone of this account"),
        format!(
            "create it first (aws route53 create-hosted-zone --name {zone} --caller-reference keelson{}), pass --dns-zone with an existing {kind} zone, or name the cluster NAME.k8s.local for gossip DNS",
            if private {
                " --vpc VPCRegion=REGION,VPCId=VPC_ID"
            } else {
                ""
            }
        ),
    ))
}

/// Every group's machine type is offered in the zones of its subnets and runs
/// its image's architecture (kops refuses both at create). `images` maps a
/// `spec.image` to its AMI id where known (an image not described is not
/// checked for architecture). At `create`, `create instancegroup`, and by an
/// update that makes launch templates; a no-op plan asks nothing.
pub async fn check_machine_types(
    ec2: &aws_sdk_ec2::Client,
    cluster: &crate::spec::Cluster,
    groups: &[crate::spec::InstanceGroup],
    images: &std::collections::BTreeMap<String, String>,
) -> Result<crate::spec::machine_type::Offerings, OpsError> {
    use crate::spec::machine_type;
    let zones = groups
        .iter()
        .flat_map(|g| machine_type::zones_of(cluster, g))
        .collect();
    let types = groups
        .iter()
        .flat_map(|g| {
            let mixed = g.spec.mixed_instances_policy.iter();
            std::iter::once(&g.spec.machine_type).chain(mixed.flat_map(|p| &p.instances))
        })
        .cloned()
        .collect();
    let amis = groups
        .iter()
        .map(|g| images.get(&g.spec.image).unwrap_or(&g.spec.image).clone())
        .collect();
    let offerings = crate::aws::instance_types::offerings(ec2, &zones, &types, &amis).await?;
    machine_type::check(cluster, groups, images, &offerings)?;
    Ok(offerings)
}

/// Writes a prepared cluster under its lock; refuses an existing cluster. The
/// config is written last: it is what makes the cluster exist, so a failure
/// part-way leaves no half-created cluster behind, and a retry overwrites.
pub async fn write(store: &StateStore, p: &Prepared) -> Result<(), OpsError> {
    let name = p.specs.cluster.name().to_string();
    with_lock(
        store,
        &name,
        &format!("keelson create cluster {name}"),
        async {
            if store.cluster_exists(&name).await? {
                return Err(OpsError::ClusterExists {
                    cluster: name.clone(),
                    store: store.url().to_string(),
                });
            }
            // Refuse before writing anything: a cluster's keys are never replaced.
            if let Some(key) = store.pki_keys(&name).await?.into_iter().next() {
                return Err(OpsError::PkiExists {
                    cluster: name.clone(),
                    key,
                    store: store.url().to_string(),
                });
            }
            let pki = crate::pki::ClusterPki::generate()?;
            if let Some(key) = store.write_pki(&name, &pki).await?.into_iter().next() {
                return Err(OpsError::PkiExists {
                    cluster: name.clone(),
                    key,
                    store: store.url().to_string(),
                });
            }
            for g in &p.specs.groups {
                store.write_group(&name, g).await?;
            }
            if let Some(key) = &p.ssh_key {
                store.write_ssh_public_key(&name, key).await?;
            }
            store.write_cluster(&p.specs.cluster).await?;
            Ok(())
        },
    )
    .await
}

/// `create -f FILE`: a Cluster and its InstanceGroups from one multi-document
/// YAML (as `kops create -f`, eksctl `-f`), checked whole before anything is
/// written: exactly one Cluster, every group of that cluster (a missing label is
/// added), the specs valid together, and each group's image and machine type as
/// AWS has them. Write the result with [`write`].
pub async fn from_objects(
    objects: Vec<crate::spec::parse::Object>,
    flag: Option<&str>,
    ssh_public_key: Option<(String, String)>,
    ec2: &aws_sdk_ec2::Client,
) -> Result<Prepared, OpsError> {
    use crate::spec::parse::Object;
    let clusters = objects
        .iter()
        .filter(|o| matches!(o, Object::Cluster(_)))
        .count();
    if clusters != 1 {
        return Err(OpsError::Usage(format!(
            "-f: the file holds {clusters} Cluster objects; `create -f` takes exactly one Cluster and its InstanceGroups (add an InstanceGroup to an existing cluster with `keelson create ig GROUP --name CLUSTER --subnet ZONE` or `keelson replace -f FILE --force`)"
        )));
    }
    let name = super::replace::cluster_of(&objects, flag)?;
    let mut cluster = None;
    let mut groups: Vec<crate::spec::InstanceGroup> = Vec::new();
    for o in objects {
        match o {
            Object::Cluster(c) => cluster = Some(crate::spec::Cluster { status: None, ..*c }),
            Object::InstanceGroup(g) => {
                let mut g = *g;
                if groups.iter().any(|x| x.name() == g.name()) {
                    return Err(OpsError::Usage(format!(
                        "-f: InstanceGroup {} appears twice; give each group once",
                        g.name()
                    )));
                }
                g.metadata
                    .labels
                    .entry(crate::spec::CLUSTER_LABEL.to_string())
                    .or_insert_with(|| name.clone());
                groups.push(g);
            }
        }
    }
    let cluster = cluster.expect("one Cluster, counted above");
    if groups.is_empty() {
        return Err(OpsError::Usage(format!(
            "-f: cluster {name} has no InstanceGroup in the file; add its groups (at least one with role Master) as further YAML documents"
        )));
    }
    groups.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let ssh_key = match &ssh_public_key {
        Some((path, text)) => Some(SshPublicKey::parse(text).map_err(|p| {
            invalid(
                "--ssh-public-key",
                path,
                p,
                "pass an OpenSSH public key file such as ~/.ssh/id_ed25519.pub",
            )
        })?),
        None => None,
    };
    let specs = ClusterSpecs { cluster, groups };
    specs.validate()?;
    check_machine_types(ec2, &specs.cluster, &specs.groups, &Default::default()).await?;
    Ok(Prepared { specs, ssh_key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_checks() {
        let z = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            region_of(&z(&["us-east-1a", "us-east-1b"])).unwrap(),
            "us-east-1"
        );
        assert!(
            region_of(&z(&["us-east-1a", "us-west-2a"]))
                .unwrap_err()
                .to_string()
                .contains("spans regions us-east-1 and us-west-2")
        );
        assert!(
            region_of(&z(&["useast1a"]))
                .unwrap_err()
                .to_string()
                .contains("--zones: useast1a is not an availability zone")
        );
        assert!(region_of(&[]).is_err());
    }
}
