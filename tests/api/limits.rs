//! Rate limits: sessions per IP and per tenant, messages per visitor (HTTP and socket),
//! webhook calls per tenant; in this process and on Redis; Redis down (fail open or
//! closed); two nodes sharing one budget.

use std::time::Duration;

use chatorical::{
    cluster::Cluster,
    config::{RedisSettings, Secret, Settings},
    limits::{Limit, Limiter, Rate, Rates, SessionRefusal, UNKNOWN_TENANT},
};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, code, next_of, send_json, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    sessions_per_ip_in_process,
    sessions_per_ip_on_redis,
    forwarded_clients_of_a_trusted_proxy_have_their_own_budgets,
    forwarded_for_from_an_untrusted_peer_is_ignored,
    sessions_per_tenant_in_process,
    sessions_per_tenant_on_redis,
    strangers_cannot_spend_returning_visitors_budget_in_process,
    strangers_cannot_spend_returning_visitors_budget_on_redis,
    messages_per_visitor_over_http_in_process,
    messages_per_visitor_over_http_on_redis,
    messages_per_visitor_over_the_socket_in_process,
    messages_per_visitor_over_the_socket_on_redis,
    webhook_calls_per_tenant_in_process,
    webhook_calls_per_tenant_on_redis,
    redis_down_fails_open_by_default,
    redis_down_fails_closed_when_configured,
    two_nodes_on_one_redis_share_the_budget,
);

/// A key prefix of its own, so that parallel tests never share a budget.
fn unique_prefix() -> String {
    format!("chatorical_test_{}", uuid::Uuid::new_v4().simple())
}

fn use_redis(s: &mut Settings, prefix: &str) {
    s.redis.url = Some(Secret::new(crate::test_redis::url()));
    s.redis.key_prefix = prefix.to_string();
}

/// A command connection to the test Redis.
async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(crate::test_redis::url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis (TEST_REDIS_URL)")
}

/// Keys under `prefix` (to prove the budget lived in Redis).
async fn redis_keys(prefix: &str) -> Vec<String> {
    let mut c = redis().await;
    redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut c)
        .await
        .expect("KEYS")
}

async fn start_session(app: &TestApp, widget_key: &str) -> (StatusCode, Option<u64>, Value) {
    let resp = app
        .call(
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({ "widget_key": widget_key })),
        )
        .await;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: Value = resp.json().await.expect("JSON body");
    (status, retry_after, body)
}

/// A 429 `rate_limited` with `details.retry_after` ≥ 1 and the same `Retry-After`.
fn assert_rate_limited(status: StatusCode, retry_after: Option<u64>, body: &Value) {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(code(body), "rate_limited", "{body}");
    let secs = body["error"]["details"]["retry_after"]
        .as_u64()
        .unwrap_or_else(|| panic!("details.retry_after in {body}"));
    assert!(secs >= 1, "{body}");
    assert_eq!(
        retry_after,
        Some(secs),
        "Retry-After header matches the body"
    );
}

async fn sessions_per_ip(b: Backend, prefix: Option<String>) {
    let app = spawn_app_with(b, |s| {
        s.limits.sessions_per_ip_per_min = 3;
        if let Some(p) = &prefix {
            use_redis(s, p);
        }
    })
    .await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    for _ in 0..3 {
        let (status, _, body) = start_session(&app, &t.widget_key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // The fourth from this address in the minute, whichever tenant it is for.
    let (status, retry_after, body) = start_session(&app, &other.widget_key).await;
    assert_rate_limited(status, retry_after, &body);
    // 3 per minute: the next one is allowed in 20 s.
    assert_eq!(retry_after, Some(20));
    // Unknown widget keys count too (the check comes before the lookup).
    let (status, retry_after, body) = start_session(&app, "wk_nope").await;
    assert_rate_limited(status, retry_after, &body);
    assert_eq!(app.state.limiter.rejected(Limit::SessionsPerIp), 2);
    if let Some(p) = &prefix {
        let keys = redis_keys(p).await;
        assert!(
            keys.iter().any(|k| k.contains("sessions_per_ip")),
            "{keys:?}"
        );
    }
}

async fn sessions_per_ip_in_process(b: Backend) {
    sessions_per_ip(b, None).await;
}

async fn sessions_per_ip_on_redis(b: Backend) {
    sessions_per_ip(b, Some(unique_prefix())).await;
}

/// `POST /v1/widget/session` through `http` (whose local address is the TCP peer the
/// server sees), with an optional `X-Forwarded-For`.
async fn session_via(
    http: &reqwest::Client,
    app: &TestApp,
    widget_key: &str,
    forwarded_for: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = http
        .post(format!("{}/v1/widget/session", app.base))
        .json(&json!({ "widget_key": widget_key }));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    (status, resp.json().await.expect("JSON body"))
}

/// A client connecting from `local` (any 127.0.0.0/8 address reaches the server).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(local.parse().expect("address")))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Behind a trusted reverse proxy every visitor has their own per-IP budget, taken
/// from the right-most untrusted X-Forwarded-For address; what the client itself put
/// further left is ignored.
async fn forwarded_clients_of_a_trusted_proxy_have_their_own_budgets(b: Backend) {
    let app = spawn_app_with(b, |s| {
        s.limits.sessions_per_ip_per_min = 2;
        s.server.trusted_proxies = vec!["127.0.0.1".parse().expect("range")];
    })
    .await;
    let t = app.tenant("acme").await;
    let proxy = client_from("127.0.0.1");
    for _ in 0..2 {
        let (status, body) = session_via(&proxy, &app, &t.widget_key, Some("203.0.113.7")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = session_via(&proxy, &app, &t.widget_key, Some("203.0.113.7")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(code(&body), "rate_limited", "{body}");
    // A spoofed left-most entry does not buy a fresh budget: still 203.0.113.7.
    let (status, body) = session_via(
        &proxy,
        &app,
        &t.widget_key,
        Some("198.51.100.99, 203.0.113.7"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "spoofed entry honoured: {body}"
    );
    // Another visitor behind the same proxy has a budget of their own.
    for _ in 0..2 {
        let (status, body) = session_via(&proxy, &app, &t.widget_key, Some("203.0.113.8")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // And the proxy's own address (no header) was never charged.
    let (status, body) = session_via(&proxy, &app, &t.widget_key, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.state.limiter.rejected(Limit::SessionsPerIp), 2);
}

/// X-Forwarded-For from a peer that is not a trusted proxy changes nothing: every
/// request counts against the peer's address.
async fn forwarded_for_from_an_untrusted_peer_is_ignored(b: Backend) {
    let app = spawn_app_with(b, |s| {
        s.limits.sessions_per_ip_per_min = 2;
        s.server.trusted_proxies = vec!["127.0.0.1".parse().expect("range")];
    })
    .await;
    let t = app.tenant("acme").await;
    let untrusted = client_from("127.0.0.2");
    for xff in ["203.0.113.1", "203.0.113.2"] {
        let (status, body) = session_via(&untrusted, &app, &t.widget_key, Some(xff)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = session_via(&untrusted, &app, &t.widget_key, Some("203.0.113.3")).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "a fresh X-Forwarded-For from an untrusted peer bought a new budget: {body}"
    );
    assert_eq!(code(&body), "rate_limited", "{body}");
    // The trusted proxy forwarding for one of those addresses is unaffected.
    let proxy = client_from("127.0.0.1");
    let (status, body) = session_via(&proxy, &app, &t.widget_key, Some("203.0.113.3")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn sessions_per_tenant(b: Backend, prefix: Option<String>) {
    let app = spawn_app_with(b, |s| {
        s.limits.sessions_per_tenant_per_min = 2;
        if let Some(p) = &prefix {
            use_redis(s, p);
        }
    })
    .await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    for _ in 0..2 {
        let (status, _, body) = start_session(&app, &t.widget_key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, retry_after, body) = start_session(&app, &t.widget_key).await;
    assert_rate_limited(status, retry_after, &body);
    let (status, _, body) = start_session(&app, &other.widget_key).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "another tenant has its own budget: {body}"
    );
    assert_eq!(app.state.limiter.rejected(Limit::SessionsPerTenant), 1);
}

async fn sessions_per_tenant_in_process(b: Backend) {
    sessions_per_tenant(b, None).await;
}

async fn sessions_per_tenant_on_redis(b: Backend) {
    sessions_per_tenant(b, Some(unique_prefix())).await;
}

/// `POST /v1/widget/session` with `body`, through a trusted proxy for `client_ip`.
async fn session_for(
    proxy: &reqwest::Client,
    app: &TestApp,
    client_ip: &str,
    body: Value,
) -> (StatusCode, Value) {
    let resp = proxy
        .post(format!("{}/v1/widget/session", app.base))
        .header("x-forwarded-for", client_ip)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status();
    (status, resp.json().await.expect("JSON body"))
}

/// The value of the `chatorical_session_refusals_total` series of `tenant` and
/// `reason` on `/metrics`, if there is one.
async fn refusals_metric(app: &TestApp, tenant: &str, reason: &str) -> Option<f64> {
    let resp = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("text");
    text.lines()
        .filter(|l| l.starts_with("chatorical_session_refusals_total{"))
        .find(|l| {
            l.contains(&format!("tenant=\"{tenant}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Issue 9 item 6: 120 addresses, each within its own per-IP budget, spent a tenant's
/// session budget until a returning visitor got 429. Now the tenant's budget applies to
/// new visitors only: a visitor token of the tenant resumes whatever strangers did,
/// while no token, a malformed one and another tenant's valid one are new visitors.
/// Refusals are counted per tenant and reason, in the limiter and on /metrics.
async fn strangers_cannot_spend_returning_visitors_budget(b: Backend, prefix: Option<String>) {
    let app = spawn_app_with(b, |s| {
        s.limits.sessions_per_tenant_per_min = 3;
        s.limits.sessions_per_ip_per_min = 4;
        s.server.trusted_proxies = vec!["127.0.0.1".parse().expect("range")];
        if let Some(p) = &prefix {
            use_redis(s, p);
        }
    })
    .await;
    // The metrics recorder is shared by every test in this process: a slug of our own.
    let slug = format!("siege-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let t = app.tenant(&slug).await;
    let other = app.tenant(&format!("{slug}-b")).await;
    let proxy = client_from("127.0.0.1");
    let start = |ip: &'static str, body: Value| {
        let (proxy, app) = (&proxy, &app);
        async move { session_for(proxy, app, ip, body).await }
    };

    // A visitor's first visit (a new visitor: one of the tenant's three).
    let (status, first) = start("198.51.100.1", json!({"widget_key": t.widget_key})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let returning = first["visitor_token"]
        .as_str()
        .expect("visitor_token")
        .to_string();
    let (status, c) = app
        .json(Method::POST, "/v1/conversations", Some(&returning), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let conversation = c["id"].as_str().expect("id").to_string();
    // Another tenant's visitor: a valid token, but not one of this tenant's.
    let (status, foreign) = start("198.51.100.2", json!({"widget_key": other.widget_key})).await;
    assert_eq!(status, StatusCode::OK, "{foreign}");
    let foreign = foreign["visitor_token"]
        .as_str()
        .expect("token")
        .to_string();

    // Strangers, one session per address (far below the per-IP budget of 4).
    let strangers = [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
        "203.0.113.4",
        "203.0.113.5",
        "203.0.113.6",
    ];
    let mut refused = 0;
    for (i, ip) in strangers.into_iter().enumerate() {
        let (status, body) = start(ip, json!({"widget_key": t.widget_key})).await;
        if i < 2 {
            assert_eq!(status, StatusCode::OK, "stranger {i}: {body}");
        } else {
            assert_eq!(
                status,
                StatusCode::TOO_MANY_REQUESTS,
                "stranger {i}: {body}"
            );
            assert_eq!(code(&body), "rate_limited", "{body}");
            refused += 1;
        }
    }
    assert_eq!(refused, 4);

    // The budget is spent, and the returning visitor still gets in, as themselves,
    // every time (from their own address, within its budget).
    for _ in 0..3 {
        let (status, s) = start(
            "198.51.100.1",
            json!({"widget_key": t.widget_key, "visitor_token": returning}),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a returning visitor was refused: {s}"
        );
        assert_eq!(s["visitor_token"], returning.as_str(), "the same visitor");
        assert_eq!(s["conversation_id"], conversation.as_str(), "{s}");
    }

    // Tokens that resume nobody of this tenant are new visitors: still refused.
    for (ip, token) in [
        ("203.0.113.7", "vt_not-a-real-token"),
        ("203.0.113.8", "garbage"),
        ("203.0.113.9", foreign.as_str()),
    ] {
        let (status, body) = start(
            ip,
            json!({"widget_key": t.widget_key, "visitor_token": token}),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{token}: {body}");
        assert_eq!(code(&body), "rate_limited", "{body}");
    }
    // The other tenant has a budget of its own (one new visitor spent of three).
    let (status, body) = start("203.0.113.10", json!({"widget_key": other.widget_key})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The per-IP budget still holds for everybody, a resume too: the returning
    // visitor's address has used its 4.
    let (status, body) = start(
        "198.51.100.1",
        json!({"widget_key": t.widget_key, "visitor_token": returning}),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // An unknown key from an exhausted address: counted, but for no tenant.
    for _ in 0..4 {
        let (status, _) = start("192.0.2.1", json!({"widget_key": "wk_nope"})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = start("192.0.2.1", json!({"widget_key": "wk_nope"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // Exact counts, per tenant and reason.
    let limiter = &app.state.limiter;
    assert_eq!(
        limiter.session_refusals_of(&t.slug, SessionRefusal::Tenant),
        7
    );
    assert_eq!(limiter.session_refusals_of(&t.slug, SessionRefusal::Ip), 1);
    assert_eq!(
        limiter.session_refusals_of(&other.slug, SessionRefusal::Tenant),
        0
    );
    assert_eq!(
        limiter.session_refusals_of(UNKNOWN_TENANT, SessionRefusal::Ip),
        1
    );
    assert_eq!(limiter.rejected(Limit::SessionsPerTenant), 7);
    assert_eq!(limiter.rejected(Limit::SessionsPerIp), 2);
    assert_eq!(
        limiter.session_refusals(),
        vec![
            (UNKNOWN_TENANT.to_string(), SessionRefusal::Ip, 1),
            (t.slug.clone(), SessionRefusal::Ip, 1),
            (t.slug.clone(), SessionRefusal::Tenant, 7),
        ]
    );
    // And on /metrics, where an operator sees which tenant is being flooded.
    assert_eq!(refusals_metric(&app, &t.slug, "tenant").await, Some(7.0));
    assert_eq!(refusals_metric(&app, &t.slug, "ip").await, Some(1.0));
    assert_eq!(refusals_metric(&app, &other.slug, "tenant").await, None);
    if let Some(p) = &prefix {
        let keys = redis_keys(p).await;
        assert!(
            keys.iter().any(|k| k.contains("sessions_per_tenant")),
            "{keys:?}"
        );
    }
}

async fn strangers_cannot_spend_returning_visitors_budget_in_process(b: Backend) {
    strangers_cannot_spend_returning_visitors_budget(b, None).await;
}

async fn strangers_cannot_spend_returning_visitors_budget_on_redis(b: Backend) {
    strangers_cannot_spend_returning_visitors_budget(b, Some(unique_prefix())).await;
}

/// The visitor's messages, through the admin API.
async fn stored(app: &TestApp, key: &str, conversation_id: &str) -> Vec<Value> {
    let (status, h) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{conversation_id}/messages"),
            Some(key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{h}");
    h["messages"].as_array().expect("messages").clone()
}

async fn messages_over_http(b: Backend, prefix: Option<String>) {
    let app = spawn_app_with(b, |s| {
        s.limits.messages_per_visitor_per_min = 3;
        if let Some(p) = &prefix {
            use_redis(s, p);
        }
    })
    .await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let other = app.visitor(&t).await;
    for i in 0..3 {
        let (status, body) = app.send(&v, &format!("m{i}"), "hello").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let resp = app
        .call(
            Method::POST,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            Some(json!({"client_msg_id": "m3", "text": "one too many"})),
        )
        .await;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse().ok());
    let body: Value = resp.json().await.expect("JSON");
    assert_rate_limited(status, retry_after, &body);
    assert_eq!(stored(&app, &t.key, &v.conversation_id).await.len(), 3);
    let (status, body) = app.send(&other, "x", "my own budget").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.state.limiter.rejected(Limit::MessagesPerVisitor), 1);
}

async fn messages_per_visitor_over_http_in_process(b: Backend) {
    messages_over_http(b, None).await;
}

async fn messages_per_visitor_over_http_on_redis(b: Backend) {
    messages_over_http(b, Some(unique_prefix())).await;
}

async fn messages_over_the_socket(b: Backend, prefix: Option<String>) {
    let app = spawn_app_with(b, |s| {
        s.limits.messages_per_visitor_per_min = 2;
        if let Some(p) = &prefix {
            use_redis(s, p);
        }
    })
    .await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let mut ws = app.ws(&v.ws_token, Some(&t.origin)).await.expect("open");
    next_of(&mut ws, "hello").await;
    for i in 0..2 {
        send_json(
            &mut ws,
            json!({"type": "send", "client_msg_id": format!("s{i}"), "text": "hi"}),
        )
        .await;
        let ack = next_of(&mut ws, "ack").await;
        assert_eq!(ack["client_msg_id"], format!("s{i}"));
    }
    send_json(
        &mut ws,
        json!({"type": "send", "client_msg_id": "s2", "text": "one too many"}),
    )
    .await;
    let limit = next_of(&mut ws, "limit").await;
    assert_eq!(limit["code"], "rate_limited", "{limit}");
    assert!(
        limit["retry_after"].as_u64().is_some_and(|s| s >= 1),
        "{limit}"
    );
    // The socket stays open and answers; nothing beyond the limit was stored.
    send_json(&mut ws, json!({"type": "ping"})).await;
    next_of(&mut ws, "pong").await;
    let messages = stored(&app, &t.key, &v.conversation_id).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    // The budget is the visitor's, whichever way they send.
    let (status, body) = app.send(&v, "h1", "over HTTP").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(stored(&app, &t.key, &v.conversation_id).await.len(), 2);
}

async fn messages_per_visitor_over_the_socket_in_process(b: Backend) {
    messages_over_the_socket(b, None).await;
}

async fn messages_per_visitor_over_the_socket_on_redis(b: Backend) {
    messages_over_the_socket(b, Some(unique_prefix())).await;
}

async fn post_webhook(
    app: &TestApp,
    slug: &str,
    secret: Option<&str>,
    update_id: u32,
) -> (StatusCode, Option<u64>, Value) {
    let mut req = app
        .http
        .post(format!("{}/v1/telegram/webhook/{slug}", app.base))
        .header("content-type", "application/json")
        .body(format!(r#"{{"update_id": {update_id}}}"#));
    if let Some(s) = secret {
        req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: Value = resp.json().await.expect("JSON body");
    (status, retry_after, body)
}

async fn webhook_calls(b: Backend, prefix: Option<String>) {
    let t = crate::helpers::spawn_with_telegram(b, |s| {
        s.telegram.webhook_per_sec = 2;
        if let Some(p) = &prefix {
            use_redis(s, p);
        }
    })
    .await;
    let app = &t.app;
    let secret = t
        .fake
        .webhook(&t.token)
        .and_then(|h| h.secret_token)
        .expect("secret");
    let before = app.state.limiter.rejected(Limit::WebhookPerTenant);
    // Strangers without the secret are refused (401) and never spend the tenant's
    // budget: the limit applies after authentication.
    let answers =
        futures_util::future::join_all((0..8).map(|i| post_webhook(app, "acme", None, i))).await;
    for (status, _, body) in answers {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    assert_eq!(
        app.state.limiter.rejected(Limit::WebhookPerTenant),
        before,
        "nothing charged"
    );
    // Telegram itself, eight at once (again, until some are refused): the burst passes,
    // then 2 per second; the rest get 429. How many pass depends only on how long the
    // calls took, whatever the speed of this machine.
    let started = std::time::Instant::now();
    let (mut accepted, mut limited) = (0u64, 0u64);
    let mut update_id = 100;
    while limited == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never limited: {accepted} accepted"
        );
        let answers = futures_util::future::join_all(
            (0..8).map(|i| post_webhook(app, "acme", Some(&secret), update_id + i)),
        )
        .await;
        update_id += 8;
        for (status, retry_after, body) in answers {
            if status == StatusCode::TOO_MANY_REQUESTS {
                assert_rate_limited(status, retry_after, &body);
                limited += 1;
            } else {
                assert_eq!(status, StatusCode::OK, "{body}");
                accepted += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 2 + (elapsed * 2.0).ceil() as u64;
    assert!(
        (2..=bound).contains(&accepted),
        "{accepted} accepted in {elapsed:.2} s: the burst of 2, at most {bound}"
    );
    assert_eq!(
        app.state.limiter.rejected(Limit::WebhookPerTenant) - before,
        limited
    );
}

async fn webhook_calls_per_tenant_in_process(b: Backend) {
    webhook_calls(b, None).await;
}

async fn webhook_calls_per_tenant_on_redis(b: Backend) {
    webhook_calls(b, Some(unique_prefix())).await;
}

/// Nothing listens on port 1.
const DEAD_REDIS: &str = "redis://127.0.0.1:1/0";

async fn redis_down_fails_open_by_default(b: Backend) {
    let app = spawn_app_with(b, |s| {
        s.redis.url = Some(Secret::new(DEAD_REDIS));
        s.limits.sessions_per_ip_per_min = 1;
    })
    .await;
    assert!(app.state.settings.redis.limits_fail_open, "the default");
    let t = app.tenant("acme").await;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let (status, _, body) = start_session(&app, &t.widget_key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a dead Redis costs at most its timeout"
        );
    }
    assert!(app.state.limiter.redis_errors() >= 3);
    assert_eq!(app.state.limiter.rejected(Limit::SessionsPerIp), 0);
}

async fn redis_down_fails_closed_when_configured(b: Backend) {
    let app = spawn_app_with(b, |s| {
        s.redis.url = Some(Secret::new(DEAD_REDIS));
        s.redis.limits_fail_open = false;
    })
    .await;
    let t = app.tenant("acme").await;
    let (status, retry_after, body) = start_session(&app, &t.widget_key).await;
    assert_rate_limited(status, retry_after, &body);
    assert_eq!(retry_after, Some(1));
    assert!(app.state.limiter.redis_errors() >= 1);
    assert_eq!(app.state.limiter.rejected(Limit::SessionsPerIp), 1);
}

/// Two servers on one database and one Redis prefix: one budget per IP between them.
async fn two_nodes_on_one_redis_share_the_budget(b: Backend) {
    let prefix = unique_prefix();
    let a = spawn_app_with(b, |s| {
        s.limits.sessions_per_ip_per_min = 4;
        use_redis(s, &prefix);
    })
    .await;
    let database_url = a.state.settings.database.url.clone();
    let data_dir = a.state.settings.server.data_dir.clone();
    let key_file = a.state.settings.secrets.master_key_file.clone();
    let node_b = spawn_app_with(b, |s| {
        s.limits.sessions_per_ip_per_min = 4;
        use_redis(s, &prefix);
        s.database.url = database_url;
        s.server.data_dir = data_dir;
        s.secrets.master_key_file = key_file;
    })
    .await;
    let t = a.tenant("acme").await;
    for node in [&a, &node_b, &a, &node_b] {
        let (status, _, body) = start_session(node, &t.widget_key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for node in [&a, &node_b] {
        let (status, retry_after, body) = start_session(node, &t.widget_key).await;
        assert_rate_limited(status, retry_after, &body);
    }
}

/// Two limiters (two processes, as far as Redis can tell) on one prefix share the
/// budget; another prefix has its own.
#[tokio::test]
async fn limiters_on_one_redis_prefix_share_the_budget() {
    let prefix = unique_prefix();
    let settings = |prefix: &str| RedisSettings {
        url: Some(Secret::new(crate::test_redis::url())),
        key_prefix: prefix.to_string(),
        ..RedisSettings::default()
    };
    let rate = Rate::per_minute(3);
    let rates = Rates {
        sessions_per_ip: rate,
        sessions_per_tenant: rate,
        messages_per_visitor: rate,
        webhook_per_tenant: rate,
    };
    let limiter = |prefix: &str| {
        let cluster = Cluster::connect(&settings(prefix)).expect("cluster");
        assert!(cluster.is_some());
        Limiter::with_rates(rates, cluster, false)
    };
    let one = limiter(&prefix);
    let two = limiter(&prefix);
    let elsewhere = limiter(&unique_prefix());
    assert!(one.check(Limit::MessagesPerVisitor, "vis_1").await.is_ok());
    assert!(two.check(Limit::MessagesPerVisitor, "vis_1").await.is_ok());
    assert!(one.check(Limit::MessagesPerVisitor, "vis_1").await.is_ok());
    let wait = two
        .check(Limit::MessagesPerVisitor, "vis_1")
        .await
        .expect_err("the shared budget is spent");
    assert!(
        wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
        "{wait:?}"
    );
    assert!(one.check(Limit::MessagesPerVisitor, "vis_1").await.is_err());
    assert!(one.check(Limit::MessagesPerVisitor, "vis_2").await.is_ok());
    assert!(
        elsewhere
            .check(Limit::MessagesPerVisitor, "vis_1")
            .await
            .is_ok()
    );
    assert_eq!(one.redis_errors() + two.redis_errors(), 0);
    assert_eq!(two.rejected(Limit::MessagesPerVisitor), 1);
}
