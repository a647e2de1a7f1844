//! Inputs found by fuzzing the API (`scripts/fuzz-api`, schemathesis): each must be a 4xx
//! with the error envelope (or a success), never a 5xx, a panic or a dropped connection.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, code, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    key_expiry_past_year_9999_is_refused_and_keys_stay_listable,
    nul_bytes_in_text_are_never_a_server_error,
);

/// Status below 500; a 4xx carries the error envelope.
fn assert_client_outcome(what: &str, status: StatusCode, body: &Value) {
    assert!(!status.is_server_error(), "{what}: {status} {body}");
    if status.is_client_error() {
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{what}: {status} without the error envelope: {body}"
        );
    }
}

/// `POST /v1/admin/keys {"expires_in": "99999999999999d"}` stored a key expiring after the
/// year 9999; formatting its `expires_at` panicked (the connection dropped), and so did every
/// later `GET /v1/admin/keys`.
async fn key_expiry_past_year_9999_is_refused_and_keys_stay_listable(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    for expires_in in ["99999999999999d", "8000y", "18446744073709551615s"] {
        let (status, body) = app
            .json(
                Method::POST,
                "/v1/admin/keys",
                Some(&t.key),
                Some(json!({"scopes": ["conversations:read"], "expires_in": expires_in})),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{expires_in}: {body}"
        );
        assert_eq!(code(&body), "validation_failed", "{body}");
        assert_eq!(body["error"]["details"]["field"], "expires_in", "{body}");
    }
    // A long but writable expiry is still fine.
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/admin/keys",
            Some(&t.key),
            Some(json!({"scopes": ["conversations:read"], "expires_in": "100y"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .json(Method::GET, "/v1/admin/keys", Some(&t.key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A row written before the check (or by hand) is listed with the latest writable time.
    {
        let mut pc = app.state.db.conn().await.expect("connection");
        let row = chatorical::db::models::ApiKeyRow {
            id: "key_far_future".into(),
            tenant_id: Some(t.id.clone()),
            name: "by hand".into(),
            key_hash: "f".repeat(64),
            prefix: "chk_farfutur".into(),
            last4: "zzzz".into(),
            scopes: "conversations:read".into(),
            created_at: 1,
            expires_at: Some(i64::MAX),
            revoked_at: None,
            last_used_at: None,
            issued_by: None,
        };
        chatorical::db::repo::api_keys::insert(&mut pc.as_conn(), &row)
            .await
            .expect("insert");
    }
    let (status, body) = app
        .json(Method::GET, "/v1/admin/keys", Some(&t.key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["id"] == "key_far_future")
        .unwrap_or_else(|| panic!("the hand-written row is listed: {body}"));
    assert_eq!(listed["expires_at"], "9999-12-31T23:59:59.999Z");
}

/// PostgreSQL refuses NUL in `text` and `jsonb`; a NUL in any text field must be refused
/// (422) or stored, on both backends, never a 500.
async fn nul_bytes_in_text_are_never_a_server_error(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let nul = "a\u{0}b";
    let conv = &v.conversation_id;
    let cases: Vec<(Method, String, Option<String>, Value)> = vec![
        (
            Method::POST,
            format!("/v1/conversations/{conv}/messages"),
            Some(v.token.clone()),
            json!({"client_msg_id": "m1", "text": nul}),
        ),
        (
            Method::POST,
            format!("/v1/conversations/{conv}/messages"),
            Some(v.token.clone()),
            json!({"client_msg_id": nul, "text": "hi"}),
        ),
        (
            Method::POST,
            format!("/v1/admin/conversations/{conv}/messages"),
            Some(t.key.clone()),
            json!({"text": nul, "author": "Ana"}),
        ),
        (
            Method::POST,
            format!("/v1/admin/conversations/{conv}/messages"),
            Some(t.key.clone()),
            json!({"text": "hi", "author": nul}),
        ),
        (
            Method::POST,
            "/v1/widget/session".into(),
            None,
            json!({"widget_key": t.widget_key, "page_url": nul, "locale": nul}),
        ),
        (
            Method::POST,
            "/v1/widget/session".into(),
            None,
            json!({"widget_key": nul}),
        ),
        (
            Method::POST,
            "/v1/admin/keys".into(),
            Some(t.key.clone()),
            json!({"scopes": ["conversations:read"], "name": nul}),
        ),
        (
            Method::POST,
            "/v1/admin/tenants".into(),
            Some(app.platform_key.clone()),
            json!({"slug": "nul-name", "name": nul}),
        ),
        (
            Method::PATCH,
            "/v1/admin/settings".into(),
            Some(t.key.clone()),
            json!({"flags": {nul: true}}),
        ),
        (
            Method::PATCH,
            "/v1/admin/settings".into(),
            Some(t.key.clone()),
            json!({"allowed_origins": [nul], "default_locale": nul, "accent_color": nul}),
        ),
        (
            Method::PUT,
            "/v1/admin/templates/widget.title/de".into(),
            Some(t.key.clone()),
            json!({"body": nul}),
        ),
        (
            Method::POST,
            "/v1/admin/templates/preview".into(),
            Some(t.key.clone()),
            json!({"key": "widget.title", "locale": "de", "body": nul, "variables": {nul: nul}}),
        ),
        (
            Method::POST,
            "/v1/admin/outbox".into(),
            Some(t.key.clone()),
            json!({"text": nul, "idempotency_key": nul}),
        ),
    ];
    for (method, path, bearer, body) in cases {
        let what = format!("{method} {path} {body}");
        let (status, resp) = app.json(method, &path, bearer.as_deref(), Some(body)).await;
        assert_client_outcome(&what, status, &resp);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {resp}");
    }
    // NUL in path and query parameters.
    for path in [
        "/v1/admin/conversations/a%00b".to_string(),
        "/v1/admin/conversations?status=a%00b".to_string(),
        "/v1/admin/templates/widget.title/a%00b".to_string(),
        "/v1/admin/keys/key_%00".to_string(),
        "/v1/admin/outbox?status=%00".to_string(),
        "/v1/i18n/de?widget_key=wk_%00".to_string(),
    ] {
        let method = if path.starts_with("/v1/admin/keys/") {
            Method::DELETE
        } else {
            Method::GET
        };
        let (status, resp) = app.json(method, &path, Some(&t.key), None).await;
        assert_client_outcome(&path, status, &resp);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {resp}");
    }
    // An escaped backslash before `u0000` is not a NUL.
    let (status, resp) = app.send(&v, "literal", "C:\\u0000").await;
    assert_eq!(status, StatusCode::CREATED, "{resp}");
    assert_eq!(resp["text"], "C:\\u0000", "{resp}");
    // The service still answers.
    let (status, _) = app.send(&v, "after", "still here").await;
    assert_eq!(status, StatusCode::CREATED);
}
