//! Tenant and visitor isolation: other tenants' ids are not found, nothing changes.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, code, refused_status, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    cross_tenant_matrix_from_the_router_finds_nothing_and_changes_nothing,
    visitor_token_on_another_visitors_conversation_is_refused,
    platform_key_acts_for_a_tenant_only_when_named,
);

async fn cross_tenant_matrix_from_the_router_finds_nothing_and_changes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.tenant("alpha").await;
    let tb = app.tenant("bravo").await;
    let vb = app.visitor(&tb).await;
    app.send(&vb, "b1", "bravo's secret").await;
    let (b_key_id, b_key) = app.key(&tb, &["conversations:read"]).await;

    // Every tenant-scoped admin route with an id, as the router documents them.
    let (_, doc) = app.json(Method::GET, "/openapi.json", None, None).await;
    let paths = doc["paths"].as_object().expect("paths");
    let mut tried = Vec::new();
    for (path, ops) in paths
        .iter()
        .filter(|(p, _)| p.starts_with("/v1/admin/") && p.contains("{id}"))
    {
        let id = if path.starts_with("/v1/admin/keys/") {
            &b_key_id
        } else {
            &vb.conversation_id
        };
        let url = path.replace("{id}", id);
        for method in ops.as_object().expect("ops").keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body = (m == Method::POST || m == Method::PATCH)
                .then(|| json!({"text": "injected", "client_msg_id": "x1"}));
            let (status, resp) = app.json(m.clone(), &url, Some(&a.key), body).await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{m} {path} with tenant A's key on B's id: {resp}"
            );
            assert_eq!(code(&resp), "not_found");
            tried.push(format!("{m} {path}"));
        }
    }
    assert!(
        tried.len() >= 5,
        "the matrix covers the id routes: {tried:?}"
    );

    // B is untouched: conversation open with its one message, key not revoked.
    let (_, conv) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}", vb.conversation_id),
            Some(&b_key),
            None,
        )
        .await;
    assert_eq!(conv["status"], "open", "{conv}");
    assert_eq!(conv["last_seq"], 1);
    let (_, h) = app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", vb.conversation_id),
            Some(&vb.token),
            None,
        )
        .await;
    assert_eq!(h["messages"][0]["text"], "bravo's secret");
    // And A's listings never include B's data.
    let (_, list) = app
        .json(Method::GET, "/v1/admin/conversations", Some(&a.key), None)
        .await;
    assert_eq!(list["conversations"].as_array().map(Vec::len), Some(0));
    let (_, keys) = app
        .json(Method::GET, "/v1/admin/keys", Some(&a.key), None)
        .await;
    assert!(!keys.to_string().contains(&b_key_id));
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
