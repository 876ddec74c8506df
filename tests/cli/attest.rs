//! Node attestation end to end on the emulator: a master's agent serves node
//! credentials (`keelson node credential-server`), a node asks for one
//! (`keelson node credential`, what its bootstrap does) with its instance role's
//! credentials from a test IMDS, and the master checks the signed
//! `GetCallerIdentity` with the emulator's STS and the instance in its EC2.
//!
//! The instance role's credentials are an AssumeRole session named by the
//! instance id, as EC2 makes them (AWS IAM user guide, "Use an IAM role to grant
//! permissions to applications running on Amazon EC2 instances"). moto does not
//! check SigV4 signatures (it answers GetCallerIdentity from the access key id),
//! so a tampered signature is refused here only by keelson's own checks; the
//! rest (the caller's role and session, the instance's state, tags and name) is
//! the emulator's word, as it would be AWS's. Instances sit in a 127.N.0.0/24
//! subnet (see etcd.rs) so that the master's address is this machine's loopback.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::harness::*;
use crate::imds::Imds;

struct Instance {
    id: String,
    ip: String,
    dns: String,
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct World {
    sb: Sandbox,
    cluster: String,
    subnet: String,
}

fn env_file(sb: &Sandbox, cluster: &str, role: &str) -> PathBuf {
    let f = sb.path(&format!("env-{role}"));
    std::fs::write(
        &f,
        format!(
            "KEELSON_CLUSTER='{cluster}'\nKEELSON_ROLE='{role}'\nKEELSON_INSTANCE_GROUP='{role}s'\n\
             KEELSON_STATE_BUCKET='{}'\nKEELSON_STATE_PREFIX='{cluster}/'\n",
            sb.bucket
        ),
    )
    .unwrap();
    f
}

/// An STS session of `role` named `session`, as EC2 gives an instance (moto
/// answers AssumeRole without checking the caller's signature).
fn assume(role: &str, session: &str) -> BTreeMap<String, String> {
    let endpoint = aws_env()
        .iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .unwrap()
        .1
        .clone();
    let out = Command::new("curl")
        .args(["-fsS", &format!("{endpoint}/"), "-H"])
        .arg("Authorization: AWS4-HMAC-SHA256 Credential=testing/20261203/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0")
        .arg("-d")
        .arg(format!(
            "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::123456789012:role/{role}&RoleSessionName={session}&DurationSeconds=3600"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = String::from_utf8(out.stdout).unwrap();
    let field = |t: &str| {
        let open = format!("<{t}>");
        let at = xml.find(&open).unwrap() + open.len();
        xml[at..at + xml[at..].find('<').unwrap()].to_string()
    };
    BTreeMap::from([
        ("AccessKeyId".into(), field("AccessKeyId")),
        ("SecretAccessKey".into(), field("SecretAccessKey")),
        ("Token".into(), field("SessionToken")),
    ])
}

impl World {
    fn new(test: &str) -> World {
        let sb = Sandbox::new(test);
        let cluster = sb.cluster(test);
        create_small_with(&sb, &cluster, &[]);
        let subnet = loopback_subnet(97 + test.len() as u32);
        World {
            sb,
            cluster,
            subnet,
        }
    }

    /// An instance in EC2 tagged as keelson tags its `role`s of `cluster`.
    fn launch(&self, cluster: &str, role: &str) -> Instance {
        let owned = format!("kubernetes.io/cluster/{cluster}");
        let role = format!("k8s.io/role/{role}");
        let (id, ip, dns) = launch_tagged(
            &self.subnet,
            &[
                ("KubernetesCluster", cluster),
                (&owned, "owned"),
                (&role, "1"),
            ],
        );
        Instance { id, ip, dns }
    }

    /// The master's credential server, once it listens.
    fn serve(&self, master: &Instance) -> (Server, Imds) {
        let imds = Imds::instance(&master.id, &master.ip, &master.dns, "us-east-1");
        let mut cmd = self
            .sb
            .command(&["node", "credential-server", "--env-file"]);
        cmd.arg(env_file(&self.sb, &self.cluster, "master"))
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.sb.path("server.log")).unwrap());
        let server = Server(cmd.spawn().unwrap());
        let addr = format!("{}:3988", master.ip);
        wait_for("the credential server", 30, || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        (server, imds)
    }

    /// `keelson node credential ARGS` as instance `i` with the instance role
    /// session `creds`, from its metadata as EC2 serves it.
    fn ask(
        &self,
        i: &Instance,
        name: &str,
        creds: &BTreeMap<String, String>,
        args: &[&str],
    ) -> Run {
        let mut data = BTreeMap::from([
            ("instance-id".to_string(), i.id.clone()),
            ("local-ipv4".into(), i.ip.clone()),
            ("local-hostname".into(), name.to_string()),
            ("placement/region".into(), "us-east-1".into()),
            ("iam/security-credentials/".into(), "node-role".into()),
        ]);
        let mut json = serde_json::json!({
            "Code": "Success",
            "Type": "AWS-HMAC",
            "LastUpdated": "2026-12-03T12:00:00Z",
            "Expiration": "2099-01-01T00:00:00Z",
        });
        for (k, v) in creds {
            json[k] = v.clone().into();
        }
        data.insert(
            "iam/security-credentials/node-role".into(),
            json.to_string(),
        );
        let imds = Imds::start(data);
        let mut cmd = self.sb.command(&["node", "credential", "--env-file"]);
        cmd.arg(env_file(&self.sb, &self.cluster, "node"))
            .args(args)
            // The instance role from IMDS, as on EC2: no keys in the environment.
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_EC2_METADATA_DISABLED", "false")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url);
        self.sb.run_cmd(cmd)
    }
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_node_gets_a_credential_for_its_own_name_only() {
    let w = World::new("attest");
    let master = w.launch(&w.cluster, "master");
    let node = w.launch(&w.cluster, "node");
    let (_server, _imds) = w.serve(&master);
    let node_role = format!("nodes.{}", w.cluster);
    let session = assume(&node_role, &node.id);

    // Granted: a certificate of the cluster CA for system:node:NAME in
    // system:nodes, for the key the node made and kept.
    let out = w.sb.path("cred");
    let saved = w.sb.path("request.json");
    let r = w.ask(
        &node,
        &node.dns,
        &session,
        &[
            "--out",
            out.to_str().unwrap(),
            "--save-request",
            saved.to_str().unwrap(),
        ],
    );
    let log = || std::fs::read_to_string(w.sb.path("server.log")).unwrap_or_default();
    assert_eq!(r.code, 0, "{}\nserver:\n{}", r.stderr, log());
    let ca = w.sb.path("ca.crt");
    std::fs::write(
        &ca,
        w.sb.object(&format!("{}/pki/public/ca.crt", w.cluster)),
    )
    .unwrap();
    let (crt, key) = (out.join("node.crt"), out.join("node.key"));
    let (crt, key) = (crt.to_str().unwrap(), key.to_str().unwrap());
    assert!(openssl(&["verify", "-CAfile", ca.to_str().unwrap(), crt]).contains(": OK"));
    let subject = openssl(&[
        "x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", crt,
    ]);
    assert!(
        subject.contains(&format!("CN=system:node:{}", node.dns))
            && subject.contains("O=system:nodes"),
        "{subject}"
    );
    assert_eq!(
        openssl(&["x509", "-noout", "-pubkey", "-in", crt]),
        openssl(&["pkey", "-pubout", "-in", key]),
        "the certificate is for the node's own key"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // What travels holds no secret key.
    let request = std::fs::read_to_string(&saved).unwrap();
    assert!(!request.contains(&session["SecretAccessKey"]));
    assert!(!r.stderr.contains(&session["SecretAccessKey"]) && !log().contains(&session["Token"]));

    let send = |file: &std::path::Path| {
        let out = w.sb.path("replayed");
        w.ask(
            &node,
            &node.dns,
            &session,
            &[
                "--out",
                out.to_str().unwrap(),
                "--send",
                file.to_str().unwrap(),
            ],
        )
    };
    // The same signed request again: refused, each is taken once.
    let r = send(&saved);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("was used before"), "{}", r.stderr);
    // One signed more than 5 minutes ago: refused on its date.
    let mut old: serde_json::Value = serde_json::from_str(&request).unwrap();
    let date = old["headers"]["x-amz-date"].as_str().unwrap().to_string();
    let t = chrono_minus(&date, 6 * 60);
    old["headers"]["x-amz-date"] = t.into();
    let stale = w.sb.path("stale.json");
    std::fs::write(&stale, old.to_string()).unwrap();
    let r = send(&stale);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("more than 300s apart"), "{}", r.stderr);

    // Another instance's name: refused, with both names.
    let other = w.launch(&w.cluster, "node");
    let r = w.ask(
        &node,
        &other.dns,
        &session,
        &["--out", out.to_str().unwrap()],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains(&format!("its private DNS name is {:?}", node.dns)),
        "{}",
        r.stderr
    );
    // Another cluster's instance, even with this cluster's node role: refused.
    let foreign = w.launch("other.k8s.local", "node");
    let foreign_session = assume(&node_role, &foreign.id);
    let r = w.ask(
        &foreign,
        &foreign.dns,
        &foreign_session,
        &["--out", out.to_str().unwrap()],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "not tagged as an instance of cluster {}",
            w.cluster
        )),
        "{}",
        r.stderr
    );
    // Another cluster's node role: refused.
    let other_role = assume("nodes.other.k8s.local", &node.id);
    let r = w.ask(
        &node,
        &node.dns,
        &other_role,
        &["--out", out.to_str().unwrap()],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("not one of this cluster's node roles"),
        "{}",
        r.stderr
    );
    // A master is not a node: it makes its own credential with the CA.
    let master_session = assume(&node_role, &master.id);
    let r = w.ask(
        &master,
        &master.dns,
        &master_session,
        &["--out", out.to_str().unwrap()],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not tagged as a node"), "{}", r.stderr);
    // Every refusal was the master's, logged without a secret.
    let log = log();
    assert!(log.matches("refused a credential").count() >= 6, "{log}");
    assert!(!log.contains(&session["SecretAccessKey"]));
}

/// `YYYYMMDDTHHMMSSZ` minus `secs`.
fn chrono_minus(date: &str, secs: i64) -> String {
    let n = |r: std::ops::Range<usize>| date[r].parse::<u8>().unwrap();
    let day = time::Date::from_calendar_date(
        date[..4].parse().unwrap(),
        time::Month::try_from(n(4..6)).unwrap(),
        n(6..8),
    )
    .unwrap();
    let at = day
        .with_hms(n(9..11), n(11..13), n(13..15))
        .unwrap()
        .assume_utc()
        - time::Duration::seconds(secs);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        at.month() as u8,
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}
