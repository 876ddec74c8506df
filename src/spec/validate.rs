//! Validation of a cluster and its instance groups. Every error names the field,
//! the bad value and the fix, and all errors are reported at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// A flag (`--zones`) or an object and path (`InstanceGroup nodes spec.minSize`).
    pub field: String,
    pub value: String,
    pub problem: String,
    pub fix: String,
}

impl FieldError {
    pub fn new(
        field: &str,
        value: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.to_string(),
            value: value.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}; {}", self.field, self.problem, self.fix)
        } else {
            write!(
                f,
                "{}: {} {}; {}",
                self.field, self.value, self.problem, self.fix
            )
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(|e| format!("  - {e}")).collect();
        write!(f, "invalid cluster specification:\n{}", lines.join("\n"))
    }
}

/// The Kubernetes minor versions keelson can bootstrap.
pub const SUPPORTED_MINORS: std::ops::RangeInclusive<u32> = 32..=37;
/// AWS's IAM role names are at most 64 characters and ours are `bastions.NAME`.
pub const MAX_CLUSTER_NAME: usize = 55;
const VOLUME_TYPES: &[&str] = &["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"];

struct Errors(Vec<FieldError>);

impl Errors {
    fn add(
        &mut self,
        field: impl AsRef<str>,
        value: impl fmt::Display,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(FieldError::new(
            field.as_ref(),
            value.to_string(),
            problem,
            fix,
        ));
    }
}

/// A lowercase RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A lowercase RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        (8..=17).contains(&hex.len())
            && hex
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    })
}

/// `t3.medium`, `m7g.2xlarge`, `u-6tb1.metal`.
pub fn is_machine_type(s: &str) -> bool {
    match s.split_once('.') {
        Some((family, size)) => {
            !family.is_empty()
                && family.as_bytes()[0].is_ascii_lowercase()
                && family
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !size.is_empty()
                && size
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        }
        None => false,
    }
}

/// `1.35.0` (a leading `v` is accepted); returns the minor version.
pub fn kubernetes_minor(v: &str) -> Option<u32> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let parts: Vec<&str> = v.split('.').collect();
    let num = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
    match parts.as_slice() {
        ["1", minor, patch] if num(minor) && num(patch) => minor.parse().ok(),
        _ => None,
    }
}

fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    name_ok && prefix.is_none_or(is_dns_subdomain)
}

/// Validates a cluster together with all its groups.
pub fn validate(c: &Cluster, groups: &[InstanceGroup]) -> Result<(), ValidationErrors> {
    let mut e = Errors(Vec::new());
    validate_cluster(c, &mut e);
    let mut names = BTreeSet::new();
    for g in groups {
        if !names.insert(g.name()) {
            e.add(
                format!("InstanceGroup {}", g.name()),
                "",
                "is defined twice",
                "give each instance group a unique name",
            );
        }
        validate_group(c, g, &mut e);
    }
    validate_membership(c, groups, &mut e);
    validate_api_reach(c, groups, &mut e);
    e.0.extend(super::aws_fields::validate_cluster(c));
    for g in groups {
        e.0.extend(super::aws_fields::validate_group(g));
    }
    validate_components(c, groups, &mut e);
    if e.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(e.0))
    }
}

/// The cluster's own instances must reach its API. keelson admits them however
/// `kubernetesApiAccess` is restricted (the VPC for an internal balancer, the
/// NAT gateways' addresses for a public one; `model::security`), except for
/// instances in public subnets calling a public balancer: they come from their
/// own public addresses, which AWS picks at launch.
fn validate_api_reach(c: &Cluster, groups: &[InstanceGroup], e: &mut Errors) {
    let s = &c.spec;
    let any: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
    if s.api.load_balancer.kind != LoadBalancerType::Public
        || s.kubernetes_api_access.contains(&any)
    {
        return;
    }
    let public: BTreeSet<&str> = s
        .subnets
        .iter()
        .filter(|sn| sn.kind == SubnetType::Public)
        .map(|sn| sn.name.as_str())
        .collect();
    let stranded: Vec<&str> = groups
        .iter()
        .filter(|g| g.spec.role != Role::Bastion)
        .filter(|g| g.spec.subnets.iter().any(|sn| public.contains(sn.as_str())))
        .map(|g| g.name())
        .collect();
    if stranded.is_empty() {
        return;
    }
    let access: Vec<String> = s
        .kubernetes_api_access
        .iter()
        .map(|c| c.to_string())
        .collect();
    e.add(
        format!("Cluster {} spec.kubernetesApiAccess", c.name()),
        format!("[{}]", access.join(", ")),
        format!(
            "locks the cluster's own instances out of its public API load balancer: {} in public subnets reach it from their own public addresses, which are not known before they launch",
            stranded.join(", ")
        ),
        "add 0.0.0.0/0 (the API still authenticates every request), use --topology private (instances then leave through NAT gateways, whose addresses keelson admits), or an internal API load balancer (--api-loadbalancer-type internal)",
    );
}

fn validate_cluster(c: &Cluster, e: &mut Errors) {
    let name = c.name();
    let f = |path: &str| format!("Cluster {name} {path}");
    let s = &c.spec;
    // Only once the version is one keelson knows: the bundles render per minor.
    if kubernetes_minor(&s.kubernetes_version).is_some_and(|m| SUPPORTED_MINORS.contains(&m)) {
        for mut err in crate::addons::validate(c) {
            err.field = f(&err.field);
            e.0.push(err);
        }
    }
    if !is_dns_subdomain(name) || !name.contains('.') {
        e.add(
            f("metadata.name"),
            name,
            "is not a DNS name with at least one dot",
            "use a lowercase name such as demo.k8s.local (gossip) or demo.example.com",
        );
    } else if name.len() > MAX_CLUSTER_NAME {
        e.add(
            f("metadata.name"),
            name,
            format!(
                "is longer than {MAX_CLUSTER_NAME} characters, which AWS IAM names cannot hold"
            ),
            "choose a shorter name",
        );
    }
    if s.cloud_provider != "aws" {
        e.add(
            f("spec.cloudProvider"),
            &s.cloud_provider,
            "is not supported",
            "set it to aws",
        );
    }
    match kubernetes_minor(&s.kubernetes_version) {
        Some(m) if SUPPORTED_MINORS.contains(&m) => {}
        Some(_) => e.add(
            f("spec.kubernetesVersion"),
            &s.kubernetes_version,
            "is not supported",
            format!(
                "use a version from 1.{} to 1.{}",
                SUPPORTED_MINORS.start(),
                SUPPORTED_MINORS.end()
            ),
        ),
        None => e.add(
            f("spec.kubernetesVersion"),
            &s.kubernetes_version,
            "is not a version like 1.35.0",
            "use MAJOR.MINOR.PATCH, such as 1.35.0",
        ),
    }
    if !(16..=28).contains(&s.network_cidr.prefix()) {
        e.add(
            f("spec.networkCIDR"),
            s.network_cidr,
            "has a prefix AWS does not allow for a VPC",
            "use a prefix between /16 and /28",
        );
    }
    if let Some(id) = &s.network_id
        && !is_aws_id(id, "vpc-")
    {
        e.add(
            f("spec.networkID"),
            id,
            "is not a VPC id",
            "use an id such as vpc-0123456789abcdef0",
        );
    }
    if s.non_masquerade_cidr.overlaps(&s.network_cidr) {
        e.add(
            f("spec.nonMasqueradeCIDR"),
            s.non_masquerade_cidr,
            format!("overlaps spec.networkCIDR {}", s.network_cidr),
            "use a range outside the VPC, such as 100.64.0.0/10",
        );
    }
    if !s.non_masquerade_cidr.contains(&s.service_cluster_ip_range) {
        e.add(
            f("spec.serviceClusterIPRange"),
            s.service_cluster_ip_range,
            format!(
                "is not inside spec.nonMasqueradeCIDR {}",
                s.non_masquerade_cidr
            ),
            "use a range inside it, such as 100.64.0.0/13",
        );
    }
    validate_subnets(c, e);
    let private = s.topology.control_plane == TopologyKind::Private;
    if s.topology.nodes != s.topology.control_plane {
        e.add(
            f("spec.topology.nodes"),
            format!("{:?}", s.topology.nodes).to_lowercase(),
            "differs from spec.topology.controlPlane",
            "use the same topology for both",
        );
    }
    if s.topology.bastion.is_some() && !private {
        e.add(
            f("spec.topology.bastion"),
            "set",
            "needs a private topology",
            "set spec.topology.controlPlane and nodes to private, or remove the bastion",
        );
    }
    if s.nat == NatMode::Single && !private {
        e.add(
            f("spec.nat"),
            "single",
            "only applies to a private topology",
            "remove spec.nat or use a private topology",
        );
    }
    let dns = s.topology.dns.kind;
    if c.is_gossip() {
        if dns != DnsType::None {
            e.add(
                f("spec.topology.dns.type"),
                format!("{dns:?}"),
                "is set for a gossip cluster (.k8s.local)",
                "set it to None",
            );
        }
        if let Some(z) = &s.dns_zone {
            e.add(
                f("spec.dnsZone"),
                z,
                "is set for a gossip cluster (.k8s.local)",
                "remove spec.dnsZone",
            );
        }
    } else {
        if dns == DnsType::None {
            e.add(
                f("spec.topology.dns.type"),
                "None",
                "needs a gossip name (ending in .k8s.local)",
                "set it to Public or Private, or rename the cluster",
            );
        }
        match &s.dns_zone {
            None => e.add(
                f("spec.dnsZone"),
                "",
                "is required for a cluster that uses DNS",
                "set it to the Route53 zone the cluster name is in",
            ),
            Some(z) if !is_dns_subdomain(z) || !z.contains('.') => e.add(
                f("spec.dnsZone"),
                z,
                "is not a DNS domain",
                "use a domain such as example.com",
            ),
            Some(z) if !name.ends_with(&format!(".{z}")) => e.add(
                f("spec.dnsZone"),
                z,
                format!("does not contain the cluster name {name}"),
                "use the zone the cluster name is in",
            ),
            _ => {}
        }
    }
    if s.networking.plugins().len() != 1 {
        e.add(
            f("spec.networking"),
            format!("{:?}", s.networking.plugins()),
            "must set exactly one plugin",
            "set one of flannel: {} or cilium: {}",
        );
    }
    if s.networking.calico.is_some() {
        // The spec keeps kops' field, but keelson ships no calico bundle yet: a
        // cluster without a working network must not be built.
        e.add(
            f("spec.networking.calico"),
            "{}",
            "has no addon bundle in this keelson version",
            "use flannel: {} or cilium: {} (--networking flannel|cilium)",
        );
    }
    if s.ssh_access.is_empty() {
        e.add(
            f("spec.sshAccess"),
            "[]",
            "is empty",
            "list the CIDRs allowed to SSH, e.g. your office's /32, or 0.0.0.0/0",
        );
    }
    if s.kubernetes_api_access.is_empty() {
        e.add(
            f("spec.kubernetesApiAccess"),
            "[]",
            "is empty",
            "list the CIDRs allowed to reach the API, or 0.0.0.0/0",
        );
    }
    for k in s.cloud_labels.keys() {
        validate_cloud_label(k, &f("spec.cloudLabels"), e);
    }
    if let Some(ru) = &s.rolling_update {
        validate_rolling_update(ru, &f("spec.rollingUpdate"), e);
    }
    for (i, ec) in s.etcd_clusters.iter().enumerate() {
        let p = f(&format!("spec.etcdClusters[{i}]"));
        if ec.members.is_empty() || ec.members.len() % 2 == 0 {
            e.add(
                &p,
                format!("{} members", ec.members.len()),
                "is not an odd number",
                "give etcd 1, 3 or 5 members, one per master instance group",
            );
        }
        let mut seen = BTreeSet::new();
        for m in &ec.members {
            if !seen.insert(&m.name) {
                e.add(
                    &p,
                    &m.name,
                    "names a member twice",
                    "give each member a unique name",
                );
            }
        }
    }
    let etcd_names: Vec<&str> = s.etcd_clusters.iter().map(|x| x.name.as_str()).collect();
    if etcd_names != ["main", "events"] {
        e.add(
            f("spec.etcdClusters"),
            etcd_names.join(","),
            "must be main and events",
            "define etcdClusters main and events",
        );
    }
}

fn validate_cloud_label(k: &str, field: &str, e: &mut Errors) {
    if k.starts_with("aws:") {
        e.add(
            field,
            k,
            "uses the aws: prefix, which AWS reserves",
            "choose another key",
        );
    } else if k == "Name"
        || k == "KubernetesCluster"
        || k.starts_with("kubernetes.io/cluster/")
        || k.starts_with("k8s.io/role/")
        || k.starts_with("keelson.dev/")
    {
        e.add(
            field,
            k,
            "would override a tag keelson uses for ownership",
            "choose another key",
        );
    } else if k.is_empty() || k.len() > 128 {
        e.add(
            field,
            k,
            "is not 1 to 128 characters long",
            "shorten the key",
        );
    }
}

fn validate_subnets(c: &Cluster, e: &mut Errors) {
    let s = &c.spec;
    let f = |path: String| format!("Cluster {} {path}", c.name());
    if s.subnets.is_empty() {
        e.add(
            f("spec.subnets".into()),
            "[]",
            "is empty",
            "define at least one subnet per zone",
        );
        return;
    }
    let region = c.region();
    let mut names = BTreeSet::new();
    let private = s.topology.control_plane == TopologyKind::Private;
    for (i, sn) in s.subnets.iter().enumerate() {
        let p = |field: &str| f(format!("spec.subnets[{i}].{field}"));
        if !is_dns_label(&sn.name.replace('.', "-")) {
            e.add(
                p("name"),
                &sn.name,
                "is not a DNS label",
                "use lowercase letters, digits and dashes",
            );
        }
        if !names.insert(&sn.name) {
            e.add(
                p("name"),
                &sn.name,
                "is used by two subnets",
                "give each subnet a unique name",
            );
        }
        match region_of_zone(&sn.zone) {
            None => e.add(
                p("zone"),
                &sn.zone,
                "is not an availability zone",
                "use a zone such as us-east-1a",
            ),
            Some(r) if Some(&r) != region.as_ref() => e.add(
                p("zone"),
                &sn.zone,
                format!(
                    "is in region {r}, but the first subnet is in {}",
                    region.as_deref().unwrap_or("?")
                ),
                "put every subnet in one region",
            ),
            _ => {}
        }
        match (&sn.cidr, &sn.id) {
            (None, None) => e.add(
                p("cidr"),
                "",
                "is missing",
                "give the subnet a CIDR inside spec.networkCIDR, or the id of an existing subnet",
            ),
            (Some(cidr), _) => {
                if !s.network_cidr.contains(cidr) {
                    e.add(
                        p("cidr"),
                        cidr,
                        format!("is outside spec.networkCIDR {}", s.network_cidr),
                        "choose a CIDR inside the network",
                    );
                } else if !(16..=28).contains(&cidr.prefix()) {
                    e.add(
                        p("cidr"),
                        cidr,
                        "has a prefix AWS does not allow for a subnet",
                        "use a prefix between /16 and /28",
                    );
                }
                for (j, other) in s.subnets.iter().enumerate().skip(i + 1) {
                    if let Some(oc) = other.cidr
                        && oc.overlaps(cidr)
                    {
                        e.add(
                            p("cidr"),
                            cidr,
                            format!("overlaps spec.subnets[{j}] ({}, {oc})", other.name),
                            "give each subnet its own range",
                        );
                    }
                }
            }
            _ => {}
        }
        if let Some(id) = &sn.id {
            if !is_aws_id(id, "subnet-") {
                e.add(
                    p("id"),
                    id,
                    "is not a subnet id",
                    "use an id such as subnet-0123456789abcdef0",
                );
            }
            if s.network_id.is_none() {
                e.add(
                    p("id"),
                    id,
                    "is an existing subnet, but spec.networkID is not set",
                    "set spec.networkID to the VPC the subnet is in",
                );
            }
        }
        if let Some(eg) = &sn.egress
            && (sn.kind != SubnetType::Private || !is_aws_id(eg, "nat-"))
        {
            e.add(
                p("egress"),
                eg,
                "is not a NAT gateway id on a private subnet",
                "use nat-... on a Private subnet, or remove it",
            );
        }
        match (private, sn.kind) {
            (true, SubnetType::Public) => e.add(
                p("type"),
                "Public",
                "is not used in a private topology",
                "use Private and Utility subnets",
            ),
            (false, SubnetType::Private) => e.add(
                p("type"),
                "Private",
                "needs a private topology",
                "use Public subnets, or set the topology to private",
            ),
            _ => {}
        }
    }
    if private {
        // Private subnets reach the internet through a NAT in a utility subnet of the same zone.
        for (i, sn) in s.subnets.iter().enumerate() {
            let has_utility = s
                .subnets
                .iter()
                .any(|u| u.kind == SubnetType::Utility && u.zone == sn.zone);
            if sn.kind == SubnetType::Private && sn.egress.is_none() && !has_utility {
                e.add(
                    f(format!("spec.subnets[{i}]")),
                    &sn.name,
                    format!("has no Utility subnet in zone {}", sn.zone),
                    "add a Utility subnet in that zone for its NAT gateway and load balancers",
                );
            }
        }
    }
}

fn validate_group(c: &Cluster, g: &InstanceGroup, e: &mut Errors) {
    let f = |path: &str| format!("InstanceGroup {} {path}", g.name());
    let s = &g.spec;
    if !is_dns_label(g.name()) {
        e.add(
            f("metadata.name"),
            g.name(),
            "is not a DNS label",
            "use lowercase letters, digits and dashes, at most 63",
        );
    }
    match g.cluster_label() {
        Some(l) if l == c.name() => {}
        other => e.add(
            f(&format!("metadata.labels[{CLUSTER_LABEL}]")),
            other.unwrap_or(""),
            format!("does not name cluster {}", c.name()),
            format!("set the label {CLUSTER_LABEL}: {}", c.name()),
        ),
    }
    // kops's label, when a YAML from kops keeps it, must not name another cluster.
    if let Some(other) = g
        .metadata
        .labels
        .get(super::KOPS_CLUSTER_LABEL)
        .filter(|v| *v != c.name())
    {
        e.add(
            f(&format!("metadata.labels[{}]", super::KOPS_CLUSTER_LABEL)),
            other,
            format!("names cluster {other}, not {}", c.name()),
            format!(
                "set it to {} or remove it (this group is being put into cluster {})",
                c.name(),
                c.name()
            ),
        );
    }
    if s.image.trim().is_empty() {
        e.add(
            f("spec.image"),
            "\"\"",
            "is empty",
            "set an AMI id (ami-...) or OWNER/NAME",
        );
    }
    if !is_machine_type(&s.machine_type) {
        e.add(
            f("spec.machineType"),
            &s.machine_type,
            "is not an EC2 instance type",
            "use a type such as t3.medium",
        );
    }
    if s.min_size > s.max_size {
        e.add(
            f("spec.minSize"),
            s.min_size,
            format!("is greater than spec.maxSize {}", s.max_size),
            "make minSize at most maxSize",
        );
    }
    if s.max_size > 1000 {
        e.add(
            f("spec.maxSize"),
            s.max_size,
            "is more than 1000",
            "use at most 1000 instances per group",
        );
    }
    if s.role == Role::Master && (s.min_size != 1 || s.max_size != 1) {
        e.add(
            f("spec.minSize"),
            format!("{}..{}", s.min_size, s.max_size),
            "is not 1..1 for a master group",
            "use one master per group; add groups (and etcd members) for more masters",
        );
    }
    if s.role == Role::Bastion && c.spec.topology.bastion.is_none() {
        e.add(
            f("spec.role"),
            "Bastion",
            "needs spec.topology.bastion in the cluster and a private topology",
            "enable the bastion in the cluster, or remove this group",
        );
    }
    if s.subnets.is_empty() {
        e.add(
            f("spec.subnets"),
            "[]",
            "is empty",
            format!("list subnets of the cluster ({})", subnet_names(c)),
        );
    }
    let private = c.spec.topology.control_plane == TopologyKind::Private;
    let mut zones = BTreeSet::new();
    for (i, name) in s.subnets.iter().enumerate() {
        match c.subnet(name) {
            None => e.add(
                f(&format!("spec.subnets[{i}]")),
                name,
                "is not a subnet of the cluster",
                format!("use one of {}", subnet_names(c)),
            ),
            Some(sn) => {
                zones.insert(sn.zone.clone());
                let ok = match s.role {
                    Role::Bastion => sn.kind == SubnetType::Utility,
                    _ => !private || sn.kind == SubnetType::Private,
                };
                if !ok {
                    let want = if s.role == Role::Bastion {
                        "Utility"
                    } else {
                        "Private"
                    };
                    e.add(
                        f(&format!("spec.subnets[{i}]")),
                        name,
                        format!(
                            "is a {:?} subnet; {} groups belong in {want} subnets",
                            sn.kind,
                            s.role.as_str()
                        ),
                        format!("use a {want} subnet"),
                    );
                }
            }
        }
    }
    if s.role == Role::Master && zones.len() > 1 {
        e.add(
            f("spec.subnets"),
            s.subnets.join(","),
            "spans zones; a master group stays in one zone",
            "use one subnet (one zone) per master group",
        );
    }
    if !(8..=16384).contains(&s.root_volume.size) {
        e.add(
            f("spec.rootVolume.size"),
            s.root_volume.size,
            "is not between 8 and 16384 GiB",
            "choose a size in that range",
        );
    }
    if !VOLUME_TYPES.contains(&s.root_volume.kind.as_str()) {
        e.add(
            f("spec.rootVolume.type"),
            &s.root_volume.kind,
            "is not an EBS volume type",
            format!("use one of {}", VOLUME_TYPES.join(", ")),
        );
    }
    for k in s.node_labels.keys() {
        if !is_label_key(k) {
            e.add(
                f("spec.nodeLabels"),
                k,
                "is not a valid label key",
                "use NAME or PREFIX/NAME with letters, digits, -, _ and .",
            );
        }
    }
    for t in &s.taints {
        if !is_taint(t) {
            e.add(f("spec.taints"), t, "is not a taint", "write key=value:Effect or key:Effect, with Effect NoSchedule, PreferNoSchedule or NoExecute");
        }
    }
    for k in s.cloud_labels.keys() {
        validate_cloud_label(k, &f("spec.cloudLabels"), e);
    }
    if let Some(ru) = &s.rolling_update {
        validate_rolling_update(ru, &f("spec.rollingUpdate"), e);
    }
    // The combination only once each field is known to be well formed.
    let ru = RollingUpdate::effective(s.rolling_update.as_ref(), c.spec.rolling_update.as_ref());
    if let (Some(surge), Some(unavailable)) = (&ru.max_surge, &ru.max_unavailable)
        && surge.is_zero()
        && unavailable.is_zero()
    {
        let from_group = s
            .rolling_update
            .as_ref()
            .is_some_and(|r| r.max_unavailable.is_some());
        let field = if from_group {
            f("spec.rollingUpdate.maxUnavailable")
        } else {
            format!("Cluster {} spec.rollingUpdate.maxUnavailable", c.name())
        };
        e.add(
            field,
            unavailable,
            format!(
                "with maxSurge {surge} would never replace an instance of group {}",
                g.name()
            ),
            "set maxUnavailable (or maxSurge) to at least 1",
        );
    }
}

/// `spec.kubeAPIServer` and the cluster's and groups' `spec.kubelet`.
fn validate_components(c: &Cluster, groups: &[InstanceGroup], e: &mut Errors) {
    use super::components::{validate_api_server, validate_kubelet};
    let of_cluster = format!("Cluster {}", c.name());
    let mut found: Vec<(String, FieldError)> = Vec::new();
    if let Some(a) = &c.spec.kube_api_server {
        found.extend(
            validate_api_server(a)
                .into_iter()
                .map(|x| (of_cluster.clone(), x)),
        );
    }
    if let Some(k) = &c.spec.kubelet {
        found.extend(
            validate_kubelet(k, "spec.kubelet")
                .into_iter()
                .map(|x| (of_cluster.clone(), x)),
        );
    }
    found.extend(
        super::components::validate_hooks_and_files(&c.spec.hooks, &c.spec.file_assets, "spec")
            .into_iter()
            .map(|x| (of_cluster.clone(), x)),
    );
    for g in groups {
        found.extend(
            super::components::validate_hooks_and_files(&g.spec.hooks, &g.spec.file_assets, "spec")
                .into_iter()
                .map(|x| (format!("InstanceGroup {}", g.name()), x)),
        );
        if let Some(k) = &g.spec.kubelet {
            let of_group = format!("InstanceGroup {}", g.name());
            found.extend(
                validate_kubelet(k, "spec.kubelet")
                    .into_iter()
                    .map(|x| (of_group.clone(), x)),
            );
        }
    }
    for (object, mut err) in found {
        err.field = format!("{object} {}", err.field);
        e.0.push(err);
    }
}

fn validate_rolling_update(ru: &RollingUpdate, prefix: &str, e: &mut Errors) {
    for (name, v) in [
        ("maxSurge", &ru.max_surge),
        ("maxUnavailable", &ru.max_unavailable),
    ] {
        if let Some(IntOrPercent::Percent(p)) = v
            && p.strip_suffix('%')
                .and_then(|n| n.parse::<u32>().ok())
                .is_none_or(|n| n > 100)
        {
            e.add(
                format!("{prefix}.{name}"),
                p,
                "is not a count or a percentage",
                "use a number such as 1, or a percentage such as 25%",
            );
        }
    }
}

fn is_taint(t: &str) -> bool {
    let Some((kv, effect)) = t.rsplit_once(':') else {
        return false;
    };
    let key = kv.split_once('=').map_or(kv, |(k, _)| k);
    matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") && is_label_key(key)
}

fn subnet_names(c: &Cluster) -> String {
    c.spec
        .subnets
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cross-object rules: a control plane exists and etcd members are its groups.
fn validate_membership(c: &Cluster, groups: &[InstanceGroup], e: &mut Errors) {
    let masters: BTreeMap<&str, &InstanceGroup> = groups
        .iter()
        .filter(|g| g.spec.role == Role::Master)
        .map(|g| (g.name(), g))
        .collect();
    if masters.is_empty() {
        e.add(
            format!("Cluster {}", c.name()),
            "",
            "has no instance group with role Master",
            "create one with keelson create instancegroup master-ZONE --role Master --subnet ZONE",
        );
    }
    for (i, ec) in c.spec.etcd_clusters.iter().enumerate() {
        let mut used = BTreeSet::new();
        for (j, m) in ec.members.iter().enumerate() {
            used.insert(m.instance_group.as_str());
            if !masters.contains_key(m.instance_group.as_str()) {
                e.add(
                    format!(
                        "Cluster {} spec.etcdClusters[{i}].members[{j}].instanceGroup",
                        c.name()
                    ),
                    &m.instance_group,
                    "is not a Master instance group",
                    format!(
                        "use one of {}",
                        masters.keys().copied().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        for m in masters.keys() {
            if !used.contains(m) {
                e.add(
                    format!("Cluster {} spec.etcdClusters[{i}]", c.name()),
                    m,
                    "is a master group without an etcd member",
                    "add a member for it, keeping an odd count",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::defaults::{NewCluster, new_cluster};

    fn base() -> (Cluster, Vec<InstanceGroup>) {
        new_cluster(&NewCluster {
            name: "demo.k8s.local".into(),
            zones: vec![
                "us-east-1a".into(),
                "us-east-1b".into(),
                "us-east-1c".into(),
            ],
            topology: TopologyKind::Private,
            bastion: true,
            master_count: Some(3),
            ..Default::default()
        })
        .unwrap()
    }

    fn errors(c: &Cluster, g: &[InstanceGroup]) -> String {
        validate(c, g).unwrap_err().to_string()
    }

    #[test]
    fn a_restricted_api_must_not_lock_out_instances_in_public_subnets() {
        let public = |access: &str, internal: bool| {
            let (mut c, g) = new_cluster(&NewCluster {
                name: "pub.k8s.local".into(),
                zones: vec!["us-east-1a".into()],
                topology: TopologyKind::Public,
                admin_access: vec![access.parse().unwrap()],
                ..Default::default()
            })
            .unwrap();
            if internal {
                c.spec.api.load_balancer.kind = LoadBalancerType::Internal;
            }
            validate(&c, &g).map_err(|e| e.to_string())
        };
        let err = public("203.0.113.0/24", false).unwrap_err();
        assert!(
            err.contains("spec.kubernetesApiAccess")
                && err.contains("[203.0.113.0/24]")
                && err.contains("--topology private"),
            "{err}"
        );
        public("0.0.0.0/0", false).unwrap();
        public("203.0.113.0/24", true).unwrap();
        // Private subnets leave through NAT gateways, whose addresses are admitted.
        let (mut c, g) = base();
        c.spec.kubernetes_api_access = vec!["203.0.113.0/24".parse().unwrap()];
        validate(&c, &g).unwrap();
    }

    #[test]
    fn names() {
        assert!(is_dns_label("nodes-us-east-1a"));
        assert!(!is_dns_label("Nodes"));
        assert!(!is_dns_label("-a"));
        assert!(
            is_machine_type("t3.medium")
                && is_machine_type("u-6tb1.metal")
                && !is_machine_type("t3")
        );
        assert_eq!(kubernetes_minor("v1.35.2"), Some(35));
        assert_eq!(kubernetes_minor("1.35"), None);
        assert!(
            is_taint("dedicated=gpu:NoSchedule") && is_taint("gpu:NoExecute") && !is_taint("gpu=1")
        );
    }

    #[test]
    fn subnet_outside_network() {
        let (mut c, g) = base();
        c.spec.subnets[0].cidr = Some("10.0.0.0/24".parse().unwrap());
        let e = errors(&c, &g);
        assert!(
            e.contains(
                "spec.subnets[0].cidr: 10.0.0.0/24 is outside spec.networkCIDR 172.20.0.0/16"
            ),
            "{e}"
        );
    }

    #[test]
    fn overlapping_subnets() {
        let (mut c, g) = base();
        c.spec.subnets[1].cidr = Some("172.20.64.0/20".parse().unwrap());
        assert!(errors(&c, &g).contains("overlaps spec.subnets[1]"));
    }

    #[test]
    fn zones_in_two_regions() {
        let (mut c, g) = base();
        c.spec.subnets[2].zone = "us-west-2c".into();
        assert!(
            errors(&c, &g).contains("is in region us-west-2, but the first subnet is in us-east-1")
        );
    }

    #[test]
    fn rolling_updates_that_replace_nothing_are_refused() {
        let (mut c, mut g) = base();
        let ru = |s: &str, u: &str| RollingUpdate {
            max_surge: Some(serde_yaml::from_str(s).unwrap()),
            max_unavailable: Some(serde_yaml::from_str(u).unwrap()),
        };
        let n = g.iter().position(|g| g.spec.role == Role::Node).unwrap();
        let name = g[n].name().to_string();
        g[n].spec.rolling_update = Some(ru("0", "0"));
        let e = errors(&c, &g);
        assert!(
            e.contains(&format!(
                "InstanceGroup {name} spec.rollingUpdate.maxUnavailable: 0 with maxSurge 0 would never replace an instance of group {name}; set maxUnavailable (or maxSurge) to at least 1"
            )),
            "{e}"
        );
        g[n].spec.rolling_update = Some(ru("0", "2"));
        assert!(validate(&c, &g).is_ok());
        // The cluster's default counts where the group says nothing, and is named.
        g[n].spec.rolling_update = Some(RollingUpdate {
            max_surge: Some(IntOrPercent::Int(0)),
            max_unavailable: None,
        });
        c.spec.rolling_update = Some(ru("1", "0%"));
        let e = errors(&c, &g);
        assert!(
            e.contains(
                "Cluster demo.k8s.local spec.rollingUpdate.maxUnavailable: 0% with maxSurge 0"
            ),
            "{e}"
        );
        c.spec.rolling_update = Some(ru("1", "150%"));
        assert!(
            errors(&c, &g).contains("Cluster demo.k8s.local spec.rollingUpdate.maxUnavailable: 150% is not a count or a percentage")
        );
    }

    #[test]
    fn group_rules() {
        let (c, mut g) = base();
        g[3].spec.min_size = 5;
        g[3].spec.subnets = vec!["utility-us-east-1a".into()];
        g[4].metadata.name = "Bad_Name".into();
        let e = errors(&c, &g);
        assert!(
            e.contains(
                "InstanceGroup nodes-us-east-1a spec.minSize: 5 is greater than spec.maxSize 1"
            ),
            "{e}"
        );
        assert!(
            e.contains("is a Utility subnet; Node groups belong in Private subnets"),
            "{e}"
        );
        assert!(e.contains("InstanceGroup Bad_Name metadata.name"), "{e}");
    }

    #[test]
    fn etcd_needs_every_master() {
        let (mut c, g) = base();
        c.spec.etcd_clusters[0].members.pop();
        let e = errors(&c, &g);
        assert!(e.contains("2 members is not an odd number"), "{e}");
        assert!(
            e.contains("master-us-east-1c is a master group without an etcd member"),
            "{e}"
        );
    }

    #[test]
    fn bastion_needs_private() {
        let (mut c, g) = base();
        c.spec.topology.control_plane = TopologyKind::Public;
        c.spec.topology.nodes = TopologyKind::Public;
        let e = errors(&c, &g);
        assert!(
            e.contains("spec.topology.bastion: set needs a private topology"),
            "{e}"
        );
    }
}
