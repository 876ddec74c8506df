//! Renderers of a plan, kept apart from the diff itself: the human preview
//! (`+`, `~`, `-`, `-/+`, then the terraform-style summary) and the stable JSON view.

use sha2::Digest as _;
use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

use super::{Action, Change, Plan, Summary};

/// Flattens a field into `path = value` lines; maps (tags) become one line a key.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
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

fn block(c: &Change, out: &mut String) {
    let _ = write!(out, "  {} {}", mark(c.action), c.address);
    if let Some(id) = &c.id {
        let _ = write!(out, " ({id})");
    }
    if let Some(r) = &c.reason {
        let _ = write!(out, "  # {r}");
    }
    out.push('\n');
    let before = flat(&c.before);
    let after = flat(&c.after);
    match c.action {
        Action::Create => {
            for (k, v) in &after {
                // A new script or document is summarised: thousands of lines of
                // bootstrap would bury the plan. Changes to it diff in full, and
                // `-o json` carries the whole text.
                match is_text(Some(v)) {
                    Some(t) => {
                        let digest = crate::plan::hex(&sha2::Sha256::digest(t.as_bytes()));
                        let _ = writeln!(
                            out,
                            "      {k}: ({} lines, {} bytes, sha256 {}; the full text is in -o json)",
                            t.lines().count(),
                            t.len(),
                            &digest[..12]
                        );
                    }
                    None => {
                        let _ = writeln!(out, "      {k}: {v}");
                    }
                }
            }
        }
        Action::Delete => {}
        Action::Update | Action::Replace => {
            let keys: std::collections::BTreeSet<&String> =
                before.keys().chain(after.keys()).collect();
            for k in keys {
                let (b, a) = (before.get(k), after.get(k));
                if b == a {
                    continue;
                }
                // Scripts and documents diff as text, not as one long string.
                if let (Some(bt), Some(at)) = (is_text(b), is_text(a)) {
                    let _ = writeln!(out, "      {k}:");
                    let diff = similar::TextDiff::from_lines(bt, at);
                    for line in diff.unified_diff().context_radius(2).to_string().lines() {
                        let _ = writeln!(out, "        {line}");
                    }
                } else {
                    let _ = writeln!(out, "      {k}: {} -> {}", show(b), show(a));
                }
            }
        }
    }
}

/// The human preview, without the closing "Must specify --yes" line.
pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    for (action, title) in [
        (Action::Create, "Will create resources:"),
        (Action::Update, "Will modify resources:"),
        (Action::Replace, "Will replace resources:"),
        (Action::Delete, "Will delete resources:"),
    ] {
        let changes: Vec<&Change> = plan.changes.iter().filter(|c| c.action == action).collect();
        if changes.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}");
        for c in changes {
            block(c, &mut out);
        }
        out.push('\n');
    }
    let s = plan.summary;
    let _ = writeln!(
        out,
        "Plan: {} to add, {} to change, {} to destroy.",
        s.add, s.change, s.destroy
    );
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
