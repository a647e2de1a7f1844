//! `chatorical config check|example`.

use std::process::ExitCode;

use clap::Subcommand;

use chatorical::config::Settings;

use crate::cli::Global;
use crate::output;

/// Configuration commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the effective configuration (secrets as ***); exit 1 when it is invalid.
    Check,
    /// Print the documented example configuration with every default.
    Example,
}

/// Run a config command.
pub(crate) fn run(g: &Global, cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Example => {
            print!("{}", Settings::example_toml());
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Check => {
            let loaded = super::load(g, None)?;
            let s = &loaded.settings;
            if g.json {
                output::json(&serde_json::json!({
                    "valid": true,
                    "file": loaded.file.as_ref().map(|f| f.display().to_string()),
                    "settings": s,
                }))?;
            } else {
                match &loaded.file {
                    Some(f) => println!("# configuration file: {}", f.display()),
                    None => println!("# no configuration file; defaults and environment"),
                }
                let backend = if s.is_embedded() {
                    "sqlite (embedded default)"
                } else {
                    "postgres"
                };
                println!("# database backend: {backend}");
                print!("{}", s.to_redacted_toml());
                println!("# configuration is valid");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
