//! `chatorical`: parse the command line, load settings, start telemetry, dispatch.

mod cli;
mod cmd;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", output::safe(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Serve(args) => cmd::serve::run(&g, args).await,
        Command::Worker(args) => cmd::worker::run(&g, args).await,
        Command::Migrate(args) => cmd::migrate::run(&g, args).await,
        Command::Telegram(c) => cmd::telegram::run(&g, c).await,
        Command::Outbox(c) => cmd::outbox::run(&g, c).await,
        Command::Tenants(c) => cmd::tenants::run(&g, c).await,
        Command::Plans(c) => cmd::plans::run(&g, c).await,
        Command::Billing(c) => cmd::billing::run(&g, c).await,
        Command::Keys(c) => cmd::keys::run(&g, c).await,
        Command::Usage(c) => cmd::usage::run(&g, c).await,
        Command::Templates(c) => cmd::templates::run(&g, c).await,
        Command::Flags(c) => cmd::flags::run(&g, c).await,
        Command::Secrets(c) => cmd::secrets::run(&g, c).await,
        Command::Audit(c) => cmd::audit::run(&g, c).await,
        Command::Visitors(c) => cmd::visitors::run(&g, c).await,
        Command::Retention(c) => cmd::retention::run(&g, c).await,
        Command::Backup(args) => cmd::backup::run_backup(&g, args).await,
        Command::Restore(args) => cmd::backup::run_restore(&g, args).await,
        Command::Completions(args) => cmd::completions::run(args),
        Command::Config(c) => cmd::config::run(&g, c),
        Command::Doctor(args) => cmd::doctor::run(&g, args).await,
        Command::Widget(c) => cmd::widget::run(&g, c).await,
        Command::Man(args) => cmd::man::run(args),
    }
}
