//! `chatorical man --out-dir DIR`: man pages from the clap definitions.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, CommandFactory};

use crate::cli::Cli;

/// Arguments of `man`.
#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Directory to write the pages into.
    #[arg(long, value_name = "DIR", default_value = "man")]
    pub out_dir: PathBuf,
}

/// Write one page per command and subcommand.
pub(crate) fn run(args: ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out_dir)?;
    let cmd = Cli::command();
    write_pages(&cmd, "chatorical", &args.out_dir)?;
    Ok(ExitCode::SUCCESS)
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    if cmd.is_hide_set() {
        return Ok(());
    }
    let cmd = cmd.clone().name(name.to_string());
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.1")), buf)?;
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}
