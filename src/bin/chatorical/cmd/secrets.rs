//! `chatorical secrets status|rotate|retire-old`: master key rotation.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use chatorical::{
    config::Settings,
    crypto::MasterKey,
    error::{Error, ErrorCode},
    secrets::{self, Counts, SealedColumn},
    tenancy::Caller,
};

use crate::cli::Global;
use crate::output;

/// Secrets commands.
#[derive(Debug, Subcommand)]
pub(crate) enum SecretsCommand {
    /// How many tenant secrets are sealed under which key of the master key file (keys
    /// are shown by their public key, `age1…`).
    Status(BatchArgs),
    /// Put a new key first in the master key file (the old one stays, so running servers
    /// keep decrypting), then re-encrypt every tenant secret under it. Re-running after
    /// an interruption finishes the same rotation; values already under the new key are
    /// skipped. Then run `secrets retire-old`.
    Rotate(BatchArgs),
    /// Remove every key but the newest from the master key file. Refused while any
    /// secret is not sealed under the newest key.
    RetireOld,
}

/// Paging through the secrets.
#[derive(Debug, Args)]
pub(crate) struct BatchArgs {
    /// Rows per batch (and per transaction when re-encrypting).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub batch_size: i64,
}

/// Run a secrets command.
pub(crate) async fn run(g: &Global, cmd: SecretsCommand) -> anyhow::Result<ExitCode> {
    let settings = super::load(g, None)?.settings;
    let path = settings.master_key_path();
    // Fails on a missing, unreadable, invalid or group/other-readable key file before
    // anything else happens; never creates a key.
    let key = MasterKey::load_private(&path)?;
    match cmd {
        SecretsCommand::Status(b) => status(g, &settings, &key, b.batch_size).await,
        SecretsCommand::Rotate(b) => rotate(g, &settings, key, b.batch_size).await,
        SecretsCommand::RetireOld => retire_old(g, &settings, &key).await,
    }
}

async fn status(
    g: &Global,
    settings: &Settings,
    key: &MasterKey,
    batch: i64,
) -> anyhow::Result<ExitCode> {
    let (_, db) = super::open(g).await?;
    let status = secrets::status(&db, key, batch).await?;
    if g.json {
        output::json(&serde_json::json!({
            "key_file": settings.master_key_path(),
            "keys": status.keys,
            "unreadable": status.unreadable,
            "total": status.total,
            "not_under_newest": status.not_under_newest(),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = counts_table(&["key", "role"]);
    for k in &status.keys {
        let role = if k.newest { "newest (encrypts)" } else { "old" };
        t.add_row(counts_row(
            vec![k.public_key.clone(), role.into()],
            &k.secrets,
        ));
    }
    if status.unreadable.total > 0 {
        t.add_row(counts_row(
            vec!["(not in the key file)".into(), "unreadable".into()],
            &status.unreadable,
        ));
    }
    output::print_table(&t);
    println!(
        "{} secret(s) in all; {} not under the newest key.",
        status.total,
        status.not_under_newest()
    );
    Ok(ExitCode::SUCCESS)
}

async fn rotate(
    g: &Global,
    settings: &Settings,
    key: MasterKey,
    batch: i64,
) -> anyhow::Result<ExitCode> {
    let path = settings.master_key_path();
    // One key: start a rotation. Several: one is under way (or was interrupted), finish
    // it under the newest key instead of piling up keys.
    let started = key.len() == 1;
    let key = if started {
        key.rotated_to(MasterKey::generate()).write_file(&path)?;
        MasterKey::load_private(&path)?
    } else {
        key
    };
    let fingerprints = key.fingerprints();
    let (_, db) = super::open(g).await?;
    let total = secrets::count(&db).await?;
    let bar = if g.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total).with_style(
            ProgressStyle::with_template("re-encrypting {bar:30} {pos}/{len} secrets ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    };
    let report = secrets::reencrypt(&db, &Caller::Operator, &key, batch, &|done| {
        bar.set_position(done)
    })
    .await;
    bar.finish_and_clear();
    let report = report?;
    let remaining = secrets::status(&db, &key, batch).await?.not_under_newest();
    let ok = report.failed.is_empty();
    if g.json {
        output::json(&serde_json::json!({
            "key_file": path,
            "started": started,
            "new_key": fingerprints[0],
            "old_keys": &fingerprints[1..],
            "total": report.total,
            "reencrypted": report.reencrypted,
            "already_current": report.already_current,
            "changed_meanwhile": report.changed_meanwhile,
            "failed": report.failed,
            "not_under_newest": remaining,
        }))?;
    } else {
        let mut t = output::table(&["", ""]);
        t.add_row(vec![
            "rotation".into(),
            if started {
                "started: new key written first in the key file".to_string()
            } else {
                "resumed: the key file already held a new key".to_string()
            },
        ]);
        t.add_row(vec!["new key".into(), fingerprints[0].clone()]);
        t.add_row(vec!["old key(s)".into(), fingerprints[1..].join("\n")]);
        for column in SealedColumn::ALL {
            t.add_row(vec![
                format!("re-encrypted {}", secrets::field(column)),
                report.reencrypted.of(column).to_string(),
            ]);
        }
        t.add_row(vec![
            "already under the new key".into(),
            report.already_current.to_string(),
        ]);
        t.add_row(vec![
            "changed meanwhile".into(),
            report.changed_meanwhile.to_string(),
        ]);
        t.add_row(vec!["failed".into(), report.failed.len().to_string()]);
        t.add_row(vec!["not under the new key".into(), remaining.to_string()]);
        output::print_table(&t);
        if !ok {
            let mut f = output::table(&["tenant id", "field", "reason"]);
            for x in &report.failed {
                f.add_row(vec![x.tenant_id.clone(), x.field.into(), x.reason.clone()]);
            }
            output::print_table(&f);
        }
        if remaining == 0 {
            println!(
                "Every secret is under the new key. Copy {} to every node (running servers re-read it within 30 s, or at once on SIGHUP), then run `chatorical secrets retire-old`.",
                path.display()
            );
        } else {
            println!("Run `chatorical secrets rotate` again to finish.");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn retire_old(g: &Global, settings: &Settings, key: &MasterKey) -> anyhow::Result<ExitCode> {
    let path = settings.master_key_path();
    let fingerprints = key.fingerprints();
    if fingerprints.len() > 1 {
        let (_, db) = super::open(g).await?;
        let status = secrets::status(&db, key, 100).await?;
        let left = status.not_under_newest();
        if left > 0 {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "{left} secret(s) are not sealed under the newest key {}; run `chatorical secrets rotate` first (see `chatorical secrets status`)",
                    fingerprints[0]
                ),
            )
            .into());
        }
        key.newest_only().write_file(&path)?;
    }
    let retired = &fingerprints[1..];
    if g.json {
        output::json(&serde_json::json!({
            "key_file": path,
            "key": fingerprints[0],
            "retired": retired,
        }))?;
    } else if retired.is_empty() {
        println!(
            "Nothing to retire: {} holds one key ({}).",
            path.display(),
            fingerprints[0]
        );
    } else {
        let mut t = output::table(&["key", "state"]);
        t.add_row(vec![fingerprints[0].clone(), "kept (newest)".into()]);
        for r in retired {
            t.add_row(vec![r.clone(), "retired".into()]);
        }
        output::print_table(&t);
        println!(
            "Copy {} to every node; running servers drop the old key within 30 s, or at once on SIGHUP.",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn counts_table(first: &[&str]) -> comfy_table::Table {
    let mut header: Vec<&str> = first.to_vec();
    header.extend(SealedColumn::ALL.map(secrets::field));
    header.push("total");
    output::table(&header)
}

fn counts_row(mut row: Vec<String>, c: &Counts) -> Vec<String> {
    row.extend(SealedColumn::ALL.map(|col| c.of(col).to_string()));
    row.push(c.total.to_string());
    row
}
