//! The worker's chained claim (`repo::outbox::claim_lane_head`): in the transaction that
//! finishes an item, the lane's next item is leased only when it is the lane's head and
//! due — never past a head that is in flight or waiting, never another lane's item.
//! And recording a delivery (`repo::outbox::finish_delivered`, one statement on
//! PostgreSQL): all of it only while the worker holds the item, the Telegram id always.
//! And what a delivery of a visitor's message reads (`repo::telegram::get_for_message`,
//! one statement): the connection, and the message only in its own conversation.

use chatorical::{
    db::{
        models::{OutboxRow, TelegramConfigRow},
        repo,
    },
    domain::now_ms,
};

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    a_chained_claim_takes_only_a_due_lane_head,
    finishing_a_delivery_records_it_and_leases_the_lanes_next_item,
    a_delivery_reads_the_connection_and_the_message_together
);

/// A queued item of `lane`, due at `due`.
async fn queued(app: &TestApp, tenant_id: &str, id: &str, lane: &str, due: i64) {
    let now = now_ms();
    let row = OutboxRow {
        id: id.into(),
        tenant_id: tenant_id.into(),
        kind: "telegram.send_text".into(),
        idempotency_key: format!("lease_{id}"),
        lane: lane.into(),
        payload: r#"{"text":"hello","topic_id":null}"#.into(),
        status: "queued".into(),
        attempts: 0,
        next_attempt_at: due,
        lease_until: None,
        leased_by: None,
        last_error: None,
        created_at: now,
        updated_at: now,
        delivered_at: None,
        conversation_id: None,
    };
    let mut pc = app.state.db.conn().await.expect("connection");
    assert!(
        repo::outbox::enqueue(&mut pc.as_conn(), &row)
            .await
            .expect("insert")
    );
}

/// `(status, leased_by, attempts)` of an item.
async fn state(app: &TestApp, tenant_id: &str, id: &str) -> (String, Option<String>, i32) {
    let mut pc = app.state.db.conn().await.expect("connection");
    let row = repo::outbox::get(&mut pc.as_conn(), tenant_id, id)
        .await
        .expect("read")
        .expect("the item");
    (row.status, row.leased_by, row.attempts)
}

async fn a_chained_claim_takes_only_a_due_lane_head(b: Backend) {
    // No worker of the app's own: this test is the only one leasing.
    let app = spawn_app_with(b, |s| s.worker.embedded = false).await;
    let tenant = app.tenant("acme").await;
    let t = tenant.id.as_str();
    let now = now_ms();
    let (lane, other) = (format!("tg:{t}:-1"), format!("tg:{t}:-2"));
    queued(&app, t, "ob_1a", &lane, now).await;
    queued(&app, t, "ob_1b", &lane, now).await;
    queued(&app, t, "ob_1c", &lane, now + 60_000).await;
    queued(&app, t, "ob_1x", &other, now).await;
    let mut pc = app.state.db.conn().await.expect("connection");
    let mut conn = pc.as_conn();
    let lease = |at: i64| at + 30_000;

    // The head is in flight under w1's lease: nobody jumps to the item behind it.
    let first = repo::outbox::claim(&mut conn, &["ob_1a".into()], "w1", now, lease(now))
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    let next = repo::outbox::claim_lane_head(&mut conn, &lane, "w2", now, lease(now))
        .await
        .expect("chained claim");
    assert!(next.is_none(), "{next:?}");
    assert_eq!(state(&app, t, "ob_1b").await, ("queued".into(), None, 0));

    // Delivered: the next item is the head, due, and leased by the finishing worker.
    assert!(
        repo::outbox::mark_delivered(&mut conn, "ob_1a", "w1", now)
            .await
            .expect("delivered")
    );
    let next = repo::outbox::claim_lane_head(&mut conn, &lane, "w1", now, lease(now))
        .await
        .expect("chained claim")
        .expect("the lane's next item");
    assert_eq!(next.id, "ob_1b");
    assert_eq!(next.status, "in_flight");
    assert_eq!(next.leased_by.as_deref(), Some("w1"));
    assert_eq!(next.lease_until, Some(lease(now)));
    assert_eq!(next.attempts, 1);
    // Taken once: a second chained claim finds the head in flight.
    let again = repo::outbox::claim_lane_head(&mut conn, &lane, "w2", now, lease(now))
        .await
        .expect("chained claim");
    assert!(again.is_none(), "{again:?}");

    // The head after that waits for its time: not taken before it, taken at it.
    assert!(
        repo::outbox::mark_delivered(&mut conn, "ob_1b", "w1", now)
            .await
            .expect("delivered")
    );
    let early = repo::outbox::claim_lane_head(&mut conn, &lane, "w1", now, lease(now))
        .await
        .expect("chained claim");
    assert!(early.is_none(), "{early:?}");
    assert_eq!(state(&app, t, "ob_1c").await, ("queued".into(), None, 0));
    let later = now + 60_000;
    let due = repo::outbox::claim_lane_head(&mut conn, &lane, "w1", later, lease(later))
        .await
        .expect("chained claim")
        .expect("due now");
    assert_eq!(due.id, "ob_1c");

    // The other lane was never touched; its head is leased on its own, and taken over
    // by another worker once that lease ran out (a second attempt counted).
    assert_eq!(state(&app, t, "ob_1x").await, ("queued".into(), None, 0));
    let x = repo::outbox::claim_lane_head(&mut conn, &other, "w1", now, now + 1_000)
        .await
        .expect("chained claim")
        .expect("the other lane's head");
    assert_eq!(x.id, "ob_1x");
    let held = repo::outbox::claim_lane_head(&mut conn, &other, "w2", now + 999, now + 31_000)
        .await
        .expect("chained claim");
    assert!(held.is_none(), "{held:?}");
    let taken = repo::outbox::claim_lane_head(&mut conn, &other, "w2", now + 1_001, now + 31_001)
        .await
        .expect("chained claim")
        .expect("an expired lease is taken over");
    assert_eq!(taken.id, "ob_1x");
    assert_eq!(taken.leased_by.as_deref(), Some("w2"));
    assert_eq!(taken.attempts, 2);

    // A lane with nothing pending, and one that does not exist.
    assert!(
        repo::outbox::mark_delivered(&mut conn, "ob_1c", "w1", later)
            .await
            .expect("delivered")
    );
    for l in [lane.as_str(), "tg:nobody:-9"] {
        let none = repo::outbox::claim_lane_head(&mut conn, l, "w1", later, lease(later))
            .await
            .expect("chained claim");
        assert!(none.is_none(), "{l}: {none:?}");
    }
}

/// What a delivery sent: the messages it carried, Telegram's id, whether a set was
/// recorded.
fn sent(message_ids: &[String], telegram_message_id: i64, batch: bool) -> repo::outbox::Sent<'_> {
    repo::outbox::Sent {
        message_ids,
        telegram_message_id,
        batch,
    }
}

/// The Telegram id recorded on a message.
async fn telegram_id(app: &TestApp, tenant_id: &str, message_id: &str) -> Option<i64> {
    let mut pc = app.state.db.conn().await.expect("connection");
    repo::messages::get(&mut pc.as_conn(), tenant_id, message_id)
        .await
        .expect("read")
        .expect("the message")
        .telegram_message_id
}

async fn finishing_a_delivery_records_it_and_leases_the_lanes_next_item(b: Backend) {
    let app = spawn_app_with(b, |s| s.worker.embedded = false).await;
    let tenant = app.tenant("acme").await;
    let t = tenant.id.as_str();
    let v = app.visitor(&tenant).await;
    let mut message_ids = Vec::new();
    for (i, text) in ["one", "two"].into_iter().enumerate() {
        let (status, m) = app.send(&v, &format!("c{i}"), text).await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{m}");
        message_ids.push(m["id"].as_str().expect("id").to_string());
    }
    let now = now_ms();
    let lane = format!("tg:{t}:-1");
    for (id, due) in [("ob_2a", now), ("ob_2b", now), ("ob_2c", now + 60_000)] {
        queued(&app, t, id, &lane, due).await;
    }
    let mut pc = app.state.db.conn().await.expect("connection");
    let mut conn = pc.as_conn();
    let lease = |at: i64| at + 30_000;
    let one = std::slice::from_ref(&message_ids[0]);

    let first = repo::outbox::claim(&mut conn, &["ob_2a".into()], "w1", now, lease(now))
        .await
        .expect("claim");
    let a = first.into_iter().next().expect("ob_2a leased");

    // Another worker (whose lease ran out) finishing it: what it sent is recorded on the
    // message, nothing else changes.
    let next = repo::outbox::finish_delivered(
        &mut conn,
        &a,
        sent(one, 77, false),
        "w2",
        now,
        Some(lease(now)),
    )
    .await
    .expect("finish");
    assert!(next.is_none(), "{next:?}");
    assert_eq!(telegram_id(&app, t, &message_ids[0]).await, Some(77));
    assert_eq!(
        state(&app, t, "ob_2a").await,
        ("in_flight".into(), Some("w1".into()), 1)
    );
    assert_eq!(state(&app, t, "ob_2b").await, ("queued".into(), None, 0));

    // The holder finishing it: delivered, the id recorded, the lane's next item leased.
    let next = repo::outbox::finish_delivered(
        &mut conn,
        &a,
        sent(one, 78, false),
        "w1",
        now,
        Some(lease(now)),
    )
    .await
    .expect("finish")
    .expect("the lane's next item");
    assert_eq!(next.id, "ob_2b");
    assert_eq!(next.status, "in_flight");
    assert_eq!(next.leased_by.as_deref(), Some("w1"));
    // For the lease time from when the statement ran (SQLite: once it had the write
    // lock).
    let until = next.lease_until.expect("a lease");
    assert!((lease(now)..=lease(now_ms())).contains(&until), "{until}");
    assert_eq!(next.attempts, 1);
    assert_eq!(telegram_id(&app, t, &message_ids[0]).await, Some(78));
    let (status, _, _) = state(&app, t, "ob_2a").await;
    assert_eq!(status, "delivered");
    let row = repo::outbox::get(&mut conn, t, "ob_2a")
        .await
        .expect("read")
        .expect("ob_2a");
    assert_eq!(row.delivered_at, Some(now));
    assert_eq!(row.lease_until, None);

    // Finishing that one (carrying nothing): the next head is not due yet, so nothing
    // is leased.
    let next = repo::outbox::finish_delivered(
        &mut conn,
        &next,
        sent(&[], 0, false),
        "w1",
        now,
        Some(lease(now)),
    )
    .await
    .expect("finish");
    assert!(next.is_none(), "{next:?}");
    assert_eq!(state(&app, t, "ob_2b").await.0, "delivered");
    assert_eq!(state(&app, t, "ob_2c").await, ("queued".into(), None, 0));

    // Without a chain, nothing after it is leased even when due.
    let later = now + 60_000;
    let c = repo::outbox::claim(&mut conn, &["ob_2c".into()], "w1", later, lease(later))
        .await
        .expect("claim")
        .into_iter()
        .next()
        .expect("ob_2c leased");
    queued(&app, t, "ob_2d", &lane, now).await;
    let next =
        repo::outbox::finish_delivered(&mut conn, &c, sent(&[], 0, false), "w1", later, None)
            .await
            .expect("finish");
    assert!(next.is_none(), "{next:?}");
    assert_eq!(state(&app, t, "ob_2c").await.0, "delivered");
    assert_eq!(state(&app, t, "ob_2d").await, ("queued".into(), None, 0));

    // A head with a recorded set of followers: the followers are delivered with it, the
    // set is forgotten, and the lane's next item after them is leased.
    for id in ["ob_3a", "ob_3b", "ob_3c", "ob_3d"] {
        queued(&app, t, id, "tg:batch:-2", now).await;
    }
    let head = repo::outbox::claim(&mut conn, &["ob_3a".into()], "w1", now, lease(now))
        .await
        .expect("claim")
        .into_iter()
        .next()
        .expect("ob_3a leased");
    let followers = ["ob_3b".to_string(), "ob_3c".to_string()];
    assert!(
        repo::outbox::record_batch(&mut conn, t, "ob_3a", "w1", &followers, now)
            .await
            .expect("record the set")
    );
    let next = repo::outbox::finish_delivered(
        &mut conn,
        &head,
        sent(&message_ids, 79, true),
        "w1",
        now,
        Some(lease(now)),
    )
    .await
    .expect("finish")
    .expect("the item after the set");
    assert_eq!(next.id, "ob_3d");
    for id in ["ob_3a", "ob_3b", "ob_3c"] {
        assert_eq!(state(&app, t, id).await.0, "delivered", "{id}");
    }
    for id in &message_ids {
        assert_eq!(telegram_id(&app, t, id).await, Some(79));
    }
    let (recorded, _) = repo::outbox::batch_of(&mut conn, t, "ob_3a")
        .await
        .expect("read the set");
    assert!(!recorded);
}

async fn a_delivery_reads_the_connection_and_the_message_together(b: Backend) {
    let app = spawn_app_with(b, |s| s.worker.embedded = false).await;
    let tenant = app.tenant("acme").await;
    let other = app.tenant("globex").await;
    let t = tenant.id.as_str();
    let v = app.visitor(&tenant).await;
    let w = app.visitor(&other).await;
    let (status, m) = app.send(&v, "c1", "hello").await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{m}");
    let mine = m["id"].as_str().expect("id").to_string();
    let (status, m) = app.send(&w, "c1", "theirs").await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{m}");
    let theirs = m["id"].as_str().expect("id").to_string();
    let conv = v.conversation_id.as_str();
    let mut pc = app.state.db.conn().await.expect("connection");
    let mut conn = pc.as_conn();

    // Without a connection there is nothing to read.
    let none = repo::telegram::get_for_message(&mut conn, t, &mine, conv, "ob_5a")
        .await
        .expect("read");
    assert!(none.is_none());

    let now = now_ms();
    let cfg = TelegramConfigRow {
        tenant_id: t.into(),
        bot_token_enc: "sealed-token".into(),
        webhook_secret_enc: "sealed-secret".into(),
        bot_id: 42,
        bot_username: "acme_bot".into(),
        group_chat_id: -1005,
        default_topic_id: None,
        can_manage_topics: true,
        enabled: true,
        created_at: now,
        updated_at: now,
        delete_topics_on_retention: false,
        mode: "webhook".into(),
    };
    repo::telegram::upsert(&mut conn, &cfg)
        .await
        .expect("connect");
    let (_, channel) = repo::telegram::get_with_plan_channel(&mut conn, t)
        .await
        .expect("read")
        .expect("the connection");

    // The connection, the plan's channel, the message with its conversation.
    let (got, got_channel, message_read) =
        repo::telegram::get_for_message(&mut conn, t, &mine, conv, "ob_5a")
            .await
            .expect("read")
            .expect("the connection");
    assert_eq!((got.tenant_id.as_str(), got.group_chat_id), (t, -1005));
    assert_eq!(got_channel, channel);
    let (message, conversation, recorded) = message_read.expect("the message");
    assert_eq!(message.id, mine);
    assert_eq!(message.body, "hello");
    assert_eq!(conversation.id, conv);
    assert!(!recorded);

    // A message of another conversation, another tenant's or none at all: the
    // connection alone.
    for (message, conversation) in [
        (mine.as_str(), w.conversation_id.as_str()),
        (mine.as_str(), "cv_missing"),
        (theirs.as_str(), w.conversation_id.as_str()),
        ("msg_missing", conv),
    ] {
        let (got, _, message_read) =
            repo::telegram::get_for_message(&mut conn, t, message, conversation, "ob_5a")
                .await
                .expect("read")
                .expect("the connection");
        assert_eq!(got.tenant_id, t);
        assert!(message_read.is_none(), "{message} in {conversation}");
    }

    // A set of followers recorded for the head is seen.
    for id in ["ob_5a", "ob_5b"] {
        queued(&app, t, id, "tg:read:-3", now).await;
    }
    let leased = repo::outbox::claim(&mut conn, &["ob_5a".into()], "w1", now, now + 30_000)
        .await
        .expect("claim");
    assert_eq!(leased.len(), 1);
    assert!(
        repo::outbox::record_batch(&mut conn, t, "ob_5a", "w1", &["ob_5b".into()], now)
            .await
            .expect("record the set")
    );
    let (_, _, message_read) = repo::telegram::get_for_message(&mut conn, t, &mine, conv, "ob_5a")
        .await
        .expect("read")
        .expect("the connection");
    assert!(message_read.expect("the message").2, "the recorded set");
    let (_, _, message_read) = repo::telegram::get_for_message(&mut conn, t, &mine, conv, "ob_5b")
        .await
        .expect("read")
        .expect("the connection");
    assert!(!message_read.expect("the message").2);
}
