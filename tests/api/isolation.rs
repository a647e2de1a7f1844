//! Tenant and visitor isolation: other tenants' ids are not found, nothing changes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, code, refused_status, spawn_app, spawn_with_telegram};
use crate::on_both_backends;

on_both_backends!(
    cross_tenant_matrix_from_the_router_finds_nothing_and_changes_nothing,
    visitor_token_on_another_visitors_conversation_is_refused,
    platform_key_acts_for_a_tenant_only_when_named,
);

/// One probe: method, documented path, concrete URL, body, the status it must get
/// (`None`: any non-5xx answer that shows and changes nothing of the other tenant).
type Probe<'a> = (&'a str, &'a str, String, Option<Value>, Option<StatusCode>);

/// Everything tenant B's all-scope key can read about B, as one JSON value.
async fn snapshot(app: &TestApp, key: &str, conversation_id: &str) -> Value {
    let mut out = serde_json::Map::new();
    for path in [
        "/v1/admin/settings".to_string(),
        "/v1/admin/conversations?limit=500".to_string(),
        format!("/v1/admin/conversations/{conversation_id}"),
        format!("/v1/admin/conversations/{conversation_id}/messages"),
        "/v1/admin/keys".to_string(),
        "/v1/admin/outbox?reveal=true&limit=500".to_string(),
        "/v1/admin/templates".to_string(),
        "/v1/admin/telegram".to_string(),
        "/v1/admin/identity".to_string(),
        "/v1/admin/usage?days=2".to_string(),
        "/v1/admin/environments".to_string(),
        "/v1/admin/flags?env=staging".to_string(),
    ] {
        let (status, body) = app.json(Method::GET, &path, Some(key), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        out.insert(path, body);
    }
    Value::Object(out)
}

async fn cross_tenant_matrix_from_the_router_finds_nothing_and_changes_nothing(b: Backend) {
    let tg = spawn_with_telegram(b, |_| {}).await;
    let app = &tg.app;
    let every_tenant_scope = [
        "conversations:write",
        "keys:write",
        "settings:write",
        "telegram:write",
        "outbox:write",
        "outbox:reveal",
        "templates:write",
        "usage:write",
        "plans:write",
        "billing:write",
        "audit:read",
        "visitors:write",
    ];
    // Tenant A: an attacker holding every tenant scope of its own tenant.
    let a = app.tenant("alpha").await;
    let (_, a_key) = app.key(&a, &every_tenant_scope).await;

    // Tenant B (`acme`, connected to Telegram): one real object of every kind.
    let tb = &tg.tenant;
    let (_, b_key) = app.key(tb, &every_tenant_scope).await;
    let vb = app.visitor(tb).await;
    let (status, _) = app.send(&vb, "b1", "bravo's secret").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, vb_conv) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}", vb.conversation_id),
            Some(&b_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{vb_conv}");
    let b_visitor_id = vb_conv["visitor_id"]
        .as_str()
        .expect("visitor_id")
        .to_string();
    let (b_key_id, _) = app.key(tb, &["conversations:read"]).await;
    let (status, tpl) = app
        .json(
            Method::PUT,
            "/v1/admin/templates/widget.greeting/de",
            Some(&b_key),
            Some(json!({"body": "bravo greeting"})),
        )
        .await;
    assert!(status.is_success(), "{tpl}");
    let (status, _) = app
        .json(
            Method::POST,
            "/v1/admin/identity/secret",
            Some(&b_key),
            None,
        )
        .await;
    assert!(status.is_success());
    let (status, _) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&b_key),
            Some(json!({"flags": {"bravo_flag": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // B has a staging environment, with a flag of its own.
    let (status, b_staging) = app
        .json(
            Method::PUT,
            "/v1/admin/environments/staging",
            Some(&b_key),
            Some(json!({"allowed_origins": ["https://staging.acme.example"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b_staging}");
    let b_staging_key = b_staging["widget_key"].as_str().expect("key").to_string();
    let (status, _) = app
        .json(
            Method::PUT,
            "/v1/admin/flags/bravo_staging_flag?env=staging",
            Some(&b_key),
            Some(json!({"value": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The visitor's message is delivered to B's topic: B has a real outbox item.
    tg.fake
        .wait_for_calls("sendMessage", 1, std::time::Duration::from_secs(20))
        .await;
    let b_outbox_id = {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (_, list) = app
                .json(
                    Method::GET,
                    "/v1/admin/outbox?status=delivered",
                    Some(&b_key),
                    None,
                )
                .await;
            if let Some(id) = list["items"][0]["id"].as_str() {
                break id.to_string();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "B's outbox item delivered: {list}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    // Warm up B's snapshot key (its first use records last_used_at), then take it.
    snapshot(app, &b_key, &vb.conversation_id).await;
    let before = snapshot(app, &b_key, &vb.conversation_id).await;
    // Strings that must never reach tenant A.
    let b_secrets = [
        vb.conversation_id.as_str(),
        b_key_id.as_str(),
        b_outbox_id.as_str(),
        tb.widget_key.as_str(),
        tb.id.as_str(),
        b_visitor_id.as_str(),
        "bravo's secret",
        "bravo greeting",
        "bravo_flag",
        b_staging_key.as_str(),
        "bravo_staging_flag",
        "staging.acme.example",
    ];

    // Every admin operation the OpenAPI document lists, with B's real ids wherever an id
    // or a tenant goes, and `None` where A acting on its own tenant is the right answer
    // (the check is then that nothing of B is touched or shown).
    let conv = &vb.conversation_id;
    let probes: Vec<Probe> = vec![
        (
            "get",
            "/v1/admin/conversations",
            "/v1/admin/conversations?status=open".into(),
            None,
            Some(StatusCode::OK),
        ),
        (
            "get",
            "/v1/admin/conversations/{id}",
            format!("/v1/admin/conversations/{conv}"),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "patch",
            "/v1/admin/conversations/{id}",
            format!("/v1/admin/conversations/{conv}"),
            Some(json!({"subject": "injected"})),
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "post",
            "/v1/admin/conversations/{id}/close",
            format!("/v1/admin/conversations/{conv}/close"),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "get",
            "/v1/admin/conversations/{id}/messages",
            format!("/v1/admin/conversations/{conv}/messages"),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "post",
            "/v1/admin/conversations/{id}/messages",
            format!("/v1/admin/conversations/{conv}/messages"),
            Some(json!({"text": "injected", "author": "Eve"})),
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "post",
            "/v1/admin/conversations/{id}/typing",
            format!("/v1/admin/conversations/{conv}/typing"),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "get",
            "/v1/admin/identity",
            "/v1/admin/identity".into(),
            None,
            None,
        ),
        (
            "post",
            "/v1/admin/identity/secret",
            "/v1/admin/identity/secret".into(),
            None,
            None,
        ),
        (
            "get",
            "/v1/admin/keys",
            "/v1/admin/keys?tenant=acme".into(),
            None,
            Some(StatusCode::OK),
        ),
        (
            "post",
            "/v1/admin/keys",
            "/v1/admin/keys".into(),
            Some(json!({"tenant": "acme", "scopes": ["conversations:read"]})),
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "delete",
            "/v1/admin/keys/{id}",
            format!("/v1/admin/keys/{b_key_id}"),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "get",
            "/v1/admin/outbox",
            "/v1/admin/outbox?reveal=true".into(),
            None,
            Some(StatusCode::OK),
        ),
        (
            "post",
            "/v1/admin/outbox",
            "/v1/admin/outbox".into(),
            Some(json!({"text": "injected", "idempotency_key": "x"})),
            None,
        ),
        (
            "get",
            "/v1/admin/outbox/summary",
            "/v1/admin/outbox/summary?tenant=acme".into(),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "post",
            "/v1/admin/outbox/{id}/retry",
            format!("/v1/admin/outbox/{b_outbox_id}/retry"),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "get",
            "/v1/admin/settings",
            "/v1/admin/settings".into(),
            None,
            Some(StatusCode::OK),
        ),
        (
            "patch",
            "/v1/admin/settings",
            "/v1/admin/settings".into(),
            Some(json!({"flags": {"alpha_flag": false}})),
            Some(StatusCode::OK),
        ),
        (
            "get",
            "/v1/admin/telegram",
            "/v1/admin/telegram".into(),
            None,
            None,
        ),
        (
            "put",
            "/v1/admin/telegram",
            "/v1/admin/telegram".into(),
            Some(json!({"bot_token": "1:bogus", "group_chat_id": tg.group})),
            None,
        ),
        (
            "patch",
            "/v1/admin/telegram",
            "/v1/admin/telegram".into(),
            Some(json!({"enabled": false})),
            None,
        ),
        (
            "delete",
            "/v1/admin/telegram",
            "/v1/admin/telegram".into(),
            None,
            None,
        ),
        (
            "get",
            "/v1/admin/templates",
            "/v1/admin/templates?key=widget.greeting&locale=de".into(),
            None,
            Some(StatusCode::OK),
        ),
        (
            "post",
            "/v1/admin/templates/preview",
            "/v1/admin/templates/preview".into(),
            Some(json!({"key": "widget.greeting", "locale": "de"})),
            Some(StatusCode::OK),
        ),
        (
            "get",
            "/v1/admin/templates/{key}/{locale}",
            "/v1/admin/templates/widget.greeting/de".into(),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "delete",
            "/v1/admin/templates/{key}/{locale}",
            "/v1/admin/templates/widget.greeting/de".into(),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "put",
            "/v1/admin/templates/{key}/{locale}",
            "/v1/admin/templates/widget.greeting/de".into(),
            Some(json!({"body": "alpha's own"})),
            None,
        ),
        // Plans are for platform keys: a tenant key is refused even with `plans:write`.
        (
            "get",
            "/v1/admin/plans",
            "/v1/admin/plans".into(),
            None,
            Some(StatusCode::FORBIDDEN),
        ),
        (
            "get",
            "/v1/admin/plans/{code}",
            "/v1/admin/plans/free".into(),
            None,
            Some(StatusCode::FORBIDDEN),
        ),
        (
            "put",
            "/v1/admin/plans/{code}",
            "/v1/admin/plans/free".into(),
            Some(json!({"name": "Everything", "limits": {}})),
            Some(StatusCode::FORBIDDEN),
        ),
        (
            "delete",
            "/v1/admin/plans/{code}",
            "/v1/admin/plans/free".into(),
            None,
            Some(StatusCode::FORBIDDEN),
        ),
        (
            "put",
            "/v1/admin/tenants/{slug}/plan",
            "/v1/admin/tenants/acme/plan".into(),
            Some(json!({"plan": "free"})),
            Some(StatusCode::FORBIDDEN),
        ),
        (
            "get",
            "/v1/admin/tenants",
            "/v1/admin/tenants".into(),
            None,
            Some(StatusCode::FORBIDDEN),
        ),
        (
            "post",
            "/v1/admin/tenants",
            "/v1/admin/tenants".into(),
            Some(json!({"slug": "acme", "name": "Evil"})),
            Some(StatusCode::FORBIDDEN),
        ),
        (
            "get",
            "/v1/admin/usage",
            "/v1/admin/usage".into(),
            None,
            Some(StatusCode::OK),
        ),
        (
            "get",
            "/v1/admin/audit",
            "/v1/admin/audit?tenant=acme".into(),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        // Environments and flags: A acts on its own tenant only (B's staging key and
        // flags never show; A creating its own staging touches nothing of B's).
        (
            "get",
            "/v1/admin/environments",
            "/v1/admin/environments".into(),
            None,
            Some(StatusCode::OK),
        ),
        (
            "get",
            "/v1/admin/environments/{env}",
            "/v1/admin/environments/staging".into(),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "put",
            "/v1/admin/environments/{env}",
            "/v1/admin/environments/production".into(),
            Some(json!({"allowed_origins": ["https://alpha.example"]})),
            Some(StatusCode::OK),
        ),
        (
            "get",
            "/v1/admin/flags",
            "/v1/admin/flags?env=staging".into(),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "get",
            "/v1/admin/flags/{name}",
            "/v1/admin/flags/bravo_flag".into(),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "put",
            "/v1/admin/flags/{name}",
            "/v1/admin/flags/bravo_flag?env=staging".into(),
            Some(json!({"value": false})),
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "delete",
            "/v1/admin/flags/{name}",
            "/v1/admin/flags/alpha_flag".into(),
            None,
            Some(StatusCode::OK),
        ),
        // Visitors' data: B's visitor is not found, neither exported nor erased.
        (
            "get",
            "/v1/admin/visitors/{id}/export",
            format!("/v1/admin/visitors/{b_visitor_id}/export"),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
        (
            "delete",
            "/v1/admin/visitors/{id}",
            format!("/v1/admin/visitors/{b_visitor_id}"),
            None,
            Some(StatusCode::NOT_FOUND),
        ),
    ];

    // The table covers exactly the admin operations the router documents.
    let (_, doc) = app.json(Method::GET, "/openapi.json", None, None).await;
    let mut documented: Vec<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(p, _)| p.starts_with("/v1/admin/"))
        .flat_map(|(p, ops)| {
            ops.as_object()
                .expect("ops")
                .keys()
                .filter(|m| !matches!(m.as_str(), "parameters" | "summary" | "description"))
                .map(move |m| format!("{m} {p}"))
        })
        .collect();
    documented.sort();
    let mut probed: Vec<String> = probes.iter().map(|(m, p, ..)| format!("{m} {p}")).collect();
    probed.sort();
    assert_eq!(
        probed, documented,
        "every admin route is probed, and only those"
    );
    assert_eq!(probes.len(), 45);

    for (method, template, url, body, expected) in &probes {
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        // A tenant key naming another tenant in the platform header is still itself.
        let mut req = app
            .http
            .request(m.clone(), format!("{}{url}", app.base))
            .bearer_auth(&a_key)
            .header("Chatorical-Tenant", "acme");
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        if let Some(expected) = expected {
            assert_eq!(
                status, *expected,
                "{method} {template} as A with B's ids: {text}"
            );
        }
        assert!(
            !status.is_server_error(),
            "{method} {template}: {status} {text}"
        );
        if status == StatusCode::NOT_FOUND {
            let v: Value = serde_json::from_str(&text).expect("error JSON");
            assert_eq!(code(&v), "not_found", "{method} {template}");
        }
        for secret in b_secrets {
            assert!(
                !text.contains(secret),
                "{method} {template} showed A something of B's ({secret}): {text}"
            );
        }
    }

    // B is exactly as it was.
    let after = snapshot(app, &b_key, &vb.conversation_id).await;
    assert_eq!(after, before, "B's data changed under A's calls");
    // B still works: its agents reach the visitor through Telegram.
    assert_eq!(after["/v1/admin/telegram"]["enabled"], true, "{after}");
}

async fn visitor_token_on_another_visitors_conversation_is_refused(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let v1 = app.visitor(&t).await;
    let v2 = app.visitor(&t).await;
    let v3 = app.visitor(&other).await;
    app.send(&v2, "x", "v2 private").await;
    for (who, victim) in [(&v1, &v2), (&v3, &v2), (&v1, &v3)] {
        let path = format!("/v1/conversations/{}/messages", victim.conversation_id);
        let (status, body) = app.json(Method::GET, &path, Some(&who.token), None).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
        let (status, _) = app
            .json(
                Method::POST,
                &path,
                Some(&who.token),
                Some(json!({"client_msg_id": "evil", "text": "injected"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Not even a retry of the owner's client_msg_id reveals the owner's message.
        let (status, body) = app
            .json(
                Method::POST,
                &path,
                Some(&who.token),
                Some(json!({"client_msg_id": "x", "text": "v2 private"})),
            )
            .await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    }
    let (_, h) = app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v2.conversation_id),
            Some(&v2.token),
            None,
        )
        .await;
    assert_eq!(h["last_seq"], 1, "nothing injected");
    // Sockets: a token is bound to its conversation; a tampered one is refused.
    let tampered = {
        let (body, sig) = v1.ws_token.split_once('.').expect("token");
        let mut claims: serde_json::Value =
            serde_json::from_slice(&base64_url_decode(body)).expect("claims");
        claims["c"] = json!(v2.conversation_id);
        format!("{}.{sig}", base64_url_encode(claims.to_string().as_bytes()))
    };
    let err = app
        .ws(&tampered, Some(&t.origin))
        .await
        .expect_err("tampered token refused");
    assert_eq!(refused_status(&err), Some(401));
}

async fn platform_key_acts_for_a_tenant_only_when_named(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let (status, body) = app
        .json(
            Method::GET,
            "/v1/admin/conversations",
            Some(&app.platform_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let resp = app
        .http
        .get(format!("{}/v1/admin/settings", app.base))
        .bearer_auth(&app.platform_key)
        .header("chatorical-tenant", &t.slug)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["id"], t.id.as_str());
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64")
}

fn base64_url_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
