//! `keelson node ...`: the commands keelson's instances run (the node agent).
//! Hidden from the main help: an operator never needs them on their machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::Context;
use crate::node::agent::{EtcdAccess, Node};
use crate::node::host::Host;
use crate::node::{bootstrap, env, host};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// One pass over etcd's membership: remove the members of masters that are
    /// gone (only while quorum holds, never a healthy one), then publish it
    EtcdMembers(MembersArgs),
    /// Take an etcd snapshot into the state store (NAME/backups/etcd/)
    BackupEtcd(BackupArgs),
    /// Restore an etcd backup into an empty data directory, as this master's member
    RestoreEtcd(RestoreArgs),
    /// The long-running agent on masters: membership, backups and retention
    Agent(AgentArgs),
    /// Make this instance part of its cluster: host set-up, packages, then
    /// kubeadm init (the master holding the leader lease) or join; a rerun
    /// finishes what an earlier one left
    Bootstrap(BootstrapArgs),
    /// Serve node credentials on this master (the agent does this too): nodes
    /// that prove who they are with AWS get a certificate for their own name
    CredentialServer(BootstrapArgs),
    /// Ask the masters for this node's credential (what the bootstrap does),
    /// and write it to a directory
    Credential(CredentialArgs),
}

#[derive(Debug, Args)]
pub struct CredentialArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Where to write node.crt and node.key
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Also save the signed request sent (it holds no secret but a session
    /// token's use for 5 minutes), to check a master's refusals with --send
    #[arg(long, value_name = "FILE")]
    save_request: Option<PathBuf>,
    /// Send this saved request instead of signing a new one (no key is written)
    #[arg(long, value_name = "FILE", conflicts_with = "save_request")]
    send: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The env file the user-data writes
    #[arg(long, default_value = env::DEFAULT_PATH, value_name = "PATH")]
    env_file: PathBuf,
    /// How etcd is reached: https (kubeadm's) or http (a plain-text test etcd)
    #[arg(long, default_value = "https", value_parser = ["https", "http"])]
    etcd_scheme: String,
    #[arg(long, default_value_t = 2379)]
    etcd_port: u16,
    #[arg(long, default_value_t = 2380)]
    etcd_peer_port: u16,
    /// kubeadm's etcd PKI directory (ca.crt, healthcheck-client.crt/.key)
    #[arg(long, default_value = "/etc/kubernetes/pki/etcd", value_name = "DIR")]
    etcd_pki: PathBuf,
    /// The port the masters' agents serve node credentials on
    #[arg(long, default_value_t = crate::node::attest::PORT)]
    credential_port: u16,
}

#[derive(Debug, Args)]
pub struct MembersArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// This master is about to join: a half-made member of its own goes too
    #[arg(long)]
    joining: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Why, recorded in the backup's name
    #[arg(long, default_value = "manual", value_parser = ["manual", "scheduled", "pre-replacement"])]
    reason: String,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The backup's name, as `keelson get backups` lists it
    #[arg(long, value_name = "NAME")]
    backup: String,
    /// The new member's data directory (must be empty)
    #[arg(long, default_value = "/var/lib/etcd", value_name = "DIR")]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// One pass, then exit
    #[arg(long)]
    once: bool,
    /// Time between passes
    #[arg(long, default_value = "1m", value_parser = super::duration::parse)]
    interval: Duration,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    node: NodeArgs,
}

async fn connect(a: &NodeArgs) -> anyhow::Result<Node> {
    let mut node = Node::connect(
        &a.env_file,
        EtcdAccess {
            scheme: a.etcd_scheme.clone(),
            port: a.etcd_port,
            peer_port: a.etcd_peer_port,
            pki_dir: a.etcd_pki.clone(),
        },
    )
    .await?;
    node.credential_port = a.credential_port;
    Ok(node)
}

/// The credential server of this master, for as long as the process runs; one
/// that cannot start (STS unreachable, say) is tried again a minute later.
async fn serve_credentials(node: std::sync::Arc<Node>) {
    let log: std::sync::Arc<dyn Fn(&str) + Send + Sync> =
        std::sync::Arc::new(|m: &str| eprintln!("keelson-agent: {m}"));
    let ip = match node.me.private_ip.parse::<std::net::IpAddr>() {
        Ok(ip) => ip,
        Err(e) => return log(&format!("this master's address is not an IP: {e}")),
    };
    loop {
        match crate::node::serve::Issuer::new(&node).await {
            Ok(i) => {
                let served = crate::node::serve::serve(
                    std::sync::Arc::new(i),
                    ip,
                    node.credential_port,
                    log.clone(),
                );
                if let Err(e) = served.await {
                    log(&format!("the node credential server stopped: {e}"));
                }
            }
            Err(e) => log(&format!("cannot serve node credentials yet: {e}")),
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

pub async fn run(cmd: NodeCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    // An instance at boot may reach AWS before its network is up: keep retrying.
    crate::aws::reach::retry_first_contact();
    match cmd {
        NodeCommand::EtcdMembers(a) => {
            let node = connect(&a.node).await?;
            let report = node.members(a.joining).await?;
            for why in &report.removed {
                ctx.printer.note(format!("removed {why}"));
            }
            ctx.printer
                .out(serde_json::to_string_pretty(&report)? + "\n");
        }
        NodeCommand::BackupEtcd(a) => {
            let node = connect(&a.node).await?;
            let b = node.backup(&a.reason).await?;
            ctx.printer.out(format!("{}\n", b.name));
        }
        NodeCommand::RestoreEtcd(a) => {
            let node = connect(&a.node).await?;
            node.restore(&a.backup, &a.data_dir, &host::System).await?;
            ctx.printer.note(format!(
                "restored {} into {}",
                a.backup,
                a.data_dir.display()
            ));
        }
        NodeCommand::Bootstrap(a) => {
            let node = connect(&a.node).await?;
            let log = |m: &str| ctx.printer.note(format!("keelson-bootstrap: {m}"));
            // The flow logs its own end ("done: ...").
            bootstrap::run(&node, std::sync::Arc::new(host::System), &log).await?;
        }
        NodeCommand::CredentialServer(a) => {
            let node = std::sync::Arc::new(connect(&a.node).await?);
            serve_credentials(node).await;
        }
        NodeCommand::Credential(a) => {
            let node = connect(&a.node).await?;
            let ca = node
                .store
                .backend()
                .get(&crate::state::layout::pki_public(
                    &node.env.cluster,
                    "ca.crt",
                ))
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the state store has no pki/public/ca.crt for {}",
                        node.env.cluster
                    )
                })?;
            std::fs::create_dir_all(&a.out)?;
            if let Some(saved) = &a.send {
                let req: crate::node::attest::Request =
                    serde_json::from_slice(&std::fs::read(saved)?)?;
                let cert = crate::node::serve::send(&node, &ca, node.credential_port, &req).await?;
                std::fs::write(a.out.join("node.crt"), cert)?;
            } else {
                let (cred, req) =
                    crate::node::serve::request_credential(&node, &ca, node.credential_port)
                        .await?;
                if let Some(path) = &a.save_request {
                    std::fs::write(path, serde_json::to_vec_pretty(&req)?)?;
                }
                std::fs::write(a.out.join("node.crt"), &cred.cert_pem)?;
                host::System.write_file(
                    &a.out.join("node.key"),
                    cred.key.expose().as_bytes(),
                    0o600,
                )?;
            }
            ctx.printer
                .note(format!("wrote the node credential to {}", a.out.display()));
        }
        NodeCommand::Agent(a) => {
            let node = std::sync::Arc::new(connect(&a.node).await?);
            if !a.once && node.env.role == "master" {
                tokio::spawn(serve_credentials(node.clone()));
            }
            let print = |pass: Result<crate::node::agent::Pass, crate::node::NodeError>| match pass
            {
                Ok(p) => {
                    for why in &p.report.removed {
                        ctx.printer.note(format!("removed {why}"));
                    }
                    if let Some(b) = &p.backup {
                        ctx.printer.note(format!("backed up etcd: {}", b.name));
                    }
                    for n in &p.pruned {
                        ctx.printer.note(format!("pruned backup {n}"));
                    }
                    ctx.printer.debug(format!(
                        "etcd: {} of {} members healthy, {} masters",
                        p.report.healthy,
                        p.report.members.len(),
                        p.report.masters.len()
                    ));
                }
                Err(e) => ctx.printer.warn(format!("agent pass failed: {e}")),
            };
            if a.once {
                let pass = node.pass().await?;
                print(Ok(pass));
            } else {
                node.run(a.interval, print).await;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
