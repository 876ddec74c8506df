use std::io::Read;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::Context;
use crate::ops::replace::{Change, replace};
use crate::spec::parse::parse_objects;

#[derive(Debug, Args)]
pub struct ReplaceArgs {
    /// A YAML file with a Cluster and/or InstanceGroups, or - for stdin
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    file: String,
    /// Create objects that do not exist yet
    #[arg(long)]
    force: bool,
}

pub async fn run(a: ReplaceArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let (text, origin) = if a.file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        (s, "stdin".to_string())
    } else {
        (
            std::fs::read_to_string(&a.file)
                .with_context(|| format!("-f: cannot read {}", a.file))?,
            a.file.clone(),
        )
    };
    let objects = parse_objects(&text, &origin)?;
    let store = ctx.open_store(true).await?;
    for change in replace(&store, objects, ctx.cluster_name.as_deref(), a.force).await? {
        ctx.printer.note(match change {
            Change::Replaced(o) => format!("{o} replaced"),
            Change::Created(o) => format!("{o} created"),
            Change::Unchanged(o) => format!("{o} unchanged"),
        });
    }
    Ok(ExitCode::SUCCESS)
}
