//! Conversations.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{Conn, models::ConversationRow, schema::conversations};
use crate::domain::new_id;
use crate::error::Result;
use crate::on_conn;

/// The visitor's open conversation, if any.
pub async fn open_for_visitor(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    visitor_id: &str,
) -> Result<Option<ConversationRow>> {
    Ok(on_conn!(conn, |c| conversations::table
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::visitor_id.eq(visitor_id))
        .filter(conversations::status.eq("open"))
        .select(ConversationRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// The visitor's open conversation, created if there is none. The unique partial
/// index on open conversations makes concurrent starts converge on one row.
/// Returns the conversation and whether this call created it.
pub async fn open_or_create(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    visitor_id: &str,
    now: i64,
) -> Result<(ConversationRow, bool)> {
    if let Some(existing) = open_for_visitor(conn, tenant_id, visitor_id).await? {
        return Ok((existing, false));
    }
    let row = ConversationRow {
        id: new_id("cv"),
        tenant_id: tenant_id.to_string(),
        visitor_id: visitor_id.to_string(),
        status: "open".into(),
        last_seq: 0,
        created_at: now,
        updated_at: now,
        closed_at: None,
    };
    let inserted = on_conn!(conn, |c| diesel::insert_into(conversations::table)
        .values(&row)
        .on_conflict_do_nothing()
        .execute(c)
        .await)?;
    match open_for_visitor(conn, tenant_id, visitor_id).await? {
        Some(found) => Ok((found, inserted == 1)),
        None => Err(crate::error::Error::internal(
            "open conversation vanished after insert",
        )),
    }
}

/// One conversation of the tenant.
pub async fn get(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
) -> Result<Option<ConversationRow>> {
    Ok(on_conn!(conn, |c| conversations::table
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .select(ConversationRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// The tenant's conversations, most recently active first.
pub async fn list(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<ConversationRow>> {
    Ok(on_conn!(conn, |c| {
        let mut q = conversations::table
            .filter(conversations::tenant_id.eq(tenant_id))
            .select(ConversationRow::as_select())
            .order((conversations::updated_at.desc(), conversations::id.desc()))
            .limit(limit)
            .into_boxed();
        if let Some(s) = status {
            q = q.filter(conversations::status.eq(s));
        }
        q.load(c).await
    })?)
}

/// Close an open conversation. Returns whether it was open.
pub async fn close(conn: &mut Conn<'_>, tenant_id: &str, id: &str, now: i64) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .filter(conversations::status.eq("open"))
        .set((
            conversations::status.eq("closed"),
            conversations::closed_at.eq(now),
            conversations::updated_at.eq(now),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Take the next seq of an open conversation (locks the row until commit).
/// `None` when the conversation is not open (or not the tenant's).
pub async fn next_seq(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
    now: i64,
) -> Result<Option<i64>> {
    Ok(on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .filter(conversations::status.eq("open"))
        .set((
            conversations::last_seq.eq(conversations::last_seq + 1),
            conversations::updated_at.eq(now),
        ))
        .returning(conversations::last_seq)
        .get_result::<i64>(c)
        .await
        .optional())?)
}
