//! Visitor chat over HTTP: sessions, conversations, idempotent sends, backfill.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, code, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    fifty_parallel_starts_make_one_conversation,
    same_client_msg_id_twice_stores_one_message,
    concurrent_duplicates_store_one_message,
    seq_is_dense_under_concurrent_senders,
    since_returns_exactly_the_missing_messages_in_order,
    closed_conversation_refuses_messages_and_a_new_one_starts,
    session_resumes_the_same_visitor_and_conversation,
    bad_bodies_get_the_error_envelope,
    session_carries_the_tenants_widget_theme,
);

async fn session_carries_the_tenants_widget_theme(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let body = json!({"widget_key": t.widget_key});
    let session = || app.json(Method::POST, "/v1/widget/session", None, Some(body.clone()));
    let (status, s) = session().await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(
        s["theme"],
        json!({"accent_color": "#2f6feb", "position": "right"})
    );

    let (status, body) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&t.key),
            Some(json!({"accent_color": "#7a1fa2", "widget_position": "left"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["widget_position"], "left");
    let (_, s) = session().await;
    assert_eq!(
        s["theme"],
        json!({"accent_color": "#7a1fa2", "position": "left"})
    );

    // An unknown corner is refused and changes nothing.
    let (status, body) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&t.key),
            Some(json!({"widget_position": "top"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "invalid_json");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("widget_position"), "{body}");
    let (_, s) = session().await;
    assert_eq!(s["theme"]["position"], "left");
}

async fn fifty_parallel_starts_make_one_conversation(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let (_, s) = app
        .json(
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": t.widget_key})),
        )
        .await;
    let token = s["visitor_token"].as_str().expect("token").to_string();
    let calls = (0..50).map(|_| app.json(Method::POST, "/v1/conversations", Some(&token), None));
    let results = futures_util::future::join_all(calls).await;
    let ids: BTreeSet<String> = results
        .iter()
        .map(|(_, c)| c["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 1, "one conversation: {ids:?}");
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "exactly one call created it");
    assert!(
        results
            .iter()
            .all(|(s, _)| *s == StatusCode::CREATED || *s == StatusCode::OK)
    );
    let (_, list) = app
        .json(Method::GET, "/v1/admin/conversations", Some(&t.key), None)
        .await;
    assert_eq!(list["conversations"].as_array().map(Vec::len), Some(1));
}

async fn same_client_msg_id_twice_stores_one_message(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let (s1, m1) = app.send(&v, "c-1", "hello").await;
    let (s2, m2) = app.send(&v, "c-1", "hello").await;
    assert_eq!(s1, StatusCode::CREATED);
    assert_eq!(s2, StatusCode::OK);
    assert_eq!(m1, m2, "the same message comes back");
    assert_eq!(m1["seq"], 1);
    assert_eq!(m1["direction"], "inbound");
    let (_, h) = app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(h["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(h["last_seq"], 1);
}

async fn concurrent_duplicates_store_one_message(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let results =
        futures_util::future::join_all((0..10).map(|_| app.send(&v, "dup", "once"))).await;
    let ids: BTreeSet<String> = results
        .iter()
        .map(|(_, m)| m["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(
        results
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .count(),
        1
    );
    let (_, h) = app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(h["last_seq"], 1, "no seq was burnt by the duplicates");
}

async fn seq_is_dense_under_concurrent_senders(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let ids: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    let results = futures_util::future::join_all(ids.iter().map(|id| app.send(&v, id, "x"))).await;
    assert!(
        results.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "{results:?}"
    );
    let mut seqs: Vec<i64> = results
        .iter()
        .map(|(_, m)| m["seq"].as_i64().expect("seq"))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

async fn since_returns_exactly_the_missing_messages_in_order(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    for i in 1..=6 {
        app.send(&v, &format!("v{i}"), &format!("visitor {i}"))
            .await;
        app.reply(&t, &v.conversation_id, &format!("agent {i}"))
            .await;
    }
    let (status, h) = app
        .json(
            Method::GET,
            &format!(
                "/v1/conversations/{}/messages?since=7&limit=3",
                v.conversation_id
            ),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let seqs: Vec<i64> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![8, 9, 10]);
    assert_eq!(h["last_seq"], 12);
    let (_, rest) = app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages?since=10", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    let texts: Vec<&str> = rest["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, vec!["visitor 6", "agent 6"]);
    assert_eq!(rest["messages"][1]["direction"], "outbound");
    assert_eq!(rest["messages"][1]["author"], "Ana");
    let (_, none) = app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages?since=12", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(none["messages"].as_array().map(Vec::len), Some(0));
}

async fn closed_conversation_refuses_messages_and_a_new_one_starts(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    app.send(&v, "a", "before").await;
    let (status, c) = app
        .json(
            Method::POST,
            &format!("/v1/admin/conversations/{}/close", v.conversation_id),
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(c["status"], "closed");
    let (status, body) = app.send(&v, "b", "after").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "conversation_closed");
    // A retry of a message stored before the close still gets the stored message.
    let (status, again) = app.send(&v, "a", "before").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["seq"], 1);
    let (status, body) = app.reply(&t, &v.conversation_id, "late reply").await;
    assert_eq!(code(&body), "conversation_closed", "{status}");
    let (status, fresh) = app
        .json(Method::POST, "/v1/conversations", Some(&v.token), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(fresh["id"], v.conversation_id.as_str());
    let (_, open) = app
        .json(
            Method::GET,
            "/v1/admin/conversations?status=open",
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(open["conversations"].as_array().map(Vec::len), Some(1));
}

async fn session_resumes_the_same_visitor_and_conversation(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let (status, s) = app
        .json(
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": t.widget_key, "visitor_token": v.token, "locale": "de-AT"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s["visitor_token"], v.token.as_str());
    assert_eq!(s["conversation_id"], v.conversation_id.as_str());
    // Another tenant's widget never resumes this visitor.
    let other = app.tenant("other").await;
    let (_, s2) = app
        .json(
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": other.widget_key, "visitor_token": v.token})),
        )
        .await;
    assert_ne!(s2["visitor_token"], v.token.as_str());
    assert!(s2["conversation_id"].is_null());
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": "wk_nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

async fn bad_bodies_get_the_error_envelope(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let (status, body) = app.send(&v, "e1", "   ").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code(&body), "validation_failed");
    assert_eq!(body["error"]["details"]["field"], "text");
    let (status, body) = app.send(&v, "bad id with spaces", "x").await;
    assert_eq!(
        body["error"]["details"]["field"], "client_msg_id",
        "{status}"
    );
    let (status, body) = app.send(&v, "e2", &"x".repeat(8001)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let resp = app
        .http
        .post(format!(
            "{}/v1/conversations/{}/messages",
            app.base, v.conversation_id
        ))
        .bearer_auth(&v.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(code(&body), "invalid_json");
    let (status, body) = app
        .json(
            Method::POST,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            Some(json!({"client_msg_id": "x", "text": "y", "extra": 1})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_json"),
        "{body}"
    );
    let (status, body) = app.json(Method::GET, "/v1/nope", None, None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (_, h) = app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(h["last_seq"], 0, "nothing half-written");
}
