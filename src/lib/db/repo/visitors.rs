//! Visitors.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{
    Conn,
    models::{TenantRow, VisitorRow},
    schema::{plans, tenants, visitor_tokens, visitors},
};
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

/// Find a visitor of `tenant_id` by the hash of one of their tokens (the first
/// device's, or another device's in `visitor_tokens`). An erased visitor is never found.
pub async fn by_token_hash(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    token_hash: &str,
) -> Result<Option<VisitorRow>> {
    let first = on_conn!(conn, |c| visitors::table
        .filter(visitors::tenant_id.eq(tenant_id))
        .filter(visitors::token_hash.eq(token_hash))
        .filter(visitors::erased_at.is_null())
        .select(VisitorRow::as_select())
        .first(c)
        .await
        .optional())?;
    if first.is_some() {
        return Ok(first);
    }
    Ok(on_conn!(conn, |c| visitor_tokens::table
        .inner_join(visitors::table)
        .filter(visitor_tokens::token_hash.eq(token_hash))
        .filter(visitor_tokens::tenant_id.eq(tenant_id))
        .filter(visitors::tenant_id.eq(tenant_id))
        .filter(visitors::erased_at.is_null())
        .select(VisitorRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Find a visitor by token hash alone (the token identifies the tenant); any of the
/// visitor's device tokens.
pub async fn by_token_hash_any(
    conn: &mut Conn<'_>,
    token_hash: &str,
) -> Result<Option<VisitorRow>> {
    let first = on_conn!(conn, |c| visitors::table
        .filter(visitors::token_hash.eq(token_hash))
        .filter(visitors::erased_at.is_null())
        .select(VisitorRow::as_select())
        .first(c)
        .await
        .optional())?;
    if first.is_some() {
        return Ok(first);
    }
    Ok(on_conn!(conn, |c| visitor_tokens::table
        .inner_join(visitors::table)
        .filter(visitor_tokens::token_hash.eq(token_hash))
        .filter(visitors::erased_at.is_null())
        .select(VisitorRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Like [`by_token_hash_any`], with the visitor's tenant and its plan's limit on
/// messages a day (`None`: unlimited): one joined statement for a visitor's first token
/// (every authenticated widget request), four for a device token.
pub async fn by_token_hash_any_with_tenant(
    conn: &mut Conn<'_>,
    token_hash: &str,
) -> Result<Option<(VisitorRow, TenantRow, Option<i32>)>> {
    let first = on_conn!(conn, |c| visitors::table
        .inner_join(tenants::table.inner_join(plans::table))
        .filter(visitors::token_hash.eq(token_hash))
        .filter(visitors::erased_at.is_null())
        .select((
            VisitorRow::as_select(),
            TenantRow::as_select(),
            plans::messages_per_day,
        ))
        .first(c)
        .await
        .optional())?;
    if first.is_some() {
        return Ok(first);
    }
    let Some(visitor) = on_conn!(conn, |c| visitor_tokens::table
        .inner_join(visitors::table)
        .filter(visitor_tokens::token_hash.eq(token_hash))
        .filter(visitors::erased_at.is_null())
        .select(VisitorRow::as_select())
        .first(c)
        .await
        .optional())?
    else {
        return Ok(None);
    };
    let Some(tenant) = super::tenants::by_id(conn, &visitor.tenant_id).await? else {
        return Ok(None);
    };
    let limit = super::plans::of_tenant(conn, &visitor.tenant_id)
        .await?
        .and_then(|p| p.messages_per_day);
    Ok(Some((visitor, tenant, limit)))
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
            .filter(visitors::id.eq(id))
            .filter(visitors::erased_at.is_null());
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

/// Store what the visitor told about themselves: `name` and `email` when given (an
/// absent one stays as it is).
pub async fn set_identity(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
    name: Option<&str>,
    email: Option<&str>,
) -> Result<()> {
    if name.is_none() && email.is_none() {
        return Ok(());
    }
    on_conn!(conn, |c| {
        let target = visitors::table
            .filter(visitors::tenant_id.eq(tenant_id))
            .filter(visitors::id.eq(id))
            .filter(visitors::erased_at.is_null());
        diesel::update(target)
            .set((
                name.map(|n| visitors::name.eq(n)),
                email.map(|e| visitors::email.eq(e)),
            ))
            .execute(c)
            .await
    })?;
    Ok(())
}

/// Most device tokens kept per visitor besides the first device's (the oldest go).
pub const MAX_EXTRA_TOKENS: i64 = 20;

/// The visitor of `tenant_id` in `environment` that belongs to a verified user of the
/// host site.
pub async fn by_external_user(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    environment: &str,
    external_user_id: &str,
) -> Result<Option<VisitorRow>> {
    Ok(on_conn!(conn, |c| visitors::table
        .filter(visitors::tenant_id.eq(tenant_id))
        .filter(visitors::environment.eq(environment))
        .filter(visitors::external_user_id.eq(external_user_id))
        .select(VisitorRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Insert a visitor unless one with the same `(tenant, environment, external_user_id)` exists
/// (a concurrent first session of the same user); returns whether it was inserted.
pub async fn insert_if_absent(conn: &mut Conn<'_>, row: &VisitorRow) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::insert_into(visitors::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Give an anonymous visitor a verified user id. `false` when the visitor already has
/// one; a `conflict` error when the user already has another visitor.
pub async fn claim_external_user(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
    external_user_id: &str,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(
        visitors::table
            .filter(visitors::tenant_id.eq(tenant_id))
            .filter(visitors::id.eq(id))
            .filter(visitors::external_user_id.is_null())
            .filter(visitors::erased_at.is_null())
    )
    .set(visitors::external_user_id.eq(external_user_id))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Add a device token to a visitor, keeping the newest [`MAX_EXTRA_TOKENS`] of them
/// (the first device's token in `visitors.token_hash` is never dropped).
pub async fn add_token(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    visitor_id: &str,
    token_hash: &str,
    now: i64,
) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(visitor_tokens::table)
        .values((
            visitor_tokens::token_hash.eq(token_hash),
            visitor_tokens::tenant_id.eq(tenant_id),
            visitor_tokens::visitor_id.eq(visitor_id),
            visitor_tokens::created_at.eq(now),
        ))
        .execute(c)
        .await)?;
    let surplus: Vec<String> = on_conn!(conn, |c| visitor_tokens::table
        .filter(visitor_tokens::visitor_id.eq(visitor_id))
        .order((
            visitor_tokens::created_at.desc(),
            visitor_tokens::token_hash.desc(),
        ))
        .select(visitor_tokens::token_hash)
        .offset(MAX_EXTRA_TOKENS)
        .limit(1000)
        .load(c)
        .await)?;
    if !surplus.is_empty() {
        on_conn!(conn, |c| diesel::delete(
            visitor_tokens::table
                .filter(visitor_tokens::visitor_id.eq(visitor_id))
                .filter(visitor_tokens::token_hash.eq_any(&surplus))
        )
        .execute(c)
        .await)?;
    }
    Ok(())
}

/// Take the visitor's row lock until the transaction ends (PostgreSQL; on SQLite the
/// write transaction holds the database). Statements after it see every change
/// committed before it. Returns whether the visitor exists.
pub async fn lock(conn: &mut Conn<'_>, tenant_id: &str, id: &str) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(
        visitors::table
            .filter(visitors::tenant_id.eq(tenant_id))
            .filter(visitors::id.eq(id))
    )
    .set(visitors::last_seen_at.eq(visitors::last_seen_at))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Take the row lock of a visitor that is not erased (see [`lock`]); `false` when the
/// visitor does not exist or is erased (checked after any erasure running now commits).
pub async fn lock_active(conn: &mut Conn<'_>, tenant_id: &str, id: &str) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(
        visitors::table
            .filter(visitors::tenant_id.eq(tenant_id))
            .filter(visitors::id.eq(id))
            .filter(visitors::erased_at.is_null())
    )
    .set(visitors::last_seen_at.eq(visitors::last_seen_at))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Whether the visitor exists and is not erased (a socket may open for it).
pub async fn is_active(conn: &mut Conn<'_>, tenant_id: &str, id: &str) -> Result<bool> {
    let n: i64 = on_conn!(conn, |c| visitors::table
        .filter(visitors::tenant_id.eq(tenant_id))
        .filter(visitors::id.eq(id))
        .filter(visitors::erased_at.is_null())
        .count()
        .get_result(c)
        .await)?;
    Ok(n > 0)
}

/// When the visitor's extra device tokens were issued, oldest first (never the hashes).
pub async fn token_times(conn: &mut Conn<'_>, tenant_id: &str, id: &str) -> Result<Vec<i64>> {
    Ok(on_conn!(conn, |c| visitor_tokens::table
        .filter(visitor_tokens::tenant_id.eq(tenant_id))
        .filter(visitor_tokens::visitor_id.eq(id))
        .order(visitor_tokens::created_at.asc())
        .select(visitor_tokens::created_at)
        .load(c)
        .await)?)
}

/// Delete the visitor's extra device tokens; returns how many there were.
pub async fn delete_tokens(conn: &mut Conn<'_>, tenant_id: &str, id: &str) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::delete(
        visitor_tokens::table
            .filter(visitor_tokens::tenant_id.eq(tenant_id))
            .filter(visitor_tokens::visitor_id.eq(id))
    )
    .execute(c)
    .await)?)
}

/// The `token_hash` of an erased visitor: unique, and never the hash of a token
/// (those are 64 hex digits), so no token authenticates as the visitor again.
pub fn revoked_token_hash(id: &str) -> String {
    format!("erased:{id}")
}

/// Erase the visitor's row: profile and identity removed (locale, page, name, email,
/// verified user id), the first device's token revoked ([`revoked_token_hash`]),
/// `erased_at` set. Returns whether the visitor exists.
pub async fn erase(conn: &mut Conn<'_>, tenant_id: &str, id: &str, erased_at: i64) -> Result<bool> {
    let revoked = revoked_token_hash(id);
    let n = on_conn!(conn, |c| diesel::update(
        visitors::table
            .filter(visitors::tenant_id.eq(tenant_id))
            .filter(visitors::id.eq(id))
    )
    .set((
        visitors::token_hash.eq(&revoked),
        visitors::locale.eq(None::<String>),
        visitors::page_url.eq(None::<String>),
        visitors::external_user_id.eq(None::<String>),
        visitors::name.eq(None::<String>),
        visitors::email.eq(None::<String>),
        visitors::erased_at.eq(erased_at),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}
