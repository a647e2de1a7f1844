//! Usage counters: conversations started, messages in and out, topics created — per
//! tenant and day, in the database (embedded default) or in Redis; summarized into
//! `usage_daily`, reported by `GET /v1/admin/usage`, surviving a restart.

use std::time::Duration;

use chatorical::{
    config::{Secret, Settings},
    usage::{self, Metric},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fake_telegram::{SECRET_TOKEN_HEADER, topic_text_update};
use crate::helpers::{Backend, TenantFixture, TestApp, code, spawn_app_with, spawn_with_telegram};
use crate::on_both_backends;

on_both_backends!(
    counts_in_the_database,
    counts_in_redis,
    counts_survive_a_restart_in_the_database,
    counts_survive_a_restart_in_redis,
    telegram_topics_and_agent_answers_are_counted,
    usage_needs_the_scope_and_sane_days,
);

fn use_redis(s: &mut Settings, prefix: &str) {
    s.redis.url = Some(Secret::new(crate::test_redis::url()));
    s.redis.key_prefix = prefix.to_string();
}

fn unique_prefix() -> String {
    format!("chatorical_test_{}", uuid::Uuid::new_v4().simple())
}

/// Today's row of `GET /v1/admin/usage` with a `usage:read` key.
async fn today(app: &TestApp, t: &TenantFixture) -> Value {
    let (_, key) = app.key(t, &["usage:read"]).await;
    let (status, report) = app
        .json(Method::GET, "/v1/admin/usage?days=3", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let days = report["days"].as_array().expect("days");
    assert_eq!(days.len(), 3, "{report}");
    let last = days.last().expect("today").clone();
    assert_eq!(
        last["day"],
        usage::day_of(chatorical::domain::now_ms()),
        "{report}"
    );
    assert_eq!(report["to"], last["day"]);
    assert_eq!(report["tenant_id"], t.id.as_str());
    last
}

fn counts(conversations: i64, inbound: i64, outbound: i64, topics: i64) -> Value {
    json!({
        "conversations_started": conversations,
        "messages_inbound": inbound,
        "messages_outbound": outbound,
        "topics_created": topics,
        "topic_renames": 0,
    })
}

fn only_counts(day: &Value) -> Value {
    let mut v = day.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("day");
    }
    v
}

/// K conversations, N visitor messages (one of them sent twice), M agent replies,
/// for `acme`; one conversation and message for `other`.
async fn traffic(app: &TestApp, acme: &TenantFixture, other: &TenantFixture) {
    let v1 = app.visitor(acme).await;
    let v2 = app.visitor(acme).await;
    for (v, id) in [(&v1, "a"), (&v1, "b"), (&v2, "c")] {
        let (status, body) = app.send(v, id, "hello").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // An idempotent retry stores nothing and counts nothing.
    let (status, _) = app.send(&v1, "a", "hello").await;
    assert_eq!(status, StatusCode::OK);
    for text in ["one", "two"] {
        let (status, body) = app.reply(acme, &v1.conversation_id, text).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // Asking for the open conversation again starts nothing.
    let (status, _) = app
        .json(Method::POST, "/v1/conversations", Some(&v2.token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let o = app.visitor(other).await;
    let (status, _) = app.send(&o, "x", "elsewhere").await;
    assert_eq!(status, StatusCode::CREATED);
}

async fn counts_in_the_database(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let acme = app.tenant("acme").await;
    let other = app.tenant("other").await;
    traffic(&app, &acme, &other).await;
    // Without Redis every count goes to the database; flushing waits for the writes.
    app.state.usage.flush().await;
    assert_eq!(only_counts(&today(&app, &acme).await), counts(2, 3, 2, 0));
    assert_eq!(
        usage::summarize(&app.state.db, None)
            .await
            .expect("summary"),
        0
    );
    assert_eq!(only_counts(&today(&app, &acme).await), counts(2, 3, 2, 0));
    assert_eq!(only_counts(&today(&app, &other).await), counts(1, 1, 0, 0));
    assert_eq!(app.state.usage.failed_count(), 0);
}

async fn counts_in_redis(b: Backend) {
    let prefix = unique_prefix();
    let app = spawn_app_with(b, |s| use_redis(s, &prefix)).await;
    let acme = app.tenant("acme").await;
    let other = app.tenant("other").await;
    traffic(&app, &acme, &other).await;
    app.state.usage.flush().await;
    // The counts are in Redis until a summary.
    assert_eq!(only_counts(&today(&app, &acme).await), counts(0, 0, 0, 0));
    let mut redis = redis::Client::open(crate::test_redis::url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let day = usage::day_of(chatorical::domain::now_ms());
    let inbound: i64 = redis::cmd("HGET")
        .arg(format!("{prefix}:usage:{day}"))
        .arg(format!("{}|{}", acme.id, Metric::MessagesInbound.as_str()))
        .query_async(&mut redis)
        .await
        .expect("HGET");
    assert_eq!(inbound, 3);
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}:usage:{day}"))
        .query_async(&mut redis)
        .await
        .expect("TTL");
    assert!(ttl > 24 * 3600, "the day's hash expires after days: {ttl}");
    // Concurrent and repeated summaries write the same totals.
    let (a, b2) = tokio::join!(app.state.usage.summarize(), app.state.usage.summarize());
    assert!(a.expect("summary") > 0 && b2.expect("summary") > 0);
    app.state.usage.summarize().await.expect("again");
    assert_eq!(only_counts(&today(&app, &acme).await), counts(2, 3, 2, 0));
    assert_eq!(only_counts(&today(&app, &other).await), counts(1, 1, 0, 0));
    // More traffic: the next summary raises the totals.
    let v = app.visitor(&acme).await;
    app.send(&v, "z", "more").await;
    app.state.usage.summarize().await.expect("summary");
    assert_eq!(only_counts(&today(&app, &acme).await), counts(3, 4, 2, 0));
    assert_eq!(app.state.usage.failed_count(), 0);

    // A day long over is folded one last time and its hash deleted; unknown tenants
    // and metrics are skipped.
    let old = format!("{prefix}:usage:2020-01-01");
    let _: () = redis::cmd("HSET")
        .arg(&old)
        .arg(format!("{}|messages_inbound", acme.id))
        .arg(7)
        .arg("tn_gone|messages_inbound")
        .arg(5)
        .arg(format!("{}|not_a_metric", acme.id))
        .arg(3)
        .query_async(&mut redis)
        .await
        .expect("HSET");
    app.state.usage.summarize().await.expect("summary");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&old)
        .query_async(&mut redis)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 0, "the old day's hash is gone");
    let mut pc = app.state.db.conn().await.expect("conn");
    let rows =
        chatorical::db::repo::usage::range(&mut pc.as_conn(), &acme.id, "2020-01-01", "2020-01-01")
            .await
            .expect("rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].metric.as_str(), rows[0].count),
        ("messages_inbound", 7)
    );
    // Today's hash stays (it is still counting).
    let exists: i64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}:usage:{day}"))
        .query_async(&mut redis)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 1);
}

/// Stop the first server, start a second on the same database (and Redis prefix).
async fn restarted(b: Backend, first: &mut TestApp, prefix: Option<&str>) -> TestApp {
    first.stop().await;
    let database_url = first.state.settings.database.url.clone();
    let data_dir = first.state.settings.server.data_dir.clone();
    let key_file = first.state.settings.secrets.master_key_file.clone();
    spawn_app_with(b, |s| {
        s.database.url = database_url;
        s.server.data_dir = data_dir;
        s.secrets.master_key_file = key_file;
        if let Some(p) = prefix {
            use_redis(s, p);
        }
    })
    .await
}

async fn counts_survive_a_restart_in_the_database(b: Backend) {
    let mut first = spawn_app_with(b, |_| {}).await;
    let acme = first.tenant("acme").await;
    let other = first.tenant("other").await;
    traffic(&first, &acme, &other).await;
    let second = restarted(b, &mut first, None).await;
    second.state.usage.summarize().await.expect("summary");
    assert_eq!(
        only_counts(&today(&second, &acme).await),
        counts(2, 3, 2, 0)
    );
}

async fn counts_survive_a_restart_in_redis(b: Backend) {
    let prefix = unique_prefix();
    let mut first = spawn_app_with(b, |s| use_redis(s, &prefix)).await;
    let acme = first.tenant("acme").await;
    let other = first.tenant("other").await;
    traffic(&first, &acme, &other).await;
    let second = restarted(b, &mut first, Some(&prefix)).await;
    // Counted by the first process, kept in Redis, summarized by the second.
    second.state.usage.summarize().await.expect("summary");
    assert_eq!(
        only_counts(&today(&second, &acme).await),
        counts(2, 3, 2, 0)
    );
    let v = second.visitor(&acme).await;
    second.send(&v, "z", "after the restart").await;
    second.state.usage.summarize().await.expect("summary");
    assert_eq!(
        only_counts(&today(&second, &acme).await),
        counts(3, 4, 2, 0)
    );
}

async fn telegram_topics_and_agent_answers_are_counted(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    let (status, body) = t.app.send(&v, "m1", "hi").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The worker creates the topic, posts the opening card and the message.
    let sent = t
        .fake
        .wait_for_calls("sendmessage", 2, Duration::from_secs(10))
        .await;
    let thread = sent[1].thread_id().expect("sent into a topic");
    let secret = t
        .fake
        .webhook(&t.token)
        .expect("webhook")
        .secret_token
        .expect("secret");
    let update = topic_text_update(1, t.group, thread, 900, 555, "Ana", "hello from Telegram");
    let resp = t
        .app
        .http
        .post(format!(
            "{}/v1/telegram/webhook/{}",
            t.app.base, t.tenant.slug
        ))
        .header(SECRET_TOKEN_HEADER, secret)
        .json(&update)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    t.app.state.usage.flush().await;
    assert_eq!(
        only_counts(&today(&t.app, &t.tenant).await),
        counts(1, 1, 1, 1)
    );
}

async fn usage_needs_the_scope_and_sane_days(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let acme = app.tenant("acme").await;
    let (status, body) = app
        .json(Method::GET, "/v1/admin/usage", Some(&acme.key), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, key) = app.key(&acme, &["usage:read"]).await;
    for bad in ["0", "367", "x"] {
        let (status, body) = app
            .json(
                Method::GET,
                &format!("/v1/admin/usage?days={bad}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(code(&body), "validation_failed");
    }
    let (status, report) = app
        .json(Method::GET, "/v1/admin/usage", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["days"].as_array().map(Vec::len),
        Some(30),
        "default 30 days"
    );
    assert_eq!(report["totals"], counts(0, 0, 0, 0));
    // A platform key names the tenant in a header; it needs the scope like any key.
    let (status, narrow) = app
        .json(
            Method::POST,
            "/v1/admin/keys",
            Some(&app.platform_key),
            Some(serde_json::json!({"scopes": ["conversations:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{narrow}");
    for (platform_key, expected) in [
        (narrow["key"].as_str().expect("key"), StatusCode::FORBIDDEN),
        (app.platform_key.as_str(), StatusCode::OK),
    ] {
        let resp = app
            .http
            .get(format!("{}/v1/admin/usage?days=1", app.base))
            .bearer_auth(platform_key)
            .header("chatorical-tenant", "acme")
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), expected);
    }
}
