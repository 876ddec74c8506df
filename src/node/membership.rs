//! etcd membership kept equal to the masters.
//!
//! A replaced master's member is never removed by kubeadm, and etcd refuses
//! `member add` while any member is down ("etcdserver: unhealthy cluster",
//! etcd's server/etcdserver/server.go `mayAddMember` with strict reconfig check,
//! on by default), so the replacement could never join. The agent removes, before
//! a master joins and on every pass on the masters, the members whose instances
//! are gone, one at a time, and only while quorum holds; it never removes a
//! healthy member. [`plan`] decides, purely; [`reconcile`] reads and acts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::NodeError;
use super::etcd::{Client, Member};

/// A master instance as EC2 reports it (pending or running).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Master {
    pub instance_id: String,
    pub private_ip: String,
    pub private_dns: String,
}

/// One member and what the agent made of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    pub id: String,
    pub name: String,
    pub peer_host: String,
    pub healthy: bool,
    /// The master instance this member is, if it is one.
    pub instance_id: Option<String>,
}

/// The membership and its health, as the agent publishes it for
/// `rolling-update` (see [`super::status_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub members: Vec<MemberState>,
    pub masters: Vec<Master>,
    pub healthy: usize,
    pub quorum: bool,
    /// Members removed by this pass, with the reason.
    pub removed: Vec<String>,
    /// Seconds since the Unix epoch.
    pub checked_at: u64,
}

impl Report {
    /// Whole: every member healthy, and one member for each master.
    pub fn whole(&self) -> bool {
        self.quorum
            && self.healthy == self.members.len()
            && self.members.len() == self.masters.len()
            && self.members.iter().all(|m| m.instance_id.is_some())
    }
}

/// What to do with the membership now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Remove this member (one at a time: the next pass decides again).
    Remove { id: u64, why: String },
    /// Nothing to remove.
    Settled,
    /// Quorum is lost: nothing can be removed (etcd commits removals through
    /// raft); only a restore from a backup brings the cluster back.
    NoQuorum { healthy: usize, members: usize },
}

fn instance_of<'a>(m: &Member, masters: &'a [Master]) -> Option<&'a Master> {
    masters.iter().find(|i| {
        (!m.name.is_empty() && m.name == i.private_dns) || m.peer_host() == Some(&i.private_ip)
    })
}

/// The next step for `members` (with each one's health) given the master
/// instances that exist. `joining` is the master about to join, if any: a member
/// of its own that is not healthy is a join that failed half-way, and goes too.
pub fn plan(
    members: &[Member],
    healthy: &BTreeMap<u64, bool>,
    masters: &[Master],
    joining: Option<&Master>,
) -> Step {
    let is_healthy = |m: &Member| healthy.get(&m.id).copied().unwrap_or(false);
    let up = members.iter().filter(|m| is_healthy(m)).count();
    if up <= members.len() / 2 {
        return Step::NoQuorum {
            healthy: up,
            members: members.len(),
        };
    }
    for m in members.iter().filter(|m| !is_healthy(m)) {
        let label = if m.name.is_empty() {
            format!("unstarted member {:x}", m.id)
        } else {
            format!("member {} ({:x})", m.name, m.id)
        };
        match instance_of(m, masters) {
            None => {
                return Step::Remove {
                    id: m.id,
                    why: format!(
                        "{label} at {} is not healthy and no running master has its name or address",
                        m.peer_host().unwrap_or("?")
                    ),
                };
            }
            Some(i) if joining.is_some_and(|j| j.instance_id == i.instance_id) => {
                return Step::Remove {
                    id: m.id,
                    why: format!(
                        "{label} is this joining master's own, left by a join that did not finish"
                    ),
                };
            }
            // Another master's member, down or still starting: it may come back.
            Some(_) => {}
        }
    }
    Step::Settled
}

/// How many times a lost quorum is looked at again, 2 s apart, before it counts.
const NO_QUORUM_CHECKS: usize = 5;

/// Reads the membership through the first endpoint that answers, removes what
/// [`plan`] says, one member at a time, and reports the result. `endpoints` are
/// client URLs to try (the masters' `https://IP:2379`).
pub async fn reconcile(
    client: &Client,
    endpoints: &[String],
    masters: &[Master],
    joining: Option<&Master>,
    now: u64,
) -> Result<Report, NodeError> {
    let mut removed = Vec::new();
    let mut quorum_checks = 0;
    // At most one removal per member, whatever the answers.
    for _ in 0..=16 + NO_QUORUM_CHECKS {
        let (endpoint, members) = list_any(client, endpoints).await?;
        let mut health = BTreeMap::new();
        for m in &members {
            let mut ok = false;
            for url in &m.client_urls {
                if client.healthy(url).await {
                    ok = true;
                    break;
                }
            }
            health.insert(m.id, ok);
        }
        match plan(&members, &health, masters, joining) {
            Step::Remove { id, why } => {
                client.member_remove(&endpoint, id).await?;
                removed.push(why);
            }
            // Every member reports unhealthy while they elect a leader (after
            // the leader died, for an election timeout or more): look again
            // before calling quorum lost.
            Step::NoQuorum { .. } if quorum_checks < NO_QUORUM_CHECKS => {
                quorum_checks += 1;
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            step => {
                let members: Vec<MemberState> = members
                    .iter()
                    .map(|m| MemberState {
                        id: format!("{:x}", m.id),
                        name: m.name.clone(),
                        peer_host: m.peer_host().unwrap_or("").to_string(),
                        healthy: health[&m.id],
                        instance_id: instance_of(m, masters).map(|i| i.instance_id.clone()),
                    })
                    .collect();
                let up = members.iter().filter(|m| m.healthy).count();
                return Ok(Report {
                    quorum: !matches!(step, Step::NoQuorum { .. }),
                    healthy: up,
                    members,
                    masters: masters.to_vec(),
                    removed,
                    checked_at: now,
                });
            }
        }
    }
    Err(NodeError::Etcd {
        endpoint: endpoints.join(","),
        message: "the membership kept changing while it was reconciled".into(),
    })
}

/// The member list from the first endpoint that gives one.
pub async fn list_any(
    client: &Client,
    endpoints: &[String],
) -> Result<(String, Vec<Member>), NodeError> {
    let mut last = None;
    for e in endpoints {
        match client.member_list(e).await {
            Ok(m) => return Ok((e.clone(), m)),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or(NodeError::Etcd {
        endpoint: String::new(),
        message: "no etcd endpoint to ask: no master instance is running".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, ip: &str, started: bool) -> Member {
        Member {
            id,
            name: if started {
                format!("ip-{}.ec2.internal", ip.replace('.', "-"))
            } else {
                String::new()
            },
            peer_urls: vec![format!("https://{ip}:2380")],
            client_urls: if started {
                vec![format!("https://{ip}:2379")]
            } else {
                vec![]
            },
        }
    }

    fn master(id: &str, ip: &str) -> Master {
        Master {
            instance_id: id.into(),
            private_ip: ip.into(),
            private_dns: format!("ip-{}.ec2.internal", ip.replace('.', "-")),
        }
    }

    fn health(pairs: &[(u64, bool)]) -> BTreeMap<u64, bool> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_replaced_masters_dead_member_goes_and_nothing_else() {
        let members = [
            member(1, "10.0.0.1", true),
            member(2, "10.0.0.2", true),
            member(3, "10.0.0.3", true),
        ];
        // Master 3 was terminated; a new one (10.0.0.4) is joining.
        let masters = [
            master("i-1", "10.0.0.1"),
            master("i-2", "10.0.0.2"),
            master("i-4", "10.0.0.4"),
        ];
        let h = health(&[(1, true), (2, true), (3, false)]);
        assert!(matches!(
            plan(&members, &h, &masters, Some(&masters[2])),
            Step::Remove { id: 3, .. }
        ));
        // Once it is gone, nothing else is touched.
        assert_eq!(
            plan(&members[..2], &h, &masters, Some(&masters[2])),
            Step::Settled
        );
    }

    #[test]
    fn never_a_healthy_member_nor_a_down_member_of_a_running_master() {
        let members = [
            member(1, "10.0.0.1", true),
            member(2, "10.0.0.2", true),
            member(3, "10.0.0.3", true),
        ];
        // Instance 3 runs but its etcd is down (a reboot): it may come back.
        let masters = [
            master("i-1", "10.0.0.1"),
            master("i-2", "10.0.0.2"),
            master("i-3", "10.0.0.3"),
        ];
        let h = health(&[(1, true), (2, true), (3, false)]);
        assert_eq!(plan(&members, &h, &masters, None), Step::Settled);
        // EC2 shows no masters at all (an API hiccup): healthy members stay.
        let all = health(&[(1, true), (2, true), (3, true)]);
        assert_eq!(plan(&members, &all, &[], None), Step::Settled);
    }

    #[test]
    fn without_quorum_nothing_is_removed() {
        let members = [
            member(1, "10.0.0.1", true),
            member(2, "10.0.0.2", true),
            member(3, "10.0.0.3", true),
        ];
        let h = health(&[(1, true), (2, false), (3, false)]);
        assert_eq!(
            plan(&members, &h, &[master("i-1", "10.0.0.1")], None),
            Step::NoQuorum {
                healthy: 1,
                members: 3
            }
        );
    }

    #[test]
    fn a_half_done_join_of_this_master_is_undone_but_not_anothers() {
        let members = [
            member(1, "10.0.0.1", true),
            member(2, "10.0.0.2", true),
            member(3, "10.0.0.3", true),
            member(4, "10.0.0.4", false),
        ];
        let masters = [
            master("i-1", "10.0.0.1"),
            master("i-2", "10.0.0.2"),
            master("i-3", "10.0.0.3"),
            master("i-4", "10.0.0.4"),
        ];
        let h = health(&[(1, true), (2, true), (3, true), (4, false)]);
        // Master 4 restarts its own join: its unstarted member goes first.
        assert!(matches!(
            plan(&members, &h, &masters, Some(&masters[3])),
            Step::Remove { id: 4, .. }
        ));
        // Seen from another master, it is a join in progress: kept.
        assert_eq!(plan(&members, &h, &masters, None), Step::Settled);
    }
}
