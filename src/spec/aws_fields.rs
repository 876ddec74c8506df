//! The AWS-side spec fields kops users set most, with kops' names and kops'
//! checks (kops `pkg/apis/kops/validation/aws.go` and `validation.go`):
//! `spec.additionalPolicies` on the Cluster, `spec.additionalSecurityGroups`
//! and `spec.mixedInstancesPolicy` on InstanceGroups. Validation here is pure;
//! whether the security groups exist is asked of AWS by `update` before its
//! first write (docs/preflight.md).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::validate::FieldError;
use super::{Cluster, InstanceGroup, Role};

/// kops' `spec.mixedInstancesPolicy`: the ASG launches any of `instances`, a
/// base of on-demand instances, a percentage of on-demand above it, the rest spot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MixedInstancesPolicy {
    /// Instance types, each a launch template override, in priority order.
    #[serde(default)]
    pub instances: Vec<String>,
    /// On-demand instances before any spot one (AWS's default: 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_base: Option<u32>,
    /// The percentage of on-demand instances above the base (AWS's default:
    /// 100, which is no spot at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_above_base: Option<u32>,
    /// How spot capacity is chosen (AWS's default: `lowest-price`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_allocation_strategy: Option<String>,
}

/// AWS's defaults for the fields left out (the Auto Scaling API reference,
/// `InstancesDistribution`): the model always sends them, so that what AWS
/// answers compares with it.
pub const DEFAULT_ON_DEMAND_BASE: u32 = 0;
pub const DEFAULT_ON_DEMAND_ABOVE_BASE: u32 = 100;
pub const DEFAULT_SPOT_ALLOCATION_STRATEGY: &str = "lowest-price";

/// kops' `SpotAllocationStrategies`, the values Auto Scaling takes.
pub const SPOT_ALLOCATION_STRATEGIES: &[&str] = &[
    "lowest-price",
    "capacity-optimized",
    "capacity-optimized-prioritized",
    "price-capacity-optimized",
];

/// Auto Scaling takes at most 40 launch template overrides
/// (`LaunchTemplate.Overrides`, "Array Members: Maximum number of 40 items").
pub const MAX_OVERRIDES: usize = 40;

/// IAM's limit on a role's inline policies together: 10,240 characters,
/// whitespace not counted ("IAM and AWS STS quotas").
pub const ROLE_POLICY_LIMIT: usize = 10_240;

/// The keys of `spec.additionalPolicies`: kops' lowercase roles, with the
/// control plane under its old name and its new one.
pub const ADDITIONAL_POLICY_KEYS: &[&str] = &["bastion", "control-plane", "master", "node"];

pub fn additional_policy_role(key: &str) -> Option<Role> {
    match key {
        "master" | "control-plane" => Some(Role::Master),
        "node" => Some(Role::Node),
        "bastion" => Some(Role::Bastion),
        _ => None,
    }
}

/// The statements given for `role`, parsed (validation has checked them).
pub fn additional_statements(c: &Cluster, role: Role) -> Vec<Value> {
    c.spec
        .additional_policies
        .iter()
        .filter(|(k, _)| additional_policy_role(k) == Some(role))
        .filter_map(|(_, v)| parse_statements(v).ok())
        .flatten()
        .collect()
}

/// kops' format: a JSON list of IAM statements (`iam.ParseStatements`).
pub fn parse_statements(text: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(list)) => Ok(list),
        Ok(Value::Object(_)) => {
            Err("is one JSON object; kops' format is a list of statements: wrap it in [ ]".into())
        }
        Ok(_) => Err("is not a JSON list of IAM statements".into()),
        Err(e) => Err(format!("is not valid JSON ({e})")),
    }
}

/// What is wrong with one statement, if anything.
fn statement_problem(st: &Value) -> Option<String> {
    let Value::Object(m) = st else {
        return Some("is not a JSON object".into());
    };
    match m.get("Effect").and_then(Value::as_str) {
        Some("Allow" | "Deny") => {}
        Some(other) => return Some(format!("has Effect {other:?}, not Allow or Deny")),
        None => return Some("has no Effect (Allow or Deny)".into()),
    }
    let strings = |v: &Value| match v {
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => {
            !a.is_empty() && a.iter().all(|x| x.as_str().is_some_and(|s| !s.is_empty()))
        }
        _ => false,
    };
    for (field, not) in [("Action", "NotAction"), ("Resource", "NotResource")] {
        match (m.get(field), m.get(not)) {
            (Some(v), None) | (None, Some(v)) if strings(v) => {}
            (Some(_), Some(_)) => return Some(format!("has both {field} and {not}")),
            (None, None) => return Some(format!("has no {field}")),
            _ => {
                return Some(format!(
                    "has a {field} that is not a string or a list of strings"
                ));
            }
        }
    }
    None
}

/// The compact JSON of the statements, as IAM counts policy size.
pub fn policy_chars(statements: &[Value]) -> usize {
    statements
        .iter()
        .map(|s| s.to_string().chars().filter(|c| !c.is_whitespace()).count())
        .sum()
}

pub fn validate_cluster(c: &Cluster) -> Vec<FieldError> {
    let mut e = Vec::new();
    let field = |k: &str| format!("Cluster {} spec.additionalPolicies.{k}", c.name());
    let keys = ADDITIONAL_POLICY_KEYS.join(", ");
    for (k, v) in &c.spec.additional_policies {
        if additional_policy_role(k).is_none() {
            e.push(FieldError::new(
                &field(k),
                k,
                "is not a role",
                format!("use one of {keys}"),
            ));
            continue;
        }
        let statements = match parse_statements(v) {
            Ok(s) => s,
            Err(problem) => {
                e.push(FieldError::new(
                    &field(k),
                    "",
                    problem,
                    r#"give a JSON list such as [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::my-bucket/*"]}]"#,
                ));
                continue;
            }
        };
        if statements.is_empty() {
            e.push(FieldError::new(
                &field(k),
                "[]",
                "has no statement",
                format!("add statements, or remove the {k} key"),
            ));
        }
        for (i, st) in statements.iter().enumerate() {
            if let Some(problem) = statement_problem(st) {
                e.push(FieldError::new(
                    &format!("{}[{i}]", field(k)),
                    "",
                    format!("statement {problem}"),
                    "each statement needs Effect (Allow or Deny), Action and Resource, as IAM policies do",
                ));
            }
        }
        // The whole policy the role gets, keelson's statements included.
        if let (Some(role), true) = (additional_policy_role(k), e.is_empty())
            && let Ok(doc) = crate::model::iam::role_policy(c, role)
        {
            let chars = policy_chars(std::slice::from_ref(&doc));
            if chars > ROLE_POLICY_LIMIT {
                let msg = crate::model::iam::too_large(c, role, chars);
                let (problem, fix) = msg.split_once("; ").unwrap_or((&msg, ""));
                e.push(FieldError::new(&field(k), "", problem, fix));
            }
        }
    }
    if c.spec.additional_policies.contains_key("master")
        && c.spec.additional_policies.contains_key("control-plane")
    {
        e.push(FieldError::new(
            &field("control-plane"),
            "",
            "is given beside master, which names the same role",
            "keep one of the two keys",
        ));
    }
    e
}

/// `sg-` and 8 or 17 lowercase hex digits, as EC2 makes security group ids.
pub fn is_security_group_id(s: &str) -> bool {
    s.strip_prefix("sg-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

pub fn validate_group(g: &InstanceGroup) -> Vec<FieldError> {
    let mut e = Vec::new();
    let f = |path: &str| format!("InstanceGroup {} {path}", g.name());
    let mut seen = std::collections::BTreeSet::new();
    for (i, sg) in g.spec.additional_security_groups.iter().enumerate() {
        let field = f(&format!("spec.additionalSecurityGroups[{i}]"));
        if !is_security_group_id(sg) {
            e.push(FieldError::new(
                &field,
                format!("{sg:?}"),
                "is not a security group id",
                "use the group's id (sg- and 8 or 17 hex digits, from aws ec2 describe-security-groups), not its name",
            ));
        } else if !seen.insert(sg) {
            e.push(FieldError::new(
                &field,
                sg,
                "is listed twice",
                "list each security group once",
            ));
        }
    }
    let Some(p) = &g.spec.mixed_instances_policy else {
        return e;
    };
    let path = |x: &str| f(&format!("spec.mixedInstancesPolicy.{x}"));
    if p.instances.is_empty() {
        e.push(FieldError::new(
            &path("instances"),
            "[]",
            "is empty",
            format!(
                "list the instance types the group may run, e.g. [{}, ...]",
                g.spec.machine_type
            ),
        ));
    }
    if p.instances.len() > MAX_OVERRIDES {
        e.push(FieldError::new(
            &path("instances"),
            format!("({} types)", p.instances.len()),
            format!("is more than the {MAX_OVERRIDES} types Auto Scaling takes"),
            format!("list at most {MAX_OVERRIDES}"),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in p.instances.iter().enumerate() {
        if !super::validate::is_machine_type(t) {
            e.push(FieldError::new(
                &path(&format!("instances[{i}]")),
                t,
                "is not an EC2 instance type",
                "use a type such as m6i.large",
            ));
        } else if !seen.insert(t) {
            e.push(FieldError::new(
                &path(&format!("instances[{i}]")),
                t,
                "is listed twice",
                "list each instance type once",
            ));
        }
    }
    if let Some(base) = p.on_demand_base
        && base > g.spec.max_size
    {
        e.push(FieldError::new(
            &path("onDemandBase"),
            base.to_string(),
            format!("is more than spec.maxSize {}", g.spec.max_size),
            format!("use at most {}", g.spec.max_size),
        ));
    }
    if let Some(pct) = p.on_demand_above_base
        && pct > 100
    {
        e.push(FieldError::new(
            &path("onDemandAboveBase"),
            pct.to_string(),
            "is not a percentage",
            "use 0 (all spot above the base) to 100 (all on-demand)",
        ));
    }
    if let Some(s) = &p.spot_allocation_strategy
        && !SPOT_ALLOCATION_STRATEGIES.contains(&s.as_str())
    {
        e.push(FieldError::new(
            &path("spotAllocationStrategy"),
            s,
            "is not a spot allocation strategy",
            format!("use one of {}", SPOT_ALLOCATION_STRATEGIES.join(", ")),
        ));
    }
    e
}

/// Every group's additional security groups exist (`found`: id -> VPC, from
/// AWS) and are in the cluster's VPC (`vpc`, None while this update creates
/// it): a launch template with another VPC's group launches nothing.
pub fn check_security_groups(
    groups: &[InstanceGroup],
    found: &std::collections::BTreeMap<String, String>,
    vpc: Option<&str>,
) -> Result<(), super::validate::ValidationErrors> {
    let mut e = Vec::new();
    for g in groups {
        for (i, sg) in g.spec.additional_security_groups.iter().enumerate() {
            let field = format!(
                "InstanceGroup {} spec.additionalSecurityGroups[{i}]",
                g.name()
            );
            let fix = format!(
                "remove it (keelson edit ig {}), or create it first",
                g.name()
            );
            match (found.get(sg), vpc) {
                (None, _) => e.push(FieldError::new(
                    &field,
                    sg,
                    "does not exist in this region, or is not visible to this account",
                    fix,
                )),
                (Some(v), Some(vpc)) if v != vpc => e.push(FieldError::new(
                    &field,
                    sg,
                    format!("is in {v}, not the cluster's VPC {vpc}"),
                    "use a security group of the cluster's VPC",
                )),
                (Some(v), None) => e.push(FieldError::new(
                    &field,
                    sg,
                    format!("is in {v}, but this update creates the cluster's VPC, so no group can be in it yet"),
                    "add the group after the first update, or give the cluster that VPC with spec.networkID",
                )),
                _ => {}
            }
        }
    }
    if e.is_empty() {
        Ok(())
    } else {
        Err(super::validate::ValidationErrors(e))
    }
}

/// At most how many of a group's `max` instances are on-demand: the base, then
/// the percentage of the rest, rounded up (Auto Scaling rounds the on-demand
/// share up: "Auto Scaling groups with a mixed instances policy").
pub fn on_demand_at_most(max: u32, base: u32, above_base_pct: u32) -> u32 {
    let base = base.min(max);
    let rest = max - base;
    base + (rest * above_base_pct.min(100)).div_ceil(100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::defaults::{NewCluster, new_cluster};

    fn specs() -> (Cluster, Vec<InstanceGroup>) {
        new_cluster(&NewCluster {
            name: "fields.k8s.local".into(),
            zones: vec!["us-east-1a".into()],
            ..Default::default()
        })
        .unwrap()
    }

    fn build(c: &Cluster, g: &[InstanceGroup]) -> crate::model::Desired {
        let images = g
            .iter()
            .map(|g| (g.spec.image.clone(), "ami-0123456789abcdef0".to_string()))
            .collect();
        crate::model::build(&crate::model::Inputs {
            cluster: c,
            groups: g,
            ssh_key: None,
            images: &images,
            node_agent: &crate::model::instances::NodeAgent {
                sha256: "0".repeat(64),
            },
        })
        .unwrap()
    }

    /// What AWS would hold after applying `d` exactly.
    fn applied(d: &crate::model::Desired) -> crate::plan::Actual {
        let mut a = crate::plan::Actual::default();
        for (i, r) in d.resources.values().enumerate() {
            a.insert(crate::plan::ActualResource {
                id: format!("id-{i}"),
                resource: r.resource.clone(),
                owned: true,
                state: None,
            });
        }
        a
    }

    const TYPES: &[&str] = &[
        "m6i.large",
        "m5.large",
        "m6a.large",
        "c6i.xlarge",
        "t3.medium",
    ];

    proptest::proptest! {
        /// Any valid combination of the fields: validation passes, the model
        /// carries them, a cluster applied with them plans nothing, and the
        /// on-demand count stays within the group's size.
        #[test]
        fn valid_fields_always_converge(
            picks in proptest::collection::btree_set(0..TYPES.len(), 1..=TYPES.len()),
            max in 1u32..20,
            base in 0u32..25,
            pct in 0u32..=100,
            strategy in 0..SPOT_ALLOCATION_STRATEGIES.len(),
            sgs in proptest::collection::btree_set("[0-9a-f]{17}", 0..4),
        ) {
            let (c, mut g) = specs();
            let nodes = g.iter_mut().find(|g| g.spec.role == Role::Node).unwrap();
            nodes.spec.max_size = max;
            let base = base.min(max);
            nodes.spec.additional_security_groups = sgs.iter().map(|h| format!("sg-{h}")).collect();
            nodes.spec.mixed_instances_policy = Some(MixedInstancesPolicy {
                instances: picks.iter().map(|i| TYPES[*i].to_string()).collect(),
                on_demand_base: Some(base),
                on_demand_above_base: Some(pct),
                spot_allocation_strategy: Some(SPOT_ALLOCATION_STRATEGIES[strategy].to_string()),
            });
            proptest::prop_assert_eq!(all_errors(&c, &g), "");
            let d = build(&c, &g);
            let p = crate::plan::plan(&d, &applied(&d), "s").unwrap();
            proptest::prop_assert!(p.is_empty());
            let n = on_demand_at_most(max, base, pct);
            proptest::prop_assert!(n <= max && n >= base);
        }
    }

    fn all_errors(c: &Cluster, g: &[InstanceGroup]) -> String {
        crate::spec::validate::validate(c, g)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn additional_policies_are_checked_like_kops() {
        let (mut c, g) = specs();
        c.spec.additional_policies = [
            (
                "node".to_string(),
                r#"[{"Effect":"Allow","Action":["dynamodb:*"],"Resource":["*"]}]"#.to_string(),
            ),
            (
                "master".to_string(),
                r#"[{"Effect":"Deny","NotAction":"s3:*","Resource":"*"}]"#.to_string(),
            ),
        ]
        .into();
        assert_eq!(all_errors(&c, &g), "");
        assert_eq!(additional_statements(&c, Role::Node).len(), 1);
        assert!(additional_statements(&c, Role::Bastion).is_empty());

        for (key, text, wanted) in [
            (
                "nodes",
                "[]",
                "spec.additionalPolicies.nodes: nodes is not a role; use one of bastion, control-plane, master, node",
            ),
            (
                "node",
                "{\"Effect\":\"Allow\"}",
                "spec.additionalPolicies.node: is one JSON object; kops' format is a list of statements: wrap it in [ ]",
            ),
            (
                "node",
                "[{",
                "spec.additionalPolicies.node: is not valid JSON",
            ),
            (
                "node",
                r#"[{"Effect":"allow","Action":"s3:*","Resource":"*"}]"#,
                r#"spec.additionalPolicies.node[0]: statement has Effect "allow", not Allow or Deny"#,
            ),
            (
                "node",
                r#"[{"Effect":"Allow","Resource":"*"}]"#,
                "spec.additionalPolicies.node[0]: statement has no Action",
            ),
            (
                "bastion",
                r#"[{"Effect":"Allow","Action":[],"Resource":"*"}]"#,
                "statement has a Action that is not a string or a list of strings",
            ),
            (
                "node",
                "[]",
                "spec.additionalPolicies.node: [] has no statement",
            ),
        ] {
            let (mut c, g) = specs();
            c.spec.additional_policies = [(key.to_string(), text.to_string())].into();
            let e = all_errors(&c, &g);
            assert!(e.contains(wanted), "{key} {text}:\n{e}");
        }
        let (mut c, g) = specs();
        let st = r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::a-bucket-with-a-long-name/some/prefix/*"}"#;
        let big = format!("[{}]", vec![st; 200].join(","));
        c.spec.additional_policies = [("node".to_string(), big)].into();
        let e = all_errors(&c, &g);
        assert!(
            e.contains("spec.additionalPolicies.node: with keelson's own statements the nodes.fields.k8s.local policy would be")
                && e.contains("over IAM's 10240-character limit"),
            "{e}"
        );
        let (mut c, g) = specs();
        c.spec.additional_policies = [
            ("master".to_string(), "[]".to_string()),
            ("control-plane".to_string(), "[]".to_string()),
        ]
        .into();
        assert!(all_errors(&c, &g).contains("names the same role"));
    }

    #[test]
    fn security_groups_and_mixed_instances_are_checked() {
        let (c, mut g) = specs();
        let nodes = g.iter_mut().find(|g| g.spec.role == Role::Node).unwrap();
        nodes.spec.additional_security_groups = vec![
            "sg-0123456789abcdef0".into(),
            "sg-12345678".into(),
            "sg-12345678".into(),
            "web".into(),
        ];
        nodes.spec.mixed_instances_policy = Some(MixedInstancesPolicy {
            instances: vec!["m6i.large".into(), "m6i.large".into(), "huge".into()],
            on_demand_base: Some(9),
            on_demand_above_base: Some(101),
            spot_allocation_strategy: Some("cheapest".into()),
        });
        let e = all_errors(&c, &g);
        for wanted in [
            "spec.additionalSecurityGroups[2]: sg-12345678 is listed twice",
            "spec.additionalSecurityGroups[3]: \"web\" is not a security group id",
            "spec.mixedInstancesPolicy.instances[1]: m6i.large is listed twice",
            "spec.mixedInstancesPolicy.instances[2]: huge is not an EC2 instance type",
            "spec.mixedInstancesPolicy.onDemandBase: 9 is more than spec.maxSize 1",
            "spec.mixedInstancesPolicy.onDemandAboveBase: 101 is not a percentage",
            "spec.mixedInstancesPolicy.spotAllocationStrategy: cheapest is not a spot allocation strategy; use one of lowest-price, capacity-optimized",
        ] {
            assert!(e.contains(wanted), "{wanted}:\n{e}");
        }
        assert!(!e.contains("[0]"), "{e}");
        let nodes = g.iter_mut().find(|g| g.spec.role == Role::Node).unwrap();
        nodes.spec.additional_security_groups = vec!["sg-0123456789abcdef0".into()];
        nodes.spec.mixed_instances_policy = Some(MixedInstancesPolicy {
            instances: vec![],
            ..Default::default()
        });
        assert!(all_errors(&c, &g).contains("spec.mixedInstancesPolicy.instances: [] is empty"));
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let (_, g) = specs();
        let mut text = serde_yaml::to_string(&g[1]).unwrap();
        text.push_str(
            "  mixedInstancesPolicy:\n    instances: [m6i.large]\n    onDemandPercentage: 10\n",
        );
        let e = crate::spec::parse::parse_instance_group(&text, "ig.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.mixedInstancesPolicy") && e.contains("onDemandPercentage"),
            "{e}"
        );
    }

    #[test]
    fn the_on_demand_share_rounds_up_and_never_passes_the_size() {
        assert_eq!(on_demand_at_most(10, 2, 0), 2);
        assert_eq!(on_demand_at_most(10, 2, 25), 4);
        assert_eq!(on_demand_at_most(10, 0, 100), 10);
        assert_eq!(on_demand_at_most(3, 5, 50), 3);
        assert_eq!(on_demand_at_most(0, 0, 50), 0);
        for max in 0..30 {
            for base in 0..35 {
                for pct in [0, 1, 33, 50, 99, 100] {
                    let n = on_demand_at_most(max, base, pct);
                    assert!(n <= max && n >= base.min(max), "{max} {base} {pct}: {n}");
                }
            }
        }
    }

    /// The model and the plan with all three fields set on a cluster that was
    /// applied without them: the nodes' policy, template and group change, and
    /// nothing else; applied, the plan is empty.
    #[test]
    fn the_fields_reach_the_model_and_the_plan() {
        use crate::model::{Kind, Resource};
        use crate::plan::{Action, Actual, plan, render};
        let (mut c, mut g) = specs();
        c.spec.config_base = Some("s3://state/fields.k8s.local".into());
        let before = build(&c, &g);
        c.spec.additional_policies = [(
            "node".to_string(),
            r#"[{"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem"], "Resource": ["arn:aws:dynamodb:us-east-1:111122223333:table/orders"]}]"#.to_string(),
        )]
        .into();
        let nodes = g.iter_mut().find(|g| g.spec.role == Role::Node).unwrap();
        nodes.spec.max_size = 10;
        nodes.spec.additional_security_groups = vec!["sg-0123456789abcdef0".into()];
        nodes.spec.mixed_instances_policy = Some(MixedInstancesPolicy {
            instances: vec!["m6i.large".into(), "m5.large".into(), "m6i.xlarge".into()],
            on_demand_base: Some(2),
            on_demand_above_base: Some(25),
            spot_allocation_strategy: Some("price-capacity-optimized".into()),
        });
        assert_eq!(all_errors(&c, &g), "");
        let after = build(&c, &g);

        let asg = after
            .resources
            .values()
            .find_map(|d| match &d.resource {
                Resource::AutoScalingGroup(a) if a.mixed_instances.is_some() => Some(a),
                _ => None,
            })
            .unwrap();
        let m = asg.mixed_instances.as_ref().unwrap();
        assert_eq!(m.instance_types, ["m6i.large", "m5.large", "m6i.xlarge"]);
        assert_eq!((m.on_demand_base, m.on_demand_above_base), (2, 25));
        let lt = after
            .resources
            .get(&asg.launch_template)
            .map(|d| match &d.resource {
                Resource::LaunchTemplate(t) => t.clone(),
                _ => unreachable!(),
            })
            .unwrap();
        assert_eq!(lt.security_groups.len(), 2);
        assert_eq!(
            lt.security_groups[1].to_string(),
            "security_group.<sg-0123456789abcdef0>"
        );
        // Defaults: what AWS fills in, so that the read-back compares equal.
        let mut defaulted = g
            .iter()
            .find(|g| g.spec.role == Role::Node)
            .unwrap()
            .clone();
        defaulted.spec.mixed_instances_policy = Some(MixedInstancesPolicy {
            instances: vec!["m6i.large".into()],
            ..Default::default()
        });
        let m = crate::model::instances::mixed_instances(&defaulted).unwrap();
        assert_eq!(
            (
                m.on_demand_base,
                m.on_demand_above_base,
                m.spot_allocation_strategy.as_str()
            ),
            (0, 100, "lowest-price")
        );

        let p = plan(&after, &applied(&before), "s").unwrap();
        let changed: Vec<String> = p
            .changes
            .iter()
            .map(|c| format!("{:?} {}", c.action, c.address))
            .collect();
        assert_eq!(
            changed,
            [
                "Update iam_role_policy.nodes.fields.k8s.local",
                "Update launch_template.nodes-us-east-1a.fields.k8s.local",
                "Update autoscaling_group.nodes-us-east-1a.fields.k8s.local",
            ],
            "{changed:?}"
        );
        assert!(p.changes.iter().all(|c| c.action == Action::Update));
        insta::assert_snapshot!("plan_with_aws_fields", render::human(&p));
        assert!(plan(&after, &applied(&after), "s").unwrap().is_empty());
        // Removed again: the statements and the policy go.
        let p = plan(&before, &applied(&after), "s").unwrap();
        assert_eq!(p.changes.len(), 3, "{}", render::human(&p));
        assert!(p.changes.iter().all(|c| c.kind != Kind::SecurityGroup));

        // The quota: only the on-demand part (2 + 25% of 8 = 4), as the type with
        // the most vCPUs; a type whose vCPUs are unknown is not the largest.
        let vcpus = [
            ("m6i.large".to_string(), 2),
            ("m5.large".to_string(), 2),
            ("m6i.xlarge".to_string(), 4),
        ]
        .into();
        let p = plan(&after, &Actual::default(), "s").unwrap();
        let n = crate::plan::quota::needs(&p, &after, &Default::default(), &vcpus);
        assert_eq!(n.instances.get("m6i.xlarge"), Some(&4), "{n:?}");
        assert!(!n.instances.contains_key("m6i.large"), "{n:?}");
        // Raising the spot share of an existing group asks for no on-demand vCPU.
        let mut g2 = g.clone();
        g2.iter_mut()
            .find(|g| g.spec.role == Role::Node)
            .unwrap()
            .spec
            .mixed_instances_policy
            .as_mut()
            .unwrap()
            .on_demand_above_base = Some(0);
        let d2 = build(&c, &g2);
        let p = plan(&d2, &applied(&after), "s").unwrap();
        let n = crate::plan::quota::needs(&p, &d2, &Default::default(), &vcpus);
        assert!(n.instances.is_empty(), "{n:?}");
    }

    #[test]
    fn mixed_types_are_checked_against_the_region_and_groups_against_aws() {
        let (c, mut g) = specs();
        let nodes = g.iter_mut().find(|g| g.spec.role == Role::Node).unwrap();
        nodes.spec.mixed_instances_policy = Some(MixedInstancesPolicy {
            instances: vec![
                nodes.spec.machine_type.clone(),
                "m6g.large".into(),
                "x9.huge".into(),
            ],
            ..Default::default()
        });
        nodes.spec.additional_security_groups = vec![
            "sg-0123456789abcdef0".into(),
            "sg-12345678".into(),
            "sg-87654321".into(),
        ];
        let mut o = crate::spec::machine_type::Offerings::default();
        for g in &g {
            o.offered
                .entry("us-east-1a".into())
                .or_default()
                .insert(g.spec.machine_type.clone());
            o.architectures
                .insert(g.spec.machine_type.clone(), vec!["x86_64".into()]);
        }
        o.offered
            .get_mut("us-east-1a")
            .unwrap()
            .insert("m6g.large".into());
        o.architectures
            .insert("m6g.large".into(), vec!["arm64".into()]);
        o.images.insert(g[0].spec.image.clone(), "x86_64".into());
        let e = crate::spec::machine_type::check(&c, &g, &Default::default(), &o)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.mixedInstancesPolicy.instances[1]: m6g.large runs arm64"),
            "{e}"
        );
        assert!(
            e.contains(
                "spec.mixedInstancesPolicy.instances[2]: x9.huge is not offered in us-east-1a"
            ),
            "{e}"
        );
        assert!(
            !e.contains("instances[0]") && !e.contains("spec.machineType"),
            "{e}"
        );

        let found = [
            (
                "sg-0123456789abcdef0".to_string(),
                "vpc-0aaaaaaaaaaaaaaaa".to_string(),
            ),
            (
                "sg-12345678".to_string(),
                "vpc-0bbbbbbbbbbbbbbbb".to_string(),
            ),
        ]
        .into();
        let e = check_security_groups(&g, &found, Some("vpc-0aaaaaaaaaaaaaaaa"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("[0]"), "{e}");
        assert!(e.contains("spec.additionalSecurityGroups[1]: sg-12345678 is in vpc-0bbbbbbbbbbbbbbbb, not the cluster's VPC vpc-0aaaaaaaaaaaaaaaa"), "{e}");
        assert!(
            e.contains(
                "spec.additionalSecurityGroups[2]: sg-87654321 does not exist in this region"
            ),
            "{e}"
        );
        let e = check_security_groups(&g, &found, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[0]: sg-0123456789abcdef0 is in vpc-0aaaaaaaaaaaaaaaa, but this update creates the cluster's VPC"), "{e}");
        let nodes = g.iter_mut().find(|g| g.spec.role == Role::Node).unwrap();
        nodes.spec.additional_security_groups.truncate(1);
        assert!(check_security_groups(&g, &found, Some("vpc-0aaaaaaaaaaaaaaaa")).is_ok());
    }
}
