//! Group commit: messages posted at the same time are stored in shared transactions,
//! and nothing about a message's answer changes — dense seqs in order, a retry answered
//! with the stored message, one failing message failing only itself, quotas exact.

use std::collections::{HashMap, HashSet};

use chatorical::chat::writer::NewMessage;
use chatorical::db::models::MessageRow;
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TenantFixture, TestApp, VisitorFixture, code, spawn_app_with};

crate::on_both_backends!(
    concurrent_posts_share_transactions_and_keep_dense_seqs,
    the_same_message_sent_twice_at_once_is_stored_once,
    one_failing_message_in_a_batch_fails_only_itself,
    a_daily_quota_holds_under_concurrent_posts,
    conversations_list_most_recently_active_first_within_and_across_seconds,
);

async fn spawn(b: Backend) -> TestApp {
    spawn_app_with(b, |s| s.limits.messages_per_visitor_per_min = 100_000).await
}

async fn history(app: &TestApp, v: &VisitorFixture) -> Vec<Value> {
    let (status, h) = app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages?limit=200", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{h}");
    h["messages"].as_array().expect("messages").clone()
}

async fn visitors(app: &TestApp, t: &TenantFixture, n: usize) -> Vec<VisitorFixture> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(app.visitor(t).await);
    }
    out
}

async fn concurrent_posts_share_transactions_and_keep_dense_seqs(b: Backend) {
    let app = spawn(b).await;
    let t = app.tenant("acme").await;
    app.unlimited(&t).await;
    let vs = visitors(&app, &t, 8).await;
    let before = app.state.chat.write_stats();
    // 8 conversations × 16 messages, all at once.
    let posts = vs.iter().enumerate().flat_map(|(i, v)| {
        let app = &app;
        (0..16).map(move |k| async move {
            let (status, m) = app
                .send(v, &format!("c{i}m{k}"), &format!("v{i} line {k}"))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{m}");
            m
        })
    });
    let answers = join_all(posts).await;
    assert_eq!(answers.len(), 128);
    let after = app.state.chat.write_stats();
    let messages = after.messages - before.messages;
    let batches = after.batches - before.batches;
    assert_eq!(messages, 128, "every post went through the writer");
    assert!(
        batches < messages,
        "posts at the same time share transactions: {batches} batches for {messages} messages"
    );
    assert_eq!(after.retries, before.retries, "no batch had to be split");

    for (i, v) in vs.iter().enumerate() {
        let h = history(&app, v).await;
        let seqs: Vec<i64> = h.iter().map(|m| m["seq"].as_i64().expect("seq")).collect();
        assert_eq!(
            seqs,
            (1..=16).collect::<Vec<_>>(),
            "dense, from 1: {seqs:?}"
        );
        let ids: HashSet<&str> = h
            .iter()
            .map(|m| m["client_msg_id"].as_str().expect("client_msg_id"))
            .collect();
        let want: HashSet<String> = (0..16).map(|k| format!("c{i}m{k}")).collect();
        assert_eq!(
            ids,
            want.iter().map(String::as_str).collect::<HashSet<_>>(),
            "each message once"
        );
        // The answer each sender got is what was stored.
        for m in &h {
            let answered = answers
                .iter()
                .find(|a| a["client_msg_id"] == m["client_msg_id"])
                .expect("answered");
            assert_eq!(answered["id"], m["id"]);
            assert_eq!(answered["seq"], m["seq"]);
            assert_eq!(answered["text"], m["text"]);
        }
    }
}

async fn the_same_message_sent_twice_at_once_is_stored_once(b: Backend) {
    let app = spawn(b).await;
    let t = app.tenant("acme").await;
    app.unlimited(&t).await;
    let v = app.visitor(&t).await;
    // 10 different messages, each sent three times at once (a client retrying), mixed.
    let posts = (0..30).map(|i| {
        let (app, v) = (&app, &v);
        async move {
            let k = i % 10;
            app.send(v, &format!("m{k}"), &format!("line {k}")).await
        }
    });
    let answers = join_all(posts).await;
    let mut created: HashMap<String, usize> = HashMap::new();
    let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
    for (status, m) in &answers {
        assert!(
            *status == StatusCode::CREATED || *status == StatusCode::OK,
            "{status}: {m}"
        );
        let cid = m["client_msg_id"]
            .as_str()
            .expect("client_msg_id")
            .to_string();
        if *status == StatusCode::CREATED {
            *created.entry(cid.clone()).or_default() += 1;
        }
        ids.entry(cid)
            .or_default()
            .insert(m["id"].as_str().expect("id").into());
    }
    assert_eq!(created.len(), 10, "each message created once: {created:?}");
    assert!(created.values().all(|n| *n == 1), "{created:?}");
    assert!(
        ids.values().all(|s| s.len() == 1),
        "every answer to a message names the same stored message: {ids:?}"
    );
    let h = history(&app, &v).await;
    let seqs: Vec<i64> = h.iter().map(|m| m["seq"].as_i64().expect("seq")).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "no seq lost to a retry");
}

fn row(t: &TenantFixture, conversation_id: &str, client_msg_id: &str, text: &str) -> MessageRow {
    MessageRow {
        id: format!("msg_batch_{client_msg_id}_{conversation_id}"),
        tenant_id: t.id.clone(),
        conversation_id: conversation_id.into(),
        seq: 0,
        direction: "inbound".into(),
        author: None,
        body: text.into(),
        client_msg_id: Some(client_msg_id.into()),
        created_at: chatorical::domain::now_ms(),
        edited_at: None,
        telegram_message_id: None,
        erased_at: None,
        reply_to: None,
    }
}

/// Store `batch` as one batch and answer its seqs (`None`: not stored), checking it did
/// not fall back to one transaction per message.
async fn seqs_without_retry(app: &TestApp, batch: &[NewMessage]) -> Vec<Option<i64>> {
    let retries = app.state.chat.write_stats().retries;
    let results = app.state.chat.store_batch(batch).await;
    assert_eq!(app.state.chat.write_stats().retries, retries, "{results:?}");
    results
        .iter()
        .map(|r| match r {
            Ok(Some((row, _))) => Some(row.seq),
            _ => None,
        })
        .collect()
}

async fn visitor_id(app: &TestApp, t: &TenantFixture, v: &VisitorFixture) -> String {
    let (status, c) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}", v.conversation_id),
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    c["visitor_id"].as_str().expect("visitor_id").into()
}

async fn one_failing_message_in_a_batch_fails_only_itself(b: Backend) {
    let app = spawn(b).await;
    let t = app.tenant("acme").await;
    app.unlimited(&t).await;
    let [a, closed, other] = <[VisitorFixture; 3]>::try_from(visitors(&app, &t, 3).await)
        .unwrap_or_else(|_| panic!("three visitors"));
    let (status, m) = app.send(&a, "first", "first").await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let (status, c) = app
        .json(
            Method::POST,
            &format!("/v1/admin/conversations/{}/close", closed.conversation_id),
            Some(&t.key),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}: {c}");
    let a_visitor = visitor_id(&app, &t, &a).await;
    let now = chatorical::domain::now_ms();
    let msg = |conv: &VisitorFixture, cmid: &str, visitor: Option<&str>| NewMessage {
        row: row(&t, &conv.conversation_id, cmid, cmid),
        visitor_id: visitor.map(str::to_string),
        now,
    };

    // One batch, in this order: a new message; a retry of one stored earlier; one
    // into a closed conversation; one into another visitor's conversation claiming to
    // be `a`; another new message.
    let stats = app.state.chat.write_stats();
    let batch = [
        msg(&a, "second", Some(&a_visitor)),
        msg(&a, "first", Some(&a_visitor)),
        msg(&closed, "late", None),
        msg(&other, "intruder", Some(&a_visitor)),
        msg(&a, "third", Some(&a_visitor)),
    ];
    let results = app.state.chat.store_batch(&batch).await;
    assert_eq!(results.len(), 5);
    let seq = |r: &chatorical::chat::writer::Stored| match r {
        Ok(Some((row, _))) => Some(row.seq),
        _ => None,
    };
    assert_eq!(seq(&results[0]), Some(2), "{:?}", results[0]);
    let dup = results[1]
        .as_ref()
        .expect_err("a stored client_msg_id fails");
    assert!(dup.unique_violation().is_some(), "{dup:?}");
    assert!(matches!(results[2], Ok(None)), "{:?}", results[2]);
    assert!(matches!(results[3], Ok(None)), "{:?}", results[3]);
    assert_eq!(seq(&results[4]), Some(3), "{:?}", results[4]);
    // The batch failed as a whole once and was stored message by message.
    let now_stats = app.state.chat.write_stats();
    assert_eq!(now_stats.retries, stats.retries + 1);
    assert_eq!(now_stats.batches, stats.batches + 1);

    let h = history(&app, &a).await;
    let got: Vec<(i64, &str)> = h
        .iter()
        .map(|m| {
            (
                m["seq"].as_i64().expect("seq"),
                m["client_msg_id"].as_str().expect("client_msg_id"),
            )
        })
        .collect();
    assert_eq!(got, vec![(1, "first"), (2, "second"), (3, "third")]);
    assert!(
        history(&app, &other).await.is_empty(),
        "nothing in another's conversation"
    );

    // A batch with nothing wrong is one transaction: all or nothing, seqs in order.
    let batch = [
        msg(&a, "fourth", Some(&a_visitor)),
        msg(&other, "theirs", None),
        msg(&a, "fifth", Some(&a_visitor)),
    ];
    let seqs = seqs_without_retry(&app, &batch).await;
    assert_eq!(seqs, vec![Some(4), Some(1), Some(5)]);

    // A closed conversation and someone else's, without anything failing: answered
    // `None` inside the one transaction (no retry), the others stored in order.
    let batch = [
        msg(&a, "sixth", Some(&a_visitor)),
        msg(&closed, "late again", None),
        msg(&other, "intruder again", Some(&a_visitor)),
        msg(&a, "seventh", Some(&a_visitor)),
        msg(&other, "theirs too", None),
    ];
    let seqs = seqs_without_retry(&app, &batch).await;
    assert_eq!(seqs, vec![Some(6), None, None, Some(7), Some(2)]);

    // One conversation written by its visitor and by an agent in one batch: stored
    // one after the other in the same transaction, seqs in batch order.
    let batch = [
        msg(&a, "eighth", Some(&a_visitor)),
        msg(&a, "agent's", None),
        msg(&a, "ninth", Some(&a_visitor)),
    ];
    let seqs = seqs_without_retry(&app, &batch).await;
    assert_eq!(seqs, vec![Some(8), Some(9), Some(10)]);
    let h = history(&app, &a).await;
    let tail: Vec<&str> = h[7..]
        .iter()
        .map(|m| m["client_msg_id"].as_str().expect("client_msg_id"))
        .collect();
    assert_eq!(tail, vec!["eighth", "agent's", "ninth"]);
    assert!(
        !history(&app, &other)
            .await
            .iter()
            .any(|m| m["client_msg_id"] == "intruder again"),
        "nothing of a's in another's conversation"
    );

    // A lone message takes the same one-transaction path, with the answers it gets
    // alone and nothing stored again one by one: a closed conversation `None`, a
    // stored client_msg_id its unique violation, a new one the next seq.
    let retries = app.state.chat.write_stats().retries;
    let r = app
        .state
        .chat
        .store_batch(&[msg(&closed, "alone", None)])
        .await;
    assert!(matches!(r[..], [Ok(None)]), "{r:?}");
    let r = app
        .state
        .chat
        .store_batch(&[msg(&a, "first", Some(&a_visitor))])
        .await;
    let dup = r[0]
        .as_ref()
        .expect_err("a stored client_msg_id fails alone too");
    assert!(dup.unique_violation().is_some(), "{dup:?}");
    let r = app
        .state
        .chat
        .store_batch(&[msg(&a, "tenth", Some(&a_visitor))])
        .await;
    assert!(
        matches!(&r[..], [Ok(Some((row, _)))] if row.seq == 11),
        "{r:?}"
    );
    // Alone too (its own statement on PostgreSQL): another visitor's conversation and
    // another tenant's are `None` and take no seq; an agent's message (no visitor) the
    // next seq.
    let r = app
        .state
        .chat
        .store_batch(&[msg(&other, "intruder alone", Some(&a_visitor))])
        .await;
    assert!(matches!(r[..], [Ok(None)]), "{r:?}");
    let stranger = app.tenant("stranger").await;
    let mut foreign = msg(&a, "foreign", None);
    foreign.row.tenant_id = stranger.id.clone();
    let r = app.state.chat.store_batch(&[foreign]).await;
    assert!(matches!(r[..], [Ok(None)]), "{r:?}");
    let r = app
        .state
        .chat
        .store_batch(&[msg(&a, "agent alone", None)])
        .await;
    assert!(
        matches!(&r[..], [Ok(Some((row, _)))] if row.seq == 12),
        "{r:?}"
    );
    assert_eq!(app.state.chat.write_stats().retries, retries);
    assert_eq!(
        history(&app, &other).await.len(),
        2,
        "nothing of a's in another's conversation"
    );

    // Over HTTP the retry is answered with the stored message (200), the closed
    // conversation with 409.
    let (status, m) = app.send(&a, "first", "first").await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["seq"], 1);
    let (status, m) = app.send(&closed, "late", "late").await;
    assert_eq!(status, StatusCode::CONFLICT, "{m}");
    assert_eq!(code(&m), "conversation_closed");
}

async fn a_daily_quota_holds_under_concurrent_posts(b: Backend) {
    let app = spawn(b).await;
    let t = app.tenant("acme").await;
    let (status, p) = app
        .json(
            Method::PUT,
            "/v1/admin/plans/small",
            Some(&app.platform_key),
            Some(json!({"name": "small", "active": true, "limits": {"messages_per_day": 25}, "channels": ["widget", "telegram"], "features": {}})),
        )
        .await;
    assert!(status.is_success(), "{status}: {p}");
    let (status, r) = app
        .json(
            Method::PUT,
            &format!("/v1/admin/tenants/{}/plan", t.slug),
            Some(&app.platform_key),
            Some(json!({"plan": "small"})),
        )
        .await;
    assert!(status.is_success(), "{status}: {r}");
    let vs = visitors(&app, &t, 4).await;
    let posts = vs.iter().enumerate().flat_map(|(i, v)| {
        let app = &app;
        (0..10).map(move |k| async move { app.send(v, &format!("q{i}_{k}"), "hello").await })
    });
    let answers = join_all(posts).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created, 25, "exactly the plan's messages are stored");
    assert_eq!(refused.len(), 15);
    assert!(
        refused.iter().all(|b| code(b) == "quota_exceeded"),
        "{refused:?}"
    );
    let mut stored = 0;
    for v in &vs {
        let h = history(&app, v).await;
        let seqs: Vec<i64> = h.iter().map(|m| m["seq"].as_i64().expect("seq")).collect();
        assert_eq!(seqs, (1..=h.len() as i64).collect::<Vec<_>>());
        stored += h.len();
    }
    assert_eq!(stored, 25);
}

/// The ids of the tenant's conversations as the admin API lists them.
async fn listed(app: &TestApp, t: &TenantFixture) -> Vec<String> {
    let (status, l) = app
        .json(Method::GET, "/v1/admin/conversations", Some(&t.key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{l}");
    l["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect()
}

/// The recency index keys on the second of `updated_at` (so a conversation's messages
/// within one second leave it unchanged); the listing's order is still exact: by the
/// second, then the millisecond, then the id.
async fn conversations_list_most_recently_active_first_within_and_across_seconds(b: Backend) {
    let app = spawn(b).await;
    let t = app.tenant("acme").await;
    let vs = visitors(&app, &t, 4).await;
    let id = |i: usize| vs[i].conversation_id.clone();
    // updated_at (ms): 1 and 3 share a second and a millisecond; 0 is earlier in that
    // second; 2 is in the next second, at its very start.
    let at = [10_000_500_i64, 10_000_999, 10_001_000, 10_000_999];
    {
        use diesel_async::RunQueryDsl;
        let mut pc = app.state.db.conn().await.expect("conn");
        let mut conn = pc.as_conn();
        for (i, ms) in at.iter().enumerate() {
            let sql = format!(
                "UPDATE conversations SET updated_at = {ms} WHERE id = '{}'",
                id(i)
            );
            chatorical::on_conn!(&mut conn, |c| diesel::sql_query(&sql).execute(c).await)
                .expect("set updated_at");
        }
    }
    let (hi, lo) = if id(1) > id(3) { (1, 3) } else { (3, 1) };
    assert_eq!(listed(&app, &t).await, vec![id(2), id(hi), id(lo), id(0)]);

    // A message moves its conversation to the top; then another's, above it.
    let (status, body) = app.send(&vs[0], "r1", "news").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(listed(&app, &t).await[0], id(0));
    let (status, body) = app.send(&vs[lo], "r2", "more news").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(listed(&app, &t).await, vec![id(lo), id(0), id(2), id(hi)]);
}
