//! `chatorical audit list|export`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use chatorical::audit::{self, AuditQuery, ExportFormat, ExportRequest, ExportScope};
use chatorical::tenancy::Caller;

use crate::cli::Global;
use crate::output;

/// Audit log commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Entries of the audit log, oldest first (one page; `--cursor` for the next).
    List {
        /// Only this tenant's entries (slug); else every entry.
        #[arg(long)]
        tenant: Option<String>,
        /// At or after (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Before (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Only this action (key.issued, settings.updated, visitor.erased...).
        #[arg(long)]
        action: Option<String>,
        /// Only this actor (key:<id>, cli:<user>@<host>, telegram:<id>, stripe, system).
        #[arg(long)]
        actor: Option<String>,
        /// The next_cursor of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        /// Page size (1-500).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Write entries to a file (JSON lines or CSV), streamed in constant memory; the file
    /// appears only when complete.
    Export {
        /// One tenant's entries (slug).
        #[arg(
            long,
            conflicts_with = "platform",
            required_unless_present = "platform"
        )]
        tenant: Option<String>,
        /// Every entry: the platform's and all tenants'.
        #[arg(long)]
        platform: bool,
        /// At or after (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: String,
        /// Before (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// File format.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// The file to write (replaced only when the export is complete).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Export file formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

/// Run an audit command.
pub(crate) async fn run(g: &Global, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let (_, db) = super::open(g).await?;
    match cmd {
        AuditCommand::List {
            tenant,
            since,
            until,
            action,
            actor,
            cursor,
            limit,
        } => {
            let page = audit::list(
                &db,
                &Caller::Operator,
                tenant.as_deref(),
                AuditQuery {
                    since,
                    until,
                    action,
                    actor,
                    cursor,
                    limit: Some(limit),
                },
            )
            .await?;
            if g.json {
                output::json(&page)?;
            } else {
                let mut t =
                    output::table(&["id", "at", "tenant", "actor", "action", "target", "changes"]);
                for e in &page.entries {
                    let actor = match &e.actor_name {
                        Some(n) if !n.is_empty() => format!("{} ({n})", e.actor),
                        _ => e.actor.clone(),
                    };
                    t.add_row(vec![
                        e.id.to_string(),
                        e.at.clone(),
                        output::or_dash(e.tenant_id.as_deref()),
                        actor,
                        e.action.clone(),
                        output::or_dash(e.target.as_deref()),
                        e.changes.to_string(),
                    ]);
                }
                output::print_table(&t);
                if let Some(c) = &page.next_cursor {
                    println!("more: --cursor {c}");
                }
            }
        }
        AuditCommand::Export {
            tenant,
            platform: _,
            since,
            until,
            format,
            out,
        } => {
            let bar = if g.json {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(0).with_style(
                    ProgressStyle::with_template(
                        "exporting {bar:30} {pos}/{len} entries ({per_sec}, eta {eta})",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                )
            };
            let started = std::time::Instant::now();
            let report = audit::export(
                &db,
                &Caller::Operator,
                ExportRequest {
                    scope: tenant.map_or(ExportScope::Platform, ExportScope::Tenant),
                    since,
                    until,
                    format: match format {
                        Format::Jsonl => ExportFormat::Jsonl,
                        Format::Csv => ExportFormat::Csv,
                    },
                    out,
                },
                |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                },
            )
            .await;
            bar.finish_and_clear();
            let report = report?;
            if g.json {
                output::json(&report)?;
            } else {
                println!(
                    "{} entries ({} bytes) written to {} in {:.1}s",
                    report.rows,
                    report.bytes,
                    report.path,
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
