//! The plan: a plain value computed by a pure function from what is desired and
//! what exists. It can be printed, saved, snapshot-tested and applied later; the
//! apply refuses a saved plan if the specs or the cloud moved since.

pub mod quota;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{Address, Desired, DesiredResource, FieldChange, Kind, Lifecycle, Resource};

pub const FORMAT_VERSION: u32 = 1;

/// One resource found in AWS, its references already mapped to addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualResource {
    pub id: String,
    pub resource: Resource,
    /// Carries this cluster's `owned` tag (or is an untagged child of an owned
    /// parent); only owned resources are ever deleted.
    pub owned: bool,
    /// A lifecycle state where the kind has one (`pending`, `available`, `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// Everything discovered for a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Actual {
    pub resources: BTreeMap<Address, ActualResource>,
    /// A second resource with an address already taken (a duplicate left by a
    /// crash in some other tool): deleted if owned.
    pub duplicates: Vec<ActualResource>,
}

impl Actual {
    /// Adds a discovered resource, setting duplicates aside.
    pub fn insert(&mut self, r: ActualResource) {
        let address = r.resource.address();
        match self.resources.get(&address) {
            Some(existing) if existing.id != r.id => self.duplicates.push(r),
            _ => {
                self.resources.insert(address, r);
            }
        }
    }

    /// A fingerprint of what exists (ids and fields, not transient states): a
    /// saved plan is applied only if it is unchanged.
    pub fn fingerprint(&self) -> String {
        use std::io::Write;
        // Streamed into the hash: the launch templates' user-data makes the text
        // large, and it need not exist whole.
        let mut h = HashWriter(Sha256::new());
        for (a, r) in &self.resources {
            write!(h, "{a} {} ", r.id).expect("hashing cannot fail");
            serde_json::to_writer(&mut h, &r.resource).expect("resources serialize");
            h.0.update(b"\n");
        }
        for r in &self.duplicates {
            writeln!(h, "dup {}", r.id).expect("hashing cannot fail");
        }
        hex(&h.0.finalize())
    }
}

/// Feeds what is written into a hash.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub address: Address,
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    /// The fields as they are (update, replace, delete).
    pub before: Option<BTreeMap<String, Value>>,
    /// The fields as they will be (create, update, replace).
    pub after: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The AWS id of the existing resource (update, replace, delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The full desired resource, so a saved plan applies exactly (create, update, replace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<DesiredResource>,
    /// The resource as discovered (update, replace, delete): deletes are ordered
    /// by its references, and an update starts from it instead of reading it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<Resource>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub cluster: String,
    pub region: String,
    /// Fingerprints of the specs and of the discovered cloud the plan was made from.
    pub specs_fingerprint: String,
    pub cloud_fingerprint: String,
    pub changes: Vec<Change>,
    pub summary: Summary,
    /// Every address keelson knows, with its AWS id: what the apply resolves
    /// references with before creates add theirs.
    pub ids: BTreeMap<Address, String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{address}: {field} cannot change from {before} to {after}: {fix}")]
    Immutable {
        address: Address,
        field: String,
        before: String,
        after: String,
        fix: &'static str,
    },
    #[error(
        "{address}: the shared {what} was not found in AWS; check spec.networkID and the subnet ids, or remove them to let keelson create the network"
    )]
    SharedMissing {
        address: Address,
        what: &'static str,
    },
}

/// The keys of the actual tags that keelson compares: only those it sets, so tags
/// that users or other tools add never cause a perpetual diff.
fn comparable(actual: &Resource, desired: &Resource) -> Resource {
    let mut a = actual.clone();
    if let (Some(at), Some(dt)) = (a.tags_mut(), desired.tags()) {
        at.retain(|k, _| dt.contains_key(k));
    }
    // Sets in AWS, in whatever order they were given and are listed (an ASG's
    // VPCZoneIdentifier and target groups, a load balancer's subnets and
    // groups; the terraform provider's `vpc_zone_identifier`, `subnets` and
    // `security_groups` are sets too, sent in hash order): the same members in
    // another order are no change.
    let same_set = |found: &mut Vec<Address>, wanted: &Vec<Address>| {
        let mut f = found.clone();
        let mut w = wanted.clone();
        f.sort();
        w.sort();
        if f == w {
            *found = wanted.clone();
        }
    };
    match (&mut a, desired) {
        (Resource::AutoScalingGroup(f), Resource::AutoScalingGroup(w)) => {
            same_set(&mut f.subnets, &w.subnets);
            same_set(&mut f.target_groups, &w.target_groups);
        }
        (Resource::LoadBalancer(f), Resource::LoadBalancer(w)) => {
            same_set(&mut f.subnets, &w.subnets);
            same_set(&mut f.security_groups, &w.security_groups);
        }
        _ => {}
    }
    a
}

fn changed_fields(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// Computes the plan. Pure: no I/O, no clock, no randomness.
pub fn plan(
    desired: &Desired,
    actual: &Actual,
    specs_fingerprint: &str,
) -> Result<Plan, PlanError> {
    let mut changes: Vec<Change> = Vec::new();
    let mut replaced: BTreeSet<Address> = BTreeSet::new();

    for (address, d) in &desired.resources {
        let found = actual.resources.get(address);
        let change = |action, before, reason: Option<String>, id: Option<&str>| Change {
            address: address.clone(),
            kind: address.kind,
            name: address.name.clone(),
            action,
            before,
            after: Some(d.resource.fields()),
            reason,
            id: id.map(str::to_string),
            desired: Some(d.clone()),
            existing: None,
        };
        match (&d.lifecycle, found) {
            (Lifecycle::Shared(_), None) => {
                let what = match address.kind {
                    Kind::Vpc => "VPC",
                    Kind::Subnet => "subnet",
                    Kind::InternetGateway => "internet gateway (attached to the shared VPC)",
                    _ => "resource",
                };
                return Err(PlanError::SharedMissing {
                    address: address.clone(),
                    what,
                });
            }
            (Lifecycle::Shared(_), Some(a)) => {
                // Shared: only make sure our `shared` tag is there.
                let (Some(want), Some(have)) = (d.resource.tags(), a.resource.tags()) else {
                    continue;
                };
                if want.iter().any(|(k, v)| have.get(k) != Some(v)) {
                    let before: BTreeMap<String, Value> = [(
                        "tags".to_string(),
                        serde_json::to_value(
                            have.iter()
                                .filter(|(k, _)| want.contains_key(*k))
                                .collect::<BTreeMap<_, _>>(),
                        )
                        .unwrap(),
                    )]
                    .into();
                    let mut c = change(
                        Action::Update,
                        Some(before),
                        Some("tag the shared resource".into()),
                        Some(&a.id),
                    );
                    c.after =
                        Some([("tags".to_string(), serde_json::to_value(want).unwrap())].into());
                    c.existing = Some(a.resource.clone());
                    changes.push(c);
                }
            }
            (Lifecycle::Owned, None) => changes.push(change(Action::Create, None, None, None)),
            (Lifecycle::Owned, Some(a))
                if matches!(a.state.as_deref(), Some("failed" | "deleting" | "deleted")) =>
            {
                let state = a.state.clone().unwrap_or_default();
                let mut c = change(
                    Action::Replace,
                    Some(a.resource.fields()),
                    Some(format!("the existing one is {state}")),
                    Some(&a.id),
                );
                c.existing = Some(a.resource.clone());
                changes.push(c);
                replaced.insert(address.clone());
            }
            (Lifecycle::Owned, Some(a)) => {
                let before = comparable(&a.resource, &d.resource).fields();
                let after = d.resource.fields();
                let diff = changed_fields(&before, &after);
                if diff.is_empty() {
                    continue;
                }
                let mut replace_reason = None;
                for field in &diff {
                    match d.resource.field_change(field) {
                        FieldChange::Update => {}
                        FieldChange::Replace(why) => {
                            replace_reason = Some(format!("{field}: {why}"))
                        }
                        FieldChange::Refuse(fix) => {
                            return Err(PlanError::Immutable {
                                address: address.clone(),
                                field: field.clone(),
                                before: show(before.get(field)),
                                after: show(after.get(field)),
                                fix,
                            });
                        }
                    }
                }
                match replace_reason {
                    Some(reason) => {
                        let mut c =
                            change(Action::Replace, Some(before), Some(reason), Some(&a.id));
                        c.existing = Some(a.resource.clone());
                        changes.push(c);
                        replaced.insert(address.clone());
                    }
                    None => {
                        let mut c = change(Action::Update, Some(before), None, Some(&a.id));
                        c.existing = Some(a.resource.clone());
                        changes.push(c);
                    }
                }
            }
        }
    }

    // What refers to a replaced resource must follow it: routes and associations
    // are re-pointed in place; anything else is replaced too.
    let mut frontier: Vec<Address> = replaced.iter().cloned().collect();
    while let Some(r) = frontier.pop() {
        for (address, d) in &desired.resources {
            if !d.resource.deps().contains(&&r) || changes.iter().any(|c| &c.address == address) {
                continue;
            }
            let Some(a) = actual.resources.get(address) else {
                continue;
            };
            let repoint = matches!(address.kind, Kind::Route | Kind::RouteTableAssociation);
            changes.push(Change {
                address: address.clone(),
                kind: address.kind,
                name: address.name.clone(),
                action: if repoint {
                    Action::Update
                } else {
                    Action::Replace
                },
                before: Some(comparable(&a.resource, &d.resource).fields()),
                after: Some(d.resource.fields()),
                reason: Some(format!("{r} is replaced")),
                id: Some(a.id.clone()),
                desired: Some(d.clone()),
                existing: Some(a.resource.clone()),
            });
            if !repoint {
                frontier.push(address.clone());
            }
        }
    }

    let delete = |a: &ActualResource, reason: Option<String>| Change {
        address: if reason.is_some() {
            Address::new(a.resource.kind(), format!("{}#{}", a.resource.name(), a.id))
        } else {
            a.resource.address()
        },
        kind: a.resource.kind(),
        name: a.resource.name(),
        action: Action::Delete,
        before: Some(a.resource.fields()),
        after: None,
        reason,
        id: Some(a.id.clone()),
        desired: None,
        existing: Some(a.resource.clone()),
    };
    for (address, a) in &actual.resources {
        if a.owned && !desired.resources.contains_key(address) {
            changes.push(delete(a, None));
        }
    }
    for a in &actual.duplicates {
        if a.owned {
            changes.push(delete(
                a,
                Some(format!("a duplicate of {}", a.resource.address())),
            ));
        }
    }

    // Dependency order, then address: deterministic, and readable top-down.
    changes.sort_by(|x, y| {
        (x.action == Action::Delete, x.kind, &x.name).cmp(&(
            y.action == Action::Delete,
            y.kind,
            &y.name,
        ))
    });
    let mut summary = Summary::default();
    for c in &changes {
        match c.action {
            Action::Create => summary.add += 1,
            Action::Update => summary.change += 1,
            Action::Replace => {
                summary.add += 1;
                summary.destroy += 1;
            }
            Action::Delete => summary.destroy += 1,
        }
    }
    let ids = actual
        .resources
        .iter()
        .map(|(a, r)| (a.clone(), r.id.clone()))
        .collect();
    Ok(Plan {
        format_version: FORMAT_VERSION,
        cluster: desired.cluster.clone(),
        region: desired.region.clone(),
        specs_fingerprint: specs_fingerprint.to_string(),
        cloud_fingerprint: actual.fingerprint(),
        changes,
        summary,
        ids,
    })
}

fn show(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "(none)".into(),
    }
}

/// A fingerprint of the specs a plan was made from.
pub fn specs_fingerprint(
    cluster: &crate::spec::Cluster,
    groups: &[crate::spec::InstanceGroup],
) -> String {
    let mut h = Sha256::new();
    h.update(crate::spec::parse::to_yaml(cluster));
    for g in groups {
        h.update(crate::spec::parse::to_yaml(g));
    }
    hex(&h.finalize())
}

#[cfg(test)]
mod tests;
