//! Master key rotation: which key every sealed tenant secret is under, re-encrypting
//! them under the newest key, and the check that nothing needs an old key any more.
//!
//! The key file lists identities newest first (see [`MasterKey`]). A rotation is:
//! 1. `secrets rotate` puts a new identity first and keeps the old ones (one atomic
//!    file write), then re-encrypts, batch by batch, every value not yet under the
//!    newest identity. Each batch is one transaction; each row is replaced only while it
//!    still holds the value that was read, so re-running after a crash, or concurrently
//!    with a server sealing new values, simply finishes the job.
//! 2. `secrets retire-old` drops the old identities once [`not_under_newest`] is zero.
//!
//! Running processes decrypt with every identity in the file, so they keep working
//! through the whole window; they re-read the file when it changes (see
//! [`MasterKey::reload_if_changed`]).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::crypto::{MasterKey, Resealed};
use crate::db::{Db, repo};

/// The columns that hold sealed secrets.
pub use crate::db::repo::secrets::SealedColumn;
use crate::error::Result;
use crate::tenancy::Caller;
use crate::transaction;

/// The field name a column's values are bound to inside the ciphertext (for a relay's
/// columns, the name they are counted under: each relay's values are bound to a field
/// naming the relay, see [`binding`]).
pub fn field(column: SealedColumn) -> &'static str {
    match column {
        SealedColumn::BotToken => crate::telegram::FIELD_BOT_TOKEN,
        SealedColumn::WebhookSecret => crate::telegram::FIELD_WEBHOOK_SECRET,
        SealedColumn::IdentitySecret => crate::identity::FIELD_SECRET,
        SealedColumn::RelayBotToken => "telegram.relay.bot_token",
        SealedColumn::RelayWebhookSecret => "telegram.relay.webhook_secret",
    }
}

/// The tenant and the field a value of `column` in the row `row_key` (see
/// [`repo::secrets::page`]) is bound to.
pub fn binding(column: SealedColumn, row_key: &str) -> (String, String) {
    let relay = |what: &str| match repo::secrets::parse_relay_row_key(row_key) {
        Some((tenant, bot)) => (tenant.to_string(), crate::telegram::relay_field(bot, what)),
        None => (row_key.to_string(), String::new()),
    };
    match column {
        SealedColumn::RelayBotToken => relay("bot_token"),
        SealedColumn::RelayWebhookSecret => relay("webhook_secret"),
        other => (row_key.to_string(), field(other).to_string()),
    }
}

/// Sealed values per field (`telegram.bot_token`, …) and in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Per field name (every field, zeros included).
    pub by_field: BTreeMap<&'static str, u64>,
    /// All fields.
    pub total: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            by_field: SealedColumn::ALL.iter().map(|c| (field(*c), 0)).collect(),
            total: 0,
        }
    }
}

impl Counts {
    fn add(&mut self, column: SealedColumn) {
        *self.by_field.entry(field(column)).or_default() += 1;
        self.total += 1;
    }

    /// The count of one field.
    pub fn of(&self, column: SealedColumn) -> u64 {
        self.by_field.get(field(column)).copied().unwrap_or(0)
    }
}

/// The secrets sealed under one identity of the key file.
#[derive(Debug, Clone, Serialize)]
pub struct KeyUse {
    /// The identity's public key (`age1…`), never the secret key.
    pub public_key: String,
    /// Whether it is the newest (first) identity, the one that encrypts.
    pub newest: bool,
    /// What it seals.
    pub secrets: Counts,
}

/// Where every sealed secret stands.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// One entry per identity in the key file, newest first.
    pub keys: Vec<KeyUse>,
    /// Values no identity in the file can open (sealed under a key that is gone).
    pub unreadable: Counts,
    /// All sealed values.
    pub total: u64,
}

impl Status {
    /// Values that still need an identity other than the newest (old or unknown keys).
    pub fn not_under_newest(&self) -> u64 {
        self.total - self.keys.first().map_or(0, |k| k.secrets.total)
    }
}

/// A value `reencrypt` could not move to the newest key.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The tenant's id.
    pub tenant_id: String,
    /// The field (`telegram.bot_token`, …).
    pub field: &'static str,
    /// Why (never the value).
    pub reason: String,
}

/// What [`reencrypt`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Sealed values looked at.
    pub total: u64,
    /// Re-encrypted under the newest identity.
    pub reencrypted: Counts,
    /// Already under the newest identity (a finished earlier run): skipped.
    pub already_current: u64,
    /// Changed by someone else between read and write (sealed anew): left alone.
    pub changed_meanwhile: u64,
    /// Could not be opened or were bound to another tenant or field.
    pub failed: Vec<Failure>,
}

/// How many sealed values the database holds.
pub async fn count(db: &Db) -> Result<u64> {
    let mut pc = db.conn().await?;
    let mut total = 0;
    for column in SealedColumn::ALL {
        total += repo::secrets::count(&mut pc.as_conn(), column).await?;
    }
    Ok(total.max(0) as u64)
}

/// Which identity of `key` every sealed value is under.
pub async fn status(db: &Db, key: &MasterKey, batch_size: i64) -> Result<Status> {
    let fingerprints = key.fingerprints();
    let mut per_key = vec![Counts::default(); fingerprints.len()];
    let mut unreadable = Counts::default();
    let mut total = 0;
    let mut pc = db.conn().await?;
    for column in SealedColumn::ALL {
        let mut after = String::new();
        loop {
            let page =
                repo::secrets::page(&mut pc.as_conn(), column, &after, batch_size.max(1)).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            for (_, stored) in &page {
                total += 1;
                match key.sealed_under(stored) {
                    Some(i) => per_key[i].add(column),
                    None => unreadable.add(column),
                }
            }
        }
    }
    let keys = fingerprints
        .into_iter()
        .zip(per_key)
        .enumerate()
        .map(|(i, (public_key, secrets))| KeyUse {
            public_key,
            newest: i == 0,
            secrets,
        })
        .collect();
    Ok(Status {
        keys,
        unreadable,
        total,
    })
}

/// Re-encrypt every sealed value not yet under `key`'s newest identity, `batch_size`
/// rows per transaction; `progress` gets the number of values done after each batch.
/// A run that re-encrypted anything records one `secrets.rotated` entry at its end
/// (counts only: never a key, a fingerprint or a value), after its batches — the work
/// spans many transactions by design; an interrupted run records when a re-run
/// finishes it.
pub async fn reencrypt(
    db: &Db,
    caller: &Caller,
    key: &MasterKey,
    batch_size: i64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report> {
    let mut report = Report::default();
    let mut pc = db.conn().await?;
    for column in SealedColumn::ALL {
        let field = field(column);
        let mut after = String::new();
        loop {
            let page =
                repo::secrets::page(&mut pc.as_conn(), column, &after, batch_size.max(1)).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            // Decrypt and encrypt outside the transaction: it only holds the writes.
            let mut updates = Vec::new();
            for (row_key, stored) in page {
                report.total += 1;
                let (tenant_id, bound) = binding(column, &row_key);
                match key.reseal(&tenant_id, &bound, &stored) {
                    Ok(Resealed::Current) => report.already_current += 1,
                    Ok(Resealed::New(sealed)) => updates.push((row_key, stored, sealed)),
                    Err(_) => report.failed.push(Failure {
                        tenant_id,
                        field,
                        reason: "no identity in the key file opens it for this tenant and field"
                            .into(),
                    }),
                }
            }
            if !updates.is_empty() {
                let mut conn = pc.as_conn();
                let replaced = transaction!(&mut conn, |tx| {
                    let mut replaced = Vec::with_capacity(updates.len());
                    for (tenant_id, old, new) in &updates {
                        replaced
                            .push(repo::secrets::replace(tx, column, tenant_id, old, new).await?);
                    }
                    Ok(replaced)
                })?;
                for done in replaced {
                    if done {
                        report.reencrypted.add(column);
                    } else {
                        report.changed_meanwhile += 1;
                    }
                }
            }
            progress(report.total);
        }
    }
    if report.reencrypted.total > 0 {
        let mut conn = pc.as_conn();
        let changes = serde_json::json!({
            "reencrypted": report.reencrypted.total,
            "already_current": report.already_current,
            "changed_meanwhile": report.changed_meanwhile,
            "failed": report.failed.len(),
            "identities": key.len(),
        });
        transaction!(&mut conn, |tx| {
            crate::audit::record(
                tx,
                caller,
                crate::audit::Entry::new(crate::audit::Action::SecretsRotated).changes(changes),
            )
            .await
        })?;
    }
    Ok(report)
}
