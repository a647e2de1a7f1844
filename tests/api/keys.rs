//! API keys: checksum, revocation, expiry, scopes, storage.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, code, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    bad_checksum_is_rejected_without_a_database_query,
    revoked_and_expired_keys_get_401,
    read_scope_cannot_write,
    tenant_key_cannot_grant_scopes_it_lacks_or_manage_tenants,
    database_holds_no_plaintext_key_or_visitor_token,
    last_used_is_recorded,
);

async fn bad_checksum_is_rejected_without_a_database_query(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let mut tampered: Vec<char> = t.key.chars().collect();
    tampered[8] = if tampered[8] == 'x' { 'y' } else { 'x' };
    let tampered: String = tampered.into_iter().collect();
    let before = app.state.db.checkouts();
    let (status, body) = app
        .json(
            Method::GET,
            "/v1/admin/conversations",
            Some(&tampered),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "unauthorized");
    assert_eq!(
        app.state.db.checkouts(),
        before,
        "a bad checksum must not reach the database"
    );
    // The untampered key works, and does reach the database.
    let (status, _) = app
        .json(Method::GET, "/v1/admin/conversations", Some(&t.key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(app.state.db.checkouts() > before);
}

async fn revoked_and_expired_keys_get_401(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let (id, key) = app.key(&t, &["conversations:read"]).await;
    assert_eq!(
        app.call(Method::GET, "/v1/admin/conversations", Some(&key), None)
            .await
            .status(),
        StatusCode::OK
    );
    let (status, revoked) = app
        .json(
            Method::DELETE,
            &format!("/v1/admin/keys/{id}"),
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    let (status, body) = app
        .json(Method::GET, "/v1/admin/conversations", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["message"], "API key revoked");

    // Expiring keys: one that expires in an hour works (however slow this machine is);
    // one that expires in a second is refused once its `expires_at` has passed.
    let issue = async |expires_in: &str| {
        let (status, k) = app
            .json(
                Method::POST,
                "/v1/admin/keys",
                Some(&t.key),
                Some(json!({"scopes": ["conversations:read"], "expires_in": expires_in})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{k}");
        let at = k["expires_at"].as_str().expect("expires_at");
        let at = humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("{at}: {e}"));
        (k["key"].as_str().expect("key").to_string(), at)
    };
    let (hour, _) = issue("1h").await;
    assert_eq!(
        app.call(Method::GET, "/v1/admin/conversations", Some(&hour), None)
            .await
            .status(),
        StatusCode::OK
    );
    let (short, expires_at) = issue("1s").await;
    if let Ok(left) = expires_at.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left + std::time::Duration::from_millis(20)).await;
    }
    let (status, body) = app
        .json(Method::GET, "/v1/admin/conversations", Some(&short), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["message"], "API key expired");
}

async fn read_scope_cannot_write(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let (_, read_key) = app.key(&t, &["conversations:read"]).await;
    let (status, body) = app
        .json(
            Method::POST,
            &format!("/v1/admin/conversations/{}/close", v.conversation_id),
            Some(&read_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code(&body), "forbidden");
    assert_eq!(
        body["error"]["details"]["required_scope"],
        "conversations:write"
    );
    let (status, body) = app
        .reply(
            &crate::helpers::TenantFixture {
                key: read_key.clone(),
                ..t.clone()
            },
            &v.conversation_id,
            "hi",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Nothing changed.
    let (_, conv) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}", v.conversation_id),
            Some(&read_key),
            None,
        )
        .await;
    assert_eq!(conv["status"], "open");
    assert_eq!(conv["last_seq"], 0);
    // And reading is allowed; other resources are not.
    assert_eq!(
        app.call(Method::GET, "/v1/admin/settings", Some(&read_key), None)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
}

async fn tenant_key_cannot_grant_scopes_it_lacks_or_manage_tenants(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let (_, keys_only) = app.key(&t, &["keys:write"]).await;
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/admin/keys",
            Some(&keys_only),
            Some(json!({"scopes": ["conversations:write"]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = app
        .json(
            Method::POST,
            "/v1/admin/keys",
            Some(&keys_only),
            Some(json!({"scopes": ["keys:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/admin/tenants",
            Some(&t.key),
            Some(json!({"slug": "evil", "name": "Evil"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        app.call(Method::GET, "/v1/admin/tenants", Some(&t.key), None)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/admin/keys",
            Some(&app.platform_key),
            Some(json!({"tenant": "acme", "scopes": ["tenants:read"]})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "tenant keys cannot hold tenants scopes: {body}"
    );
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/admin/keys",
            Some(&app.platform_key),
            Some(json!({"scopes": ["kees:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("kees")
    );
}

async fn database_holds_no_plaintext_key_or_visitor_token(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let mut pc = app.state.db.conn().await.expect("conn");
    let mut conn = pc.as_conn();
    let rows = chatorical::db::repo::api_keys::list(&mut conn, None)
        .await
        .expect("keys");
    assert!(rows.len() >= 2);
    let dump = format!("{rows:?}");
    assert!(!dump.contains(&t.key), "plaintext key stored");
    assert!(
        !dump.contains(&app.platform_key),
        "plaintext platform key stored"
    );
    let hash = chatorical::domain::sha256_hex(&v.token);
    let visitor = chatorical::db::repo::visitors::by_token_hash_any(&mut conn, &hash)
        .await
        .expect("query")
        .expect("visitor stored by hash");
    assert!(
        !format!("{visitor:?}").contains(&v.token),
        "plaintext visitor token stored"
    );
    // Listing keys over the API never shows them either.
    let (_, list) = app
        .json(Method::GET, "/v1/admin/keys", Some(&t.key), None)
        .await;
    assert!(!list.to_string().contains(&t.key));
    assert!(list["keys"].as_array().is_some_and(|k| !k.is_empty()));
}

async fn last_used_is_recorded(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let (id, key) = app.key(&t, &["keys:read"]).await;
    let (_, list) = app
        .json(Method::GET, "/v1/admin/keys", Some(&key), None)
        .await;
    let entry = list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["id"] == id.as_str())
        .cloned()
        .expect("listed");
    assert!(entry["last_used_at"].is_string(), "{entry}");
}
