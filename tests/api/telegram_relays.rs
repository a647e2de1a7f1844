//! Relay bots: extra bots of a tenant in its forum group, each with its own budget of
//! messages a minute. Added with getMe/rights checks and sealed secrets; topics spread
//! over the bots and sticky; agents' answers through any bot's webhook stored once;
//! removing a relay hands its topics and pending items to the remaining bots, in order
//! and exactly once. Against the fake Bot API, which counts a group's 20 messages a
//! minute per bot.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fake_telegram::{COUNTED_METHODS, Failure, Limits, topic_text_update};
use crate::helpers::{Backend, TelegramFixture, bot_token, code, eventually, spawn_with_telegram};
use crate::on_both_backends;

on_both_backends!(
    a_relay_is_validated_stored_sealed_audited_listed_and_removed,
    three_bots_spread_the_topics_and_triple_the_group_budget,
    an_agent_reply_through_a_relay_reaches_the_visitor_once,
    removing_a_relay_hands_its_pending_items_to_the_others_in_order_exactly_once,
);

/// Register a relay bot with the fake: `status` in the tenant's group (`None`: not a
/// member), with Manage Topics when an administrator.
fn relay_bot(t: &TelegramFixture, bot_id: u64, status: Option<&str>) -> String {
    let token = bot_token(bot_id);
    t.fake.add_bot(&token, bot_id, &format!("bot{bot_id}"));
    if let Some(status) = status {
        t.fake.set_member(bot_id, t.group, status, true);
    }
    token
}

async fn add_relay(t: &TelegramFixture, token: &str) -> (StatusCode, Value) {
    t.app
        .json(
            Method::PUT,
            "/v1/admin/telegram/relays",
            Some(&t.tenant.key),
            Some(json!({ "bot_token": token })),
        )
        .await
}

/// A relay bot `bot_id`, an admin of the tenant's group, added through the API.
pub(crate) async fn added(t: &TelegramFixture, bot_id: u64) -> String {
    let token = relay_bot(t, bot_id, Some("administrator"));
    let (status, body) = add_relay(t, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    token
}

async fn audit(t: &TelegramFixture, action: &str) -> Vec<Value> {
    let (_, key) = t.app.key(&t.tenant, &["audit:read"]).await;
    let (status, page) = t
        .app
        .json(
            Method::GET,
            &format!("/v1/admin/audit?action={action}&limit=500"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["entries"].as_array().cloned().unwrap_or_default()
}

async fn a_relay_is_validated_stored_sealed_audited_listed_and_removed(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;

    // Refused before anything is stored, each with a clear reason.
    let (status, body) = add_relay(&t, "not-a-token").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(code(&body), "validation_failed");
    let unknown = bot_token(999);
    let (status, body) = add_relay(&t, &unknown).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("refused"),
        "{body}"
    );
    let outsider = relay_bot(&t, 223, None);
    let (status, body) = add_relay(&t, &outsider).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("admin"),
        "{body}"
    );
    let member = relay_bot(&t, 224, Some("member"));
    let (status, body) = add_relay(&t, &member).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not an admin"),
        "{body}"
    );
    let (status, body) = add_relay(&t, &t.token).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("main bot"),
        "{body}"
    );
    assert!(audit(&t, "telegram.relay_added").await.is_empty());

    // A good one: named by id and username, never its token.
    let token = relay_bot(&t, 222, Some("administrator"));
    let (status, body) = add_relay(&t, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["bot_id"], 222);
    assert_eq!(body["bot_username"], "bot222");
    assert!(!body.to_string().contains(&token), "{body}");
    // Its own webhook, on the tenant's URL, with a secret of its own.
    let main_hook = t.fake.webhook(&t.token).expect("main webhook");
    let hook = t.fake.webhook(&token).expect("relay webhook");
    assert_eq!(hook.url, main_hook.url);
    let secret = hook.secret_token.clone().expect("secret");
    assert_ne!(Some(secret.clone()), main_hook.secret_token);

    // Stored sealed, bound to the tenant and this relay.
    let mut pc = t.app.state.db.conn().await.expect("conn");
    let row = chatorical::db::repo::telegram_relays::get(&mut pc.as_conn(), &t.tenant.id, 222)
        .await
        .expect("query")
        .expect("stored");
    drop(pc);
    assert!(!row.bot_token_enc.contains(&token));
    assert!(!row.webhook_secret_enc.contains(&secret));
    let key = t.app.state.bots.key();
    let field = chatorical::telegram::relay_field(222, "bot_token");
    assert_eq!(
        key.open(&t.tenant.id, &field, &row.bot_token_enc)
            .expect("opens"),
        token
    );
    assert!(
        key.open(
            &t.tenant.id,
            &chatorical::telegram::relay_field(223, "bot_token"),
            &row.bot_token_enc
        )
        .is_err(),
        "bound to its relay"
    );
    assert!(key.open("tn_other", &field, &row.bot_token_enc).is_err());

    // `secrets rotate` sees the relay's two values, bound to the relay (a re-encryption
    // opens them for their tenant and field: nothing fails).
    let status = chatorical::secrets::status(&t.app.state.db, key, 100)
        .await
        .expect("status");
    use chatorical::secrets::SealedColumn::{RelayBotToken, RelayWebhookSecret};
    assert_eq!(status.keys[0].secrets.of(RelayBotToken), 1);
    assert_eq!(status.keys[0].secrets.of(RelayWebhookSecret), 1);
    let report = chatorical::secrets::reencrypt(
        &t.app.state.db,
        &chatorical::tenancy::Caller::Operator,
        key,
        100,
        &|_| {},
    )
    .await
    .expect("reencrypt");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.already_current, report.total);

    // One audit entry, without the token or the secret.
    let entries = audit(&t, "telegram.relay_added").await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let text = entries[0].to_string();
    assert!(text.contains("bot222"), "{text}");
    assert!(!text.contains(&token) && !text.contains(&secret), "{text}");

    // Listed, and in the connection's status.
    let (status, list) = t
        .app
        .json(
            Method::GET,
            "/v1/admin/telegram/relays",
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["relays"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["relays"][0]["bot_id"], 222);
    assert!(!list.to_string().contains(&token));
    let (_, status_body) = t
        .app
        .json(Method::GET, "/v1/admin/telegram", Some(&t.tenant.key), None)
        .await;
    assert_eq!(
        status_body["relays"][0]["bot_username"], "bot222",
        "{status_body}"
    );
    assert_eq!(status_body["relays"][0]["open_topics"], 0);

    // `tenants validate` checks the relay: reachable, admin with Manage Topics, webhook.
    let tenant = chatorical::tenancy::tenant_by_slug(&t.app.state.db, &t.tenant.slug)
        .await
        .expect("tenant");
    let relay_checks = |checks: Vec<chatorical::telegram::validate::Check>| {
        checks
            .into_iter()
            .filter(|c| c.check.starts_with("relay @bot222"))
            .map(|c| (c.check, c.ok))
            .collect::<Vec<_>>()
    };
    let validate = || {
        chatorical::telegram::validate::validate(
            &t.app.state.db,
            &t.app.state.bots,
            &tenant,
            &t.app.state.public_url,
            Duration::from_secs(5),
        )
    };
    assert_eq!(
        relay_checks(validate().await),
        vec![
            ("relay @bot222: bot reachable".to_string(), true),
            ("relay @bot222: group admin".to_string(), true),
            ("relay @bot222: webhook".to_string(), true),
        ]
    );
    t.fake.set_member(222, t.group, "member", false);
    let checks = relay_checks(validate().await);
    assert!(
        checks.contains(&("relay @bot222: group admin".to_string(), false)),
        "{checks:?}"
    );
    t.fake.set_member(222, t.group, "administrator", true);

    // Removed: forgotten, its webhook deleted, audited; a second removal is 404.
    let (status, removed) = t
        .app
        .json(
            Method::DELETE,
            "/v1/admin/telegram/relays/222",
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["topics_reassigned"], 0);
    assert!(
        t.fake.webhook(&token).is_none(),
        "the relay's webhook is deleted"
    );
    let (_, list) = t
        .app
        .json(
            Method::GET,
            "/v1/admin/telegram/relays",
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(list["relays"], json!([]));
    let entries = audit(&t, "telegram.relay_removed").await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert!(!entries[0].to_string().contains(&token));
    let (status, body) = t
        .app
        .json(
            Method::DELETE,
            "/v1/admin/telegram/relays/222",
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Relays belong to the group: connecting another group forgets them.
    added(&t, 222).await;
    t.fake.add_group(-100_555, "Other", true);
    t.fake.set_member(111, -100_555, "administrator", true);
    crate::helpers::connect_telegram(&t.app, &t.tenant, &t.token, -100_555).await;
    let (_, list) = t
        .app
        .json(
            Method::GET,
            "/v1/admin/telegram/relays",
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(list["relays"], json!([]), "{list}");
}

/// Budget windows (1 s, 1 s, 60 s) run this many times faster here.
const SCALE: u32 = 10;

async fn three_bots_spread_the_topics_and_triple_the_group_budget(b: Backend) {
    // The budgets as shipped, in windows ten times shorter, against a fake enforcing
    // Telegram's limits (20 a minute per bot and group, 1 a second per chat) in the
    // same time.
    let t = spawn_with_telegram(b, |s| {
        // One call per message: what is measured is the calls three bots may make.
        s.worker.coalesce = false;
        crate::helpers::shipped_budgets(s, SCALE);
    })
    .await;
    t.app.unlimited(&t.tenant).await;
    let limits = Limits::telegram().scaled(SCALE);
    t.fake.set_limits(Some(limits));
    added(&t, 222).await;
    added(&t, 333).await;

    // 30 conversations, two messages each: 30 topics + 30 cards + 60 messages.
    let mut visitors = Vec::new();
    for _ in 0..30 {
        visitors.push(t.app.visitor(&t.tenant).await);
    }
    let mut texts = Vec::new();
    for i in 0..2 {
        for (n, v) in visitors.iter().enumerate() {
            let text = format!("v{n} message {i}");
            let (status, body) = t.app.send(v, &format!("m{i}"), &text).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            texts.push(text);
        }
    }
    eventually(60, "every message sent", || async {
        let sent = t.fake.sent_messages(t.group);
        texts.iter().all(|x| sent.iter().any(|m| m.text == *x))
    })
    .await;
    assert!(
        t.fake.throttled().is_empty(),
        "the fake never had to answer 429: {:#?}",
        t.fake.throttled()
    );

    // Ten topics per bot, each created by its bot, and every message of a topic sent by
    // the bot that created it (sticky).
    let topics = t.fake.topics(t.group);
    assert_eq!(topics.len(), 30);
    let mut per_bot: BTreeMap<u64, usize> = BTreeMap::new();
    for topic in &topics {
        *per_bot.entry(topic.creator_bot_id).or_default() += 1;
    }
    assert_eq!(
        per_bot,
        BTreeMap::from([(111, 10), (222, 10), (333, 10)]),
        "balanced by load"
    );
    let sent = t.fake.sent_messages(t.group);
    assert_eq!(sent.len(), 30 + 60, "30 cards and 60 messages once each");
    for topic in &topics {
        let bots: BTreeSet<u64> = sent
            .iter()
            .filter(|m| m.thread_id == Some(topic.thread_id))
            .map(|m| m.bot_id)
            .collect();
        assert_eq!(
            bots,
            BTreeSet::from([topic.creator_bot_id]),
            "one bot per topic"
        );
    }
    for n in 0..30 {
        let order: Vec<&str> = sent
            .iter()
            .filter(|m| m.text.starts_with(&format!("v{n} ")))
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(
            order,
            vec![format!("v{n} message 0"), format!("v{n} message 1")]
        );
    }

    // Throughput, on the fake's clock: one bot can make at most 20 calls a group window
    // in the long run; three make close to three times that (the chat's 1 a second,
    // shared by the bots, is the same 60 a minute).
    let mut calls: Vec<_> = t
        .fake
        .calls()
        .into_iter()
        .filter(|c| COUNTED_METHODS.contains(&c.method.as_str()) && c.chat_id() == Some(t.group))
        .collect();
    calls.sort_by_key(|c| c.at);
    assert_eq!(calls.len(), 120);
    let span = calls[calls.len() - 1].at.duration_since(calls[0].at);
    let per_window =
        (calls.len() - 1) as f64 * limits.per_group.every.as_secs_f64() / span.as_secs_f64();
    let ratio = per_window / limits.per_group.max as f64;
    println!(
        "3 bots: {} calls in {span:?} = {per_window:.1} per group window ({ratio:.2}× one bot's 20)",
        calls.len()
    );
    assert!(
        ratio >= 2.4,
        "three bots made {per_window:.1} calls a group window ({ratio:.2}× one bot)"
    );
    // No bot ever exceeded its own 20 in a group window (counted by the fake too).
    for bot in [111u64, 222, 333] {
        let token = bot_token(bot);
        let mine: Vec<_> = calls.iter().filter(|c| c.token == token).collect();
        let window = limits.per_group.every - limits.slack;
        for (i, later) in mine.iter().enumerate().skip(20) {
            assert!(later.at.duration_since(mine[i - 20].at) >= window);
        }
    }
}

async fn an_agent_reply_through_a_relay_reaches_the_visitor_once(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let relay = added(&t, 222).await;
    let v = t.app.visitor(&t.tenant).await;
    t.app.send(&v, "m0", "hello agents").await;
    eventually(10, "the message in a topic", || async {
        t.fake
            .sent_messages(t.group)
            .iter()
            .any(|m| m.text == "hello agents")
    })
    .await;
    let thread = t
        .fake
        .sent_messages(t.group)
        .iter()
        .find(|m| m.text == "hello agents")
        .and_then(|m| m.thread_id)
        .expect("thread");

    // The agent's answer comes through the relay's webhook (its own secret)…
    let update = topic_text_update(
        41,
        t.group,
        thread,
        9001,
        5550001,
        "Ana",
        "Through the relay",
    );
    let status = t.fake.deliver_update(&relay, &update).await.expect("post");
    assert_eq!(status, StatusCode::OK);
    // …and the same message again through the main bot's (its own update id).
    let update = topic_text_update(
        7,
        t.group,
        thread,
        9001,
        5550001,
        "Ana",
        "Through the relay",
    );
    let status = t
        .fake
        .deliver_update(&t.token, &update)
        .await
        .expect("post");
    assert_eq!(status, StatusCode::OK);
    // A relay's secret on the main bot's update ids is not a way in for strangers.
    let forged = reqwest::Client::new()
        .post(format!(
            "{}/v1/telegram/webhook/{}",
            t.app.base, t.tenant.slug
        ))
        .header("X-Telegram-Bot-Api-Secret-Token", "not-the-secret")
        .json(&update)
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    let (status, page) = t
        .app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages?since=0", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let answers: Vec<&Value> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["text"] == "Through the relay")
        .collect();
    assert_eq!(answers.len(), 1, "stored once: {page}");
    assert_eq!(answers[0]["direction"], "outbound");

    // Both bots brought it at the same moment: still once.
    let a = topic_text_update(42, t.group, thread, 9002, 5550001, "Ana", "At once");
    let m = topic_text_update(8, t.group, thread, 9002, 5550001, "Ana", "At once");
    let (ra, rm) = tokio::join!(
        t.fake.deliver_update(&relay, &a),
        t.fake.deliver_update(&t.token, &m)
    );
    assert_eq!(ra.expect("post"), StatusCode::OK);
    assert_eq!(rm.expect("post"), StatusCode::OK);
    let (_, page) = t
        .app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages?since=0", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    let n = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["text"] == "At once")
        .count();
    assert_eq!(n, 1, "{page}");
}

async fn removing_a_relay_hands_its_pending_items_to_the_others_in_order_exactly_once(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    added(&t, 222).await;
    added(&t, 333).await;
    // Conversation 1 goes to relay 222 (c0: main bot, c1: 222, c2: 333 — the fewest
    // open topics, the main bot first on a tie). Its first message hangs in Telegram
    // for a while: in flight under the relay when the relay is removed.
    t.fake.fail_next_text(
        "sendmessage",
        "c1 m0",
        Failure::Delay(Duration::from_millis(1500)),
    );
    let mut visitors = Vec::new();
    for _ in 0..3 {
        visitors.push(t.app.visitor(&t.tenant).await);
    }
    for j in 0..5 {
        for (i, v) in visitors.iter().enumerate() {
            let (status, body) = t.app.send(v, &format!("m{j}"), &format!("c{i} m{j}")).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    eventually(10, "c1 m0 in flight under the relay", || async {
        t.fake
            .calls_of("sendmessage")
            .iter()
            .any(|c| c.text() == Some("c1 m0"))
    })
    .await;
    let (status, removed) = t
        .app
        .json(
            Method::DELETE,
            "/v1/admin/telegram/relays/222",
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["topics_reassigned"], 1, "{removed}");
    assert_eq!(
        removed["items_moved"], 5,
        "c1's four queued messages and the one in flight: {removed}"
    );

    let texts: Vec<String> = (0..3)
        .flat_map(|i| (0..5).map(move |j| format!("c{i} m{j}")))
        .collect();
    eventually(20, "every message sent", || async {
        let sent = t.fake.sent_messages(t.group);
        texts.iter().all(|x| sent.iter().any(|m| m.text == *x))
    })
    .await;
    // Let anything that would duplicate show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = t.fake.sent_messages(t.group);
    for x in &texts {
        assert_eq!(
            sent.iter().filter(|m| m.text == *x).count(),
            1,
            "{x} exactly once"
        );
    }
    for i in 0..3 {
        let mine: Vec<_> = sent
            .iter()
            .filter(|m| m.text.starts_with(&format!("c{i} ")))
            .collect();
        let order: Vec<&str> = mine.iter().map(|m| m.text.as_str()).collect();
        let expected: Vec<String> = (0..5).map(|j| format!("c{i} m{j}")).collect();
        assert_eq!(order, expected, "conversation {i} in order");
        assert!(
            mine.iter().all(|m| m.thread_id == mine[0].thread_id),
            "one topic"
        );
    }
    // c1's first message went out with the relay; the rest with the remaining bots.
    let c1: Vec<_> = sent.iter().filter(|m| m.text.starts_with("c1 ")).collect();
    assert_eq!(c1[0].bot_id, 222);
    assert!(c1[1..].iter().all(|m| m.bot_id != 222), "{c1:#?}");
    // Recorded as delivered once each; nothing dead.
    eventually(10, "15 items delivered", || async {
        let (_, list) = t
            .app
            .json(
                Method::GET,
                "/v1/admin/outbox?status=delivered&limit=100",
                Some(&t.tenant.key),
                None,
            )
            .await;
        list["items"].as_array().map(Vec::len) == Some(15)
    })
    .await;
    let (_, dead) = t
        .app
        .json(
            Method::GET,
            "/v1/admin/outbox?status=dead",
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(dead["items"], json!([]), "{dead}");
}
