//! How a node proves who it is to the masters, with no join secret anywhere: its
//! instance role signs an `sts:GetCallerIdentity` request (SigV4, by the node,
//! never sent by it), and the agent on a master sends that request to STS
//! itself. STS checks the signature and names the caller; for an instance role
//! that is `arn:aws:sts::ACCOUNT:assumed-role/ROLE/INSTANCE-ID` (EC2 names the
//! role session by the instance id: AWS IAM user guide, "Use an IAM role to
//! grant permissions to applications running on Amazon EC2 instances"). The
//! master then checks in EC2 that the instance is running, tagged for this
//! cluster, a node, and that the name it asks for is its own private DNS name,
//! and signs a client certificate for `system:node:NAME` (group `system:nodes`)
//! with the node's own public key. kops' kops-controller works the same way
//! (upup/pkg/fi/cloudup/awsup/aws_verifier.go), on the same port.
//!
//! What the signature covers binds the request: the cluster, the node name and
//! the SHA-256 of the public key travel as signed headers, so a request seen by
//! someone else cannot be turned into a certificate for another name or key.
//! One older than [`MAX_AGE`] is refused, and each signature is taken once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The masters' agents take requests here: kops-controller's port
/// (kops pkg/wellknownports: KopsControllerPort), which the nodes' security
/// group already reaches (model/security.rs, 2382-4000).
pub const PORT: u16 = 3988;
pub const PATH: &str = "/node-credential";
/// A signed request older (or further in the future) than this is refused.
pub const MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// How long the granted certificate lives: kubeadm's join uses it only for the
/// kubelet's TLS bootstrap, after which the kubelet has its own, rotated one.
pub const CREDENTIAL_LIFETIME: Duration = Duration::from_secs(3600);
/// The one request a node signs.
pub const STS_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
pub const H_CLUSTER: &str = "x-keelson-cluster";
pub const H_NODE: &str = "x-keelson-node-name";
pub const H_KEY: &str = "x-keelson-public-key-sha256";
/// The headers the signature must cover, beyond SigV4's own date.
const BOUND: [&str; 4] = ["host", H_CLUSTER, H_NODE, H_KEY];

/// What a node sends: its name, its public key (an uncompressed P-256 point,
/// base64) and the headers of the STS request it signed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub node_name: String,
    pub public_key: String,
    pub headers: BTreeMap<String, String>,
}

/// What a master answers: a certificate for the node's key (PEM).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Granted {
    pub certificate: String,
}

/// Why a request was refused. Each says what to check; none carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error(
        "the request was signed at {signed_at} and it is now {now} (UNIX seconds): more than {}s apart; a request is good for 5 minutes, so sign a new one (and check the instance's clock: chrony)",
        MAX_AGE.as_secs()
    )]
    Stale { signed_at: u64, now: u64 },
    #[error("the signature does not cover the {0} header; sign it with the request")]
    Unsigned(&'static str),
    #[error("the signed {what} is {signed:?}, the request says {asked:?}")]
    Mismatch {
        what: &'static str,
        signed: String,
        asked: String,
    },
    #[error("this signed request was used before; a node signs a new one for each attempt")]
    Replayed,
    #[error("STS did not accept the signature: {0}")]
    Sts(String),
    #[error(
        "the caller {arn} is not an instance role's session (assumed-role/ROLE/i-...); only instances join"
    )]
    NotAnInstance { arn: String },
    #[error("the caller {arn} is of account {account}, this cluster's is {ours}")]
    OtherAccount {
        arn: String,
        account: String,
        ours: String,
    },
    #[error(
        "the caller's role is {role}, not one of this cluster's node roles ({expected}); the instance's profile is not this cluster's"
    )]
    NotANodeRole { role: String, expected: String },
    #[error("instance {instance}: {why}")]
    Instance { instance: String, why: String },
    #[error(
        "instance {instance} asks for the name {asked:?}, but its private DNS name is {own:?}; a node gets a certificate for its own name only"
    )]
    OtherName {
        instance: String,
        asked: String,
        own: String,
    },
    #[error("the master could not check this request now ({0}); try again")]
    Unavailable(String),
}

impl Refusal {
    /// The HTTP status a master answers with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) => 400,
            Refusal::Unavailable(_) => 503,
            _ => 403,
        }
    }
}

/// Where STS is, as the SDK would resolve it: the standard endpoint overrides
/// (`AWS_ENDPOINT_URL_STS`, then `AWS_ENDPOINT_URL`), else the regional endpoint.
/// Node and master resolve it the same way, so the host the node signs is the one
/// the master sends to; a master never sends to an address a node names.
pub fn sts_endpoint(region: &str) -> String {
    for var in ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return v.trim().trim_end_matches('/').to_string();
        }
    }
    format!("https://sts.{region}.amazonaws.com")
}

fn key_digest(public_key: &[u8]) -> String {
    crate::plan::hex(&Sha256::digest(public_key))
}

/// SigV4's `X-Amz-Date`, `YYYYMMDDTHHMMSSZ`, as UNIX seconds.
fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let (y, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + h * 3600 + mi * 60 + se).ok()
}

/// The node's side: the headers of a signed `GetCallerIdentity` that bind
/// `cluster`, `node_name` and `public_key`, signed at `at`.
pub fn sign(
    creds: &aws_credential_types::Credentials,
    region: &str,
    endpoint: &str,
    cluster: &str,
    node_name: &str,
    public_key: &[u8],
    at: SystemTime,
) -> Result<Request, String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let digest = key_digest(public_key);
    let bound = [
        ("content-type", "application/x-www-form-urlencoded"),
        (H_CLUSTER, cluster),
        (H_NODE, node_name),
        (H_KEY, digest.as_str()),
    ];
    let identity = creds.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let url = format!("{endpoint}/");
    let signable = SignableRequest::new(
        "POST",
        url.as_str(),
        bound.iter().copied(),
        SignableBody::Bytes(STS_BODY.as_bytes()),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut headers: BTreeMap<String, String> = bound
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in instructions.headers() {
        headers.insert(k.to_ascii_lowercase(), v.to_string());
    }
    use base64::Engine;
    Ok(Request {
        node_name: node_name.to_string(),
        public_key: base64::engine::general_purpose::STANDARD.encode(public_key),
        headers,
    })
}

/// What [`check_request`] found: the key to certify and the signature (the
/// request's identity, for the replay check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub public_key: Vec<u8>,
    pub signature: String,
    pub signed_at: u64,
}

/// The checks that need no network: the time, that the signature covers the
/// bound headers, and that they say what the request says. Pure.
pub fn check_request(req: &Request, cluster: &str, now: u64) -> Result<Checked, Refusal> {
    use base64::Engine;
    let header = |name: &str| req.headers.get(name).map(String::as_str);
    let auth = header("authorization")
        .ok_or_else(|| Refusal::Malformed("no authorization header".into()))?;
    let date =
        header("x-amz-date").ok_or_else(|| Refusal::Malformed("no x-amz-date header".into()))?;
    let signed_at = parse_amz_date(date).ok_or_else(|| {
        Refusal::Malformed(format!("x-amz-date {date:?} is not YYYYMMDDTHHMMSSZ"))
    })?;
    if now.abs_diff(signed_at) > MAX_AGE.as_secs() {
        return Err(Refusal::Stale { signed_at, now });
    }
    if !auth.starts_with("AWS4-HMAC-SHA256 ") {
        return Err(Refusal::Malformed("not a SigV4 authorization".into()));
    }
    let field = |name: &str| {
        auth.split([' ', ','])
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
    };
    let scope = field("Credential").unwrap_or_default();
    if scope.split('/').nth(3) != Some("sts") {
        return Err(Refusal::Malformed(format!(
            "the signature is not for STS (scope {:?})",
            scope.split('/').skip(1).collect::<Vec<_>>().join("/")
        )));
    }
    let signed: Vec<&str> = field("SignedHeaders")
        .unwrap_or_default()
        .split(';')
        .collect();
    for h in BOUND.into_iter().chain(["x-amz-date"]) {
        if !signed.contains(&h) {
            return Err(Refusal::Unsigned(match h {
                "host" => "host",
                H_CLUSTER => H_CLUSTER,
                H_NODE => H_NODE,
                H_KEY => H_KEY,
                _ => "x-amz-date",
            }));
        }
    }
    let signature = field("Signature")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Refusal::Malformed("no signature".into()))?
        .to_string();
    let public_key = base64::engine::general_purpose::STANDARD
        .decode(&req.public_key)
        .map_err(|e| Refusal::Malformed(format!("publicKey is not base64: {e}")))?;
    // An uncompressed P-256 point: what rcgen's ECDSA keys are.
    if public_key.len() != 65 || public_key[0] != 4 {
        return Err(Refusal::Malformed(
            "publicKey is not an uncompressed P-256 point".into(),
        ));
    }
    let same = |what: &'static str, name: &str, asked: &str| match header(name) {
        Some(v) if v == asked => Ok(()),
        v => Err(Refusal::Mismatch {
            what,
            signed: v.unwrap_or_default().to_string(),
            asked: asked.to_string(),
        }),
    };
    same("cluster", H_CLUSTER, cluster)?;
    same("node name", H_NODE, &req.node_name)?;
    same("public key digest", H_KEY, &key_digest(&public_key))?;
    Ok(Checked {
        public_key,
        signature,
        signed_at,
    })
}

/// The text of the first `<TAG>` of an AWS query API answer.
pub fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let at = xml.find(&open)? + open.len();
    Some(xml[at..at + xml[at..].find('<')?].trim().to_string())
}

/// Who STS says signed: from `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub arn: String,
    pub account: String,
    pub role: String,
    pub session: String,
}

/// The `<Arn>` of a `GetCallerIdentityResponse` (STS API reference), as a
/// [`Caller`] of an instance role. Pure.
pub fn parse_caller(xml: &str) -> Result<Caller, Refusal> {
    let arn = xml_field(xml, "Arn").ok_or_else(|| Refusal::Sts("no Arn in STS's answer".into()))?;
    let not = || Refusal::NotAnInstance { arn: arn.clone() };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sts" {
        return Err(not());
    }
    let rest: Vec<&str> = parts[5].split('/').collect();
    match rest.as_slice() {
        ["assumed-role", role, session] if session.starts_with("i-") => Ok(Caller {
            arn: arn.clone(),
            account: parts[4].to_string(),
            role: role.to_string(),
            session: session.to_string(),
        }),
        _ => Err(not()),
    }
}

/// What EC2 says of the caller's instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFacts {
    pub state: String,
    pub tags: BTreeMap<String, String>,
    pub private_dns: String,
}

/// What a master expects of a node.
pub struct Expect<'a> {
    pub cluster: &'a str,
    pub account: &'a str,
    pub node_roles: &'a [String],
}

/// The rule, pure: the caller is an instance session of one of this cluster's
/// node roles in this account, its instance runs, is tagged for this cluster as
/// a node, and asks for its own private DNS name.
pub fn admit(
    caller: &Caller,
    instance: Option<&InstanceFacts>,
    expect: &Expect,
    asked: &str,
) -> Result<(), Refusal> {
    if caller.account != expect.account {
        return Err(Refusal::OtherAccount {
            arn: caller.arn.clone(),
            account: caller.account.clone(),
            ours: expect.account.to_string(),
        });
    }
    if !expect.node_roles.contains(&caller.role) {
        return Err(Refusal::NotANodeRole {
            role: caller.role.clone(),
            expected: expect.node_roles.join(", "),
        });
    }
    let refuse = |why: String| Refusal::Instance {
        instance: caller.session.clone(),
        why,
    };
    let i = instance.ok_or_else(|| refuse("EC2 does not know it".into()))?;
    if i.state != "running" {
        return Err(refuse(format!("it is {}, not running", i.state)));
    }
    // keelson tags every instance both ways (model/instances.rs).
    let tagged = i.tags.get("KubernetesCluster").map(String::as_str) == Some(expect.cluster)
        && i.tags
            .get(&format!("kubernetes.io/cluster/{}", expect.cluster))
            .is_some_and(|v| v == "owned");
    if !tagged {
        return Err(refuse(format!(
            "it is not tagged as an instance of cluster {} (KubernetesCluster={:?})",
            expect.cluster,
            i.tags.get("KubernetesCluster").cloned().unwrap_or_default()
        )));
    }
    if !i.tags.contains_key("k8s.io/role/node") {
        return Err(refuse(
            "it is not tagged as a node (k8s.io/role/node); masters make their own credentials"
                .into(),
        ));
    }
    if i.private_dns.is_empty() || i.private_dns != asked {
        return Err(Refusal::OtherName {
            instance: caller.session.clone(),
            asked: asked.to_string(),
            own: i.private_dns.clone(),
        });
    }
    Ok(())
}

/// Signatures taken in the last [`MAX_AGE`] (and a little more): each once.
#[derive(Default)]
pub struct Seen(Mutex<HashMap<String, u64>>);

impl Seen {
    /// Records `signature`; `false` if it was taken before.
    pub fn first_use(&self, signature: &str, now: u64) -> bool {
        let mut seen = self.0.lock().expect("seen signatures");
        seen.retain(|_, at| now.saturating_sub(*at) <= 2 * MAX_AGE.as_secs());
        seen.insert(signature.to_string(), now).is_none()
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            "ASIAEXAMPLE",
            "the-secret-key",
            Some("the-session-token".into()),
            None,
            "test",
        )
    }

    fn key() -> Vec<u8> {
        rcgen::KeyPair::generate()
            .unwrap()
            .public_key_raw()
            .to_vec()
    }

    fn signed(at: u64, name: &str, k: &[u8]) -> Request {
        sign(
            &creds(),
            "us-east-1",
            "https://sts.us-east-1.amazonaws.com",
            "c.k8s.local",
            name,
            k,
            UNIX_EPOCH + Duration::from_secs(at),
        )
        .unwrap()
    }

    const T: u64 = 1_796_000_000;

    #[test]
    fn amz_dates_read_as_unix_seconds() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20261203T120000Z"), Some(1_796_299_200));
        assert_eq!(parse_amz_date("20261203 120000Z"), None);
        assert_eq!(parse_amz_date("20261303T120000Z"), None);
    }

    #[test]
    fn a_fresh_request_binds_name_cluster_and_key() {
        let k = key();
        let r = signed(T, "ip-10-0-1-5.ec2.internal", &k);
        let c = check_request(&r, "c.k8s.local", T + 10).unwrap();
        assert_eq!(c.public_key, k);
        assert_eq!(c.signed_at, T);
        let auth = &r.headers["authorization"];
        for h in ["host", H_CLUSTER, H_NODE, H_KEY, "x-amz-date"] {
            assert!(auth.contains(h), "{h} signed: {auth}");
        }
        // The secret key never travels; the session token must (STS needs it).
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("the-secret-key"));
        assert_eq!(r.headers["x-amz-security-token"], "the-session-token");
    }

    #[test]
    fn old_or_future_requests_are_stale() {
        let r = signed(T, "n", &key());
        assert!(check_request(&r, "c.k8s.local", T + 300).is_ok());
        assert_eq!(
            check_request(&r, "c.k8s.local", T + 301),
            Err(Refusal::Stale {
                signed_at: T,
                now: T + 301
            })
        );
        assert!(matches!(
            check_request(&r, "c.k8s.local", T - 301),
            Err(Refusal::Stale { .. })
        ));
    }

    #[test]
    fn a_request_altered_after_signing_is_refused() {
        let r = signed(T, "n", &key());
        let mut other_name = r.clone();
        other_name.node_name = "m".into();
        assert!(matches!(
            check_request(&other_name, "c.k8s.local", T),
            Err(Refusal::Mismatch {
                what: "node name",
                ..
            })
        ));
        let mut other_key = r.clone();
        other_key.public_key = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(key())
        };
        assert!(matches!(
            check_request(&other_key, "c.k8s.local", T),
            Err(Refusal::Mismatch {
                what: "public key digest",
                ..
            })
        ));
        assert!(matches!(
            check_request(&r, "d.k8s.local", T),
            Err(Refusal::Mismatch {
                what: "cluster",
                ..
            })
        ));
        let mut unsigned = r.clone();
        let auth = unsigned.headers["authorization"].replace(&format!("{H_NODE};"), "");
        unsigned.headers.insert("authorization".into(), auth);
        assert_eq!(
            check_request(&unsigned, "c.k8s.local", T),
            Err(Refusal::Unsigned(H_NODE))
        );
    }

    #[test]
    fn callers_are_instance_sessions() {
        let xml = "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:assumed-role/nodes.c.k8s.local/i-0abc</Arn><UserId>AROA:i-0abc</UserId><Account>123456789012</Account></GetCallerIdentityResult></GetCallerIdentityResponse>";
        let c = parse_caller(xml).unwrap();
        assert_eq!(
            (c.account.as_str(), c.role.as_str(), c.session.as_str()),
            ("123456789012", "nodes.c.k8s.local", "i-0abc")
        );
        let user = xml.replace("assumed-role/nodes.c.k8s.local/i-0abc", "user/alice");
        assert!(matches!(
            parse_caller(&user),
            Err(Refusal::NotAnInstance { .. })
        ));
        let session = xml.replace("i-0abc", "alice");
        assert!(matches!(
            parse_caller(&session),
            Err(Refusal::NotAnInstance { .. })
        ));
    }

    #[test]
    fn the_rule_admits_only_this_clusters_running_nodes_by_their_own_name() {
        let caller = Caller {
            arn: "arn:aws:sts::1:assumed-role/nodes.c/i-1".into(),
            account: "1".into(),
            role: "nodes.c".into(),
            session: "i-1".into(),
        };
        let facts = InstanceFacts {
            state: "running".into(),
            tags: [
                ("KubernetesCluster", "c"),
                ("kubernetes.io/cluster/c", "owned"),
                ("k8s.io/role/node", "1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            private_dns: "ip-1.ec2.internal".into(),
        };
        let roles = vec!["nodes.c".to_string()];
        let expect = |cluster, account, roles| Expect {
            cluster,
            account,
            node_roles: roles,
        };
        let ours = expect("c", "1", &roles);
        let name = "ip-1.ec2.internal";
        assert_eq!(admit(&caller, Some(&facts), &ours, name), Ok(()));
        let refused = |f: Option<&InstanceFacts>, e: &Expect, n: &str| admit(&caller, f, e, n);
        assert!(matches!(
            refused(Some(&facts), &ours, "ip-2.ec2.internal"),
            Err(Refusal::OtherName { .. })
        ));
        assert!(matches!(
            refused(None, &ours, name),
            Err(Refusal::Instance { .. })
        ));
        assert!(matches!(
            refused(Some(&facts), &expect("d", "1", &roles), name),
            Err(Refusal::Instance { .. })
        ));
        assert!(matches!(
            refused(Some(&facts), &expect("c", "2", &roles), name),
            Err(Refusal::OtherAccount { .. })
        ));
        let masters = vec!["masters.c".to_string()];
        assert!(matches!(
            refused(Some(&facts), &expect("c", "1", &masters), name),
            Err(Refusal::NotANodeRole { .. })
        ));
        let mut stopped = facts.clone();
        stopped.state = "stopped".into();
        assert!(matches!(
            refused(Some(&stopped), &ours, name),
            Err(Refusal::Instance { .. })
        ));
        let mut master = facts.clone();
        master.tags.remove("k8s.io/role/node");
        assert!(matches!(
            refused(Some(&master), &ours, name),
            Err(Refusal::Instance { .. })
        ));
    }

    #[test]
    fn a_signature_is_taken_once() {
        let seen = Seen::default();
        assert!(seen.first_use("a", T));
        assert!(!seen.first_use("a", T + 1));
        assert!(seen.first_use("b", T + 1));
    }
}
