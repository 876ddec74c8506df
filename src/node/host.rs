//! The one seam for what the agent does to its host: programs (`etcdctl`,
//! `apt-get`, `modprobe`, `sysctl`, `systemctl`, `kubeadm`, `kubectl`, ...) and
//! files. [`System`] is the real host; [`Recorder`] records what would be done,
//! for the tests of flows that cannot run here (a bootstrap needs root, apt and a
//! kernel of its own).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::NodeError;

pub trait Host: Send + Sync {
    /// Runs `program` with `args` and extra environment; an error unless it exits 0.
    fn run(&self, program: &str, args: &[String], env: &[(&str, &str)]) -> Result<(), NodeError>;
    /// Runs `program` and returns what it wrote to stdout; an error unless it exits 0.
    fn output(&self, program: &str, args: &[String]) -> Result<String, NodeError>;
    /// Writes `contents` to `path` with permissions `mode`, atomically (a
    /// reader sees the old file or the new one), never readable more widely
    /// than `mode` on the way. The parent directory must exist.
    fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), NodeError>;
    /// The file's contents, or `None` if it does not exist.
    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, NodeError>;
    /// Removes a file; a missing one is not an error.
    fn remove_file(&self, path: &Path) -> Result<(), NodeError>;
    /// Creates a directory and its parents (`install -d -m MODE`); the mode is
    /// set on the last one even if it existed.
    fn create_dir(&self, path: &Path, mode: u32) -> Result<(), NodeError>;
}

fn io_err(path: &Path, e: std::io::Error) -> NodeError {
    NodeError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// This machine.
pub struct System;

impl System {
    fn command(
        program: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<std::process::Output, NodeError> {
        let out = std::process::Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| NodeError::Command {
                command: program.to_string(),
                message: e.to_string(),
            })?;
        if out.status.success() {
            return Ok(out);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(NodeError::Command {
            command: format!("{program} {}", args.join(" ")),
            message: format!(
                "{}: {}",
                out.status,
                stderr.trim().lines().last().unwrap_or("")
            ),
        })
    }
}

impl Host for System {
    fn run(&self, program: &str, args: &[String], env: &[(&str, &str)]) -> Result<(), NodeError> {
        System::command(program, args, env).map(|_| ())
    }

    fn output(&self, program: &str, args: &[String]) -> Result<String, NodeError> {
        let out = System::command(program, args, &[])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), NodeError> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let name = path.file_name().ok_or_else(|| NodeError::Io {
            path: path.display().to_string(),
            message: "not a file name".into(),
        })?;
        let tmp = path.with_file_name(format!(
            ".{}.keelson-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        let write = || -> std::io::Result<()> {
            // Created with the final mode (less the umask), so that a key is never
            // readable by others, even for a moment; then set exactly.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            f.write_all(contents)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(path, e)
        })
    }

    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, NodeError> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path, e)),
        }
    }

    fn remove_file(&self, path: &Path) -> Result<(), NodeError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(path, e)),
        }
    }

    fn create_dir(&self, path: &Path, mode: u32) -> Result<(), NodeError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path).map_err(|e| io_err(path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_err(path, e))
    }
}

/// A host that does nothing and records what it was asked, for tests: programs
/// run (answering from canned outputs, failing where told to), and files kept in
/// memory. Every recorded line and file is redacted: registered secrets and PEM
/// private keys become `<redacted>`, so a transcript can be a golden file.
type OnRun = dyn Fn(&str) + Send + Sync;

#[derive(Default)]
pub struct Recorder {
    state: Mutex<Recorded>,
    /// (program and leading arguments, stdout) for [`Host::output`].
    outputs: Mutex<Vec<(String, String)>>,
    /// (program and leading arguments, times to fail) for [`Host::run`].
    failures: Mutex<Vec<(String, usize)>>,
    /// Called with each command line before it is recorded (e.g. to make
    /// `kubeadm init` take a while).
    on_run: Option<Box<OnRun>>,
}

#[derive(Default)]
struct Recorded {
    lines: Vec<String>,
    files: BTreeMap<PathBuf, (Vec<u8>, u32)>,
    written: Vec<(PathBuf, Vec<u8>, u32)>,
    secrets: Vec<String>,
}

pub const REDACTED: &str = "<redacted>";

fn redact_pem_keys(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN ";
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        if label.contains("PRIVATE KEY") {
            let end = format!("-----END {label}-----");
            out.push_str(&rest[..start]);
            out.push_str(REDACTED);
            rest = match rest[start..].find(&end) {
                Some(i) => &rest[start + i + end.len()..],
                None => "",
            };
        } else {
            out.push_str(&rest[..start + BEGIN.len()]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

impl Recorded {
    fn redact(&self, text: &str) -> String {
        let mut t = redact_pem_keys(text);
        for s in self.secrets.iter().filter(|s| !s.is_empty()) {
            t = t.replace(s.as_str(), REDACTED);
        }
        t
    }
}

fn command_line(program: &str, args: &[String], env: &[(&str, &str)]) -> String {
    let mut parts: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.push(program.to_string());
    parts.extend(args.iter().cloned());
    parts.join(" ")
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Text that must never show: replaced by `<redacted>` wherever it is recorded.
    pub fn redact(&self, secret: &str) {
        self.state
            .lock()
            .expect("recorder")
            .secrets
            .push(secret.to_string());
    }

    /// What [`Host::output`] answers to a command line starting with `prefix`.
    pub fn answer(&self, prefix: &str, stdout: &str) {
        self.outputs
            .lock()
            .expect("recorder")
            .push((prefix.to_string(), stdout.to_string()));
    }

    /// Makes the next `times` runs of a command line starting with `prefix` fail.
    pub fn fail(&self, prefix: &str, times: usize) {
        self.failures
            .lock()
            .expect("recorder")
            .push((prefix.to_string(), times));
    }

    pub fn on_run(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Recorder {
        self.on_run = Some(Box::new(f));
        self
    }

    /// A file as if something else (kubeadm, say) had written it.
    pub fn put_file(&self, path: &str, contents: &str) {
        self.state
            .lock()
            .expect("recorder")
            .files
            .insert(PathBuf::from(path), (contents.as_bytes().to_vec(), 0o644));
    }

    /// A note in the transcript from outside the host (a test's stand-in for
    /// the network, say), so that the order of events shows.
    pub fn note(&self, line: &str) {
        let mut s = self.state.lock().expect("recorder");
        let line = s.redact(line);
        s.lines.push(line);
    }

    /// Everything done, one line each, redacted.
    pub fn transcript(&self) -> Vec<String> {
        self.state.lock().expect("recorder").lines.clone()
    }

    /// Every version of `path` written, in order, raw (not redacted).
    pub fn writes_raw(&self, path: &str) -> Vec<Vec<u8>> {
        let s = self.state.lock().expect("recorder");
        s.written
            .iter()
            .filter(|(p, _, _)| p == Path::new(path))
            .map(|(_, c, _)| c.clone())
            .collect()
    }

    /// Every version of `path` written, in order, redacted.
    pub fn writes(&self, path: &str) -> Vec<String> {
        let s = self.state.lock().expect("recorder");
        s.written
            .iter()
            .filter(|(p, _, _)| p == Path::new(path))
            .map(|(_, c, _)| s.redact(&String::from_utf8_lossy(c)))
            .collect()
    }

    /// The files that exist now, with their modes.
    pub fn files(&self) -> Vec<(String, u32)> {
        let s = self.state.lock().expect("recorder");
        s.files
            .iter()
            .map(|(p, (_, m))| (p.display().to_string(), *m))
            .collect()
    }

    fn record(&self, line: String) {
        let mut s = self.state.lock().expect("recorder");
        let line = s.redact(&line);
        s.lines.push(line);
    }

    fn should_fail(&self, line: &str) -> bool {
        let mut f = self.failures.lock().expect("recorder");
        match f
            .iter_mut()
            .find(|(p, n)| *n > 0 && line.starts_with(p.as_str()))
        {
            Some((_, n)) => {
                *n -= 1;
                true
            }
            None => false,
        }
    }
}

impl Host for Recorder {
    fn run(&self, program: &str, args: &[String], env: &[(&str, &str)]) -> Result<(), NodeError> {
        let line = command_line(program, args, env);
        if let Some(f) = &self.on_run {
            f(&line);
        }
        let bare = command_line(program, args, &[]);
        let failed = self.should_fail(&bare);
        self.record(format!(
            "run: {line}{}",
            if failed { "  # fails" } else { "" }
        ));
        if failed {
            return Err(NodeError::Command {
                command: bare,
                message: "exit status: 1: failed as the test asked".into(),
            });
        }
        Ok(())
    }

    fn output(&self, program: &str, args: &[String]) -> Result<String, NodeError> {
        let line = command_line(program, args, &[]);
        self.record(format!("output: {line}"));
        let outputs = self.outputs.lock().expect("recorder");
        outputs
            .iter()
            .rev()
            .find(|(p, _)| line.starts_with(p.as_str()))
            .map(|(_, out)| out.clone())
            .ok_or_else(|| NodeError::Command {
                command: line,
                message: "the recorder has no answer for it".into(),
            })
    }

    fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), NodeError> {
        let mut s = self.state.lock().expect("recorder");
        let line = format!("write: {} {mode:04o}", path.display());
        s.lines.push(line);
        s.files
            .insert(path.to_path_buf(), (contents.to_vec(), mode));
        s.written
            .push((path.to_path_buf(), contents.to_vec(), mode));
        Ok(())
    }

    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, NodeError> {
        let s = self.state.lock().expect("recorder");
        Ok(s.files.get(path).map(|(c, _)| c.clone()))
    }

    fn remove_file(&self, path: &Path) -> Result<(), NodeError> {
        let mut s = self.state.lock().expect("recorder");
        if s.files.remove(path).is_some() {
            s.lines.push(format!("remove: {}", path.display()));
        }
        Ok(())
    }

    fn create_dir(&self, path: &Path, mode: u32) -> Result<(), NodeError> {
        self.record(format!("mkdir: {} {mode:04o}", path.display()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_redacts_secrets_and_private_keys() {
        let r = Recorder::new();
        r.redact("abcdef.0123456789abcdef");
        r.run(
            "kubeadm",
            &[
                "join".into(),
                "--token".into(),
                "abcdef.0123456789abcdef".into(),
            ],
            &[],
        )
        .unwrap();
        let pem = "a\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n\
                   -----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\nb";
        r.write_file(Path::new("/k"), pem.as_bytes(), 0o600)
            .unwrap();
        assert_eq!(r.transcript()[0], "run: kubeadm join --token <redacted>");
        let w = &r.writes("/k")[0];
        assert!(
            w.contains("BEGIN CERTIFICATE") && !w.contains("secret"),
            "{w}"
        );
        assert!(w.ends_with("<redacted>\nb"), "{w}");
        assert_eq!(
            r.read_file(Path::new("/k")).unwrap().unwrap(),
            pem.as_bytes()
        );
    }

    #[test]
    fn the_system_writes_files_with_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("keelson-host-{}", std::process::id()));
        System.create_dir(&dir.join("a/b"), 0o700).unwrap();
        let f = dir.join("a/b/key");
        System.write_file(&f, b"one", 0o600).unwrap();
        System.write_file(&f, b"two", 0o600).unwrap();
        assert_eq!(System.read_file(&f).unwrap().unwrap(), b"two");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = std::fs::metadata(dir.join("a/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        System.remove_file(&f).unwrap();
        System.remove_file(&f).unwrap();
        assert_eq!(System.read_file(&f).unwrap(), None);
        assert_eq!(System.output("echo", &["hi".into()]).unwrap(), "hi\n");
        assert!(System.run("false", &[], &[]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
