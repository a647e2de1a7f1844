//! The durable outbox: work that must reach another system (Telegram) is written in
//! the same transaction as the change that caused it, then delivered by workers with
//! leases, retries and rate budgets.
//!
//! Items of one *lane* (one Telegram chat) are delivered one at a time in order; a
//! lane that waits (429, backoff, budget) holds up nobody else. Any number of workers
//! can run side by side: claiming is a conditional update that only one wins.

pub mod admin;
pub mod backlog;
pub mod budget;
pub mod job;
pub mod worker;

pub use admin::OutboxStatus;
pub use job::Job;

use std::{sync::Arc, time::Duration};

use diesel_async::RunQueryDsl;
use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;
use utoipa::ToSchema;

use crate::db::{Conn, models::OutboxRow, repo};
use crate::domain::{TenantId, new_id, rfc3339};
use crate::error::Result;

/// The PostgreSQL notification channel workers listen on.
pub const NOTIFY_CHANNEL: &str = "chatorical_outbox";

/// The lane of a tenant's Telegram group for its main bot: one chat, one ordered queue.
pub fn telegram_lane(tenant_id: &str, chat_id: i64) -> String {
    TelegramLane {
        tenant_id: tenant_id.to_string(),
        chat_id,
        relay: None,
    }
    .key()
}

/// What a lane key stands for: the tenant's Telegram group, as one of its bots sees it.
/// Stored as `tg:<tenant id>:<chat id>` for the main bot and
/// `tg:<tenant id>:<chat id>:r<relay bot id>` for a relay bot; this type is the only
/// place that writes or reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramLane {
    /// The tenant whose group it is.
    pub tenant_id: String,
    /// The group's chat id.
    pub chat_id: i64,
    /// The relay bot (its Telegram user id) whose lane it is; `None`: the main bot's.
    pub relay: Option<i64>,
}

impl TelegramLane {
    /// The stored lane key.
    pub fn key(&self) -> String {
        match self.relay {
            None => format!("tg:{}:{}", self.tenant_id, self.chat_id),
            Some(bot) => format!("tg:{}:{}:r{bot}", self.tenant_id, self.chat_id),
        }
    }

    /// The lane a stored key names; `None` for a key of another shape.
    pub fn parse(key: &str) -> Option<TelegramLane> {
        let rest = key.strip_prefix("tg:")?;
        let (head, last) = rest.rsplit_once(':')?;
        let (rest, relay) = match last.strip_prefix('r') {
            Some(bot) => (head, Some(bot.parse().ok()?)),
            None => (rest, None),
        };
        let (tenant_id, chat) = rest.rsplit_once(':')?;
        Some(TelegramLane {
            tenant_id: tenant_id.to_string(),
            chat_id: chat.parse().ok()?,
            relay,
        })
    }
}

/// Wakes workers in this process when something was enqueued (other processes are
/// woken by PostgreSQL NOTIFY, or by their fallback poll).
#[derive(Clone, Default)]
pub struct Wakeup {
    notify: Arc<Notify>,
}

impl Wakeup {
    /// Wake every waiting worker (and the next one to wait).
    pub fn wake(&self) {
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Wait for a wake-up.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

/// Enqueue an item inside the caller's transaction. Enqueueing the same
/// `idempotency_key` again is a no-op; returns whether this call added it.
pub async fn enqueue(
    conn: &mut Conn<'_>,
    tenant_id: &TenantId,
    job: &Job,
    idempotency_key: &str,
    lane: &str,
    now: i64,
) -> Result<bool> {
    let row = outbox_row(tenant_id, job, idempotency_key, lane, now);
    let inserted = repo::outbox::enqueue(conn, &row).await?;
    if inserted {
        notify(conn).await?;
    }
    Ok(inserted)
}

/// One item for [`enqueue_many`]: what [`enqueue`] takes besides the tenant.
#[derive(Debug, Clone)]
pub struct NewItem {
    /// The work.
    pub job: Job,
    /// Unique per tenant; an item whose key is taken is not added again.
    pub idempotency_key: String,
    /// The ordered queue it joins.
    pub lane: String,
    /// When (ms): queued at and first due at.
    pub now: i64,
}

/// The queued row of an item.
fn outbox_row(
    tenant_id: &TenantId,
    job: &Job,
    idempotency_key: &str,
    lane: &str,
    now: i64,
) -> OutboxRow {
    OutboxRow {
        id: new_id("ob"),
        tenant_id: tenant_id.to_string(),
        kind: job.kind().to_string(),
        idempotency_key: idempotency_key.to_string(),
        lane: lane.to_string(),
        payload: job.payload().to_string(),
        status: OutboxStatus::Queued.as_str().into(),
        attempts: 0,
        next_attempt_at: now,
        lease_until: None,
        leased_by: None,
        last_error: None,
        created_at: now,
        updated_at: now,
        delivered_at: None,
        conversation_id: job.conversation_id().map(str::to_string),
    }
}

/// [`enqueue`] for many items of their tenants in the caller's transaction, in the
/// order given (their ids sort in that order, so a lane delivers them so): one INSERT
/// for all of them on PostgreSQL and one notification to the workers. Returns how
/// many were added (an item whose key is taken is skipped, as alone).
pub async fn enqueue_many(conn: &mut Conn<'_>, items: &[(TenantId, NewItem)]) -> Result<usize> {
    let rows: Vec<OutboxRow> = items
        .iter()
        .map(|(t, i)| outbox_row(t, &i.job, &i.idempotency_key, &i.lane, i.now))
        .collect();
    let added = repo::outbox::enqueue_many(conn, &rows).await?;
    if added > 0 {
        notify(conn).await?;
    }
    Ok(added)
}

/// Tell PostgreSQL's listening workers there is work (delivered when the caller's
/// transaction commits; nothing on SQLite, whose workers share this process's wakeup).
async fn notify(conn: &mut Conn<'_>) -> Result<()> {
    if let Conn::Pg(c, _) = conn {
        diesel::sql_query(format!("NOTIFY {NOTIFY_CHANNEL}"))
            .execute(&mut **c)
            .await?;
    }
    Ok(())
}

/// The Telegram message that carries stored messages (one, or the set of a combined
/// message) of the item's tenant: recorded on them in the transaction that marks the
/// item delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    /// The stored messages.
    pub message_ids: Vec<String>,
    /// Telegram's id of the message that carries them.
    pub telegram_message_id: i64,
    /// Whether a set of followers was recorded for the delivered item
    /// (`outbox_batches`): then recording the delivery marks them delivered and
    /// forgets the set. Without one that step is skipped.
    pub batch: bool,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; what the sent Telegram message carries, if it carries stored messages.
    Delivered(Option<Carried>),
    /// Try again after `after`. `counts` is false for waits that are not failures
    /// (a 429's retry_after), which never dead-letter an item.
    Retry {
        /// Delay before the next attempt.
        after: Duration,
        /// What went wrong.
        error: String,
        /// Whether this attempt counts towards `max_attempts`.
        counts: bool,
    },
    /// Permanent failure: dead-letter with the error, visible to the tenant.
    Dead {
        /// What went wrong.
        error: String,
    },
}

/// Exponential backoff with full jitter: a random delay in
/// `[cap/2, cap]` where `cap = min(base * 2^(attempt-1), max)`.
pub fn backoff(attempt: i32, base_ms: u64, max_secs: u64) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let cap_ms = base_ms
        .saturating_mul(1u64 << exp)
        .min(max_secs.saturating_mul(1000))
        .max(1);
    let ms = rand::rng().random_range(cap_ms / 2..=cap_ms);
    Duration::from_millis(ms)
}

/// An outbox item as operators see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutboxItemView {
    /// Opaque id.
    pub id: String,
    /// What it does.
    pub kind: String,
    /// Idempotency key.
    pub idempotency_key: String,
    /// queued | in_flight | delivered | dead | cancelled.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// RFC 3339, next attempt.
    pub next_attempt_at: String,
    /// Last error.
    pub last_error: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, if delivered.
    pub delivered_at: Option<String>,
    /// Payload; texts are `***` unless revealed.
    #[schema(value_type = Object)]
    pub payload: Value,
}

impl OutboxItemView {
    /// A view of a row; `reveal` shows texts in the payload.
    pub fn from_row(row: OutboxRow, reveal: bool) -> Self {
        let payload: Value = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
        OutboxItemView {
            id: row.id,
            kind: row.kind,
            idempotency_key: row.idempotency_key,
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: rfc3339(row.next_attempt_at),
            last_error: row.last_error,
            created_at: rfc3339(row.created_at),
            delivered_at: row.delivered_at.map(rfc3339),
            payload: if reveal { payload } else { redact(payload) },
        }
    }
}

/// Keep ids, hide everything else.
pub fn redact(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let keep = k.ends_with("_id") || k == "kind";
                    (k, if keep { v } else { Value::String("***".into()) })
                })
                .collect(),
        ),
        _ => Value::String("***".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..40 {
            let d = backoff(attempt, 500, 300);
            assert!(d <= Duration::from_secs(300));
            let cap = (500u64 << (attempt - 1).min(30)).min(300_000);
            assert!(
                d >= Duration::from_millis(cap / 2),
                "attempt {attempt}: {d:?}"
            );
        }
    }

    #[test]
    fn telegram_lane_keys_round_trip() {
        let lane = TelegramLane {
            tenant_id: "tn_01a".into(),
            chat_id: -100_123,
            relay: None,
        };
        assert_eq!(lane.key(), "tg:tn_01a:-100123");
        assert_eq!(TelegramLane::parse(&lane.key()), Some(lane));
        let relay = TelegramLane {
            tenant_id: "tn_01a".into(),
            chat_id: -100_123,
            relay: Some(777),
        };
        assert_eq!(relay.key(), "tg:tn_01a:-100123:r777");
        assert_eq!(TelegramLane::parse(&relay.key()), Some(relay));
        assert_eq!(TelegramLane::parse("tg:tn_01a:-100123:rx"), None);
        assert_eq!(TelegramLane::parse("tg:tn_01a:x"), None);
        assert_eq!(TelegramLane::parse("other:lane"), None);
    }

    #[test]
    fn redaction_keeps_ids_only() {
        let v = serde_json::json!({"conversation_id": "cv_1", "text": "secret", "topic_id": 5});
        let r = redact(v);
        assert_eq!(r["conversation_id"], "cv_1");
        assert_eq!(r["topic_id"], 5);
        assert_eq!(r["text"], "***");
    }
}
