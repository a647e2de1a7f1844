//! The operators' outbox operations, shared by `GET/POST /v1/admin/outbox…` and
//! `chatorical outbox …`: the caller's scopes and tenant are checked here, once.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::db::{Db, repo};
use crate::domain::{Scope, ScopeAccess, now_ms};
use crate::error::{Error, ErrorCode, Result};
use crate::tenancy::{Caller, Tenant};

use super::OutboxItemView;

/// Where an outbox item is in its life. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for a worker (possibly until `next_attempt_at`).
    Queued,
    /// Leased by a worker that is delivering it.
    InFlight,
    /// Delivered; kept for a while, then pruned.
    Delivered,
    /// Given up on (a permanent refusal, or too many attempts); an operator may retry it.
    Dead,
}

impl OutboxStatus {
    /// Every status, in life order.
    pub const ALL: [OutboxStatus; 4] = [
        OutboxStatus::Queued,
        OutboxStatus::InFlight,
        OutboxStatus::Delivered,
        OutboxStatus::Dead,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Queued => "queued",
            OutboxStatus::InFlight => "in_flight",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Dead => "dead",
        }
    }

    /// Parse a filter given by a caller; `field` names it in the error.
    pub fn parse(field: &str, s: &str) -> Result<Self> {
        s.parse().map_err(|()| {
            Error::validation(
                field,
                format!("{field} must be queued, in_flight, delivered or dead"),
            )
        })
    }
}

impl FromStr for OutboxStatus {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        OutboxStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or(())
    }
}

impl fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which items to list.
#[derive(Debug, Clone, Copy)]
pub struct ItemFilter {
    /// Only items in this status.
    pub status: Option<OutboxStatus>,
    /// At most this many (clamped to 1..=`max`).
    pub limit: i64,
    /// Show payload texts (needs `outbox:reveal`).
    pub reveal: bool,
}

/// A tenant's outbox items, newest first (`outbox:read`; texts redacted unless
/// `reveal`, which needs `outbox:reveal`). `max` bounds the limit for this entry point.
pub async fn list_items(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    filter: ItemFilter,
    max: i64,
) -> Result<Vec<OutboxItemView>> {
    caller.require(&Scope::new(
        crate::domain::Resource::Outbox,
        ScopeAccess::Read,
    ))?;
    if filter.reveal {
        caller.require(&Scope::new(
            crate::domain::Resource::Outbox,
            ScopeAccess::Reveal,
        ))?;
    }
    caller.check_tenant(tenant)?;
    let mut pc = db.conn().await?;
    let rows = repo::outbox::list(
        &mut pc.as_conn(),
        &tenant.id,
        filter.status.map(OutboxStatus::as_str),
        filter.limit.clamp(1, max),
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| OutboxItemView::from_row(r, filter.reveal))
        .collect())
}

/// Put a dead item back in the queue (`outbox:write`): `not_found` for an id the tenant
/// does not have, `conflict` for an item that is not dead (nothing changes then).
/// Checked, done and recorded (`outbox.retried`) in one transaction. The caller wakes
/// its workers.
pub async fn retry_item(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    id: &str,
) -> Result<OutboxItemView> {
    caller.require(&Scope::new(
        crate::domain::Resource::Outbox,
        ScopeAccess::Write,
    ))?;
    caller.check_tenant(tenant)?;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let tenant_id = tenant.id.as_str();
    let row = crate::transaction!(&mut conn, |tx| {
        let row = repo::outbox::get(tx, tenant_id, id)
            .await?
            .ok_or_else(|| Error::not_found("outbox item"))?;
        if row.status != OutboxStatus::Dead.as_str() {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("only dead items can be retried; this one is {}", row.status),
            )
            .with_details(serde_json::json!({ "status": row.status })));
        }
        repo::outbox::retry_dead(tx, tenant_id, id, now_ms()).await?;
        crate::audit::record(
            tx,
            caller,
            crate::audit::Entry::new(crate::audit::Action::OutboxRetried)
                .tenant(&tenant.id)
                .target(id)
                .changes(serde_json::json!({
                    "kind": row.kind,
                    "attempts": row.attempts,
                })),
        )
        .await?;
        repo::outbox::get(tx, tenant_id, id)
            .await?
            .ok_or_else(|| Error::not_found("outbox item"))
    })?;
    Ok(OutboxItemView::from_row(row, false))
}

/// The whole outbox as `/metrics` shows it (every tenant: an operator's view).
#[derive(Debug, Clone, Default)]
pub struct OutboxGauges {
    /// Items per status (a status whose count could not be read is left out).
    pub counts: Vec<(OutboxStatus, i64)>,
    /// When the oldest queued or in-flight item was created, epoch ms.
    pub oldest_pending_at: Option<i64>,
}

/// Read the outbox gauges; `Err` only when the database cannot be reached.
pub async fn gauges(db: &Db) -> Result<OutboxGauges> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let mut out = OutboxGauges::default();
    for status in OutboxStatus::ALL {
        if let Ok(n) = repo::outbox::count_by_status(&mut conn, status.as_str()).await {
            out.counts.push((status, n));
        }
    }
    out.oldest_pending_at = repo::outbox::oldest_pending(&mut conn).await.ok().flatten();
    Ok(out)
}
