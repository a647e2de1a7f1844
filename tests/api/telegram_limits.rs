//! Telegram's limits and errors end to end, against a fake Bot API that enforces
//! them: the worker's production budgets (in scaled time) never make it answer 429;
//! a group that became a supergroup is followed; a webhook URL Telegram would refuse
//! is refused before Telegram is called; 400 dead-letters at once while a timeout is
//! retried with backoff, both visible in the outbox.

use std::time::{Duration, Instant};

use chatorical::db::repo;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::coalescing::entries;
use crate::fake_telegram::{
    COUNTED_METHODS, Call, Failure, FakeTelegram, Limits, topic_text_update,
};
use crate::helpers::{
    Backend, TelegramFixture, code, connect_telegram, eventually, fake_bot_and_group,
    spawn_app_with, spawn_with_telegram,
};
use crate::on_both_backends;

on_both_backends!(
    production_budgets_never_make_telegram_answer_429,
    a_tight_bot_budget_paces_every_call,
    a_migrated_group_is_followed_and_the_messages_go_there,
    a_webhook_url_telegram_would_refuse_is_refused_before_calling_it,
    a_400_dead_letters_at_once,
    a_timeout_is_retried_with_backoff_then_dead_lettered_after_max_attempts,
);

/// Budget windows (1 s, 1 s, 60 s) run this many times faster in these tests.
const SCALE: u32 = 10;

/// The calls into `chat` that Telegram's limits count, in arrival order.
fn counted_into(fake: &FakeTelegram, chat: i64) -> Vec<Call> {
    let mut calls: Vec<Call> = fake
        .calls()
        .into_iter()
        .filter(|c| COUNTED_METHODS.contains(&c.method.as_str()) && c.chat_id() == Some(chat))
        .collect();
    calls.sort_by_key(|c| c.at);
    calls
}

/// The tenant's outbox items with `status`, as the tenant sees them.
async fn outbox(t: &TelegramFixture, status: &str) -> Vec<Value> {
    let (code, list) = t
        .app
        .json(
            Method::GET,
            &format!("/v1/admin/outbox?status={status}"),
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{list}");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Waits until every message of `texts` was sent into `chat` (exactly once each).
async fn wait_sent(fake: &FakeTelegram, chat: i64, texts: &[String], secs: u64) {
    eventually(secs, "every message sent", || async {
        let sent = fake.sent_messages(chat);
        texts.iter().all(|t| sent.iter().any(|m| m.text == *t))
    })
    .await;
}

async fn production_budgets_never_make_telegram_answer_429(b: Backend) {
    // The budgets as shipped (30/s per bot, 1/s per chat, 20/min per group), in windows
    // ten times shorter, against a fake enforcing Telegram's limits in the same time.
    let t = spawn_with_telegram(b, |s| {
        crate::helpers::shipped_budgets(s, SCALE);
    })
    .await;
    let limits = Limits::telegram().scaled(SCALE);
    t.fake.set_limits(Some(limits));

    // Eight new conversations (each opens a topic and posts its card) and four
    // messages each: 8 × 2 = 16 calls before the first message, and at least one
    // message call per conversation — more than a window takes. (The lane then has a
    // backlog, so messages of a conversation may share one call: see
    // tests/api/coalescing.rs.)
    let mut visitors = Vec::new();
    for _ in 0..8 {
        visitors.push(t.app.visitor(&t.tenant).await);
    }
    let mut texts = Vec::new();
    for i in 0..4 {
        for (n, v) in visitors.iter().enumerate() {
            let text = format!("v{n} message {i}");
            let (status, body) = t.app.send(v, &format!("m{i}"), &text).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            texts.push(text);
        }
    }
    eventually(60, "every message sent", || async {
        let sent: Vec<String> = t
            .fake
            .sent_messages(t.group)
            .iter()
            .flat_map(|m| entries(&m.text))
            .collect();
        texts.iter().all(|x| sent.contains(x))
    })
    .await;

    assert_eq!(
        t.fake.throttled().len(),
        0,
        "the fake never had to answer 429: {:#?}",
        t.fake.throttled()
    );
    // Everything arrived once, in order per conversation, each into its own topic.
    let sent = t.fake.sent_messages(t.group);
    assert_eq!(t.fake.calls_of("createforumtopic").len(), 8);
    for n in 0..8 {
        let mine: Vec<(String, Option<i32>)> = sent
            .iter()
            .flat_map(|m| entries(&m.text).into_iter().map(|e| (e, m.thread_id)))
            .filter(|(e, _)| e.starts_with(&format!("v{n} ")))
            .collect();
        let order: Vec<&str> = mine.iter().map(|(e, _)| e.as_str()).collect();
        let expected: Vec<String> = (0..4).map(|i| format!("v{n} message {i}")).collect();
        assert_eq!(order, expected, "conversation {n} in order, once each");
        assert!(mine.iter().all(|(_, thread)| *thread == mine[0].1));
    }
    eventually(10, "all 32 items recorded as delivered", || async {
        outbox(&t, "delivered").await.len() == 32
    })
    .await;
    let delivered = outbox(&t, "delivered").await;
    assert!(
        delivered.iter().all(|i| i["attempts"].as_i64() <= Some(1)),
        "no attempt was refused (a coalesced message's followers have none): {delivered:#?}"
    );

    // Pacing, from the fake's clock: one call per chat window; never more than 20 in a
    // group window. And the group budget really held the last ten back.
    let calls = counted_into(&t.fake, t.group);
    let messages = sent.len() - 8;
    assert_eq!(
        calls.len(),
        16 + messages,
        "8 topics + 8 cards + the messages"
    );
    assert!(calls.len() > 20, "{} calls", calls.len());
    let chat_gap = limits.per_chat.every - limits.slack;
    for pair in calls.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= chat_gap, "two calls {gap:?} apart");
    }
    let group_span = limits.per_group.every - limits.slack;
    for (i, later) in calls.iter().enumerate().skip(20) {
        let span = later.at.duration_since(calls[i - 20].at);
        assert!(span >= group_span, "21 calls within {span:?}");
    }
    let total = calls[calls.len() - 1].at.duration_since(calls[0].at);
    assert!(
        total >= limits.per_group.every - limits.slack,
        "{} calls took {total:?}: the group budget bound",
        calls.len()
    );
}

async fn a_tight_bot_budget_paces_every_call(b: Backend) {
    // The per-bot budget binds when it is the tightest: 5 calls a second.
    let t = spawn_with_telegram(b, |s| {
        s.worker.per_bot_per_sec = 5;
    })
    .await;
    let mut limits = Limits::telegram();
    limits.per_bot.max = 5;
    limits.per_chat.max = 10_000;
    limits.per_group.max = 10_000;
    t.fake.set_limits(Some(limits));

    let v = t.app.visitor(&t.tenant).await;
    let mut texts = Vec::new();
    for i in 0..10 {
        let text = format!("paced {i}");
        t.app.send(&v, &format!("p{i}"), &text).await;
        texts.push(text);
    }
    wait_sent(&t.fake, t.group, &texts, 30).await;
    assert_eq!(
        t.fake.throttled().len(),
        0,
        "no 429: {:#?}",
        t.fake.throttled()
    );
    // A topic, its card and ten messages: at most 5 in any second.
    let calls = counted_into(&t.fake, t.group);
    assert_eq!(calls.len(), 12);
    for (i, later) in calls.iter().enumerate().skip(5) {
        let span = later.at.duration_since(calls[i - 5].at);
        assert!(
            span >= limits.per_bot.every - limits.slack,
            "6 calls within {span:?}"
        );
    }
}

async fn a_migrated_group_is_followed_and_the_messages_go_there(b: Backend) {
    const SUPERGROUP: i64 = -100_999;
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    t.app.send(&v, "m0", "before").await;
    wait_sent(&t.fake, t.group, &["before".into()], 10).await;
    let old_topic = t.fake.calls_of("createforumtopic").len();
    assert_eq!(old_topic, 1);

    // The group becomes a supergroup (e.g. its admins turned on Topics).
    t.fake.migrate_group(t.group, SUPERGROUP, true);
    t.app.send(&v, "m1", "after one").await;
    t.app.send(&v, "m2", "after two").await;
    wait_sent(
        &t.fake,
        SUPERGROUP,
        &["after one".into(), "after two".into()],
        20,
    )
    .await;

    // The connection follows it; the conversation gets a topic in the new chat.
    let (status, shown) = t
        .app
        .json(Method::GET, "/v1/admin/telegram", Some(&t.tenant.key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["group_chat_id"], SUPERGROUP);
    let topics: Vec<Call> = t
        .fake
        .calls_of("createforumtopic")
        .into_iter()
        .filter(|c| c.chat_id() == Some(SUPERGROUP))
        .collect();
    assert_eq!(topics.len(), 1, "one new topic");
    let sent = t.fake.sent_messages(SUPERGROUP);
    let texts: Vec<&str> = sent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts.len(), 3, "card and both messages: {texts:?}");
    assert!(texts[0].contains(&v.conversation_id), "the card first");
    assert_eq!(&texts[1..], ["after one", "after two"]);
    let thread = sent[1].thread_id.expect("into a topic");
    assert!(sent.iter().all(|m| m.thread_id == Some(thread)));
    assert_eq!(
        t.fake.sent_messages(t.group).len(),
        2,
        "nothing more into the old chat"
    );
    // Followed within the attempt that met the answer: no retry, nothing dead.
    eventually(10, "all 3 items recorded as delivered", || async {
        outbox(&t, "delivered").await.len() == 3
    })
    .await;
    let delivered = outbox(&t, "delivered").await;
    assert!(
        delivered.iter().all(|i| i["attempts"] == 1),
        "{delivered:#?}"
    );
    assert!(outbox(&t, "dead").await.is_empty());
    let mut pc = t.app.state.db.conn().await.expect("conn");
    let conv = repo::conversations::get(&mut pc.as_conn(), &t.tenant.id, &v.conversation_id)
        .await
        .expect("read")
        .expect("conversation");
    assert_eq!(conv.telegram_topic_id, Some(i64::from(thread)));
    drop(pc);

    // Agents answer from the supergroup: accepted as the tenant's group.
    let update = topic_text_update(77, SUPERGROUP, thread, 500, 555, "Ana", "Seen it.");
    let status = t
        .fake
        .deliver_update(&t.token, &update)
        .await
        .expect("delivered");
    assert_eq!(status, StatusCode::OK);
    let (status, history) = t
        .app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let last = history["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["text"], "Seen it.", "{history}");
    assert_eq!(last["direction"], "outbound");
}

async fn a_webhook_url_telegram_would_refuse_is_refused_before_calling_it(b: Backend) {
    // Production defaults: a plain-http public URL (derived from `listen`) is refused
    // with a clear error before any Bot API call, and nothing is stored.
    let fake = FakeTelegram::start().await;
    let api = fake.api_url();
    let app = spawn_app_with(b, |s| {
        s.telegram.api_url = api.clone();
        s.telegram.allow_http_webhook = false;
    })
    .await;
    let tenant = app.tenant("acme").await;
    let token = fake_bot_and_group(&fake, 111, -100111);
    let (status, body) = app
        .json(
            Method::PUT,
            "/v1/admin/telegram",
            Some(&tenant.key),
            Some(json!({"bot_token": token, "group_chat_id": -100111})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "webhook_url_rejected"),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["setting"], "server.public_url");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("https://"), "{message}");
    assert!(!body.to_string().contains(&token), "no token in the error");
    assert_eq!(fake.calls().len(), 0, "Telegram was not called");
    let (status, _) = app
        .json(Method::GET, "/v1/admin/telegram", Some(&tenant.key), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing stored");
    drop(app);

    // With the override but Telegram's cloud rules, Telegram's own 400 is shown.
    let app = spawn_app_with(b, |s| {
        s.telegram.api_url = api.clone();
        s.telegram.allow_http_webhook = true;
    })
    .await;
    let tenant = app.tenant("acme").await;
    let (status, body) = app
        .json(
            Method::PUT,
            "/v1/admin/telegram",
            Some(&tenant.key),
            Some(json!({"bot_token": token, "group_chat_id": -100111})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("HTTPS url must be provided for webhook"),
        "{body}"
    );
    assert!(fake.webhook(&token).is_none());
    let (status, _) = app
        .json(Method::GET, "/v1/admin/telegram", Some(&tenant.key), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing stored");
    drop(app);

    // An https public URL on a port Telegram serves is registered as it is.
    let app = spawn_app_with(b, |s| {
        s.telegram.api_url = api.clone();
        s.telegram.allow_http_webhook = false;
        s.server.public_url = Some("https://chat.example.com:8443".into());
    })
    .await;
    let tenant = app.tenant("acme").await;
    connect_telegram(&app, &tenant, &token, -100111).await;
    assert_eq!(
        fake.webhook(&token).expect("registered").url,
        "https://chat.example.com:8443/v1/telegram/webhook/acme"
    );
}

async fn a_400_dead_letters_at_once(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    t.app.send(&v, "w", "warm-up").await;
    wait_sent(&t.fake, t.group, &["warm-up".into()], 10).await;

    // A 400 teloxide has a name for, and one it does not ("Unknown error").
    t.fake.set_member(t.bot_id, t.group, "restricted", false);
    t.app.send(&v, "r", "muted").await;
    eventually(10, "the first dead letter", || async {
        outbox(&t, "dead").await.len() == 1
    })
    .await;
    t.fake.set_member(t.bot_id, t.group, "administrator", true);
    t.fake.fail_next(
        "sendmessage",
        Some(t.group),
        Failure::Status(400, "Bad Request: TOPIC_CLOSED".into()),
    );
    t.app.send(&v, "c", "closed topic").await;
    eventually(10, "the second dead letter", || async {
        outbox(&t, "dead").await.len() == 2
    })
    .await;

    let dead = outbox(&t, "dead").await;
    let errors: Vec<&str> = dead
        .iter()
        .map(|i| i["last_error"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        errors,
        [
            "Bad Request: TOPIC_CLOSED",
            "Bad Request: not enough rights to send text messages to the chat",
        ],
        "newest first, Telegram's words"
    );
    assert!(dead.iter().all(|i| i["attempts"] == 1), "{dead:#?}");
    for text in ["muted", "closed topic"] {
        let tries = t
            .fake
            .calls_of("sendmessage")
            .iter()
            .filter(|c| c.text() == Some(text))
            .count();
        assert_eq!(tries, 1, "{text}: never retried");
    }
    // The lane goes on: the next message is delivered.
    t.app.send(&v, "n", "next").await;
    wait_sent(&t.fake, t.group, &["next".into()], 10).await;
}

async fn a_timeout_is_retried_with_backoff_then_dead_lettered_after_max_attempts(b: Backend) {
    const BACKOFF_BASE_MS: i64 = 2000;
    let t = spawn_with_telegram(b, |s| {
        s.telegram.request_timeout_secs = 1;
        s.worker.backoff_base_ms = 2000;
        s.worker.backoff_max_secs = 4;
        s.worker.max_attempts = 2;
    })
    .await;
    let v = t.app.visitor(&t.tenant).await;
    t.app.send(&v, "w", "warm-up").await;
    wait_sent(&t.fake, t.group, &["warm-up".into()], 10).await;

    // Telegram takes 1.5 s to answer once: the request times out after 1 s.
    t.fake.fail_next_text(
        "sendmessage",
        "slow",
        Failure::Delay(Duration::from_millis(1500)),
    );
    t.app.send(&v, "s", "slow").await;
    eventually(10, "the timeout recorded", || async {
        outbox(&t, "queued")
            .await
            .iter()
            .any(|i| i["last_error"] == "request timed out")
    })
    .await;
    // Visible while it waits: queued, one attempt, next attempt after the backoff
    // (attempt 1: between half the base and the base).
    let queued = outbox(&t, "queued").await;
    assert_eq!(queued.len(), 1, "{queued:#?}");
    assert_eq!(queued[0]["attempts"], 1);
    let id = queued[0]["id"].as_str().expect("id").to_string();
    let mut pc = t.app.state.db.conn().await.expect("conn");
    let row = repo::outbox::get(&mut pc.as_conn(), &t.tenant.id, &id)
        .await
        .expect("read")
        .expect("row");
    drop(pc);
    let backoff = row.next_attempt_at - row.updated_at;
    assert!(
        (BACKOFF_BASE_MS / 2..=BACKOFF_BASE_MS).contains(&backoff),
        "backoff {backoff} ms"
    );
    eventually(15, "delivered on the second attempt", || async {
        outbox(&t, "delivered")
            .await
            .iter()
            .any(|i| i["id"] == id.as_str() && i["attempts"] == 2)
    })
    .await;
    let tries: Vec<Instant> = t
        .fake
        .calls_of("sendmessage")
        .iter()
        .filter(|c| c.text() == Some("slow"))
        .map(|c| c.at)
        .collect();
    assert_eq!(tries.len(), 2);
    let gap = tries[1].duration_since(tries[0]);
    assert!(
        gap >= Duration::from_millis(1000 + 1000),
        "the timeout (1 s) and the backoff (>= 1 s) passed: {gap:?}"
    );
    // The timed-out call took effect late: delivery is at least once.
    eventually(10, "the late copy", || async {
        t.fake
            .sent_messages(t.group)
            .iter()
            .filter(|m| m.text == "slow")
            .count()
            == 2
    })
    .await;

    // Always slow: dead after max_attempts (2), saying why.
    t.fake.fail_always(
        "sendmessage",
        Some(t.group),
        Failure::Delay(Duration::from_millis(1500)),
    );
    t.app.send(&v, "x", "never").await;
    eventually(20, "dead after two timeouts", || async {
        outbox(&t, "dead").await.len() == 1
    })
    .await;
    let dead = outbox(&t, "dead").await;
    assert_eq!(dead[0]["attempts"], 2);
    assert_eq!(
        dead[0]["last_error"],
        "gave up after 2 attempts: request timed out"
    );
    assert_eq!(
        t.fake
            .calls_of("sendmessage")
            .iter()
            .filter(|c| c.text() == Some("never"))
            .count(),
        2
    );
}
