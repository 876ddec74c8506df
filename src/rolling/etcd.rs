//! The rule before a master is replaced: etcd must be whole, as the node agent on
//! the masters last saw it (`NAME/control-plane/etcd-status.json`, written every
//! pass by `keelson node agent`): every member healthy and one member for each
//! running master. Replacing a master of a 3-member etcd with a member already
//! down loses quorum, and with it the API. Then a pre-replacement backup, asked of
//! the agent (`control-plane/backup-request`) and waited for.

use crate::node::membership::{Master, Report};

/// How old the agent's status may be: it writes one a minute.
pub const FRESH_SECS: u64 = 300;

/// Why the masters may not be touched now, or nothing.
pub fn not_ready(status: Option<&Report>, masters: &[Master], now: u64) -> Option<String> {
    let Some(s) = status else {
        return Some(
            "the node agent on the masters has published no etcd status (control-plane/etcd-status.json): the masters may run a keelson without the agent, or keelson-agent is down on all of them".into(),
        );
    };
    let age = now.saturating_sub(s.checked_at);
    if age > FRESH_SECS {
        return Some(format!(
            "the node agent's last etcd status is {} minutes old: is keelson-agent running on the masters (`journalctl -u keelson-agent`)?",
            age / 60
        ));
    }
    let down: Vec<&str> = s
        .members
        .iter()
        .filter(|m| !m.healthy)
        .map(|m| {
            if m.name.is_empty() {
                m.peer_host.as_str()
            } else {
                m.name.as_str()
            }
        })
        .collect();
    if !down.is_empty() {
        return Some(format!(
            "etcd has {} of {} members healthy ({} not)",
            s.healthy,
            s.members.len(),
            down.join(", ")
        ));
    }
    let running: std::collections::BTreeSet<&str> =
        masters.iter().map(|m| m.instance_id.as_str()).collect();
    let members_of: std::collections::BTreeSet<&str> = s
        .members
        .iter()
        .filter_map(|m| m.instance_id.as_deref())
        .collect();
    if s.members.len() != masters.len() || members_of != running {
        return Some(format!(
            "etcd has {} members for {} running masters (the agent adds and removes members as masters come and go; wait for its next pass)",
            s.members.len(),
            masters.len()
        ));
    }
    None
}

pub fn request_key(cluster: &str) -> String {
    format!("{cluster}/control-plane/backup-request")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::membership::MemberState;

    fn master(i: u8) -> Master {
        Master {
            instance_id: format!("i-{i}"),
            private_ip: format!("10.0.0.{i}"),
            private_dns: format!("ip-10-0-0-{i}.ec2.internal"),
        }
    }

    fn member(i: u8, healthy: bool) -> MemberState {
        MemberState {
            id: format!("{i:x}"),
            name: format!("ip-10-0-0-{i}.ec2.internal"),
            peer_host: format!("10.0.0.{i}"),
            healthy,
            instance_id: Some(format!("i-{i}")),
        }
    }

    fn report(members: Vec<MemberState>, at: u64) -> Report {
        Report {
            healthy: members.iter().filter(|m| m.healthy).count(),
            quorum: true,
            masters: vec![],
            removed: vec![],
            checked_at: at,
            members,
        }
    }

    #[test]
    fn whole_fresh_and_equal_or_the_reason() {
        let masters = [master(1), master(2), master(3)];
        let whole = report(
            vec![member(1, true), member(2, true), member(3, true)],
            1000,
        );
        assert_eq!(not_ready(Some(&whole), &masters, 1010), None);
        assert!(
            not_ready(None, &masters, 1010)
                .unwrap()
                .contains("no etcd status")
        );
        assert!(
            not_ready(Some(&whole), &masters, 1000 + FRESH_SECS + 60)
                .unwrap()
                .contains("minutes old")
        );
        let one_down = report(
            vec![member(1, true), member(2, false), member(3, true)],
            1000,
        );
        let why = not_ready(Some(&one_down), &masters, 1010).unwrap();
        assert!(
            why.contains("2 of 3") && why.contains("ip-10-0-0-2"),
            "{why}"
        );
        // A replacement launched, its member not added yet.
        let more = [master(1), master(2), master(3), master(4)];
        assert!(
            not_ready(Some(&whole), &more, 1010)
                .unwrap()
                .contains("3 members for 4")
        );
        // As many members as masters, but one is a gone master's.
        let swapped = [master(1), master(2), master(4)];
        assert!(not_ready(Some(&whole), &swapped, 1010).is_some());
    }
}
