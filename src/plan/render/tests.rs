use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::model::{Address, Kind};

fn change(kind: Kind, name: &str, action: Action, before: Value, after: Value) -> Change {
    let fields = |v: Value| match v {
        Value::Object(m) => Some(m.into_iter().collect::<BTreeMap<_, _>>()),
        _ => None,
    };
    Change {
        address: Address::new(kind, name),
        kind,
        name: name.into(),
        action,
        before: fields(before),
        after: fields(after),
        reason: None,
        id: (action != Action::Create).then(|| format!("id-{name}")),
        desired: None,
        existing: None,
    }
}

fn plan_of(changes: Vec<Change>) -> Plan {
    let mut summary = Summary::default();
    for c in &changes {
        match c.action {
            Action::Create => summary.add += 1,
            Action::Update => summary.change += 1,
            Action::Replace => {
                summary.add += 1;
                summary.destroy += 1
            }
            Action::Delete => summary.destroy += 1,
        }
    }
    Plan {
        format_version: 1,
        cluster: "c.k8s.local".into(),
        region: "us-east-1".into(),
        specs_fingerprint: String::new(),
        cloud_fingerprint: String::new(),
        changes,
        summary,
        ids: Default::default(),
    }
}

fn tags(name: &str, extra: &[(&str, &str)]) -> Value {
    let mut t = json!({"KubernetesCluster": "c.k8s.local", "Name": name,
                       "kubernetes.io/cluster/c.k8s.local": "owned"});
    for (k, v) in extra {
        t[*k] = json!(v);
    }
    t
}

fn subnets() -> Vec<Change> {
    ["us-east-1a", "us-east-1b"]
        .iter()
        .enumerate()
        .map(|(i, z)| {
            let name = format!("{z}.c.k8s.local");
            change(
                Kind::Subnet,
                &name,
                Action::Create,
                Value::Null,
                json!({"cidr": format!("172.20.{i}.0/24"), "vpc": "vpc.c.k8s.local", "zone": z,
                       "tags": tags(&name, &[("SubnetType", "Private")])}),
            )
        })
        .collect()
}

#[test]
fn tags_every_resource_carries_are_printed_once_and_kinds_are_counted() {
    let text = human(&plan_of(subnets()));
    assert_eq!(text.matches("KubernetesCluster").count(), 1, "{text}");
    assert!(!text.contains("tags.Name"), "{text}");
    // Every new resource here is a private subnet: its tag is common too.
    assert!(text.starts_with("Tags on every new resource that has tags, and on its instances (not repeated below):\n  KubernetesCluster: \"c.k8s.local\"\n  SubnetType: \"Private\"\n"), "{text}");
    assert!(
        text.contains("  + 2 subnet\n      all with:\n        vpc: \"vpc.c.k8s.local\"\n    + us-east-1a.c.k8s.local\n        cidr: \"172.20.0.0/24\"\n        zone: \"us-east-1a\"\n"),
        "{text}"
    );
}

#[test]
fn a_tag_with_another_value_on_one_resource_is_shown_on_each() {
    let mut changes = subnets();
    changes[1].after.as_mut().unwrap().insert(
        "tags".into(),
        tags("us-east-1b.c.k8s.local", &[("SubnetType", "Utility")]),
    );
    let text = human(&plan_of(changes));
    assert!(text.contains("tags.SubnetType: \"Private\""), "{text}");
    assert!(text.contains("tags.SubnetType: \"Utility\""), "{text}");
    assert!(
        !text.contains("all with:\n        tags.SubnetType"),
        "{text}"
    );
}

#[test]
fn security_group_rules_read_as_short_addresses() {
    let rule = |name: &str, f: Value| {
        change(
            Kind::SecurityGroupRule,
            name,
            Action::Create,
            Value::Null,
            f,
        )
    };
    let text = human(&plan_of(vec![
        rule(
            "api-elb.c.k8s.local:ingress:tcp:443-443:0.0.0.0/0",
            json!({"group": "security_group.api-elb.c.k8s.local", "direction": "ingress",
                    "protocol": "tcp", "from_port": 443, "to_port": 443, "cidr": "0.0.0.0/0"}),
        ),
        rule(
            "masters.c.k8s.local:ingress:tcp:1-2379:nodes.c.k8s.local",
            json!({"group": "security_group.masters.c.k8s.local", "direction": "ingress",
                    "protocol": "tcp", "from_port": 1, "to_port": 2379,
                    "source_group": "security_group.nodes.c.k8s.local"}),
        ),
        rule(
            "nodes.c.k8s.local:egress:all:0.0.0.0/0",
            json!({"group": "security_group.nodes.c.k8s.local", "direction": "egress",
                    "protocol": "-1", "from_port": 0, "to_port": 0, "cidr": "0.0.0.0/0"}),
        ),
    ]));
    assert!(
        text.contains("  + 3 security_group_rule\n    + api-elb tcp/443 from 0.0.0.0/0\n    + masters tcp/1-2379 from nodes\n    + nodes all to 0.0.0.0/0\n\n"),
        "{text}"
    );
}

fn policy(actions: &[&str]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Describe", "Effect": "Allow", "Action": actions, "Resource": "*"},
        {"Sid": "Owned", "Effect": "Allow", "Action": "ec2:DeleteVolume", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/KubernetesCluster": "c.k8s.local"}}}
    ]})
}

#[test]
fn a_new_policy_is_printed_as_a_document_with_short_lines() {
    let many: Vec<String> = (0..60).map(|i| format!("ec2:DescribeThing{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let text = human(&plan_of(vec![change(
        Kind::IamRolePolicy,
        "masters.c.k8s.local",
        Action::Create,
        Value::Null,
        json!({"role": "iam_role.masters.c.k8s.local", "document": policy(&many)}),
    )]));
    assert!(text.lines().all(|l| l.len() <= 120), "{text}");
    assert!(text.contains("        document:\n          Version: 2012-10-17\n          - Sid: Describe\n            Effect: Allow\n            Action: ec2:DescribeThing0, ec2:DescribeThing1,"), "{text}");
    for a in &many {
        assert!(
            text.contains(&format!("{a},")) || text.contains(&format!("{a}\n")),
            "{a} missing:\n{text}"
        );
    }
    assert!(text.contains("            Condition: {\"StringEquals\":{\"aws:ResourceTag/KubernetesCluster\":\"c.k8s.local\"}}\n"), "{text}");
}

#[test]
fn a_changed_policy_is_a_line_diff_naming_the_action() {
    let text = human(&plan_of(vec![change(
        Kind::IamRolePolicy,
        "nodes.c.k8s.local",
        Action::Update,
        json!({"role": "iam_role.nodes.c.k8s.local", "document": policy(&["ec2:DescribeInstances", "ec2:DescribeRegions"])}),
        json!({"role": "iam_role.nodes.c.k8s.local", "document": policy(&["ec2:DescribeInstances", "ec2:DescribeRegions", "ec2:DescribeTags"])}),
    )]));
    assert!(text.contains("  ~ 1 iam_role_policy\n    ~ nodes.c.k8s.local (id-nodes.c.k8s.local)\n        document:\n"), "{text}");
    // The diff's own marks sit in the column after the field's indentation.
    let changed: Vec<&str> = text
        .lines()
        .filter(|l| matches!(l.strip_prefix("          "), Some(t) if t.starts_with(['+', '-'])))
        .collect();
    assert_eq!(changed, vec!["          +    - ec2:DescribeTags"], "{text}");
}

#[test]
fn yes_prints_a_line_per_kind() {
    let mut changes = subnets();
    changes.push(change(
        Kind::Vpc,
        "old.c.k8s.local",
        Action::Delete,
        json!({"cidr": "10.0.0.0/16"}),
        Value::Null,
    ));
    let plan = plan_of(changes);
    assert!(
        human(&plan).contains(
            "Will delete resources:\n  - 1 vpc\n    - old.c.k8s.local (id-old.c.k8s.local)\n\n"
        ),
        "{}",
        human(&plan)
    );
    assert_eq!(
        summary(&plan),
        "  + 2 subnet\n  - 1 vpc\nPlan: 2 to add, 0 to change, 1 to destroy.\n"
    );
}

#[test]
fn wrapping_keeps_every_piece_in_order() {
    let line = format!(
        "  + Sid: {} when {{\"a\":1}}",
        (0..30)
            .map(|i| format!("svc:Action{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let lines = wrap(&line);
    assert!(lines.len() > 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.len() <= WRAP + 20), "{lines:?}");
    assert!(
        lines[1..].iter().all(|l| l.starts_with("      ")),
        "{lines:?}"
    );
    let joined: String = lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    assert_eq!(joined, line.trim());
}
