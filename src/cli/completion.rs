use std::io::Write;
use std::process::ExitCode;

use clap::{Args, CommandFactory};

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell
    pub shell: clap_complete::Shell,
}

pub fn run(a: CompletionArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut super::Cli::command(), "keelson", &mut script);
    // `keelson completion zsh | head`: a reader that stops early is not an
    // error (clap_complete's own writes panic on a closed pipe).
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&script).and_then(|()| out.flush());
    Ok(ExitCode::SUCCESS)
}
