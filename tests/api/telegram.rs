//! The Telegram bridge against a fake Bot API: setup, a topic per conversation,
//! retries, dead letters, and agents' answers back to the visitor.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chatorical::{
    outbox::{
        Wakeup,
        worker::{CHAIN, Worker},
    },
    telegram::{
        delivery::TelegramDelivery,
        typing::{TYPING_EVERY, TypingOutcome},
    },
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::fake_telegram::{Failure, topic_text_update};
use crate::helpers::{
    Backend, TelegramFixture, code, connect_telegram, eventually, fake_bot_and_group, next_of,
    send_json, spawn_with_telegram,
};
use crate::on_both_backends;

on_both_backends!(
    setup_validates_the_bot_and_registers_the_webhook,
    visitor_message_opens_a_topic_and_agent_reply_reaches_the_socket,
    two_workers_and_a_hundred_conversations_make_a_hundred_topics,
    a_lane_backlog_goes_out_in_order_taking_turns_with_other_lanes,
    retry_after_pauses_only_that_chat_and_keeps_order,
    forbidden_is_dead_lettered_and_can_be_retried,
    server_error_is_retried_then_delivered,
    deleted_topic_is_recreated,
    closing_the_conversation_closes_the_topic,
    sealed_token_moved_to_another_tenant_is_refused,
    validate_passes_for_a_connected_tenant_and_names_failures,
    typing_shows_both_ways,
);

async fn typing_shows_both_ways(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    let mut ws = t
        .app
        .ws(&v.ws_token, Some(&t.tenant.origin))
        .await
        .expect("socket");
    next_of(&mut ws, "hello").await;
    t.app.send(&v, "m1", "Hello?").await;
    let sent = t
        .fake
        .wait_for_calls("sendmessage", 2, Duration::from_secs(10))
        .await;
    let thread = sent[1].thread_id().expect("topic");

    // Visitor → agents: a typing action in the conversation's topic, at most one per
    // conversation per TYPING_EVERY (4 s), however many sockets. (Each socket also
    // passes on at most one frame per interval, so the frames come from several
    // sockets.) Every frame that leaves a socket ends in an outcome counter: the counts
    // are exact once all are accounted for, and a `Sent` is counted after its Bot API
    // call returned, so the fake has seen it by then.
    assert_eq!(
        TYPING_EVERY,
        Duration::from_secs(4),
        "the documented interval"
    );
    let mut others = Vec::new();
    for _ in 0..3 {
        let mut other = t
            .app
            .ws(&v.ws_token, Some(&t.tenant.origin))
            .await
            .expect("another socket");
        next_of(&mut other, "hello").await;
        others.push(other);
    }
    let typing = t.app.state.typing.clone();
    let count = move |o| typing.count(o);
    let handled = move |n: u64| {
        let all: u64 = TypingOutcome::ALL.iter().map(|o| count(*o)).sum();
        async move { all == n }
    };
    let first_sent = Instant::now();
    send_json(&mut ws, json!({"type": "typing"})).await;
    send_json(&mut others[0], json!({"type": "typing"})).await;
    send_json(&mut others[1], json!({"type": "typing"})).await;
    eventually(10, "three typing frames handled", || handled(3)).await;
    // The interval started no later than now.
    let interval_started_by = Instant::now();
    let typing = &t.app.state.typing;
    assert_eq!(typing.count(TypingOutcome::Sent), 1);
    assert_eq!(typing.count(TypingOutcome::Throttled), 2);
    let actions = t.fake.calls_of("sendchataction");
    assert_eq!(
        actions.len(),
        1,
        "three sockets at once make one chat action"
    );
    assert_eq!(actions[0].chat_id(), Some(t.group));
    assert_eq!(actions[0].thread_id(), Some(thread));
    assert_eq!(actions[0].params["action"], "typing");

    // 3.5 s after the first frame: still within the interval (which started after the
    // first frame was sent), also for a socket that has not typed before.
    tokio::time::sleep_until((first_sent + Duration::from_millis(3500)).into()).await;
    send_json(&mut others[2], json!({"type": "typing"})).await;
    eventually(10, "the fourth frame handled", || handled(4)).await;
    assert_eq!(typing.count(TypingOutcome::Sent), 1, "throttled at 3.5 s");
    assert_eq!(typing.count(TypingOutcome::Throttled), 3);
    assert_eq!(t.fake.calls_of("sendchataction").len(), 1);

    // Past the interval: passed on again, exactly once for two sockets.
    let after = interval_started_by + TYPING_EVERY + Duration::from_millis(100);
    tokio::time::sleep_until(after.into()).await;
    send_json(&mut ws, json!({"type": "typing"})).await;
    send_json(&mut others[0], json!({"type": "typing"})).await;
    eventually(10, "six frames handled", || handled(6)).await;
    assert_eq!(typing.count(TypingOutcome::Sent), 2, "one more after 4 s");
    assert_eq!(typing.count(TypingOutcome::Throttled), 4);
    let actions = t.fake.calls_of("sendchataction");
    assert_eq!(actions.len(), 2);
    let gap = actions[1].at.duration_since(actions[0].at);
    assert!(gap >= Duration::from_millis(3500), "{gap:?} apart");
    drop(others);

    // Agent → visitor: the admin API puts a typing frame on the visitor's socket.
    let path = format!("/v1/admin/conversations/{}/typing", v.conversation_id);
    let (status, body) = t
        .app
        .json(Method::POST, &path, Some(&t.tenant.key), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    loop {
        let f = next_of(&mut ws, "typing").await;
        if f["from"] == "agent" {
            break;
        }
        assert_eq!(f["from"], "visitor", "{f}");
    }
    // Another tenant cannot, and a closed conversation is refused.
    let other = t.app.tenant("other").await;
    let (status, body) = t
        .app
        .json(Method::POST, &path, Some(&other.key), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let close = format!("/v1/admin/conversations/{}/close", v.conversation_id);
    let (status, _) = t
        .app
        .json(Method::POST, &close, Some(&t.tenant.key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = t
        .app
        .json(Method::POST, &path, Some(&t.tenant.key), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(code(&body), "conversation_closed");
}

async fn setup_validates_the_bot_and_registers_the_webhook(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let hook = t.fake.webhook(&t.token).expect("webhook registered");
    assert_eq!(hook.url, format!("{}/v1/telegram/webhook/acme", t.app.base));
    let secret = hook.secret_token.expect("secret token");
    assert!(
        secret.len() >= 32
            && secret
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    );
    assert_eq!(
        hook.allowed_updates,
        Some(vec!["message".to_string(), "edited_message".to_string()])
    );
    let (status, shown) = t
        .app
        .json(Method::GET, "/v1/admin/telegram", Some(&t.tenant.key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["bot_token"], "111:***");
    assert_eq!(shown["group_chat_id"], t.group);
    assert_eq!(shown["bot_id"], t.bot_id);
    assert_eq!(shown["can_manage_topics"], true);
    assert!(!shown.to_string().contains(&t.token), "token never shown");
    assert!(!shown.to_string().contains(&secret), "secret never shown");

    // Wrong token, non-forum group, bot without rights and no default topic: refused.
    let other = t.app.tenant("other").await;
    let (status, body) = t
        .app
        .json(
            Method::PUT,
            "/v1/admin/telegram",
            Some(&other.key),
            Some(json!({"bot_token": "999:BBBBBBBBBBBBBBBBBBBB", "group_chat_id": t.group})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["field"], "bot_token");
    let token2 = fake_bot_and_group(&t.fake, 222, -100222);
    t.fake.add_group(-100223, "Plain group", false);
    t.fake.set_member(222, -100223, "administrator", true);
    let (_, body) = t
        .app
        .json(
            Method::PUT,
            "/v1/admin/telegram",
            Some(&other.key),
            Some(json!({"bot_token": token2, "group_chat_id": -100223})),
        )
        .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a forum"),
        "{body}"
    );
    t.fake.set_member(222, -100222, "member", false);
    let (_, body) = t
        .app
        .json(
            Method::PUT,
            "/v1/admin/telegram",
            Some(&other.key),
            Some(json!({"bot_token": token2, "group_chat_id": -100222})),
        )
        .await;
    assert_eq!(
        body["error"]["details"]["field"], "default_topic_id",
        "{body}"
    );
    let (status, _) = t
        .app
        .json(Method::GET, "/v1/admin/telegram", Some(&other.key), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing stored for the refused tenant"
    );
    // Disconnect removes the webhook.
    let (status, _) = t
        .app
        .json(
            Method::DELETE,
            "/v1/admin/telegram",
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(t.fake.webhook(&t.token).is_none_or(|h| h.url.is_empty()));
}

async fn visitor_message_opens_a_topic_and_agent_reply_reaches_the_socket(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    let mut ws = t
        .app
        .ws(&v.ws_token, Some(&t.tenant.origin))
        .await
        .expect("socket");
    next_of(&mut ws, "hello").await;
    t.app.send(&v, "m1", "Where is my order?").await;
    let sent = t
        .fake
        .wait_for_calls("sendmessage", 2, Duration::from_secs(10))
        .await;
    let topics = t.fake.calls_of("createforumtopic");
    assert_eq!(topics.len(), 1);
    let thread = sent[1].thread_id().expect("into the topic");
    assert_eq!(
        sent[0].thread_id(),
        Some(thread),
        "the opening card goes into the topic too"
    );
    assert!(
        sent[0].text().unwrap_or("").contains(&v.conversation_id),
        "card names the conversation"
    );
    assert_eq!(sent[1].text(), Some("Where is my order?"));

    // An agent answers in the topic: the visitor's socket gets it.
    let hook = t.fake.webhook(&t.token).expect("webhook");
    let update = topic_text_update(1, t.group, thread, 9001, 555, "Ana", "It ships today.");
    let status = t
        .fake
        .deliver_update(&t.token, &update)
        .await
        .expect("delivered");
    assert_eq!(status, StatusCode::OK, "{}", hook.url);
    let frame = next_of(&mut ws, "message").await;
    let frame = if frame["message"]["direction"] == "inbound" {
        next_of(&mut ws, "message").await
    } else {
        frame
    };
    assert_eq!(frame["message"]["text"], "It ships today.");
    assert_eq!(frame["message"]["author"], "Ana");
    assert_eq!(frame["message"]["direction"], "outbound");

    // The next visitor message reuses the topic.
    t.app.send(&v, "m2", "Thanks!").await;
    let sent = t
        .fake
        .wait_for_calls("sendmessage", 3, Duration::from_secs(10))
        .await;
    assert_eq!(sent[2].thread_id(), Some(thread));
    assert_eq!(t.fake.calls_of("createforumtopic").len(), 1);
}

/// A delivery goes on with its lane's next item (in the transaction that records it),
/// up to 16 in a row; then the permit goes back and the next claim starts after that
/// lane: with one permit and two lanes of 40, runs of 16 in turn, each lane in order.
async fn a_lane_backlog_goes_out_in_order_taking_turns_with_other_lanes(b: Backend) {
    let t = spawn_with_telegram(b, |s| {
        s.worker.embedded = false;
        s.worker.coalesce = false;
        s.worker.per_bot_per_sec = 100_000;
        s.worker.per_chat_per_sec = 100_000;
        s.worker.per_group_per_min = 1_000_000;
    })
    .await;
    t.app.unlimited(&t.tenant).await;
    let other = t.app.tenant("globex").await;
    t.app.unlimited(&other).await;
    let token = fake_bot_and_group(&t.fake, 222, -100222);
    connect_telegram(&t.app, &other, &token, -100222).await;
    let (va, vb) = (t.app.visitor(&t.tenant).await, t.app.visitor(&other).await);
    for i in 0..40 {
        for (v, lane) in [(&va, "a"), (&vb, "b")] {
            let (status, body) = t
                .app
                .send(v, &format!("{lane}{i}"), &format!("{lane}{i}"))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    let state = &t.app.state;
    let mut settings = state.settings.worker.clone();
    settings.concurrency = 1;
    let delivery = Arc::new(TelegramDelivery::new(
        state.db.clone(),
        state.bots.clone(),
        settings.clone(),
    ));
    let worker = Arc::new(Worker::new(
        state.db.clone(),
        settings,
        delivery,
        Wakeup::default(),
    ));
    let stop = CancellationToken::new();
    let handle = tokio::spawn(worker.run(stop.clone()));
    // Two opening cards and 80 messages.
    t.fake
        .wait_for_calls("sendmessage", 82, Duration::from_secs(60))
        .await;
    stop.cancel();
    handle.await.expect("the worker stops without panicking");

    let sent: Vec<(i64, String)> = t
        .fake
        .calls_of("sendmessage")
        .iter()
        .filter_map(|c| {
            let text = c.text()?;
            let digits = text.get(1..).filter(|d| !d.is_empty())?;
            let numbered = digits.bytes().all(|b| b.is_ascii_digit());
            numbered.then(|| (c.chat_id().unwrap_or_default(), text.to_string()))
        })
        .collect();
    for (group, lane) in [(-100111, "a"), (-100222, "b")] {
        let texts: Vec<&str> = sent
            .iter()
            .filter(|(chat, _)| *chat == group)
            .map(|(_, text)| text.as_str())
            .collect();
        let expected: Vec<String> = (0..40).map(|i| format!("{lane}{i}")).collect();
        assert_eq!(texts, expected, "lane {lane}: each message once, in order");
    }
    // Runs of consecutive sends into one group.
    let mut runs: Vec<usize> = Vec::new();
    for (i, (chat, _)) in sent.iter().enumerate() {
        match runs.last_mut() {
            Some(n) if i > 0 && sent[i - 1].0 == *chat => *n += 1,
            _ => runs.push(1),
        }
    }
    assert_eq!(
        runs.iter().max(),
        Some(&CHAIN),
        "a delivery goes on with its lane for up to 16 items: {runs:?}"
    );
    assert!(runs.len() >= 5, "the lanes take turns: {runs:?}");
}

async fn two_workers_and_a_hundred_conversations_make_a_hundred_topics(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    t.app.unlimited(&t.tenant).await;
    // A second worker beside the one inside `serve`.
    let state = &t.app.state;
    let delivery = Arc::new(TelegramDelivery::new(
        state.db.clone(),
        state.bots.clone(),
        state.settings.worker.clone(),
    ));
    let second = Arc::new(
        Worker::new(
            state.db.clone(),
            state.settings.worker.clone(),
            delivery,
            Wakeup::default(),
        )
        .with_panics(state.panics.clone()),
    );
    let stop = CancellationToken::new();
    let handle = tokio::spawn(second.run(stop.clone()));

    let visitors = futures_util::future::join_all((0..100).map(|_| t.app.visitor(&t.tenant))).await;
    let sends = visitors.iter().enumerate().map(|(i, v)| {
        let app = &t.app;
        async move { app.send(v, "first", &format!("hello {i}")).await }
    });
    futures_util::future::join_all(sends).await;
    // 100 cards + 100 messages.
    t.fake
        .wait_for_calls("sendmessage", 200, Duration::from_secs(120))
        .await;
    // Nothing more can be sent once every item is delivered and both workers have
    // stopped (a worker sends only what it holds under a lease): then count exactly.
    settled(&t).await;
    stop.cancel();
    handle
        .await
        .expect("the second worker stops without panicking");
    let mut t = t;
    t.app.stop().await;
    assert_eq!(
        t.fake.calls_of("sendmessage").len(),
        200,
        "no card or message twice"
    );
    assert_eq!(
        t.fake.calls_of("createforumtopic").len(),
        100,
        "exactly one topic per conversation"
    );
    let mut texts: BTreeMap<String, usize> = BTreeMap::new();
    for c in t.fake.calls_of("sendmessage") {
        if let Some(text) = c.text().filter(|x| x.starts_with("hello ")) {
            *texts.entry(text.to_string()).or_default() += 1;
        }
    }
    assert_eq!(texts.len(), 100);
    assert!(texts.values().all(|n| *n == 1), "no duplicate sends");
}

/// Wait until no outbox item is queued or in flight (every one delivered or dead).
async fn settled(t: &TelegramFixture) {
    eventually(60, "every outbox item delivered or dead", || async {
        let mut pc = t.app.state.db.conn().await.expect("conn");
        let mut conn = pc.as_conn();
        let mut pending = 0;
        for status in ["queued", "in_flight"] {
            pending += chatorical::db::repo::outbox::count_by_status(&mut conn, status)
                .await
                .expect("count");
        }
        pending == 0
    })
    .await;
}

/// Telegram's `retry_after` in the throttling test, in seconds.
const RETRY_AFTER: u32 = 3;

async fn retry_after_pauses_only_that_chat_and_keeps_order(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    // A second tenant on another bot and group keeps flowing.
    let other = t.app.tenant("other").await;
    let token2 = fake_bot_and_group(&t.fake, 222, -100222);
    connect_telegram(&t.app, &other, &token2, -100222).await;

    let v = t.app.visitor(&t.tenant).await;
    t.app.send(&v, "a0", "first").await;
    t.fake
        .wait_for_calls("sendmessage", 2, Duration::from_secs(10))
        .await;
    t.fake.fail_next(
        "sendmessage",
        Some(t.group),
        Failure::RetryAfter(RETRY_AFTER),
    );
    let throttled_at = Instant::now();
    t.app.send(&v, "a1", "second").await;
    t.app.send(&v, "a2", "third").await;
    let w = t.app.visitor(&other).await;
    t.app.send(&w, "b1", "other tenant").await;
    let other_calls = t
        .fake
        .wait_for_calls("sendmessage", 5, Duration::from_secs(10))
        .await;
    let other_sent = other_calls
        .iter()
        .find(|c| c.text() == Some("other tenant"))
        .expect("other tenant delivered")
        .at;
    let all = t
        .fake
        .wait_for_calls("sendmessage", 7, Duration::from_secs(15))
        .await;
    let acme: Vec<_> = all
        .iter()
        .filter(|c| c.chat_id() == Some(t.group))
        .collect();
    let refused = acme
        .iter()
        .position(|c| c.text() == Some("second"))
        .expect("attempted");
    let pause = Duration::from_secs(RETRY_AFTER.into());
    for c in &acme[refused + 1..] {
        assert!(
            c.at.duration_since(acme[refused].at) >= pause,
            "nothing to that chat during retry_after"
        );
    }
    // The other tenant went out while acme's chat was held: before acme's retry, and
    // within retry_after of the refusal (a worker that paused everything would only
    // have sent it once the pause was over).
    let retried = acme[refused + 1].at;
    assert!(
        other_sent < retried && other_sent.duration_since(throttled_at) < pause,
        "other tenants are not held up: sent {:?} after the refusal, acme's retry after {:?}",
        other_sent.duration_since(throttled_at),
        retried.duration_since(throttled_at)
    );
    let order: Vec<&str> = acme
        .iter()
        .filter_map(|c| c.text())
        .filter(|x| ["first", "second", "third"].contains(x))
        .collect();
    assert_eq!(
        order,
        vec!["first", "second", "second", "third"],
        "order kept; the throttled one retried first"
    );
}

async fn forbidden_is_dead_lettered_and_can_be_retried(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    t.fake
        .fail_always("sendmessage", Some(t.group), Failure::Forbidden);
    t.app.send(&v, "x", "kicked?").await;
    let app = &t.app;
    let key = t.tenant.key.clone();
    eventually(10, "dead letter", || {
        let key = key.clone();
        async move {
            let (_, list) = app
                .json(
                    Method::GET,
                    "/v1/admin/outbox?status=dead",
                    Some(&key),
                    None,
                )
                .await;
            list["items"].as_array().is_some_and(|i| i.len() == 1)
        }
    })
    .await;
    let (_, list) = app
        .json(
            Method::GET,
            "/v1/admin/outbox?status=dead",
            Some(&key),
            None,
        )
        .await;
    let item = &list["items"][0];
    assert!(
        item["last_error"].as_str().unwrap_or("").contains("kicked"),
        "{item}"
    );
    assert_eq!(item["attempts"], 1, "403 dead-letters at once");
    assert_eq!(
        item["payload"]["message_id"]
            .as_str()
            .map(|s| s.starts_with("msg_")),
        Some(true)
    );
    t.fake.clear_failures();
    let id = item["id"].as_str().expect("id");
    let (status, retried) = app
        .json(
            Method::POST,
            &format!("/v1/admin/outbox/{id}/retry"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    eventually(10, "delivered after retry", || async {
        t.fake
            .calls_of("sendmessage")
            .iter()
            .any(|c| c.text() == Some("kicked?") && c.thread_id().is_some())
            && t.fake
                .sent_messages(t.group)
                .iter()
                .any(|m| m.text == "kicked?")
    })
    .await;
}

async fn server_error_is_retried_then_delivered(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    t.app.send(&v, "x", "warm-up").await;
    t.fake
        .wait_for_calls("sendmessage", 2, Duration::from_secs(10))
        .await;
    t.fake
        .fail_next("sendmessage", Some(t.group), Failure::ServerError);
    t.app.send(&v, "y", "after a 500").await;
    // teloxide itself waits 10 s after a 5xx before reporting it.
    eventually(30, "delivered after the 500", || async {
        t.fake
            .sent_messages(t.group)
            .iter()
            .any(|m| m.text == "after a 500")
    })
    .await;
    let attempts = t
        .fake
        .calls_of("sendmessage")
        .iter()
        .filter(|c| c.text() == Some("after a 500"))
        .count();
    assert_eq!(attempts, 2);
}

async fn deleted_topic_is_recreated(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    t.app.send(&v, "1", "one").await;
    let sent = t
        .fake
        .wait_for_calls("sendmessage", 2, Duration::from_secs(10))
        .await;
    let old = sent[1].thread_id().expect("thread");
    t.fake.delete_thread(t.group, old);
    t.app.send(&v, "2", "two").await;
    eventually(10, "delivered into a new topic", || async {
        t.fake
            .sent_messages(t.group)
            .iter()
            .any(|m| m.text == "two" && m.thread_id.is_some_and(|th| th != old))
    })
    .await;
    assert_eq!(t.fake.calls_of("createforumtopic").len(), 2);
}

async fn closing_the_conversation_closes_the_topic(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    t.app.send(&v, "1", "bye soon").await;
    let sent = t
        .fake
        .wait_for_calls("sendmessage", 2, Duration::from_secs(10))
        .await;
    let thread = sent[1].thread_id().expect("thread");
    let (status, _) = t
        .app
        .json(
            Method::POST,
            &format!("/v1/admin/conversations/{}/close", v.conversation_id),
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let closes = t
        .fake
        .wait_for_calls("closeforumtopic", 1, Duration::from_secs(10))
        .await;
    assert_eq!(closes[0].thread_id(), Some(thread));
    eventually(5, "topic closed", || async {
        t.fake.topic(t.group, thread).is_some_and(|tp| tp.closed)
    })
    .await;
}

async fn sealed_token_moved_to_another_tenant_is_refused(b: Backend) {
    let t: TelegramFixture = spawn_with_telegram(b, |_| {}).await;
    let other = t.app.tenant("other").await;
    let token2 = fake_bot_and_group(&t.fake, 222, -100222);
    connect_telegram(&t.app, &other, &token2, -100222).await;
    // Copy acme's sealed token into other's row.
    let mut pc = t.app.state.db.conn().await.expect("conn");
    let mut conn = pc.as_conn();
    let acme = chatorical::db::repo::telegram::get(&mut conn, &t.tenant.id)
        .await
        .expect("q")
        .expect("acme");
    let mut victim = chatorical::db::repo::telegram::get(&mut conn, &other.id)
        .await
        .expect("q")
        .expect("other");
    victim.bot_token_enc = acme.bot_token_enc.clone();
    chatorical::db::repo::telegram::upsert(&mut conn, &victim)
        .await
        .expect("upsert");
    drop(pc);
    let w = t.app.visitor(&other).await;
    t.app
        .send(&w, "x", "should not go out with acme's bot")
        .await;
    let app = &t.app;
    eventually(10, "dead letter", || async {
        let (_, list) = app
            .json(
                Method::GET,
                "/v1/admin/outbox?status=dead",
                Some(&other.key),
                None,
            )
            .await;
        list["items"].as_array().is_some_and(|i| i.len() == 1)
    })
    .await;
    assert!(
        t.fake
            .calls()
            .iter()
            .all(|c| c.token != t.token || c.text() != Some("should not go out with acme's bot"))
    );
    let (_, shown) = app
        .json(Method::GET, "/v1/admin/telegram", Some(&other.key), None)
        .await;
    assert_eq!(shown["bot_token"], "(cannot decrypt)");
}

async fn validate_passes_for_a_connected_tenant_and_names_failures(b: Backend) {
    use chatorical::telegram::validate::validate;
    let t = spawn_with_telegram(b, |_| {}).await;
    let state = &t.app.state;
    let tenant = chatorical::tenancy::tenant_by_slug(&state.db, "acme")
        .await
        .expect("tenant");
    let checks = validate(
        &state.db,
        &state.bots,
        &tenant,
        &t.app.base,
        Duration::from_secs(10),
    )
    .await;
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
    let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
    for expected in [
        "widget isolation",
        "bot reachable",
        "forum group",
        "bot is group admin",
        "webhook registered",
        "webhook secret",
        "round trip",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        t.fake
            .sent_messages(t.group)
            .iter()
            .any(|m| m.text.contains("chatorical check")),
        "test message delivered"
    );

    // Break things: the bot loses its rights, the webhook points elsewhere, another tenant shares the origin.
    t.fake.set_member(t.bot_id, t.group, "member", false);
    let (status, _) = t
        .app
        .json(
            Method::POST,
            "/v1/admin/tenants",
            Some(&t.app.platform_key),
            Some(json!({"slug": "copycat", "name": "c", "allowed_origins": [t.tenant.origin]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let checks = validate(
        &state.db,
        &state.bots,
        &tenant,
        "http://127.0.0.1:9",
        Duration::from_secs(2),
    )
    .await;
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.check.as_str())
        .collect();
    for expected in [
        "widget isolation",
        "bot is group admin",
        "webhook registered",
        "webhook secret",
    ] {
        assert!(
            failed.contains(&expected),
            "{expected} should fail: {checks:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_telegram_holds_delivery_until_resumed() {
    let t = spawn_with_telegram(Backend::Sqlite, |_| {}).await;
    let (status, s) = t
        .app
        .json(
            Method::PATCH,
            "/v1/admin/telegram",
            Some(&t.tenant.key),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (status, s["enabled"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{s}"
    );
    let v = t.app.visitor(&t.tenant).await;
    t.app.send(&v, "p1", "while paused").await;
    // The worker has looked at the item and put it back for later: from here on only
    // resuming (or 60 s) makes it due again.
    let app = &t.app;
    let key = t.tenant.key.clone();
    eventually(10, "the worker saw the pause", || {
        let key = key.clone();
        async move {
            let (_, list) = app
                .json(
                    Method::GET,
                    "/v1/admin/outbox?status=queued",
                    Some(&key),
                    None,
                )
                .await;
            list["items"][0]["last_error"] == "Telegram is paused"
        }
    })
    .await;
    assert!(
        t.fake.calls_of("sendmessage").is_empty(),
        "nothing sent while paused"
    );
    let (status, _) = t
        .app
        .json(
            Method::PATCH,
            "/v1/admin/telegram",
            Some(&t.tenant.key),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Resuming makes the waiting item due at once.
    eventually(10, "delivered after resuming", || async {
        t.fake
            .sent_messages(t.group)
            .iter()
            .any(|m| m.text == "while paused")
    })
    .await;
}
