//! A tenant's environments besides production (`tenant_environments`).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{
    Conn,
    models::{TenantEnvironmentRow, TenantRow},
    schema::{tenant_environments, tenants},
};
use crate::error::Result;
use crate::on_conn;

/// One environment of the tenant, if it was created.
pub async fn get(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    environment: &str,
) -> Result<Option<TenantEnvironmentRow>> {
    Ok(on_conn!(conn, |c| tenant_environments::table
        .find((tenant_id, environment))
        .select(TenantEnvironmentRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// The tenant's environments (besides production), by name.
pub async fn list(conn: &mut Conn<'_>, tenant_id: &str) -> Result<Vec<TenantEnvironmentRow>> {
    Ok(on_conn!(conn, |c| tenant_environments::table
        .filter(tenant_environments::tenant_id.eq(tenant_id))
        .order(tenant_environments::environment.asc())
        .select(TenantEnvironmentRow::as_select())
        .load(c)
        .await)?)
}

/// Every tenant's environments (besides production): for the CORS origin cache.
pub async fn list_all(conn: &mut Conn<'_>) -> Result<Vec<TenantEnvironmentRow>> {
    Ok(on_conn!(conn, |c| tenant_environments::table
        .order((
            tenant_environments::tenant_id.asc(),
            tenant_environments::environment.asc()
        ))
        .select(TenantEnvironmentRow::as_select())
        .load(c)
        .await)?)
}

/// The environment whose widget key this is, with its tenant (one joined statement).
pub async fn by_widget_key(
    conn: &mut Conn<'_>,
    widget_key: &str,
) -> Result<Option<(TenantEnvironmentRow, TenantRow)>> {
    Ok(on_conn!(conn, |c| tenant_environments::table
        .inner_join(tenants::table)
        .filter(tenant_environments::widget_key.eq(widget_key))
        .select((TenantEnvironmentRow::as_select(), TenantRow::as_select()))
        .first(c)
        .await
        .optional())?)
}

/// Insert an environment (a `conflict` error when it exists).
pub async fn insert(conn: &mut Conn<'_>, row: &TenantEnvironmentRow) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(tenant_environments::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Give the environment a new widget key. Returns whether it exists.
pub async fn set_widget_key(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    environment: &str,
    widget_key: &str,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(
        tenant_environments::table.find((tenant_id, environment))
    )
    .set((
        tenant_environments::widget_key.eq(widget_key),
        tenant_environments::updated_at.eq(now),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Replace the environment's settings JSON. Returns whether it exists.
pub async fn update_settings(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    environment: &str,
    settings: &str,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(
        tenant_environments::table.find((tenant_id, environment))
    )
    .set((
        tenant_environments::settings.eq(settings),
        tenant_environments::updated_at.eq(now),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Set (or with `None` clear) the environment's own Telegram group. Returns whether it
/// exists.
pub async fn set_telegram_group(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    environment: &str,
    group_chat_id: Option<i64>,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(
        tenant_environments::table.find((tenant_id, environment))
    )
    .set((
        tenant_environments::telegram_group_chat_id.eq(group_chat_id),
        tenant_environments::updated_at.eq(now),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// The environment's own Telegram group, if it has one.
pub async fn telegram_group(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    environment: &str,
) -> Result<Option<i64>> {
    Ok(on_conn!(conn, |c| tenant_environments::table
        .find((tenant_id, environment))
        .select(tenant_environments::telegram_group_chat_id)
        .first::<Option<i64>>(c)
        .await
        .optional())?
    .flatten())
}
