//! The keelson binary that instances run as their node agent (`keelson node
//! ...`): by default this very executable, else `--node-binary PATH`. It is
//! stored content-addressed (`NAME/agent/keelson-<sha256>`) and the user-data
//! names its digest, so an instance runs exactly the bytes the plan showed.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::model::instances::machine_arch;
use crate::spec::InstanceGroup;

#[derive(Debug, thiserror::Error)]
pub enum NodeBinaryError {
    #[error("node binary {path}: {message}; pass a Linux keelson with --node-binary PATH")]
    Unreadable { path: String, message: String },
    #[error(
        "node binary {path} is not a Linux executable (this keelson runs on {host}); instances need a Linux {arch} keelson: pass one with --node-binary PATH"
    )]
    NotLinux {
        path: String,
        host: &'static str,
        arch: &'static str,
    },
    #[error(
        "instance group {group}: machine type {machine_type} is {wanted}, but the node binary {path} is {have}; pass a {wanted} keelson with --node-binary PATH, or choose an {have} machine type (a cluster runs one architecture)"
    )]
    WrongArch {
        group: String,
        machine_type: String,
        wanted: &'static str,
        have: &'static str,
        path: String,
    },
}

/// The binary to ship: where it is, its digest and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBinary {
    pub path: PathBuf,
    pub sha256: String,
    pub len: u64,
}

impl NodeBinary {
    /// Its key in the state store.
    pub fn key(&self, cluster: &str) -> String {
        format!("{cluster}/agent/keelson-{}", self.sha256)
    }
}

/// The architecture an ELF executable is for, from its header (`e_machine`).
fn elf_arch(head: &[u8]) -> Option<&'static str> {
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return None;
    }
    match u16::from_le_bytes([head[18], head[19]]) {
        0x3e => Some("x86_64"),
        0xb7 => Some("arm64"),
        _ => Some("an unsupported architecture"),
    }
}

fn unreadable(path: &Path, e: impl ToString) -> NodeBinaryError {
    NodeBinaryError::Unreadable {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Finds the binary (`flag`, else this executable), checks that it runs on every
/// group's machine type, and hashes it (remembered by path, size and time, so a
/// re-plan does not read it again).
pub fn locate(
    flag: Option<&Path>,
    groups: &[InstanceGroup],
) -> Result<NodeBinary, NodeBinaryError> {
    let path = match flag {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe().map_err(|e| unreadable(Path::new("keelson"), e))?,
    };
    let meta = std::fs::metadata(&path).map_err(|e| unreadable(&path, e))?;
    let mut head = [0u8; 20];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(&path).map_err(|e| unreadable(&path, e))?;
        let _ = f.read(&mut head).map_err(|e| unreadable(&path, e))?;
    }
    let Some(have) = elf_arch(&head) else {
        return Err(NodeBinaryError::NotLinux {
            path: path.display().to_string(),
            host: std::env::consts::OS,
            arch: groups
                .iter()
                .find_map(|g| machine_arch(&g.spec.machine_type))
                .unwrap_or("x86_64"),
        });
    };
    for g in groups
        .iter()
        .filter(|g| g.spec.role != crate::spec::Role::Bastion)
    {
        let wanted = machine_arch(&g.spec.machine_type).unwrap_or("x86_64");
        if wanted != have {
            return Err(NodeBinaryError::WrongArch {
                group: g.name().to_string(),
                machine_type: g.spec.machine_type.clone(),
                wanted,
                have,
                path: path.display().to_string(),
            });
        }
    }
    let sha256 = digest(&path, &meta)?;
    Ok(NodeBinary {
        path,
        sha256,
        len: meta.len(),
    })
}

/// The SHA-256 of the file, from a small cache keyed by path, size, modification
/// time and inode when it has it (hashing a 300 MB debug build costs more than a
/// whole no-op re-plan).
fn digest(path: &Path, meta: &std::fs::Metadata) -> Result<String, NodeBinaryError> {
    use std::os::unix::fs::MetadataExt;
    let id = format!(
        "{}\0{}\0{}\0{}\0{}",
        path.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    );
    let cached = crate::state::cache::cache_root().map(|r| {
        r.join("node-binaries")
            .join(crate::plan::hex(&Sha256::digest(id)))
    });
    if let Some(c) = &cached
        && let Ok(s) = std::fs::read_to_string(c)
        && s.len() == 64
    {
        return Ok(s);
    }
    let mut f = std::fs::File::open(path).map_err(|e| unreadable(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| unreadable(path, e))?;
    let sha = crate::plan::hex(&h.finalize());
    if let Some(c) = &cached
        && let Some(dir) = c.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let _ = std::fs::write(c, &sha);
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_headers() {
        let mut x86 = vec![0u8; 20];
        x86[..4].copy_from_slice(b"\x7fELF");
        x86[18] = 0x3e;
        assert_eq!(elf_arch(&x86), Some("x86_64"));
        x86[18] = 0xb7;
        assert_eq!(elf_arch(&x86), Some("arm64"));
        assert_eq!(elf_arch(b"\xcf\xfa\xed\xfe (a Mach-O)..."), None);
    }

    #[test]
    fn this_executable_is_found_and_hashed_once() {
        let b = locate(None, &[]).unwrap();
        assert_eq!(b.sha256.len(), 64);
        assert_eq!(locate(Some(&b.path), &[]).unwrap(), b);
        assert!(b.key("c").starts_with("c/agent/keelson-"));
        let missing = locate(Some(Path::new("/nonexistent/keelson")), &[]);
        assert!(matches!(missing, Err(NodeBinaryError::Unreadable { .. })));
    }
}
