//! Discovery: every kind's one bulk call, concurrently; then the AWS ids in
//! references are mapped to addresses, so the result compares with the model.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::AwsError;
use super::kind::{Clients, Found, Scope, kinds};
use crate::model::{Address, Desired, Kind, Lifecycle, Resource};
use crate::plan::{Actual, ActualResource};

/// What discovery must know of the model: the cluster, and the shared ids.
pub fn scope(desired: &Desired) -> Scope {
    let mut shared = BTreeMap::new();
    let mut shared_vpc = None;
    for (a, d) in &desired.resources {
        if let Lifecycle::Shared(id) = &d.lifecycle
            && !id.is_empty()
        {
            shared.insert(id.clone(), a.clone());
            if a.kind == Kind::Vpc {
                shared_vpc = Some(id.clone());
            }
        }
    }
    // Both names are looked at even if one is no longer wanted, so that its
    // record is found and removed.
    let dns = desired.resources.values().find_map(|d| match &d.resource {
        crate::model::Resource::DnsRecord(r) => Some((
            r.zone.clone(),
            r.private_zone,
            vec![
                format!("api.{}", desired.cluster),
                format!("bastion.{}", desired.cluster),
            ],
        )),
        _ => None,
    });
    let templates = desired
        .resources
        .values()
        .filter_map(|d| match &d.resource {
            crate::model::Resource::LaunchTemplate(t) => Some((t.name.clone(), t.clone())),
            _ => None,
        })
        .collect();
    let client_ip_off = desired
        .resources
        .values()
        .filter_map(|d| match &d.resource {
            crate::model::Resource::TargetGroup(t) if !t.preserve_client_ip => Some(t.name.clone()),
            _ => None,
        })
        .collect();
    Scope {
        cluster: desired.cluster.clone(),
        shared,
        shared_vpc,
        dns,
        templates,
        client_ip_off,
        deleting: false,
        region_addresses: false,
    }
}

pub async fn discover(aws: &Clients, scope: Scope) -> Result<Actual, AwsError> {
    let scope = Arc::new(scope);
    let mut tasks = tokio::task::JoinSet::new();
    let started = std::time::Instant::now();
    for k in kinds() {
        let (aws, scope) = (aws.clone(), scope.clone());
        tasks.spawn(async move {
            let t = std::time::Instant::now();
            let found = k.discover(&aws, &scope).await;
            if let Ok(f) = &found {
                tracing::debug!(
                    "discovered {} {} in {}",
                    f.len(),
                    k.kind().as_str(),
                    crate::apply::critical::human(t.elapsed())
                );
            }
            found
        });
    }
    let mut found: Vec<Found> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        found.extend(r.expect("discovery task panicked")?);
    }
    // Launch templates last: whether one needs reading depends on its security
    // groups' ids.
    super::launch_template::complete(aws, &scope, &mut found).await?;
    let actual = resolve(found);
    tracing::debug!(
        "discovery found {} resources ({} duplicates) in {}",
        actual.resources.len(),
        actual.duplicates.len(),
        crate::apply::critical::human(started.elapsed())
    );
    Ok(actual)
}

/// The prefix of an elastic IP's link that carries its address as a /32.
pub const ADDRESS_LINK: &str = "address:";

/// Maps ids to addresses and builds the Actual value. Pure.
pub fn resolve(mut found: Vec<Found>) -> Actual {
    // A rule admitting one of our elastic IPs' /32 names the elastic IP, as the
    // model does (its address is AWS's choice).
    let eip_of: BTreeMap<String, String> = found
        .iter()
        .filter(|f| f.resource.kind() == Kind::ElasticIp)
        .flat_map(|f| {
            f.links
                .iter()
                .filter_map(|l| l.strip_prefix(ADDRESS_LINK))
                .map(|cidr| (cidr.to_string(), f.id.clone()))
        })
        .collect();
    for f in &mut found {
        if let Resource::SecurityGroupRule(r) = &mut f.resource
            && let Some(id) = r.cidr.as_ref().and_then(|c| eip_of.get(&c.to_string()))
        {
            r.elastic_ip = Some(Address::foreign(Kind::ElasticIp, id));
            r.cidr = None;
        }
    }
    // A VPC names its DHCP options; the options learn their VPC from it.
    let dhcp_of: BTreeMap<String, String> = found
        .iter()
        .filter(|f| f.resource.kind() == Kind::Vpc)
        .flat_map(|f| f.links.iter().map(|l| (l.clone(), f.id.clone())))
        .collect();
    for f in &mut found {
        if let (Resource::DhcpOptions(o), Some(vpc)) = (&mut f.resource, dhcp_of.get(&f.id)) {
            o.vpc = Address::foreign(Kind::Vpc, vpc);
        }
    }
    let named: BTreeMap<String, Address> = found
        .iter()
        .filter(|f| {
            !matches!(
                f.resource.kind(),
                Kind::Route
                    | Kind::RouteTableAssociation
                    | Kind::SecurityGroupRule
                    | Kind::IamRolePolicy
                    | Kind::Listener
                    | Kind::DnsRecord
            )
        })
        .flat_map(|f| {
            // A load balancer is also known by its DNS name, which alias records name.
            let dns = f
                .links
                .iter()
                .filter(|l| l.starts_with("dns:"))
                .map(|l| (l.clone(), f.resource.address()));
            std::iter::once((f.id.clone(), f.resource.address()))
                .chain(dns)
                .collect::<Vec<_>>()
        })
        .collect();
    // Task completion order must not decide which of two duplicates is kept.
    found.sort_by(|a, b| a.id.cmp(&b.id));
    let mut actual = Actual::default();
    for mut f in found {
        for r in f.resource.refs_mut() {
            if let Some(id) = r.name.strip_prefix('<').and_then(|n| n.strip_suffix('>'))
                && let Some(a) = named.get(id)
            {
                *r = a.clone();
            }
        }
        actual.insert(ActualResource {
            id: f.id,
            resource: f.resource,
            owned: f.owned,
            state: f.state,
        });
    }
    actual
}
