//! Plans (the catalogue is platform-wide: no tenant) and which plan a tenant is on.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{
    Conn,
    models::PlanRow,
    schema::{plans, tenants},
};
use crate::error::Result;
use crate::on_conn;

/// Every plan, by code.
pub async fn list(conn: &mut Conn<'_>) -> Result<Vec<PlanRow>> {
    Ok(on_conn!(conn, |c| plans::table
        .order(plans::code.asc())
        .select(PlanRow::as_select())
        .load(c)
        .await)?)
}

/// One plan.
pub async fn get(conn: &mut Conn<'_>, code: &str) -> Result<Option<PlanRow>> {
    Ok(on_conn!(conn, |c| plans::table
        .find(code)
        .select(PlanRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Insert a new plan.
pub async fn insert(conn: &mut Conn<'_>, row: &PlanRow) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(plans::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Replace everything of a plan but its code and `created_at`; false if there is none.
pub async fn replace(conn: &mut Conn<'_>, row: &PlanRow) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(plans::table.find(&row.code))
        .set((
            plans::name.eq(&row.name),
            plans::active.eq(row.active),
            plans::price_month_cents.eq(row.price_month_cents),
            plans::price_year_cents.eq(row.price_year_cents),
            plans::conversation_starts_per_day.eq(row.conversation_starts_per_day),
            plans::topic_renames_per_day.eq(row.topic_renames_per_day),
            plans::messages_per_day.eq(row.messages_per_day),
            plans::active_conversations.eq(row.active_conversations),
            plans::retention_days.eq(row.retention_days),
            plans::channel_widget.eq(row.channel_widget),
            plans::channel_telegram.eq(row.channel_telegram),
            plans::features.eq(&row.features),
            plans::updated_at.eq(row.updated_at),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Mark a plan inactive; false if there is none.
pub async fn deactivate(conn: &mut Conn<'_>, code: &str, now: i64) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(plans::table.find(code))
        .set((plans::active.eq(false), plans::updated_at.eq(now)))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Delete a plan (refused by the database while tenants use it); false if there is none.
pub async fn delete(conn: &mut Conn<'_>, code: &str) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::delete(plans::table.find(code))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// The plan of a tenant (`None`: no such tenant).
pub async fn of_tenant(conn: &mut Conn<'_>, tenant_id: &str) -> Result<Option<PlanRow>> {
    Ok(on_conn!(conn, |c| tenants::table
        .inner_join(plans::table)
        .filter(tenants::id.eq(tenant_id))
        .select(PlanRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// How many tenants are on a plan.
pub async fn tenant_count(conn: &mut Conn<'_>, code: &str) -> Result<i64> {
    Ok(on_conn!(conn, |c| tenants::table
        .filter(tenants::plan_code.eq(code))
        .count()
        .get_result(c)
        .await)?)
}

/// The ids of the tenants on plan `code`.
pub async fn tenant_ids_on(conn: &mut Conn<'_>, code: &str) -> Result<Vec<String>> {
    Ok(on_conn!(conn, |c| tenants::table
        .filter(tenants::plan_code.eq(code))
        .select(tenants::id)
        .order(tenants::id.asc())
        .load(c)
        .await)?)
}

/// Put a tenant on a plan; false if there is no such tenant.
pub async fn set_tenant_plan(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    code: &str,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(tenants::table.find(tenant_id))
        .set((tenants::plan_code.eq(code), tenants::updated_at.eq(now)))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Move every tenant of plan `from` to plan `to`; returns how many moved.
pub async fn reassign_tenants(
    conn: &mut Conn<'_>,
    from: &str,
    to: &str,
    now: i64,
) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::update(
        tenants::table.filter(tenants::plan_code.eq(from))
    )
    .set((tenants::plan_code.eq(to), tenants::updated_at.eq(now)))
    .execute(c)
    .await)?)
}
