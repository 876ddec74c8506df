//! Crash safety: kill -9 keelson after k requests to AWS, rerun, and it converges
//! with no duplicate and nothing leaked. Tag-on-create and client tokens are what
//! make this hold; this test is what shows it.

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;

use crate::harness::*;

/// Counts the emulator's request log lines as they come (one line a request).
struct RequestLog {
    file: std::fs::File,
    lines: usize,
}

impl RequestLog {
    fn open() -> RequestLog {
        let path = aws_env()
            .iter()
            .find(|(k, _)| k == "KEELSON_LOCAL_AWS_LOG")
            .map(|(_, v)| v.clone())
            .expect("the log's path");
        let mut file = std::fs::File::open(path).unwrap();
        file.seek(SeekFrom::End(0)).unwrap();
        RequestLog { file, lines: 0 }
    }

    fn count(&mut self) -> usize {
        let mut buf = Vec::new();
        self.file.read_to_end(&mut buf).unwrap();
        self.lines += buf.iter().filter(|b| **b == b'\n').count();
        self.lines
    }
}

/// Runs keelson and kills it with SIGKILL after `k` requests (other tests' requests
/// count too, which only moves the kill point earlier). Returns whether it was killed.
fn kill_after(sb: &Sandbox, args: &[&str], k: usize) -> bool {
    let mut log = RequestLog::open();
    let mut child = sb
        .command(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if log.count() >= k || Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn counts(cluster: &str) -> (usize, usize, usize, usize) {
    let ec2 = ec2();
    block_on(async {
        let f = || {
            Filter::builder()
                .name("tag-key")
                .values(format!("kubernetes.io/cluster/{cluster}"))
                .build()
        };
        let tag = format!("kubernetes.io/cluster/{cluster}");
        let nats = ec2
            .describe_nat_gateways()
            .send()
            .await
            .unwrap()
            .nat_gateways()
            .iter()
            .filter(|n| {
                n.tags().iter().any(|t| t.key() == Some(tag.as_str()))
                    && n.state().map(|s| s.as_str()) != Some("deleted")
            })
            .count();
        (
            ec2.describe_vpcs()
                .filters(f())
                .send()
                .await
                .unwrap()
                .vpcs()
                .len(),
            nats,
            ec2.describe_addresses()
                .filters(f())
                .send()
                .await
                .unwrap()
                .addresses()
                .len(),
            ec2.describe_security_groups()
                .filters(f())
                .send()
                .await
                .unwrap()
                .security_groups()
                .len(),
        )
    })
}

#[test]
fn killed_applies_and_deletes_converge_without_duplicates_or_leaks() {
    let sb = Sandbox::new("crash");
    let state = sb.state();
    let mut killed = 0;
    // Kill points spread over a first apply (about 110 requests for this cluster)...
    for (i, k) in [3usize, 12, 25, 40, 60, 85].into_iter().enumerate() {
        let name = sb.cluster(&format!("crash{i}"));
        sb.ok(&[
            "create",
            "cluster",
            &name,
            "--image",
            "ami-0123456789abcdef0",
            "--zones",
            "us-east-1a,us-east-1b",
            "--topology",
            "private",
            "--bastion",
        ]);
        if kill_after(
            &sb,
            &["update", "cluster", &name, "--yes", "--state", &state],
            k,
        ) {
            killed += 1;
            // kill -9 cannot release the lock: that is what unlock is for.
            sb.ok(&["unlock", "cluster", &name, "--yes"]);
        }
        sb.ok(&["update", "cluster", &name, "--yes"]);
        assert_eq!(
            counts(&name),
            (1, 2, 2, 5),
            "{name} killed after {k} requests: exactly one VPC, two NATs, two EIPs, five groups"
        );
        let r = sb.run(&[
            "update",
            "cluster",
            &name,
            "--detailed-exitcode",
            "--state",
            &state,
        ]);
        assert_eq!(
            r.code, 0,
            "{name}: re-plan not empty after the rerun:\n{}",
            r.stdout
        );

        // ...and over its delete.
        if i < 4 {
            let k = [5usize, 20, 40, 60][i];
            if kill_after(
                &sb,
                &["delete", "cluster", &name, "--yes", "--state", &state],
                k,
            ) {
                killed += 1;
                sb.ok(&["unlock", "cluster", &name, "--yes"]);
            }
            sb.ok(&["delete", "cluster", &name, "--yes"]);
            assert_eq!(
                counts(&name),
                (0, 0, 0, 0),
                "{name}: delete killed after {k} requests, rerun, leaves nothing"
            );
        }
    }
    assert!(
        killed >= 8,
        "most kill points must land mid-run, not after it ({killed})"
    );
}
