//! Quotas and usage for `plan::quota`: each needed quota's applied value from
//! Service Quotas (the VPC quotas with one ListServiceQuotas when more than one
//! is needed; else, and for any code it does not list, GetServiceQuota, then
//! AWS's default with GetAWSDefaultServiceQuota), and what the account uses of it
//! now (one Describe call per kind, all at once; the Elastic IPs counted by a
//! first apply's discovery are not read again, and NAT gateways are placed in
//! their zones only when the region's count does not already show room); Auto
//! Scaling groups from one DescribeAccountLimits, limit and use together. Read
//! only when a plan adds what a quota limits, so a no-op plan asks nothing.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use aws_sdk_servicequotas::error::ProvideErrorMetadata;

use super::{AwsError, call_error, describe};
use crate::plan::quota::{
    self, AUTOSCALING_GROUPS, ELASTIC_IPS, INTERNET_GATEWAYS, NAT_GATEWAYS, Needs, Quota, Reading,
    STANDARD_VCPUS, VPCS,
};

/// Service Quotas, with at most two attempts: a preflight read that fails is a
/// warning, not a reason to wait (the emulator answers some calls with HTTP 500).
pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_servicequotas::Client {
    let conf = aws_sdk_servicequotas::config::Builder::from(config)
        .retry_config(super::retry_config().with_max_attempts(2))
        .build();
    aws_sdk_servicequotas::Client::from_conf(conf)
}

/// Auto Scaling for DescribeAccountLimits, with at most two attempts as
/// [`client`] (the emulator does not implement it).
pub fn autoscaling_client(config: &aws_config::SdkConfig) -> aws_sdk_autoscaling::Client {
    let conf = aws_sdk_autoscaling::config::Builder::from(config)
        .retry_config(super::retry_config().with_max_attempts(2))
        .build();
    aws_sdk_autoscaling::Client::from_conf(conf)
}

/// What was read: readings by quota code (`CODE/ZONE` for per-zone quotas), the
/// vCPUs of the plan's machine types, and warnings for what could not be read.
#[derive(Debug, Default)]
pub struct Readings {
    pub readings: BTreeMap<String, Reading>,
    pub vcpus: BTreeMap<String, u64>,
    pub warnings: Vec<String>,
}

enum Limit {
    Value(f64, &'static str),
    Denied(String),
    Unreadable(String),
}

async fn limit(sq: &aws_sdk_servicequotas::Client, q: Quota) -> Limit {
    let applied = sq
        .get_service_quota()
        .service_code(q.service)
        .quota_code(q.code)
        .send()
        .await;
    let e = match applied {
        Ok(o) => match o.quota().and_then(|x| x.value()) {
            Some(v) => return Limit::Value(v, "applied"),
            None => return Limit::Unreadable("GetServiceQuota gave no value".into()),
        },
        Err(e) => e,
    };
    match e.code() {
        Some("NoSuchResourceException") => {}
        Some(c) if c.starts_with("AccessDenied") => {
            return Limit::Denied(format!("GetServiceQuota: {}", describe(&e)));
        }
        _ => return Limit::Unreadable(format!("GetServiceQuota: {}", describe(&e))),
    }
    match sq
        .get_aws_default_service_quota()
        .service_code(q.service)
        .quota_code(q.code)
        .send()
        .await
    {
        Ok(o) => match o.quota().and_then(|x| x.value()) {
            Some(v) => Limit::Value(v, "default"),
            None => Limit::Unreadable("GetAWSDefaultServiceQuota gave no value".into()),
        },
        Err(e) if e.code().is_some_and(|c| c.starts_with("AccessDenied")) => {
            Limit::Denied(format!("GetAWSDefaultServiceQuota: {}", describe(&e)))
        }
        Err(e) => Limit::Unreadable(format!("GetAWSDefaultServiceQuota: {}", describe(&e))),
    }
}

/// The applied values of `quotas` (all of one service) with one paginated
/// ListServiceQuotas; a code it does not list (AWS lists only quotas with an
/// applied value) is read alone with [`limit`], as is every code when the call
/// fails for any reason but a denial.
async fn listed_limits(
    sq: &aws_sdk_servicequotas::Client,
    service: &'static str,
    quotas: Vec<Quota>,
) -> Vec<(Quota, Limit)> {
    let mut found: BTreeMap<String, f64> = BTreeMap::new();
    let mut pages = sq
        .list_service_quotas()
        .service_code(service)
        .max_results(100)
        .into_paginator()
        .send();
    let mut failed = None;
    while let Some(p) = pages.next().await {
        match p {
            Ok(p) => {
                for q in p.quotas() {
                    if let (Some(c), Some(v)) = (q.quota_code(), q.value()) {
                        found.insert(c.to_string(), v);
                    }
                }
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if let Some(e) = &failed
        && e.code().is_some_and(|c| c.starts_with("AccessDenied"))
    {
        let m = format!("ListServiceQuotas: {}", describe(e));
        return quotas
            .into_iter()
            .map(|q| (q, Limit::Denied(m.clone())))
            .collect();
    }
    let mut out = Vec::new();
    for q in quotas {
        match found.get(q.code) {
            Some(v) if failed.is_none() => out.push((q, Limit::Value(*v, "applied"))),
            _ => out.push((q, limit(sq, q).await)),
        }
    }
    out
}

/// Every needed Service Quotas limit: the VPC quotas (more than one wanted)
/// with one listing, the others one call each, all at once.
async fn limits(sq: &aws_sdk_servicequotas::Client, wanted: &[Quota]) -> Vec<(Quota, Limit)> {
    let vpc: Vec<Quota> = wanted
        .iter()
        .copied()
        .filter(|q| q.service == "vpc")
        .collect();
    let listed = vpc.len() > 1;
    let mut calls = tokio::task::JoinSet::new();
    if listed {
        let sq = sq.clone();
        calls.spawn(async move { listed_limits(&sq, "vpc", vpc).await });
    }
    for q in wanted.iter().copied() {
        if listed && q.service == "vpc" {
            continue;
        }
        let sq = sq.clone();
        calls.spawn(async move { vec![(q, limit(&sq, q).await)] });
    }
    let mut v = Vec::new();
    while let Some(r) = calls.join_next().await {
        v.extend(r.expect("a quota read panicked"));
    }
    v.sort_by_key(|(q, _)| *q);
    v
}

/// Auto Scaling groups: the account's limit and use in the region, in one call.
async fn autoscaling_groups(asg: &aws_sdk_autoscaling::Client) -> Limit2 {
    match asg.describe_account_limits().send().await {
        Ok(o) => match (
            o.max_number_of_auto_scaling_groups(),
            o.number_of_auto_scaling_groups(),
        ) {
            (Some(max), Some(used)) => Limit2::Value(f64::from(max), used.max(0) as u64),
            _ => Limit2::Unreadable("DescribeAccountLimits gave no numbers".into()),
        },
        Err(e) => Limit2::Unreadable(format!("DescribeAccountLimits: {}", describe(&e))),
    }
}

/// A limit read with its use (DescribeAccountLimits).
enum Limit2 {
    Value(f64, u64),
    Unreadable(String),
}

async fn elastic_ips(ec2: &aws_sdk_ec2::Client) -> Result<u64, AwsError> {
    let out = ec2
        .describe_addresses()
        .send()
        .await
        .map_err(|e| call_error("DescribeAddresses", &e))?;
    Ok(out.addresses().len() as u64)
}

async fn vpcs(ec2: &aws_sdk_ec2::Client) -> Result<u64, AwsError> {
    let mut n = 0;
    let mut pages = ec2.describe_vpcs().into_paginator().send();
    while let Some(p) = pages.next().await {
        n += p.map_err(|e| call_error("DescribeVpcs", &e))?.vpcs().len() as u64;
    }
    Ok(n)
}

async fn internet_gateways(ec2: &aws_sdk_ec2::Client) -> Result<u64, AwsError> {
    let mut n = 0;
    let mut pages = ec2.describe_internet_gateways().into_paginator().send();
    while let Some(p) = pages.next().await {
        n += p
            .map_err(|e| call_error("DescribeInternetGateways", &e))?
            .internet_gateways()
            .len() as u64;
    }
    Ok(n)
}

/// The subnets of the NAT gateways that count (pending or available), one entry
/// per gateway.
async fn nat_gateway_subnets(ec2: &aws_sdk_ec2::Client) -> Result<Vec<String>, AwsError> {
    let mut subnets: Vec<String> = Vec::new();
    let mut pages = ec2
        .describe_nat_gateways()
        .filter(
            Filter::builder()
                .name("state")
                .values("pending")
                .values("available")
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(p) = pages.next().await {
        for g in p
            .map_err(|e| call_error("DescribeNatGateways", &e))?
            .nat_gateways()
        {
            // Checked here too: the emulator ignores some filters.
            let live = matches!(g.state().map(|s| s.as_str()), Some("pending" | "available"));
            if let (true, Some(s)) = (live, g.subnet_id()) {
                subnets.push(s.to_string());
            }
        }
    }
    Ok(subnets)
}

/// NAT gateways by the zone of their subnet (one DescribeSubnets).
async fn nat_gateways_by_zone(
    ec2: &aws_sdk_ec2::Client,
    subnets: &[String],
) -> Result<BTreeMap<String, u64>, AwsError> {
    let mut out = BTreeMap::new();
    if subnets.is_empty() {
        return Ok(out);
    }
    let mut unique = subnets.to_vec();
    unique.sort();
    unique.dedup();
    let found = ec2
        .describe_subnets()
        .set_subnet_ids(Some(unique))
        .send()
        .await
        .map_err(|e| call_error("DescribeSubnets", &e))?;
    let zone: BTreeMap<&str, &str> = found
        .subnets()
        .iter()
        .filter_map(|s| Some((s.subnet_id()?, s.availability_zone()?)))
        .collect();
    for s in subnets {
        if let Some(z) = zone.get(s.as_str()) {
            *out.entry(z.to_string()).or_default() += 1;
        }
    }
    Ok(out)
}

/// What each zone uses of the per-zone NAT quota. The region's count bounds
/// every zone's: when it leaves room for the most any zone needs, every zone
/// fits and the zones need not be looked up (one DescribeSubnets saved, the
/// common case: a second cluster in an account). The reading then says
/// "at most".
async fn nat_gateway_use(
    ec2: &aws_sdk_ec2::Client,
    subnets: &[String],
    limit: f64,
    needs: &BTreeMap<String, u64>,
) -> Result<(BTreeMap<String, u64>, bool), AwsError> {
    if let Some(bound) = nat_bound(subnets.len() as u64, limit, needs) {
        return Ok((bound, true));
    }
    Ok((nat_gateways_by_zone(ec2, subnets).await?, false))
}

/// Every needed zone's use bounded by the region's `total`, when that bound
/// alone shows each zone fits; None when the zones must be looked up.
fn nat_bound(
    total: u64,
    limit: f64,
    needs: &BTreeMap<String, u64>,
) -> Option<BTreeMap<String, u64>> {
    let most = needs.values().copied().max().unwrap_or(0);
    ((total + most) as f64 <= limit).then(|| needs.keys().map(|z| (z.clone(), total)).collect())
}

/// The vCPUs of running and pending standard-family instances.
async fn standard_vcpus(ec2: &aws_sdk_ec2::Client) -> Result<u64, AwsError> {
    let mut n = 0;
    let mut pages = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(p) = pages.next().await {
        for r in p
            .map_err(|e| call_error("DescribeInstances", &e))?
            .reservations()
        {
            for i in r.instances() {
                let live = matches!(
                    i.state().and_then(|s| s.name()).map(|s| s.as_str()),
                    Some("pending" | "running")
                );
                let standard = i
                    .instance_type()
                    .is_some_and(|t| quota::is_standard_family(t.as_str()));
                if !(live && standard) {
                    continue;
                }
                let cpu = i.cpu_options();
                let cores = cpu.and_then(|c| c.core_count()).unwrap_or(1).max(1);
                let threads = cpu.and_then(|c| c.threads_per_core()).unwrap_or(1).max(1);
                n += (cores * threads) as u64;
            }
        }
    }
    Ok(n)
}

/// The vCPUs of these machine types (DescribeInstanceTypes), for types not
/// already known.
async fn type_vcpus(
    ec2: &aws_sdk_ec2::Client,
    types: Vec<String>,
) -> Result<BTreeMap<String, u64>, AwsError> {
    let mut out = BTreeMap::new();
    if types.is_empty() {
        return Ok(out);
    }
    let described = ec2
        .describe_instance_types()
        .set_instance_types(Some(types.iter().map(|t| t.as_str().into()).collect()))
        .send()
        .await
        .map_err(|e| call_error("DescribeInstanceTypes", &e))?;
    for t in described.instance_types() {
        if let (Some(name), Some(v)) = (
            t.instance_type(),
            t.v_cpu_info().and_then(|v| v.default_v_cpus()),
        ) {
            out.insert(name.as_str().to_string(), v as u64);
        }
    }
    Ok(out)
}

/// Reads the limits and usage of what `needs` asks for, all at once. Service
/// Quotas denied by IAM is one warning, and no quota is checked; usage reads are
/// EC2 Describe calls keelson's policy already grants, and their errors fail.
pub async fn read(
    ec2: &aws_sdk_ec2::Client,
    sq: &aws_sdk_servicequotas::Client,
    asg: &aws_sdk_autoscaling::Client,
    needs: &Needs,
    known_vcpus: &BTreeMap<String, u64>,
    known_addresses: Option<u64>,
) -> Result<Readings, AwsError> {
    let mut out = Readings {
        vcpus: known_vcpus.clone(),
        ..Default::default()
    };
    let missing: Vec<String> = needs
        .instances
        .keys()
        .filter(|t| quota::is_standard_family(t) && !known_vcpus.contains_key(*t))
        .cloned()
        .collect();
    let want_vcpus = needs.instances.keys().any(|t| quota::is_standard_family(t));
    let wanted: Vec<Quota> = [
        (ELASTIC_IPS, needs.elastic_ips > 0),
        (VPCS, needs.vpcs > 0),
        (INTERNET_GATEWAYS, needs.internet_gateways > 0),
        (NAT_GATEWAYS, !needs.nat_gateways.is_empty()),
        (STANDARD_VCPUS, want_vcpus),
    ]
    .into_iter()
    .filter_map(|(q, w)| w.then_some(q))
    .collect();
    let want_asgs = needs.autoscaling_groups > 0;
    if wanted.is_empty() && !want_asgs {
        return Ok(out);
    }
    let wants = |q: Quota| wanted.contains(&q);
    let (limits, asgs, eips, vpc_n, igw_n, nats, vcpu_n, types) = tokio::join!(
        limits(sq, &wanted),
        async {
            if want_asgs {
                Some(autoscaling_groups(asg).await)
            } else {
                None
            }
        },
        async {
            if let (true, Some(n)) = (wants(ELASTIC_IPS), known_addresses) {
                Ok(Some(n))
            } else if wants(ELASTIC_IPS) {
                elastic_ips(ec2).await.map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            if wants(VPCS) {
                vpcs(ec2).await.map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            if wants(INTERNET_GATEWAYS) {
                internet_gateways(ec2).await.map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            if wants(NAT_GATEWAYS) {
                nat_gateway_subnets(ec2).await.map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            if wants(STANDARD_VCPUS) {
                standard_vcpus(ec2).await.map(Some)
            } else {
                Ok(None)
            }
        },
        type_vcpus(ec2, missing),
    );
    let (eips, vpc_n, igw_n, nats, vcpu_n) = (eips?, vpc_n?, igw_n?, nats?, vcpu_n?);
    out.vcpus.extend(types?);
    let asg_reading = match asgs {
        Some(Limit2::Value(limit, used)) => Some(Reading {
            limit,
            source: "applied",
            used,
            at_most: false,
        }),
        Some(Limit2::Unreadable(m)) => {
            out.warnings.push(format!(
                "could not read the quota {} ({} {}), so it is not checked: {m}",
                AUTOSCALING_GROUPS.name, AUTOSCALING_GROUPS.service, AUTOSCALING_GROUPS.code
            ));
            None
        }
        None => None,
    };
    let mut denied = None;
    for (q, l) in limits {
        let (value, source) = match l {
            Limit::Value(v, s) => (v, s),
            Limit::Denied(m) => {
                denied.get_or_insert(m);
                continue;
            }
            Limit::Unreadable(m) => {
                out.warnings.push(format!(
                    "could not read the quota {} ({} {}), so it is not checked: {m}",
                    q.name, q.service, q.code
                ));
                continue;
            }
        };
        let mut put = |key: String, used: u64, at_most: bool| {
            out.readings.insert(
                key,
                Reading {
                    limit: value,
                    source,
                    used,
                    at_most,
                },
            );
        };
        match q.code {
            c if c == ELASTIC_IPS.code => put(c.into(), eips.unwrap_or(0), false),
            c if c == VPCS.code => put(c.into(), vpc_n.unwrap_or(0), false),
            c if c == INTERNET_GATEWAYS.code => put(c.into(), igw_n.unwrap_or(0), false),
            c if c == STANDARD_VCPUS.code => put(c.into(), vcpu_n.unwrap_or(0), false),
            c if c == NAT_GATEWAYS.code => {
                let subnets = nats.clone().unwrap_or_default();
                let (used, at_most) =
                    nat_gateway_use(ec2, &subnets, value, &needs.nat_gateways).await?;
                for zone in needs.nat_gateways.keys() {
                    let n = used.get(zone).copied().unwrap_or(0);
                    put(format!("{c}/{zone}"), n, at_most);
                }
            }
            _ => {}
        }
    }
    if let Some(m) = denied {
        out.readings.clear();
        out.warnings.push(format!(
            "Service Quotas is denied to these credentials ({m}), so quotas are not checked before applying; grant servicequotas:GetServiceQuota and servicequotas:GetAWSDefaultServiceQuota (see `keelson iam operator-policy`)"
        ));
    }
    if let Some(r) = asg_reading {
        out.readings.insert(AUTOSCALING_GROUPS.code.to_string(), r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(n: &[(&str, u64)]) -> BTreeMap<String, u64> {
        n.iter().map(|(z, k)| (z.to_string(), *k)).collect()
    }

    #[test]
    fn the_regions_nat_count_spares_the_zone_lookup_only_when_it_proves_room() {
        let needs = zones(&[("a", 1), ("b", 2)]);
        // 3 in the region + 2 needed in b fit 5: every zone fits, whatever the split.
        assert_eq!(
            nat_bound(3, 5.0, &needs),
            Some(zones(&[("a", 3), ("b", 3)]))
        );
        // 4 + 2 > 5: the 4 may all be in b, or none; only the zones can tell.
        assert_eq!(nat_bound(4, 5.0, &needs), None);
        assert_eq!(
            nat_bound(0, 1.0, &zones(&[("a", 1)])),
            Some(zones(&[("a", 0)]))
        );
    }
}
