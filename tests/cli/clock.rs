//! The emulator's clock: AWS's timing, layered in front of moto by the proxy
//! (`Fault::Clock`). moto answers in milliseconds, makes a NAT gateway
//! `available` the moment it is made and shows every new resource to the very
//! next call; AWS does none of that, and a provisioner that has only met moto
//! has never been tested against it. With the clock on:
//!
//! - **latency**: every call is held for a time drawn per service (IAM and
//!   Route 53 are global endpoints in us-east-1, and slower);
//! - **pending states that last**: moto's answers are rewritten until the
//!   pending period has passed (a NAT gateway `pending` then `available`, and
//!   `deleting` before `deleted`; a load balancer `provisioning` then `active`;
//!   an instance `pending` then `running`, `Pending` in its Auto Scaling group);
//! - **eventual consistency**: a new EC2 id is invisible for a short while, to
//!   Describe (left out of filtered answers) and to every other call that names
//!   it (AWS's `Invalid*.NotFound`); a new instance profile is refused by
//!   CreateAutoScalingGroup / UpdateAutoScalingGroup and RunInstances with
//!   AWS's exact errors until it has propagated.
//!
//! Every figure is in AWS seconds, drawn uniformly from its span by a seeded
//! generator (one stream per figure, in the order events arrive), and then
//! multiplied by the clock's scale: tests run at 1/20 of AWS time (the
//! consistency windows at 1/4, see [`Clock::consistency_scale`]). Each figure's
//! source is beside it below.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The clock's settings: a seed and time scales (1.0 is AWS's own time).
#[derive(Clone, Debug)]
pub struct Clock {
    pub seed: u64,
    /// For latency and pending states.
    pub scale: f64,
    /// For the eventual-consistency windows (an id invisible, a profile
    /// refused). These race keelson's own timing, which is not scaled: its
    /// first retry comes 250-500 ms after a refusal, and the emulator serves a
    /// request in milliseconds. Shrunk as much as the pending states, a window
    /// of AWS's seconds would close before keelson's next call and test nothing.
    pub consistency_scale: f64,
    /// Every figure at its span's middle, with no draw: the figures the
    /// critical path (`keelson::apply::critical`) costs steps with, so that the
    /// bound it prints is exactly the time this emulated AWS takes and a
    /// bench's ratio measures keelson alone (`scripts/bench --clock`).
    pub fixed: bool,
}

impl Clock {
    /// The tests' clock: 1/20 of AWS time for latency and pending states (a NAT
    /// gateway is pending 3-7.5 s), 1/4 for consistency (a new instance
    /// profile is refused for 1.25-3.75 s, a new EC2 id invisible 0.125-0.75 s).
    pub fn tests(seed: u64) -> Clock {
        Clock {
            seed,
            scale: 1.0 / 20.0,
            consistency_scale: 1.0 / 4.0,
            fixed: false,
        }
    }
}

// The figures (AWS seconds, each with its source) are the library's
// (`keelson::aws::timing`), which the critical path `update --yes` prints is
// computed from too.
pub use keelson::aws::timing::*;

/// AWS's error for an instance profile it does not see yet, from Auto Scaling
/// (terraform-provider-aws, internal/service/autoscaling/group.go quotes it:
/// "ValidationError: You must use a valid fully-formed launch template. Value
/// (tf-acc-test-...) for parameter iamInstanceProfile.name is invalid. Invalid
/// IAM Instance Profile name").
pub fn asg_profile_refusal(profile: &str) -> String {
    format!(
        "You must use a valid fully-formed launch template. Value ({profile}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"
    )
}

/// The same from EC2's RunInstances (code InvalidParameterValue).
pub fn ec2_profile_refusal(profile: &str) -> String {
    format!(
        "Value ({profile}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"
    )
}

/// What a request gets instead of being forwarded.
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// What the clock knows of the resources it saw made.
#[derive(Default)]
pub struct Timeline {
    /// EC2 ids not yet visible, until when.
    invisible: BTreeMap<String, Instant>,
    /// Ids (NAT gateway, load balancer ARN, instance) still pending, until when.
    pending: BTreeMap<String, Instant>,
    /// NAT gateways being deleted, until when.
    deleting: BTreeMap<String, Instant>,
    /// Instance profile names not yet propagated, until when.
    profiles: BTreeMap<String, Instant>,
    /// Launch template id or name -> the instance profile it names.
    templates: BTreeMap<String, String>,
    /// Each figure's generator state.
    rngs: BTreeMap<&'static str, u64>,
    /// How many requests were refused, by code (for the tests to see the clock worked).
    pub refused: BTreeMap<String, usize>,
    /// How many answers were rewritten, by what (pending, deleting, hidden).
    pub rewritten: BTreeMap<&'static str, usize>,
}

/// splitmix64, as the proxy's throttle uses.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Timeline {
    /// A duration drawn from `s` on `figure`'s own stream, scaled.
    fn draw(&mut self, clock: &Clock, figure: &'static str, s: Span) -> Duration {
        let scale = match figure {
            "invisible" | "profile propagation" => clock.consistency_scale,
            _ => clock.scale,
        };
        let start = figure
            .bytes()
            .fold(clock.seed, |h, b| next(&mut (h ^ u64::from(b))));
        let rng = self.rngs.entry(figure).or_insert(start);
        let unit = if clock.fixed {
            0.5
        } else {
            (next(rng) >> 11) as f64 / (1u64 << 53) as f64
        };
        Duration::from_secs_f64((s.lo + (s.hi - s.lo) * unit) * scale)
    }

    /// How long to hold a call to `service` before forwarding it.
    pub fn latency(&mut self, clock: &Clock, service: &str) -> Duration {
        let figure = match service {
            "ec2" => "latency ec2",
            "autoscaling" => "latency autoscaling",
            "elasticloadbalancing" => "latency elb",
            "iam" => "latency iam",
            "route53" => "latency route53",
            "s3" => "latency s3",
            _ => "latency other",
        };
        self.draw(clock, figure, latency(service))
    }

    /// A request AWS would refuse now, and its refusal.
    pub fn refuse(
        &mut self,
        service: &str,
        op: &str,
        form: &[(String, String)],
    ) -> Option<Refusal> {
        let now = Instant::now();
        self.invisible.retain(|_, t| *t > now);
        self.profiles.retain(|_, t| *t > now);
        let refusal = match (service, op) {
            ("autoscaling", "CreateAutoScalingGroup" | "UpdateAutoScalingGroup") => {
                let template = value(form, "LaunchTemplate.LaunchTemplateId")
                    .or_else(|| value(form, "LaunchTemplate.LaunchTemplateName"));
                template
                    .and_then(|t| self.templates.get(t))
                    .filter(|p| self.profiles.contains_key(*p))
                    .map(|p| Refusal {
                        status: 400,
                        code: "ValidationError".into(),
                        message: asg_profile_refusal(p),
                    })
            }
            ("ec2", "RunInstances") => {
                let profile = value(form, "IamInstanceProfile.Name")
                    .map(str::to_string)
                    .or_else(|| {
                        value(form, "LaunchTemplate.LaunchTemplateId")
                            .and_then(|t| self.templates.get(t))
                            .cloned()
                    });
                profile
                    .filter(|p| self.profiles.contains_key(p))
                    .map(|p| Refusal {
                        status: 400,
                        code: "InvalidParameterValue".into(),
                        message: ec2_profile_refusal(&p),
                    })
            }
            _ => None,
        };
        if refusal.is_some() {
            return refusal.inspect(|r| *self.refused.entry(r.code.clone()).or_default() += 1);
        }
        if service != "ec2" {
            return None;
        }
        // Any EC2 call naming an id that has not propagated, except in a
        // filter (where AWS just finds nothing), gets AWS's not-found error.
        let named = form
            .iter()
            .filter(|(k, _)| k != "Action" && k != "Version" && !k.starts_with("Filter."))
            .find(|(_, v)| self.invisible.contains_key(v))?;
        let (code, message) = not_found(op, &named.1);
        *self.refused.entry(code.clone()).or_default() += 1;
        Some(Refusal {
            status: 400,
            code,
            message,
        })
    }

    /// Records what an answered request made or removed, and rewrites the
    /// answer as AWS would give it now.
    pub fn answered(
        &mut self,
        clock: &Clock,
        service: &str,
        op: &str,
        form: &[(String, String)],
        status: u16,
        body: String,
    ) -> String {
        if !(200..300).contains(&status) {
            return body;
        }
        let now = Instant::now();
        match (service, op) {
            ("ec2", _) if op.starts_with("Create") || op == "AllocateAddress" => {
                let tag = match op {
                    "CreateVpc" => Some("vpcId"),
                    "CreateSubnet" => Some("subnetId"),
                    "CreateSecurityGroup" => Some("groupId"),
                    "CreateRouteTable" => Some("routeTableId"),
                    "CreateInternetGateway" => Some("internetGatewayId"),
                    "AllocateAddress" => Some("allocationId"),
                    "CreateNatGateway" => Some("natGatewayId"),
                    "CreateLaunchTemplate" => Some("launchTemplateId"),
                    "CreateDhcpOptions" => Some("dhcpOptionsId"),
                    _ => None,
                };
                if let Some(id) = tag.and_then(|t| text_of(&body, t)) {
                    let d = self.draw(clock, "invisible", INVISIBLE);
                    self.invisible.insert(id.clone(), now + d);
                    if op == "CreateNatGateway" {
                        let d = self.draw(clock, "nat pending", NAT_PENDING);
                        self.pending.insert(id.clone(), now + d);
                    }
                    if op == "CreateLaunchTemplate" {
                        self.remember_template(form, Some(&id));
                    }
                }
                if op == "CreateLaunchTemplateVersion" {
                    self.remember_template(form, None);
                }
            }
            ("ec2", "DeleteNatGateway") => {
                if let Some(id) = value(form, "NatGatewayId") {
                    let d = self.draw(clock, "nat deleting", NAT_DELETING);
                    self.deleting.insert(id.to_string(), now + d);
                }
            }
            ("elasticloadbalancing", "CreateLoadBalancer") => {
                if let Some(arn) = text_of(&body, "LoadBalancerArn") {
                    let d = self.draw(clock, "lb provisioning", LB_PROVISIONING);
                    self.pending.insert(arn, now + d);
                }
            }
            ("iam", "CreateInstanceProfile" | "AddRoleToInstanceProfile") => {
                // A profile is usable once it and its role have propagated.
                if let Some(name) = value(form, "InstanceProfileName") {
                    let d = self.draw(clock, "profile propagation", PROFILE_PROPAGATION);
                    self.profiles.insert(name.to_string(), now + d);
                }
            }
            _ => {}
        }
        self.rewrite(clock, service, op, body, now)
    }

    fn remember_template(&mut self, form: &[(String, String)], id: Option<&str>) {
        let Some(profile) = value(form, "LaunchTemplateData.IamInstanceProfile.Name") else {
            return;
        };
        for key in [
            id,
            value(form, "LaunchTemplateId"),
            value(form, "LaunchTemplateName"),
        ]
        .into_iter()
        .flatten()
        {
            self.templates.insert(key.to_string(), profile.to_string());
        }
    }

    fn rewrite(
        &mut self,
        clock: &Clock,
        service: &str,
        op: &str,
        body: String,
        now: Instant,
    ) -> String {
        self.pending.retain(|_, t| *t > now);
        self.deleting.retain(|_, t| *t > now);
        match (service, op) {
            ("ec2", "DescribeInstances") => {
                let mut n = 0;
                let out = each_item(
                    &body,
                    "instancesSet",
                    "item",
                    "instanceId",
                    &mut |id, item| {
                        let until = self.first_sight(clock, id, now)?;
                        (until > now && item.contains("<name>running</name>")).then(|| {
                            n += 1;
                            item.replace("<code>16</code>", "<code>0</code>")
                                .replace("<name>running</name>", "<name>pending</name>")
                        })
                    },
                );
                self.count("instance pending", n);
                return out;
            }
            ("autoscaling", "DescribeAutoScalingGroups") => {
                let mut n = 0;
                let out = each_item(
                    &body,
                    "Instances",
                    "member",
                    "InstanceId",
                    &mut |id, item| {
                        let until = self.first_sight(clock, id, now)?;
                        (until > now && item.contains("<LifecycleState>InService</LifecycleState>"))
                            .then(|| {
                                n += 1;
                                item.replace(
                                    "<LifecycleState>InService</LifecycleState>",
                                    "<LifecycleState>Pending</LifecycleState>",
                                )
                            })
                    },
                );
                self.count("instance pending", n);
                return out;
            }
            ("elasticloadbalancing", "DescribeLoadBalancers") => {
                let mut n = 0;
                let pending = &self.pending;
                let out = each_item(
                    &body,
                    "LoadBalancers",
                    "member",
                    "LoadBalancerArn",
                    &mut |arn, item| {
                        pending.contains_key(arn).then(|| {
                            n += 1;
                            item.replace("<Code>active</Code>", "<Code>provisioning</Code>")
                        })
                    },
                );
                self.count("lb provisioning", n);
                return out;
            }
            ("ec2", "DescribeNatGateways") => {
                let (mut p, mut d) = (0, 0);
                let (pending, deleting) = (&self.pending, &self.deleting);
                let out = each_item(
                    &body,
                    "natGatewaySet",
                    "item",
                    "natGatewayId",
                    &mut |id, item| {
                        if pending.contains_key(id) && item.contains("<state>available</state>") {
                            p += 1;
                            return Some(
                                item.replace("<state>available</state>", "<state>pending</state>"),
                            );
                        }
                        if deleting.contains_key(id) && item.contains("<state>deleted</state>") {
                            d += 1;
                            return Some(
                                item.replace("<state>deleted</state>", "<state>deleting</state>"),
                            );
                        }
                        None
                    },
                );
                self.count("nat pending", p);
                self.count("nat deleting", d);
                return self.hide(out, "natGatewaySet", "natGatewayId");
            }
            _ => {}
        }
        let set = match op {
            "DescribeVpcs" => ("vpcSet", "vpcId"),
            "DescribeSubnets" => ("subnetSet", "subnetId"),
            "DescribeSecurityGroups" => ("securityGroupInfo", "groupId"),
            "DescribeRouteTables" => ("routeTableSet", "routeTableId"),
            "DescribeInternetGateways" => ("internetGatewaySet", "internetGatewayId"),
            "DescribeAddresses" => ("addressesSet", "allocationId"),
            "DescribeLaunchTemplates" => ("launchTemplates", "launchTemplateId"),
            "DescribeDhcpOptions" => ("dhcpOptionsSet", "dhcpOptionsId"),
            _ => return body,
        };
        if service != "ec2" {
            return body;
        }
        self.hide(body, set.0, set.1)
    }

    /// A filtered Describe answer without the items not yet visible.
    fn hide(&mut self, body: String, set: &str, id_tag: &str) -> String {
        if self.invisible.is_empty() {
            return body;
        }
        let mut n = 0;
        let invisible = &self.invisible;
        let out = each_item(&body, set, "item", id_tag, &mut |id, _| {
            invisible.contains_key(id).then(|| {
                n += 1;
                String::new()
            })
        });
        self.count("hidden", n);
        out
    }

    /// When an instance first seen now stops being pending (moto launches
    /// instances inside Auto Scaling, where the proxy does not see them made).
    fn first_sight(&mut self, clock: &Clock, id: &str, now: Instant) -> Option<Instant> {
        if let Some(t) = self.pending.get(id) {
            return Some(*t);
        }
        if self.pending.contains_key(&format!("seen {id}")) {
            return Some(now);
        }
        let d = self.draw(clock, "instance pending", INSTANCE_PENDING);
        self.pending.insert(id.to_string(), now + d);
        // Remembered for good, so that it is not pending again once its time is over.
        self.pending
            .insert(format!("seen {id}"), now + Duration::from_secs(86_400));
        Some(now + d)
    }

    fn count(&mut self, what: &'static str, n: usize) {
        if n > 0 {
            *self.rewritten.entry(what).or_default() += n;
        }
    }
}

/// AWS's not-found error for a call naming an EC2 id it does not see yet.
fn not_found(op: &str, id: &str) -> (String, String) {
    let (code, noun) = match id.split('-').next().unwrap_or("") {
        "vpc" => ("InvalidVpcID.NotFound", "vpc ID"),
        "subnet" => ("InvalidSubnetID.NotFound", "subnet ID"),
        "sg" => ("InvalidGroup.NotFound", "security group"),
        "rtb" => ("InvalidRouteTableID.NotFound", "routeTable ID"),
        "igw" => ("InvalidInternetGatewayID.NotFound", "internetGateway ID"),
        "eipalloc" => ("InvalidAllocationID.NotFound", "allocation ID"),
        "dopt" => ("InvalidDhcpOptionID.NotFound", "dhcpOption ID"),
        "lt" => {
            return (
                "InvalidLaunchTemplateId.NotFound".into(),
                format!("The specified launch template, with template ID {id}, does not exist."),
            );
        }
        "nat" if op == "DescribeNatGateways" => {
            return (
                "NatGatewayNotFound".into(),
                format!("The Nat Gateway {id} was not found"),
            );
        }
        "nat" => ("InvalidNatGatewayID.NotFound", "natGateway ID"),
        _ => ("InvalidParameterValue", "ID"),
    };
    (code.into(), format!("The {noun} '{id}' does not exist"))
}

/// A query-protocol form body, decoded.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    std::str::from_utf8(body)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((decode(k), decode(v)))
        })
        .collect()
}

fn value<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The text of the first `<tag>` element in `xml`.
fn text_of(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_string())
}

/// Calls `f` on each top-level `<item>` (EC2) or `<member>` (the other query
/// services) of every `<set>` element in `xml`, with the item's own id (its
/// first `<id_tag>` outside any nested item: a security group's rules name
/// other groups) and its text; an item `f` returns a string for is replaced by
/// it (an empty string removes it).
fn each_item(
    xml: &str,
    set: &str,
    item: &str,
    id_tag: &str,
    f: &mut dyn FnMut(&str, &str) -> Option<String>,
) -> String {
    let (set_open, set_close) = (format!("<{set}>"), format!("</{set}>"));
    let (open, close) = (format!("<{item}>"), format!("</{item}>"));
    let id_open = format!("<{id_tag}>");
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(s) = rest.find(&set_open) {
        let body_start = s + set_open.len();
        out.push_str(&rest[..body_start]);
        rest = &rest[body_start..];
        // Walk the set's direct items, counting nested items of the same name.
        loop {
            let next_open = rest.find(&open);
            let next_close = rest.find(&set_close);
            match (next_open, next_close) {
                (Some(o), Some(c)) if o < c => {
                    out.push_str(&rest[..o]);
                    let mut depth = 0usize;
                    let mut i = o;
                    let mut own_id: Option<String> = None;
                    let end = loop {
                        let tail = &rest[i..];
                        let no = tail.find(&open).map(|x| x + i);
                        let nc = tail.find(&close).map(|x| x + i);
                        let ni = if depth == 1 && own_id.is_none() {
                            tail.find(&id_open).map(|x| x + i)
                        } else {
                            None
                        };
                        let Some(nc) = nc else { break rest.len() };
                        let first = [no, Some(nc), ni].into_iter().flatten().min().unwrap();
                        if Some(first) == ni {
                            own_id = text_of(&rest[first..], id_tag);
                            i = first + id_open.len();
                        } else if Some(first) == no {
                            depth += 1;
                            i = first + open.len();
                        } else {
                            depth -= 1;
                            i = first + close.len();
                            if depth == 0 {
                                break i;
                            }
                        }
                    };
                    let text = &rest[o..end];
                    match own_id.as_deref().and_then(|id| f(id, text)) {
                        Some(new) => out.push_str(&new),
                        None => out.push_str(text),
                    }
                    rest = &rest[end..];
                }
                _ => break,
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_found_by_their_own_id_not_a_nested_one() {
        let xml = "<r><securityGroupInfo><item><ipPermissions><item><groups><item><groupId>sg-b</groupId></item></groups></item></ipPermissions><groupId>sg-a</groupId></item><item><groupId>sg-b</groupId></item></securityGroupInfo></r>";
        let mut seen = Vec::new();
        let out = each_item(xml, "securityGroupInfo", "item", "groupId", &mut |id, _| {
            seen.push(id.to_string());
            (id == "sg-b").then(String::new)
        });
        assert_eq!(seen, ["sg-a", "sg-b"]);
        assert_eq!(
            out,
            "<r><securityGroupInfo><item><ipPermissions><item><groups><item><groupId>sg-b</groupId></item></groups></item></ipPermissions><groupId>sg-a</groupId></item></securityGroupInfo></r>"
        );
    }

    #[test]
    fn forms_are_decoded() {
        let f = form(
            b"Action=CreateAutoScalingGroup&LaunchTemplate.LaunchTemplateId=lt-1&Name=a%3Ab%2Fc+d",
        );
        assert_eq!(value(&f, "LaunchTemplate.LaunchTemplateId"), Some("lt-1"));
        assert_eq!(value(&f, "Name"), Some("a:b/c d"));
    }

    #[test]
    fn draws_are_seeded_and_scaled() {
        let clock = Clock::tests(7);
        let (mut a, mut b) = (Timeline::default(), Timeline::default());
        let x: Vec<_> = (0..5)
            .map(|_| a.draw(&clock, "nat pending", NAT_PENDING))
            .collect();
        let y: Vec<_> = (0..5)
            .map(|_| b.draw(&clock, "nat pending", NAT_PENDING))
            .collect();
        assert_eq!(x, y);
        assert!(
            x.iter().all(|d| (3.0..=7.5).contains(&d.as_secs_f64())),
            "{x:?}"
        );
        assert!(x.windows(2).any(|w| w[0] != w[1]), "drawn: {x:?}");
    }

    #[test]
    fn a_fixed_clock_takes_each_figure_at_the_middle_the_critical_path_uses() {
        let clock = Clock {
            fixed: true,
            ..Clock::tests(7)
        };
        let mut t = Timeline::default();
        for _ in 0..3 {
            let d = t.draw(&clock, "nat pending", NAT_PENDING).as_secs_f64();
            assert!((d - NAT_PENDING.mid() / 20.0).abs() < 1e-9, "{d}");
            let d = t.draw(&clock, "invisible", INVISIBLE).as_secs_f64();
            assert!((d - INVISIBLE.mid() / 4.0).abs() < 1e-9, "{d}");
        }
        let d = t.latency(&clock, "iam").as_secs_f64();
        assert!((d - LATENCY_IAM.mid() / 20.0).abs() < 1e-9, "{d}");
    }
}
