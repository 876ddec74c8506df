//! The node agent against real etcd (Debian's etcd-server 3.4, run here on
//! loopback as the masters' etcd) and the emulator's EC2 and S3: masters replaced
//! one at a time keep the data and quorum, and a cluster that lost every master
//! comes back from a backup the agent stored.
//!
//! The masters are EC2 instances on the emulator in a 127.N.0.0/24 subnet, so
//! their private addresses are reachable on this machine's loopback and each
//! member listens where kubeadm's would: `IP:2379` and `IP:2380` (AWS refuses such a
//! CIDR; moto takes it, which is all this needs). kubeadm's part of a control-plane
//! join, `member add` and then starting etcd with `--initial-cluster-state=existing`
//! (cmd/kubeadm/app/phases/etcd/local.go, CreateStackedEtcdStaticPodManifestFile),
//! is done here with real etcdctl.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::harness::*;
use crate::imds::Imds;

struct Instance {
    id: String,
    ip: String,
    dns: String,
    imds: Imds,
}

struct Etcd {
    child: Child,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct World {
    sb: Sandbox,
    cluster: String,
    subnet: String,
    env_file: PathBuf,
}

impl World {
    fn new(test: &str) -> World {
        crate::bootstrap::tools();
        let sb = Sandbox::new(test);
        let cluster = sb.cluster(test);
        create_small_with(&sb, &cluster, &[]);
        let subnet = loopback_subnet(test.len() as u32);
        let env_file = sb.path("env");
        std::fs::write(
            &env_file,
            format!(
                "KEELSON_CLUSTER='{cluster}'\nKEELSON_ROLE='master'\nKEELSON_INSTANCE_GROUP='master-us-east-1a'\n\
                 KEELSON_STATE_BUCKET='{}'\nKEELSON_STATE_PREFIX='{cluster}/'\n",
                sb.bucket
            ),
        )
        .unwrap();
        World {
            sb,
            cluster,
            subnet,
            env_file,
        }
    }

    /// A new master instance in EC2, tagged as keelson tags its masters.
    fn launch(&self) -> Instance {
        let (id, ip, dns) = launch_tagged(
            &self.subnet,
            &[
                ("KubernetesCluster", &self.cluster),
                ("k8s.io/role/master", "1"),
            ],
        );
        let imds = Imds::instance(&id, &ip, &dns, "us-east-1");
        Instance { id, ip, dns, imds }
    }

    fn terminate(&self, i: &Instance) {
        block_on(async {
            ec2()
                .terminate_instances()
                .instance_ids(&i.id)
                .send()
                .await
                .unwrap()
        });
    }

    /// `keelson node ARGS` as instance `i` runs it.
    fn node(&self, i: &Instance, args: &[&str]) -> Run {
        let mut cmd = self.sb.command(&["node"]);
        cmd.args(args)
            .arg("--env-file")
            .arg(&self.env_file)
            .args(["--etcd-scheme", "http"])
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &i.imds.url);
        self.sb.run_cmd(cmd)
    }

    fn node_ok(&self, i: &Instance, args: &[&str]) -> Run {
        let r = self.node(i, args);
        assert_eq!(
            r.code, 0,
            "keelson node {args:?} as {}:\n{}",
            i.id, r.stderr
        );
        r
    }

    /// Starts etcd as instance `i`'s member, with kubeadm's naming (the node name)
    /// and addresses.
    fn etcd(&self, i: &Instance, initial_cluster: &str, state: &str) -> Etcd {
        let dir = self.sb.path(&format!("etcd-{}", i.id));
        self.etcd_in(i, &dir, initial_cluster, state)
    }

    fn etcd_in(
        &self,
        i: &Instance,
        dir: &std::path::Path,
        initial_cluster: &str,
        state: &str,
    ) -> Etcd {
        let log = std::fs::File::create(self.sb.path(&format!("etcd-{}.log", i.id))).unwrap();
        let child = Command::new("etcd")
            .arg(format!("--name={}", i.dns))
            .arg(format!("--data-dir={}", dir.display()))
            .arg(format!("--listen-client-urls=http://{}:2379", i.ip))
            .arg(format!("--advertise-client-urls=http://{}:2379", i.ip))
            .arg(format!("--listen-peer-urls=http://{}:2380", i.ip))
            .arg(format!(
                "--initial-advertise-peer-urls=http://{}:2380",
                i.ip
            ))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg(format!("--initial-cluster-state={state}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (etcd-server) is installed by scripts/tools");
        let e = Etcd { child };
        wait_for(&format!("etcd of {}", i.id), 30, || {
            etcdctl(&[&format!("http://{}:2379", i.ip)], &["endpoint", "health"]).0
        });
        e
    }

    /// kubeadm's etcd join: `member add`, then the new member starts with the
    /// initial cluster etcd answered.
    fn join(&self, i: &Instance, via: &[String]) -> Etcd {
        let peer = format!("http://{}:2380", i.ip);
        // kubeadm retries `member add` with a backoff (cmd/kubeadm/app/util/etcd/
        // etcd.go, addMember): etcd refuses it until every member has been
        // connected for 5 s (its strict reconfig check), e.g. after a restart.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let out = loop {
            let (ok, out) = etcdctl(
                &via.iter().map(String::as_str).collect::<Vec<_>>(),
                &["member", "add", &i.dns, &format!("--peer-urls={peer}")],
            );
            if ok {
                break out;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "member add {}: {out}",
                i.dns
            );
            std::thread::sleep(std::time::Duration::from_secs(1));
        };
        let initial = out
            .lines()
            .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
            .unwrap_or_else(|| panic!("no ETCD_INITIAL_CLUSTER in {out}"))
            .trim_matches('"')
            .to_string();
        self.etcd(i, &initial, "existing")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // The emulator outlives the test: its instances go with it.
        block_on(async {
            let ec2 = ec2();
            let ids: Vec<String> = ec2
                .describe_instances()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("tag:KubernetesCluster")
                        .values(&self.cluster)
                        .build(),
                )
                .send()
                .await
                .map(|o| {
                    o.reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .filter_map(|i| i.instance_id().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if !ids.is_empty() {
                let _ = ec2
                    .terminate_instances()
                    .set_instance_ids(Some(ids))
                    .send()
                    .await;
            }
        });
    }
}

/// Real etcdctl (v3 API); returns (success, stdout + stderr).
fn etcdctl(endpoints: &[&str], args: &[&str]) -> (bool, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["--dial-timeout=2s", "--command-timeout=5s"])
        .args(args)
        .output()
        .expect("etcdctl (etcd-client) is installed by scripts/tools");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn urls(masters: &[&Instance]) -> Vec<String> {
    masters
        .iter()
        .map(|m| format!("http://{}:2379", m.ip))
        .collect()
}

fn get(endpoints: &[String], key: &str) -> String {
    let e: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let (ok, out) = etcdctl(&e, &["get", key, "--print-value-only"]);
    assert!(ok, "get {key}: {out}");
    out.trim().to_string()
}

/// Writes a key; a write needs quorum. When the leader was the member just lost,
/// the others first elect a new one (etcd's election timeout, 1 s by default),
/// so a write is retried for a few seconds before it counts as refused.
fn put(endpoints: &[String], key: &str, value: &str) {
    let e: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (ok, out) = etcdctl(&e, &["put", key, value]);
        if ok {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "put {key} (quorum lost?): {out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn report(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

#[test]
fn masters_replaced_one_at_a_time_keep_etcd_whole_and_a_lost_cluster_restores() {
    let w = World::new("etcd-lifecycle");
    let mut masters: Vec<Instance> = (0..3).map(|_| w.launch()).collect();
    let initial: Vec<String> = masters
        .iter()
        .map(|m| format!("{}=http://{}:2380", m.dns, m.ip))
        .collect();
    let initial = initial.join(",");
    // All three start together (each waits for its peers before it is healthy).
    let mut procs: Vec<Option<Etcd>> = std::thread::scope(|s| {
        let hs: Vec<_> = masters
            .iter()
            .map(|m| s.spawn(|| w.etcd(m, &initial, "new")))
            .collect();
        hs.into_iter().map(|h| Some(h.join().unwrap())).collect()
    });
    put(
        &urls(&masters.iter().collect::<Vec<_>>()),
        "/registry/keelson-test",
        "before",
    );

    // A whole cluster: the agent removes nothing and says so.
    let r = report(&w.node_ok(&masters[0], &["etcd-members"]));
    assert_eq!(r["members"].as_array().unwrap().len(), 3, "{r}");
    assert_eq!(r["healthy"], 3);
    assert!(r["removed"].as_array().unwrap().is_empty());

    // A master whose instance runs but whose etcd is down (a reboot) keeps its member.
    procs[2] = None;
    let r = report(&w.node_ok(&masters[0], &["etcd-members"]));
    assert_eq!(r["members"].as_array().unwrap().len(), 3, "{r}");
    assert_eq!(r["healthy"], 2);
    procs[2] = Some(w.etcd(&masters[2], &initial, "existing"));

    for round in 0..3 {
        // rolling-update terminates the oldest master; its etcd dies with it.
        let old = masters.remove(0);
        procs.remove(0);
        w.terminate(&old);
        let survivors = urls(&masters.iter().collect::<Vec<_>>());
        put(
            &survivors,
            &format!("/registry/round-{round}"),
            "written with one master down",
        );

        // Its replacement: the agent removes the dead member before the join...
        let new = w.launch();
        if round == 0 {
            // ...which etcd needs: with a dead member it refuses any new one.
            let via: Vec<&str> = survivors.iter().map(String::as_str).collect();
            let (ok, out) = etcdctl(
                &via,
                &[
                    "member",
                    "add",
                    &new.dns,
                    &format!("--peer-urls=http://{}:2380", new.ip),
                ],
            );
            assert!(!ok && out.contains("unhealthy cluster"), "{out}");
        }
        let r = w.node_ok(&new, &["etcd-members", "--joining"]);
        let j = report(&r);
        assert_eq!(j["removed"].as_array().unwrap().len(), 1, "{j}");
        assert!(r.stderr.contains(&old.dns), "{}", r.stderr);
        assert_eq!(j["members"].as_array().unwrap().len(), 2, "{j}");
        // ...so that etcd takes the new member (with a dead member it refuses:
        // "etcdserver: unhealthy cluster").
        procs.push(Some(w.join(&new, &survivors)));
        masters.push(new);
        // After the step, members = masters, all healthy, and the data is there.
        let r = report(&w.node_ok(&masters[2], &["etcd-members"]));
        assert_eq!(r["members"].as_array().unwrap().len(), 3, "{r}");
        assert_eq!(r["masters"].as_array().unwrap().len(), 3, "{r}");
        assert_eq!(r["healthy"], 3, "{r}");
        let all = urls(&masters.iter().collect::<Vec<_>>());
        assert_eq!(get(&all, "/registry/keelson-test"), "before");
    }
    // The published status is what rolling-update reads.
    let status: serde_json::Value = serde_json::from_str(
        &w.sb
            .object(&format!("{}/control-plane/etcd-status.json", w.cluster)),
    )
    .unwrap();
    assert_eq!(status["healthy"], 3);

    // A backup, after a last write.
    let all = urls(&masters.iter().collect::<Vec<_>>());
    put(&all, "/registry/last", "in the backup");
    let name = w
        .node_ok(&masters[0], &["backup-etcd"])
        .stdout
        .trim()
        .to_string();
    assert!(name.ends_with("-manual"), "{name}");
    let listed = w.sb.ok(&["get", "backups", &w.cluster]);
    assert!(listed.stdout.contains(&name), "{}", listed.stdout);

    // Every master is lost.
    procs.clear();
    for m in &masters {
        w.terminate(m);
    }
    let first = w.launch();
    let r = w.node(&first, &["etcd-members", "--joining"]);
    assert_ne!(r.code, 0, "no etcd is left to ask:\n{}", r.stdout);
    // An unknown backup is refused, naming the ones there are.
    let r = w.node(
        &first,
        &[
            "restore-etcd",
            "--backup",
            "20200101T000000Z-manual",
            "--data-dir",
            "/nonexistent",
        ],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains(&name), "{}", r.stderr);
    // A data directory in use is never written over.
    let busy = w.sb.path("busy");
    std::fs::create_dir_all(busy.join("member")).unwrap();
    let r = w.node(
        &first,
        &[
            "restore-etcd",
            "--backup",
            &name,
            "--data-dir",
            busy.to_str().unwrap(),
        ],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);

    // The new master restores the backup and starts as a one-member cluster...
    let data = w.sb.path(&format!("restored-{}", first.id));
    w.node_ok(
        &first,
        &[
            "restore-etcd",
            "--backup",
            &name,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    let _restored = w.etcd_in(
        &first,
        &data,
        &format!("{}=http://{}:2380", first.dns, first.ip),
        "new",
    );
    let one = urls(&[&first]);
    assert_eq!(get(&one, "/registry/keelson-test"), "before");
    assert_eq!(get(&one, "/registry/last"), "in the backup");
    // ...whose stale members from the lost masters are not carried over by the
    // restore, and which the next master joins as usual.
    let r = report(&w.node_ok(&first, &["etcd-members"]));
    assert_eq!(r["members"].as_array().unwrap().len(), 1, "{r}");
    let second = w.launch();
    w.node_ok(&second, &["etcd-members", "--joining"]);
    let _joined = w.join(&second, &one);
    let r = report(&w.node_ok(&second, &["etcd-members"]));
    assert_eq!(r["members"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["healthy"], 2, "{r}");
    assert_eq!(
        get(&urls(&[&second]), "/registry/round-2"),
        "written with one master down"
    );
}
