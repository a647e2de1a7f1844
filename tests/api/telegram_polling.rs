//! Telegram long polling (mode `polling`): a server without a public URL gets its
//! agents' answers by getUpdates, handled exactly as webhook updates; one poller per
//! bot across nodes; switching modes deletes and sets the webhook; a 409 Conflict is
//! reported and retried slowly.

use std::time::{Duration, Instant};

use chatorical::config::{DatabaseUrl, Secret, Settings, TelegramDefaultMode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use teloxide::prelude::Requester;

use crate::fake_telegram::{FakeTelegram, edited_topic_text_update, topic_text_update};
use crate::helpers::{
    Backend, TenantFixture, TestApp, code, connect_telegram, eventually, fake_bot_and_group,
    next_of, spawn_app_with,
};
use crate::on_both_backends;

on_both_backends!(
    without_a_public_url_a_new_connection_polls_and_agent_replies_reach_the_widget,
    two_nodes_poll_a_bot_once_and_the_other_takes_over,
    switching_modes_deletes_and_sets_the_webhook,
    a_webhook_url_telegram_would_refuse_keeps_the_tenant_polling,
    a_409_conflict_is_reported_and_retried_slowly,
);

const BOT: u64 = 111;
const GROUP: i64 = -100_111;
/// A human agent's Telegram user id.
const AGENT: u64 = 555;

/// Settings of a server that talks to `fake` and polls quickly.
fn polling_settings(s: &mut Settings, fake_url: &str) {
    s.telegram.api_url = fake_url.to_string();
    s.telegram.request_timeout_secs = 3;
    // The product's default: no server.public_url, so new connections poll.
    s.telegram.default_mode = TelegramDefaultMode::Auto;
    s.telegram.poll_timeout_secs = 10;
    s.telegram.poll_backoff_secs = 2;
    s.worker.poll_interval_ms = 100;
}

async fn status(app: &TestApp, tenant: &TenantFixture) -> Value {
    let (st, body) = app
        .json(Method::GET, "/v1/admin/telegram", Some(&tenant.key), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

async fn patch(app: &TestApp, tenant: &TenantFixture, body: Value) -> (StatusCode, Value) {
    app.json(
        Method::PATCH,
        "/v1/admin/telegram",
        Some(&tenant.key),
        Some(body),
    )
    .await
}

/// A visitor's message, delivered into a new topic; the topic's thread id.
async fn visitor_topic(
    app: &TestApp,
    fake: &FakeTelegram,
    tenant: &TenantFixture,
) -> (crate::helpers::VisitorFixture, i32) {
    let v = app.visitor(tenant).await;
    let before = fake.calls_of("sendmessage").len();
    let (st, body) = app.send(&v, "m1", "Where is my order?").await;
    assert!(st.is_success(), "{body}");
    // The opening card and the message.
    let sent = fake
        .wait_for_calls("sendmessage", before + 2, Duration::from_secs(10))
        .await;
    let thread = sent[before + 1].thread_id().expect("into the topic");
    (v, thread)
}

/// The agents' messages of a conversation, as the visitor's history shows them.
async fn agent_texts(app: &TestApp, v: &crate::helpers::VisitorFixture) -> Vec<String> {
    let (st, body) = app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["direction"] == "outbound")
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn without_a_public_url_a_new_connection_polls_and_agent_replies_reach_the_widget(
    b: Backend,
) {
    let fake = FakeTelegram::start_local().await;
    let url = fake.api_url();
    let app = spawn_app_with(b, |s| polling_settings(s, &url)).await;
    let tenant = app.tenant("acme").await;
    let token = fake_bot_and_group(&fake, BOT, GROUP);
    // A webhook left from somewhere else: Telegram would refuse getUpdates while it is set.
    fake.bot(&token)
        .set_webhook(reqwest::Url::parse("https://old.example/hook").expect("url"))
        .await
        .expect("setWebhook");

    // No mode given, no server.public_url: the connection polls.
    let body = connect_telegram(&app, &tenant, &token, GROUP).await;
    assert_eq!(body["mode"], "polling", "{body}");
    assert!(fake.webhook(&token).is_none(), "setup deleted the webhook");
    assert_eq!(fake.calls_of("deletewebhook").len(), 1);
    assert_eq!(
        fake.calls_of("setwebhook").len(),
        1,
        "only the test's own setWebhook"
    );

    // The embedded worker long-polls, asking for what the webhook would get.
    let polls = fake
        .wait_for_calls("getupdates", 1, Duration::from_secs(10))
        .await;
    assert_eq!(polls[0].params["timeout"], 10, "{:?}", polls[0].params);
    assert_eq!(
        polls[0].params["allowed_updates"],
        json!(["message", "edited_message"])
    );

    let (v, thread) = visitor_topic(&app, &fake, &tenant).await;
    let mut ws = app
        .ws(&v.ws_token, Some(&tenant.origin))
        .await
        .expect("socket");
    next_of(&mut ws, "hello").await;

    // An agent answers in the topic. The long poll being held answers at once (well
    // before its 10 s), and the answer reaches the visitor's socket.
    let queued = Instant::now();
    fake.queue_update(
        &token,
        topic_text_update(7001, GROUP, thread, 9001, AGENT, "Ana", "It ships today."),
    );
    loop {
        let frame = next_of(&mut ws, "message").await;
        if frame["message"]["text"] == "It ships today." {
            assert_eq!(frame["message"]["direction"], "outbound", "{frame}");
            break;
        }
    }
    assert!(
        queued.elapsed() < Duration::from_secs(5),
        "took {:?}",
        queued.elapsed()
    );

    // An edit goes the same way.
    fake.queue_update(
        &token,
        edited_topic_text_update(
            7002,
            GROUP,
            thread,
            9001,
            AGENT,
            "Ana",
            "It ships tomorrow.",
        ),
    );
    let edited = next_of(&mut ws, "message_edited").await;
    assert_eq!(edited["message"]["text"], "It ships tomorrow.", "{edited}");
    assert_eq!(agent_texts(&app, &v).await, vec!["It ships tomorrow."]);

    // Counted like webhook updates; the next poll confirms both.
    let counters = &app.state.webhook;
    assert_eq!(counters.ok.load(std::sync::atomic::Ordering::Relaxed), 2);
    eventually(10, "a poll from offset 7003", || async {
        fake.poll_offsets(&token).contains(&Some(7003))
    })
    .await;
    assert!(fake.pending_updates(&token).is_empty());

    let st = status(&app, &tenant).await;
    assert_eq!(st["mode"], "polling", "{st}");
    assert_eq!(st["polling"]["offset"], 7003, "{st}");
    assert_eq!(st["polling"]["polled"], true, "{st}");
    assert!(st["polling"]["last_poll_at"].is_string(), "{st}");
    assert!(st["polling"]["last_error"].is_null(), "{st}");

    // `tenants validate` checks what polling needs instead of the webhook.
    let acme = chatorical::tenancy::tenant_by_slug(&app.state.db, "acme")
        .await
        .expect("tenant");
    let checks = chatorical::telegram::validate::validate(
        &app.state.db,
        &app.state.bots,
        &acme,
        &app.base,
        Duration::from_secs(10),
    )
    .await;
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
    let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
    for expected in ["no webhook set", "bot polled", "round trip"] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    assert!(!names.contains(&"webhook registered"), "{names:?}");

    // Paused: updates are acknowledged and ignored, as the webhook does, and the poll
    // moves past them.
    let (s, body) = patch(&app, &tenant, json!({"enabled": false})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    fake.queue_update(
        &token,
        topic_text_update(7003, GROUP, thread, 9002, AGENT, "Ana", "Not while paused."),
    );
    eventually(10, "a poll from offset 7004", || async {
        fake.poll_offsets(&token).contains(&Some(7004))
    })
    .await;
    assert_eq!(agent_texts(&app, &v).await, vec!["It ships tomorrow."]);
    assert_eq!(
        counters.ignored.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(fake.polls(&token).terminated, 0, "one poller");
    let metrics = app
        .call(Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics.contains("chatorical_telegram_polls_total{outcome=\"ok\"}"),
        "polls counted"
    );
}

/// The database of `app`, for a second node.
fn database_of(app: &TestApp) -> Option<Secret> {
    match app.state.settings.database_url().expect("database url") {
        DatabaseUrl::Sqlite(path) => Some(Secret::new(format!("sqlite://{}", path.display()))),
        DatabaseUrl::Postgres(url) => Some(Secret::new(url)),
    }
}

/// Who holds the lease on polling the tenant's bot (`telegram_polls.leased_by`).
async fn poll_holder(app: &TestApp, tenant: &TenantFixture) -> Option<String> {
    let mut pc = app.state.db.conn().await.expect("connection");
    chatorical::db::repo::telegram::poll_state(&mut pc.as_conn(), &tenant.id)
        .await
        .expect("poll state")
        .and_then(|p| p.leased_by)
}

async fn two_nodes_poll_a_bot_once_and_the_other_takes_over(b: Backend) {
    let fake = FakeTelegram::start_local().await;
    let url = fake.api_url();
    let tweak = |s: &mut Settings| {
        polling_settings(s, &url);
        s.telegram.poll_timeout_secs = 2;
        s.worker.lease_secs = 1;
    };
    let mut node_a = spawn_app_with(b, tweak).await;
    let tenant = node_a.tenant("acme").await;
    node_a.unlimited(&tenant).await;
    let token = fake_bot_and_group(&fake, BOT, GROUP);
    connect_telegram(&node_a, &tenant, &token, GROUP).await;
    let (v, thread) = visitor_topic(&node_a, &fake, &tenant).await;
    eventually(10, "node A polls the bot", || async {
        poll_holder(&node_a, &tenant).await.is_some()
    })
    .await;
    let holder_a = poll_holder(&node_a, &tenant).await.expect("a holder");

    // A second node on the same database (and master key) looks for bots to poll too.
    let database = database_of(&node_a);
    let key_file = node_a.state.settings.secrets.master_key_file.clone();
    let node_b = spawn_app_with(b, move |s| {
        tweak(s);
        s.database.url = database;
        s.secrets.master_key_file = key_file;
    })
    .await;
    let mut expected = Vec::new();
    for i in 0..8u32 {
        let text = format!("answer {i}");
        fake.queue_update(
            &token,
            topic_text_update(
                8000 + i,
                GROUP,
                thread,
                9100 + i as i32,
                AGENT,
                "Ana",
                &text,
            ),
        );
        expected.push(text);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eventually(15, "every answer stored", || async {
        agent_texts(&node_a, &v).await.len() >= expected.len()
    })
    .await;
    assert_eq!(agent_texts(&node_a, &v).await, expected, "each answer once");
    assert_eq!(poll_holder(&node_a, &tenant).await, Some(holder_a.clone()));
    let stats = fake.polls(&token);
    assert_eq!(
        stats.terminated, 0,
        "never two getUpdates at once: {stats:?}"
    );
    assert_eq!(stats.max_in_flight, 1, "{stats:?}");

    // Node A stops (giving its lease back): node B takes over, nothing lost.
    node_a.stop().await;
    eventually(10, "node B polls the bot", || async {
        poll_holder(&node_b, &tenant)
            .await
            .is_some_and(|h| h != holder_a)
    })
    .await;
    fake.queue_update(
        &token,
        topic_text_update(
            8100,
            GROUP,
            thread,
            9200,
            AGENT,
            "Ana",
            "after the handover",
        ),
    );
    expected.push("after the handover".to_string());
    eventually(10, "the answer after the handover", || async {
        agent_texts(&node_b, &v).await.len() >= expected.len()
    })
    .await;
    assert_eq!(agent_texts(&node_b, &v).await, expected);
    assert_eq!(fake.polls(&token).terminated, 0, "{:?}", fake.polls(&token));
}

async fn mode_changes(app: &TestApp, tenant: &TenantFixture) -> Vec<Value> {
    let (st, body) = app
        .json(
            Method::GET,
            &format!(
                "/v1/admin/audit?tenant={}&action=telegram.mode_changed",
                tenant.slug
            ),
            Some(&app.platform_key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["changes"].clone())
        .collect()
}

async fn switching_modes_deletes_and_sets_the_webhook(b: Backend) {
    let fake = FakeTelegram::start_local().await;
    let url = fake.api_url();
    let app = spawn_app_with(b, |s| polling_settings(s, &url)).await;
    let tenant = app.tenant("acme").await;
    let token = fake_bot_and_group(&fake, BOT, GROUP);
    // Asked for explicitly: a webhook at the (plain http, local Bot API) server.
    let (st, body) = app
        .json(
            Method::PUT,
            "/v1/admin/telegram",
            Some(&tenant.key),
            Some(json!({"bot_token": token, "group_chat_id": GROUP, "mode": "webhook"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["mode"], "webhook");
    assert!(body.get("polling").is_none(), "{body}");
    let hook = fake.webhook(&token).expect("webhook set");
    let secret = hook.secret_token.clone().expect("secret");

    // To polling: deleteWebhook, and the worker starts polling.
    let (st, body) = patch(&app, &tenant, json!({"mode": "polling"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["mode"], "polling", "{body}");
    assert_eq!(fake.calls_of("deletewebhook").len(), 1);
    assert!(fake.webhook(&token).is_none());
    fake.wait_for_calls("getupdates", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        mode_changes(&app, &tenant).await,
        vec![json!({"mode": {"from": "webhook", "to": "polling"}})]
    );
    // Again: Telegram is told again, nothing is recorded.
    let (st, _) = patch(&app, &tenant, json!({"mode": "polling"})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(fake.calls_of("deletewebhook").len(), 2);
    assert_eq!(mode_changes(&app, &tenant).await.len(), 1);

    // Back to webhook: setWebhook with the stored secret and the same URL; the poller
    // stops (the held getUpdates ends with 409, and the lease is given back).
    let (st, body) = patch(&app, &tenant, json!({"mode": "webhook"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["mode"], "webhook");
    let again = fake.webhook(&token).expect("webhook set again");
    assert_eq!(again.url, hook.url);
    assert_eq!(again.secret_token.as_deref(), Some(secret.as_str()));
    assert_eq!(
        again.allowed_updates,
        Some(vec!["message".to_string(), "edited_message".to_string()])
    );
    eventually(10, "the poller stops", || async {
        fake.polls(&token).in_flight == 0 && poll_holder(&app, &tenant).await.is_none()
    })
    .await;
    let polls = fake.polls(&token).requests;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        fake.polls(&token).requests,
        polls,
        "no getUpdates in webhook mode"
    );
    assert_eq!(
        mode_changes(&app, &tenant).await[1],
        json!({"mode": {"from": "polling", "to": "webhook"}})
    );
    // The webhook takes updates again.
    let update = crate::fake_telegram::general_text_update(42, GROUP, 1, AGENT, "Ana", "hi");
    let delivered = fake
        .deliver_update(&token, &update)
        .await
        .expect("delivered");
    assert_eq!(delivered, reqwest::StatusCode::OK);

    // Nothing to change: a clear error.
    let (st, body) = patch(&app, &tenant, json!({})).await;
    assert_eq!(
        (st, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{body}"
    );
    let (st, body) = patch(&app, &tenant, json!({"mode": "carrier-pigeon"})).await;
    assert!(st.is_client_error(), "{st}: {body}");
    assert_eq!(status(&app, &tenant).await["mode"], "webhook");
}

async fn a_webhook_url_telegram_would_refuse_keeps_the_tenant_polling(b: Backend) {
    // Production rules (no local Bot API server): without server.public_url there is
    // no URL Telegram would call.
    let fake = FakeTelegram::start().await;
    let url = fake.api_url();
    let app = spawn_app_with(b, |s| {
        polling_settings(s, &url);
        s.telegram.allow_http_webhook = false;
    })
    .await;
    let tenant = app.tenant("acme").await;
    let token = fake_bot_and_group(&fake, BOT, GROUP);
    let body = connect_telegram(&app, &tenant, &token, GROUP).await;
    assert_eq!(body["mode"], "polling", "{body}");
    let (st, body) = patch(&app, &tenant, json!({"mode": "webhook"})).await;
    assert_eq!(
        (st, code(&body)),
        (StatusCode::CONFLICT, "webhook_url_rejected"),
        "{body}"
    );
    assert_eq!(fake.calls_of("setwebhook").len(), 0, "Telegram not asked");
    assert_eq!(status(&app, &tenant).await["mode"], "polling");
    assert!(mode_changes(&app, &tenant).await.is_empty());
}

async fn a_409_conflict_is_reported_and_retried_slowly(b: Backend) {
    let fake = FakeTelegram::start_local().await;
    let url = fake.api_url();
    let app = spawn_app_with(b, |s| {
        polling_settings(s, &url);
        s.telegram.poll_timeout_secs = 1;
    })
    .await;
    let tenant = app.tenant("acme").await;
    let token = fake_bot_and_group(&fake, BOT, GROUP);
    connect_telegram(&app, &tenant, &token, GROUP).await;
    fake.wait_for_calls("getupdates", 1, Duration::from_secs(10))
        .await;

    // Someone sets a webhook for the bot behind our back.
    fake.bot(&token)
        .set_webhook(reqwest::Url::parse("https://elsewhere.example/hook").expect("url"))
        .await
        .expect("setWebhook");
    eventually(10, "the conflict in the status", || async {
        status(&app, &tenant).await["polling"]["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("409 Conflict") && e.contains("webhook is active"))
    })
    .await;
    let st = status(&app, &tenant).await;
    assert!(st["polling"]["last_error_at"].is_string(), "{st}");
    // Retried every poll_backoff_secs (2 s), not in a tight loop.
    let before = fake.polls(&token).refused_for_webhook;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused = fake.polls(&token).refused_for_webhook - before;
    assert!(refused <= 2, "{refused} refused polls in 3 s");

    // The webhook is deleted again: polling resumes and the error clears.
    fake.bot(&token)
        .delete_webhook()
        .await
        .expect("deleteWebhook");
    eventually(10, "polling resumed", || async {
        status(&app, &tenant).await["polling"]["last_error"].is_null()
    })
    .await;
    assert_eq!(status(&app, &tenant).await["mode"], "polling");
}
