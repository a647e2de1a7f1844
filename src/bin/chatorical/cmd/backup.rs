//! `chatorical backup --out FILE` and `chatorical restore --from FILE`: the embedded
//! SQLite database (on PostgreSQL: exit 2 and a pointer to pg_dump / pg_restore).

use std::{path::PathBuf, process::ExitCode};

use clap::Args;
use serde::Serialize;

use chatorical::backup::{self, Backup, MASTER_KEY_NOTE, POSTGRES_HINT, Restore};

use crate::cli::Global;
use crate::output;

/// Arguments of `backup`.
#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// File to write the copy to (must not exist yet). Safe while `serve` runs.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `restore`.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// Backup file to restore (made by `chatorical backup`). Stop `serve` and every
    /// `worker` first; the database it replaces is kept beside it.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
}

/// The exit code on PostgreSQL, where these commands do not apply.
const NOT_EMBEDDED: u8 = 2;

#[derive(Serialize)]
struct WithNote<'a, T: Serialize> {
    #[serde(flatten)]
    report: &'a T,
    master_key_note: &'static str,
}

/// Load settings; `None` (after saying so) on PostgreSQL.
fn embedded(g: &Global) -> anyhow::Result<Option<chatorical::config::Settings>> {
    let settings = super::load(g, None)?.settings;
    chatorical::telemetry::init(
        settings.log.format,
        &super::quiet_filter(&settings.log.filter),
    );
    if settings.is_embedded() {
        Ok(Some(settings))
    } else {
        eprintln!("error: {POSTGRES_HINT}");
        Ok(None)
    }
}

/// Take a backup of the embedded database.
pub(crate) async fn run_backup(g: &Global, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let Some(settings) = embedded(g)? else {
        return Ok(ExitCode::from(NOT_EMBEDDED));
    };
    let report =
        tokio::task::spawn_blocking(move || backup::backup(&settings, &args.out)).await??;
    if g.json {
        output::json(&WithNote {
            report: &report,
            master_key_note: MASTER_KEY_NOTE,
        })?;
    } else {
        print_backup(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// Restore the embedded database from a backup.
pub(crate) async fn run_restore(g: &Global, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let Some(settings) = embedded(g)? else {
        return Ok(ExitCode::from(NOT_EMBEDDED));
    };
    let report =
        tokio::task::spawn_blocking(move || backup::restore(&settings, &args.from)).await??;
    if g.json {
        output::json(&WithNote {
            report: &report,
            master_key_note: MASTER_KEY_NOTE,
        })?;
    } else {
        print_restore(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_backup(r: &Backup) {
    let mut t = output::table(&["backup", ""]);
    t.add_row(vec!["database".into(), r.database.display().to_string()]);
    t.add_row(vec!["written to".into(), r.out.display().to_string()]);
    t.add_row(vec!["size".into(), format!("{} bytes", r.bytes)]);
    t.add_row(vec!["duration".into(), format!("{} ms", r.duration_ms)]);
    t.add_row(vec!["integrity_check".into(), r.integrity.clone()]);
    t.add_row(vec!["messages".into(), r.messages.to_string()]);
    output::print_table(&t);
    println!(
        "Note: {MASTER_KEY_NOTE}. The master key file is {}.",
        r.master_key_file.display()
    );
}

fn print_restore(r: &Restore) {
    let mut t = output::table(&["restore", ""]);
    t.add_row(vec!["database".into(), r.database.display().to_string()]);
    t.add_row(vec!["restored from".into(), r.from.display().to_string()]);
    t.add_row(vec!["size".into(), format!("{} bytes", r.bytes)]);
    t.add_row(vec!["messages".into(), r.messages.to_string()]);
    t.add_row(vec!["duration".into(), format!("{} ms", r.duration_ms)]);
    match &r.replaced {
        Some(old) => {
            t.add_row(vec![
                "replaced".into(),
                format!(
                    "{} bytes, {} messages, kept as {}",
                    old.bytes,
                    old.messages
                        .map_or_else(|| "?".to_string(), |n| n.to_string()),
                    old.kept_as.display()
                ),
            ]);
        }
        None => {
            t.add_row(vec!["replaced", "nothing (no database yet)"]);
        }
    }
    output::print_table(&t);
    if let Some(old) = &r.replaced {
        println!(
            "The replaced database is kept as {}; delete it once the restored data is confirmed.",
            old.kept_as.display()
        );
    }
    println!(
        "Note: {MASTER_KEY_NOTE}. The restored secrets need the master key the backup was \
         taken with, at {}.",
        r.master_key_file.display()
    );
}
