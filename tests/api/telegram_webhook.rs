//! `POST /v1/telegram/webhook/{slug}`: authentication, dedup, malformed and ignored
//! updates, edits, closed conversations, database outages, rate limits and a
//! disabled connection.

use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::fake_telegram::{
    SECRET_TOKEN_HEADER, bot_own_update, edited_topic_text_update, general_text_update,
    private_update, service_update, topic_text_update,
};
use crate::helpers::{
    Backend, TelegramFixture, VisitorFixture, code, connect_telegram, fake_bot_and_group, next_of,
    spawn_with_telegram,
};
use crate::on_both_backends;

on_both_backends!(
    nul_in_an_agent_reply_is_dropped_not_a_5xx,
    bad_or_missing_secret_and_unknown_tenant_are_401_and_store_nothing,
    concurrent_duplicates_store_once_and_dedup_is_by_id,
    malformed_bodies_are_invalid_json_and_store_nothing,
    updates_that_are_not_agent_answers_are_acknowledged_and_ignored,
    edited_agent_message_updates_the_text_and_reaches_the_socket,
    agent_message_in_a_closed_conversation_is_acknowledged_not_stored,
    webhook_calls_are_rate_limited_per_tenant,
    disabled_connection_acknowledges_and_ignores_updates,
);

/// A human agent's Telegram user id in these tests.
const AGENT: u64 = 555;

/// The webhook counters, as plain numbers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    ok: u64,
    unauthorized: u64,
    duplicate: u64,
    ignored: u64,
    parse_error: u64,
    rate_limited: u64,
}

impl Counts {
    fn of(t: &TelegramFixture) -> Self {
        let w = &t.app.state.webhook;
        Counts {
            ok: w.ok.load(Relaxed),
            unauthorized: w.unauthorized.load(Relaxed),
            duplicate: w.duplicate.load(Relaxed),
            ignored: w.ignored.load(Relaxed),
            parse_error: w.parse_error.load(Relaxed),
            rate_limited: w.rate_limited.load(Relaxed),
        }
    }

    /// What changed since `before`.
    fn since(self, before: Counts) -> Counts {
        Counts {
            ok: self.ok - before.ok,
            unauthorized: self.unauthorized - before.unauthorized,
            duplicate: self.duplicate - before.duplicate,
            ignored: self.ignored - before.ignored,
            parse_error: self.parse_error - before.parse_error,
            rate_limited: self.rate_limited - before.rate_limited,
        }
    }
}

/// The secret Telegram sends for the bot with `token`.
fn secret_of(t: &TelegramFixture, token: &str) -> String {
    t.fake
        .webhook(token)
        .expect("webhook registered")
        .secret_token
        .expect("secret token")
}

/// POST a raw body to the webhook of `slug`, with the secret header when given.
async fn post_raw(
    t: &TelegramFixture,
    slug: &str,
    secret: Option<&str>,
    body: Vec<u8>,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let mut req = t
        .app
        .http
        .post(format!("{}/v1/telegram/webhook/{slug}", t.app.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(s) = secret {
        req = req.header(SECRET_TOKEN_HEADER, s);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

/// POST an update to the webhook of `slug`.
async fn post(
    t: &TelegramFixture,
    slug: &str,
    secret: Option<&str>,
    update: &Value,
) -> (StatusCode, Value) {
    post_raw(t, slug, secret, serde_json::to_vec(update).expect("json"))
        .await
        .expect("request sent")
}

/// POST an update to acme's webhook with acme's real secret.
async fn deliver(t: &TelegramFixture, update: &Value) -> (StatusCode, Value) {
    let secret = secret_of(t, &t.token);
    post(t, &t.tenant.slug, Some(&secret), update).await
}

/// A visitor whose conversation has a topic; returns the topic's thread id.
async fn open_topic(t: &TelegramFixture) -> (VisitorFixture, i32) {
    let v = t.app.visitor(&t.tenant).await;
    let (status, body) = t.app.send(&v, "m1", "hi").await;
    assert!(status.is_success(), "{status} {body}");
    let sent = t
        .fake
        .wait_for_calls("sendmessage", 2, Duration::from_secs(10))
        .await;
    assert_eq!(sent[1].text(), Some("hi"));
    let thread = sent[1].thread_id().expect("sent into a topic");
    (v, thread)
}

/// The conversation's messages, through the admin API.
async fn history(t: &TelegramFixture, conversation_id: &str) -> Vec<Value> {
    let (status, h) = t
        .app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{conversation_id}/messages"),
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{h}");
    h["messages"].as_array().expect("messages").clone()
}

/// The outbound (agent) messages of a conversation.
async fn outbound(t: &TelegramFixture, conversation_id: &str) -> Vec<Value> {
    history(t, conversation_id)
        .await
        .into_iter()
        .filter(|m| m["direction"] == "outbound")
        .collect()
}

async fn bad_or_missing_secret_and_unknown_tenant_are_401_and_store_nothing(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let other = t.app.tenant("other").await;
    let token2 = fake_bot_and_group(&t.fake, 222, -100222);
    connect_telegram(&t.app, &other, &token2, -100222).await;
    // A tenant that exists but never connected Telegram.
    t.app.tenant("plain").await;
    let (v, thread) = open_topic(&t).await;
    let secret = secret_of(&t, &t.token);
    let other_secret = secret_of(&t, &token2);
    assert_ne!(secret, other_secret);
    let before_history = history(&t, &v.conversation_id).await;
    assert_eq!(before_history.len(), 1);
    let before = Counts::of(&t);

    let update = topic_text_update(100, t.group, thread, 9001, AGENT, "Ana", "let me in");
    let longer = format!("{secret}x");
    let shorter = &secret[..secret.len() - 1];
    let attempts: Vec<(&str, &str, Option<&str>)> = vec![
        ("missing header", "acme", None),
        ("empty secret", "acme", Some("")),
        ("wrong secret", "acme", Some("not-the-secret")),
        ("secret plus a char", "acme", Some(&longer)),
        ("secret minus a char", "acme", Some(shorter)),
        ("other tenant's secret", "acme", Some(&other_secret)),
        ("unknown tenant", "nobody", Some(&secret)),
        ("tenant without telegram", "plain", Some(&secret)),
    ];
    let mut messages = Vec::new();
    for (what, slug, s) in &attempts {
        let (status, body) = post(&t, slug, *s, &update).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(code(&body), "unauthorized", "{what}: {body}");
        assert!(body["error"]["message"].is_string(), "{what}: {body}");
        messages.push(body["error"]["message"].clone());
    }
    assert!(
        messages.windows(2).all(|w| w[0] == w[1]),
        "an unknown tenant and a wrong secret look the same: {messages:?}"
    );
    assert_eq!(
        Counts::of(&t).since(before),
        Counts {
            unauthorized: attempts.len() as u64,
            ..Counts::default()
        }
    );
    assert_eq!(
        history(&t, &v.conversation_id).await,
        before_history,
        "nothing stored"
    );

    // The refused update id was not recorded: with the right secret it is stored.
    let (status, body) = deliver(&t, &update).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("stored")),
        "{body}"
    );
    let out = outbound(&t, &v.conversation_id).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["text"], "let me in");
    assert_eq!(out[0]["author"], "Ana");
}

/// A NUL in an agent's text or name was a 503 on PostgreSQL (it cannot store NUL), which
/// Telegram would retry forever; it is dropped and the reply stored.
async fn nul_in_an_agent_reply_is_dropped_not_a_5xx(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let (v, thread) = open_topic(&t).await;
    let update = topic_text_update(1001, t.group, thread, 9001, AGENT, "A\u{0}na", "he\u{0}llo");
    let (status, body) = deliver(&t, &update).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "stored", "{body}");
    let out = outbound(&t, &v.conversation_id).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["text"], "hello");
    assert_eq!(out[0]["author"], "Ana");
}

async fn concurrent_duplicates_store_once_and_dedup_is_by_id(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let (v, thread) = open_topic(&t).await;
    let before = Counts::of(&t);
    let update = topic_text_update(1000, t.group, thread, 9001, AGENT, "Ana", "only once");
    let results = futures_util::future::join_all((0..5).map(|_| deliver(&t, &update))).await;
    let mut outcomes: Vec<&str> = Vec::new();
    for (status, body) in &results {
        assert!(status.is_success(), "{status} {body}");
        outcomes.push(body["outcome"].as_str().unwrap_or("<none>"));
    }
    outcomes.sort_unstable();
    assert_eq!(
        outcomes,
        vec!["duplicate", "duplicate", "duplicate", "duplicate", "stored"]
    );
    let out = outbound(&t, &v.conversation_id).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["text"], "only once");
    assert_eq!(
        Counts::of(&t).since(before),
        Counts {
            ok: 1,
            duplicate: 4,
            ..Counts::default()
        }
    );

    // A lower update id never seen before is new, not "old".
    let older = topic_text_update(5, t.group, thread, 9002, AGENT, "Ana", "lower id");
    let (status, body) = deliver(&t, &older).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("stored")),
        "{body}"
    );
    let texts: Vec<Value> = outbound(&t, &v.conversation_id)
        .await
        .into_iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, vec!["only once", "lower id"]);
    assert_eq!(
        Counts::of(&t).since(before),
        Counts {
            ok: 2,
            duplicate: 4,
            ..Counts::default()
        }
    );
}

async fn malformed_bodies_are_invalid_json_and_store_nothing(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let (v, thread) = open_topic(&t).await;
    let secret = secret_of(&t, &t.token);
    let before_history = history(&t, &v.conversation_id).await;
    let before = Counts::of(&t);

    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"this is not json".to_vec()),
        ("empty", Vec::new()),
        ("truncated", br#"{"update_id": 1, "message": {"#.to_vec()),
        ("an array", b"[1, 2, 3]".to_vec()),
        (
            "an object that is no update",
            br#"{"hello": "world"}"#.to_vec(),
        ),
    ];
    for (what, body) in &bodies {
        let (status, resp) = post_raw(&t, "acme", Some(&secret), body.clone())
            .await
            .expect("sent");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {resp}");
        assert_eq!(code(&resp), "invalid_json", "{what}: {resp}");
    }
    assert_eq!(
        Counts::of(&t).since(before),
        Counts {
            parse_error: bodies.len() as u64,
            ..Counts::default()
        }
    );

    // Without the secret, garbage is refused before it is parsed.
    let (status, resp) = post_raw(&t, "acme", None, b"garbage".to_vec())
        .await
        .expect("sent");
    assert_eq!(
        (status, code(&resp)),
        (StatusCode::UNAUTHORIZED, "unauthorized"),
        "{resp}"
    );
    assert_eq!(
        Counts::of(&t).since(before),
        Counts {
            parse_error: bodies.len() as u64,
            unauthorized: 1,
            ..Counts::default()
        }
    );
    assert_eq!(history(&t, &v.conversation_id).await, before_history);

    // The webhook itself works: a well-formed update is stored.
    let good = topic_text_update(7, t.group, thread, 9001, AGENT, "Ana", "well formed");
    let (status, body) = deliver(&t, &good).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("stored")),
        "{body}"
    );
    assert_eq!(outbound(&t, &v.conversation_id).await.len(), 1);
}

async fn updates_that_are_not_agent_answers_are_acknowledged_and_ignored(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let (v, thread) = open_topic(&t).await;
    let before_history = history(&t, &v.conversation_id).await;
    let before = Counts::of(&t);
    let bot = t.bot_id;
    let g = t.group;
    let updates = vec![
        (
            "the bot's own message",
            bot_own_update(1, g, thread, 8001, bot, "bot111", "echo"),
        ),
        (
            "another bot in the topic",
            bot_own_update(2, g, thread, 8002, 999, "otherbot", "spam"),
        ),
        (
            "forum_topic_created",
            service_update(3, g, thread, "Topic", bot, "bot111"),
        ),
        (
            "private chat",
            private_update(4, AGENT, "Ana", 8003, "hello bot"),
        ),
        (
            "General topic",
            general_text_update(5, g, 8004, AGENT, "Ana", "in general"),
        ),
        (
            "same thread, another chat",
            topic_text_update(6, -100999, thread, 8005, AGENT, "Ana", "other chat"),
        ),
        (
            "topic of no conversation",
            topic_text_update(7, g, thread + 4242, 8006, AGENT, "Ana", "orphan"),
        ),
        (
            "blank text",
            topic_text_update(8, g, thread, 8007, AGENT, "Ana", "   "),
        ),
        (
            "edit of an unknown message",
            edited_topic_text_update(9, g, thread, 8008, AGENT, "Ana", "edited ghost"),
        ),
    ];
    for (what, update) in &updates {
        let (status, body) = deliver(&t, update).await;
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
        assert_eq!(body["outcome"], "ignored", "{what}: {body}");
    }
    assert_eq!(
        Counts::of(&t).since(before),
        Counts {
            ignored: updates.len() as u64,
            ..Counts::default()
        }
    );
    assert_eq!(
        history(&t, &v.conversation_id).await,
        before_history,
        "nothing stored"
    );

    // The same topic does take a human's answer.
    let answer = topic_text_update(10, g, thread, 8009, AGENT, "Ana", "a real answer");
    let (status, body) = deliver(&t, &answer).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("stored")),
        "{body}"
    );
    let out = outbound(&t, &v.conversation_id).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["text"], "a real answer");
}

async fn edited_agent_message_updates_the_text_and_reaches_the_socket(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let (v, thread) = open_topic(&t).await;
    let mut ws = t
        .app
        .ws(&v.ws_token, Some(&t.tenant.origin))
        .await
        .expect("socket");
    next_of(&mut ws, "hello").await;
    let before = Counts::of(&t);

    let first = topic_text_update(20, t.group, thread, 9001, AGENT, "Ana", "It ships Monday.");
    let (status, body) = deliver(&t, &first).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("stored")),
        "{body}"
    );
    let frame = next_of(&mut ws, "message").await;
    assert_eq!(frame["message"]["text"], "It ships Monday.");
    let original = frame["message"].clone();
    assert!(original["edited_at"].is_null(), "{original}");

    let edit = edited_topic_text_update(21, t.group, thread, 9001, AGENT, "Ana", "It ships today.");
    let (status, body) = deliver(&t, &edit).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("edited")),
        "{body}"
    );
    let frame = next_of(&mut ws, "message_edited").await;
    let edited = &frame["message"];
    assert_eq!(edited["text"], "It ships today.");
    assert_eq!(edited["id"], original["id"]);
    assert_eq!(edited["seq"], original["seq"]);
    assert_eq!(edited["direction"], "outbound");
    assert!(edited["edited_at"].is_string(), "{edited}");

    let out = outbound(&t, &v.conversation_id).await;
    assert_eq!(out.len(), 1, "an edit adds no message: {out:?}");
    assert_eq!(out[0]["id"], original["id"]);
    assert_eq!(out[0]["text"], "It ships today.");
    assert!(out[0]["edited_at"].is_string(), "{}", out[0]);
    assert_eq!(out[0]["created_at"], original["created_at"]);
    // The visitor's own history shows the edit too.
    let (status, h) = t
        .app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{h}");
    let mine: Vec<&Value> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["id"] == original["id"])
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["text"], "It ships today.");
    assert_eq!(
        Counts::of(&t).since(before),
        Counts {
            ok: 2,
            ..Counts::default()
        }
    );
}

async fn agent_message_in_a_closed_conversation_is_acknowledged_not_stored(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let (v, thread) = open_topic(&t).await;
    let (status, body) = t
        .app
        .json(
            Method::POST,
            &format!("/v1/admin/conversations/{}/close", v.conversation_id),
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before_history = history(&t, &v.conversation_id).await;
    let before = Counts::of(&t);

    let late = topic_text_update(30, t.group, thread, 9001, AGENT, "Ana", "too late");
    let (status, body) = deliver(&t, &late).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("ignored")),
        "{body}"
    );
    assert_eq!(
        Counts::of(&t).since(before),
        Counts {
            ignored: 1,
            ..Counts::default()
        }
    );
    let after = history(&t, &v.conversation_id).await;
    assert_eq!(after, before_history);
    assert!(after.iter().all(|m| m["direction"] != "outbound"));
}

async fn webhook_calls_are_rate_limited_per_tenant(b: Backend) {
    let t = spawn_with_telegram(b, |s| s.telegram.webhook_per_sec = 2).await;
    let other = t.app.tenant("other").await;
    let token2 = fake_bot_and_group(&t.fake, 222, -100222);
    connect_telegram(&t.app, &other, &token2, -100222).await;
    let secret = secret_of(&t, &t.token);
    let before = Counts::of(&t);

    let started = Instant::now();
    let mut accepted = 0u64;
    let mut limited = 0u64;
    let mut max_retry_after = 0u64;
    // Ten calls, and more until one is refused (a slow machine spreads them out).
    let mut i = 0u32;
    while i < 10 || limited == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never limited: {accepted} accepted"
        );
        i += 1;
        let update = general_text_update(100 + i, t.group, 7000 + i as i32, AGENT, "Ana", "hi");
        let (status, body) = post(&t, "acme", Some(&secret), &update).await;
        match status {
            StatusCode::OK => {
                assert_eq!(body["outcome"], "ignored", "{body}");
                accepted += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(code(&body), "rate_limited", "{body}");
                let retry_after = body["error"]["details"]["retry_after"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("retry_after: {body}"));
                assert!(retry_after >= 1, "{body}");
                max_retry_after = max_retry_after.max(retry_after);
                limited += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(accepted >= 2, "the burst of 2 passes");
    // Burst 2 plus 2 per second, rounded up.
    let bound = 2 + (elapsed * 2.0).ceil() as u64;
    assert!(
        accepted <= bound,
        "{accepted} accepted in {elapsed:.2} s (at most {bound})"
    );
    assert_eq!(
        Counts::of(&t).since(before),
        Counts {
            ignored: accepted,
            rate_limited: limited,
            ..Counts::default()
        }
    );

    // Another tenant's webhook has a bucket of its own.
    let other_secret = secret_of(&t, &token2);
    let update = general_text_update(1, -100222, 7100, AGENT, "Bo", "hi");
    let (status, body) = post(&t, "other", Some(&other_secret), &update).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // After retry_after, acme is served again.
    tokio::time::sleep(Duration::from_millis(max_retry_after * 1000 + 100)).await;
    let update = general_text_update(200, t.group, 7200, AGENT, "Ana", "hi");
    let (status, body) = post(&t, "acme", Some(&secret), &update).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn disabled_connection_acknowledges_and_ignores_updates(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let (v, thread) = open_topic(&t).await;
    let set_enabled = async |enabled: bool| {
        let mut pc = t.app.state.db.conn().await.expect("conn");
        let changed = chatorical::db::repo::telegram::set_enabled(
            &mut pc.as_conn(),
            &t.tenant.id,
            enabled,
            chatorical::domain::now_ms(),
        )
        .await
        .expect("set_enabled");
        assert!(changed, "acme has a connection");
    };
    set_enabled(false).await;
    let before_history = history(&t, &v.conversation_id).await;
    let before = Counts::of(&t);

    let answer = topic_text_update(40, t.group, thread, 9001, AGENT, "Ana", "while disabled");
    let (status, body) = deliver(&t, &answer).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("ignored")),
        "{body}"
    );
    // Disabled does not mean open: the secret is still checked.
    let (status, body) = post(&t, "acme", Some("wrong"), &answer).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized"),
        "{body}"
    );
    assert_eq!(
        Counts::of(&t).since(before),
        Counts {
            ignored: 1,
            unauthorized: 1,
            ..Counts::default()
        }
    );
    assert_eq!(history(&t, &v.conversation_id).await, before_history);

    // Enabled again, answers are stored.
    set_enabled(true).await;
    let answer = topic_text_update(41, t.group, thread, 9002, AGENT, "Ana", "enabled again");
    let (status, body) = deliver(&t, &answer).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("stored")),
        "{body}"
    );
    let texts: Vec<Value> = outbound(&t, &v.conversation_id)
        .await
        .into_iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, vec!["enabled again"]);
}

// ---------------------------------------------------------------------------
// PostgreSQL only: the database goes away during a webhook.
// ---------------------------------------------------------------------------

/// Allow or refuse connections to database `name`; refusing also ends the open ones.
pub(crate) async fn allow_connections(name: &str, allow: bool) -> Result<(), String> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let mut conn = AsyncPgConnection::establish(&crate::pg::admin_url())
        .await
        .map_err(|e| e.to_string())?;
    diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}"))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if !allow {
        diesel::sql_query(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Re-allows connections when dropped (so a failing test still lets the database go).
pub(crate) struct ReallowOnDrop(pub(crate) String);

impl Drop for ReallowOnDrop {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let _ = rt.block_on(allow_connections(&name, true));
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_5xx_and_the_retry_is_stored_once() {
    let t = spawn_with_telegram(Backend::Postgres, |_| {}).await;
    let (v, thread) = open_topic(&t).await;
    let url = t
        .app
        .state
        .settings
        .database
        .url
        .as_ref()
        .expect("database url")
        .expose()
        .to_string();
    let name = url
        .rsplit_once('/')
        .map(|(_, db)| db.split('?').next().unwrap_or(db).to_string())
        .expect("url has a database");
    assert!(name.starts_with("chatorical_t_"), "{name}");
    let secret = secret_of(&t, &t.token);
    let update = topic_text_update(50, t.group, thread, 9001, AGENT, "Ana", "during the outage");
    let body = serde_json::to_vec(&update).expect("json");
    let before = Counts::of(&t);

    let _guard = ReallowOnDrop(name.clone());
    allow_connections(&name, false)
        .await
        .expect("refuse connections");
    let during = post_raw(&t, "acme", Some(&secret), body.clone()).await;
    let counts_during = Counts::of(&t).since(before);
    // Re-allow before asserting anything.
    allow_connections(&name, true)
        .await
        .expect("allow connections");

    let (status, resp) = during.expect("answered");
    assert!(
        status.is_server_error(),
        "database down must be a 5xx so Telegram retries, got {status}: {resp}"
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{resp}");
    assert_eq!(code(&resp), "unavailable", "{resp}");
    assert_eq!(
        counts_during,
        Counts::default(),
        "nothing counted as handled"
    );

    // Telegram retries the same update: stored once.
    let (status, resp) = post_raw(&t, "acme", Some(&secret), body.clone())
        .await
        .expect("answered");
    assert_eq!(
        (status, resp["outcome"].as_str()),
        (StatusCode::OK, Some("stored")),
        "{resp}"
    );
    let (status, resp) = post_raw(&t, "acme", Some(&secret), body)
        .await
        .expect("answered");
    assert_eq!(
        (status, resp["outcome"].as_str()),
        (StatusCode::OK, Some("duplicate")),
        "{resp}"
    );
    let out = outbound(&t, &v.conversation_id).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["text"], "during the outage");
    assert_eq!(
        Counts::of(&t).since(before),
        Counts {
            ok: 1,
            duplicate: 1,
            ..Counts::default()
        }
    );
}
