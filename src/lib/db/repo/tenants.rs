//! Tenants.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{Conn, models::TenantRow, schema::tenants};
use crate::error::Result;
use crate::on_conn;

/// Insert a tenant.
pub async fn insert(conn: &mut Conn<'_>, row: &TenantRow) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(tenants::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Find by slug.
pub async fn by_slug(conn: &mut Conn<'_>, slug: &str) -> Result<Option<TenantRow>> {
    Ok(on_conn!(conn, |c| tenants::table
        .filter(tenants::slug.eq(slug))
        .select(TenantRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Find by id.
pub async fn by_id(conn: &mut Conn<'_>, id: &str) -> Result<Option<TenantRow>> {
    Ok(on_conn!(conn, |c| tenants::table
        .find(id)
        .select(TenantRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Find by public widget key.
pub async fn by_widget_key(conn: &mut Conn<'_>, widget_key: &str) -> Result<Option<TenantRow>> {
    Ok(on_conn!(conn, |c| tenants::table
        .filter(tenants::widget_key.eq(widget_key))
        .select(TenantRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// All tenants, by slug.
pub async fn list(conn: &mut Conn<'_>) -> Result<Vec<TenantRow>> {
    Ok(on_conn!(conn, |c| tenants::table
        .order(tenants::slug.asc())
        .select(TenantRow::as_select())
        .load(c)
        .await)?)
}

/// Replace a tenant's settings JSON.
pub async fn update_settings(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    settings: &str,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(tenants::table.find(tenant_id))
        .set((tenants::settings.eq(settings), tenants::updated_at.eq(now)))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Store a tenant's sealed identity verification secret (replacing any previous one).
pub async fn set_identity_secret(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    sealed: &str,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(tenants::table.find(tenant_id))
        .set((
            tenants::identity_secret_enc.eq(sealed),
            tenants::updated_at.eq(now)
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// A tenant's sealed identity verification secret, if one was generated.
pub async fn identity_secret(conn: &mut Conn<'_>, tenant_id: &str) -> Result<Option<String>> {
    Ok(on_conn!(conn, |c| tenants::table
        .find(tenant_id)
        .select(tenants::identity_secret_enc)
        .first::<Option<String>>(c)
        .await
        .optional())?
    .flatten())
}

/// Inside a transaction: hold the tenant's row until the end of it, so that checks of
/// the tenant's totals and the writes they allow happen one transaction at a time. On
/// PostgreSQL a row lock (`FOR UPDATE`); on SQLite nothing is needed (write
/// transactions already run one at a time, see [`crate::transaction!`]).
pub async fn lock(conn: &mut Conn<'_>, tenant_id: &str) -> Result<()> {
    if let Conn::Pg(c, _) = conn {
        tenants::table
            .filter(tenants::id.eq(tenant_id))
            .select(tenants::id)
            .for_update()
            .load::<String>(c)
            .await?;
    }
    Ok(())
}

/// Give the tenant (its production environment) a new widget key. Returns whether the
/// tenant exists.
pub async fn set_widget_key(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    widget_key: &str,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(tenants::table.find(tenant_id))
        .set((
            tenants::widget_key.eq(widget_key),
            tenants::updated_at.eq(now)
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// The slugs of the tenants with these ids, as `(id, slug)`.
pub async fn slugs(conn: &mut Conn<'_>, ids: &[String]) -> Result<Vec<(String, String)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(on_conn!(conn, |c| tenants::table
        .filter(tenants::id.eq_any(ids))
        .select((tenants::id, tenants::slug))
        .load(c)
        .await)?)
}
