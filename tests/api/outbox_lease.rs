//! The worker's chained claim (`repo::outbox::claim_lane_head`): in the transaction that
//! finishes an item, the lane's next item is leased only when it is the lane's head and
//! due — never past a head that is in flight or waiting, never another lane's item.

use chatorical::{
    db::{models::OutboxRow, repo},
    domain::now_ms,
};

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(a_chained_claim_takes_only_a_due_lane_head);

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
