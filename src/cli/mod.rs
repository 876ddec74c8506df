//! The command line: clap types and one thin file per command. Each command
//! resolves its settings, calls the library and prints; no logic lives here.

mod completion;
mod create;
mod delete;
pub mod duration;
mod edit;
pub(crate) mod export;
mod get;
mod iam;
mod node;
pub mod output;
mod replace;
mod restore;
mod rolling_update;
mod toolbox;
mod unlock;
pub(crate) mod update;
mod upgrade;
mod validate;
mod verbose;
mod version;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::state::{StateError, StateStore};
use output::Printer;

/// Exit codes: 0 success, 1 an error (bad input, a cloud or state-store failure),
/// 2 reserved for "changes pending" / "cluster not valid" results, 64 a command
/// line clap could not parse.
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "keelson",
    version,
    about = "Kubernetes clusters on AWS, in the spirit of kops: a preview you can trust, nothing leaked",
    propagate_version = true
)]
pub struct Cli {
    /// The state store: s3://BUCKET[/PREFIX] or file://DIR [env: KEELSON_STATE_STORE, then KOPS_STATE_STORE]
    #[arg(long, global = true, value_name = "URL")]
    pub state: Option<String>,
    /// The cluster, for commands that do not take it as their argument (else KOPS_CLUSTER_NAME)
    #[arg(
        long = "name",
        global = true,
        env = "KEELSON_CLUSTER_NAME",
        hide_env_values = true,
        value_name = "CLUSTER"
    )]
    pub cluster_name: Option<String>,
    /// More detail on stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors and results
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a cluster or an instance group, or both from a file (-f)
    Create(create::CreateTop),
    /// List clusters (alone), instance groups, instances, secrets' names, ...
    Get(get::GetTop),
    /// Edit a cluster or instance group spec in $EDITOR
    #[command(subcommand)]
    Edit(edit::EditCommand),
    /// Export a cluster's kubeconfig
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// IAM helpers
    #[command(subcommand)]
    Iam(iam::IamCommand),
    /// Replace specs from a YAML file or stdin
    Replace(replace::ReplaceArgs),
    /// Delete a cluster: everything it owns in AWS, then its state
    #[command(subcommand)]
    Delete(delete::DeleteCommand),
    /// Preview and apply the changes that bring AWS to the specs
    #[command(subcommand)]
    Update(update::UpdateCommand),
    /// Check the cluster's health as kops does (exit 0 valid, 2 not valid, 1 error)
    #[command(subcommand)]
    Validate(validate::ValidateCommand),
    /// Replace out-of-date instances without downtime, as kops rolling-update
    #[command(subcommand)]
    RollingUpdate(rolling_update::RollingUpdateCommand),
    /// Move a cluster to the next Kubernetes version, as kops upgrade cluster
    #[command(subcommand)]
    Upgrade(upgrade::UpgradeCommand),
    /// Restore a cluster's etcd from a backup after every master was lost
    #[command(subcommand)]
    Restore(restore::RestoreCommand),
    /// Diagnostics: dump a cluster's resources and instances
    #[command(subcommand)]
    Toolbox(toolbox::ToolboxCommand),
    /// Remove a stale cluster lock
    #[command(subcommand)]
    Unlock(unlock::UnlockCommand),
    /// Print the version
    Version,
    /// Print a shell completion script
    Completion(completion::CompletionArgs),
    /// What keelson's instances run: the node agent (not for operators' machines)
    #[command(subcommand, hide = true)]
    Node(node::NodeCommand),
}

/// The cluster name, from the positional argument or `--name`; they must agree.
#[derive(Debug, Args)]
pub struct ClusterArg {
    /// The cluster's name, e.g. demo.k8s.local
    #[arg(value_name = "NAME")]
    pub positional: Option<String>,
}

/// Resolved global settings handed to each command.
pub struct Context {
    pub state: Option<String>,
    pub cluster_name: Option<String>,
    pub printer: Printer,
}

impl Context {
    pub fn cluster(&self, arg: &ClusterArg) -> anyhow::Result<String> {
        match (&arg.positional, &self.cluster_name) {
            (Some(a), Some(b)) if a != b => {
                anyhow::bail!("the cluster is named twice: {a} and --name {b}; give one")
            }
            (Some(a), _) => Ok(a.clone()),
            (None, Some(b)) => Ok(b.clone()),
            (None, None) => anyhow::bail!(
                "no cluster named; pass it as the argument or with --name (or set KEELSON_CLUSTER_NAME or KOPS_CLUSTER_NAME)"
            ),
        }
    }

    pub fn cluster_flag(&self) -> anyhow::Result<String> {
        self.cluster(&ClusterArg { positional: None })
    }

    /// The state store URL: --state, else KEELSON_STATE_STORE, else KOPS_STATE_STORE.
    pub fn state_url(&self) -> Result<String, StateError> {
        self.state
            .clone()
            .or_else(|| std::env::var("KEELSON_STATE_STORE").ok())
            .or_else(|| std::env::var("KOPS_STATE_STORE").ok())
            .filter(|s| !s.is_empty())
            .ok_or(StateError::NotConfigured)
    }

    /// Opens the state store; a command that writes shows its warnings (such as
    /// S3 versioning being off), a read-only one keeps quiet.
    pub async fn store(
        &self,
        aws: &aws_config::SdkConfig,
        check: crate::state::s3::Versioning,
    ) -> anyhow::Result<StateStore> {
        let store = StateStore::open_checking(&self.state_url()?, aws, check).await?;
        for w in &store.warnings {
            self.printer.warn(w);
        }
        Ok(store)
    }

    /// Opens the state store with the environment's AWS settings; a writer hears
    /// about an unversioned bucket once per bucket (`create cluster` every time).
    pub async fn open_store(&self, writes: bool) -> anyhow::Result<StateStore> {
        let url = self.state_url()?;
        // A file:// store needs no AWS configuration at all.
        let aws = if url.starts_with("s3://") {
            crate::aws::load(None).await
        } else {
            aws_config::SdkConfig::builder().build()
        };
        let check = if writes {
            crate::state::s3::Versioning::Once
        } else {
            crate::state::s3::Versioning::Skip
        };
        self.store(&aws, check).await
    }
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    verbose::init(cli.verbose);
    let printer = Printer::new(cli.verbose, cli.quiet);
    let ctx = Context {
        state: cli.state,
        // kops' variable, after keelson's own (as KOPS_STATE_STORE).
        cluster_name: cli.cluster_name.or_else(|| {
            std::env::var("KOPS_CLUSTER_NAME")
                .ok()
                .filter(|s| !s.is_empty())
        }),
        printer,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli.command, &ctx)) {
        Ok(code) => code,
        Err(e) => {
            output::err_line(&format!("Error: {e:#}"));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create(c) => create::run(c, ctx).await,
        Command::Get(c) => get::run(c, ctx).await,
        Command::Edit(c) => edit::run(c, ctx).await,
        Command::Replace(a) => replace::run(a, ctx).await,
        Command::Export(c) => export::run(c, ctx).await,
        Command::Iam(c) => iam::run(c, ctx),
        Command::Update(c) => update::run(c, ctx).await,
        Command::Delete(c) => delete::run(c, ctx).await,
        Command::Restore(c) => restore::run(c, ctx).await,
        Command::Toolbox(c) => toolbox::run(c, ctx).await,
        Command::Unlock(c) => unlock::run(c, ctx).await,
        Command::Upgrade(c) => upgrade::run(c, ctx).await,
        Command::Validate(c) => validate::run(c, ctx).await,
        Command::RollingUpdate(c) => rolling_update::run(c, ctx).await,
        Command::Version => version::run(),
        Command::Completion(a) => completion::run(a),
        Command::Node(c) => node::run(c, ctx).await,
    }
}
