//! A local, content-addressed copy of the few state objects every plan reads (the
//! cluster spec, the instance groups, the admin SSH *public* key, the addon
//! channel), so that a re-plan whose listing shows them unchanged reads none of
//! them again: 11 requests of a no-op re-plan become 0.
//!
//! Why this cannot serve stale content: S3 reports, for an object written in one
//! PUT with SSE-S3 (every object keelson writes), the MD5 of its content as its
//! ETag, and the listing every plan makes anyway carries each object's ETag. A
//! copy is stored under the MD5 of its own bytes and used only when that equals
//! the listed ETag, which the bytes are checked against again on every use. An
//! object written otherwise (multipart, SSE-KMS) has an ETag that is no MD5, is
//! never found here, and is read from the store as before. Nothing secret is
//! cached: [`crate::state::StateStore`] uses this only for the objects above.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use md5::{Digest, Md5};

/// How many copies to keep; the oldest (by last use) go first. A cluster has
/// about a dozen; a few hundred cover many clusters and edits.
const KEEP: usize = 512;

pub struct ObjectCache {
    dir: PathBuf,
}

/// The MD5 of `bytes` in lowercase hex, the form of a plain S3 ETag.
pub fn content_tag(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An ETag as S3 lists it (`"<32 hex digits>"`), unquoted; `None` for one that is
/// no MD5 (multipart uploads end in `-N`, SSE-KMS tags are opaque).
fn md5_of_etag(etag: &str) -> Option<String> {
    let t = etag.trim_matches('"').to_ascii_lowercase();
    (t.len() == 32 && t.bytes().all(|c| c.is_ascii_hexdigit())).then_some(t)
}

/// keelson's cache directory: `KEELSON_CACHE_DIR`, else `$XDG_CACHE_HOME/keelson`,
/// else `$HOME/.cache/keelson`, as the scripts use.
pub fn cache_root() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    var("KEELSON_CACHE_DIR").map(PathBuf::from).or_else(|| {
        var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("keelson"))
    })
}

impl ObjectCache {
    /// `state-objects` under keelson's cache directory (`KEELSON_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/keelson`, else `$HOME/.cache/keelson`, as the scripts use);
    /// `KEELSON_STATE_CACHE=off` turns it off.
    pub fn from_env() -> Option<ObjectCache> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if var("KEELSON_STATE_CACHE").is_some_and(|v| v == "off") {
            return None;
        }
        let root = cache_root()?;
        Some(ObjectCache {
            dir: root.join("state-objects"),
        })
    }

    /// The object whose listed ETag is `etag`, if a copy is here and its bytes
    /// still hash to it.
    pub fn get(&self, etag: &str) -> Option<Vec<u8>> {
        let tag = md5_of_etag(etag)?;
        let path = self.dir.join(&tag);
        let bytes = std::fs::read(&path).ok()?;
        if content_tag(&bytes) != tag {
            // Damaged on disk: forget it, the store has the truth.
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // Last use, for pruning.
        if let Ok(f) = std::fs::File::options().append(true).open(&path) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        Some(bytes)
    }

    /// Keeps a copy of `bytes`. Failures are ignored: the cache only saves reads.
    pub fn put(&self, bytes: &[u8]) {
        let tag = content_tag(bytes);
        let path = self.dir.join(&tag);
        if path.exists() {
            return;
        }
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            // Unique per process and call: concurrent keelsons write the same name.
            static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = self
                .dir
                .join(format!(".{tag}.{}.{seq}.tmp", std::process::id()));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(bytes)?;
            std::fs::rename(&tmp, &path).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
        };
        if write().is_ok() {
            self.prune();
        }
    }

    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let modified = e.metadata().ok()?.modified().ok()?;
                Some((modified, e.path()))
            })
            .collect();
        if files.len() <= KEEP {
            return;
        }
        files.sort();
        for (_, path) in &files[..files.len() - KEEP] {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(name: &str) -> ObjectCache {
        let dir =
            std::env::temp_dir().join(format!("keelson-cache-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ObjectCache { dir }
    }

    #[test]
    fn answers_only_the_listed_content() {
        let c = cache("content");
        let body = b"apiVersion: kops.k8s.io/v1alpha2\n";
        let tag = content_tag(body);
        assert_eq!(c.get(&format!("\"{tag}\"")), None);
        c.put(body);
        assert_eq!(c.get(&format!("\"{tag}\"")).as_deref(), Some(&body[..]));
        assert_eq!(c.get(&tag.to_uppercase()).as_deref(), Some(&body[..]));
        // Another object's tag, a multipart tag, an opaque KMS tag: not here.
        assert_eq!(c.get(&content_tag(b"other")), None);
        assert_eq!(c.get(&format!("\"{tag}-2\"")), None);
        assert_eq!(c.get("\"not-an-md5\""), None);
        let _ = std::fs::remove_dir_all(&c.dir);
    }

    #[test]
    fn a_damaged_copy_is_refused_and_removed() {
        let c = cache("damaged");
        let body = b"spec: {}\n";
        c.put(body);
        let path = c.dir.join(content_tag(body));
        std::fs::write(&path, b"spec: {tampered: true}\n").unwrap();
        assert_eq!(c.get(&content_tag(body)), None);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&c.dir);
    }

    #[test]
    fn keeps_at_most_the_newest_copies() {
        let c = cache("prune");
        for i in 0..KEEP + 3 {
            c.put(format!("object {i}").as_bytes());
        }
        let count = std::fs::read_dir(&c.dir).unwrap().count();
        assert!(count <= KEEP, "{count} copies kept");
        let _ = std::fs::remove_dir_all(&c.dir);
    }
}
