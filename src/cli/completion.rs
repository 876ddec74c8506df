use std::process::ExitCode;

use clap::{Args, CommandFactory};

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell
    pub shell: clap_complete::Shell,
}

pub fn run(a: CompletionArgs) -> anyhow::Result<ExitCode> {
    clap_complete::generate(
        a.shell,
        &mut super::Cli::command(),
        "keelson",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}
