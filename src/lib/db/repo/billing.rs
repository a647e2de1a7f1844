//! Billing: a tenant's Stripe Customer and the Checkout Sessions asked for with an
//! idempotency key.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{
    Conn,
    models::{BillingCheckoutRow, BillingCustomerRow},
    schema::{billing_checkouts, billing_customers},
};
use crate::error::Result;
use crate::on_conn;

/// The tenant's Stripe Customer, if it has one.
pub async fn customer(conn: &mut Conn<'_>, tenant_id: &str) -> Result<Option<BillingCustomerRow>> {
    Ok(on_conn!(conn, |c| billing_customers::table
        .find(tenant_id)
        .select(BillingCustomerRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Store the tenant's Customer unless it has one already; the one it has afterwards.
pub async fn insert_customer(
    conn: &mut Conn<'_>,
    row: &BillingCustomerRow,
) -> Result<BillingCustomerRow> {
    on_conn!(conn, |c| diesel::insert_into(billing_customers::table)
        .values(row)
        .on_conflict(billing_customers::tenant_id)
        .do_nothing()
        .execute(c)
        .await)?;
    Ok(on_conn!(conn, |c| billing_customers::table
        .find(&row.tenant_id)
        .select(BillingCustomerRow::as_select())
        .first(c)
        .await)?)
}

/// The Checkout Session the tenant asked for with `idempotency_key`, if any.
pub async fn checkout(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    idempotency_key: &str,
) -> Result<Option<BillingCheckoutRow>> {
    Ok(on_conn!(conn, |c| billing_checkouts::table
        .find((tenant_id, idempotency_key))
        .select(BillingCheckoutRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Remember a Checkout Session under its idempotency key (the first one stays when two
/// requests race: both got the same session from Stripe anyway); the row afterwards,
/// and whether this call stored it.
pub async fn insert_checkout(
    conn: &mut Conn<'_>,
    row: &BillingCheckoutRow,
) -> Result<(BillingCheckoutRow, bool)> {
    let inserted = on_conn!(conn, |c| diesel::insert_into(billing_checkouts::table)
        .values(row)
        .on_conflict((
            billing_checkouts::tenant_id,
            billing_checkouts::idempotency_key
        ))
        .do_nothing()
        .execute(c)
        .await)?;
    let stored = on_conn!(conn, |c| billing_checkouts::table
        .find((&row.tenant_id, &row.idempotency_key))
        .select(BillingCheckoutRow::as_select())
        .first(c)
        .await)?;
    Ok((stored, inserted == 1))
}
