//! The one seam for what the agent does to its host (programs such as
//! `etcdctl`, and later `kubeadm`, `systemctl`, `apt-get`): the real host runs
//! them; tests record them or run the real ones that exist here.

use super::NodeError;

pub trait Host: Send + Sync {
    /// Runs `program` with `args` and extra environment; an error unless it exits 0.
    fn run(&self, program: &str, args: &[String], env: &[(&str, &str)]) -> Result<(), NodeError>;
}

/// This machine.
pub struct System;

impl Host for System {
    fn run(&self, program: &str, args: &[String], env: &[(&str, &str)]) -> Result<(), NodeError> {
        let out = std::process::Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .map_err(|e| NodeError::Command {
                command: program.to_string(),
                message: e.to_string(),
            })?;
        if out.status.success() {
            return Ok(());
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
