//! Identity verification: `user_id` + `user_hash` (HMAC-SHA256 with the tenant's
//! identity secret) on widget sessions; the secret sealed at rest and shown once.

use std::collections::BTreeSet;

use chatorical::identity::user_hash;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TenantFixture, TestApp, code, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    verified_user_finds_the_same_conversation_on_another_device,
    concurrent_first_sessions_of_a_user_make_one_visitor,
    devices_beyond_the_limit_sign_out_the_oldest_extra_tokens,
    forged_or_other_tenants_hashes_are_refused,
    required_identity_refuses_anonymous_sessions,
    optional_mode_still_allows_anonymous_visitors,
    anonymous_visitor_signing_in_keeps_the_conversation,
    secret_is_sealed_and_never_shown_again,
);

/// Generate the tenant's identity secret through the admin API.
async fn secret(app: &TestApp, t: &TenantFixture) -> String {
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/admin/identity/secret",
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only the secret: {body}"
    );
    let s = body["identity_secret"]
        .as_str()
        .expect("identity_secret")
        .to_string();
    assert!(s.len() >= 32, "{s}");
    s
}

/// `POST /v1/widget/session` with the widget key and `extra` fields.
async fn session(app: &TestApp, t: &TenantFixture, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({"widget_key": t.widget_key});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    app.json(Method::POST, "/v1/widget/session", None, Some(body))
        .await
}

/// A session as a verified user; insists on 200.
async fn verified(
    app: &TestApp,
    t: &TenantFixture,
    secret: &str,
    user: &str,
    token: Option<&str>,
) -> Value {
    let mut extra = json!({"user_id": user, "user_hash": user_hash(secret, user)});
    if let Some(tok) = token {
        extra["visitor_token"] = json!(tok);
    }
    let (status, s) = session(app, t, extra).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    s
}

fn token(s: &Value) -> String {
    s["visitor_token"].as_str().expect("visitor_token").into()
}

async fn open_conversation(app: &TestApp, token: &str) -> String {
    let (status, c) = app
        .json(Method::POST, "/v1/conversations", Some(token), None)
        .await;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "{status} {c}"
    );
    c["id"].as_str().expect("id").into()
}

async fn history(app: &TestApp, token: &str, conversation: &str) -> (StatusCode, Value) {
    app.json(
        Method::GET,
        &format!("/v1/conversations/{conversation}/messages"),
        Some(token),
        None,
    )
    .await
}

async fn verified_user_finds_the_same_conversation_on_another_device(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let secret = secret(&app, &t).await;

    // Laptop: first session, a conversation, a message.
    let laptop = verified(&app, &t, &secret, "user-42", None).await;
    assert!(laptop["conversation_id"].is_null(), "{laptop}");
    let laptop_token = token(&laptop);
    let conv = open_conversation(&app, &laptop_token).await;
    let (status, _) = app
        .json(
            Method::POST,
            &format!("/v1/conversations/{conv}/messages"),
            Some(&laptop_token),
            Some(json!({"client_msg_id": "m-1", "text": "from the laptop"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Phone: no visitor token, same user → same conversation, a token of its own.
    let phone = verified(&app, &t, &secret, "user-42", None).await;
    assert_eq!(phone["conversation_id"], conv.as_str(), "{phone}");
    let phone_token = token(&phone);
    assert_ne!(phone_token, laptop_token, "each device gets its own token");
    let (status, h) = history(&app, &phone_token, &conv).await;
    assert_eq!(status, StatusCode::OK, "{h}");
    assert_eq!(h["messages"][0]["text"], "from the laptop");
    assert_eq!(open_conversation(&app, &phone_token).await, conv);

    // The laptop is not signed out by the phone, and resumes with its own token.
    let (status, _) = history(&app, &laptop_token, &conv).await;
    assert_eq!(status, StatusCode::OK, "the first device keeps working");
    let again = verified(&app, &t, &secret, "user-42", Some(&laptop_token)).await;
    assert_eq!(token(&again), laptop_token);
    assert_eq!(again["conversation_id"], conv.as_str());
    let again = verified(&app, &t, &secret, "user-42", Some(&phone_token)).await;
    assert_eq!(token(&again), phone_token);

    // Another user never gets that conversation, not even with the laptop's token.
    let other = verified(&app, &t, &secret, "user-7", Some(&laptop_token)).await;
    assert!(other["conversation_id"].is_null(), "{other}");
    assert_ne!(token(&other), laptop_token);
    let (status, _) = history(&app, &token(&other), &conv).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = app
        .json(Method::GET, "/v1/admin/conversations", Some(&t.key), None)
        .await;
    assert_eq!(
        list["conversations"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
}

async fn concurrent_first_sessions_of_a_user_make_one_visitor(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let secret = secret(&app, &t).await;
    let starts = (0..8).map(|_| verified(&app, &t, &secret, "racer", None));
    let sessions = futures_util::future::join_all(starts).await;
    let tokens: Vec<String> = sessions.iter().map(token).collect();
    assert_eq!(
        tokens.iter().collect::<BTreeSet<_>>().len(),
        tokens.len(),
        "one token per device"
    );
    let convs =
        futures_util::future::join_all(tokens.iter().map(|t| open_conversation(&app, t))).await;
    let distinct: BTreeSet<_> = convs.iter().collect();
    assert_eq!(
        distinct.len(),
        1,
        "one visitor, one conversation: {convs:?}"
    );

    // The loser of the race inserts nothing (and then joins the winner's visitor).
    let mut pc = app.state.db.conn().await.expect("conn");
    let mut conn = pc.as_conn();
    let winner =
        chatorical::db::repo::visitors::by_external_user(&mut conn, &t.id, "production", "racer")
            .await
            .expect("query")
            .expect("the user's visitor");
    let loser = chatorical::db::models::VisitorRow {
        id: "vis_loser".into(),
        token_hash: "not-a-real-hash".into(),
        ..winner.clone()
    };
    assert!(
        !chatorical::db::repo::visitors::insert_if_absent(&mut conn, &loser)
            .await
            .expect("insert")
    );
}

async fn devices_beyond_the_limit_sign_out_the_oldest_extra_tokens(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let secret = secret(&app, &t).await;
    let extra = chatorical::db::repo::visitors::MAX_EXTRA_TOKENS as usize;
    let mut tokens = Vec::new();
    for _ in 0..extra + 3 {
        tokens.push(token(&verified(&app, &t, &secret, "busy", None).await));
    }
    let conv = open_conversation(&app, &tokens[0]).await;
    let mut working = 0;
    for tok in &tokens[1..] {
        if history(&app, tok, &conv).await.0 == StatusCode::OK {
            working += 1;
        }
    }
    assert_eq!(working, extra, "the newest extra tokens are kept");
    let (status, _) = history(&app, tokens.last().expect("last"), &conv).await;
    assert_eq!(status, StatusCode::OK, "the newest device works");
}

async fn forged_or_other_tenants_hashes_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let acme_secret = secret(&app, &acme).await;
    let globex_secret = secret(&app, &globex).await;

    let refused = [
        // Signed with another tenant's secret.
        json!({"user_id": "u1", "user_hash": user_hash(&globex_secret, "u1")}),
        // Another user's hash.
        json!({"user_id": "u2", "user_hash": user_hash(&acme_secret, "u1")}),
        // Not hex, too short, empty.
        json!({"user_id": "u1", "user_hash": "zz".repeat(32)}),
        json!({"user_id": "u1", "user_hash": &user_hash(&acme_secret, "u1")[..40]}),
        json!({"user_id": "u1", "user_hash": ""}),
    ];
    for extra in refused {
        let (status, body) = session(&app, &acme, extra.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{extra} → {body}");
        assert_eq!(code(&body), "unauthorized");
    }
    // Correct for globex is wrong for acme, and right for globex.
    let (status, _) = session(
        &app,
        &globex,
        json!({"user_id": "u1", "user_hash": user_hash(&globex_secret, "u1")}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Half an identity, or a bad user id: the request is wrong.
    for extra in [
        json!({"user_id": "u1"}),
        json!({"user_hash": user_hash(&acme_secret, "u1")}),
        json!({"user_id": "", "user_hash": user_hash(&acme_secret, "")}),
        json!({"user_id": "x".repeat(129), "user_hash": user_hash(&acme_secret, &"x".repeat(129))}),
    ] {
        let (status, body) = session(&app, &acme, extra.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{extra} → {body}");
        assert_eq!(code(&body), "validation_failed");
    }
    let long = "é".repeat(128);
    let (status, body) = session(
        &app,
        &acme,
        json!({"user_id": long, "user_hash": user_hash(&acme_secret, &long)}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "128 characters are fine: {body}");

    // A tenant without a secret cannot verify anything.
    let initech = app.tenant("initech").await;
    let (status, body) = session(
        &app,
        &initech,
        json!({"user_id": "u1", "user_hash": user_hash(&acme_secret, "u1")}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("identity secret")),
        "{body}"
    );
}

async fn required_identity_refuses_anonymous_sessions(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let before = app.visitor(&t).await;

    // Requiring identities before there is a secret would lock everyone out.
    let (status, body) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&t.key),
            Some(json!({"identity_required": true})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "identity_required");

    let secret = secret(&app, &t).await;
    let (status, body) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&t.key),
            Some(json!({"identity_required": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["identity_required"], true);
    let (_, st) = app
        .json(Method::GET, "/v1/admin/identity", Some(&t.key), None)
        .await;
    assert_eq!(st, json!({"configured": true, "required": true}));

    for extra in [json!({}), json!({"visitor_token": before.token})] {
        let (status, body) = session(&app, &t, extra).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(code(&body), "unauthorized");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("requires a verified identity")),
            "{body}"
        );
    }
    let (status, body) = session(
        &app,
        &t,
        json!({"user_id": "u1", "user_hash": user_hash(&secret, "u0")}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let user = verified(&app, &t, &secret, "u1", None).await;
    open_conversation(&app, &token(&user)).await;

    // Tokens of anonymous visitors from before are refused too.
    let (status, body) = app
        .json(Method::POST, "/v1/conversations", Some(&before.token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = app.send(&before, "late-1", "still here?").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Switched off again: anonymous visitors are back.
    let (status, _) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&t.key),
            Some(json!({"identity_required": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = session(&app, &t, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.send(&before, "late-2", "back again").await;
    assert_eq!(status, StatusCode::CREATED);
}

async fn optional_mode_still_allows_anonymous_visitors(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let secret = secret(&app, &t).await;
    let (_, st) = app
        .json(Method::GET, "/v1/admin/identity", Some(&t.key), None)
        .await;
    assert_eq!(st, json!({"configured": true, "required": false}));

    // Anonymous visitors chat as before.
    let v = app.visitor(&t).await;
    let (status, _) = app.send(&v, "a-1", "hi").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, s) = session(&app, &t, json!({"visitor_token": v.token})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s["conversation_id"], v.conversation_id.as_str());
    assert_eq!(token(&s), v.token);

    // A verified user's device token does not resume the user without the identity
    // (e.g. after signing out on a shared computer): a new anonymous visitor.
    let user = verified(&app, &t, &secret, "user-1", None).await;
    let conv = open_conversation(&app, &token(&user)).await;
    let (status, anon) = session(&app, &t, json!({"visitor_token": token(&user)})).await;
    assert_eq!(status, StatusCode::OK, "{anon}");
    assert!(anon["conversation_id"].is_null(), "{anon}");
    assert_ne!(token(&anon), token(&user));
    let (status, _) = history(&app, &token(&anon), &conv).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn anonymous_visitor_signing_in_keeps_the_conversation(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let secret = secret(&app, &t).await;
    let v = app.visitor(&t).await;
    let (status, _) = app.send(&v, "a-1", "before signing in").await;
    assert_eq!(status, StatusCode::CREATED);

    // Signs in on the same device: same visitor, same token, same conversation.
    let s = verified(&app, &t, &secret, "user-9", Some(&v.token)).await;
    assert_eq!(token(&s), v.token);
    assert_eq!(s["conversation_id"], v.conversation_id.as_str());
    // And finds it on another device.
    let phone = verified(&app, &t, &secret, "user-9", None).await;
    assert_eq!(phone["conversation_id"], v.conversation_id.as_str());

    // A second user signing in on that device does not take it over.
    let other = verified(&app, &t, &secret, "user-10", Some(&v.token)).await;
    assert!(other["conversation_id"].is_null(), "{other}");
    let again = verified(&app, &t, &secret, "user-9", Some(&v.token)).await;
    assert_eq!(again["conversation_id"], v.conversation_id.as_str());
}

async fn secret_is_sealed_and_never_shown_again(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let (_, st) = app
        .json(Method::GET, "/v1/admin/identity", Some(&t.key), None)
        .await;
    assert_eq!(st, json!({"configured": false, "required": false}));

    let first = secret(&app, &t).await;

    // Stored sealed (bound to the tenant and field), never in plain text.
    let mut pc = app.state.db.conn().await.expect("conn");
    let row = chatorical::db::repo::tenants::by_id(&mut pc.as_conn(), &t.id)
        .await
        .expect("query")
        .expect("tenant row");
    drop(pc);
    assert!(
        !format!("{row:?}").contains(&first),
        "plaintext secret stored"
    );
    let sealed = row.identity_secret_enc.expect("sealed secret stored");
    assert_eq!(
        app.state
            .bots
            .key()
            .open(&t.id, chatorical::identity::FIELD_SECRET, &sealed)
            .expect("opens for the tenant and field"),
        first
    );

    // Never shown again: not by the status, not in the settings.
    let (status, st) = app
        .json(Method::GET, "/v1/admin/identity", Some(&t.key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(st, json!({"configured": true, "required": false}));
    let (_, settings) = app
        .json(Method::GET, "/v1/admin/settings", Some(&t.key), None)
        .await;
    assert!(!settings.to_string().contains(&first), "{settings}");
    assert!(!settings.to_string().contains(&sealed));

    // Scopes: reading needs settings:read, generating settings:write.
    let (_, reader) = app.key(&t, &["settings:read"]).await;
    let (status, _) = app
        .json(Method::GET, "/v1/admin/identity", Some(&reader), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/admin/identity/secret",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // A new secret replaces the old one: old hashes stop verifying.
    let second = secret(&app, &t).await;
    assert_ne!(first, second);
    let (status, _) = session(
        &app,
        &t,
        json!({"user_id": "u1", "user_hash": user_hash(&first, "u1")}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    verified(&app, &t, &second, "u1", None).await;
}
