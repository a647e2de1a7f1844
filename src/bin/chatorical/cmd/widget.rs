//! `chatorical widget release`.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Subcommand};

use chatorical::widget_release;

use crate::cli::Global;
use crate::output;

/// Widget commands.
#[derive(Debug, Subcommand)]
pub(crate) enum WidgetCommand {
    /// Write the versioned widget script and an embed snippet with Subresource Integrity,
    /// and print the snippet. The same binary always gives the same output.
    Release(ReleaseArgs),
}

/// Arguments of `widget release`.
#[derive(Debug, Args)]
pub(crate) struct ReleaseArgs {
    /// Public base URL of the chatorical server, e.g. https://chat.example.com.
    #[arg(long, value_name = "URL")]
    pub origin: String,
    /// Directory for widget.<version>.js, snippet.html and release.json.
    #[arg(long, value_name = "DIR", default_value = "widget-release")]
    pub out: PathBuf,
    /// Put this tenant's widget key into the snippet (reads the database); without it
    /// the snippet holds YOUR_WIDGET_KEY.
    #[arg(long, value_name = "SLUG")]
    pub tenant: Option<String>,
}

/// Run a widget command (configuration and database only with `--tenant`).
pub(crate) async fn run(g: &Global, cmd: WidgetCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WidgetCommand::Release(args) => {
            let release = match &args.tenant {
                Some(slug) => {
                    // A bad origin is reported before the database is opened.
                    widget_release::parse_origin(&args.origin)?;
                    let (_, db) = super::open(g).await?;
                    widget_release::release_for_tenant(&db, &args.origin, slug).await?
                }
                None => widget_release::release(&args.origin)?,
            };
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
                match &args.tenant {
                    Some(slug) => eprintln!(
                        "widget {} ({} bytes) with the widget key of {slug}:",
                        release.version, release.bytes
                    ),
                    None => eprintln!(
                        "widget {} ({} bytes); replace {} with the tenant's widget key \
                         (or pass --tenant SLUG):",
                        release.version,
                        release.bytes,
                        widget_release::WIDGET_KEY_PLACEHOLDER
                    ),
                }
                println!("{}", release.snippet);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
