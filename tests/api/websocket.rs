//! The widget socket: origins, tokens, limits, live delivery, slow readers, shutdown.

use std::{sync::Arc, time::Duration};

use chatorical::realtime::{WsClaims, WsTokenSigner};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};

use crate::helpers::{
    Backend, Ws, next_json, next_of, refused_status, send_json, spawn_app, spawn_app_with,
};
use crate::on_both_backends;

on_both_backends!(
    origin_must_match_exactly,
    expired_forged_and_foreign_tokens_are_refused,
    oversized_message_closes_with_1009,
    agent_reply_reaches_the_visitor_socket,
    socket_send_is_acked_and_idempotent,
    first_send_on_a_fresh_socket_starts_the_conversation,
    slow_reader_is_dropped_while_others_keep_receiving,
    shutdown_closes_sockets_with_going_away,
    flood_is_throttled_with_a_limit_frame,
);

async fn origin_must_match_exactly(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let v = app.visitor(&t).await;
    let evil_suffix = format!("{}.evil.com", t.origin);
    let refused: [Option<&str>; 5] = [
        Some(&other.origin),
        Some("null"),
        Some(&evil_suffix),
        None,
        Some("http://acme.example"),
    ];
    for origin in refused {
        let err = app.ws(&v.ws_token, origin).await.expect_err("refused");
        assert_eq!(refused_status(&err), Some(403), "origin {origin:?}");
    }
    let mut ws = app
        .ws(&v.ws_token, Some(&t.origin))
        .await
        .expect("exact origin accepted");
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["conversation_id"], v.conversation_id.as_str());
    assert_eq!(hello["last_seq"], 0);
}

async fn expired_forged_and_foreign_tokens_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let (body, _) = v.ws_token.split_once('.').expect("token");
    let claims: WsClaims = serde_json::from_slice(&base64_decode(body)).expect("claims");
    let expired = app.state.chat.signer().sign(&WsClaims {
        exp: chatorical::domain::now_ms() - 1,
        ..claims.clone()
    });
    let foreign = WsTokenSigner::new(b"some-other-deployment-secret-0123456789").sign(&claims);
    for token in [expired.as_str(), foreign.as_str(), "garbage", "a.b"] {
        let err = app.ws(token, Some(&t.origin)).await.expect_err("refused");
        assert_eq!(refused_status(&err), Some(401), "token {token}");
    }
    // The visitor token is not a socket token.
    let err = app
        .ws(&v.token, Some(&t.origin))
        .await
        .expect_err("refused");
    assert_eq!(refused_status(&err), Some(401));
}

async fn oversized_message_closes_with_1009(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let mut ws = app.ws(&v.ws_token, Some(&t.origin)).await.expect("open");
    next_of(&mut ws, "hello").await;
    let big = "x".repeat(64 * 1024 + 1);
    use futures_util::SinkExt;
    ws.send(Message::Text(big.into())).await.expect("sent");
    let code = close_code(&mut ws).await;
    assert_eq!(code, Some(CloseCode::Size), "closed with 1009");
}

async fn agent_reply_reaches_the_visitor_socket(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let mut ws = app.ws(&v.ws_token, Some(&t.origin)).await.expect("open");
    next_of(&mut ws, "hello").await;
    let (status, _) = app.reply(&t, &v.conversation_id, "How can we help?").await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    let frame = next_of(&mut ws, "message").await;
    assert_eq!(frame["message"]["text"], "How can we help?");
    assert_eq!(frame["message"]["direction"], "outbound");
    assert_eq!(frame["message"]["author"], "Ana");
    assert_eq!(frame["message"]["seq"], 1);
}

async fn socket_send_is_acked_and_idempotent(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let mut ws = app.ws(&v.ws_token, Some(&t.origin)).await.expect("open");
    next_of(&mut ws, "hello").await;
    send_json(
        &mut ws,
        json!({"type": "send", "client_msg_id": "w1", "text": "from the socket"}),
    )
    .await;
    let ack = next_of(&mut ws, "ack").await;
    assert_eq!(ack["client_msg_id"], "w1");
    assert_eq!(ack["message"]["seq"], 1);
    send_json(
        &mut ws,
        json!({"type": "send", "client_msg_id": "w1", "text": "from the socket"}),
    )
    .await;
    let again = next_of(&mut ws, "ack").await;
    assert_eq!(again["message"]["id"], ack["message"]["id"]);
    send_json(&mut ws, json!({"type": "ping"})).await;
    next_of(&mut ws, "pong").await;
    send_json(&mut ws, json!({"type": "nonsense"})).await;
    let err = next_of(&mut ws, "error").await;
    assert_eq!(err["code"], "invalid_frame");
    let (_, h) = app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(h["last_seq"], 1);
}

async fn first_send_on_a_fresh_socket_starts_the_conversation(b: Backend) {
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
    assert!(s["conversation_id"].is_null());
    let mut ws = app
        .ws(s["ws_token"].as_str().expect("ws_token"), Some(&t.origin))
        .await
        .expect("open");
    let hello = next_of(&mut ws, "hello").await;
    assert!(hello["conversation_id"].is_null());
    send_json(
        &mut ws,
        json!({"type": "send", "client_msg_id": "first", "text": "hi"}),
    )
    .await;
    let ack = next_of(&mut ws, "ack").await;
    let conv = ack["message"]["conversation_id"]
        .as_str()
        .expect("conversation id")
        .to_string();
    // The socket is now subscribed: an agent reply arrives live.
    app.reply(&t, &conv, "hello there").await;
    // The socket sees its own message echoed (seq 1), then the agent's (seq 2).
    let own = next_of(&mut ws, "message").await;
    assert_eq!(
        (
            own["message"]["seq"].as_i64(),
            own["message"]["text"].as_str()
        ),
        (Some(1), Some("hi"))
    );
    let frame = next_of(&mut ws, "message").await;
    assert_eq!(frame["message"]["text"], "hello there");
    assert_eq!(frame["message"]["seq"], 2);
}

async fn slow_reader_is_dropped_while_others_keep_receiving(b: Backend) {
    let app = spawn_app_with(b, |s| s.ws.send_queue = 4).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let mut fast = app.ws(&v.ws_token, Some(&t.origin)).await.expect("fast");
    let mut slow = app.ws(&v.ws_token, Some(&t.origin)).await.expect("slow");
    next_of(&mut fast, "hello").await;
    next_of(&mut slow, "hello").await;
    let hub = app.state.chat.hub().clone();
    assert_eq!(hub.subscriber_count(), 2);
    let payload = "y".repeat(32 * 1024);
    let mut dropped_at = None;
    for i in 0..600 {
        let frame: Arc<str> = json!({"type": "typing", "from": "agent", "n": i, "pad": payload})
            .to_string()
            .into();
        hub.publish(
            &v.conversation_id,
            chatorical::realtime::HubEvent::other(frame),
        );
        let got = next_of(&mut fast, "typing").await;
        assert_eq!(got["n"], i, "the fast reader gets every frame in order");
        if dropped_at.is_none() && hub.subscriber_count() == 1 {
            dropped_at = Some(i);
        }
        if dropped_at.is_some_and(|d| i >= d + 20) {
            break;
        }
    }
    assert!(
        dropped_at.is_some(),
        "the reader that never reads was dropped"
    );
    // When it finally reads, it finds a 1013 close after what it had been sent.
    assert_eq!(close_code(&mut slow).await, Some(CloseCode::Again));
}

async fn shutdown_closes_sockets_with_going_away(b: Backend) {
    let mut app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let mut ws = app.ws(&v.ws_token, Some(&t.origin)).await.expect("open");
    next_of(&mut ws, "hello").await;
    app.stop().await;
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
}

async fn flood_is_throttled_with_a_limit_frame(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    let mut ws = app.ws(&v.ws_token, Some(&t.origin)).await.expect("open");
    next_of(&mut ws, "hello").await;
    for _ in 0..40 {
        send_json(&mut ws, json!({"type": "ping"})).await;
    }
    let limit = next_of(&mut ws, "limit").await;
    assert_eq!(limit["code"], "rate_limited");
    assert!(limit["retry_after"].as_u64().is_some_and(|s| s >= 1));
}

/// Read until the close frame; its code.
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("closed within 20 s");
        match next {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error before a close frame: {e}"),
            None => return None,
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64")
}
