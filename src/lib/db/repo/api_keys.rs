//! API keys (hashes only).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{Conn, models::ApiKeyRow, schema::api_keys};
use crate::error::Result;
use crate::on_conn;

/// Insert a key row.
pub async fn insert(conn: &mut Conn<'_>, row: &ApiKeyRow) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(api_keys::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Find by the SHA-256 of the presented key.
pub async fn by_hash(conn: &mut Conn<'_>, key_hash: &str) -> Result<Option<ApiKeyRow>> {
    Ok(on_conn!(conn, |c| api_keys::table
        .filter(api_keys::key_hash.eq(key_hash))
        .select(ApiKeyRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Keys of one tenant (`Some`), or all keys (`None`, platform view), newest first.
pub async fn list(conn: &mut Conn<'_>, tenant_id: Option<&str>) -> Result<Vec<ApiKeyRow>> {
    Ok(on_conn!(conn, |c| {
        let mut q = api_keys::table
            .select(ApiKeyRow::as_select())
            .order(api_keys::created_at.desc())
            .into_boxed();
        if let Some(t) = tenant_id {
            q = q.filter(api_keys::tenant_id.eq(t));
        }
        q.load(c).await
    })?)
}

/// Find one key; with `Some(tenant)` only that tenant's keys are visible.
pub async fn get(
    conn: &mut Conn<'_>,
    tenant_id: Option<&str>,
    id: &str,
) -> Result<Option<ApiKeyRow>> {
    Ok(on_conn!(conn, |c| {
        let mut q = api_keys::table
            .filter(api_keys::id.eq(id))
            .select(ApiKeyRow::as_select())
            .into_boxed();
        if let Some(t) = tenant_id {
            q = q.filter(api_keys::tenant_id.eq(t));
        }
        q.first(c).await.optional()
    })?)
}

/// Revoke a key (idempotent: the first revocation time is kept). With `Some(tenant)`
/// only that tenant's keys can be revoked. Returns whether the key exists.
pub async fn revoke(
    conn: &mut Conn<'_>,
    tenant_id: Option<&str>,
    id: &str,
    now: i64,
) -> Result<bool> {
    on_conn!(conn, |c| {
        let mut q = diesel::update(api_keys::table)
            .filter(api_keys::id.eq(id))
            .filter(api_keys::revoked_at.is_null())
            .into_boxed();
        if let Some(t) = tenant_id {
            q = q.filter(api_keys::tenant_id.eq(t));
        }
        q.set(api_keys::revoked_at.eq(now)).execute(c).await
    })?;
    Ok(get(conn, tenant_id, id).await?.is_some())
}

/// Ids of the keys issued by any of `issuers` (one generation down).
pub async fn issued_by_any(conn: &mut Conn<'_>, issuers: &[String]) -> Result<Vec<String>> {
    Ok(on_conn!(conn, |c| api_keys::table
        .filter(api_keys::issued_by.eq_any(issuers))
        .select(api_keys::id)
        .load::<String>(c)
        .await)?)
}

/// Revoke the given keys that are not revoked yet; returns how many were.
pub async fn revoke_many(conn: &mut Conn<'_>, ids: &[String], now: i64) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::update(api_keys::table)
        .filter(api_keys::id.eq_any(ids))
        .filter(api_keys::revoked_at.is_null())
        .set(api_keys::revoked_at.eq(now))
        .execute(c)
        .await)?)
}

/// Lock an issuing key's row for the rest of the transaction (a no-op update takes
/// the row lock on PostgreSQL; SQLite write transactions are serial anyway) and
/// return whether it is still unrevoked. A concurrent cascading revoke of the issuer
/// then either sees the new key or makes this check fail.
pub async fn lock_active(conn: &mut Conn<'_>, id: &str) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(api_keys::table)
        .filter(api_keys::id.eq(id))
        .filter(api_keys::revoked_at.is_null())
        .set(api_keys::revoked_at.eq(None::<i64>))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Record a use, at most once per `debounce_ms`.
pub async fn touch(conn: &mut Conn<'_>, id: &str, now: i64, debounce_ms: i64) -> Result<()> {
    on_conn!(conn, |c| diesel::update(api_keys::table)
        .filter(api_keys::id.eq(id))
        .filter(
            api_keys::last_used_at
                .is_null()
                .or(api_keys::last_used_at.lt(now - debounce_ms))
        )
        .set(api_keys::last_used_at.eq(now))
        .execute(c)
        .await)?;
    Ok(())
}
