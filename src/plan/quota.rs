//! Quotas: what a plan adds of the resources AWS limits per account and region,
//! against the limits and the current usage `aws::quotas` reads. Pure. Only
//! what the plan *creates* counts: a plan that adds none of these asks nothing.

use std::collections::BTreeMap;

use super::{Action, Plan};
use crate::model::{Desired, Kind, resources::Resource};

/// One quota, as Service Quotas names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quota {
    pub service: &'static str,
    pub code: &'static str,
    pub name: &'static str,
    /// How a preview names what it counts.
    pub unit: &'static str,
}

pub const ELASTIC_IPS: Quota = Quota {
    service: "ec2",
    code: "L-0263D0A3",
    name: "EC2-VPC Elastic IPs",
    unit: "Elastic IPs",
};
pub const VPCS: Quota = Quota {
    service: "vpc",
    code: "L-F678F1CE",
    name: "VPCs per Region",
    unit: "VPCs",
};
pub const INTERNET_GATEWAYS: Quota = Quota {
    service: "vpc",
    code: "L-A4707A72",
    name: "Internet gateways per Region",
    unit: "Internet gateways",
};
pub const NAT_GATEWAYS: Quota = Quota {
    service: "vpc",
    code: "L-FE5A380F",
    name: "NAT gateways per Availability Zone",
    unit: "NAT gateways",
};
pub const STANDARD_VCPUS: Quota = Quota {
    service: "ec2",
    code: "L-1216C47A",
    name: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
    unit: "vCPUs",
};

/// Read with Auto Scaling's DescribeAccountLimits (the limit and the use in one
/// call), not Service Quotas.
pub const AUTOSCALING_GROUPS: Quota = Quota {
    service: "autoscaling",
    code: "L-CDE20ADC",
    name: "Auto Scaling groups per region",
    unit: "Auto Scaling groups",
};

/// The instance families the standard vCPU quota covers.
pub fn is_standard_family(machine_type: &str) -> bool {
    matches!(
        machine_type.chars().next(),
        Some('a' | 'c' | 'd' | 'h' | 'i' | 'm' | 'r' | 't' | 'z')
    )
}

/// What the plan adds, per quota (NAT gateways per zone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub elastic_ips: u64,
    pub vpcs: u64,
    pub internet_gateways: u64,
    pub nat_gateways: BTreeMap<String, u64>,
    pub autoscaling_groups: u64,
    /// Instances (at most, with a rolling update's surge) by machine type.
    pub instances: BTreeMap<String, u64>,
}

impl Needs {
    pub fn is_empty(&self) -> bool {
        *self == Needs::default()
    }
}

/// Counts what `plan` creates. `surge` is, per ASG name, the instances a rolling
/// update adds on top of its maximum (groups roll one at a time, so only the
/// largest surge is counted). A group with a mixed instances policy counts only
/// its on-demand part (the base, then its percentage of the rest, rounded up):
/// spot instances draw on the separate Spot quota, which is not read; each as
/// its type with the most vCPUs (`vcpus`, where known; else the first), since
/// Auto Scaling may launch any of them.
pub fn needs(
    plan: &Plan,
    desired: &Desired,
    surge: &BTreeMap<String, u64>,
    vcpus: &BTreeMap<String, u64>,
) -> Needs {
    let mut n = Needs::default();
    let resource = |a| desired.resources.get(a).map(|d| &d.resource);
    let mut peak_surge: Option<(String, u64)> = None;
    for c in &plan.changes {
        let after = c.desired.as_ref().map(|d| &d.resource);
        match (c.kind, c.action, after) {
            (Kind::ElasticIp, Action::Create, _) => n.elastic_ips += 1,
            (Kind::Vpc, Action::Create, _) => n.vpcs += 1,
            (Kind::InternetGateway, Action::Create, _) => n.internet_gateways += 1,
            (Kind::NatGateway, Action::Create, Some(Resource::NatGateway(g))) => {
                if let Some(Resource::Subnet(s)) = resource(&g.subnet) {
                    *n.nat_gateways.entry(s.zone.clone()).or_default() += 1;
                }
            }
            (
                Kind::AutoScalingGroup,
                Action::Create | Action::Update | Action::Replace,
                Some(Resource::AutoScalingGroup(g)),
            ) => {
                if c.action == Action::Create {
                    n.autoscaling_groups += 1;
                }
                let Some(Resource::LaunchTemplate(t)) = resource(&g.launch_template) else {
                    continue;
                };
                let before = match (&c.action, &c.existing) {
                    (Action::Update, Some(Resource::AutoScalingGroup(old))) => on_demand(old),
                    _ => 0,
                };
                let machine_type = match &g.mixed_instances {
                    Some(m) => largest(&m.instance_types, vcpus).unwrap_or(&t.machine_type),
                    None => &t.machine_type,
                };
                let added = u64::from(on_demand(g).saturating_sub(before));
                if added > 0 {
                    *n.instances.entry(machine_type.clone()).or_default() += added;
                }
                let s = surge.get(&g.name).copied().unwrap_or(0);
                if s > 0 && peak_surge.as_ref().is_none_or(|(_, p)| s > *p) {
                    peak_surge = Some((machine_type.clone(), s));
                }
            }
            _ => {}
        }
    }
    if let Some((t, s)) = peak_surge {
        *n.instances.entry(t).or_default() += s;
    }
    n
}

/// At most how many of the group's instances are on-demand.
fn on_demand(g: &crate::model::AutoScalingGroup) -> u32 {
    match &g.mixed_instances {
        Some(m) => crate::spec::aws_fields::on_demand_at_most(
            g.max_size,
            m.on_demand_base,
            m.on_demand_above_base,
        ),
        None => g.max_size,
    }
}

/// The type with the most vCPUs of those known; the first when none is.
fn largest<'a>(types: &'a [String], vcpus: &BTreeMap<String, u64>) -> Option<&'a String> {
    types
        .iter()
        .filter(|t| vcpus.contains_key(*t))
        .max_by_key(|t| vcpus[*t])
        .or(types.first())
}

/// A quota's limit, and what the account uses of it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The applied value, else AWS's default.
    pub limit: f64,
    /// `applied` or `default`, for messages.
    pub source: &'static str,
    pub used: u64,
    /// `used` is a bound (the region's count for a per-zone quota), not the
    /// exact figure: read so when the bound alone shows the need fits.
    pub at_most: bool,
}

/// One line of consumption, for the preview and for the refusal.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumption {
    pub quota: Quota,
    /// The zone, for a per-zone quota.
    pub zone: Option<String>,
    pub needed: u64,
    pub used: u64,
    pub limit: f64,
    /// `used` is an upper bound ([`Reading::at_most`]).
    pub at_most: bool,
}

impl Consumption {
    pub fn fits(&self) -> bool {
        (self.used + self.needed) as f64 <= self.limit
    }

    /// "Elastic IPs: 3 needed, 1 used of 5".
    pub fn line(&self) -> String {
        let zone = self
            .zone
            .as_ref()
            .map(|z| format!(" in {z}"))
            .unwrap_or_default();
        format!(
            "{}{zone}: {} needed, {}{} used of {} ({} {})",
            self.quota.unit,
            self.needed,
            if self.at_most { "at most " } else { "" },
            self.used,
            self.limit,
            self.quota.service,
            self.quota.code
        )
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", shortfalls.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("; "))]
pub struct QuotaError {
    pub shortfalls: Vec<Shortfall>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "quota {name} ({service} {code}) in {region}{zone}: {used} used + {needed} needed = {total} is more than the limit {limit}; nothing was written. Ask for more with `aws service-quotas request-service-quota-increase --service-code {service} --quota-code {code} --desired-value {total} --region {region}`, or free {over} (e.g. unused {unit})",
    name = quota.name,
    service = quota.service,
    code = quota.code,
    zone = zone.as_ref().map(|z| format!(", zone {z}")).unwrap_or_default(),
    total = used + needed,
    over = (*used + *needed) as f64 - *limit,
    unit = quota.unit,
)]
pub struct Shortfall {
    pub quota: Quota,
    pub region: String,
    pub zone: Option<String>,
    pub needed: u64,
    pub used: u64,
    pub limit: f64,
}

/// The consumption of every needed quota that was read; an error naming each
/// shortfall. `readings` is keyed by quota code (and zone for per-zone ones:
/// `CODE/ZONE`); a quota not read is not checked.
pub fn check(
    needs: &Needs,
    readings: &BTreeMap<String, Reading>,
    vcpus: &BTreeMap<String, u64>,
    region: &str,
) -> Result<Vec<Consumption>, QuotaError> {
    let mut wanted: Vec<(Quota, Option<String>, u64)> = vec![
        (ELASTIC_IPS, None, needs.elastic_ips),
        (VPCS, None, needs.vpcs),
        (INTERNET_GATEWAYS, None, needs.internet_gateways),
    ];
    for (zone, n) in &needs.nat_gateways {
        wanted.push((NAT_GATEWAYS, Some(zone.clone()), *n));
    }
    wanted.push((STANDARD_VCPUS, None, standard_vcpus(needs, vcpus)));
    wanted.push((AUTOSCALING_GROUPS, None, needs.autoscaling_groups));
    let mut out = Vec::new();
    let mut shortfalls = Vec::new();
    for (quota, zone, needed) in wanted {
        if needed == 0 {
            continue;
        }
        let key = match &zone {
            Some(z) => format!("{}/{z}", quota.code),
            None => quota.code.to_string(),
        };
        let Some(r) = readings.get(&key) else {
            continue;
        };
        let c = Consumption {
            quota,
            zone: zone.clone(),
            needed,
            used: r.used,
            limit: r.limit,
            at_most: r.at_most,
        };
        if !c.fits() {
            shortfalls.push(Shortfall {
                quota,
                region: region.to_string(),
                zone,
                needed,
                used: r.used,
                limit: r.limit,
            });
        }
        out.push(c);
    }
    if shortfalls.is_empty() {
        Ok(out)
    } else {
        Err(QuotaError { shortfalls })
    }
}

/// The vCPUs the plan's standard-family instances need (types of unknown size
/// count nothing).
pub fn standard_vcpus(needs: &Needs, vcpus: &BTreeMap<String, u64>) -> u64 {
    needs
        .instances
        .iter()
        .filter(|(t, _)| is_standard_family(t))
        .map(|(t, n)| n * vcpus.get(t).copied().unwrap_or(0))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(limit: f64, used: u64) -> Reading {
        Reading {
            limit,
            source: "applied",
            used,
            at_most: false,
        }
    }

    #[test]
    fn a_shortfall_names_the_quota_and_the_increase_command() {
        let needs = Needs {
            elastic_ips: 3,
            vpcs: 1,
            instances: [("t3.medium".to_string(), 7)].into(),
            ..Default::default()
        };
        let mut r = BTreeMap::new();
        r.insert(ELASTIC_IPS.code.to_string(), reading(5.0, 3));
        r.insert(VPCS.code.to_string(), reading(5.0, 1));
        r.insert(STANDARD_VCPUS.code.to_string(), reading(32.0, 4));
        let vcpus = [("t3.medium".to_string(), 2)].into();
        let e = check(&needs, &r, &vcpus, "us-east-1").unwrap_err();
        assert_eq!(e.shortfalls.len(), 1);
        let m = e.to_string();
        assert!(m.contains("EC2-VPC Elastic IPs (ec2 L-0263D0A3)"), "{m}");
        assert!(
            m.contains("3 used + 3 needed = 6 is more than the limit 5"),
            "{m}"
        );
        assert!(
            m.contains("aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-0263D0A3 --desired-value 6 --region us-east-1"),
            "{m}"
        );
        r.insert(ELASTIC_IPS.code.to_string(), reading(5.0, 2));
        let ok = check(&needs, &r, &vcpus, "us-east-1").unwrap();
        let lines: Vec<String> = ok.iter().map(Consumption::line).collect();
        assert_eq!(
            lines,
            [
                "Elastic IPs: 3 needed, 2 used of 5 (ec2 L-0263D0A3)",
                "VPCs: 1 needed, 1 used of 5 (vpc L-F678F1CE)",
                "vCPUs: 14 needed, 4 used of 32 (ec2 L-1216C47A)",
            ]
        );
        // Nothing needed, nothing said; a quota not read is not checked.
        assert!(
            check(&Needs::default(), &r, &vcpus, "us-east-1")
                .unwrap()
                .is_empty()
        );
        assert!(is_standard_family("m7i.large") && !is_standard_family("g5.xlarge"));
        // Auto Scaling groups, in the same format.
        let asgs = Needs {
            autoscaling_groups: 7,
            ..Default::default()
        };
        r.insert(AUTOSCALING_GROUPS.code.to_string(), reading(200.0, 195));
        let m = check(&asgs, &r, &vcpus, "us-east-1")
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("quota Auto Scaling groups per region (autoscaling L-CDE20ADC) in us-east-1: 195 used + 7 needed = 202 is more than the limit 200")
                && m.contains("--service-code autoscaling --quota-code L-CDE20ADC --desired-value 202"),
            "{m}"
        );
    }
}
