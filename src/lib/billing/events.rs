//! `POST /v1/billing/stripe/webhook`: Stripe's events, verified, deduplicated and
//! applied.
//!
//! [`receive`] checks the `Stripe-Signature` header on the raw body first
//! ([`super::signature`]; 400 `invalid_signature`, nothing read or written), then, in
//! one transaction, records the event id (`billing_events`: a replay is a
//! `duplicate` and changes nothing) and applies the state change
//! ([`super::subscription::Tracked`], the tenant's plan, a Telegram notice), so the
//! route answers 2xx only after the commit. Database trouble is an error (503): Stripe
//! retries.
//!
//! Which tenant an event is for: the tenant id Checkout puts in the session
//! (`client_reference_id`, or metadata `chatorical_tenant`) and in the subscription's
//! metadata (`chatorical_tenant`, copied by Stripe onto its invoices'
//! `subscription_details`); else the tenant whose subscription or customer it names.
//! The plan comes from the subscription's price: its lookup key
//! `chatorical_<plan code>_<month|year>`, or the metadata `chatorical_plan` of its
//! product (when expanded) or price.

use serde_json::Value;

use super::Billing;
use super::dunning;
use super::signature::{self, TOLERANCE_SECS};
use super::subscription::{
    Applied, DunningChange, Interval, Snapshot, SubscriptionEvent, SubscriptionStatus, Tracked,
    parse_lookup_key,
};
use crate::audit::{Action, Actor, Entry};
use crate::db::{Conn, Db, repo};
use crate::domain::{TenantId, rfc3339};
use crate::error::{Error, ErrorCode, Result};
use crate::plans::PlanCode;
use crate::transaction;

/// Longest event id or type accepted.
const MAX_ID: usize = 255;

/// What an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The tenant's state now reflects it.
    Applied,
    /// Older than what the state already reflects, or about a subscription the tenant
    /// has replaced: nothing changed.
    Stale,
    /// No tenant could be found for it: nothing changed.
    Unmatched,
    /// The subscription is stored, but its price names no plan this server has: the
    /// tenant's plan is unchanged.
    UnknownPlan,
    /// A type we do not act on (or an invoice of no subscription).
    Ignored,
    /// Received before: nothing changed.
    Duplicate,
}

impl Outcome {
    /// The name in responses, `billing_events.outcome` and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Stale => "stale",
            Outcome::Unmatched => "unmatched",
            Outcome::UnknownPlan => "unknown_plan",
            Outcome::Ignored => "ignored",
            Outcome::Duplicate => "duplicate",
        }
    }
}

/// A received event's outcome, once committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// What it did.
    pub outcome: Outcome,
    /// Whether it queued a Telegram notice (wake the outbox).
    pub notified: bool,
}

/// The event types acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `checkout.session.completed`.
    CheckoutSessionCompleted,
    /// `customer.subscription.created|updated|deleted`.
    Subscription(SubscriptionEvent),
    /// `invoice.paid`.
    InvoicePaid,
    /// `invoice.payment_failed`.
    InvoicePaymentFailed,
    /// Anything else (acknowledged, ignored, counted).
    Other,
}

impl EventKind {
    /// The kind of a Stripe event type.
    pub fn of(event_type: &str) -> Self {
        match event_type {
            "checkout.session.completed" => EventKind::CheckoutSessionCompleted,
            "customer.subscription.created" => EventKind::Subscription(SubscriptionEvent::Created),
            "customer.subscription.updated" => EventKind::Subscription(SubscriptionEvent::Updated),
            "customer.subscription.deleted" => EventKind::Subscription(SubscriptionEvent::Deleted),
            "invoice.paid" => EventKind::InvoicePaid,
            "invoice.payment_failed" => EventKind::InvoicePaymentFailed,
            _ => EventKind::Other,
        }
    }
}

/// A Stripe event: the envelope fields we use and the object it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_…`, unique per event (a redelivery has the same id).
    pub id: String,
    /// The type, e.g. `customer.subscription.updated`.
    pub event_type: String,
    /// When Stripe created it, epoch seconds: the order of the states it describes.
    pub created: i64,
    /// `data.object`.
    pub object: Value,
}

impl Event {
    /// Read a (verified) webhook body; `invalid_json` when it is not a Stripe event.
    pub fn parse(body: &[u8]) -> Result<Event> {
        let not_event = || Error::new(ErrorCode::InvalidJson, "not a Stripe event");
        let mut v: Value = serde_json::from_slice(body).map_err(|_| not_event())?;
        let text = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= MAX_ID && !s.contains('\0'))
                .map(str::to_string)
        };
        let id = text(&v, "id").ok_or_else(not_event)?;
        let event_type = text(&v, "type").ok_or_else(not_event)?;
        let created = v
            .get("created")
            .and_then(Value::as_i64)
            .ok_or_else(not_event)?;
        let object = v
            .get_mut("data")
            .and_then(|d| d.get_mut("object"))
            .filter(|o| o.is_object())
            .map(Value::take)
            .ok_or_else(not_event)?;
        Ok(Event {
            id,
            event_type,
            created,
            object,
        })
    }

    /// Its kind.
    pub fn kind(&self) -> EventKind {
        EventKind::of(&self.event_type)
    }
}

/// The `type` label of the events metric: the type itself, for anything that looks
/// like a Stripe event type (the body is verified, so Stripe chose it), else `other`.
fn type_label(event_type: &str) -> String {
    let plausible = event_type.len() <= 64
        && event_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
    if plausible {
        event_type.to_string()
    } else {
        "other".to_string()
    }
}

fn count(event_type: String, outcome: &'static str) {
    metrics::counter!("chatorical_billing_events_total", "type" => event_type, "outcome" => outcome)
        .increment(1);
}

/// Handle one webhook call: Stripe configured (else 503 `billing_not_configured`), the
/// signature (400 `invalid_signature`), the body (400 `invalid_json`), then the event in
/// one transaction. `now` is epoch ms. Counted in
/// `chatorical_billing_events_total{type,outcome}`.
pub async fn receive(
    db: &Db,
    billing: Option<&Billing>,
    signature_header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<Received> {
    let billing = billing.ok_or_else(super::not_configured)?;
    let secret = billing.webhook_secret().ok_or_else(|| {
        Error::new(
            ErrorCode::BillingNotConfigured,
            "the Stripe webhook is not configured on this server (set billing.stripe.webhook_secret)",
        )
    })?;
    let checked = signature::verify(
        signature_header.unwrap_or_default(),
        body,
        secret.expose(),
        now.div_euclid(1000),
        TOLERANCE_SECS,
    );
    if let Err(e) = checked {
        count("unverified".into(), "invalid_signature");
        tracing::warn!(reason = %e, "Stripe webhook refused");
        return Err(e.into());
    }
    let event = Event::parse(body).inspect_err(|_| count("unverified".into(), "invalid_json"))?;
    let received = process(db, billing.grace_days(), &event, now).await?;
    count(type_label(&event.event_type), received.outcome.as_str());
    tracing::info!(
        event = %event.id,
        r#type = %event.event_type,
        outcome = received.outcome.as_str(),
        "Stripe event"
    );
    Ok(received)
}

/// Apply one verified event (see the module docs) with a grace period of `grace_days`
/// for failed payments; `now` is epoch ms.
pub async fn process(db: &Db, grace_days: u32, event: &Event, now: i64) -> Result<Received> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let received = transaction!(&mut conn, |tx| {
        if !repo::billing_subscriptions::record_event(tx, &event.id, &event.event_type, now).await?
        {
            return Ok(Received {
                outcome: Outcome::Duplicate,
                notified: false,
            });
        }
        let (outcome, tenant, notified) = apply(tx, grace_days, event, now).await?;
        repo::billing_subscriptions::set_event_outcome(
            tx,
            &event.id,
            outcome.as_str(),
            tenant.as_deref(),
        )
        .await?;
        Ok(Received { outcome, notified })
    })?;
    Ok(received)
}

/// An event's effect inside the transaction: its outcome, its tenant, whether a
/// notice was queued.
async fn apply(
    tx: &mut Conn<'_>,
    grace_days: u32,
    event: &Event,
    now: i64,
) -> Result<(Outcome, Option<TenantId>, bool)> {
    let obj = &event.object;
    let (hint, subscription, customer) = match event.kind() {
        EventKind::Other => return Ok((Outcome::Ignored, None, false)),
        EventKind::CheckoutSessionCompleted => (
            text(obj, &["client_reference_id"])
                .or_else(|| text(obj, &["metadata", "chatorical_tenant"])),
            expandable_id(obj.get("subscription")),
            expandable_id(obj.get("customer")),
        ),
        EventKind::Subscription(_) => (
            text(obj, &["metadata", "chatorical_tenant"]),
            text(obj, &["id"]).map(str::to_string),
            expandable_id(obj.get("customer")),
        ),
        EventKind::InvoicePaid | EventKind::InvoicePaymentFailed => {
            let Some(subscription) = invoice_subscription(obj) else {
                // A one-off invoice: nothing to do with plans.
                return Ok((Outcome::Ignored, None, false));
            };
            (
                invoice_tenant_hint(obj),
                Some(subscription),
                expandable_id(obj.get("customer")),
            )
        }
    };
    let Some(tenant_id) =
        resolve_tenant(tx, hint, subscription.as_deref(), customer.as_deref()).await?
    else {
        tracing::warn!(event = %event.id, r#type = %event.event_type, "Stripe event for no known tenant");
        return Ok((Outcome::Unmatched, None, false));
    };
    // One event of a tenant at a time (PostgreSQL; SQLite writers already queue).
    repo::tenants::lock(tx, &tenant_id).await?;
    let mut tracked = match repo::billing_subscriptions::get(tx, &tenant_id).await? {
        Some(row) => Tracked::from_row(row)?,
        None => Tracked::new(tenant_id.clone()),
    };
    let before = tracked.clone();
    let applied = match event.kind() {
        EventKind::CheckoutSessionCompleted => {
            tracked.link_checkout(customer.as_deref(), subscription.as_deref());
            Applied::Applied
        }
        EventKind::Subscription(kind) => {
            let Some(snap) = snapshot(obj) else {
                tracing::warn!(event = %event.id, "Stripe subscription object not understood");
                return Ok((Outcome::Ignored, Some(tenant_id), false));
            };
            tracked.apply_subscription(kind, event.created, &snap)
        }
        EventKind::InvoicePaid | EventKind::InvoicePaymentFailed => {
            let paid = event.kind() == EventKind::InvoicePaid;
            let subscription = subscription.as_deref().unwrap_or_default();
            tracked.apply_invoice(subscription, customer.as_deref(), event.created, paid)
        }
        EventKind::Other => Applied::Stale,
    };
    if applied == Applied::Stale {
        return Ok((Outcome::Stale, Some(tenant_id), false));
    }
    let change = tracked.reconcile(grace_days);
    let enforced = super::subscription::enforce(tx, &tracked, now).await?;
    let known = enforced.known;
    repo::billing_subscriptions::save(tx, &tracked.to_row(now)).await?;
    // Stripe's changes in the tenant's log: the subscription as the log shows it (when
    // that changed) and the plan (when it moved).
    let diff = tracked.audit_diff(&before);
    if !diff.is_empty() {
        let mut changes = diff;
        changes.insert("event".into(), event.event_type.clone().into());
        let target = tracked
            .subscription
            .clone()
            .unwrap_or_else(|| tenant_id.to_string());
        crate::audit::record_as(
            tx,
            &Actor::Stripe,
            None,
            Entry::new(Action::BillingSubscriptionUpdated)
                .tenant(&tenant_id)
                .target(target)
                .changes(serde_json::Value::Object(changes)),
        )
        .await?;
    }
    if let Some((from, to)) = &enforced.moved {
        let entry = crate::plans::plan_changed(&tenant_id, from, to, "subscription");
        crate::audit::record_as(tx, &Actor::Stripe, None, entry).await?;
    }
    let notified = if change == DunningChange::GraceStarted {
        let until = tracked.grace_until.map(rfc3339).unwrap_or_default();
        let plan = tracked.plan.clone().unwrap_or_else(|| "current".into());
        let text = format!(
            "Billing: a payment for the {plan} plan failed. The plan stays on until {until}; \
             if the invoice is still unpaid then, the account moves to the free plan. \
             Please update the payment method."
        );
        let key = format!("billing_payment_failed_{}", event.id);
        dunning::notify(tx, &tenant_id, &text, &key, now).await?
    } else {
        false
    };
    let outcome = if known {
        Outcome::Applied
    } else {
        tracing::warn!(
            tenant = %tenant_id,
            plan = tracked.plan.as_deref().unwrap_or("-"),
            "Stripe subscription for a plan this server does not have; tenant's plan unchanged"
        );
        Outcome::UnknownPlan
    };
    Ok((outcome, Some(tenant_id), notified))
}

/// The tenant an event is for (see the module docs); `None` when none is found.
async fn resolve_tenant(
    tx: &mut Conn<'_>,
    hint: Option<&str>,
    subscription: Option<&str>,
    customer: Option<&str>,
) -> Result<Option<TenantId>> {
    if let Some(hint) = hint {
        if let Some(t) = repo::tenants::by_id(tx, hint).await? {
            return Ok(Some(TenantId::from(t.id)));
        }
        if let Some(t) = repo::tenants::by_slug(tx, hint).await? {
            return Ok(Some(TenantId::from(t.id)));
        }
    }
    if let Some(s) = subscription
        && let Some(t) = repo::billing_subscriptions::tenant_of_subscription(tx, s).await?
    {
        return Ok(Some(TenantId::from(t)));
    }
    if let Some(c) = customer
        && let Some(t) = repo::billing_subscriptions::tenant_of_customer(tx, c).await?
    {
        return Ok(Some(TenantId::from(t)));
    }
    Ok(None)
}

/// The non-empty string at `path` in `v` (without NUL, which no Stripe id or code has
/// and PostgreSQL cannot compare).
fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, key| v.get(key))?
        .as_str()
        .filter(|s| !s.is_empty() && !s.contains('\0'))
}

/// An expandable field: an id (`"cus_…"`), or the expanded object's `id`.
fn expandable_id(v: Option<&Value>) -> Option<String> {
    match v? {
        id @ Value::String(_) => text(id, &[]).map(str::to_string),
        object @ Value::Object(_) => text(object, &["id"]).map(str::to_string),
        _ => None,
    }
}

/// The subscription an invoice bills: `subscription` (API versions before 2025-03-31)
/// or `parent.subscription_details.subscription` (later ones).
fn invoice_subscription(invoice: &Value) -> Option<String> {
    expandable_id(invoice.get("subscription")).or_else(|| {
        expandable_id(
            invoice
                .get("parent")
                .and_then(|p| p.get("subscription_details"))
                .and_then(|d| d.get("subscription")),
        )
    })
}

/// The tenant id Stripe copied from the subscription's metadata onto the invoice.
fn invoice_tenant_hint(invoice: &Value) -> Option<&str> {
    text(
        invoice,
        &["subscription_details", "metadata", "chatorical_tenant"],
    )
    .or_else(|| {
        text(
            invoice,
            &[
                "parent",
                "subscription_details",
                "metadata",
                "chatorical_tenant",
            ],
        )
    })
    .or_else(|| text(invoice, &["metadata", "chatorical_tenant"]))
}

/// A subscription object as a [`Snapshot`]; `None` without an id or with a status
/// this version does not know.
fn snapshot(sub: &Value) -> Option<Snapshot> {
    let id = text(sub, &["id"])?.to_string();
    let status = SubscriptionStatus::parse(text(sub, &["status"])?)
        .filter(|s| *s != SubscriptionStatus::None)?;
    let items: &[Value] = sub
        .get("items")
        .and_then(|i| i.get("data"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    // `current_period_end` moved from the subscription to its items in API version
    // 2025-03-31; read either.
    let period_end = sub
        .get("current_period_end")
        .and_then(Value::as_i64)
        .or_else(|| {
            items
                .iter()
                .filter_map(|i| i.get("current_period_end").and_then(Value::as_i64))
                .max()
        });
    Some(Snapshot {
        id,
        customer: expandable_id(sub.get("customer")),
        status,
        plan: subscription_plan(sub, items),
        current_period_end: period_end.map(|s| s.saturating_mul(1000)),
        cancel_at_period_end: sub
            .get("cancel_at_period_end")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// The plan (and interval) of a subscription: the first item whose price has a
/// `chatorical_<plan>_<interval>` lookup key; else a `chatorical_plan` in the metadata
/// of an item's product (expanded) or price (with the price's recurring interval, or its
/// `chatorical_interval`), or of the subscription (what `plans sync` and Checkout write).
fn subscription_plan<'a>(sub: &'a Value, items: &'a [Value]) -> Option<(String, Option<Interval>)> {
    static NO_PRICE: Value = Value::Null;
    let price = |item: &'a Value| item.get("price").unwrap_or(&NO_PRICE);
    for item in items {
        if let Some((code, interval)) =
            text(price(item), &["lookup_key"]).and_then(parse_lookup_key)
        {
            return Some((code, Some(interval)));
        }
    }
    let valid = |code: &str| PlanCode::parse("chatorical_plan", code).ok();
    for item in items {
        let price = price(item);
        let interval = text(price, &["recurring", "interval"])
            .or_else(|| text(price, &["metadata", "chatorical_interval"]))
            .and_then(Interval::parse);
        let named = text(price, &["product", "metadata", "chatorical_plan"])
            .or_else(|| text(price, &["metadata", "chatorical_plan"]));
        if let Some(code) = named.and_then(valid) {
            return Some((code.as_str().to_string(), interval));
        }
    }
    let code = text(sub, &["metadata", "chatorical_plan"]).and_then(valid)?;
    let interval = items
        .first()
        .and_then(|i| text(price(i), &["recurring", "interval"]))
        .and_then(Interval::parse);
    Some((code.as_str().to_string(), interval))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_need_an_id_a_type_a_time_and_an_object() {
        let ok = json!({"id": "evt_1", "type": "invoice.paid", "created": 5, "data": {"object": {"id": "in_1"}}});
        let e = Event::parse(ok.to_string().as_bytes()).expect("event");
        assert_eq!((e.id.as_str(), e.created), ("evt_1", 5));
        assert_eq!(e.kind(), EventKind::InvoicePaid);
        assert_eq!(e.object["id"], "in_1");
        for bad in [
            json!({"type": "invoice.paid", "created": 5, "data": {"object": {}}}),
            json!({"id": "", "type": "invoice.paid", "created": 5, "data": {"object": {}}}),
            json!({"id": "evt_1", "created": 5, "data": {"object": {}}}),
            json!({"id": "evt_1", "type": "invoice.paid", "created": "5", "data": {"object": {}}}),
            json!({"id": "evt_1", "type": "invoice.paid", "created": 5, "data": {}}),
            json!({"id": "evt_1", "type": "invoice.paid", "created": 5, "data": {"object": 1}}),
            json!([1]),
        ] {
            let e = Event::parse(bad.to_string().as_bytes()).expect_err("not an event");
            assert_eq!(e.code, ErrorCode::InvalidJson, "{bad}");
        }
        assert!(Event::parse(b"\xff").is_err());
    }

    #[test]
    fn snapshots_read_the_plan_from_the_lookup_key_or_metadata() {
        let sub = json!({
            "id": "sub_1", "status": "active", "customer": {"id": "cus_1"},
            "cancel_at_period_end": true,
            "items": {"data": [
                {"current_period_end": 2000, "price": {"lookup_key": "other", "recurring": {"interval": "month"}}},
                {"current_period_end": 3000, "price": {"lookup_key": "chatorical_pro_year"}}
            ]}
        });
        let s = snapshot(&sub).expect("snapshot");
        assert_eq!(s.customer.as_deref(), Some("cus_1"));
        assert_eq!(s.plan, Some(("pro".into(), Some(Interval::Year))));
        assert_eq!(s.current_period_end, Some(3_000_000));
        assert!(s.cancel_at_period_end);

        let by_product = json!({
            "id": "sub_1", "status": "past_due", "current_period_end": 10,
            "items": {"data": [{"price": {"recurring": {"interval": "month"},
                "product": {"id": "prod_1", "metadata": {"chatorical_plan": "business"}}}}]}
        });
        let s = snapshot(&by_product).expect("snapshot");
        assert_eq!(s.plan, Some(("business".into(), Some(Interval::Month))));
        assert_eq!(s.current_period_end, Some(10_000));

        let by_price = json!({
            "id": "sub_1", "status": "active",
            "items": {"data": [{"price": {"product": "prod_1",
                "metadata": {"chatorical_plan": "pro", "chatorical_interval": "year"}}}]}
        });
        let s = snapshot(&by_price).expect("snapshot");
        assert_eq!(s.plan, Some(("pro".into(), Some(Interval::Year))));

        let unknown = json!({"id": "sub_1", "status": "active", "items": {"data": [{"price": {"product": "prod_1"}}]}});
        assert_eq!(snapshot(&unknown).expect("snapshot").plan, None);
        assert!(snapshot(&json!({"id": "sub_1", "status": "exotic"})).is_none());
        assert!(snapshot(&json!({"id": "sub_1", "status": "none"})).is_none());
    }

    #[test]
    fn invoices_name_their_subscription_in_either_api_shape() {
        let old = json!({"subscription": "sub_1", "subscription_details": {"metadata": {"chatorical_tenant": "tn_1"}}});
        assert_eq!(invoice_subscription(&old).as_deref(), Some("sub_1"));
        assert_eq!(invoice_tenant_hint(&old), Some("tn_1"));
        let new = json!({"subscription": null, "parent": {"subscription_details": {"subscription": "sub_2", "metadata": {"chatorical_tenant": "tn_2"}}}});
        assert_eq!(invoice_subscription(&new).as_deref(), Some("sub_2"));
        assert_eq!(invoice_tenant_hint(&new), Some("tn_2"));
        assert_eq!(invoice_subscription(&json!({"id": "in_1"})), None);
        assert_eq!(
            expandable_id(Some(&json!({"id": "cus_1"}))).as_deref(),
            Some("cus_1")
        );
        assert_eq!(expandable_id(Some(&json!("sub_\0x"))), None);
        assert_eq!(expandable_id(Some(&json!(""))), None);
        assert_eq!(expandable_id(Some(&json!(7))), None);
    }

    #[test]
    fn metric_labels_stay_bounded() {
        assert_eq!(type_label("customer.created"), "customer.created");
        assert_eq!(type_label("Weird Type"), "other");
        assert_eq!(type_label(&"a".repeat(65)), "other");
    }
}
