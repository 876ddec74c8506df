//! `file://DIR`: a state store in a local directory, for local use and tests.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{Backend, BoxFuture, StateError};

pub struct FileBackend {
    root: PathBuf,
    url: String,
}

impl FileBackend {
    pub fn new(root: PathBuf, url: String) -> Self {
        FileBackend { root, url }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn err(&self, operation: &'static str, key: &str, e: std::io::Error) -> StateError {
        StateError::Backend {
            store: self.url.clone(),
            operation,
            key: key.to_string(),
            message: e.to_string(),
        }
    }

    /// Writes `body` to a temporary file beside `path`, so that the final step
    /// (rename or link) makes the whole object appear at once.
    fn temp_file(&self, path: &Path, body: &[u8]) -> std::io::Result<PathBuf> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_file_name(format!(
            ".{}.{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("object"),
            std::process::id()
        ));
        // Owner-only: the store holds the cluster's private keys (pki/private/).
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        Ok(tmp)
    }
}

impl Backend for FileBackend {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>> {
        Box::pin(async move {
            match std::fs::read(self.path(key)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.err("read", key, e)),
            }
        })
    }

    fn get_versioned<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<super::Versioned>, StateError>> {
        Box::pin(async move {
            Ok(self.get(key).await?.map(|body| {
                let version = content_version(&body);
                (body, version)
            }))
        })
    }

    fn put_if_match<'a>(
        &'a self,
        key: &'a str,
        body: Vec<u8>,
        version: &'a str,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(async move {
            let path = self.path(key);
            let fail = |e| self.err("write", key, e);
            // Compare and swap under an exclusive flock(2) on a lock file beside the
            // object, so racing writers on this machine go one at a time.
            let lock_path = path.with_file_name(format!(
                ".{}.cas",
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("object")
            ));
            let lock = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&lock_path)
                .map_err(fail)?;
            lock.lock().map_err(fail)?;
            let current = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(fail(e)),
            };
            if content_version(&current) != version {
                return Ok(false);
            }
            let tmp = self.temp_file(&path, &body).map_err(fail)?;
            std::fs::rename(&tmp, &path).map_err(fail)?;
            Ok(true)
        })
    }

    fn put<'a>(&'a self, key: &'a str, body: Vec<u8>) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let path = self.path(key);
            let tmp = self
                .temp_file(&path, &body)
                .map_err(|e| self.err("write", key, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| self.err("write", key, e))
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a str,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(async move {
            let path = self.path(key);
            let tmp = self
                .temp_file(&path, &body)
                .map_err(|e| self.err("write", key, e))?;
            // link(2) fails if the target exists: the exclusive, all-at-once create.
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(self.err("write", key, e)),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            match std::fs::remove_file(self.path(key)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.err("delete", key, e)),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StateError>> {
        Box::pin(async move {
            let mut keys = Vec::new();
            walk(&self.root, &self.root, &mut keys).map_err(|e| self.err("list", prefix, e))?;
            keys.retain(|k| k.starts_with(prefix));
            keys.sort();
            Ok(keys)
        })
    }
}

/// A local object's version: the digest of its content (S3's ETag plays this part).
fn content_version(body: &[u8]) -> String {
    use sha2::Digest;
    crate::plan::hex(&sha2::Sha256::digest(body))
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(root, &path, out)?;
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            let rel = path.strip_prefix(root).expect("walk stays under root");
            out.push(
                rel.to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/"),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (FileBackend, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "keelson-file-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        (FileBackend::new(dir.clone(), "file://test".into()), dir)
    }

    #[tokio::test]
    async fn round_trip_and_exclusive_create() {
        let (b, dir) = store();
        assert_eq!(b.get("c/config").await.unwrap(), None);
        b.put("c/config", b"one".to_vec()).await.unwrap();
        b.put("c/instancegroup/x", b"x".to_vec()).await.unwrap();
        assert_eq!(b.get("c/config").await.unwrap().unwrap(), b"one");
        assert!(b.put_if_absent("c/lock", b"me".to_vec()).await.unwrap());
        assert!(!b.put_if_absent("c/lock", b"you".to_vec()).await.unwrap());
        assert_eq!(b.get("c/lock").await.unwrap().unwrap(), b"me");
        assert_eq!(
            b.list("c/").await.unwrap(),
            ["c/config", "c/instancegroup/x", "c/lock"]
        );
        let (body, v1) = b.get_versioned("c/lock").await.unwrap().unwrap();
        assert_eq!(body, b"me");
        assert!(
            b.put_if_match("c/lock", b"me2".to_vec(), &v1)
                .await
                .unwrap()
        );
        // The version moved on: the second writer with the old one loses.
        assert!(
            !b.put_if_match("c/lock", b"you".to_vec(), &v1)
                .await
                .unwrap()
        );
        assert!(!b.put_if_match("c/none", b"x".to_vec(), &v1).await.unwrap());
        assert_eq!(b.get("c/lock").await.unwrap().unwrap(), b"me2");
        b.delete("c/lock").await.unwrap();
        b.delete("c/lock").await.unwrap();
        assert_eq!(
            b.list("c/instancegroup/").await.unwrap(),
            ["c/instancegroup/x"]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
