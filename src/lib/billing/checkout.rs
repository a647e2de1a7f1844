//! A tenant buys a plan through Stripe Checkout and manages its card and subscription in
//! Stripe's customer portal.
//!
//! [`checkout`] (`POST /v1/billing/checkout`) and [`portal`] (`POST /v1/billing/portal`)
//! take the caller (`billing:write`, the tenant's own key or a platform key), check the
//! URLs Stripe will send the buyer back to (https, or one of the tenant's allowed
//! origins), and answer the URL of a Stripe-hosted page. The tenant's Stripe Customer
//! is created once and stored ([`ensure_customer`]). A client that sends an
//! `Idempotency-Key` and retries gets the same Checkout Session back.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stripe::StripeRequest as _;
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use stripe_core::customer::CreateCustomer;
use stripe_product::price::ListPrice;
use utoipa::ToSchema;

use super::{
    Billing, Interval, META_INTERVAL, META_PLAN, META_TENANT, idempotency_key, lookup_key,
    not_configured, stripe_failure,
};
use crate::audit::{Action, Entry};
use crate::db::{
    Db,
    models::{BillingCheckoutRow, BillingCustomerRow},
    repo,
};
use crate::domain::{Resource, Scope, ScopeAccess, now_ms, text};
use crate::error::{Error, ErrorCode, Result};
use crate::plans::{PlanCode, PlanSpec};
use crate::tenancy::{Caller, Tenant};

/// Longest URL accepted for Stripe to send the buyer back to.
pub const MAX_URL: usize = 2048;
/// Longest `Idempotency-Key` header accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The body of `POST /v1/billing/checkout`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// The plan to subscribe to (an active plan with a price for `interval`).
    pub plan: String,
    /// `month` or `year`.
    pub interval: Interval,
    /// Where Stripe sends the buyer after paying: https, or under one of the tenant's
    /// allowed origins.
    pub success_url: String,
    /// Where Stripe sends the buyer who cancels: https, or under an allowed origin.
    pub cancel_url: String,
}

/// The body of `POST /v1/billing/portal`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalRequest {
    /// Where the portal's "back" link goes: https, or under an allowed origin.
    pub return_url: String,
}

/// A Stripe-hosted page to send the buyer to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SessionUrl {
    /// The page's URL.
    pub url: String,
}

/// Open a Stripe Checkout Session for the tenant to subscribe to `plan` every
/// `interval` (`billing:write`), recording `billing.checkout_started` (plan, interval,
/// the session's id) once per session. With `idempotency_key` (the client's header) a
/// repeated request gets the same session and records nothing more; the same key with
/// another request is a conflict.
pub async fn checkout(
    db: &Db,
    billing: Option<&Billing>,
    caller: &Caller,
    tenant: &Tenant,
    request: &CheckoutRequest,
    idempotency_key_header: Option<&str>,
) -> Result<SessionUrl> {
    authorize(caller, tenant)?;
    let billing = billing.ok_or_else(not_configured)?;
    let code = PlanCode::parse("plan", request.plan.trim())?;
    check_return_url(tenant, "success_url", &request.success_url)?;
    check_return_url(tenant, "cancel_url", &request.cancel_url)?;
    let client_key = idempotency_key_header.map(check_client_key).transpose()?;
    let request_hash = hash(&[
        code.as_str(),
        request.interval.as_str(),
        &request.success_url,
        &request.cancel_url,
    ]);
    if let Some(key) = client_key
        && let Some(done) = stored_checkout(db, tenant, key, &request_hash).await?
    {
        return Ok(done);
    }

    let spec = sold_plan(db, &code, request.interval).await?;
    let price = current_price(billing, &code, request.interval, &spec).await?;
    let customer = ensure_customer(db, billing, tenant).await?;

    let tenant_id = tenant.id.as_str();
    let metadata = HashMap::from([
        (META_TENANT.to_string(), tenant_id.to_string()),
        (META_PLAN.to_string(), code.as_str().to_string()),
        (
            META_INTERVAL.to_string(),
            request.interval.as_str().to_string(),
        ),
    ]);
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price = Some(price);
    item.quantity = Some(1);
    let mut subscription = CreateCheckoutSessionSubscriptionData::new();
    subscription.metadata = Some(metadata.clone());
    let strategy = match client_key {
        Some(key) => idempotency_key(&["checkout", tenant_id, key, &request_hash]),
        None => idempotency_key(&["checkout", tenant_id, &uuid::Uuid::new_v4().to_string()]),
    };
    let session = CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Subscription)
        .customer(customer.as_str())
        .client_reference_id(tenant_id)
        .line_items(vec![item])
        .success_url(request.success_url.as_str())
        .cancel_url(request.cancel_url.as_str())
        .metadata(metadata)
        .subscription_data(subscription)
        .customize()
        .request_strategy(strategy)
        .send(billing.client())
        .await
        .map_err(|e| stripe_failure("opening a Checkout Session", e))?;
    let url = session.url.ok_or_else(|| {
        Error::new(
            ErrorCode::StripeError,
            "Stripe opened a Checkout Session without a URL",
        )
    })?;
    // Recorded once per session: a retry with the client's key that gets the same
    // session (stored by a concurrent request) records nothing more.
    let started = || {
        Entry::new(Action::BillingCheckoutStarted)
            .tenant(&tenant.id)
            .target(session.id.as_str())
            .changes(serde_json::json!({
                "plan": code.as_str(),
                "interval": request.interval.as_str(),
            }))
    };
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let Some(key) = client_key else {
        crate::transaction!(&mut conn, |tx| {
            crate::audit::record(tx, caller, started()).await
        })?;
        return Ok(SessionUrl { url });
    };
    let row = BillingCheckoutRow {
        tenant_id: tenant_id.to_string(),
        idempotency_key: key.to_string(),
        request_hash: request_hash.clone(),
        stripe_session_id: session.id.as_str().to_string(),
        url,
        created_at: now_ms(),
    };
    let stored = crate::transaction!(&mut conn, |tx| {
        let (stored, inserted) = repo::billing::insert_checkout(tx, &row).await?;
        same_request(&stored, &request_hash)?;
        if inserted {
            crate::audit::record(tx, caller, started()).await?;
        }
        Ok(stored)
    })?;
    Ok(SessionUrl { url: stored.url })
}

/// Open a session of Stripe's customer portal for the tenant (`billing:write`),
/// recording `billing.portal_opened` (the session's id) once per session.
pub async fn portal(
    db: &Db,
    billing: Option<&Billing>,
    caller: &Caller,
    tenant: &Tenant,
    request: &PortalRequest,
    idempotency_key_header: Option<&str>,
) -> Result<SessionUrl> {
    authorize(caller, tenant)?;
    let billing = billing.ok_or_else(not_configured)?;
    check_return_url(tenant, "return_url", &request.return_url)?;
    let client_key = idempotency_key_header.map(check_client_key).transpose()?;
    let customer = ensure_customer(db, billing, tenant).await?;
    let tenant_id = tenant.id.as_str();
    let strategy = match client_key {
        Some(key) => idempotency_key(&["portal", tenant_id, key, &request.return_url]),
        None => idempotency_key(&["portal", tenant_id, &uuid::Uuid::new_v4().to_string()]),
    };
    let session = CreateBillingPortalSession::new()
        .customer(customer.as_str())
        .return_url(request.return_url.as_str())
        .customize()
        .request_strategy(strategy)
        .send(billing.client())
        .await
        .map_err(|e| stripe_failure("opening a customer portal session", e))?;
    // A retry with the client's key gets the same session back from Stripe: recorded
    // once.
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let session_id = session.id.as_str();
    crate::transaction!(&mut conn, |tx| {
        if repo::audit::exists(
            tx,
            &tenant.id,
            Action::BillingPortalOpened.as_str(),
            session_id,
        )
        .await?
        {
            return Ok(());
        }
        crate::audit::record(
            tx,
            caller,
            Entry::new(Action::BillingPortalOpened)
                .tenant(&tenant.id)
                .target(session_id),
        )
        .await
    })?;
    Ok(SessionUrl { url: session.url })
}

/// The tenant's Stripe Customer id: the stored one, or a new Customer (named after
/// the tenant, `metadata.chatorical_tenant`), stored before it is returned. Creating it
/// twice (a retry, two first checkouts at once) gives the same Customer: the write's
/// idempotency key is the tenant's id.
pub async fn ensure_customer(db: &Db, billing: &Billing, tenant: &Tenant) -> Result<String> {
    let tenant_id = tenant.id.as_str();
    {
        let mut pc = db.conn().await?;
        let mut conn = pc.as_conn();
        if let Some(row) = repo::billing::customer(&mut conn, tenant_id).await? {
            return Ok(row.stripe_customer_id);
        }
    }
    let customer = CreateCustomer::new()
        .name(tenant.name.as_str())
        .metadata(HashMap::from([(
            META_TENANT.to_string(),
            tenant_id.to_string(),
        )]))
        .customize()
        .request_strategy(idempotency_key(&["customer.create", tenant_id]))
        .send(billing.client())
        .await
        .map_err(|e| stripe_failure("creating the tenant's Stripe customer", e))?;
    let row = BillingCustomerRow {
        tenant_id: tenant_id.to_string(),
        stripe_customer_id: customer.id.as_str().to_string(),
        created_at: now_ms(),
    };
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let stored = repo::billing::insert_customer(&mut conn, &row).await?;
    Ok(stored.stripe_customer_id)
}

/// `billing:write` on the tenant's own key, a platform key or the operator.
fn authorize(caller: &Caller, tenant: &Tenant) -> Result<()> {
    caller.require(&Scope::new(Resource::Billing, ScopeAccess::Write))?;
    caller.check_tenant(tenant)
}

/// A URL Stripe may send the tenant's buyer to: absolute, at most [`MAX_URL`] long,
/// `https://`, or under one of the tenant's allowed origins (`http://localhost:3000`
/// while developing).
pub fn check_return_url(tenant: &Tenant, field: &str, value: &str) -> Result<()> {
    let refuse = |why: &str| {
        Error::validation(
            field,
            format!("{field} {why}: {}", text::escape_controls(value)),
        )
    };
    if value.len() > MAX_URL {
        return Err(Error::validation(
            field,
            format!("{field} must be at most {MAX_URL} characters"),
        ));
    }
    let url = url::Url::parse(value).map_err(|_| refuse("is not an absolute URL"))?;
    if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("must name a host and no user"));
    }
    if url.scheme() == "https" {
        return Ok(());
    }
    let origin = url.origin().ascii_serialization();
    if tenant.settings.allows_origin(&origin) {
        return Ok(());
    }
    Err(refuse(
        "must be https:// or under one of the tenant's allowed origins",
    ))
}

/// The client's `Idempotency-Key`: 1–255 visible ASCII characters.
fn check_client_key(key: &str) -> Result<&str> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::validation(
            "Idempotency-Key",
            format!(
                "the Idempotency-Key header must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            ),
        ));
    }
    Ok(key)
}

/// The session stored under the client's key, if this request was made before.
async fn stored_checkout(
    db: &Db,
    tenant: &Tenant,
    key: &str,
    request_hash: &str,
) -> Result<Option<SessionUrl>> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let Some(row) = repo::billing::checkout(&mut conn, tenant.id.as_str(), key).await? else {
        return Ok(None);
    };
    same_request(&row, request_hash)?;
    Ok(Some(SessionUrl { url: row.url }))
}

fn same_request(row: &BillingCheckoutRow, request_hash: &str) -> Result<()> {
    if row.request_hash == request_hash {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::Conflict,
        "this Idempotency-Key was used for another checkout request; use a new key",
    )
    .with_details(serde_json::json!({ "field": "Idempotency-Key" })))
}

/// The plan, when it is active and sold every `interval`.
async fn sold_plan(db: &Db, code: &PlanCode, interval: Interval) -> Result<PlanSpec> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let row = repo::plans::get(&mut conn, code.as_str())
        .await?
        .ok_or_else(|| Error::validation("plan", format!("there is no plan `{code}`")))?;
    let plan = crate::plans::Plan::from_row(row)?;
    let spec = plan.spec();
    if !spec.active {
        return Err(Error::validation(
            "plan",
            format!("plan `{code}` is not active"),
        ));
    }
    if interval.price_of(&spec).is_none() {
        return Err(Error::validation(
            "interval",
            format!("plan `{code}` is not sold every {interval}"),
        ));
    }
    Ok(spec)
}

/// The id of the active Price holding the plan's lookup key for `interval`.
async fn current_price(
    billing: &Billing,
    code: &PlanCode,
    interval: Interval,
    spec: &PlanSpec,
) -> Result<String> {
    let key = lookup_key(code, interval);
    let prices = ListPrice::new()
        .lookup_keys(vec![key.clone()])
        .active(true)
        .limit(1)
        .send(billing.client())
        .await
        .map_err(|e| stripe_failure("finding the plan's price", e))?;
    let stale = || {
        Error::new(
            ErrorCode::Conflict,
            format!(
                "plan `{code}` is not in Stripe as the catalogue says (no active price `{key}` of {} cents): run `chatorical plans sync`",
                interval.price_of(spec).unwrap_or_default()
            ),
        )
    };
    let price = prices.data.into_iter().next().ok_or_else(stale)?;
    if price.unit_amount != interval.price_of(spec) {
        return Err(stale());
    }
    Ok(price.id.as_str().to_string())
}

/// Hex SHA-256 of the parts.
fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::TenantSettings;

    fn tenant(origins: &[&str]) -> Tenant {
        let settings = TenantSettings {
            allowed_origins: origins
                .iter()
                .map(|o| crate::domain::Origin::parse(o).expect("origin"))
                .collect(),
            ..TenantSettings::default()
        };
        Tenant {
            id: "t_1".to_string().into(),
            slug: "acme".into(),
            name: "Acme".into(),
            environment: crate::domain::Environment::Production,
            widget_key: "wk_x".into(),
            plan: "free".into(),
            settings,
            created_at: String::new(),
        }
    }

    #[test]
    fn return_urls_are_https_or_under_an_allowed_origin() {
        let t = tenant(&["http://localhost:3000", "https://shop.example"]);
        for ok in [
            "https://anywhere.example/done?session={CHECKOUT_SESSION_ID}",
            "http://localhost:3000/billing/done",
            "http://localhost:3000",
        ] {
            check_return_url(&t, "success_url", ok).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        }
        for bad in [
            "http://localhost:3001/done",
            "http://shop.example/done",
            "ftp://shop.example/",
            "https://user@shop.example/",
            "shop.example/done",
            "",
        ] {
            let e = check_return_url(&t, "cancel_url", bad).expect_err(bad);
            assert_eq!(e.code, ErrorCode::ValidationFailed, "{bad}");
            assert_eq!(e.details.expect("details")["field"], "cancel_url", "{bad}");
        }
        let long = format!("https://shop.example/{}", "a".repeat(MAX_URL));
        assert!(check_return_url(&t, "return_url", &long).is_err());
    }

    #[test]
    fn client_idempotency_keys_are_visible_ascii() {
        assert!(check_client_key("order-1_ABC:2").is_ok());
        for bad in [
            "",
            "with space",
            "ümlaut",
            &"k".repeat(MAX_IDEMPOTENCY_KEY + 1),
        ] {
            assert!(check_client_key(bad).is_err(), "{bad}");
        }
    }
}
