//! Visitors.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{Conn, models::VisitorRow, schema::visitors};
use crate::error::Result;
use crate::on_conn;

/// Insert a visitor.
pub async fn insert(conn: &mut Conn<'_>, row: &VisitorRow) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(visitors::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Find a visitor of `tenant_id` by the hash of their token.
pub async fn by_token_hash(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    token_hash: &str,
) -> Result<Option<VisitorRow>> {
    Ok(on_conn!(conn, |c| visitors::table
        .filter(visitors::tenant_id.eq(tenant_id))
        .filter(visitors::token_hash.eq(token_hash))
        .select(VisitorRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Find a visitor by token hash alone (the token identifies the tenant).
pub async fn by_token_hash_any(
    conn: &mut Conn<'_>,
    token_hash: &str,
) -> Result<Option<VisitorRow>> {
    Ok(on_conn!(conn, |c| visitors::table
        .filter(visitors::token_hash.eq(token_hash))
        .select(VisitorRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Find a visitor of `tenant_id` by id.
pub async fn get(conn: &mut Conn<'_>, tenant_id: &str, id: &str) -> Result<Option<VisitorRow>> {
    Ok(on_conn!(conn, |c| visitors::table
        .filter(visitors::tenant_id.eq(tenant_id))
        .filter(visitors::id.eq(id))
        .select(VisitorRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Record a new session (and locale and page when sent).
pub async fn touch(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
    locale: Option<&str>,
    page_url: Option<&str>,
    now: i64,
) -> Result<()> {
    on_conn!(conn, |c| {
        let target = visitors::table
            .filter(visitors::tenant_id.eq(tenant_id))
            .filter(visitors::id.eq(id));
        diesel::update(target)
            .set((
                visitors::last_seen_at.eq(now),
                locale.map(|l| visitors::locale.eq(l)),
                page_url.map(|p| visitors::page_url.eq(p)),
            ))
            .execute(c)
            .await
    })?;
    Ok(())
}
