//! Renderers of a plan, kept apart from the diff itself: the human preview
//! (grouped by action and kind, `+`, `~`, `-`, `-/+`, then the terraform-style
//! summary), a one-line-per-kind summary for `--yes`, and the stable JSON view.

use sha2::Digest as _;
use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

use super::{Action, Change, Plan, Summary};
use crate::model::Kind;

/// Where a wrapped list (a policy's actions) breaks: with the indentation, lines
/// stay well under 160 characters.
const WRAP: usize = 100;

/// An IAM policy document: printed as a document, never flattened into one line.
fn is_policy(v: &Value) -> bool {
    v.get("Statement").is_some()
}

/// Flattens a field into `path = value` lines; maps (tags) become one line a key.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() && !is_policy(v) => {
            for (k, v) in m {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

fn flat(fields: &Option<BTreeMap<String, Value>>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (k, v) in fields.iter().flatten() {
        flatten(k, v, &mut out);
    }
    out
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(v) => v.to_string(),
    }
}

fn is_text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| s.contains('\n'))
}

fn mark(a: Action) -> &'static str {
    match a {
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace => "-/+",
        Action::Delete => "-",
    }
}

/// A policy document as indented lines, statement by statement. `wrap` packs
/// lists (actions, resources) into lines of about [`WRAP`] characters, for
/// reading; without it each item has its own line, so a diff names exactly the
/// action added or removed.
fn policy_lines(doc: &Value, wrap: bool) -> Vec<String> {
    let mut out = Vec::new();
    let Value::Object(m) = doc else {
        return vec![doc.to_string()];
    };
    for (k, v) in m.iter().filter(|(k, _)| *k != "Statement") {
        out.extend(value_lines(k, v, wrap));
    }
    let statements = match &m["Statement"] {
        Value::Array(a) => a.iter().collect::<Vec<_>>(),
        one => vec![one],
    };
    for s in statements {
        let Value::Object(s) = s else {
            out.push(format!("- {s}"));
            continue;
        };
        let mut first = true;
        for (k, v) in s {
            for l in value_lines(k, v, wrap) {
                out.push(format!("{} {l}", if first { "-" } else { " " }));
                first = false;
            }
        }
    }
    out
}

/// `Key: value` for a policy's field: strings bare, lists of strings as a list,
/// anything else (a condition, a principal) as compact JSON.
fn value_lines(key: &str, v: &Value, wrap: bool) -> Vec<String> {
    let items: Option<Vec<&str>> = match v {
        Value::Array(a) => a.iter().map(Value::as_str).collect(),
        _ => None,
    };
    match (v, items) {
        (Value::String(s), _) => vec![format!("{key}: {s}")],
        (_, Some(items)) if !wrap => std::iter::once(format!("{key}:"))
            .chain(items.iter().map(|i| format!("  - {i}")))
            .collect(),
        (_, Some(items)) => {
            let mut lines = vec![format!("{key}:")];
            for i in items {
                let last = lines.last_mut().expect("one line at least");
                if last.ends_with(':') {
                    let _ = write!(last, " {i}");
                } else if last.len() + i.len() + 2 <= WRAP {
                    let _ = write!(last, ", {i}");
                } else {
                    last.push(',');
                    lines.push(format!("    {i}"));
                }
            }
            lines
        }
        _ => vec![format!("{key}: {v}")],
    }
}

/// A long line broken after its commas (or before ` when `) into lines of
/// about [`WRAP`] characters; the continuations are indented four spaces.
pub fn wrap(line: &str) -> Vec<String> {
    let lead = line.len() - line.trim_start().len();
    let mut out: Vec<String> = vec![String::new()];
    let pieces = line
        .split_inclusive(", ")
        .flat_map(|p| match p.split_once(" when ") {
            Some((a, b)) => vec![a.to_string(), format!(" when {b}")],
            None => vec![p.to_string()],
        });
    for piece in pieces {
        let last = out.last_mut().expect("one line at least");
        if !last.trim().is_empty() && last.len() + piece.trim_end().len() > WRAP {
            let cont = format!("{}    {}", " ".repeat(lead), piece.trim_start());
            out.push(cont);
        } else {
            last.push_str(&piece);
        }
    }
    out.into_iter().map(|l| l.trim_end().to_string()).collect()
}

/// One field of a new resource (or one shared by a group), as lines at `indent`.
fn field_lines(k: &str, v: &Value, indent: &str, out: &mut String) {
    if is_policy(v) {
        let _ = writeln!(out, "{indent}{k}:");
        for l in policy_lines(v, true) {
            let _ = writeln!(out, "{indent}  {l}");
        }
    } else if let Some(t) = is_text(Some(v)) {
        // A new script or document is summarised: thousands of lines of
        // bootstrap would bury the plan. Changes to it diff in full, and
        // `-o json` carries the whole text.
        let digest = crate::plan::hex(&sha2::Sha256::digest(t.as_bytes()));
        let _ = writeln!(
            out,
            "{indent}{k}: ({} lines, {} bytes, sha256 {}; the full text is in -o json)",
            t.lines().count(),
            t.len(),
            &digest[..12]
        );
    } else if let Value::Array(items) = v {
        // A list (subnets, groups) is spaced, and broken when it is long.
        let items: Vec<String> = items.iter().map(Value::to_string).collect();
        for l in wrap(&format!("{indent}{k}: [{}]", items.join(", "))) {
            let _ = writeln!(out, "{l}");
        }
    } else {
        let _ = writeln!(out, "{indent}{k}: {v}");
    }
}

/// The changed fields of an update or replacement.
fn diff_lines(c: &Change, indent: &str, out: &mut String) {
    let before = flat(&c.before);
    let after = flat(&c.after);
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for k in keys {
        let (b, a) = (before.get(k), after.get(k));
        if b == a {
            continue;
        }
        // Scripts and documents diff as text, not as one long string; policies
        // as documents, one action a line.
        let as_text = |v: Option<&Value>| match v {
            Some(v) if is_policy(v) => Some(policy_lines(v, false).join("\n") + "\n"),
            v => is_text(v).map(str::to_string),
        };
        if let (Some(bt), Some(at)) = (as_text(b), as_text(a)) {
            let _ = writeln!(out, "{indent}{k}:");
            let diff = similar::TextDiff::from_lines(&bt, &at);
            for line in diff.unified_diff().context_radius(2).to_string().lines() {
                let _ = writeln!(out, "{indent}  {line}");
            }
        } else {
            let _ = writeln!(out, "{indent}{k}: {} -> {}", show(b), show(a));
        }
    }
}

/// A name without the cluster's suffix (`api-elb.demo.k8s.local` -> `api-elb`).
fn short<'a>(name: &'a str, cluster: &str) -> &'a str {
    name.strip_suffix(cluster)
        .and_then(|n| n.strip_suffix('.'))
        .filter(|n| !n.is_empty())
        .unwrap_or(name)
}

/// A reference (`KIND.NAME`) as `KIND SHORT-NAME`, or only the short name.
fn reference(v: Option<&Value>, cluster: &str, with_kind: bool) -> Option<String> {
    let (kind, name) = v?.as_str()?.split_once('.')?;
    let name = short(name, cluster);
    Some(if with_kind {
        format!("{kind} {name}")
    } else {
        name.to_string()
    })
}

/// The kinds whose fields say everything in a few words get one line instead of
/// a block: a security-group rule as `api-elb tcp/443 from 0.0.0.0/0`. Returns
/// the line and the fields it shows (any other field is still listed).
fn one_line(
    kind: Kind,
    f: &BTreeMap<String, Value>,
    cluster: &str,
) -> Option<(String, &'static [&'static str])> {
    let s = |k: &str| f.get(k).and_then(Value::as_str);
    let n = |k: &str| f.get(k).and_then(Value::as_i64);
    match kind {
        Kind::SecurityGroupRule => {
            let group = reference(f.get("group"), cluster, false)?;
            let (from, to) = (n("from_port")?, n("to_port")?);
            let traffic = match s("protocol")? {
                "-1" => "all".to_string(),
                p @ ("tcp" | "udp") if from == to => format!("{p}/{from}"),
                p @ ("tcp" | "udp") => format!("{p}/{from}-{to}"),
                p => format!("protocol {p} ports {from}-{to}"),
            };
            let peer = match (s("cidr"), f.get("source_group"), f.get("elastic_ip")) {
                (Some(c), _, _) => c.to_string(),
                (None, Some(g), _) => reference(Some(g), cluster, false)?,
                (None, None, Some(e)) => {
                    format!("{}/32", reference(Some(e), cluster, true)?)
                }
                (None, None, None) => "nowhere".into(),
            };
            let dir = match s("direction")? {
                "egress" => "to",
                _ => "from",
            };
            Some((
                format!("{group} {traffic} {dir} {peer}"),
                &[
                    "group",
                    "direction",
                    "protocol",
                    "from_port",
                    "to_port",
                    "cidr",
                    "source_group",
                    "elastic_ip",
                ],
            ))
        }
        Kind::Route => Some((
            format!(
                "{} {} via {}",
                reference(f.get("route_table"), cluster, false)?,
                s("destination")?,
                reference(f.get("target"), cluster, true)?
            ),
            &["route_table", "destination", "target"],
        )),
        Kind::RouteTableAssociation => Some((
            format!(
                "{} -> {}",
                reference(f.get("subnet"), cluster, true)?,
                reference(f.get("route_table"), cluster, true)?
            ),
            &["subnet", "route_table"],
        )),
        Kind::Listener => Some((
            format!(
                "{}:{} -> {}",
                reference(f.get("load_balancer"), cluster, false)?,
                n("port")?,
                reference(f.get("target_group"), cluster, true)?
            ),
            &["load_balancer", "port", "target_group"],
        )),
        _ => None,
    }
}

/// What the preview shows of a new resource: its fields without the tags every
/// resource carries (printed once at the top) and without a `Name` tag that is
/// its own name.
fn shown(c: &Change, common: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    flat(&c.after)
        .into_iter()
        .filter(|(k, v)| {
            let Some(tag) = k
                .strip_prefix("tags.")
                .or_else(|| k.strip_prefix("instance_tags."))
            else {
                return true;
            };
            common.get(tag) != Some(v) && !(tag == "Name" && v.as_str() == Some(&c.name))
        })
        .collect()
}

/// The tags (key and value) on every new resource that has tags; none unless
/// at least two share them.
fn common_tags(plan: &Plan) -> BTreeMap<String, Value> {
    let mut tagged = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Create)
        .filter_map(|c| c.after.as_ref()?.get("tags")?.as_object());
    let Some(first) = tagged.next() else {
        return BTreeMap::new();
    };
    let mut common: BTreeMap<String, Value> =
        first.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut n = 1;
    for t in tagged {
        common.retain(|k, v| t.get(k) == Some(v));
        n += 1;
    }
    if n < 2 {
        common.clear();
    }
    common
}

fn head(c: &Change, text: &str, out: &mut String) {
    let _ = write!(out, "    {} {text}", mark(c.action));
    if let Some(id) = &c.id {
        let _ = write!(out, " ({id})");
    }
    if let Some(r) = &c.reason {
        let _ = write!(out, "  # {r}");
    }
    out.push('\n');
}

/// One kind's changes of one action: a count line, then each resource.
fn kind_group(
    action: Action,
    kind: Kind,
    changes: &[&Change],
    plan: &Plan,
    common: &BTreeMap<String, Value>,
    out: &mut String,
) {
    let _ = writeln!(
        out,
        "  {} {} {}",
        mark(action),
        changes.len(),
        kind.as_str()
    );
    let cluster = plan.cluster.as_str();
    match action {
        Action::Create => {
            let fields: Vec<BTreeMap<String, Value>> =
                changes.iter().map(|c| shown(c, common)).collect();
            let lines: Vec<Option<(String, &[&str])>> =
                fields.iter().map(|f| one_line(kind, f, cluster)).collect();
            // Fields every resource of the group has alike are said once.
            let mut same: BTreeMap<String, Value> = BTreeMap::new();
            if changes.len() > 1 {
                same = fields[0].clone();
                for f in &fields[1..] {
                    same.retain(|k, v| f.get(k) == Some(v));
                }
                same.retain(|k, _| {
                    !lines
                        .iter()
                        .flatten()
                        .any(|(_, used)| used.contains(&k.as_str()))
                });
                if !same.is_empty() {
                    let _ = writeln!(out, "      all with:");
                    for (k, v) in &same {
                        field_lines(k, v, "        ", out);
                    }
                }
            }
            for ((c, f), line) in changes.iter().zip(&fields).zip(&lines) {
                let used: &[&str] = line.as_ref().map(|(_, u)| *u).unwrap_or(&[]);
                head(c, line.as_ref().map_or(c.name.as_str(), |(l, _)| l), out);
                for (k, v) in f {
                    if !same.contains_key(k) && !used.contains(&k.as_str()) {
                        field_lines(k, v, "        ", out);
                    }
                }
            }
        }
        Action::Delete => {
            for c in changes {
                let line = one_line(kind, &flat(&c.before), cluster);
                head(c, line.as_ref().map_or(c.name.as_str(), |(l, _)| l), out);
            }
        }
        Action::Update | Action::Replace => {
            for c in changes {
                head(c, &c.name, out);
                diff_lines(c, "        ", out);
            }
        }
    }
}

const SECTIONS: [(Action, &str); 4] = [
    (Action::Create, "Will create resources:"),
    (Action::Update, "Will modify resources:"),
    (Action::Replace, "Will replace resources:"),
    (Action::Delete, "Will delete resources:"),
];

/// The changes of one action, by kind, in the plan's (dependency) order.
fn by_kind(plan: &Plan, action: Action) -> BTreeMap<Kind, Vec<&Change>> {
    let mut m: BTreeMap<Kind, Vec<&Change>> = BTreeMap::new();
    for c in plan.changes.iter().filter(|c| c.action == action) {
        m.entry(c.kind).or_default().push(c);
    }
    m
}

fn closing(plan: &Plan, out: &mut String) {
    let s = plan.summary;
    let _ = writeln!(
        out,
        "Plan: {} to add, {} to change, {} to destroy.",
        s.add, s.change, s.destroy
    );
}

/// The human preview, without the closing "Must specify --yes" line.
pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    let common = common_tags(plan);
    if !common.is_empty() {
        let _ = writeln!(
            out,
            "Tags on every new resource that has tags, and on its instances (not repeated below):"
        );
        for (k, v) in &common {
            let _ = writeln!(out, "  {k}: {v}");
        }
        let _ = writeln!(out, "  Name: the resource's name, unless shown\n");
    }
    for (action, title) in SECTIONS {
        let groups = by_kind(plan, action);
        if groups.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}");
        for (kind, changes) in &groups {
            kind_group(action, *kind, changes, plan, &common, &mut out);
        }
        out.push('\n');
    }
    closing(plan, &mut out);
    out
}

/// What `update --yes` prints before it applies: a line per kind and action
/// (the preview showed the detail; `-o json` has all of it).
pub fn summary(plan: &Plan) -> String {
    let mut out = String::new();
    for (action, _) in SECTIONS {
        for (kind, changes) in by_kind(plan, action) {
            let _ = writeln!(
                out,
                "  {} {} {}",
                mark(action),
                changes.len(),
                kind.as_str()
            );
        }
    }
    closing(plan, &mut out);
    out
}

/// The documented, stable JSON schema of `-o json` (docs/plan-format.md).
#[derive(Serialize)]
pub struct JsonPlan<'a> {
    pub format_version: u32,
    pub cluster: &'a str,
    pub changes: Vec<JsonChange<'a>>,
    pub summary: Summary,
}

#[derive(Serialize)]
pub struct JsonChange<'a> {
    pub address: String,
    pub kind: &'a str,
    pub name: &'a str,
    pub action: Action,
    pub before: &'a Option<BTreeMap<String, Value>>,
    pub after: &'a Option<BTreeMap<String, Value>>,
    pub reason: &'a Option<String>,
}

pub fn json(plan: &Plan) -> String {
    let view = JsonPlan {
        format_version: plan.format_version,
        cluster: &plan.cluster,
        changes: plan
            .changes
            .iter()
            .map(|c| JsonChange {
                address: c.address.to_string(),
                kind: c.kind.as_str(),
                name: &c.name,
                action: c.action,
                before: &c.before,
                after: &c.after,
                reason: &c.reason,
            })
            .collect(),
        summary: plan.summary,
    };
    serde_json::to_string_pretty(&view).expect("plans serialize") + "\n"
}

#[cfg(test)]
mod tests;
