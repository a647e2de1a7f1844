//! Stripe subscriptions per tenant (`billing_subscriptions`) and the Stripe events
//! already received (`billing_events`). The rows live here rather than in `models.rs`:
//! nothing else reads them.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{
    Conn,
    schema::{billing_events, billing_subscriptions},
};
use crate::error::Result;
use crate::on_conn;

/// A tenant's subscription as Stripe last described it (see the migration
/// `2026-12-01-000005_billing_subscriptions` for what each column means).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = billing_subscriptions, primary_key(tenant_id), treat_none_as_null = true)]
pub struct BillingSubscriptionRow {
    /// The tenant.
    pub tenant_id: String,
    /// Stripe customer (`cus_…`).
    pub stripe_customer_id: Option<String>,
    /// The tenant's current Stripe subscription (`sub_…`).
    pub stripe_subscription_id: Option<String>,
    /// The plan the subscription is for.
    pub plan_code: Option<String>,
    /// `month` or `year`.
    pub interval: Option<String>,
    /// Stripe's subscription status, or `none`.
    pub status: String,
    /// End of the paid period, epoch ms.
    pub current_period_end: Option<i64>,
    /// Cancelled at the end of the period.
    pub cancel_at_period_end: bool,
    /// `none`, `grace` or `downgraded`.
    pub dunning: String,
    /// End of the grace period, epoch ms.
    pub grace_until: Option<i64>,
    /// Stripe `created` (epoch s) of the newest subscription event applied.
    pub last_event_created: Option<i64>,
    /// Stripe `created` (epoch s) of the newest invoice event applied.
    pub last_payment_created: Option<i64>,
    /// Whether that invoice event was a failed payment.
    pub last_payment_failed: bool,
    /// Last written, epoch ms.
    pub updated_at: i64,
}

/// The tenant's subscription row.
pub async fn get(conn: &mut Conn<'_>, tenant_id: &str) -> Result<Option<BillingSubscriptionRow>> {
    Ok(on_conn!(conn, |c| billing_subscriptions::table
        .find(tenant_id)
        .select(BillingSubscriptionRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// The tenant whose current subscription is `subscription_id`.
pub async fn tenant_of_subscription(
    conn: &mut Conn<'_>,
    subscription_id: &str,
) -> Result<Option<String>> {
    Ok(on_conn!(conn, |c| billing_subscriptions::table
        .filter(billing_subscriptions::stripe_subscription_id.eq(subscription_id))
        .select(billing_subscriptions::tenant_id)
        .order(billing_subscriptions::tenant_id.asc())
        .first::<String>(c)
        .await
        .optional())?)
}

/// The tenant whose Stripe customer is `customer_id`.
pub async fn tenant_of_customer(conn: &mut Conn<'_>, customer_id: &str) -> Result<Option<String>> {
    Ok(on_conn!(conn, |c| billing_subscriptions::table
        .filter(billing_subscriptions::stripe_customer_id.eq(customer_id))
        .select(billing_subscriptions::tenant_id)
        .order(billing_subscriptions::tenant_id.asc())
        .first::<String>(c)
        .await
        .optional())?)
}

/// Insert or replace the tenant's row.
pub async fn save(conn: &mut Conn<'_>, row: &BillingSubscriptionRow) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(billing_subscriptions::table)
        .values(row)
        .on_conflict(billing_subscriptions::tenant_id)
        .do_update()
        .set(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Tenants whose grace period ended at or before `now` (epoch ms), oldest deadline
/// first, at most `limit`.
pub async fn grace_ended(conn: &mut Conn<'_>, now: i64, limit: i64) -> Result<Vec<String>> {
    Ok(on_conn!(conn, |c| billing_subscriptions::table
        .filter(billing_subscriptions::dunning.eq("grace"))
        .filter(billing_subscriptions::grace_until.le(now))
        .order(billing_subscriptions::grace_until.asc())
        .select(billing_subscriptions::tenant_id)
        .limit(limit)
        .load::<String>(c)
        .await)?)
}

/// Record a Stripe event id (outcome `pending`, set by [`set_event_outcome`] in the
/// same transaction); false when it was recorded before (a replay). On PostgreSQL a
/// concurrent delivery of the same event waits here until the first one commits.
pub async fn record_event(
    conn: &mut Conn<'_>,
    event_id: &str,
    event_type: &str,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::insert_into(billing_events::table)
        .values((
            billing_events::event_id.eq(event_id),
            billing_events::event_type.eq(event_type),
            billing_events::received_at.eq(now),
            billing_events::outcome.eq("pending"),
        ))
        .on_conflict_do_nothing()
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// What a recorded event did, and for which tenant.
pub async fn set_event_outcome(
    conn: &mut Conn<'_>,
    event_id: &str,
    outcome: &str,
    tenant_id: Option<&str>,
) -> Result<()> {
    on_conn!(conn, |c| diesel::update(
        billing_events::table.find(event_id)
    )
    .set((
        billing_events::outcome.eq(outcome),
        billing_events::tenant_id.eq(tenant_id),
    ))
    .execute(c)
    .await)?;
    Ok(())
}

/// The recorded outcome of an event, if it was received.
pub async fn event_outcome(conn: &mut Conn<'_>, event_id: &str) -> Result<Option<String>> {
    Ok(on_conn!(conn, |c| billing_events::table
        .find(event_id)
        .select(billing_events::outcome)
        .first::<String>(c)
        .await
        .optional())?)
}

/// How many events were received.
pub async fn event_count(conn: &mut Conn<'_>) -> Result<i64> {
    Ok(on_conn!(conn, |c| billing_events::table
        .count()
        .get_result(c)
        .await)?)
}
