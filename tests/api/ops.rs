//! Health, OpenAPI, the widget script, CORS and settings.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, TestApp, code, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    health_and_readiness_answer,
    openapi_documents_the_public_contract,
    widget_script_is_cacheable_by_version,
    cors_follows_the_allowed_origins,
    a_foreign_origin_reads_only_the_origin_error,
    settings_patch_validates_and_applies,
    duplicate_slug_is_a_conflict,
);

async fn health_and_readiness_answer(b: Backend) {
    let app = spawn_app(b).await;
    let (status, h) = app.json(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, h["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, r) = app.json(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (status, r["checks"]["database"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

async fn openapi_documents_the_public_contract(b: Backend) {
    let app = spawn_app(b).await;
    let (status, doc) = app.json(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/widget/session",
        "/v1/conversations",
        "/v1/conversations/{id}/messages",
        "/v1/ws",
        "/v1/admin/tenants",
        "/v1/admin/keys",
        "/v1/admin/keys/{id}",
        "/v1/admin/settings",
        "/v1/admin/conversations",
        "/v1/admin/conversations/{id}",
        "/v1/admin/conversations/{id}/close",
        "/v1/admin/conversations/{id}/messages",
        "/v1/admin/plans",
        "/v1/admin/plans/{code}",
        "/v1/admin/tenants/{slug}/plan",
        "/v1/billing/checkout",
        "/v1/billing/portal",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

async fn widget_script_is_cacheable_by_version(b: Backend) {
    let app = spawn_app(b).await;
    let resp = app.call(Method::GET, "/widget.js", None, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let etag = resp.headers()["etag"].to_str().expect("etag").to_string();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/javascript")
    );
    let version = etag.trim_matches('"').to_string();
    let versioned = app
        .call(Method::GET, &format!("/widget.js?v={version}"), None, None)
        .await;
    assert!(
        versioned.headers()["cache-control"]
            .to_str()
            .expect("cc")
            .contains("immutable")
    );
    let again = app
        .http
        .get(format!("{}/widget.js", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

async fn cors_follows_the_allowed_origins(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let preflight = |origin: String| {
        app.http
            .request(Method::OPTIONS, format!("{}/v1/widget/session", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight(t.origin.clone()).await.expect("sent");
    assert_eq!(
        ok.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(t.origin.as_str())
    );
    // A foreign origin's preflight is answered too (so that it can read the 403 below).
    let evil = preflight("https://evil.example".into())
        .await
        .expect("sent");
    assert_eq!(evil.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        evil.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://evil.example")
    );
    // The actual request from a foreign origin is refused before anything is stored.
    let resp = app
        .http
        .post(format!("{}/v1/widget/session", app.base))
        .header("origin", "https://evil.example")
        .json(&json!({"widget_key": t.widget_key}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(code(&body), "origin_not_allowed");
    let resp = app
        .http
        .post(format!("{}/v1/widget/session", app.base))
        .header("origin", &t.origin)
        .json(&json!({"widget_key": t.widget_key}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(t.origin.as_str())
    );
}

/// A widget call from `origin` (GET or POST with a JSON body, optional bearer):
/// status, `Access-Control-Allow-Origin`, whether credentials were allowed, body.
async fn cross_origin(
    app: &TestApp,
    method: Method,
    path: &str,
    origin: &str,
    bearer: Option<&str>,
    body: Option<serde_json::Value>,
) -> (StatusCode, Option<String>, bool, serde_json::Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.base))
        .header("origin", origin);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status();
    let allow = resp
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let credentials = resp
        .headers()
        .contains_key("access-control-allow-credentials");
    let text = resp.text().await.expect("body");
    (
        status,
        allow,
        credentials,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Issue 9 item 9: a widget on a page its tenant does not allow saw a network error
/// (no CORS headers on the 403) and retried forever. Every widget route now answers a
/// foreign origin's preflight, and its request with a 403 `origin_not_allowed` the page
/// can read — the same constant body whatever was asked, never tenant data, nothing
/// charged or stored, no credentials allowed.
async fn a_foreign_origin_reads_only_the_origin_error(b: Backend) {
    let app = spawn_app_with(b, |s| s.limits.sessions_per_ip_per_min = 2).await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    // A visitor of acme on acme's own page (one of the two sessions this address has).
    let (status, allow, _, session) = cross_origin(
        &app,
        Method::POST,
        "/v1/widget/session",
        &t.origin,
        None,
        Some(json!({"widget_key": t.widget_key})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(allow.as_deref(), Some(t.origin.as_str()));
    let token = session["visitor_token"]
        .as_str()
        .expect("token")
        .to_string();
    let (status, c) = app
        .json(Method::POST, "/v1/conversations", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let conversation = c["id"].as_str().expect("id").to_string();
    let (status, m) = app
        .json(
            Method::POST,
            &format!("/v1/conversations/{conversation}/messages"),
            Some(&token),
            Some(json!({"client_msg_id": "m1", "text": "secret order 42"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");

    let evil = "https://evil.example";
    for path in [
        "/v1/widget/session",
        "/v1/conversations",
        &format!("/v1/conversations/{conversation}/messages"),
        "/v1/i18n/en",
    ] {
        let resp = app
            .http
            .request(Method::OPTIONS, format!("{}{path}", app.base))
            .header("origin", evil)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{path}");
        let h = resp.headers();
        assert_eq!(h["access-control-allow-origin"], evil, "{path}");
        assert_eq!(
            h["access-control-allow-headers"],
            "authorization, content-type"
        );
        assert!(
            !h.contains_key("access-control-allow-credentials"),
            "{path}"
        );
    }

    let expected = json!({"error": {
        "code": "origin_not_allowed",
        "message": "this origin is not allowed for the tenant",
        "details": {}
    }});
    let history = format!("/v1/conversations/{conversation}/messages");
    let i18n = format!("/v1/i18n/en?widget_key={}", t.widget_key);
    let calls: Vec<(Method, &str, Option<&str>, Option<serde_json::Value>)> = vec![
        (
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": t.widget_key})),
        ),
        (
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": t.widget_key, "visitor_token": token})),
        ),
        (
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": "wk_unknown"})),
        ),
        (Method::POST, "/v1/conversations", Some(&token), None),
        (Method::GET, &history, Some(&token), None),
        (
            Method::POST,
            &history,
            Some(&token),
            Some(json!({"client_msg_id": "e1", "text": "from evil"})),
        ),
        (Method::GET, &i18n, None, None),
    ];
    for (method, path, bearer, body) in calls {
        let (status, allow, credentials, got) =
            cross_origin(&app, method.clone(), path, evil, bearer, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {got}");
        assert_eq!(
            allow.as_deref(),
            Some(evil),
            "{method} {path}: readable by the page"
        );
        assert!(!credentials, "{method} {path}");
        assert_eq!(got, expected, "{method} {path}: only the constant error");
    }
    // Nothing was stored or charged for those: the history is the one message, and
    // this address still has its second session.
    let (status, h) = app.json(Method::GET, &history, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{h}");
    assert_eq!(h["messages"].as_array().map(Vec::len), Some(1), "{h}");
    assert_eq!(
        app.state
            .limiter
            .rejected(chatorical::limits::Limit::SessionsPerIp),
        0
    );
    let (status, _) = app
        .json(
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": t.widget_key})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Another tenant's allowed origin on acme's key: refused by acme, readable too.
    let (status, allow, _, got) = cross_origin(
        &app,
        Method::GET,
        &history,
        &other.origin,
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{got}");
    assert_eq!(code(&got), "origin_not_allowed");
    assert_eq!(allow.as_deref(), Some(other.origin.as_str()));
}

async fn settings_patch_validates_and_applies(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let (status, body) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&t.key),
            Some(json!({"allowed_origins": ["https://shop.acme.example", "not an origin"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"]["field"], "allowed_origins");
    let (_, unchanged) = app
        .json(Method::GET, "/v1/admin/settings", Some(&t.key), None)
        .await;
    assert_eq!(
        unchanged["settings"]["allowed_origins"],
        json!([t.origin]),
        "nothing half-written"
    );
    let (status, s) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&t.key),
            Some(
                json!({"allowed_origins": ["https://Shop.Acme.example/"], "default_locale": "de"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["allowed_origins"], json!(["https://shop.acme.example"]));
    assert_eq!(s["default_locale"], "de");
    let (status, _) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&t.key),
            Some(json!({"colour": "red"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused"
    );
}

async fn duplicate_slug_is_a_conflict(b: Backend) {
    let app = spawn_app(b).await;
    app.tenant("acme").await;
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/admin/tenants",
            Some(&app.platform_key),
            Some(json!({"slug": "acme", "name": "again"})),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "conflict"));
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/admin/tenants",
            Some(&app.platform_key),
            Some(json!({"slug": "Not Valid", "name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"]["field"], "slug");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_requests_sockets_messages_and_outbox() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    app.send(&v, "m", "counted").await;
    let _ws = app.ws(&v.ws_token, Some(&t.origin)).await.expect("socket");
    let resp = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("text");
    for name in [
        "chatorical_http_requests_total",
        "chatorical_http_request_duration_seconds_bucket",
        "route=\"/v1/conversations/{id}/messages\"",
        "chatorical_messages_stored_total",
        "chatorical_sockets_open",
        "chatorical_outbox_items",
        "chatorical_webhook_updates_total",
        "chatorical_rate_limit_rejections_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(!text.contains(&t.id), "no tenant labels");
    assert!(!text.contains(&v.conversation_id), "no raw paths");
}
