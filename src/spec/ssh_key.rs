//! The admin SSH public key: parsed and checked before anything is written, and
//! named by a fingerprint in the state store and in the EC2 key pair name.

use base64::Engine;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPublicKey {
    algorithm: String,
    blob: Vec<u8>,
    comment: String,
}

/// Key types EC2 ImportKeyPair accepts.
const ALGORITHMS: &[&str] = &["ssh-rsa", "ssh-ed25519"];

impl SshPublicKey {
    /// Parses one OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
    pub fn parse(text: &str) -> Result<SshPublicKey, String> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        let mut parts = line.split_whitespace();
        let (Some(algorithm), Some(data)) = (parts.next(), parts.next()) else {
            return Err("is not an OpenSSH public key line (TYPE BASE64 [COMMENT])".into());
        };
        if algorithm.contains("PRIVATE") || line.starts_with("-----BEGIN") {
            return Err("looks like a private key; pass the .pub file".into());
        }
        if !ALGORITHMS.contains(&algorithm) {
            return Err(format!(
                "is a {algorithm} key, which EC2 cannot import; use an ssh-ed25519 or ssh-rsa key"
            ));
        }
        let blob = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| "has invalid base64 key data".to_string())?;
        // The blob starts with the algorithm name as an SSH string.
        let name_len = blob
            .get(..4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()) as usize);
        if name_len.and_then(|n| blob.get(4..4 + n)) != Some(algorithm.as_bytes()) {
            return Err(format!("has key data that is not a {algorithm} key"));
        }
        Ok(SshPublicKey {
            algorithm: algorithm.into(),
            blob,
            comment: parts.collect::<Vec<_>>().join(" "),
        })
    }

    /// Hex SHA-256 of the key data, shortened: stable, and safe in object keys and
    /// EC2 key pair names.
    pub fn fingerprint(&self) -> String {
        Sha256::digest(&self.blob)[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn line(&self) -> String {
        let data = base64::engine::general_purpose::STANDARD.encode(&self.blob);
        if self.comment.is_empty() {
            format!("{} {data}", self.algorithm)
        } else {
            format!("{} {data} {}", self.algorithm, self.comment)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJlU/LYUVmNa5ryLb+i/gjjrF0cnQumo/6n217TlW2IJ demo@keelson";

    #[test]
    fn parses_and_fingerprints() {
        let k = SshPublicKey::parse(ED25519).unwrap();
        assert_eq!(k.line(), ED25519);
        assert_eq!(k.fingerprint().len(), 32);
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(SshPublicKey::parse("").is_err());
        assert!(
            SshPublicKey::parse("-----BEGIN OPENSSH PRIVATE KEY-----\nabc")
                .unwrap_err()
                .contains("private key")
        );
        assert!(
            SshPublicKey::parse("ssh-dss AAAAB3NzaC1kc3MAAACBAP")
                .unwrap_err()
                .contains("cannot import")
        );
        assert!(
            SshPublicKey::parse("ssh-ed25519 !!!")
                .unwrap_err()
                .contains("base64")
        );
        // An RSA blob labelled ed25519.
        assert!(
            SshPublicKey::parse("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ==")
                .unwrap_err()
                .contains("not a ssh-ed25519")
        );
    }
}
