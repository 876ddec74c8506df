use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{ClusterArg, Context};
use crate::apply::{Event, apply};
use crate::ops::update::{check_saved, make_plan};
use crate::plan::{Plan, render};
use crate::state::lock::with_lock;

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Preview the changes that bring AWS to the specs; apply them with --yes
    Cluster(UpdateArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PlanFormat {
    #[default]
    Text,
    Json,
}

/// Who makes the cloud resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Target {
    #[default]
    Direct,
    Terraform,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    #[command(flatten)]
    opts: UpdateOpts,
}

#[derive(Debug, Args, Default)]
pub struct UpdateOpts {
    /// Apply the changes (without it, only a preview)
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// text: the human preview; json: the documented plan schema (docs/plan-format.md), progress as JSON lines on stderr
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: PlanFormat,
    /// Save the plan to FILE, to apply exactly it later with --plan FILE --yes;
    /// with --target terraform, the directory the configuration is written to
    #[arg(long, value_name = "FILE|DIR")]
    pub out: Option<std::path::PathBuf>,
    /// Apply this saved plan; refused if the specs or the cloud moved since it was made
    #[arg(long, value_name = "FILE", requires = "yes", conflicts_with = "target")]
    pub plan: Option<std::path::PathBuf>,
    /// direct: keelson changes AWS (with --yes); terraform: write the cluster as
    /// terraform configuration into --out DIR (kubernetes.tf.json and data/) and
    /// its PKI, node agent and addons to the state store, as kops does
    /// (docs/terraform.md)
    #[arg(long, value_enum, default_value = "direct")]
    pub target: Target,
    /// Exit 0 when there is nothing to do, 2 when changes are pending, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// The keelson binary the instances run as their node agent (a Linux build for
    /// the machine types' architecture); default: this keelson
    #[arg(long, value_name = "PATH", env = "KEELSON_NODE_BINARY")]
    pub node_binary: Option<std::path::PathBuf>,
    /// With --yes: write an HTML report of the apply's timings to FILE (one bar per
    /// resource, the critical path highlighted; opens offline)
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true,
          default_missing_value = "keelson-timings.html", requires = "yes")]
    pub timings: Option<std::path::PathBuf>,
    /// With --yes: at most N AWS changes in flight at once (default 8; 0: no
    /// bound), as terraform's -parallelism
    #[arg(long, value_name = "N", env = "KEELSON_PARALLELISM", requires = "yes")]
    pub parallelism: Option<usize>,
}

pub async fn run(cmd: UpdateCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let UpdateCommand::Cluster(args) = cmd;
    let name = ctx.cluster(&args.cluster)?;
    // The terraform target writes to the state store without --yes, as kops'.
    let writes = args.opts.yes || args.opts.target == Target::Terraform;
    let store = ctx.open_store(writes).await?;
    update(&store, &name, &args.opts, ctx).await
}

/// Preview, or with `yes` apply; also the end of `create cluster`.
pub async fn update(
    store: &crate::state::StateStore,
    name: &str,
    a: &UpdateOpts,
    ctx: &Context,
) -> anyhow::Result<ExitCode> {
    let (store, name) = (store.clone(), name.to_string());
    if a.target == Target::Terraform {
        return terraform(&store, &name, a, ctx).await;
    }
    let saved: Option<Plan> = match &a.plan {
        Some(p) => Some(
            serde_json::from_str(
                &std::fs::read_to_string(p)
                    .with_context(|| format!("--plan: cannot read {}", p.display()))?,
            )
            .with_context(|| format!("--plan: {} is not a keelson plan", p.display()))?,
        ),
        None => None,
    };
    if !a.yes {
        let planned = make_plan(&store, &name, a.node_binary.as_deref()).await?;
        return finish_preview(&planned, a, ctx);
    }
    with_lock(
        &store,
        &name,
        &format!("keelson update cluster {name} --yes"),
        async {
            let planned = make_plan(&store, &name, a.node_binary.as_deref()).await?;
            let plan = match saved {
                Some(s) => {
                    check_saved(&s, &planned.plan).map_err(crate::ops::OpsError::from)?;
                    s
                }
                None => planned.plan.clone(),
            };
            print_plan(&plan, a, ctx)?;
            print_state_changes(&planned, a, ctx);
            print_quotas(&planned, ctx);
            if plan.is_empty() && planned.state.is_empty() {
                ctx.printer.note("No changes need to be applied");
                return Ok(ExitCode::SUCCESS);
            }
            // Before the cloud: instances read these at boot.
            crate::ops::update::write_state_changes(&store, &name, &planned.state).await?;
            if !planned.state.is_empty() {
                ctx.printer.note(format!(
                    "Wrote {} object(s) to the state store",
                    planned.state.describe(&name).len()
                ));
            }
            if plan.is_empty() {
                ctx.printer.note(format!("Cluster {name} is up to date."));
                return Ok(ExitCode::SUCCESS);
            }
            // The lower bound on the apply's time on AWS, from the plan alone.
            let critical = crate::apply::critical::critical_path(&plan);
            ctx.printer
                .note(format!("critical path: {}", critical.describe()));
            let recorder = crate::apply::timings::Recorder::default();
            let progress = Progress::new(a.output == PlanFormat::Json, plan.changes.len(), ctx);
            let on_event = |e: Event| {
                recorder.record(&e);
                progress.event(e, ctx)
            };
            let started = std::time::Instant::now();
            let result = apply(
                &plan,
                &planned.clients,
                crate::apply::Options {
                    parallelism: a.parallelism,
                    ..Default::default()
                },
                &on_event,
            )
            .await;
            progress.finish();
            let wall = started.elapsed();
            // Against the model's bound, and against the bound over the times
            // AWS actually took in this run (what is left is the executor's).
            let observed = crate::apply::critical::observed_path(&plan, &recorder.events());
            let human = crate::apply::critical::human;
            let ratio = |b: std::time::Duration| wall.as_secs_f64() / b.as_secs_f64().max(1e-9);
            ctx.printer.note(format!(
                "apply took {} ({:.2}x its critical path of {})",
                human(wall),
                ratio(critical.total),
                human(critical.total)
            ));
            ctx.printer.note(format!(
                "observed critical path: {}, at the times its steps took ({:.2}x)",
                observed.describe(),
                ratio(observed.total)
            ));
            if let Some(path) = &a.timings {
                let page = crate::apply::timings::html(&name, &recorder.events(), &critical);
                std::fs::write(path, page)
                    .with_context(|| format!("--timings: cannot write {}", path.display()))?;
                ctx.printer
                    .note(format!("Timings written to {}", path.display()));
            }
            result.map_err(|e| {
                crate::ops::OpsError::from(crate::ops::update::UpdateError::from(e))
            })?;
            let recorded =
                crate::ops::update::record_status(&store, &planned.cluster, &planned.clients)
                    .await?;
            if let Some(endpoint) = recorded.endpoint {
                ctx.printer.note(format!(
                    "The Kubernetes API of {name} will answer at https://{endpoint}"
                ));
                // Like kops: the first apply sets up kubectl.
                if recorded.first {
                    export_kubecfg(&store, &name, ctx).await;
                }
            }
            ctx.printer.note(format!(
                "Applied: {} added, {} changed, {} destroyed. Cluster {name} is up to date.",
                plan.summary.add, plan.summary.change, plan.summary.destroy
            ));
            Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
        },
    )
    .await
}

/// Progress for people (a bar with what is in flight, on a terminal), for logs
/// (one line per finished change) or for programs (JSON lines), all on stderr.
pub(super) enum Progress {
    Json,
    Lines,
    Bar {
        bar: indicatif::ProgressBar,
        in_flight: std::sync::Mutex<std::collections::BTreeSet<String>>,
    },
}

impl Progress {
    pub(super) fn new(json: bool, total: usize, ctx: &Context) -> Progress {
        if json {
            return Progress::Json;
        }
        // Diagnostics (-v) are lines: a bar would be torn by them.
        if !std::io::stderr().is_terminal() || ctx.printer.is_quiet() || ctx.printer.verbosity() > 0
        {
            return Progress::Lines;
        }
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {wide_msg}")
                .expect("valid template"),
        );
        Progress::Bar {
            bar,
            in_flight: Default::default(),
        }
    }

    pub(super) fn event(&self, e: Event, ctx: &Context) {
        match self {
            Progress::Json => {
                super::output::err_line(&serde_json::to_string(&e).expect("events serialize"))
            }
            Progress::Lines => match e {
                Event::Done {
                    address,
                    action,
                    id,
                    done,
                    total,
                } => ctx.printer.note(format!(
                    "[{done}/{total}] {} {address} ({id})",
                    past(action)
                )),
                // A long wait (a dependency on its way out) must not look like a
                // hang: attempts 1, 2, 4, 8 ... are shown, every one with -v.
                Event::Retrying {
                    address,
                    error,
                    attempt,
                    ..
                } => {
                    let line = format!("retrying {address} (attempt {attempt}): {error}");
                    if attempt.is_power_of_two() {
                        ctx.printer.note(line)
                    } else {
                        ctx.printer.debug(line)
                    }
                }
                // What it waits for, with -v.
                Event::Started {
                    address,
                    action,
                    attempt,
                } => ctx
                    .printer
                    .debug(format!("{} {address} (attempt {attempt})", present(action))),
                Event::Pending { address, id } => ctx.printer.debug(format!(
                    "waiting for {address} ({id}) to be available; what uses it may start"
                )),
                Event::Ready { .. } => {}
            },
            Progress::Bar { bar, in_flight } => {
                let mut f = in_flight.lock().unwrap();
                match e {
                    Event::Started {
                        address, action, ..
                    } => {
                        f.insert(format!("{} {address}", present(action)));
                    }
                    Event::Ready { .. } => {}
                    Event::Pending { address, .. } => {
                        f.retain(|x| !x.ends_with(&format!(" {address}")));
                        f.insert(format!("waiting for {address}"));
                    }
                    Event::Done {
                        address,
                        action,
                        id,
                        done,
                        ..
                    } => {
                        f.retain(|x| !x.ends_with(&format!(" {address}")));
                        bar.println(format!("{} {address} ({id})", past(action)));
                        bar.set_position(done as u64);
                    }
                    Event::Retrying {
                        address,
                        error,
                        attempt,
                        ..
                    } => bar.println(format!("retrying {address} (attempt {attempt}): {error}")),
                }
                bar.set_message(f.iter().cloned().collect::<Vec<_>>().join(", "));
            }
        }
    }

    pub(super) fn finish(&self) {
        if let Progress::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

fn past(a: crate::plan::Action) -> &'static str {
    match a {
        crate::plan::Action::Create => "created",
        crate::plan::Action::Update => "updated",
        crate::plan::Action::Replace => "replaced",
        crate::plan::Action::Delete => "deleted",
    }
}

fn present(a: crate::plan::Action) -> &'static str {
    match a {
        crate::plan::Action::Create => "creating",
        crate::plan::Action::Update => "updating",
        crate::plan::Action::Replace => "replacing",
        crate::plan::Action::Delete => "deleting",
    }
}

fn print_plan(plan: &Plan, a: &UpdateOpts, ctx: &Context) -> anyhow::Result<()> {
    match a.output {
        // `--yes` says what it will do in a line per kind, then shows progress:
        // the detail was in the preview (and is in `-o json`).
        PlanFormat::Text if !plan.is_empty() && a.yes => ctx.printer.out(render::summary(plan)),
        PlanFormat::Text if !plan.is_empty() => ctx.printer.out(render::human(plan)),
        PlanFormat::Text => {}
        PlanFormat::Json => ctx.printer.out(render::json(plan)),
    }
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_string_pretty(plan)? + "\n")
            .with_context(|| format!("--out: cannot write {}", out.display()))?;
        ctx.printer.note(format!(
            "Plan saved to {}; apply exactly it with: keelson update cluster {} --plan {} --yes",
            out.display(),
            plan.cluster,
            out.display()
        ));
    }
    Ok(())
}

/// The state-store writes beside the plan: on stdout with the text preview, as a
/// note with JSON (whose stdout is the documented plan alone).
fn print_state_changes(planned: &crate::ops::update::Planned, a: &UpdateOpts, ctx: &Context) {
    let lines = planned.state.describe(planned.cluster.name());
    if lines.is_empty() {
        return;
    }
    let mut body: String = lines.iter().map(|l| format!("  {l}\n")).collect();
    // With --yes the bundles' detail was the preview's, as the resources' is.
    if !planned.state.addon_changes.is_empty() && !a.yes {
        body.push_str("Addon bundles (what the masters will apply):\n");
        for c in &planned.state.addon_changes {
            let text = match (&c.before, &c.after) {
                // A new bundle's objects are all new: counted, listed with -v.
                (None, Some(v)) if ctx.printer.verbosity() == 0 => {
                    let mut t = format!(
                        "+ {} {v} (new bundle: {} objects, listed with -v)\n",
                        c.name,
                        c.diff.lines().count()
                    );
                    if !c.iam.is_empty() {
                        t.push_str("    IAM statements of the masters' role:\n");
                        for l in &c.iam {
                            t.push_str(&format!("      {l}\n"));
                        }
                    }
                    t
                }
                _ => c.describe(),
            };
            for l in text.lines() {
                for w in render::wrap(&format!("  {l}")) {
                    body.push_str(&w);
                    body.push('\n');
                }
            }
        }
    }
    match a.output {
        PlanFormat::Text => ctx
            .printer
            .out(format!("Will write to the state store:\n{body}")),
        PlanFormat::Json => ctx
            .printer
            .note(format!("Will also write to the state store:\n{body}")),
    }
}

/// What the plan consumes of the account's quotas, checked before any write.
fn print_quotas(planned: &crate::ops::update::Planned, ctx: &Context) {
    for w in &planned.warnings {
        ctx.printer.warn(w);
    }
    if planned.quotas.is_empty() {
        return;
    }
    let body: String = planned
        .quotas
        .iter()
        .map(|c| format!("  {}\n", c.line()))
        .collect();
    // A note (stderr), not the plan's stdout: usage is the account's, not the
    // plan's, and moves with everything else in the region.
    ctx.printer.note(format!(
        "Quotas this plan uses (checked before any write):\n{}",
        body.trim_end()
    ));
}

/// After the first apply: an admin kubeconfig (18h), as `export kubecfg --admin`.
/// A failure here is a warning: the cluster itself was applied.
async fn export_kubecfg(store: &crate::state::StateStore, name: &str, ctx: &Context) {
    let result = async {
        let path =
            crate::ops::kubecfg::kubeconfig_path(None).map_err(crate::ops::OpsError::from)?;
        crate::ops::kubecfg::export(store, name, super::export::DEFAULT_ADMIN, &path).await?;
        Ok::<_, crate::ops::OpsError>(path)
    }
    .await;
    match result {
        Ok(path) => ctx.printer.note(format!(
            "kubectl is set up: context {name} in {} (admin credentials for 18h; renew with `keelson export kubeconfig {name} --admin`)",
            path.display()
        )),
        Err(e) => ctx.printer.warn(format!(
            "the cluster was applied, but exporting its kubeconfig failed: {e}"
        )),
    }
}

fn finish_preview(
    planned: &crate::ops::update::Planned,
    a: &UpdateOpts,
    ctx: &Context,
) -> anyhow::Result<ExitCode> {
    let plan = &planned.plan;
    print_plan(plan, a, ctx)?;
    print_state_changes(planned, a, ctx);
    print_quotas(planned, ctx);
    if plan.is_empty() && planned.state.is_empty() {
        ctx.printer.note("No changes need to be applied");
        return Ok(ExitCode::SUCCESS);
    }
    ctx.printer.note("Must specify --yes to apply changes");
    Ok(if a.detailed_exitcode {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--target terraform --out DIR`: the configuration, then the state store, under
/// the lock; like kops, without `--yes` (keelson itself changes no cloud resource).
async fn terraform(
    store: &crate::state::StateStore,
    name: &str,
    a: &UpdateOpts,
    ctx: &Context,
) -> anyhow::Result<ExitCode> {
    let Some(dir) = &a.out else {
        anyhow::bail!(
            "--target terraform needs --out DIR, the directory to write the configuration to (kops: --target terraform --out DIR)"
        );
    };
    if a.output == PlanFormat::Json {
        anyhow::bail!(
            "--target terraform writes files, not a plan: drop -o json (`terraform plan -json` in {} gives terraform's)",
            dir.display()
        );
    }
    with_lock(
        store,
        name,
        &format!("keelson update cluster {name} --target terraform"),
        async {
            let t = crate::ops::terraform::prepare(store, name, a.node_binary.as_deref()).await?;
            crate::ops::terraform::write_files(dir, &t.rendered)
                .map_err(crate::ops::OpsError::from)?;
            let lines = t.state.describe(name);
            crate::ops::terraform::write_state(store, name, &t.state).await?;
            for l in &lines {
                ctx.printer.note(format!("  {l}"));
            }
            ctx.printer.note(format!(
                "Terraform configuration of {} resource(s) written to {} ({} and {}/, {} file(s)); \
                 wrote {} object(s) to the state store",
                t.resources,
                dir.display(),
                crate::terraform::MAIN_FILE,
                crate::terraform::DATA_DIR,
                t.rendered.files.len(),
                lines.len()
            ));
            ctx.printer.note(format!(
                "Next: cd {} && terraform init && terraform apply",
                dir.display()
            ));
            Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
        },
    )
    .await
}
