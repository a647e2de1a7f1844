//! Plan quotas and channels (issue 12): every daily quota refused just over its limit
//! with the exact details (HTTP, the widget socket, Telegram), nothing stored for a
//! refused request, the reset at 00:00 UTC (driven by the quotas' test clock), plan
//! changes taking effect at once, the open-conversation cap, channels a plan leaves out,
//! and `GET /v1/admin/usage` reporting where a tenant stands.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatorical::{
    config::{Secret, Settings},
    db::repo,
    domain::TenantId,
    quota::Quota,
    telegram::typing::TypingOutcome,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fake_telegram::{FakeTelegram, topic_text_update};
use crate::helpers::{
    Backend, TenantFixture, TestApp, VisitorFixture, code, connect_telegram, eventually,
    fake_bot_and_group, next_of, send_json, spawn_app, spawn_app_with, spawn_with_telegram,
};
use crate::on_both_backends;
use crate::renames::{
    edits, identify, patch_subject, rename_items, settled, topic_name, visitor_with_topic,
};

on_both_backends!(
    messages_over_the_daily_limit_are_refused_and_nothing_is_stored,
    a_new_utc_day_admits_again,
    a_new_utc_day_admits_again_with_redis,
    downgrades_lower_and_upgrades_lift_at_once,
    a_socket_measures_each_send_against_the_plan_as_it_is_now,
    a_socket_measures_each_send_against_the_plan_as_it_is_now_with_redis,
    a_stretch_without_a_limit_still_counts_the_day,
    a_stretch_without_a_limit_still_counts_the_day_with_redis,
    conversation_starts_are_limited_and_an_open_conversation_is_not_charged_again,
    the_open_conversation_cap_frees_up_when_one_closes,
    topic_renames_are_limited_and_a_same_name_rename_is_free,
    an_over_limit_telegram_reply_is_not_stored_and_gets_one_notice,
    a_plan_without_telegram_refuses_setup_and_holds_delivery,
    a_plan_without_widget_refuses_sessions_and_sessions_carry_features,
    usage_reports_the_plan_and_every_quota,
);

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A human agent's Telegram user id in these tests.
const AGENT: u64 = 555;

/// A plan body with `limits` (a limit left out is unlimited), both channels, no features.
fn plan(name: &str, limits: Value) -> Value {
    json!({
        "name": name,
        "active": true,
        "limits": limits,
        "channels": ["widget", "telegram"],
        "features": {},
    })
}

/// Create or replace plan `code` through the admin API.
async fn put_plan(app: &TestApp, code: &str, body: Value) {
    let (status, p) = app
        .json(
            Method::PUT,
            &format!("/v1/admin/plans/{code}"),
            Some(&app.platform_key),
            Some(body),
        )
        .await;
    assert!(status.is_success(), "{status}: {p}");
}

/// Put the tenant on plan `code` through the admin API.
async fn set_plan(app: &TestApp, t: &TenantFixture, code: &str) {
    let (status, tenant) = app
        .json(
            Method::PUT,
            &format!("/v1/admin/tenants/{}/plan", t.slug),
            Some(&app.platform_key),
            Some(json!({ "plan": code })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!(tenant["plan"], code, "{tenant}");
}

/// Create plan `code` with `limits` (both channels) and put the tenant on it.
async fn on_plan(app: &TestApp, t: &TenantFixture, code: &str, limits: Value) {
    put_plan(app, code, plan(code, limits)).await;
    set_plan(app, t, code).await;
}

/// The first 00:00 UTC after now moved `ahead`, as the API writes times.
fn next_midnight(ahead: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        + ahead;
    let day = now.as_secs() / 86_400 + 1;
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs(day * 86_400)).to_string()
}

/// A 429 `quota_exceeded` for `quota`, with exactly these details.
#[track_caller]
fn assert_exceeded(
    status: StatusCode,
    body: &Value,
    quota: &str,
    limit: u64,
    used: u64,
    resets_at: Option<&str>,
) {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(code(body), "quota_exceeded", "{body}");
    assert_eq!(
        body["error"]["details"],
        json!({"quota": quota, "limit": limit, "used": used, "resets_at": resets_at}),
        "{body}"
    );
}

/// The texts of the conversation's messages as the visitor reads them, and its last seq.
async fn history(app: &TestApp, v: &VisitorFixture) -> (Vec<String>, i64) {
    let (status, h) = app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{h}");
    let texts = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().expect("text").to_string())
        .collect();
    (texts, h["last_seq"].as_i64().expect("last_seq"))
}

/// How much of a daily quota the tenant used today, by the counters the enforcement reads.
async fn used_today(app: &TestApp, t: &TenantFixture, quota: Quota) -> u64 {
    app.state
        .quotas
        .used_today(&TenantId::from(t.id.as_str()), quota)
        .await
        .expect("quota counter")
}

/// A new widget session for the tenant: `(visitor token, ws token)`.
async fn session(app: &TestApp, t: &TenantFixture) -> (String, String) {
    let (status, s) = app
        .json(
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": t.widget_key})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    (
        s["visitor_token"].as_str().expect("visitor_token").into(),
        s["ws_token"].as_str().expect("ws_token").into(),
    )
}

/// `POST /v1/conversations` as the visitor with `token`.
async fn open_conversation(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.json(Method::POST, "/v1/conversations", Some(token), None)
        .await
}

/// The fixture of a visitor with `token` and the conversation `opened` for them.
fn fixture(token: String, opened: &Value) -> VisitorFixture {
    VisitorFixture {
        token,
        ws_token: opened["ws_token"].as_str().expect("ws_token").into(),
        conversation_id: opened["id"].as_str().expect("id").into(),
    }
}

/// `POST /v1/admin/conversations/{id}/close` with the tenant's key.
async fn close(app: &TestApp, t: &TenantFixture, conversation_id: &str) {
    let (status, c) = app
        .json(
            Method::POST,
            &format!("/v1/admin/conversations/{conversation_id}/close"),
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "closed", "{c}");
}

/// `GET /v1/admin/usage?days=1` with a `usage:read` key of the tenant.
async fn usage_report(app: &TestApp, t: &TenantFixture) -> Value {
    let (_, key) = app.key(t, &["usage:read"]).await;
    let (status, report) = app
        .json(Method::GET, "/v1/admin/usage?days=1", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    report
}

// ---------------------------------------------------------------------------
// messages_per_day
// ---------------------------------------------------------------------------

async fn messages_over_the_daily_limit_are_refused_and_nothing_is_stored(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    on_plan(&app, &t, "small", json!({"messages_per_day": 3})).await;
    let v = app.visitor(&t).await;

    // Both directions count together: two from the visitor and one agent answer are the
    // three (counted apart, the visitor's third below would still be in).
    let (status, first) = app.send(&v, "m1", "first").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, body) = app.reply(&t, &v.conversation_id, "an answer").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.send(&v, "m2", "second").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let midnight = next_midnight(Duration::ZERO);
    let (status, refused) = app.send(&v, "m3", "one too many").await;
    assert_exceeded(status, &refused, "messages_per_day", 3, 3, Some(&midnight));
    let resets_at = refused["error"]["details"]["resets_at"]
        .as_str()
        .expect("resets_at");
    let at = humantime::parse_rfc3339(resets_at).expect("resets_at is RFC 3339");
    let left = at.duration_since(SystemTime::now()).expect("in the future");
    assert!(left <= DAY, "{resets_at} is within a day");
    let (status, body) = app
        .reply(&t, &v.conversation_id, "an answer too many")
        .await;
    assert_exceeded(status, &body, "messages_per_day", 3, 3, Some(&midnight));

    // Nothing of either was stored.
    let stored = (
        vec!["first".to_string(), "an answer".into(), "second".into()],
        3,
    );
    assert_eq!(history(&app, &v).await, stored);

    // A retry of a message stored before the limit was reached still gets it.
    let (status, again) = app.send(&v, "m1", "first").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"], "{again}");
    assert_eq!(again["seq"], 1, "{again}");

    // The socket's send over the limit: a `limit` frame naming the refused send, with
    // the same details, and nothing stored either.
    let mut ws = app.ws(&v.ws_token, Some(&t.origin)).await.expect("socket");
    next_of(&mut ws, "hello").await;
    send_json(
        &mut ws,
        json!({"type": "send", "client_msg_id": "w1", "text": "from the socket"}),
    )
    .await;
    let frame = next_of(&mut ws, "limit").await;
    assert_eq!(frame["code"], "quota_exceeded", "{frame}");
    assert_eq!(frame["client_msg_id"], "w1", "{frame}");
    assert_eq!(frame["details"], refused["error"]["details"], "{frame}");
    let retry_after = frame["retry_after"].as_u64().expect("retry_after");
    assert!(
        (1..=DAY.as_secs()).contains(&retry_after),
        "counts to the reset: {frame}"
    );
    // The socket's retry of a stored message is acknowledged with it.
    send_json(
        &mut ws,
        json!({"type": "send", "client_msg_id": "m2", "text": "second"}),
    )
    .await;
    let ack = next_of(&mut ws, "ack").await;
    assert_eq!(ack["client_msg_id"], "m2", "{ack}");
    assert_eq!(ack["message"]["seq"], 3, "{ack}");
    assert_eq!(history(&app, &v).await, stored);

    // Refusals took nothing.
    assert_eq!(used_today(&app, &t, Quota::MessagesPerDay).await, 3);
}

/// Two messages and one conversation start a day; the counters' clock moved a day on
/// lets the tenant in again, and the new day's limit applies as the old one did.
async fn new_day(app: &TestApp) {
    let t = app.tenant("acme").await;
    on_plan(
        app,
        &t,
        "tiny",
        json!({"messages_per_day": 2, "conversation_starts_per_day": 1}),
    )
    .await;
    let v = app.visitor(&t).await;
    for id in ["a", "b"] {
        let (status, body) = app.send(&v, id, id).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let today = next_midnight(Duration::ZERO);
    let (status, body) = app.send(&v, "c", "c").await;
    assert_exceeded(status, &body, "messages_per_day", 2, 2, Some(&today));
    let (status, body) = app.reply(&t, &v.conversation_id, "answer").await;
    assert_exceeded(status, &body, "messages_per_day", 2, 2, Some(&today));
    let (w, _) = session(app, &t).await;
    let (status, body) = open_conversation(app, &w).await;
    assert_exceeded(
        status,
        &body,
        "conversation_starts_per_day",
        1,
        1,
        Some(&today),
    );

    app.state.quotas.clock().advance(DAY);

    let (status, body) = app.send(&v, "c", "c").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.reply(&t, &v.conversation_id, "answer").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = open_conversation(app, &w).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let tomorrow = next_midnight(DAY);
    assert_ne!(tomorrow, today);
    let (status, body) = app.send(&v, "d", "d").await;
    assert_exceeded(status, &body, "messages_per_day", 2, 2, Some(&tomorrow));
    let (x, _) = session(app, &t).await;
    let (status, body) = open_conversation(app, &x).await;
    assert_exceeded(
        status,
        &body,
        "conversation_starts_per_day",
        1,
        1,
        Some(&tomorrow),
    );
    assert_eq!(
        history(app, &v).await,
        (
            vec!["a".to_string(), "b".into(), "c".into(), "answer".into()],
            4
        )
    );
}

async fn a_new_utc_day_admits_again(b: Backend) {
    let app = spawn_app(b).await;
    new_day(&app).await;
}

/// An app whose counters are in Redis (one Lua check-and-take per request), under a
/// key prefix of its own.
async fn spawn_with_redis(b: Backend) -> TestApp {
    let prefix = format!("chatorical_test_{}", uuid::Uuid::new_v4().simple());
    spawn_app_with(b, |s: &mut Settings| {
        s.redis.url = Some(Secret::new(crate::test_redis::url()));
        s.redis.key_prefix = prefix;
    })
    .await
}

/// The same with the counters in Redis.
async fn a_new_utc_day_admits_again_with_redis(b: Backend) {
    let app = spawn_with_redis(b).await;
    new_day(&app).await;
    assert_eq!(
        app.state.quotas.redis_errors(),
        0,
        "every check reached Redis"
    );
}

async fn downgrades_lower_and_upgrades_lift_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    put_plan(
        &app,
        "tight",
        plan(
            "Tight",
            json!({"messages_per_day": 2, "active_conversations": 1}),
        ),
    )
    .await;
    on_plan(
        &app,
        &t,
        "roomy",
        json!({"messages_per_day": 10, "active_conversations": 5}),
    )
    .await;
    let v = app.visitor(&t).await;
    let w = app.visitor(&t).await;
    for id in ["a", "b", "c"] {
        let (status, body) = app.send(&v, id, id).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // Down: the very next request is measured against the lower limits.
    set_plan(&app, &t, "tight").await;
    let midnight = next_midnight(Duration::ZERO);
    let (status, body) = app.send(&v, "d", "d").await;
    assert_exceeded(status, &body, "messages_per_day", 2, 3, Some(&midnight));
    let (status, body) = app.reply(&t, &w.conversation_id, "answer").await;
    assert_exceeded(status, &body, "messages_per_day", 2, 3, Some(&midnight));
    let (x, _) = session(&app, &t).await;
    let (status, body) = open_conversation(&app, &x).await;
    assert_exceeded(status, &body, "active_conversations", 1, 2, None);

    // Up: lifted for the very next request.
    set_plan(&app, &t, "roomy").await;
    let (status, body) = app.send(&v, "d", "d").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = open_conversation(&app, &x).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Changing the plan itself counts at once too.
    put_plan(&app, "roomy", plan("Roomy", json!({"messages_per_day": 4}))).await;
    let (status, body) = app.send(&v, "e", "e").await;
    assert_exceeded(status, &body, "messages_per_day", 4, 4, Some(&midnight));
    put_plan(&app, "roomy", plan("Roomy", json!({"messages_per_day": 5}))).await;
    let (status, body) = app.send(&v, "e", "e").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(history(&app, &v).await.1, 5);
    assert_eq!(used_today(&app, &t, Quota::MessagesPerDay).await, 5);
}

/// A socket takes each send's quota while it reads the plan, against the limit its
/// previous send read: a plan changed between two sends still decides the next one, a
/// send refused for the rate takes nothing, and the counter stays exact.
async fn a_socket_measures_each_send_against_the_plan_as_it_is_now(b: Backend) {
    let app = spawn_app_with(b, |s| s.limits.messages_per_visitor_per_min = 6).await;
    socket_sends_follow_the_plan(&app).await;
}

/// The same with the counters in Redis.
async fn a_socket_measures_each_send_against_the_plan_as_it_is_now_with_redis(b: Backend) {
    let prefix = format!("chatorical_test_{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(b, |s: &mut Settings| {
        s.redis.url = Some(Secret::new(crate::test_redis::url()));
        s.redis.key_prefix = prefix;
        s.limits.messages_per_visitor_per_min = 6;
    })
    .await;
    socket_sends_follow_the_plan(&app).await;
    assert_eq!(
        app.state.quotas.redis_errors(),
        0,
        "every take reached Redis"
    );
}

async fn socket_sends_follow_the_plan(app: &TestApp) {
    let t = app.tenant("acme").await;
    put_plan(app, "tight", plan("Tight", json!({"messages_per_day": 2}))).await;
    on_plan(app, &t, "roomy", json!({"messages_per_day": 10})).await;
    let v = app.visitor(&t).await;
    let mut ws = app.ws(&v.ws_token, Some(&t.origin)).await.expect("socket");
    next_of(&mut ws, "hello").await;
    let mut send = async |id: &str| {
        send_json(
            &mut ws,
            json!({"type": "send", "client_msg_id": id, "text": id}),
        )
        .await;
        loop {
            let frame = crate::helpers::next_json(&mut ws).await;
            if ["ack", "limit", "error"].contains(&frame["type"].as_str().unwrap_or_default()) {
                assert_eq!(frame["client_msg_id"], id, "{frame}");
                return frame;
            }
        }
    };
    // Three under the roomy plan: from the second on, each was taken while the plan was
    // read, against the limit of 10 the send before read.
    for id in ["s1", "s2", "s3"] {
        let frame = send(id).await;
        assert_eq!(frame["type"], "ack", "{frame}");
    }
    assert_eq!(used_today(app, &t, Quota::MessagesPerDay).await, 3);

    // Down between two sends: the next is measured against 2, not the 10 it expected.
    set_plan(app, &t, "tight").await;
    let frame = send("s4").await;
    assert_eq!(frame["type"], "limit", "{frame}");
    assert_eq!(frame["code"], "quota_exceeded", "{frame}");
    assert_eq!(
        frame["details"]["limit"], 2,
        "the plan as it is now: {frame}"
    );
    assert_eq!(frame["details"]["used"], 3, "{frame}");
    // The same limit again (taken ahead against 2 this time): refused the same way.
    let frame = send("s5").await;
    assert_eq!(frame["code"], "quota_exceeded", "{frame}");
    assert_eq!(used_today(app, &t, Quota::MessagesPerDay).await, 3);

    // Up again: the very next send is in, though it was taken ahead against 2.
    set_plan(app, &t, "roomy").await;
    let frame = send("s6").await;
    assert_eq!(frame["type"], "ack", "{frame}");
    assert_eq!(frame["message"]["seq"], 4, "{frame}");
    assert_eq!(used_today(app, &t, Quota::MessagesPerDay).await, 4);

    // Over the visitor's rate (6 a minute, 6 sent so far): refused for the rate, and
    // what it took ahead comes back.
    let frame = send("s7").await;
    assert_eq!(frame["type"], "limit", "{frame}");
    assert_eq!(frame["code"], "rate_limited", "{frame}");
    eventually(
        5,
        "the quota taken ahead of a rate-limited send is given back",
        || async { used_today(app, &t, Quota::MessagesPerDay).await == 4 },
    )
    .await;
    let (texts, last_seq) = history(app, &v).await;
    assert_eq!(texts, ["s1", "s2", "s3", "s6"]);
    assert_eq!(last_seq, 4);
}

/// Messages sent while the tenant's plan has no limit are the day's messages all the
/// same: a downgrade later that day counts them, and the usage report shows them.
async fn a_stretch_without_a_limit_still_counts_the_day(b: Backend) {
    stretch_without_a_limit(&spawn_app(b).await).await;
}

async fn a_stretch_without_a_limit_still_counts_the_day_with_redis(b: Backend) {
    let app = spawn_with_redis(b).await;
    stretch_without_a_limit(&app).await;
    assert_eq!(
        app.state.quotas.redis_errors(),
        0,
        "every check reached Redis"
    );
}

async fn stretch_without_a_limit(app: &TestApp) {
    let t = app.tenant("acme").await;
    on_plan(app, &t, "capped", json!({"messages_per_day": 4})).await;
    let v = app.visitor(&t).await;
    let (status, body) = app.send(&v, "a", "a").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    app.unlimited(&t).await;
    for id in ["b", "c", "d", "e"] {
        let (status, body) = app.send(&v, id, id).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let report = usage_report(app, &t).await;
    let messages = &report["quotas"][1];
    assert_eq!(messages["quota"], "messages_per_day", "{report}");
    assert_eq!(
        (
            &messages["limit"],
            &messages["used"],
            &messages["remaining"]
        ),
        (&Value::Null, &json!(5), &Value::Null),
        "{report}"
    );

    // Back on the capped plan the same day: five are sent, four allowed.
    set_plan(app, &t, "capped").await;
    let (status, body) = app.send(&v, "f", "f").await;
    assert_exceeded(
        status,
        &body,
        "messages_per_day",
        4,
        5,
        Some(&next_midnight(Duration::ZERO)),
    );
    assert_eq!(history(app, &v).await.1, 5);

    // A tenant unlimited from the day's start, capped right after its messages.
    let beta = app.tenant("beta").await;
    app.unlimited(&beta).await;
    let w = app.visitor(&beta).await;
    for id in ["a", "b", "c"] {
        let (status, body) = app.send(&w, id, id).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    set_plan(app, &beta, "capped").await;
    let (status, body) = app.send(&w, "d", "d").await;
    assert_eq!(status, StatusCode::CREATED, "the fourth: {body}");
    let (status, body) = app.send(&w, "e", "e").await;
    assert_exceeded(
        status,
        &body,
        "messages_per_day",
        4,
        4,
        Some(&next_midnight(Duration::ZERO)),
    );
}

// ---------------------------------------------------------------------------
// conversation_starts_per_day and active_conversations
// ---------------------------------------------------------------------------

async fn conversation_starts_are_limited_and_an_open_conversation_is_not_charged_again(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    on_plan(
        &app,
        &t,
        "starter",
        json!({"conversation_starts_per_day": 2}),
    )
    .await;

    let (a, _) = session(&app, &t).await;
    let (status, first) = open_conversation(&app, &a).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    // Asking again for the open conversation starts nothing and is not charged: the
    // second visitor below still gets the plan's second start.
    let (status, again) = open_conversation(&app, &a).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    let (b_token, _) = session(&app, &t).await;
    let (status, second) = open_conversation(&app, &b_token).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");

    // A new visitor: the session itself is fine, the conversation is not.
    let midnight = next_midnight(Duration::ZERO);
    let (c, c_ws) = session(&app, &t).await;
    let (status, body) = open_conversation(&app, &c).await;
    assert_exceeded(
        status,
        &body,
        "conversation_starts_per_day",
        2,
        2,
        Some(&midnight),
    );
    // Their first send on the socket would start one: a `limit` frame instead.
    let mut ws = app.ws(&c_ws, Some(&t.origin)).await.expect("socket");
    let hello = next_of(&mut ws, "hello").await;
    assert_eq!(hello["conversation_id"], Value::Null, "{hello}");
    send_json(
        &mut ws,
        json!({"type": "send", "client_msg_id": "c1", "text": "hello?"}),
    )
    .await;
    let frame = next_of(&mut ws, "limit").await;
    assert_eq!(frame["code"], "quota_exceeded", "{frame}");
    assert_eq!(frame["client_msg_id"], "c1", "{frame}");
    assert_eq!(frame["details"], body["error"]["details"], "{frame}");

    // Visitors with an open conversation carry on.
    let v = fixture(a.clone(), &first);
    let (status, msg) = app.send(&v, "m1", "still here").await;
    assert_eq!(status, StatusCode::CREATED, "{msg}");
    let (status, again) = open_conversation(&app, &b_token).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], second["id"]);

    // A start is a start: closing a conversation gives none back.
    close(&app, &t, &v.conversation_id).await;
    let (status, body) = open_conversation(&app, &a).await;
    assert_exceeded(
        status,
        &body,
        "conversation_starts_per_day",
        2,
        2,
        Some(&midnight),
    );
    assert_eq!(
        used_today(&app, &t, Quota::ConversationStartsPerDay).await,
        2
    );
    let (status, list) = app
        .json(Method::GET, "/v1/admin/conversations", Some(&t.key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list["conversations"]
            .as_array()
            .expect("conversations")
            .len(),
        2,
        "{list}"
    );
}

async fn the_open_conversation_cap_frees_up_when_one_closes(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    on_plan(
        &app,
        &t,
        "cap",
        json!({"active_conversations": 2, "conversation_starts_per_day": 10}),
    )
    .await;
    let (a, _) = session(&app, &t).await;
    let (status, first) = open_conversation(&app, &a).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (b_token, _) = session(&app, &t).await;
    let (status, second) = open_conversation(&app, &b_token).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");

    let (c, _) = session(&app, &t).await;
    let (status, body) = open_conversation(&app, &c).await;
    assert_exceeded(status, &body, "active_conversations", 2, 2, None);
    // At the cap, the open ones are still theirs.
    let (status, again) = open_conversation(&app, &b_token).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], second["id"]);
    // A refusal by the cap is no start.
    assert_eq!(
        used_today(&app, &t, Quota::ConversationStartsPerDay).await,
        2
    );

    close(&app, &t, first["id"].as_str().expect("id")).await;
    let (status, third) = open_conversation(&app, &c).await;
    assert_eq!(status, StatusCode::CREATED, "{third}");
    let (d, _) = session(&app, &t).await;
    let (status, body) = open_conversation(&app, &d).await;
    assert_exceeded(status, &body, "active_conversations", 2, 2, None);
    // The first visitor, whose conversation is closed, is a new start and so capped too.
    let (status, body) = open_conversation(&app, &a).await;
    assert_exceeded(status, &body, "active_conversations", 2, 2, None);
    assert_eq!(
        used_today(&app, &t, Quota::ConversationStartsPerDay).await,
        3
    );
    let (status, list) = app
        .json(
            Method::GET,
            "/v1/admin/conversations?status=open",
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let open: Vec<&str> = list["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    let mut wanted = vec![
        second["id"].as_str().expect("id"),
        third["id"].as_str().expect("id"),
    ];
    let mut open = open;
    open.sort_unstable();
    wanted.sort_unstable();
    assert_eq!(open, wanted);
}

// ---------------------------------------------------------------------------
// topic_renames_per_day
// ---------------------------------------------------------------------------

async fn topic_renames_are_limited_and_a_same_name_rename_is_free(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    on_plan(
        &t.app,
        &t.tenant,
        "renames",
        json!({"topic_renames_per_day": 1}),
    )
    .await;
    let (v, thread) = visitor_with_topic(&t).await;

    let (status, view) = patch_subject(&t, &v.conversation_id, json!("Order 42")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    t.fake
        .wait_for_calls("editforumtopic", 1, Duration::from_secs(10))
        .await;
    // The same subject again renames nothing and so takes nothing.
    let (status, view) = patch_subject(&t, &v.conversation_id, json!("Order 42")).await;
    assert_eq!(status, StatusCode::OK, "{view}");

    let midnight = next_midnight(Duration::ZERO);
    let (status, body) = patch_subject(&t, &v.conversation_id, json!("Order 43")).await;
    assert_exceeded(
        status,
        &body,
        "topic_renames_per_day",
        1,
        1,
        Some(&midnight),
    );
    let (status, shown) = t
        .app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}", v.conversation_id),
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(
        shown["subject"], "Order 42",
        "the refused subject is not stored"
    );

    // `/subject` from the topic past the limit: not renamed, one notice in the topic.
    let command = topic_text_update(40, t.group, thread, 9100, AGENT, "Ana", "/subject Order 44");
    assert_eq!(
        t.fake
            .deliver_update(&t.token, &command)
            .await
            .expect("webhook call"),
        StatusCode::OK
    );
    let notice = format!(
        "Subject not changed: the plan's limit of 1 (topic_renames_per_day) is reached. It resets at {midnight}."
    );
    eventually(10, "the notice reaches the topic", || async {
        t.fake
            .sent_messages(t.group)
            .iter()
            .any(|m| m.thread_id == Some(thread) && m.text == notice)
    })
    .await;

    // A visitor's name past the limit is stored; their topic keeps its name.
    let (w, w_thread) = {
        let w = t.app.visitor(&t.tenant).await;
        let (status, body) = t.app.send(&w, "w1", "hi from w").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        settled(&t).await;
        let thread = t
            .fake
            .sent_messages(t.group)
            .iter()
            .find(|m| m.text == "hi from w")
            .and_then(|m| m.thread_id)
            .expect("a topic for w");
        (w, thread)
    };
    let before = topic_name(&t, w_thread);
    let (status, who) = identify(&t, &w.token, json!({"name": "Bob"})).await;
    assert_eq!(status, StatusCode::OK, "{who}");
    assert_eq!(who["name"], "Bob");

    settled(&t).await;
    assert_eq!(edits(&t).len(), 1, "exactly the one allowed editForumTopic");
    assert_eq!(topic_name(&t, thread), "Order 42");
    assert_eq!(topic_name(&t, w_thread), before);
    assert_eq!(rename_items(&t).await.len(), 1);
    assert_eq!(
        used_today(&t.app, &t.tenant, Quota::TopicRenamesPerDay).await,
        1
    );

    // The next day renames again.
    t.app.state.quotas.clock().advance(DAY);
    let (status, view) = patch_subject(&t, &v.conversation_id, json!("Order 43")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let calls = t
        .fake
        .wait_for_calls("editforumtopic", 2, Duration::from_secs(10))
        .await;
    assert_eq!(calls[1].name(), Some("Order 43"));
}

// ---------------------------------------------------------------------------
// Telegram
// ---------------------------------------------------------------------------

async fn an_over_limit_telegram_reply_is_not_stored_and_gets_one_notice(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    on_plan(&t.app, &t.tenant, "two", json!({"messages_per_day": 2})).await;
    // The visitor's "hello" is the first of the two.
    let (v, thread) = visitor_with_topic(&t).await;
    let mut ws = t
        .app
        .ws(&v.ws_token, Some(&t.tenant.origin))
        .await
        .expect("socket");
    next_of(&mut ws, "hello").await;
    let deliver = async |update_id: u32, message_id: i32, text: &str| {
        let update = topic_text_update(update_id, t.group, thread, message_id, AGENT, "Ana", text);
        t.fake
            .deliver_update(&t.token, &update)
            .await
            .expect("webhook call")
    };

    assert_eq!(deliver(50, 9200, "one").await, StatusCode::OK);
    let frame = next_of(&mut ws, "message").await;
    assert_eq!(frame["message"]["text"], "one");

    // Over the limit: acknowledged (Telegram must not retry), not stored, not shown.
    let over_quota = || {
        t.app
            .state
            .webhook
            .over_quota
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = over_quota();
    for (n, text) in ["two", "three", "four"].into_iter().enumerate() {
        let n = u32::try_from(n).expect("small");
        assert_eq!(
            deliver(51 + n, 9201 + i32::try_from(n).expect("small"), text).await,
            StatusCode::OK
        );
    }
    assert_eq!(over_quota() - before, 3);
    assert_eq!(
        history(&t.app, &v).await,
        (vec!["hello".to_string(), "one".into()], 2)
    );
    // Nor did the visitor's socket get any of them.
    let quiet = tokio::time::timeout(Duration::from_millis(500), next_of(&mut ws, "message")).await;
    assert!(quiet.is_err(), "the visitor saw {quiet:?}");

    // One notice, however many answers were refused within the hour.
    let midnight = next_midnight(Duration::ZERO);
    let notice = format!(
        "Not delivered to the visitor: the plan's limit of 2 (messages_per_day) is reached. It resets at {midnight}."
    );
    eventually(10, "the notice reaches the topic", || async {
        t.fake
            .sent_messages(t.group)
            .iter()
            .any(|m| m.thread_id == Some(thread) && m.text == notice)
    })
    .await;
    settled(&t).await;
    let notices: Vec<_> = t
        .fake
        .sent_messages(t.group)
        .into_iter()
        .filter(|m| m.text.starts_with("Not delivered to the visitor"))
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].thread_id, Some(thread));
    assert_eq!(
        used_today(&t.app, &t.tenant, Quota::MessagesPerDay).await,
        2
    );

    // The next day an answer goes through again.
    t.app.state.quotas.clock().advance(DAY);
    assert_eq!(deliver(60, 9300, "good morning").await, StatusCode::OK);
    let frame = next_of(&mut ws, "message").await;
    assert_eq!(frame["message"]["text"], "good morning");
}

// ---------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------

/// A plan with only the given channels.
fn plan_with_channels(name: &str, channels: Value, features: Value) -> Value {
    json!({
        "name": name,
        "active": true,
        "limits": {},
        "channels": channels,
        "features": features,
    })
}

async fn a_plan_without_telegram_refuses_setup_and_holds_delivery(b: Backend) {
    // Setup is refused before anything reaches Telegram.
    let fake = FakeTelegram::start_local().await;
    let api_url = fake.api_url();
    let app = spawn_app_with(b, |s| {
        s.telegram.api_url = api_url;
        s.telegram.request_timeout_secs = 3;
    })
    .await;
    let beta = app.tenant("beta").await;
    put_plan(
        &app,
        "web",
        plan_with_channels("Web only", json!(["widget"]), json!({})),
    )
    .await;
    set_plan(&app, &beta, "web").await;
    let token = fake_bot_and_group(&fake, 222, -100222);
    let (status, body) = app
        .json(
            Method::PUT,
            "/v1/admin/telegram",
            Some(&beta.key),
            Some(json!({"bot_token": token, "group_chat_id": -100222})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "plan_restricted", "{body}");
    assert_eq!(body["error"]["details"], json!({"channel": "telegram"}));
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    assert!(fake.webhook(&token).is_none());
    // On a plan with Telegram the same request connects.
    set_plan(&app, &beta, "free").await;
    connect_telegram(&app, &beta, &token, -100222).await;
    drop(app);
    drop(fake);

    // A connected tenant moved to such a plan: messages are stored, held, and delivered
    // in order once the plan includes Telegram again.
    let t = spawn_with_telegram(b, |_| {}).await;
    put_plan(
        &t.app,
        "web",
        plan_with_channels("Web only", json!(["widget"]), json!({})),
    )
    .await;
    let (v, thread) = visitor_with_topic(&t).await;
    set_plan(&t.app, &t.tenant, "web").await;
    let sent_before = t.fake.calls_of("sendmessage").len();
    for (id, text) in [("p1", "while paused 1"), ("p2", "while paused 2")] {
        let (status, body) = t.app.send(&v, id, text).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // The visitor types: nothing of it reaches Telegram either.
    let mut ws = t
        .app
        .ws(&v.ws_token, Some(&t.tenant.origin))
        .await
        .expect("socket");
    next_of(&mut ws, "hello").await;
    send_json(&mut ws, json!({"type": "typing"})).await;
    let typing = &t.app.state.typing;
    eventually(5, "the typing is handled", || async {
        TypingOutcome::ALL
            .iter()
            .map(|o| typing.count(*o))
            .sum::<u64>()
            == 1
    })
    .await;
    // The worker looked at the lane's head and held it (the second waits behind it).
    eventually(10, "the worker holds the items", || async {
        let mut pc = t.app.state.db.conn().await.expect("conn");
        let items = repo::outbox::list(&mut pc.as_conn(), &t.tenant.id, None, 500)
            .await
            .expect("outbox");
        let held: Vec<_> = items
            .iter()
            .filter(|i| i.kind == "telegram.send_message" && i.status == "queued")
            .collect();
        held.len() == 2
            && held.iter().any(|i| {
                i.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("plan does not include Telegram"))
            })
    })
    .await;
    assert_eq!(
        t.fake.calls_of("sendmessage").len(),
        sent_before,
        "nothing was sent while the plan leaves Telegram out"
    );
    assert!(
        t.fake.calls_of("sendchataction").is_empty(),
        "{:?}",
        t.fake.calls_of("sendchataction")
    );
    assert_eq!(
        history(&t.app, &v).await,
        (
            vec![
                "hello".to_string(),
                "while paused 1".into(),
                "while paused 2".into()
            ],
            3
        )
    );

    // Back on a plan with Telegram: both go out, in order, into the topic.
    set_plan(&t.app, &t.tenant, "free").await;
    settled(&t).await;
    let texts: Vec<String> = t
        .fake
        .sent_messages(t.group)
        .into_iter()
        .filter(|m| m.thread_id == Some(thread))
        .map(|m| m.text)
        .filter(|text| text.starts_with("while paused"))
        .collect();
    assert_eq!(texts, ["while paused 1", "while paused 2"]);
}

async fn a_plan_without_widget_refuses_sessions_and_sessions_carry_features(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let v = app.visitor(&t).await;
    put_plan(
        &app,
        "bots",
        plan_with_channels("Telegram only", json!(["telegram"]), json!({})),
    )
    .await;
    set_plan(&app, &t, "bots").await;
    // New visitors and returning ones alike.
    for body in [
        json!({"widget_key": t.widget_key}),
        json!({"widget_key": t.widget_key, "visitor_token": v.token}),
    ] {
        let (status, err) = app
            .json(Method::POST, "/v1/widget/session", None, Some(body))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
        assert_eq!(code(&err), "plan_restricted", "{err}");
        assert_eq!(err["error"]["details"], json!({"channel": "widget"}));
    }

    // A plan with the widget and features: the session carries exactly the features.
    let features = json!({"custom_branding": true, "file_uploads": false});
    put_plan(
        &app,
        "branded",
        plan_with_channels("Branded", json!(["widget"]), features.clone()),
    )
    .await;
    set_plan(&app, &t, "branded").await;
    let (status, s) = app
        .json(
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": t.widget_key, "visitor_token": v.token})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["features"], features, "{s}");
    assert_eq!(s["conversation_id"], v.conversation_id.as_str());
    // The free plan has none.
    set_plan(&app, &t, "free").await;
    let (status, s) = app
        .json(
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": t.widget_key})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["features"], json!({}), "{s}");
}

// ---------------------------------------------------------------------------
// Usage
// ---------------------------------------------------------------------------

async fn usage_reports_the_plan_and_every_quota(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    put_plan(
        &app,
        "metered",
        plan(
            "Metered",
            json!({
                "conversation_starts_per_day": 5,
                "messages_per_day": 10,
                "topic_renames_per_day": 3,
                "active_conversations": 4,
                "retention_days": 14,
            }),
        ),
    )
    .await;
    set_plan(&app, &t, "metered").await;

    // Two starts (both open, then one closed), two visitor messages and an agent
    // answer, one rename; and a refused request that counts for nothing.
    let v = app.visitor(&t).await;
    let w = app.visitor(&t).await;
    for id in ["a", "b"] {
        let (status, body) = app.send(&v, id, id).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = app.reply(&t, &v.conversation_id, "answer").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.send(&v, "a", "a").await;
    assert_eq!(status, StatusCode::OK, "a retry is no new message: {body}");
    let (status, body) = app
        .json(
            Method::PATCH,
            &format!("/v1/admin/conversations/{}", v.conversation_id),
            Some(&t.key),
            Some(json!({"subject": "Refund"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    close(&app, &t, &w.conversation_id).await;

    let midnight = next_midnight(Duration::ZERO);
    let report = usage_report(&app, &t).await;
    assert_eq!(
        report["plan"],
        json!({"code": "metered", "name": "Metered", "retention_days": 14}),
        "{report}"
    );
    assert_eq!(
        report["quotas"],
        json!([
            {"quota": "conversation_starts_per_day", "limit": 5, "used": 2, "remaining": 3, "resets_at": midnight},
            {"quota": "messages_per_day", "limit": 10, "used": 3, "remaining": 7, "resets_at": midnight},
            {"quota": "topic_renames_per_day", "limit": 3, "used": 1, "remaining": 2, "resets_at": midnight},
            {"quota": "active_conversations", "limit": 4, "used": 1, "remaining": 3, "resets_at": null},
        ]),
        "{report}"
    );

    // Unlimited quotas say so; used beyond a lowered limit leaves nothing remaining.
    put_plan(
        &app,
        "metered",
        plan("Metered", json!({"messages_per_day": 2})),
    )
    .await;
    let report = usage_report(&app, &t).await;
    assert_eq!(
        report["plan"],
        json!({"code": "metered", "name": "Metered", "retention_days": null}),
        "{report}"
    );
    let quotas = report["quotas"].as_array().expect("quotas");
    assert_eq!(
        quotas[1],
        json!({"quota": "messages_per_day", "limit": 2, "used": 3, "remaining": 0, "resets_at": midnight}),
        "{report}"
    );
    for (i, name) in [
        (0, "conversation_starts_per_day"),
        (2, "topic_renames_per_day"),
        (3, "active_conversations"),
    ] {
        assert_eq!(quotas[i]["quota"], name, "{report}");
        assert_eq!(quotas[i]["limit"], Value::Null, "{report}");
        assert_eq!(quotas[i]["remaining"], Value::Null, "{report}");
    }
    assert_eq!(quotas[3]["used"], 1, "open now: {report}");
}
