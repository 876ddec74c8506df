//! The cluster's PKI: the three CAs kubeadm expects (cluster, front proxy, etcd), the
//! service-account key pair, and the key that encrypts Secrets in etcd. There is
//! no join token: nodes prove who they are with AWS (`node::attest`). Generated once, when the
//! cluster is created, and stored in the state store (see [`crate::state::layout`]);
//! instances fetch it at boot with their IAM role. None of it ever appears in a
//! plan, a launch template or a log line: [`Secret`] has no `Debug` or `Display`.
//!
//! Keys are ECDSA P-256 (ring generates no RSA keys); kubeadm and the API server
//! accept them for CAs and for service-account signing.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// How long the CAs live: kops' ten years. Rotation is out of scope.
const CA_DAYS: i64 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating {what}: {message}")]
    Generate { what: String, message: String },
    #[error(
        "the stored {what} could not be read ({message}); the state store's pki/ objects are damaged: restore them from the bucket's object versions"
    )]
    Stored { what: String, message: String },
}

/// Private material: kept out of every printed form by having no `Debug`/`Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    /// The text, for writing to the state store or a 0600 file only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A CA: its certificate (public) and key (secret), both PEM.
#[derive(Clone)]
pub struct CertAuthority {
    pub cert_pem: String,
    pub key: Secret,
}

/// Everything `create cluster` generates.
#[derive(Clone)]
pub struct ClusterPki {
    pub ca: CertAuthority,
    pub front_proxy_ca: CertAuthority,
    pub etcd_ca: CertAuthority,
    pub service_account_public_pem: String,
    pub service_account_key: Secret,
    /// The API server's `EncryptionConfiguration` ([`encryption_config`]).
    pub encryption_config: Secret,
}

/// The CAs by the file names kubeadm uses under /etc/kubernetes/pki, which the
/// state-store layout mirrors so that the bootstrap copies them as they are.
pub const CAS: [(&str, &str); 3] = [
    ("ca", "kubernetes-ca"),
    ("front-proxy-ca", "front-proxy-ca"),
    ("etcd-ca", "etcd-ca"),
];

fn fail(what: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError::Generate {
        what: what.to_string(),
        message: e.to_string(),
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source failed");
    b
}

fn serial() -> SerialNumber {
    let mut b = random_bytes::<16>();
    b[0] &= 0x7f; // a positive integer
    SerialNumber::from_slice(&b)
}

fn new_ca(common_name: &str, now: time::OffsetDateTime) -> Result<CertAuthority, PkiError> {
    let key = KeyPair::generate().map_err(fail(common_name))?;
    let mut p = ca_params(common_name);
    p.serial_number = Some(serial());
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(CA_DAYS);
    let cert = p.self_signed(&key).map_err(fail(common_name))?;
    Ok(CertAuthority {
        cert_pem: cert.pem(),
        key: Secret(key.serialize_pem()),
    })
}

/// The API server's `EncryptionConfiguration` (apiserver.config.k8s.io/v1):
/// Secrets written with a fresh 32-byte secretbox key (XSalsa20-Poly1305, the
/// provider Kubernetes' "Encrypting Confidential Data at Rest" recommends among
/// the local ones), and `identity` after it so that what was written before
/// encryption was on still reads. kops' `encryptionConfig` does the same.
pub fn encryption_config() -> Secret {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>());
    Secret(format!(
        "apiVersion: apiserver.config.k8s.io/v1\n\
         kind: EncryptionConfiguration\n\
         resources:\n\
         \x20 - resources: [secrets]\n\
         \x20   providers:\n\
         \x20     - secretbox:\n\
         \x20         keys:\n\
         \x20           - name: key1\n\
         \x20             secret: {key}\n\
         \x20     - identity: {{}}\n"
    ))
}

impl ClusterPki {
    pub fn generate() -> Result<ClusterPki, PkiError> {
        let now = time::OffsetDateTime::now_utc();
        let sa = KeyPair::generate().map_err(fail("service-account key"))?;
        Ok(ClusterPki {
            ca: new_ca("kubernetes-ca", now)?,
            front_proxy_ca: new_ca("front-proxy-ca", now)?,
            etcd_ca: new_ca("etcd-ca", now)?,
            service_account_public_pem: sa.public_key_pem(),
            service_account_key: Secret(sa.serialize_pem()),
            encryption_config: encryption_config(),
        })
    }
}

/// kubeadm's `--discovery-token-ca-cert-hash`: SHA-256 of the CA's public key info.
pub fn ca_cert_hash(ca_key: &Secret) -> Result<String, PkiError> {
    let key = KeyPair::from_pem(ca_key.expose()).map_err(|e| PkiError::Stored {
        what: "cluster CA key".into(),
        message: e.to_string(),
    })?;
    use rcgen::PublicKeyData;
    Ok(format!(
        "sha256:{}",
        crate::plan::hex(&Sha256::digest(key.subject_public_key_info()))
    ))
}

/// An admin client certificate (group `system:masters`, kops' `--admin`) signed by
/// the cluster CA, valid for `lifetime` from now. Returns (certificate, key) PEM.
pub fn admin_credential(
    ca_key: &Secret,
    lifetime: std::time::Duration,
) -> Result<(String, Secret), PkiError> {
    client_credential(
        ca_key,
        "kubernetes-ca",
        "keelson-admin",
        Some("system:masters"),
        lifetime,
    )
}

/// A client certificate for `common_name` (in `organization`, if any) signed by
/// the CA named `ca_name` in [`CAS`], valid for `lifetime` from now: the node
/// agent's own to etcd, which kubeadm runs with `--client-cert-auth`.
pub fn client_credential(
    ca_key: &Secret,
    ca_name: &str,
    common_name: &str,
    organization: Option<&str>,
    lifetime: std::time::Duration,
) -> Result<(String, Secret), PkiError> {
    let key = KeyPair::generate().map_err(fail(common_name))?;
    let cert = certify(
        ca_key,
        ca_name,
        &key,
        leaf(common_name, organization, lifetime)?,
    )?;
    Ok((cert, Secret(key.serialize_pem())))
}

/// A node's public key as it sends it: an uncompressed P-256 point (what
/// [`KeyPair::public_key_raw`] gives for keelson's keys).
pub struct P256PublicKey(pub Vec<u8>);

impl rcgen::PublicKeyData for P256PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// A client certificate for a key the CA never sees the private half of: what a
/// master grants a node that proved who it is. Returns the certificate PEM.
pub fn certify_client_key(
    ca_key: &Secret,
    ca_name: &str,
    common_name: &str,
    organization: Option<&str>,
    public_key: &P256PublicKey,
    lifetime: std::time::Duration,
) -> Result<String, PkiError> {
    certify(
        ca_key,
        ca_name,
        public_key,
        leaf(common_name, organization, lifetime)?,
    )
}

/// A server certificate for `ip` signed by the CA `ca_name`: the masters'
/// credential endpoint, which nodes reach by address and check against the CA.
pub fn server_credential(
    ca_key: &Secret,
    ca_name: &str,
    common_name: &str,
    ip: std::net::IpAddr,
    lifetime: std::time::Duration,
) -> Result<(String, Secret), PkiError> {
    let key = KeyPair::generate().map_err(fail(common_name))?;
    let mut p = leaf(common_name, None, lifetime)?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.subject_alt_names = vec![rcgen::SanType::IpAddress(ip)];
    let cert = certify(ca_key, ca_name, &key, p)?;
    Ok((cert, Secret(key.serialize_pem())))
}

fn leaf(
    common_name: &str,
    organization: Option<&str>,
    lifetime: std::time::Duration,
) -> Result<CertificateParams, PkiError> {
    let now = time::OffsetDateTime::now_utc();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    p.distinguished_name = dn;
    p.serial_number = Some(serial());
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now
        + time::Duration::try_from(lifetime).map_err(|e| PkiError::Generate {
            what: format!("{common_name} certificate"),
            message: e.to_string(),
        })?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn certify(
    ca_key: &Secret,
    ca_name: &str,
    public_key: &impl rcgen::PublicKeyData,
    p: CertificateParams,
) -> Result<String, PkiError> {
    let ca_key = KeyPair::from_pem(ca_key.expose()).map_err(|e| PkiError::Stored {
        what: format!("{ca_name} key"),
        message: e.to_string(),
    })?;
    // The issuer is the CA's name and key: both are ours, so its parameters are
    // rebuilt rather than parsed back from the certificate.
    let issuer = Issuer::new(ca_params(ca_name), ca_key);
    let cert = p.signed_by(public_key, &issuer).map_err(fail(ca_name))?;
    Ok(cert.pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_distinct_material_in_the_expected_shapes() {
        let a = ClusterPki::generate().unwrap();
        let b = ClusterPki::generate().unwrap();
        assert!(a.ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(a.ca.key.expose().contains("PRIVATE KEY"));
        assert!(a.service_account_public_pem.contains("PUBLIC KEY"));
        assert_ne!(a.ca.key.expose(), b.ca.key.expose());
        assert_ne!(a.ca.cert_pem, a.etcd_ca.cert_pem);
        let e = a.encryption_config.expose();
        let v: serde_yaml::Value = serde_yaml::from_str(e).unwrap();
        assert_eq!(v["kind"], "EncryptionConfiguration");
        let providers = &v["resources"][0]["providers"];
        let key = providers[0]["secretbox"]["keys"][0]["secret"]
            .as_str()
            .unwrap();
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap();
        assert_eq!(raw.len(), 32, "secretbox takes a 32-byte key");
        assert!(
            providers[1]["identity"].is_mapping(),
            "old plain Secrets still read"
        );
        assert_ne!(e, b.encryption_config.expose());
    }

    #[test]
    fn ca_hash_is_stable_and_admin_certs_sign() {
        let p = ClusterPki::generate().unwrap();
        let h = ca_cert_hash(&p.ca.key).unwrap();
        assert_eq!(h, ca_cert_hash(&p.ca.key).unwrap());
        assert_eq!(h.len(), "sha256:".len() + 64);
        let (cert, key) =
            admin_credential(&p.ca.key, std::time::Duration::from_secs(3600)).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.expose().contains("PRIVATE KEY"));
        assert!(ca_cert_hash(&Secret("not a key".into())).is_err());
    }
}
