//! The visible backlog (`GET /v1/admin/outbox/summary`, `chatorical outbox status`,
//! `/metrics`), the one notice per backlog episode in the group's General topic, and
//! honest budgets: every call that posts into a group — typing included — stays
//! within the group's budget, against a fake that enforces Telegram's limits.

use std::{process::Command, time::Duration};

use chatorical::{
    config::{Secret, WorkerSettings},
    outbox::backlog::Monitor,
    telegram::typing::TypingOutcome,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fake_telegram::{COUNTED_METHODS, Call, FakeTelegram, Limits};
use crate::helpers::{
    Backend, TelegramFixture, TestApp, code, eventually, next_of, send_json, spawn_with_telegram,
};
use crate::on_both_backends;

on_both_backends!(
    the_backlog_shows_in_the_api_the_cli_and_metrics_to_whom_it_belongs,
    one_notice_per_backlog_episode_in_the_general_topic,
    several_workers_post_the_notice_once,
    every_call_into_the_group_stays_within_its_budget,
);

/// How the backlog notice begins.
const NOTICE: &str = "Telegram is falling behind";

async fn summary(app: &TestApp, key: &str, query: &str) -> (StatusCode, Value) {
    app.json(
        Method::GET,
        &format!("/v1/admin/outbox/summary{query}"),
        Some(key),
        None,
    )
    .await
}

/// `chatorical <args> --json` against the app's database and worker settings.
fn cli_json(app: &TestApp, args: &[&str]) -> Value {
    let s = &app.state.settings;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatorical"));
    cmd.arg("--data-dir").arg(&s.server.data_dir).arg("--json");
    if let Some(url) = &s.database.url {
        cmd.args(["--database-url", Secret::expose(url)]);
    }
    if let Some(key) = &s.secrets.master_key_file {
        cmd.env("CHATORICAL_SECRETS__MASTER_KEY_FILE", key);
    }
    let w = &s.worker;
    for (name, value) in [
        ("PER_GROUP_PER_MIN", w.per_group_per_min.to_string()),
        ("PER_CHAT_PER_SEC", w.per_chat_per_sec.to_string()),
        ("PER_BOT_PER_SEC", w.per_bot_per_sec.to_string()),
        ("BUDGET_TIME_SCALE", w.budget_time_scale.to_string()),
    ] {
        cmd.env(format!("CHATORICAL_WORKER__{name}"), value);
    }
    let out = cmd.args(args).output().expect("run chatorical");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The value of the metric `name` for the lane, from `/metrics`.
async fn metric(app: &TestApp, name: &str, lane: &str) -> Option<f64> {
    let resp = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("metrics text");
    text.lines()
        .find(|l| {
            l.starts_with(&format!("{name}{{"))
                && l.contains(&format!("lane=\"{lane}\""))
                && l.contains("tenant=\"acme\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The lane of the fixture's group.
fn lane(t: &TelegramFixture) -> String {
    format!("tg:{}:{}", t.tenant.id, t.group)
}

async fn the_backlog_shows_in_the_api_the_cli_and_metrics_to_whom_it_belongs(b: Backend) {
    // 2 calls a minute per group; the connection paused, so nothing leaves and the
    // backlog is exactly what was queued.
    let t = spawn_with_telegram(b, |s| {
        s.worker.per_group_per_min = 2;
        s.worker.per_chat_per_sec = 1;
        s.worker.per_bot_per_sec = 30;
    })
    .await;
    let app = &t.app;
    let (status, body) = app
        .json(
            Method::PATCH,
            "/v1/admin/telegram",
            Some(&t.tenant.key),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let other = app.tenant("beta").await;
    let (status, empty) = summary(app, &t.tenant.key, "").await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(empty["lanes"], json!([]), "nothing waits yet");
    assert_eq!(empty["warn_after_secs"], 60);

    let v = app.visitor(&t.tenant).await;
    for i in 0..4 {
        let (status, body) = app.send(&v, &format!("m{i}"), &format!("text {i}")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let sent_at = std::time::Instant::now();
    // The worker tries the head, finds the connection paused and puts it back.
    eventually(10, "four items waiting, none in flight", || async {
        let (_, s) = summary(app, &t.tenant.key, "").await;
        s["lanes"][0]["items"] == 4 && s["lanes"][0]["in_flight"] == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, s) = summary(app, &t.tenant.key, "").await;
    let lanes = s["lanes"].as_array().expect("lanes");
    assert_eq!(lanes.len(), 1, "{s}");
    let l = &lanes[0];
    assert_eq!(l["tenant"], "acme");
    assert_eq!(l["tenant_id"], t.tenant.id.as_str());
    assert_eq!(l["lane"], lane(&t));
    assert_eq!(l["chat_id"], t.group);
    let age = l["oldest_age_secs"].as_f64().expect("age");
    assert!(
        age >= 0.3 && age <= sent_at.elapsed().as_secs_f64() + 1.0,
        "the oldest waited since it was sent: {age}"
    );
    assert_eq!(l["budget_per_min"], 2.0, "the group budget binds");
    assert_eq!(l["drain_secs"], 120.0, "4 items at 2 a minute");
    assert_eq!(
        l["notice_posted"], false,
        "a paused connection gets no notice"
    );
    assert!(
        l["oldest_queued_at"]
            .as_str()
            .is_some_and(|a| a.ends_with('Z'))
    );

    // The platform key: every tenant, or the one named.
    let (_, all) = summary(app, &app.platform_key, "").await;
    assert!(
        all["lanes"]
            .as_array()
            .expect("lanes")
            .iter()
            .any(|x| x["lane"] == lane(&t) && x["items"] == 4),
        "{all}"
    );
    let (_, named) = summary(app, &app.platform_key, "?tenant=acme").await;
    assert_eq!(named["lanes"].as_array().map(Vec::len), Some(1), "{named}");
    let (_, beta) = summary(app, &app.platform_key, "?tenant=beta").await;
    assert_eq!(beta["lanes"], json!([]));

    // Another tenant sees nothing of it, and cannot name it.
    let (status, theirs) = summary(app, &other.key, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(theirs["lanes"], json!([]), "beta's own (none)");
    let (status, body) = summary(app, &other.key, "?tenant=acme").await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    // Without the scope: 403.
    let (_, key) = app.key(&t.tenant, &["conversations:read"]).await;
    let (status, body) = summary(app, &key, "").await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));

    // The CLI shows the same lane.
    let out = cli_json(app, &["outbox", "status", "--tenant", "acme"]);
    let cl = &out["lanes"][0];
    assert_eq!(cl["lane"], lane(&t), "{out}");
    assert_eq!(cl["items"], 4);
    assert_eq!(cl["drain_secs"], 120.0);
    assert!(cl["oldest_age_secs"].as_f64().expect("age") >= age);
    let everyone = cli_json(app, &["outbox", "status"]);
    assert!(
        everyone["lanes"]
            .as_array()
            .expect("lanes")
            .iter()
            .any(|x| x["lane"] == lane(&t)),
        "{everyone}"
    );

    // /metrics: the same numbers by tenant slug and lane.
    let l = lane(&t);
    assert_eq!(
        metric(app, "chatorical_outbox_backlog_items", &l).await,
        Some(4.0)
    );
    assert_eq!(
        metric(app, "chatorical_outbox_backlog_drain_seconds", &l).await,
        Some(120.0)
    );
    let shown = metric(app, "chatorical_outbox_backlog_oldest_seconds", &l)
        .await
        .expect("oldest");
    assert!(shown >= age, "{shown} >= {age}");
}

/// The backlog notices the fake received, in order.
fn notices(fake: &FakeTelegram, group: i64) -> Vec<crate::fake_telegram::SentMessage> {
    fake.sent_messages(group)
        .into_iter()
        .filter(|m| m.text.starts_with(NOTICE))
        .collect()
}

async fn one_notice_per_backlog_episode_in_the_general_topic(b: Backend) {
    // 3 calls per group window of 2 s (3 a minute, 30 times faster); a backlog is
    // warned about once its oldest item waited 1 s.
    let t = spawn_with_telegram(b, |s| {
        s.worker.per_group_per_min = 3;
        s.worker.budget_time_scale = 30;
        s.worker.backlog_warn_secs = 1;
    })
    .await;
    t.app.unlimited(&t.tenant).await;
    let v = t.app.visitor(&t.tenant).await;
    let mut texts = Vec::new();
    let mut burst = |from: usize| {
        let mut out = Vec::new();
        for i in from..from + 5 {
            out.push(format!("burst {i}"));
        }
        texts.extend(out.clone());
        out
    };

    // Episode 1: a topic, its card and five messages at 3 calls per 2 s.
    for text in burst(0) {
        let (status, body) = t.app.send(&v, &text.replace(' ', "_"), &text).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    eventually(15, "the notice posted during the backlog", || async {
        let (_, s) = summary(&t.app, &t.tenant.key, "").await;
        s["lanes"][0]["notice_posted"] == true
    })
    .await;
    let items = metric(&t.app, "chatorical_outbox_backlog_items", &lane(&t)).await;
    assert!(items.is_some_and(|n| n > 0.0), "{items:?}");
    eventually(30, "the backlog drained, notice included", || async {
        let (_, s) = summary(&t.app, &t.tenant.key, "").await;
        s["lanes"] == json!([]) && !notices(&t.fake, t.group).is_empty()
    })
    .await;
    let first = notices(&t.fake, t.group);
    assert_eq!(first.len(), 1, "one notice: {first:#?}");
    assert_eq!(
        metric(&t.app, "chatorical_outbox_backlog_items", &lane(&t)).await,
        Some(0.0),
        "a cleared lane shows 0"
    );
    assert_eq!(first[0].thread_id, None, "in the General topic");
    assert!(
        first[0]
            .text
            .contains("chatorical telegram add-relay --tenant acme"),
        "{}",
        first[0].text
    );
    // The episode ends once the monitor sees the lane clear.
    eventually(10, "the episode ended", || async {
        let mut pc = t.app.state.db.conn().await.expect("conn");
        chatorical::db::repo::backlog::running(&mut pc.as_conn(), None)
            .await
            .expect("episodes")
            .is_empty()
    })
    .await;
    assert_eq!(notices(&t.fake, t.group).len(), 1, "not again while clear");

    // Episode 2: a new backlog, a new notice (one).
    for text in burst(5) {
        let (status, body) = t.app.send(&v, &text.replace(' ', "_"), &text).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    eventually(30, "the second backlog drained with its notice", || async {
        let (_, s) = summary(&t.app, &t.tenant.key, "").await;
        s["lanes"] == json!([]) && notices(&t.fake, t.group).len() >= 2
    })
    .await;
    let both = notices(&t.fake, t.group);
    assert_eq!(both.len(), 2, "one per episode: {both:#?}");
    assert_eq!(both[1].thread_id, None);
    // Every visitor message arrived once, in order (a lane with a backlog combines a
    // conversation's waiting messages into one Telegram message).
    let sent: Vec<String> = t
        .fake
        .sent_messages(t.group)
        .into_iter()
        .flat_map(|m| crate::coalescing::entries(&m.text))
        .filter(|m| m.starts_with("burst "))
        .collect();
    assert_eq!(sent, texts);
    assert!(t.fake.throttled().is_empty(), "{:#?}", t.fake.throttled());
}

async fn several_workers_post_the_notice_once(b: Backend) {
    // One call a minute: the topic takes it, everything else waits for a minute.
    let t = spawn_with_telegram(b, |s| {
        s.worker.per_group_per_min = 1;
        s.worker.backlog_warn_secs = 1;
    })
    .await;
    let v = t.app.visitor(&t.tenant).await;
    for i in 0..3 {
        let (status, body) = t.app.send(&v, &format!("w{i}"), "waiting").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Two more workers' monitors (other processes, say) check at the same moments as
    // each other and as the app's own.
    let settings = WorkerSettings {
        backlog_warn_secs: 1,
        ..t.app.state.settings.worker.clone()
    };
    let a = Monitor::new(t.app.state.db.clone(), settings.clone(), Default::default());
    let c = Monitor::new(t.app.state.db.clone(), settings, Default::default());
    let mut posted = 0;
    for _ in 0..10 {
        let (x, y) = tokio::join!(a.check(), c.check());
        let (x, y) = (x.expect("check"), y.expect("check"));
        assert_eq!(
            (x.over, y.over),
            (1, 1),
            "both see the lane over the threshold"
        );
        posted += x.notices + y.notices;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, list) = t
        .app
        .json(
            Method::GET,
            "/v1/admin/outbox?status=queued",
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let queued: Vec<&Value> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["kind"] == "telegram.send_text")
        .collect();
    assert_eq!(queued.len(), 1, "one notice queued: {list}");
    assert!(posted <= 1, "the app's own monitor may have been first");
    let (_, s) = summary(&t.app, &t.tenant.key, "").await;
    assert_eq!(s["lanes"][0]["notice_posted"], true, "{s}");
    assert_eq!(
        s["lanes"][0]["items"], 4,
        "three messages and the notice: {s}"
    );
}

/// The calls into `chat` that post into it, in arrival order.
fn posting_calls(fake: &FakeTelegram, chat: i64) -> Vec<Call> {
    let mut calls: Vec<Call> = fake
        .calls()
        .into_iter()
        .filter(|c| COUNTED_METHODS.contains(&c.method.as_str()) && c.chat_id() == Some(chat))
        .collect();
    calls.sort_by_key(|c| c.at);
    calls
}

async fn every_call_into_the_group_stays_within_its_budget(b: Backend) {
    // The shipped budgets (30/s per bot, 1/s per chat, 20/min per group) ten times
    // faster, against a fake enforcing Telegram's limits in the same time.
    const SCALE: u32 = 10;
    let t = spawn_with_telegram(b, |s| {
        // Every message its own call, so the group's window fills (combined messages
        // are tested in coalescing.rs).
        s.worker.coalesce = false;
        crate::helpers::shipped_budgets(s, SCALE);
        s.worker.backlog_warn_secs = 1;
    })
    .await;
    t.app.unlimited(&t.tenant).await;
    let limits = Limits::telegram().scaled(SCALE);
    t.fake.set_limits(Some(limits));
    let app = &t.app;

    // A first conversation with a topic, then the visitor types in a quiet group.
    let v0 = app.visitor(&t.tenant).await;
    app.send(&v0, "first", "first").await;
    t.fake
        .wait_for_calls("sendmessage", 2, Duration::from_secs(10))
        .await;
    let mut ws = app
        .ws(&v0.ws_token, Some(&t.tenant.origin))
        .await
        .expect("socket");
    next_of(&mut ws, "hello").await;
    // Past the chat's window (100 ms) of the last message: the group is quiet.
    tokio::time::sleep(Duration::from_millis(250)).await;
    send_json(&mut ws, json!({"type": "typing"})).await;
    let typing = app.state.typing.clone();
    eventually(10, "the typing frame handled", || {
        let n: u64 = TypingOutcome::ALL.iter().map(|o| typing.count(*o)).sum();
        async move { n == 1 }
    })
    .await;
    let outcomes: Vec<(&str, u64)> = TypingOutcome::ALL
        .iter()
        .map(|o| (o.as_str(), typing.count(*o)))
        .collect();
    assert_eq!(typing.count(TypingOutcome::Sent), 1, "{outcomes:?}");

    // The mix: two more conversations (topics and cards), messages, a rename, a close,
    // an operator's notice, typing in the middle of it, and the backlog notice it
    // provokes.
    let mut visitors = vec![v0.clone()];
    for _ in 0..2 {
        visitors.push(app.visitor(&t.tenant).await);
    }
    let mut ws1 = app
        .ws(&visitors[1].ws_token, Some(&t.tenant.origin))
        .await
        .expect("socket");
    next_of(&mut ws1, "hello").await;
    for round in 0..6 {
        for (n, v) in visitors.iter().enumerate() {
            let text = format!("v{n} message {round}");
            let (status, body) = app.send(v, &format!("v{n}_{round}"), &text).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        if round == 1 {
            let (status, body) = app
                .json(
                    Method::PATCH,
                    // The first conversation's: its topic exists, so this is a call.
                    &format!("/v1/admin/conversations/{}", visitors[0].conversation_id),
                    Some(&t.tenant.key),
                    Some(json!({"subject": "Order 42"})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let (status, body) = app
                .json(
                    Method::POST,
                    "/v1/admin/outbox",
                    Some(&t.tenant.key),
                    Some(json!({"text": "operator notice", "idempotency_key": "n1"})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    let (status, body) = app
        .json(
            Method::POST,
            &format!(
                "/v1/admin/conversations/{}/close",
                visitors[2].conversation_id
            ),
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}: {body}");

    // The second visitor types while the group's window is full (20 calls, its topic
    // among them): the action is dropped, not sent past the budget.
    eventually(20, "a full group window", || async {
        posting_calls(&t.fake, t.group).len() >= 20
    })
    .await;
    send_json(&mut ws1, json!({"type": "typing"})).await;
    eventually(10, "the second typing frame handled", || {
        let n: u64 = TypingOutcome::ALL.iter().map(|o| typing.count(*o)).sum();
        async move { n == 2 }
    })
    .await;
    assert_eq!(
        typing.count(TypingOutcome::OverBudget),
        1,
        "typing in a busy group is dropped"
    );
    eventually(60, "everything delivered", || async {
        let (_, s) = summary(app, &t.tenant.key, "").await;
        s["lanes"] == json!([])
    })
    .await;
    assert!(
        t.fake.throttled().is_empty(),
        "the fake never answered 429: {:#?}",
        t.fake.throttled()
    );
    let calls = posting_calls(&t.fake, t.group);
    let count = |m: &str| calls.iter().filter(|c| c.method == m).count();
    assert_eq!(count("createforumtopic"), 3);
    assert_eq!(count("editforumtopic"), 1, "the rename");
    assert_eq!(count("closeforumtopic"), 1, "the close");
    assert_eq!(
        count("sendchataction"),
        1,
        "typing shown while quiet, only then"
    );
    let sent = t.fake.sent_messages(t.group);
    assert!(sent.iter().any(|m| m.text == "operator notice"));
    assert_eq!(
        sent.iter().filter(|m| m.text.starts_with("v")).count(),
        18,
        "every message once"
    );
    // Counting every posting call, typing included (the fake's own group window
    // leaves typing out): never more than the budget in any window, by the fake's
    // clock and its slack.
    let group_every = limits.per_group.every - limits.slack;
    let group_max = limits.per_group.max;
    for (i, later) in calls.iter().enumerate().skip(group_max) {
        let span = later.at.duration_since(calls[i - group_max].at);
        assert!(
            span >= group_every,
            "{} calls within {span:?}: {:?}",
            group_max + 1,
            calls[i - group_max..=i]
                .iter()
                .map(|c| c.method.as_str())
                .collect::<Vec<_>>()
        );
    }
    let chat_every = limits.per_chat.every - limits.slack;
    for pair in calls.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= chat_every, "two calls {gap:?} apart");
    }
    assert!(
        sent.iter()
            .any(|m| m.text.starts_with(NOTICE) && m.thread_id.is_none()),
        "the backlog this mix builds is noticed, within the budget too"
    );
    eprintln!(
        "honest budgets: {} posting calls ({} typing, {} backlog notices) in {:?}",
        calls.len(),
        count("sendchataction"),
        sent.iter().filter(|m| m.text.starts_with(NOTICE)).count(),
        calls
            .last()
            .map(|l| l.at.duration_since(calls[0].at))
            .unwrap_or_default()
    );
}
