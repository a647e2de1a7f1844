//! Socket floods (issue 9, item 4): sockets per visitor and per client address are
//! capped, and typing from any number of sockets reaches Telegram at most once per
//! conversation per interval and only within the per-bot/per-chat budgets.

use std::time::{Duration, Instant};

use chatorical::{db::repo, telegram::typing::TypingOutcome};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::helpers::{
    Backend, TestApp, Ws, eventually, next_of, refused_status, send_json, spawn_app_with,
    spawn_with_telegram,
};
use crate::on_both_backends;

on_both_backends!(
    sockets_per_address_are_capped_and_given_back,
    typing_from_thirty_sockets_is_throttled_per_conversation_and_budgeted,
);

/// The close frame a socket receives next (code and reason), skipping other frames.
async fn close_frame(ws: &mut Ws) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("closed within 10 s");
        match next {
            Some(Ok(Message::Close(frame))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error before a close frame: {e}"),
            None => return None,
        }
    }
}

/// Open a socket and read its `hello` (so the server has counted it).
async fn open(app: &TestApp, token: &str, origin: &str) -> Ws {
    let mut ws = app.ws(token, Some(origin)).await.expect("socket opens");
    next_of(&mut ws, "hello").await;
    ws
}

/// The JSON error body of a refused upgrade.
fn refused_body(e: &tungstenite::Error) -> serde_json::Value {
    match e {
        tungstenite::Error::Http(resp) => resp
            .body()
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default(),
        _ => serde_json::Value::Null,
    }
}

async fn sockets_per_address_are_capped_and_given_back(b: Backend) {
    let app = spawn_app_with(b, |s| {
        s.ws.max_sockets_per_ip = 4;
        s.ws.max_sockets_per_visitor = 10;
    })
    .await;
    let t = app.tenant("acme").await;
    let (v1, v2) = (app.visitor(&t).await, app.visitor(&t).await);
    let mut open_sockets = Vec::new();
    for v in [&v1, &v1, &v2, &v2] {
        open_sockets.push(open(&app, &v.ws_token, &t.origin).await);
    }
    // Every visitor and token counts against the address: the fifth is refused.
    let err = app
        .ws(&v1.ws_token, Some(&t.origin))
        .await
        .expect_err("fifth socket from one address refused");
    assert_eq!(refused_status(&err), Some(429));
    let body = refused_body(&err);
    assert_eq!(body["error"]["code"], "too_many_sockets", "{body}");
    assert_eq!(body["error"]["details"]["max_sockets_per_ip"], 4, "{body}");
    assert_eq!(app.state.sockets.refused(), 1);

    // The open ones are unharmed.
    for ws in &mut open_sockets {
        send_json(ws, json!({"type": "ping"})).await;
        next_of(ws, "pong").await;
    }
    // A closed socket gives its place back.
    let mut gone = open_sockets.pop().expect("a socket");
    gone.close(None).await.expect("close sent");
    drop(gone);
    let localhost: std::net::IpAddr = [127, 0, 0, 1].into();
    let caps = app.state.sockets.clone();
    eventually(10, "the closed socket no longer counts", || {
        let caps = caps.clone();
        async move { caps.open_from(localhost) == 3 }
    })
    .await;
    open_sockets.push(open(&app, &v2.ws_token, &t.origin).await);
    assert_eq!(
        app.state.sockets.refused(),
        1,
        "no refusal after the place came back"
    );
    assert_eq!(app.state.sockets.evicted(), 0);

    // The refusals are counted in the metrics.
    let metrics = app
        .call(Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics.contains("chatorical_ws_upgrades_refused_total{reason=\"ip_cap\"}"),
        "{metrics}"
    );
}

async fn typing_from_thirty_sockets_is_throttled_per_conversation_and_budgeted(b: Backend) {
    // Typing may use half the per-chat budget: 1 action a second, 1 of burst.
    let t = spawn_with_telegram(b, |s| {
        s.worker.per_chat_per_sec = 2;
    })
    .await;
    let origin = t.tenant.origin.clone();
    // Six conversations, each with a live topic (set directly, so that no message has
    // taken from the budgets yet).
    let mut visitors = Vec::new();
    for i in 0..6 {
        let v = t.app.visitor(&t.tenant).await;
        let thread = t.fake.add_topic(t.group, &format!("topic {i}"));
        let mut pc = t.app.state.db.conn().await.expect("conn");
        let set = repo::conversations::set_topic(
            &mut pc.as_conn(),
            &t.tenant.id,
            &v.conversation_id,
            i64::from(thread),
            &format!("topic {i}"),
        )
        .await
        .expect("topic recorded");
        assert!(set);
        visitors.push((v, thread));
    }

    // Each visitor opens six sockets: the sixth closes the visitor's first with 1008.
    let mut sockets = Vec::new();
    for (v, _) in &visitors {
        let mut first = open(&t.app, &v.ws_token, &origin).await;
        let mut rest = Vec::new();
        for _ in 0..5 {
            rest.push(open(&t.app, &v.ws_token, &origin).await);
        }
        let (code, reason) = close_frame(&mut first).await.expect("a close frame");
        assert_eq!(code, 1008, "policy");
        assert!(reason.contains("too many sockets"), "{reason}");
        sockets.extend(rest);
    }
    assert_eq!(sockets.len(), 30);
    assert_eq!(t.app.state.sockets.evicted(), 6);

    // Thirty sockets (five per conversation) say `typing` at once.
    let started = Instant::now();
    for ws in &mut sockets {
        send_json(ws, json!({"type": "typing"})).await;
    }
    let typing = t.app.state.typing.clone();
    let count = move |o| typing.count(o);
    let all =
        |c: &dyn Fn(TypingOutcome) -> u64| TypingOutcome::ALL.iter().map(|o| c(*o)).sum::<u64>();
    eventually(10, "every typing frame handled", || {
        let n = all(&count);
        async move { n == 30 }
    })
    .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(4),
        "all within one interval: {elapsed:?}"
    );
    let sent = count(TypingOutcome::Sent);
    let over = count(TypingOutcome::OverBudget);
    eprintln!(
        "typing: 30 frames in {elapsed:?}: sent {sent}, over budget {over}, throttled {}",
        count(TypingOutcome::Throttled)
    );
    assert_eq!(
        count(TypingOutcome::Throttled),
        24,
        "one per conversation passes"
    );
    assert_eq!(sent + over, 6, "the six that passed met the budget");
    assert_eq!(
        count(TypingOutcome::Failed) + count(TypingOutcome::NotShown),
        0
    );
    // The budget: one of burst, then one a second.
    let budget = 1 + elapsed.as_secs();
    assert!((1..=budget).contains(&sent), "sent {sent}, budget {budget}");

    let actions = t.fake.calls_of("sendchataction");
    assert_eq!(
        actions.len() as u64,
        sent,
        "the fake saw exactly what was sent"
    );
    let mut threads: Vec<i32> = actions.iter().filter_map(|c| c.thread_id()).collect();
    threads.sort_unstable();
    threads.dedup();
    assert_eq!(threads.len(), actions.len(), "at most one per conversation");
    assert!(
        threads
            .iter()
            .all(|th| visitors.iter().any(|(_, topic)| topic == th))
    );

    // Messages keep their share of the chat budget: one goes out right away.
    let (v, thread) = &visitors[0];
    let (status, body) = t.app.send(v, "after-typing", "still here").await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let sent = t
        .fake
        .wait_for_calls("sendmessage", 1, Duration::from_secs(10))
        .await;
    assert_eq!(sent[0].text(), Some("still here"));
    assert_eq!(sent[0].thread_id(), Some(*thread));
}
