//! Stripe's webhook (`POST /v1/billing/stripe/webhook`), the subscription state it
//! keeps, dunning and `GET /v1/billing/subscription`. Events are signed here, with the
//! configured endpoint secret, exactly as Stripe signs them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatorical::config::{Secret, Settings};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{
    Backend, TenantFixture, TestApp, code, spawn_app, spawn_app_with, spawn_with_telegram,
};
use crate::on_both_backends;

on_both_backends!(
    signature_matrix_only_valid_signatures_change_state,
    the_same_event_delivered_concurrently_changes_state_once,
    invoice_paid_before_the_subscription_is_created_ends_right,
    updates_in_reverse_order_keep_the_newest_state,
    past_due_grace_then_downgrade_at_the_deadline_applies_free_at_once,
    invoice_paid_during_grace_keeps_the_plan,
    checkout_links_the_tenant_for_events_without_metadata,
    unknown_unmatched_and_unknown_plan_events_change_nothing_and_are_counted,
    without_stripe_billing_routes_answer_503,
    subscription_status_needs_billing_read_and_stays_in_its_tenant,
    openapi_documents_the_webhook_and_the_subscription,
    the_periodic_job_downgrades_a_grace_period_that_ended,
);

/// The endpoint's signing secret the test app is configured with.
const WHSEC: &str = "whsec_test_billing_0123456789abcdef";
const DAY_MS: i64 = 24 * 3600 * 1000;

fn with_billing(s: &mut Settings) {
    s.billing.stripe.secret_key = Some(Secret::new("sk_test_dummy_key"));
    s.billing.stripe.webhook_secret = Some(Secret::new(WHSEC));
    // Never called by the webhook half.
    s.billing.stripe.api_base = "http://127.0.0.1:9".into();
}

async fn spawn_billing(b: Backend) -> TestApp {
    spawn_app_with(b, with_billing).await
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Lower-case hex of HMAC-SHA256(`secret`, "{t}.{body}"): what Stripe puts in `v1`.
fn hmac_hex(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `Stripe-Signature` for `body` signed now with the configured secret.
fn signed(body: &[u8]) -> String {
    let t = now_s();
    format!("t={t},v1={}", hmac_hex(WHSEC, t, body))
}

/// POST a raw body with an optional `Stripe-Signature`.
async fn post_raw(app: &TestApp, body: Vec<u8>, signature: Option<String>) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(format!("{}/v1/billing/stripe/webhook", app.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(s) = signature {
        req = req.header("stripe-signature", s);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Deliver an event, signed, and insist on 200; returns its outcome.
async fn deliver(app: &TestApp, event: &Value) -> String {
    let body = serde_json::to_vec(event).expect("json");
    let sig = signed(&body);
    let (status, resp) = post_raw(app, body, Some(sig)).await;
    assert_eq!(status, StatusCode::OK, "{event}: {resp}");
    resp["outcome"].as_str().expect("outcome").to_string()
}

/// A Stripe event envelope.
fn event(id: &str, event_type: &str, created: i64, object: Value) -> Value {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "type": event_type,
        "created": created,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": object, "previous_attributes": {}}
    })
}

/// A subscription object of `tenant` as Checkout creates it (metadata
/// `chatorical_tenant`), on the price with `lookup_key`.
fn subscription(
    tenant: &str,
    sub: &str,
    status: &str,
    lookup_key: &str,
    period_end: i64,
    cancel: bool,
) -> Value {
    let interval = if lookup_key.ends_with("_year") {
        "year"
    } else {
        "month"
    };
    json!({
        "id": sub,
        "object": "subscription",
        "customer": format!("cus_{tenant}"),
        "status": status,
        "cancel_at_period_end": cancel,
        "metadata": {"chatorical_tenant": tenant},
        "items": {"object": "list", "data": [{
            "id": format!("si_{sub}"),
            "object": "subscription_item",
            "current_period_start": period_end - 30 * 86400,
            "current_period_end": period_end,
            "price": {
                "id": format!("price_{lookup_key}"),
                "object": "price",
                "lookup_key": lookup_key,
                "product": "prod_123",
                "recurring": {"interval": interval, "interval_count": 1}
            }
        }]}
    })
}

/// An invoice of subscription `sub` (API 2025-03-31 shape: `parent.subscription_details`).
fn invoice(tenant: &str, sub: &str, status: &str) -> Value {
    json!({
        "id": format!("in_{sub}_{status}"),
        "object": "invoice",
        "customer": format!("cus_{tenant}"),
        "status": status,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": sub, "metadata": {"chatorical_tenant": tenant}}
        }
    })
}

/// Plans `pro` and `business` without limits.
async fn plans(app: &TestApp) {
    for (code, name) in [("pro", "Pro"), ("business", "Business")] {
        let (status, body) = app
            .json(
                Method::PUT,
                &format!("/v1/admin/plans/{code}"),
                Some(&app.platform_key),
                Some(json!({"name": name, "limits": {}, "price_month_cents": 1900})),
            )
            .await;
        assert!(status.is_success(), "{body}");
    }
}

/// `GET /v1/billing/subscription` with a `billing:read` key of the tenant.
async fn billing_status(app: &TestApp, key: &str) -> Value {
    let (status, body) = app
        .json(Method::GET, "/v1/billing/subscription", Some(key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn reader(app: &TestApp, t: &TenantFixture) -> String {
    app.key(t, &["billing:read"]).await.1
}

async fn event_count(app: &TestApp) -> i64 {
    let mut pc = app.state.db.conn().await.expect("conn");
    chatorical::db::repo::billing_subscriptions::event_count(&mut pc.as_conn())
        .await
        .expect("count")
}

async fn grace_until_ms(app: &TestApp, t: &TenantFixture) -> i64 {
    let mut pc = app.state.db.conn().await.expect("conn");
    chatorical::db::repo::billing_subscriptions::get(&mut pc.as_conn(), &t.id)
        .await
        .expect("read")
        .expect("row")
        .grace_until
        .expect("in a grace period")
}

async fn run_due(app: &TestApp, at: i64) -> Vec<String> {
    let run = chatorical::billing::dunning::run_due(&app.state.db, at)
        .await
        .expect("dunning run");
    if run.notices > 0 {
        app.state.wake.wake();
    }
    run.downgraded.into_iter().map(String::from).collect()
}

async fn signature_matrix_only_valid_signatures_change_state(b: Backend) {
    let app = spawn_billing(b).await;
    plans(&app).await;
    let t = app.tenant("acme").await;
    let key = reader(&app, &t).await;
    let created = event(
        "evt_sig_1",
        "customer.subscription.created",
        now_s(),
        subscription(
            &t.id,
            "sub_1",
            "active",
            "chatorical_pro_month",
            now_s() + 86400,
            false,
        ),
    );
    let body = serde_json::to_vec(&created).expect("json");
    let now = now_s();
    let good = hmac_hex(WHSEC, now, &body);
    let mut flipped = body.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let pretty = serde_json::to_vec_pretty(&created).expect("json");
    assert_ne!(pretty, body);
    let other_secret = hmac_hex("whsec_someone_else", now, &body);

    let refused: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        (
            "one flipped byte",
            flipped,
            Some(format!("t={now},v1={good}")),
        ),
        (
            "re-serialised JSON",
            pretty,
            Some(format!("t={now},v1={good}")),
        ),
        (
            "timestamp 301 s old",
            body.clone(),
            Some(format!(
                "t={},v1={}",
                now - 301,
                hmac_hex(WHSEC, now - 301, &body)
            )),
        ),
        // Ahead by more than the tolerance plus however long this test takes to reach the
        // server (a slow run once took a second: 301 s ahead then looked 300 s ahead).
        (
            "timestamp 360 s ahead",
            body.clone(),
            Some(format!(
                "t={},v1={}",
                now + 360,
                hmac_hex(WHSEC, now + 360, &body)
            )),
        ),
        ("only v0", body.clone(), Some(format!("t={now},v0={good}"))),
        (
            "another secret",
            body.clone(),
            Some(format!("t={now},v1={other_secret}")),
        ),
        ("missing header", body.clone(), None),
        ("empty header", body.clone(), Some(String::new())),
    ];
    for (case, body, header) in refused {
        let (status, resp) = post_raw(&app, body, header).await;
        assert_eq!(
            (status, code(&resp)),
            (StatusCode::BAD_REQUEST, "invalid_signature"),
            "{case}: {resp}"
        );
    }
    // Nothing changed, nothing recorded.
    let state = billing_status(&app, &key).await;
    assert_eq!(
        (state["plan"].as_str(), state["status"].as_str()),
        (Some("free"), Some("none")),
        "{state}"
    );
    assert_eq!(event_count(&app).await, 0);

    // Two v1, one of them valid (the secret being rolled): accepted, and applied (not a
    // duplicate: the refused deliveries left no trace).
    let (status, resp) = post_raw(
        &app,
        body.clone(),
        Some(format!("t={now},v1={other_secret},v1={good}")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["outcome"], "applied");
    let state = billing_status(&app, &key).await;
    assert_eq!(state["plan"], "pro", "{state}");
    assert_eq!(state["status"], "active");
    assert_eq!(state["interval"], "month");
    assert_eq!(state["stripe_subscription_id"], "sub_1");
    assert_eq!(event_count(&app).await, 1);

    // A valid signature over something that is not an event: 400 invalid_json.
    let junk = b"[1, 2, 3]".to_vec();
    let sig = signed(&junk);
    let (status, resp) = post_raw(&app, junk, Some(sig)).await;
    assert_eq!(
        (status, code(&resp)),
        (StatusCode::BAD_REQUEST, "invalid_json"),
        "{resp}"
    );
}

async fn the_same_event_delivered_concurrently_changes_state_once(b: Backend) {
    let tg = spawn_with_telegram(b, with_billing).await;
    let app = &tg.app;
    plans(app).await;
    let t = &tg.tenant;
    let key = reader(app, t).await;
    let start = now_s() - 100;
    let created = event(
        "evt_dup_created",
        "customer.subscription.created",
        start,
        subscription(
            &t.id,
            "sub_1",
            "active",
            "chatorical_pro_month",
            start + 86400,
            false,
        ),
    );
    // Concurrent copies of one event: exactly one applies.
    let body = serde_json::to_vec(&created).expect("json");
    let sig = signed(&body);
    let results = futures_util::future::join_all(
        (0..4).map(|_| post_raw(app, body.clone(), Some(sig.clone()))),
    )
    .await;
    let mut outcomes: Vec<&str> = results
        .iter()
        .map(|(status, resp)| {
            assert_eq!(*status, StatusCode::OK, "{resp}");
            resp["outcome"].as_str().expect("outcome")
        })
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["applied", "duplicate", "duplicate", "duplicate"]);
    assert_eq!(billing_status(app, &key).await["plan"], "pro");

    // A failed payment delivered three times at once: one grace period, one notice.
    let failed = event(
        "evt_dup_failed",
        "invoice.payment_failed",
        start + 10,
        invoice(&t.id, "sub_1", "open"),
    );
    let body = serde_json::to_vec(&failed).expect("json");
    let sig = signed(&body);
    let results = futures_util::future::join_all(
        (0..3).map(|_| post_raw(app, body.clone(), Some(sig.clone()))),
    )
    .await;
    let mut outcomes: Vec<&str> = results
        .iter()
        .map(|(s, r)| {
            assert_eq!(*s, StatusCode::OK, "{r}");
            r["outcome"].as_str().expect("outcome")
        })
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["applied", "duplicate", "duplicate"]);
    // And once more later, as Stripe retries.
    assert_eq!(deliver(app, &failed).await, "duplicate");
    let state = billing_status(app, &key).await;
    assert_eq!(state["dunning"], "grace", "{state}");
    tg.fake
        .wait_for_calls("sendMessage", 1, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let notices = billing_notices(&tg.fake);
    assert_eq!(notices.len(), 1, "{notices:?}");
}

/// The billing notices the fake Telegram received: (thread id, text).
fn billing_notices(fake: &crate::fake_telegram::FakeTelegram) -> Vec<(Option<i32>, String)> {
    fake.calls_of("sendMessage")
        .into_iter()
        .filter(|c| c.text().is_some_and(|t| t.starts_with("Billing:")))
        .map(|c| (c.thread_id(), c.text().unwrap_or_default().to_string()))
        .collect()
}

async fn invoice_paid_before_the_subscription_is_created_ends_right(b: Backend) {
    let app = spawn_billing(b).await;
    plans(&app).await;
    let t = app.tenant("acme").await;
    let key = reader(&app, &t).await;
    let t0 = now_s() - 100;
    // Stripe's order: created (incomplete), invoice.paid, updated (active). Delivered:
    // invoice.paid first, then updated, then created.
    let paid = event(
        "evt_a_paid",
        "invoice.paid",
        t0 + 1,
        invoice(&t.id, "sub_9", "paid"),
    );
    assert_eq!(deliver(&app, &paid).await, "applied");
    let state = billing_status(&app, &key).await;
    assert_eq!(
        (state["plan"].as_str(), state["status"].as_str()),
        (Some("free"), Some("none")),
        "no subscription seen yet: {state}"
    );
    assert_eq!(state["stripe_subscription_id"], "sub_9");
    let period_end = t0 + 30 * 86400;
    let updated = event(
        "evt_a_updated",
        "customer.subscription.updated",
        t0 + 1,
        subscription(
            &t.id,
            "sub_9",
            "active",
            "chatorical_business_year",
            period_end,
            false,
        ),
    );
    let created = event(
        "evt_a_created",
        "customer.subscription.created",
        t0,
        subscription(
            &t.id,
            "sub_9",
            "incomplete",
            "chatorical_business_year",
            period_end,
            false,
        ),
    );
    assert_eq!(deliver(&app, &updated).await, "applied");
    assert_eq!(deliver(&app, &created).await, "stale");
    let state = billing_status(&app, &key).await;
    assert_eq!(state["plan"], "business", "{state}");
    assert_eq!(state["status"], "active");
    assert_eq!(state["interval"], "year");
    assert_eq!(state["dunning"], "none");
    assert_eq!(state["grace_until"], Value::Null);
    assert_eq!(
        humantime::parse_rfc3339(state["current_period_end"].as_str().expect("period end"))
            .expect("RFC 3339")
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64,
        period_end
    );

    // Same second, the other way round: created (active) arrives after the invoice.
    let other = app.tenant("beta").await;
    let other_key = reader(&app, &other).await;
    let paid = event(
        "evt_b_paid",
        "invoice.paid",
        t0 + 5,
        invoice(&other.id, "sub_b", "paid"),
    );
    let created = event(
        "evt_b_created",
        "customer.subscription.created",
        t0 + 5,
        subscription(
            &other.id,
            "sub_b",
            "active",
            "chatorical_pro_month",
            period_end,
            false,
        ),
    );
    assert_eq!(deliver(&app, &paid).await, "applied");
    assert_eq!(deliver(&app, &created).await, "applied");
    let state = billing_status(&app, &other_key).await;
    assert_eq!(
        (
            state["plan"].as_str(),
            state["status"].as_str(),
            state["dunning"].as_str()
        ),
        (Some("pro"), Some("active"), Some("none")),
        "{state}"
    );
}

async fn updates_in_reverse_order_keep_the_newest_state(b: Backend) {
    let app = spawn_billing(b).await;
    plans(&app).await;
    let t = app.tenant("acme").await;
    let key = reader(&app, &t).await;
    let t0 = now_s() - 1000;
    let p1 = t0 + 30 * 86400;
    let p2 = t0 + 365 * 86400;
    let created = event(
        "evt_r_0",
        "customer.subscription.created",
        t0,
        subscription(&t.id, "sub_r", "active", "chatorical_pro_month", p1, false),
    );
    let upgraded = event(
        "evt_r_1",
        "customer.subscription.updated",
        t0 + 10,
        subscription(
            &t.id,
            "sub_r",
            "active",
            "chatorical_business_month",
            p1,
            false,
        ),
    );
    let to_yearly_and_cancel = event(
        "evt_r_2",
        "customer.subscription.updated",
        t0 + 20,
        subscription(
            &t.id,
            "sub_r",
            "active",
            "chatorical_business_year",
            p2,
            true,
        ),
    );
    // Newest first.
    assert_eq!(deliver(&app, &to_yearly_and_cancel).await, "applied");
    assert_eq!(deliver(&app, &upgraded).await, "stale");
    assert_eq!(deliver(&app, &created).await, "stale");
    let state = billing_status(&app, &key).await;
    assert_eq!(state["plan"], "business", "{state}");
    assert_eq!(state["interval"], "year");
    assert_eq!(state["cancel_at_period_end"], true);
    assert_eq!(state["status"], "active");

    // Cancelled at period end: Stripe sends `deleted` then; the tenant goes to free,
    // and an older update arriving after that changes nothing.
    let deleted = event(
        "evt_r_3",
        "customer.subscription.deleted",
        t0 + 30,
        subscription(
            &t.id,
            "sub_r",
            "canceled",
            "chatorical_business_year",
            p2,
            true,
        ),
    );
    let late = event(
        "evt_r_late",
        "customer.subscription.updated",
        t0 + 25,
        subscription(
            &t.id,
            "sub_r",
            "active",
            "chatorical_business_year",
            p2,
            false,
        ),
    );
    assert_eq!(deliver(&app, &deleted).await, "applied");
    assert_eq!(deliver(&app, &late).await, "stale");
    let state = billing_status(&app, &key).await;
    assert_eq!(
        (state["plan"].as_str(), state["status"].as_str()),
        (Some("free"), Some("canceled")),
        "{state}"
    );
    // Replays of any of them are duplicates.
    for e in [&created, &upgraded, &to_yearly_and_cancel, &deleted] {
        assert_eq!(deliver(&app, e).await, "duplicate");
    }
    assert_eq!(billing_status(&app, &key).await["plan"], "free");
}

/// Open a conversation for a new visitor; returns (status, body).
async fn start_conversation(app: &TestApp, t: &TenantFixture) -> (StatusCode, Value) {
    let (status, s) = app
        .json(
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": t.widget_key})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let token = s["visitor_token"]
        .as_str()
        .expect("visitor_token")
        .to_string();
    app.json(Method::POST, "/v1/conversations", Some(&token), None)
        .await
}

async fn past_due_grace_then_downgrade_at_the_deadline_applies_free_at_once(b: Backend) {
    let tg = spawn_with_telegram(b, with_billing).await;
    let app = &tg.app;
    plans(app).await;
    let t = &tg.tenant;
    let key = reader(app, t).await;
    let t0 = now_s() - 200;
    let created = event(
        "evt_d_created",
        "customer.subscription.created",
        t0,
        subscription(
            &t.id,
            "sub_d",
            "active",
            "chatorical_pro_month",
            t0 + 86400,
            false,
        ),
    );
    assert_eq!(deliver(app, &created).await, "applied");
    assert_eq!(billing_status(app, &key).await["plan"], "pro");
    // Free allows 10 open conversations; pro has no limit.
    for n in 0..11 {
        let (status, body) = start_conversation(app, t).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "conversation {n} on pro: {body}"
        );
    }

    // The renewal fails: past_due starts the grace period.
    let past_due = event(
        "evt_d_past_due",
        "customer.subscription.updated",
        t0 + 50,
        subscription(
            &t.id,
            "sub_d",
            "past_due",
            "chatorical_pro_month",
            t0 + 86400,
            false,
        ),
    );
    assert_eq!(deliver(app, &past_due).await, "applied");
    let failed = event(
        "evt_d_failed",
        "invoice.payment_failed",
        t0 + 51,
        invoice(&t.id, "sub_d", "open"),
    );
    assert_eq!(deliver(app, &failed).await, "applied");
    let state = billing_status(app, &key).await;
    assert_eq!(state["dunning"], "grace", "{state}");
    assert_eq!(state["status"], "past_due");
    assert_eq!(
        state["plan"], "pro",
        "the plan is kept during the grace period"
    );
    let deadline = grace_until_ms(app, t).await;
    assert_eq!(
        deadline,
        (t0 + 50) * 1000 + 7 * DAY_MS,
        "7 days from past_due"
    );
    assert!(state["grace_until"].is_string(), "{state}");

    // One notice, in the General topic.
    tg.fake
        .wait_for_calls("sendMessage", 1, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notices = billing_notices(&tg.fake);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].0, None, "General topic: {notices:?}");
    assert!(notices[0].1.contains("pro plan failed"), "{notices:?}");

    // During the grace period the plan holds: an 12th conversation is fine.
    let (status, body) = start_conversation(app, t).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The job before the deadline does nothing.
    assert!(run_due(app, now_ms()).await.is_empty());
    assert!(run_due(app, deadline - 1).await.is_empty());
    assert_eq!(billing_status(app, &key).await["plan"], "pro");

    // At the deadline: free, at once.
    assert_eq!(run_due(app, deadline).await, vec![t.id.clone()]);
    let state = billing_status(app, &key).await;
    assert_eq!(
        (
            state["plan"].as_str(),
            state["dunning"].as_str(),
            state["subscription_plan"].as_str()
        ),
        (Some("free"), Some("downgraded"), Some("pro")),
        "{state}"
    );
    let (status, body) = start_conversation(app, t).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
        "free's open-conversation cap applies at once: {body}"
    );
    assert_eq!(
        body["error"]["details"]["quota"], "active_conversations",
        "{body}"
    );

    // Once: later runs find nothing.
    assert!(run_due(app, deadline + DAY_MS).await.is_empty());
    // Stripe still says past_due: the tenant stays on free.
    let still = event(
        "evt_d_still",
        "customer.subscription.updated",
        t0 + 100,
        subscription(
            &t.id,
            "sub_d",
            "past_due",
            "chatorical_pro_month",
            t0 + 86400,
            false,
        ),
    );
    assert_eq!(deliver(app, &still).await, "applied");
    assert_eq!(billing_status(app, &key).await["plan"], "free");

    // The downgrade notice, exactly one.
    let deadline_wait = tokio::time::Instant::now() + Duration::from_secs(20);
    while billing_notices(&tg.fake).len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline_wait,
            "downgrade notice: {:?}",
            billing_notices(&tg.fake)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notices = billing_notices(&tg.fake);
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert_eq!(notices[1].0, None, "General topic: {notices:?}");
    assert!(notices[1].1.contains("free plan"), "{notices:?}");

    // Paying the open invoice restores the plan.
    let paid = event(
        "evt_d_paid",
        "invoice.paid",
        t0 + 150,
        invoice(&t.id, "sub_d", "paid"),
    );
    assert_eq!(deliver(app, &paid).await, "applied");
    let state = billing_status(app, &key).await;
    assert_eq!(
        (
            state["plan"].as_str(),
            state["dunning"].as_str(),
            &state["grace_until"]
        ),
        (Some("pro"), Some("none"), &Value::Null),
        "{state}"
    );
    let (status, body) = start_conversation(app, t).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn invoice_paid_during_grace_keeps_the_plan(b: Backend) {
    // No Telegram connected: no notice, and nothing fails for it.
    let app = spawn_billing(b).await;
    plans(&app).await;
    let t = app.tenant("acme").await;
    let key = reader(&app, &t).await;
    let t0 = now_s() - 100;
    let created = event(
        "evt_g_created",
        "customer.subscription.created",
        t0,
        subscription(
            &t.id,
            "sub_g",
            "active",
            "chatorical_pro_month",
            t0 + 86400,
            false,
        ),
    );
    assert_eq!(deliver(&app, &created).await, "applied");
    let failed = event(
        "evt_g_failed",
        "invoice.payment_failed",
        t0 + 10,
        invoice(&t.id, "sub_g", "open"),
    );
    assert_eq!(deliver(&app, &failed).await, "applied");
    let state = billing_status(&app, &key).await;
    assert_eq!(state["dunning"], "grace", "{state}");
    let deadline = grace_until_ms(&app, &t).await;
    assert_eq!(deadline, (t0 + 10) * 1000 + 7 * DAY_MS);

    let paid = event(
        "evt_g_paid",
        "invoice.paid",
        t0 + 20,
        invoice(&t.id, "sub_g", "paid"),
    );
    assert_eq!(deliver(&app, &paid).await, "applied");
    // The failure delivered again late (a new id, as a retry's event would have) is older.
    let late = event(
        "evt_g_failed_late",
        "invoice.payment_failed",
        t0 + 15,
        invoice(&t.id, "sub_g", "open"),
    );
    assert_eq!(deliver(&app, &late).await, "stale");
    let state = billing_status(&app, &key).await;
    assert_eq!(
        (
            state["plan"].as_str(),
            state["dunning"].as_str(),
            &state["grace_until"]
        ),
        (Some("pro"), Some("none"), &Value::Null),
        "{state}"
    );
    // Past the old deadline: nothing to do.
    assert!(run_due(&app, deadline + 30 * DAY_MS).await.is_empty());
    assert_eq!(billing_status(&app, &key).await["plan"], "pro");
}

async fn checkout_links_the_tenant_for_events_without_metadata(b: Backend) {
    let app = spawn_billing(b).await;
    plans(&app).await;
    let t = app.tenant("acme").await;
    let key = reader(&app, &t).await;
    let t0 = now_s() - 100;
    let session = json!({
        "id": "cs_test_1",
        "object": "checkout.session",
        "mode": "subscription",
        "client_reference_id": t.id,
        "customer": "cus_linked",
        "subscription": "sub_linked",
        "metadata": {"chatorical_tenant": t.id}
    });
    assert_eq!(
        deliver(
            &app,
            &event("evt_l_cs", "checkout.session.completed", t0, session)
        )
        .await,
        "applied"
    );
    let state = billing_status(&app, &key).await;
    assert_eq!(state["stripe_customer_id"], "cus_linked", "{state}");
    assert_eq!(state["stripe_subscription_id"], "sub_linked");
    assert_eq!(state["plan"], "free", "linking alone changes no plan");

    // A subscription event without our metadata is found by its id.
    let mut sub = subscription(
        &t.id,
        "sub_linked",
        "active",
        "chatorical_pro_month",
        t0 + 86400,
        false,
    );
    sub["metadata"] = json!({});
    sub["customer"] = json!("cus_linked");
    assert_eq!(
        deliver(
            &app,
            &event("evt_l_sub", "customer.subscription.created", t0 + 1, sub)
        )
        .await,
        "applied"
    );
    assert_eq!(billing_status(&app, &key).await["plan"], "pro");
    // An invoice without metadata or subscription match is found by its customer.
    let failed = json!({
        "id": "in_l", "object": "invoice", "customer": "cus_linked",
        "subscription": "sub_linked"
    });
    assert_eq!(
        deliver(
            &app,
            &event("evt_l_inv", "invoice.payment_failed", t0 + 2, failed)
        )
        .await,
        "applied"
    );
    assert_eq!(billing_status(&app, &key).await["dunning"], "grace");
}

async fn unknown_unmatched_and_unknown_plan_events_change_nothing_and_are_counted(b: Backend) {
    let app = spawn_billing(b).await;
    plans(&app).await;
    let t = app.tenant("acme").await;
    let key = reader(&app, &t).await;
    let t0 = now_s() - 100;
    let customer = event(
        "evt_u_cus",
        "customer.created",
        t0,
        json!({"id": "cus_x", "object": "customer"}),
    );
    assert_eq!(deliver(&app, &customer).await, "ignored");
    assert_eq!(deliver(&app, &customer).await, "duplicate");
    // A one-off invoice (no subscription).
    let one_off = event(
        "evt_u_inv",
        "invoice.paid",
        t0,
        json!({"id": "in_x", "object": "invoice", "customer": "cus_x"}),
    );
    assert_eq!(deliver(&app, &one_off).await, "ignored");
    // Nobody's subscription.
    let stranger = event(
        "evt_u_stranger",
        "customer.subscription.created",
        t0,
        subscription(
            "tn_nobody",
            "sub_x",
            "active",
            "chatorical_pro_month",
            t0 + 86400,
            false,
        ),
    );
    assert_eq!(deliver(&app, &stranger).await, "unmatched");
    // A price this server has no plan for: stored, plan unchanged.
    let gold = event(
        "evt_u_gold",
        "customer.subscription.created",
        t0,
        subscription(
            &t.id,
            "sub_gold",
            "active",
            "chatorical_gold_month",
            t0 + 86400,
            false,
        ),
    );
    assert_eq!(deliver(&app, &gold).await, "unknown_plan");
    let state = billing_status(&app, &key).await;
    assert_eq!(
        (
            state["plan"].as_str(),
            state["status"].as_str(),
            state["subscription_plan"].as_str()
        ),
        (Some("free"), Some("active"), Some("gold")),
        "{state}"
    );
    // A refused signature is counted too.
    let (status, _) = post_raw(&app, b"{}".to_vec(), Some("t=1,v1=00".into())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let resp = app.call(Method::GET, "/metrics", None, None).await;
    let text = resp.text().await.expect("metrics");
    for series in [
        r#"chatorical_billing_events_total{type="customer.created",outcome="ignored"}"#,
        r#"chatorical_billing_events_total{type="customer.created",outcome="duplicate"}"#,
        r#"chatorical_billing_events_total{type="customer.subscription.created",outcome="unmatched"}"#,
        r#"chatorical_billing_events_total{type="customer.subscription.created",outcome="unknown_plan"}"#,
        r#"chatorical_billing_events_total{type="unverified",outcome="invalid_signature"}"#,
    ] {
        assert!(text.contains(series), "{series} missing from /metrics");
    }
}

async fn without_stripe_billing_routes_answer_503(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let key = reader(&app, &t).await;
    let body =
        serde_json::to_vec(&event("evt_n", "invoice.paid", now_s(), json!({}))).expect("json");
    let sig = signed(&body);
    let (status, resp) = post_raw(&app, body, Some(sig)).await;
    assert_eq!(
        (status, code(&resp)),
        (StatusCode::SERVICE_UNAVAILABLE, "billing_not_configured"),
        "{resp}"
    );
    let (status, resp) = app
        .json(Method::GET, "/v1/billing/subscription", Some(&key), None)
        .await;
    assert_eq!(
        (status, code(&resp)),
        (StatusCode::SERVICE_UNAVAILABLE, "billing_not_configured"),
        "{resp}"
    );

    // A secret key but no webhook secret: the webhook cannot verify anything.
    let app = spawn_app_with(b, |s| {
        with_billing(s);
        s.billing.stripe.webhook_secret = None;
    })
    .await;
    let body =
        serde_json::to_vec(&event("evt_n2", "invoice.paid", now_s(), json!({}))).expect("json");
    let sig = signed(&body);
    let (status, resp) = post_raw(&app, body, Some(sig)).await;
    assert_eq!(
        (status, code(&resp)),
        (StatusCode::SERVICE_UNAVAILABLE, "billing_not_configured"),
        "{resp}"
    );
    assert!(
        !resp.to_string().contains("sk_test_dummy_key"),
        "no secret in the answer: {resp}"
    );
}

async fn subscription_status_needs_billing_read_and_stays_in_its_tenant(b: Backend) {
    let app = spawn_billing(b).await;
    plans(&app).await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let t0 = now_s() - 100;
    let created = event(
        "evt_s_created",
        "customer.subscription.created",
        t0,
        subscription(
            &t.id,
            "sub_s",
            "trialing",
            "chatorical_pro_year",
            t0 + 86400,
            false,
        ),
    );
    assert_eq!(deliver(&app, &created).await, "applied");

    let (_, no_scope) = app.key(&t, &["conversations:read"]).await;
    let (status, body) = app
        .json(
            Method::GET,
            "/v1/billing/subscription",
            Some(&no_scope),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "forbidden"),
        "{body}"
    );
    let (status, _) = app
        .json(Method::GET, "/v1/billing/subscription", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let state = billing_status(&app, &reader(&app, &t).await).await;
    assert_eq!(
        (
            state["tenant"].as_str(),
            state["plan"].as_str(),
            state["status"].as_str(),
            state["interval"].as_str()
        ),
        (Some("acme"), Some("pro"), Some("trialing"), Some("year")),
        "{state}"
    );
    // Another tenant's key, even naming acme, sees its own tenant.
    let (status, mine) = app
        .http
        .get(format!("{}/v1/billing/subscription", app.base))
        .bearer_auth(reader(&app, &other).await)
        .header("Chatorical-Tenant", "acme")
        .send()
        .await
        .map(|r| (r.status(), r))
        .expect("sent");
    assert_eq!(status, StatusCode::OK);
    let mine: Value = mine.json().await.expect("json");
    assert_eq!(
        (
            mine["tenant"].as_str(),
            mine["status"].as_str(),
            &mine["stripe_subscription_id"]
        ),
        (Some("other"), Some("none"), &Value::Null),
        "{mine}"
    );
    // A platform key names the tenant.
    let (status, platform) = app
        .http
        .get(format!("{}/v1/billing/subscription", app.base))
        .bearer_auth(&app.platform_key)
        .header("Chatorical-Tenant", "acme")
        .send()
        .await
        .map(|r| (r.status(), r))
        .expect("sent");
    assert_eq!(status, StatusCode::OK);
    let platform: Value = platform.json().await.expect("json");
    assert_eq!(platform["status"], "trialing", "{platform}");
}

/// PostgreSQL refusing connections during a delivery: 503 (Stripe retries), nothing
/// recorded; the retry applies once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_503_and_the_retry_applies_once() {
    use crate::telegram_webhook::{ReallowOnDrop, allow_connections};
    let app = spawn_billing(Backend::Postgres).await;
    plans(&app).await;
    let t = app.tenant("acme").await;
    let key = reader(&app, &t).await;
    let url = app
        .state
        .settings
        .database
        .url
        .as_ref()
        .expect("database url")
        .expose()
        .to_string();
    let name = url
        .rsplit_once('/')
        .map(|(_, db)| db.split('?').next().unwrap_or(db).to_string())
        .expect("url has a database");
    let created = event(
        "evt_o_created",
        "customer.subscription.created",
        now_s() - 10,
        subscription(
            &t.id,
            "sub_o",
            "active",
            "chatorical_pro_month",
            now_s() + 86400,
            false,
        ),
    );
    let body = serde_json::to_vec(&created).expect("json");

    let _guard = ReallowOnDrop(name.clone());
    allow_connections(&name, false)
        .await
        .expect("refuse connections");
    let during = post_raw(&app, body.clone(), Some(signed(&body))).await;
    allow_connections(&name, true)
        .await
        .expect("allow connections");
    assert_eq!(
        (during.0, code(&during.1)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "{}",
        during.1
    );

    let (status, resp) = post_raw(&app, body.clone(), Some(signed(&body))).await;
    assert_eq!(
        (status, resp["outcome"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{resp}"
    );
    let (status, resp) = post_raw(&app, body.clone(), Some(signed(&body))).await;
    assert_eq!(
        (status, resp["outcome"].as_str()),
        (StatusCode::OK, Some("duplicate")),
        "{resp}"
    );
    assert_eq!(billing_status(&app, &key).await["plan"], "pro");
}

/// An event body larger than the API's usual 64 KiB limit (an invoice with many lines)
/// is still taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_events_are_taken() {
    let app = spawn_billing(Backend::Sqlite).await;
    let lines: Vec<Value> = (0..600)
        .map(|i| json!({"id": format!("il_{i}"), "object": "line_item", "description": "x".repeat(120)}))
        .collect();
    let big = event(
        "evt_big",
        "invoice.finalized",
        now_s(),
        json!({"id": "in_big", "object": "invoice", "lines": {"data": lines}}),
    );
    let body = serde_json::to_vec(&big).expect("json");
    assert!(body.len() > 64 * 1024, "{}", body.len());
    assert_eq!(deliver(&app, &big).await, "ignored");
}

async fn openapi_documents_the_webhook_and_the_subscription(b: Backend) {
    let app = spawn_app(b).await;
    let (status, doc) = app.json(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let webhook = &doc["paths"]["/v1/billing/stripe/webhook"]["post"];
    assert!(webhook.is_object(), "webhook documented");
    let params = webhook["parameters"].to_string();
    assert!(params.contains("Stripe-Signature"), "{params}");
    for code in ["200", "400", "503"] {
        assert!(
            webhook["responses"][code].is_object(),
            "webhook answers {code}"
        );
    }
    let sub = &doc["paths"]["/v1/billing/subscription"]["get"];
    assert!(sub.is_object(), "subscription documented");
    assert!(sub["responses"]["200"].is_object());
    let schema = &doc["components"]["schemas"]["BillingStatus"]["properties"];
    for field in [
        "plan",
        "status",
        "interval",
        "current_period_end",
        "cancel_at_period_end",
        "grace_until",
        "dunning",
    ] {
        assert!(
            schema[field].is_object(),
            "BillingStatus.{field} documented: {schema}"
        );
    }
}

async fn the_periodic_job_downgrades_a_grace_period_that_ended(b: Backend) {
    let app = spawn_billing(b).await;
    plans(&app).await;
    let t = app.tenant("acme").await;
    let key = reader(&app, &t).await;
    // Stripe's own time of the failure is 8 days ago (the delivery is signed now): the
    // 7-day grace period is already over.
    let t0 = now_s() - 8 * 86400;
    let created = event(
        "evt_j_created",
        "customer.subscription.created",
        t0 - 100,
        subscription(
            &t.id,
            "sub_j",
            "active",
            "chatorical_pro_month",
            t0 + 86400,
            false,
        ),
    );
    let past_due = event(
        "evt_j_past_due",
        "customer.subscription.updated",
        t0,
        subscription(
            &t.id,
            "sub_j",
            "past_due",
            "chatorical_pro_month",
            t0 + 86400,
            false,
        ),
    );
    assert_eq!(deliver(&app, &created).await, "applied");
    assert_eq!(deliver(&app, &past_due).await, "applied");
    let state = billing_status(&app, &key).await;
    assert_eq!(
        (state["plan"].as_str(), state["dunning"].as_str()),
        (Some("pro"), Some("grace")),
        "until the job runs: {state}"
    );
    // The job as the worker runs it, on a short period.
    let stop = tokio_util::sync::CancellationToken::new();
    let job = chatorical::billing::dunning::spawn(
        app.state.db.clone(),
        app.state.wake.clone(),
        Duration::from_millis(50),
        stop.clone(),
    );
    crate::helpers::eventually(10, "the job downgrades the tenant", || async {
        billing_status(&app, &key).await["plan"] == "free"
    })
    .await;
    stop.cancel();
    job.await.expect("the job stops cleanly");
    assert_eq!(billing_status(&app, &key).await["dunning"], "downgraded");
}
