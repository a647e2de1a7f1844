//! Billing, outbound: `plans sync` to Stripe (through the library's sync targets),
//! Checkout and the customer portal through the API — against the fake Stripe of
//! tests/support/fake_stripe.rs, driven by the real async-stripe client.

use std::time::Duration;

use chatorical::{
    billing::{
        Billing,
        catalogue::{Progress, Stripe},
    },
    config::Secret,
    error::ErrorCode,
    plans::catalogue::{self, Action, Catalogue, PlanChange, SyncOptions, SyncReport},
    tenancy::Caller,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fake_stripe::{self, FakeStripe};
use crate::helpers::{Backend, TenantFixture, TestApp, code, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    sync_to_stripe_creates_the_catalogue_then_writes_nothing,
    a_changed_price_moves_the_lookup_key_and_archives_the_old_price,
    a_stripe_500_mid_sync_stops_naming_the_plan_and_a_rerun_converges,
    checkout_retried_after_a_timeout_makes_one_session_and_one_customer,
    checkout_checks_urls_plans_and_the_idempotency_key,
    portal_opens_a_session_for_the_tenants_customer,
    billing_routes_answer_503_without_stripe,
    billing_routes_need_billing_write_on_the_tenant,
);

const CATALOGUE: &str = r#"
[plans.free]
name = "Free"

[plans.pro]
name = "Pro"
price_month_cents = 1900
price_year_cents = 19000

[plans.team]
name = "Team"
price_month_cents = 4900
"#;

async fn spawn_with_stripe(backend: Backend, fake: &FakeStripe) -> TestApp {
    let url = fake.url();
    spawn_app_with(backend, move |s| {
        s.billing.stripe.secret_key = Some(Secret::new(fake_stripe::SECRET_KEY));
        s.billing.stripe.webhook_secret = Some(Secret::new("whsec_fake"));
        s.billing.stripe.api_base = url;
        s.billing.stripe.request_timeout_secs = 1;
    })
    .await
}

fn billing(app: &TestApp) -> &Billing {
    app.state.billing.as_ref().expect("Stripe is configured")
}

fn no_progress(_: Progress<'_>) {}

/// `plans sync` as the CLI runs it: the database, then Stripe.
async fn sync(
    app: &TestApp,
    text: &str,
    options: SyncOptions,
) -> chatorical::error::Result<SyncReport> {
    let catalogue = Catalogue::parse("plans.toml", text).expect("valid catalogue");
    let db = catalogue::Database::new(&app.state.db);
    catalogue::sync(&Caller::Operator, &catalogue, &db, options).await?;
    let stripe = Stripe::new(billing(app), &no_progress);
    catalogue::sync(&Caller::Operator, &catalogue, &stripe, options).await
}

fn actions(report: &SyncReport) -> Vec<(String, String)> {
    report
        .plans
        .iter()
        .map(|p| (p.code.to_string(), p.action.as_str().to_string()))
        .collect()
}

fn plan<'a>(report: &'a SyncReport, code: &str) -> &'a PlanChange {
    report
        .plans
        .iter()
        .find(|p| p.code.as_str() == code)
        .unwrap_or_else(|| panic!("{code} in {report:?}"))
}

fn product_of<'a>(fake_products: &'a [Value], code: &str) -> &'a Value {
    let mine: Vec<&Value> = fake_products
        .iter()
        .filter(|p| p["metadata"]["chatorical_plan"] == code)
        .collect();
    assert_eq!(mine.len(), 1, "one product for {code}: {fake_products:?}");
    mine[0]
}

/// Every lookup key is held by exactly one price, active, of that amount and interval,
/// on the plan's product; no other active price of ours is left on any product.
fn assert_stripe_matches(fake: &FakeStripe, expected: &[(&str, &str, i64)]) {
    let products = fake.products();
    let prices = fake.prices();
    for (plan, interval, amount) in expected {
        let key = format!("chatorical_{plan}_{interval}");
        let holders: Vec<&Value> = prices.iter().filter(|p| p["lookup_key"] == key).collect();
        assert_eq!(holders.len(), 1, "{key}: {prices:#?}");
        let price = holders[0];
        assert_eq!(price["active"], true, "{key}");
        assert_eq!(price["unit_amount"], *amount, "{key}");
        assert_eq!(price["currency"], "eur", "{key}");
        assert_eq!(price["recurring"]["interval"], *interval, "{key}");
        assert_eq!(price["product"], product_of(&products, plan)["id"], "{key}");
        assert_eq!(price["metadata"]["chatorical_plan"], *plan, "{key}");
        assert_eq!(price["metadata"]["chatorical_interval"], *interval, "{key}");
    }
    let active: Vec<&Value> = prices.iter().filter(|p| p["active"] == true).collect();
    assert_eq!(
        active.len(),
        expected.len(),
        "no stray active price: {prices:#?}"
    );
}

async fn sync_to_stripe_creates_the_catalogue_then_writes_nothing(b: Backend) {
    let fake = FakeStripe::start().await;
    let app = spawn_with_stripe(b, &fake).await;

    // A dry run lists the calls it would make and makes none.
    let dry = sync(
        &app,
        CATALOGUE,
        SyncOptions {
            dry_run: true,
            prune: false,
        },
    )
    .await
    .expect("dry run");
    assert_eq!(fake.write_count(), 0);
    assert!(dry.dry_run && dry.changed);
    let pro = plan(&dry, "pro");
    assert_eq!(pro.action, Action::Created);
    assert_eq!(pro.calls.len(), 3, "{:?}", pro.calls);
    assert!(
        pro.calls[0].starts_with("POST /v1/products"),
        "{:?}",
        pro.calls
    );
    assert!(
        pro.calls[1].starts_with(
            "POST /v1/prices (1900 EUR cents every month, lookup_key chatorical_pro_month"
        ),
        "{:?}",
        pro.calls
    );

    let first = sync(&app, CATALOGUE, SyncOptions::default())
        .await
        .expect("first sync");
    assert_eq!(first.target, "stripe");
    assert_eq!(
        actions(&first),
        [("free", "created"), ("pro", "created"), ("team", "created")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // 3 products, 3 prices.
    assert_eq!(fake.write_count(), 6);
    let products = fake.products();
    assert_eq!(product_of(&products, "pro")["name"], "Pro");
    assert_eq!(product_of(&products, "free")["active"], true);
    assert_stripe_matches(
        &fake,
        &[
            ("pro", "month", 1900),
            ("pro", "year", 19000),
            ("team", "month", 4900),
        ],
    );

    // What async-stripe put on the wire: form-encoded bracket syntax, the secret key as
    // a bearer token (checked by the fake), an idempotency key on every write.
    let calls = fake.calls();
    for call in &calls {
        eprintln!("{} {} {}", call.method, call.path, call.raw);
    }
    let writes: Vec<_> = calls.iter().filter(|c| c.is_write()).collect();
    assert!(writes.iter().all(|c| {
        c.idempotency_key
            .as_deref()
            .is_some_and(|k| k.starts_with("chatorical-"))
    }));
    let create = writes
        .iter()
        .find(|c| c.path == "/v1/prices" && c.params["lookup_key"] == "chatorical_pro_month")
        .expect("the pro monthly price was created");
    assert_eq!(create.params["currency"], "eur");
    assert_eq!(create.params["unit_amount"], "1900");
    assert_eq!(create.params["recurring"]["interval"], "month");
    assert_eq!(create.params["transfer_lookup_key"], "true");
    assert_eq!(create.params["metadata"]["chatorical_plan"], "pro");
    let lookup = calls
        .iter()
        .find(|c| {
            c.method == "GET" && c.path == "/v1/prices" && c.params.get("lookup_keys").is_some()
        })
        .expect("prices read by lookup key");
    assert_eq!(
        lookup.params["lookup_keys"].as_array().map(Vec::len),
        Some(6)
    );

    // The second run reads, writes nothing and says so.
    fake.clear_calls();
    let second = sync(&app, CATALOGUE, SyncOptions::default())
        .await
        .expect("second sync");
    assert!(!second.changed, "{second:?}");
    assert!(
        second
            .plans
            .iter()
            .all(|p| p.action == Action::Unchanged && p.calls.is_empty())
    );
    assert_eq!(fake.write_count(), 0, "{:#?}", fake.calls());
    assert!(!fake.calls().is_empty(), "it did read Stripe");

    // An inactive plan deactivates its product; a rename updates it; nothing else.
    let changed = CATALOGUE
        .replace("name = \"Team\"", "name = \"Team\"\nactive = false")
        .replace("name = \"Pro\"", "name = \"Pro+\"");
    let third = sync(&app, &changed, SyncOptions::default())
        .await
        .expect("third sync");
    assert_eq!(fake.write_count(), 2, "{:#?}", fake.calls());
    let Action::Updated { changes } = &plan(&third, "team").action else {
        panic!("team updated: {third:?}");
    };
    assert_eq!(changes[0].to_string(), "active: true → false");
    let products = fake.products();
    assert_eq!(product_of(&products, "team")["active"], false);
    assert_eq!(product_of(&products, "pro")["name"], "Pro+");
    fake.clear_calls();
    let fourth = sync(&app, &changed, SyncOptions::default())
        .await
        .expect("fourth");
    assert!(!fourth.changed);
    assert_eq!(fake.write_count(), 0);
}

async fn a_changed_price_moves_the_lookup_key_and_archives_the_old_price(b: Backend) {
    let fake = FakeStripe::start().await;
    let app = spawn_with_stripe(b, &fake).await;
    sync(&app, CATALOGUE, SyncOptions::default())
        .await
        .expect("first sync");
    let old = fake
        .price_by_lookup_key("chatorical_pro_month")
        .expect("pro monthly price");

    let dearer = CATALOGUE.replace("price_month_cents = 1900", "price_month_cents = 2900");
    fake.clear_calls();
    let report = sync(&app, &dearer, SyncOptions::default())
        .await
        .expect("sync");
    let pro = plan(&report, "pro");
    let Action::Updated { changes } = &pro.action else {
        panic!("pro updated: {report:?}");
    };
    assert_eq!(
        changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["price_month_cents: 1900 → 2900"]
    );
    // One new price (the key moved with transfer_lookup_key), the old one archived.
    assert_eq!(fake.write_count(), 2, "{:#?}", fake.calls());
    let new = fake
        .price_by_lookup_key("chatorical_pro_month")
        .expect("the key moved");
    assert_ne!(new["id"], old["id"]);
    assert_eq!(new["unit_amount"], 2900);
    let archived = fake
        .prices()
        .into_iter()
        .find(|p| p["id"] == old["id"])
        .expect("old price kept");
    assert_eq!(archived["active"], false);
    assert_eq!(archived["lookup_key"], Value::Null);
    assert_stripe_matches(
        &fake,
        &[
            ("pro", "month", 2900),
            ("pro", "year", 19000),
            ("team", "month", 4900),
        ],
    );

    // A plan no longer sold yearly has its yearly price deactivated.
    let monthly_only = dearer.replace("price_year_cents = 19000\n", "");
    sync(&app, &monthly_only, SyncOptions::default())
        .await
        .expect("sync");
    assert_stripe_matches(&fake, &[("pro", "month", 2900), ("team", "month", 4900)]);

    fake.clear_calls();
    let again = sync(&app, &monthly_only, SyncOptions::default())
        .await
        .expect("sync");
    assert!(!again.changed);
    assert_eq!(fake.write_count(), 0);
}

async fn a_stripe_500_mid_sync_stops_naming_the_plan_and_a_rerun_converges(b: Backend) {
    let fake = FakeStripe::start().await;
    let app = spawn_with_stripe(b, &fake).await;
    // Writes: free product, pro product, pro monthly price — then a 500.
    fake.fail_writes(3, 1);
    let err = sync(&app, CATALOGUE, SyncOptions::default())
        .await
        .expect_err("Stripe failed");
    assert_eq!(err.code, ErrorCode::StripeError);
    assert!(err.message.contains("plan `pro`"), "{}", err.message);
    assert!(err.message.contains("api_error"), "{}", err.message);
    let details = err.details.clone().expect("details");
    assert_eq!(details["plan"], "pro");
    assert_eq!(details["stripe_type"], "api_error");
    assert_eq!(details["status"], 500);
    assert_eq!(fake.products().len(), 2);

    // The re-run finishes the job: nothing twice, everything once.
    let report = sync(&app, CATALOGUE, SyncOptions::default())
        .await
        .expect("re-run");
    assert_eq!(plan(&report, "free").action, Action::Unchanged);
    assert_eq!(plan(&report, "team").action, Action::Created);
    assert_eq!(fake.products().len(), 3);
    assert_stripe_matches(
        &fake,
        &[
            ("pro", "month", 1900),
            ("pro", "year", 19000),
            ("team", "month", 4900),
        ],
    );

    // A timeout after Stripe did the write (the answer lost): the re-run finds it.
    let dearer = CATALOGUE.replace("price_month_cents = 4900", "price_month_cents = 5900");
    fake.set_hang(Duration::from_secs(3));
    fake.time_out_write(0);
    let err = sync(&app, &dearer, SyncOptions::default())
        .await
        .expect_err("timed out");
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    assert!(err.message.contains("plan `team`"), "{}", err.message);
    sync(&app, &dearer, SyncOptions::default())
        .await
        .expect("re-run");
    assert_stripe_matches(
        &fake,
        &[
            ("pro", "month", 1900),
            ("pro", "year", 19000),
            ("team", "month", 5900),
        ],
    );
    fake.clear_calls();
    let again = sync(&app, &dearer, SyncOptions::default())
        .await
        .expect("again");
    assert!(!again.changed);
    assert_eq!(fake.write_count(), 0);
}

/// A tenant key with `billing:write` (and nothing else).
async fn billing_key(app: &TestApp, tenant: &TenantFixture) -> String {
    app.key(tenant, &["billing:write"]).await.1
}

async fn checkout(
    app: &TestApp,
    key: &str,
    idempotency_key: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(format!("{}/v1/billing/checkout", app.base))
        .bearer_auth(key)
        .json(&body);
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status();
    (status, resp.json().await.expect("JSON"))
}

fn pro_monthly(tenant: &TenantFixture) -> Value {
    json!({
        "plan": "pro",
        "interval": "month",
        "success_url": format!("{}/billing/done", tenant.origin),
        "cancel_url": "https://shop.example/billing/cancelled",
    })
}

async fn checkout_retried_after_a_timeout_makes_one_session_and_one_customer(b: Backend) {
    let fake = FakeStripe::start().await;
    let app = spawn_with_stripe(b, &fake).await;
    sync(&app, CATALOGUE, SyncOptions::default())
        .await
        .expect("sync");
    let t = app.tenant("acme").await;
    let key = billing_key(&app, &t).await;
    fake.clear_calls();

    // The customer is created at Stripe, but the answer never arrives in time.
    fake.set_hang(Duration::from_secs(3));
    fake.time_out_write(0);
    let (status, body) = checkout(&app, &key, Some("order-1"), pro_monthly(&t)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "unavailable");
    assert_eq!(fake.customers().len(), 1);
    assert_eq!(fake.checkout_sessions().len(), 0);

    // The client retries with the same key: the same customer (Stripe replays its
    // answer), one session.
    let (status, first) = checkout(&app, &key, Some("order-1"), pro_monthly(&t)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let url = first["url"].as_str().expect("url").to_string();
    assert!(url.starts_with("https://checkout.stripe.test/"), "{url}");
    assert_eq!(fake.customers().len(), 1);
    assert_eq!(fake.checkout_sessions().len(), 1);

    // Again: the stored session, no call to Stripe at all.
    let before = fake.calls().len();
    let (status, again) = checkout(&app, &key, Some("order-1"), pro_monthly(&t)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["url"], url);
    assert_eq!(fake.calls().len(), before);

    // This time the session's answer is lost: the retry gets that same session.
    fake.time_out_write(0);
    let (status, body) = checkout(&app, &key, Some("order-2"), pro_monthly(&t)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(fake.checkout_sessions().len(), 2);
    let (status, second) = checkout(&app, &key, Some("order-2"), pro_monthly(&t)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(fake.checkout_sessions().len(), 2, "no third session");
    assert_ne!(second["url"], url);
    assert_eq!(fake.customers().len(), 1, "one customer per tenant");

    // What the session asked Stripe for.
    let sessions = fake.checkout_sessions();
    let session = &sessions[0];
    let customer = &fake.customers()[0];
    assert_eq!(session["customer"], customer["id"]);
    assert_eq!(customer["metadata"]["chatorical_tenant"], t.id.as_str());
    assert_eq!(customer["name"], "acme");
    assert_eq!(session["mode"], "subscription");
    assert_eq!(session["client_reference_id"], t.id.as_str());
    assert_eq!(session["metadata"]["chatorical_plan"], "pro");
    assert_eq!(session["metadata"]["chatorical_interval"], "month");
    let create = fake
        .calls()
        .into_iter()
        .find(|c| c.path == "/v1/checkout/sessions" && c.status == 200)
        .expect("session created");
    let price = fake
        .price_by_lookup_key("chatorical_pro_month")
        .expect("price");
    assert_eq!(create.params["line_items"][0]["price"], price["id"]);
    assert_eq!(create.params["line_items"][0]["quantity"], "1");
    assert_eq!(
        create.params["subscription_data"]["metadata"]["chatorical_tenant"],
        t.id.as_str()
    );
    assert!(
        fake.calls()
            .iter()
            .filter(|c| c.is_write())
            .all(|c| c.idempotency_key.is_some())
    );

    // The customer is stored: a later checkout without a key reuses it.
    let (status, third) = checkout(&app, &key, None, pro_monthly(&t)).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    assert_eq!(fake.customers().len(), 1);
    assert_eq!(fake.checkout_sessions().len(), 3);
}

async fn checkout_checks_urls_plans_and_the_idempotency_key(b: Backend) {
    let fake = FakeStripe::start().await;
    let app = spawn_with_stripe(b, &fake).await;
    sync(&app, CATALOGUE, SyncOptions::default())
        .await
        .expect("sync");
    let t = app.tenant("acme").await;
    let key = billing_key(&app, &t).await;

    let cases = [
        (
            json!({"success_url": "http://acme.example/done"}),
            "success_url",
        ),
        (json!({"cancel_url": "javascript:alert(1)"}), "cancel_url"),
        (json!({"success_url": "/relative"}), "success_url"),
        (
            json!({"success_url": "https://user:pw@acme.example/"}),
            "success_url",
        ),
        (json!({"plan": "nope"}), "plan"),
        (json!({"plan": "Not A Code"}), "plan"),
        (json!({"plan": "free"}), "interval"),
        (json!({"plan": "team", "interval": "year"}), "interval"),
    ];
    for (patch, field) in cases {
        let mut body = pro_monthly(&t);
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, err) = checkout(&app, &key, None, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_eq!(err["error"]["details"]["field"], field, "{body}: {err}");
    }
    let (status, err) =
        checkout(&app, &key, None, json!({"plan": "pro", "interval": "week"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    // Nothing reached Stripe for any of them.
    assert_eq!(fake.customers().len(), 0);

    // The same key with another request is a conflict.
    let (status, _) = checkout(&app, &key, Some("k-1"), pro_monthly(&t)).await;
    assert_eq!(status, StatusCode::OK);
    let mut yearly = pro_monthly(&t);
    yearly["interval"] = "year".into();
    let (status, err) = checkout(&app, &key, Some("k-1"), yearly.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(code(&err), "conflict");
    let (status, err) = checkout(&app, &key, Some("bad key"), yearly.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");

    // A plan whose Stripe price is not there (never synced to Stripe) is a conflict
    // that says what to run.
    let (status, p) = app
        .json(
            Method::PUT,
            "/v1/admin/plans/business",
            Some(&app.platform_key),
            Some(json!({"name": "Business", "price_month_cents": 9900})),
        )
        .await;
    assert!(status.is_success(), "{p}");
    let mut business = pro_monthly(&t);
    business["plan"] = "business".into();
    let (status, err) = checkout(&app, &key, None, business).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("plans sync")),
        "{err}"
    );

    // Stripe's refusal is a 502 with Stripe's code, never its message or our key.
    fake.fail_writes(0, 1);
    let (status, err) = checkout(&app, &key, None, pro_monthly(&t)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{err}");
    assert_eq!(code(&err), "stripe_error");
    assert_eq!(err["error"]["details"]["stripe_type"], "api_error");
    let shown = err.to_string();
    assert!(
        !shown.contains("injected") && !shown.contains(fake_stripe::SECRET_KEY),
        "{shown}"
    );
}

async fn portal_opens_a_session_for_the_tenants_customer(b: Backend) {
    let fake = FakeStripe::start().await;
    let app = spawn_with_stripe(b, &fake).await;
    let t = app.tenant("acme").await;
    let key = billing_key(&app, &t).await;
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/billing/portal",
            Some(&key),
            Some(json!({"return_url": format!("{}/account", t.origin)})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://billing.stripe.test/")),
        "{body}"
    );
    let sessions = fake.portal_sessions();
    assert_eq!(sessions.len(), 1);
    let customers = fake.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(sessions[0]["customer"], customers[0]["id"]);
    assert_eq!(sessions[0]["return_url"], format!("{}/account", t.origin));

    // A second session: the same customer.
    let (status, _) = app
        .json(
            Method::POST,
            "/v1/billing/portal",
            Some(&key),
            Some(json!({"return_url": "https://acme.example/"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fake.customers().len(), 1);
    assert_eq!(fake.portal_sessions().len(), 2);

    let (status, err) = app
        .json(
            Method::POST,
            "/v1/billing/portal",
            Some(&key),
            Some(json!({"return_url": "http://evil.example/"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["details"]["field"], "return_url");
    assert_eq!(fake.portal_sessions().len(), 2);
}

async fn billing_routes_answer_503_without_stripe(b: Backend) {
    let app = spawn_app(b).await;
    assert!(app.state.billing.is_none());
    let t = app.tenant("acme").await;
    let key = billing_key(&app, &t).await;
    let (status, err) = checkout(&app, &key, None, pro_monthly(&t)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(code(&err), "billing_not_configured");
    let (status, err) = app
        .json(
            Method::POST,
            "/v1/billing/portal",
            Some(&key),
            Some(json!({"return_url": "https://acme.example/"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(code(&err), "billing_not_configured");
}

async fn billing_routes_need_billing_write_on_the_tenant(b: Backend) {
    let fake = FakeStripe::start().await;
    let app = spawn_with_stripe(b, &fake).await;
    sync(&app, CATALOGUE, SyncOptions::default())
        .await
        .expect("sync");
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let (_, read_only) = app.key(&t, &["billing:read"]).await;
    for path in ["/v1/billing/checkout", "/v1/billing/portal"] {
        let body = if path.ends_with("portal") {
            json!({"return_url": "https://acme.example/"})
        } else {
            pro_monthly(&t)
        };
        for key in [read_only.as_str(), t.key.as_str()] {
            let (status, err) = app
                .json(Method::POST, path, Some(key), Some(body.clone()))
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {err}");
            assert_eq!(code(&err), "forbidden");
        }
        let (status, _) = app.json(Method::POST, path, None, Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(fake.customers().len(), 0);

    // A platform key acts for the tenant it names; a tenant key only for its own.
    let resp = app
        .http
        .post(format!("{}/v1/billing/portal", app.base))
        .bearer_auth(&app.platform_key)
        .header("Chatorical-Tenant", &other.slug)
        .json(&json!({"return_url": "https://other.example/"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let customers = fake.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(
        customers[0]["metadata"]["chatorical_tenant"],
        other.id.as_str()
    );
}
