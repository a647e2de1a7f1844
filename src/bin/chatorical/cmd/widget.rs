//! `chatorical widget release`.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Subcommand};

use chatorical::widget_release;

use crate::cli::Global;
use crate::output;

/// Widget commands.
#[derive(Debug, Subcommand)]
pub enum WidgetCommand {
    /// Write the versioned widget script and an embed snippet with Subresource Integrity,
    /// and print the snippet. The same binary always gives the same output.
    Release(ReleaseArgs),
}

/// Arguments of `widget release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Public base URL of the chatorical server, e.g. https://chat.example.com.
    #[arg(long, value_name = "URL")]
    pub origin: String,
    /// Directory for widget.<version>.js, snippet.html and release.json.
    #[arg(long, value_name = "DIR", default_value = "widget-release")]
    pub out: PathBuf,
}

/// Run a widget command (no configuration or database needed).
pub fn run(g: &Global, cmd: WidgetCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WidgetCommand::Release(args) => {
            let release = widget_release::release(&args.origin)?;
            let files = widget_release::write(&release, &args.out)?;
            if g.json {
                output::json(&serde_json::json!({
                    "version": release.version,
                    "integrity": release.integrity,
                    "bytes": release.bytes,
                    "src": release.src,
                    "snippet": release.snippet,
                    "files": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                }))?;
            } else {
                for f in &files {
                    eprintln!("wrote {}", f.display());
                }
                eprintln!(
                    "widget {} ({} bytes); replace {} with the tenant's widget key:",
                    release.version,
                    release.bytes,
                    widget_release::WIDGET_KEY_PLACEHOLDER
                );
                println!("{}", release.snippet);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
