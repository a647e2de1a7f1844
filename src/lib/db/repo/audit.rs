//! The audit log (`audit_log`): appended in the transaction of the change it records,
//! read in id order, deleted only by its own retention (the migration's triggers refuse
//! anything else).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{
    Conn,
    schema::{audit_log, audit_purge_gate},
};
use crate::error::Result;
use crate::on_conn;

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    /// Sequence number (the cursor).
    pub id: i64,
    /// Epoch ms.
    pub at: i64,
    /// The tenant; `None`: the platform.
    pub tenant_id: Option<String>,
    /// `key:<id>`, `cli:<user>@<host>`, `telegram:<user id>`, `stripe` or `system`.
    pub actor: String,
    /// The API key's name, for a key.
    pub actor_name: Option<String>,
    /// Stable action name.
    pub action: String,
    /// What was changed.
    pub target: Option<String>,
    /// The HTTP request id.
    pub request_id: Option<String>,
    /// JSON object of what changed.
    pub changes: String,
}

/// An entry to append.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_log)]
pub struct NewAuditRow<'a> {
    /// Epoch ms.
    pub at: i64,
    /// The tenant; `None`: the platform.
    pub tenant_id: Option<&'a str>,
    /// Who.
    pub actor: &'a str,
    /// The key's name.
    pub actor_name: Option<&'a str>,
    /// What.
    pub action: &'a str,
    /// On what.
    pub target: Option<&'a str>,
    /// The request.
    pub request_id: Option<&'a str>,
    /// JSON object.
    pub changes: &'a str,
}

/// Append one entry.
pub async fn insert(conn: &mut Conn<'_>, row: &NewAuditRow<'_>) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(audit_log::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    /// Only this tenant's entries (`None`: every tenant's and the platform's).
    pub tenant_id: Option<&'a str>,
    /// At or after, epoch ms.
    pub since: Option<i64>,
    /// Before, epoch ms.
    pub until: Option<i64>,
    /// Only this action.
    pub action: Option<&'a str>,
    /// Only this actor (exact).
    pub actor: Option<&'a str>,
}

/// Up to `limit` entries matching `filter` with ids above `after`, in id order.
pub async fn page(
    conn: &mut Conn<'_>,
    filter: &Filter<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditRow>> {
    Ok(on_conn!(conn, |c| {
        let mut q = audit_log::table
            .select(AuditRow::as_select())
            .filter(audit_log::id.gt(after))
            .into_boxed();
        if let Some(t) = filter.tenant_id {
            q = q.filter(audit_log::tenant_id.eq(t));
        }
        if let Some(s) = filter.since {
            q = q.filter(audit_log::at.ge(s));
        }
        if let Some(u) = filter.until {
            q = q.filter(audit_log::at.lt(u));
        }
        if let Some(a) = filter.action {
            q = q.filter(audit_log::action.eq(a));
        }
        if let Some(a) = filter.actor {
            q = q.filter(audit_log::actor.eq(a));
        }
        q.order(audit_log::id.asc()).limit(limit).load(c).await
    })?)
}

/// How many entries match `filter` (for an export's progress bar).
pub async fn count(conn: &mut Conn<'_>, filter: &Filter<'_>) -> Result<i64> {
    Ok(on_conn!(conn, |c| {
        let mut q = audit_log::table.count().into_boxed();
        if let Some(t) = filter.tenant_id {
            q = q.filter(audit_log::tenant_id.eq(t));
        }
        if let Some(s) = filter.since {
            q = q.filter(audit_log::at.ge(s));
        }
        if let Some(u) = filter.until {
            q = q.filter(audit_log::at.lt(u));
        }
        if let Some(a) = filter.action {
            q = q.filter(audit_log::action.eq(a));
        }
        if let Some(a) = filter.actor {
            q = q.filter(audit_log::actor.eq(a));
        }
        q.get_result(c).await
    })?)
}

/// Delete up to `limit` of the oldest entries written before `cutoff` (epoch ms); the
/// number deleted. Must run inside a transaction: it opens the purge gate the triggers
/// check and closes it again before returning.
pub async fn purge_before(conn: &mut Conn<'_>, cutoff: i64, limit: i64) -> Result<usize> {
    Ok(on_conn!(conn, |c| {
        diesel::insert_into(audit_purge_gate::table)
            .values(audit_purge_gate::one.eq(1))
            .execute(c)
            .await?;
        let ids: Vec<i64> = audit_log::table
            .select(audit_log::id)
            .filter(audit_log::at.lt(cutoff))
            .order(audit_log::id.asc())
            .limit(limit)
            .load(c)
            .await?;
        let n = diesel::delete(audit_log::table.filter(audit_log::id.eq_any(&ids)))
            .execute(c)
            .await?;
        diesel::delete(audit_purge_gate::table).execute(c).await?;
        Ok::<usize, diesel::result::Error>(n)
    })?)
}

/// Whether `tenant_id` has an entry of `action` on `target` (to record a replayed
/// external event once).
pub async fn exists(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    action: &str,
    target: &str,
) -> Result<bool> {
    Ok(on_conn!(conn, |c| diesel::select(diesel::dsl::exists(
        audit_log::table
            .filter(audit_log::tenant_id.eq(tenant_id))
            .filter(audit_log::action.eq(action))
            .filter(audit_log::target.eq(target))
    ))
    .get_result(c)
    .await)?)
}
