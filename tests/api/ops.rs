//! Health, OpenAPI, the widget script, CORS and settings.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, code, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    health_and_readiness_answer,
    openapi_documents_the_public_contract,
    widget_script_is_cacheable_by_version,
    cors_follows_the_allowed_origins,
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
    let evil = preflight("https://evil.example".into())
        .await
        .expect("sent");
    assert!(evil.headers().get("access-control-allow-origin").is_none());
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
