//! `chatorical migrate [--dry-run]`.

use std::{process::ExitCode, time::Duration};

use clap::Args;
use indicatif::ProgressBar;

use chatorical::db::Db;

use crate::cli::Global;
use crate::output;

/// Arguments of `migrate`.
#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// List pending migrations without applying them.
    #[arg(long)]
    pub dry_run: bool,
}

/// Apply (or list) pending migrations.
pub(crate) async fn run(g: &Global, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g, None)?;
    let settings = loaded.settings;
    chatorical::telemetry::init(settings.log.format, "warn");
    let db = Db::connect_with(
        &settings.database_url()?,
        2,
        settings.database.busy_timeout_ms,
        settings.database_options()?,
    )
    .await?;
    let pending = db.pending_migrations().await?;
    if args.dry_run {
        if g.json {
            output::json(&serde_json::json!({ "pending": pending }))?;
        } else if pending.is_empty() {
            println!("No pending migrations.");
        } else {
            let mut t = output::table(&["pending migration"]);
            for p in &pending {
                t.add_row(vec![p.clone()]);
            }
            output::print_table(&t);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let spinner = (!g.json && !pending.is_empty()).then(|| {
        let s = ProgressBar::new_spinner()
            .with_message(format!("applying {} migration(s)", pending.len()));
        s.enable_steady_tick(Duration::from_millis(100));
        s
    });
    let applied = db.migrate().await;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let applied = applied?;
    if g.json {
        output::json(&serde_json::json!({ "applied": applied }))?;
    } else if applied.is_empty() {
        println!("Database is up to date.");
    } else {
        for a in &applied {
            println!("applied {a}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
