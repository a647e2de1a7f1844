//! `chatorical retention run`.

use std::process::ExitCode;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use chatorical::retention::{self, Batches, Options};
use chatorical::tenancy::Caller;

use crate::cli::Global;
use crate::output;

/// Retention commands.
#[derive(Debug, Subcommand)]
pub(crate) enum RetentionCommand {
    /// Delete closed conversations older than their tenant's retention (plan, shortened by
    /// the tenant's setting) with their messages and outbox items, and visitors nothing
    /// refers to any more; in batches, each its own transaction (the worker does this
    /// every hour). Interrupted, it simply continues on the next run.
    Run {
        /// Only this tenant (slug); else every tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Count what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Conversations (or visitors) per transaction, 1-10000 (default: retention.batch_size).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: Option<u32>,
        /// Messages per transaction, 1-10000 (default: retention.batch_messages).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_messages: Option<u32>,
        /// Milliseconds between two transactions (default: retention.pause_ms).
        #[arg(long, value_name = "MS")]
        pause_ms: Option<u64>,
    },
}

/// Run a retention command.
pub(crate) async fn run(g: &Global, cmd: RetentionCommand) -> anyhow::Result<ExitCode> {
    let (settings, db) = super::open(g).await?;
    match cmd {
        RetentionCommand::Run {
            tenant,
            dry_run,
            batch_size,
            batch_messages,
            pause_ms,
        } => {
            let mut configured = settings.retention.clone();
            if let Some(n) = batch_size {
                configured.batch_size = n;
            }
            if let Some(n) = batch_messages {
                configured.batch_messages = n;
            }
            if let Some(ms) = pause_ms {
                configured.pause_ms = ms;
            }
            let opts = Options {
                tenant,
                dry_run,
                batches: Batches::from_settings(&configured),
                stop: Default::default(),
            };
            let bar = if g.json {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(0).with_style(
                    ProgressStyle::with_template(
                        "{msg} {bar:30} {pos}/{len} conversations and visitors ({per_sec}, eta {eta})",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                )
            };
            let verb = if dry_run { "counting" } else { "deleting" };
            let report = retention::run(&db, &Caller::Operator, &opts, |p| {
                bar.set_length(p.total);
                bar.set_position(p.done);
                bar.set_message(format!("{verb} {}", output::safe(p.tenant)));
            })
            .await;
            bar.finish_and_clear();
            let report = report?;
            if g.json {
                output::json(&report)?;
            } else {
                print_report(&report);
            }
            if report.failed() {
                eprintln!("error: retention failed for some tenant(s); see the table");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &retention::Report) {
    let mut t = output::table(&[
        "tenant",
        "environment",
        "retention",
        "cutoff",
        "conversations",
        "messages",
        "outbox",
        "visitors",
        "visitor tokens",
        "topics",
        "error",
    ]);
    for r in &report.tenants {
        let p = &r.purged;
        t.add_row(vec![
            r.tenant.clone(),
            r.environment.as_str().to_string(),
            r.retention_days
                .map_or_else(|| "forever".to_string(), |d| format!("{d} days")),
            output::or_dash(r.cutoff.as_deref()),
            p.conversations.to_string(),
            p.messages.to_string(),
            p.outbox.to_string(),
            p.visitors.to_string(),
            p.visitor_tokens.to_string(),
            p.topics.to_string(),
            output::or_dash(r.error.as_deref()),
        ]);
    }
    output::print_table(&t);
    let p = &report.total;
    let what = if report.dry_run {
        "Would delete"
    } else {
        "Deleted"
    };
    println!(
        "{what} {} conversation(s), {} message(s), {} outbox item(s), {} visitor(s), {} visitor token(s); {} topic(s) {}",
        p.conversations,
        p.messages,
        p.outbox,
        p.visitors,
        p.visitor_tokens,
        p.topics,
        if report.dry_run {
            "would be deleted in Telegram"
        } else {
            "queued for deletion in Telegram"
        }
    );
}
