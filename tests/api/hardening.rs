//! Regressions from the adversarial probe: key issuing cannot escalate, child keys die
//! with their issuer, names cannot carry terminal escapes, settings stay bounded,
//! invisible messages are empty, origins are parsed as URLs.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, code, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    a_key_cannot_issue_a_key_wider_than_itself,
    child_keys_expire_with_and_are_revoked_with_their_issuer,
    control_characters_in_names_are_refused,
    feature_flags_are_bounded_and_can_be_deleted,
    invisible_only_messages_are_empty,
    origins_are_parsed_and_normalised_as_urls,
);

async fn issue(app: &TestApp, bearer: &str, body: Value) -> (StatusCode, Value) {
    app.json(Method::POST, "/v1/admin/keys", Some(bearer), Some(body))
        .await
}

async fn issue_ok(app: &TestApp, bearer: &str, body: Value) -> Value {
    let (status, k) = issue(app, bearer, body).await;
    assert_eq!(status, StatusCode::CREATED, "{k}");
    k
}

fn key_of(k: &Value) -> &str {
    k["key"].as_str().expect("key")
}

async fn status_with(app: &TestApp, key: &str, path: &str, tenant: Option<&str>) -> StatusCode {
    let mut req = app.http.get(format!("{}{path}", app.base)).bearer_auth(key);
    if let Some(t) = tenant {
        req = req.header("Chatorical-Tenant", t);
    }
    req.send().await.expect("request").status()
}

async fn a_key_cannot_issue_a_key_wider_than_itself(b: Backend) {
    let app = spawn_app(b).await;
    let acme = app.tenant("acme").await;
    let other = app.tenant("other").await;
    // A platform key that may only manage keys.
    let keys_only = issue_ok(&app, &app.platform_key, json!({"scopes": ["keys:write"]})).await;
    let keys_only = key_of(&keys_only).to_string();

    // Every wider grant is refused, for platform and tenant keys alike, and names the scope.
    for (body, scope) in [
        (json!({"scopes": ["tenants:write"]}), "tenants:write"),
        (
            json!({"scopes": ["keys:write", "outbox:reveal"]}),
            "outbox:reveal",
        ),
        (
            json!({"tenant": "acme", "scopes": ["conversations:read"]}),
            "conversations:read",
        ),
        (
            json!({"tenant": "other", "scopes": ["settings:write"]}),
            "settings:write",
        ),
    ] {
        let (status, err) = issue(&app, &keys_only, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body} → {err}");
        assert_eq!(code(&err), "forbidden");
        assert_eq!(err["error"]["details"]["scope"], scope, "{err}");
    }
    // It still reads nobody's conversations.
    assert_eq!(
        status_with(&app, &keys_only, "/v1/admin/conversations", Some("acme")).await,
        StatusCode::FORBIDDEN
    );
    // What it holds it may pass on, to a platform key or a tenant key.
    let narrower = issue_ok(&app, &keys_only, json!({"scopes": ["keys:read"]})).await;
    assert_eq!(narrower["scopes"], json!(["keys:read"]));
    assert_eq!(narrower["tenant"], Value::Null);
    let tenant_keys = issue_ok(
        &app,
        &keys_only,
        json!({"tenant": "acme", "scopes": ["keys:write"]}),
    )
    .await;
    assert_eq!(tenant_keys["tenant"], "acme");
    // The tenant key it made cannot widen either, nor issue for another tenant.
    let (status, _) = issue(
        &app,
        key_of(&tenant_keys),
        json!({"scopes": ["conversations:write"]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, err) = issue(
        &app,
        &acme.key,
        json!({"tenant": "other", "scopes": ["keys:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    // Nothing was created by the refused calls: the platform listing holds the two test
    // tenants' keys, keys_only and the two it issued — five issued through the API.
    let (_, list) = app
        .json(Method::GET, "/v1/admin/keys", Some(&app.platform_key), None)
        .await;
    let keys = list["keys"].as_array().expect("keys");
    let issued_by_api = keys.iter().filter(|k| !k["issued_by"].is_null()).count();
    assert_eq!(issued_by_api, 5, "{list}");
    let _ = other;
}

fn ms(rfc3339: &Value) -> i64 {
    let s = rfc3339.as_str().expect("timestamp");
    let t = humantime::parse_rfc3339(s).expect("rfc3339");
    t.duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_millis() as i64
}

async fn child_keys_expire_with_and_are_revoked_with_their_issuer(b: Backend) {
    let app = spawn_app(b).await;
    let acme = app.tenant("acme").await;
    let parent = issue_ok(
        &app,
        &acme.key,
        json!({"scopes": ["keys:write", "conversations:read"], "expires_in": "1h", "name": "parent"}),
    )
    .await;
    let parent_id = parent["id"].as_str().expect("id");
    let parent_exp = ms(&parent["expires_at"]);

    // No expiry asked, or a later one: capped at the parent's. An earlier one is kept.
    let forever = issue_ok(
        &app,
        key_of(&parent),
        json!({"scopes": ["keys:write", "conversations:read"]}),
    )
    .await;
    assert_eq!(ms(&forever["expires_at"]), parent_exp, "{forever}");
    assert_eq!(forever["issued_by"], parent_id);
    let later = issue_ok(
        &app,
        key_of(&parent),
        json!({"scopes": ["conversations:read"], "expires_in": "30d"}),
    )
    .await;
    assert_eq!(ms(&later["expires_at"]), parent_exp);
    let sooner = issue_ok(
        &app,
        key_of(&parent),
        json!({"scopes": ["conversations:read"], "expires_in": "10m"}),
    )
    .await;
    let sooner_exp = ms(&sooner["expires_at"]);
    assert!(sooner_exp < parent_exp - 40 * 60_000, "{sooner}");
    // A grandchild, issued by a child.
    let grandchild = issue_ok(
        &app,
        key_of(&forever),
        json!({"scopes": ["conversations:read"]}),
    )
    .await;
    assert_eq!(grandchild["issued_by"], forever["id"]);
    for k in [&parent, &forever, &later, &sooner, &grandchild] {
        assert_eq!(
            status_with(&app, key_of(k), "/v1/admin/conversations", None).await,
            StatusCode::OK
        );
    }

    // Revoking the parent (cascade is the default) revokes all four below it at once.
    let (status, revoked) = app
        .json(
            Method::DELETE,
            &format!("/v1/admin/keys/{parent_id}"),
            Some(&acme.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["cascaded"], 4, "{revoked}");
    for k in [&parent, &forever, &later, &sooner, &grandchild] {
        let (status, body) = app
            .json(
                Method::GET,
                "/v1/admin/conversations",
                Some(key_of(k)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", k["id"]);
        assert_eq!(body["error"]["message"], "API key revoked");
    }
    // A revoked key issues nothing.
    let (status, _) = issue(
        &app,
        key_of(&forever),
        json!({"scopes": ["conversations:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // cascade=false revokes the key alone; what it issued keeps working.
    let lone = issue_ok(
        &app,
        &acme.key,
        json!({"scopes": ["keys:write", "conversations:read"]}),
    )
    .await;
    let kept = issue_ok(
        &app,
        key_of(&lone),
        json!({"scopes": ["conversations:read"]}),
    )
    .await;
    let (status, revoked) = app
        .json(
            Method::DELETE,
            &format!(
                "/v1/admin/keys/{}?cascade=false",
                lone["id"].as_str().expect("id")
            ),
            Some(&acme.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["cascaded"], 0);
    assert_eq!(
        status_with(&app, key_of(&lone), "/v1/admin/conversations", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_with(&app, key_of(&kept), "/v1/admin/conversations", None).await,
        StatusCode::OK
    );
    // Revoking it again with cascade reaches the child it left behind.
    let (_, again) = app
        .json(
            Method::DELETE,
            &format!("/v1/admin/keys/{}", lone["id"].as_str().expect("id")),
            Some(&acme.key),
            None,
        )
        .await;
    assert_eq!(again["cascaded"], 1, "{again}");
    assert_eq!(
        status_with(&app, key_of(&kept), "/v1/admin/conversations", None).await,
        StatusCode::UNAUTHORIZED
    );
    // The listing shows who issued what.
    let (_, list) = app
        .json(Method::GET, "/v1/admin/keys", Some(&acme.key), None)
        .await;
    let grand = list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["id"] == grandchild["id"])
        .expect("grandchild listed");
    assert_eq!(grand["issued_by"], forever["id"]);
    assert!(grand["revoked_at"].is_string());
}

async fn control_characters_in_names_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let acme = app.tenant("acme").await;
    let v = app.visitor(&acme).await;
    let (status, err) = issue(
        &app,
        &acme.key,
        json!({"scopes": ["keys:read"], "name": "ops\u{1b}[2J\u{1b}[8m"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["details"]["field"], "name", "{err}");
    let (status, err) = app
        .json(
            Method::POST,
            "/v1/admin/tenants",
            Some(&app.platform_key),
            Some(json!({"slug": "evil", "name": "Evil\u{202e}lived"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["details"]["field"], "name");
    let (status, err) = app
        .json(
            Method::POST,
            &format!("/v1/admin/conversations/{}/messages", v.conversation_id),
            Some(&acme.key),
            Some(json!({"text": "hello", "author": "Ana\r\u{1b}[1A"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["details"]["field"], "author");
    let (status, err) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&acme.key),
            Some(json!({"flags": {"beta\u{1b}[8m": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    // Nothing of the refused calls was stored.
    let (_, tenants) = app
        .json(
            Method::GET,
            "/v1/admin/tenants",
            Some(&app.platform_key),
            None,
        )
        .await;
    assert_eq!(tenants["tenants"].as_array().map(Vec::len), Some(1));
    let (_, msgs) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}/messages", v.conversation_id),
            Some(&acme.key),
            None,
        )
        .await;
    assert_eq!(msgs["messages"].as_array().map(Vec::len), Some(0), "{msgs}");
}

async fn feature_flags_are_bounded_and_can_be_deleted(b: Backend) {
    let app = spawn_app(b).await;
    let acme = app.tenant("acme").await;
    let patch = |flags: Value| {
        app.json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&acme.key),
            Some(json!({ "flags": flags })),
        )
    };
    let hundred: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("f{i}"), json!(true))).collect();
    let (status, s) = patch(Value::Object(hundred)).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["flags"].as_object().map(|m| m.len()), Some(100));
    // One more is refused and changes nothing.
    let (status, err) = patch(json!({"one_more": true})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["details"]["max"], 100);
    // Deleting with null makes room; setting an existing flag is not growth.
    let (status, s) = patch(json!({"f0": null, "f1": null, "f2": false, "one_more": true})).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let flags = s["flags"].as_object().expect("flags");
    assert_eq!(flags.len(), 99);
    assert!(!flags.contains_key("f0") && !flags.contains_key("f1"));
    assert_eq!(flags["f2"], false);
    assert_eq!(flags["one_more"], true);
    // Names are bounded and plain.
    for bad in ["", "has space", &"x".repeat(65)] {
        let (status, _) = patch(json!({ bad: true })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    }
    let (_, got) = app
        .json(Method::GET, "/v1/admin/settings", Some(&acme.key), None)
        .await;
    assert_eq!(
        got["settings"]["flags"].as_object().map(|m| m.len()),
        Some(99)
    );
}

async fn invisible_only_messages_are_empty(b: Backend) {
    let app = spawn_app(b).await;
    let acme = app.tenant("acme").await;
    let v = app.visitor(&acme).await;
    for (i, text) in [
        "\u{200B}\u{200C}\u{200D}",
        "\u{2060}\u{FEFF} \u{00AD}",
        "\u{3164}\u{3164}",
        "\u{2800}",
        "\u{E0020}\u{E0041}",
    ]
    .iter()
    .enumerate()
    {
        let (status, err) = app.send(&v, &format!("blank-{i}"), text).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text:?}: {err}");
        assert_eq!(err["error"]["details"]["field"], "text");
        let (status, _) = app
            .json(
                Method::POST,
                &format!("/v1/admin/conversations/{}/messages", v.conversation_id),
                Some(&acme.key),
                Some(json!({ "text": text })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "agent {text:?}");
    }
    // Visible text with zero-width characters in it is fine (emoji sequences use them).
    let (status, m) = app.send(&v, "ok", "\u{1F469}\u{200D}\u{1F4BB} hi").await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["seq"], 1, "the refused messages took no seq");
}

async fn origins_are_parsed_and_normalised_as_urls(b: Backend) {
    let app = spawn_app(b).await;
    let acme = app.tenant("acme").await;
    let patch = |origins: Value| {
        app.json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&acme.key),
            Some(json!({ "allowed_origins": origins })),
        )
    };
    for bad in [
        "http://a.test:80:80",
        "https://shop.example/path",
        "https://user@shop.example",
        "javascript://shop.example",
        "https://shop.example?x",
    ] {
        let (status, err) = patch(json!([bad])).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {err}");
        assert_eq!(err["error"]["details"]["field"], "allowed_origins");
    }
    let (status, s) = patch(json!([
        "HTTPS://Shop.Example:443/",
        "http://a.test:80",
        "https://shop.example",
        "https://bücher.example:8443"
    ]))
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(
        s["allowed_origins"],
        json!([
            "https://shop.example",
            "http://a.test",
            "https://xn--bcher-kva.example:8443"
        ])
    );
    // The normalised form is what a browser sends, so its socket is let in.
    let v = app.visitor(&acme).await;
    let ws = app.ws(&v.ws_token, Some("https://shop.example")).await;
    assert!(ws.is_ok(), "the normalised origin opens the socket");
    let refused = app.ws(&v.ws_token, Some("https://shop.example:443")).await;
    assert!(
        refused.is_err(),
        "a non-canonical Origin header is not an exact match"
    );
}
