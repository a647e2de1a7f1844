//! The PostgreSQL wake-up: a message committed by another process reaches Telegram
//! through LISTEN/NOTIFY, not through the worker's fallback poll.

use std::time::{Duration, Instant};

use chatorical::config::Secret;
use reqwest::StatusCode;

use crate::helpers::{Backend, spawn_app_with, spawn_with_telegram};

/// Far longer than the test may take: if delivery waited for the poll, it would time out.
const POLL_MS: u64 = 120_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_another_node_wakes_the_worker_through_notify() {
    // Node A runs the worker, with the fallback poll out of reach.
    let tg = spawn_with_telegram(Backend::Postgres, |s| {
        s.worker.poll_interval_ms = POLL_MS;
    })
    .await;
    let a = &tg.app;
    // Node B shares the database but has no worker and its own in-process wake-up:
    // only PostgreSQL can tell A about B's commits.
    let db_url = a.state.settings.database.url.clone();
    let key_file = a.state.settings.secrets.master_key_file.clone();
    let api_url = a.state.settings.telegram.api_url.clone();
    let b = spawn_app_with(Backend::Postgres, move |s| {
        s.database.url = db_url;
        s.secrets.master_key_file = key_file;
        s.telegram.api_url = api_url;
        s.worker.embedded = false;
    })
    .await;
    assert_eq!(
        b.state.settings.database.url.as_ref().map(Secret::expose),
        a.state.settings.database.url.as_ref().map(Secret::expose)
    );
    // Let A's worker finish its start-up pass and go to sleep on its poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(tg.fake.calls_of("sendMessage").is_empty());

    for round in 1..=3 {
        let v = b.visitor(&tg.tenant).await;
        let started = Instant::now();
        let (status, _) = b
            .send(&v, &format!("m{round}"), &format!("via B {round}"))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let text = format!("via B {round}");
        let deadline = started + Duration::from_secs(15);
        let mut carrying = 0;
        while Instant::now() < deadline {
            carrying = tg
                .fake
                .calls_of("sendMessage")
                .iter()
                .filter(|c| c.text().is_some_and(|t| t.contains(&text)))
                .count();
            if carrying > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = started.elapsed();
        assert_eq!(
            carrying, 1,
            "round {round}: delivered once, {took:?} after B's commit (A's poll: {POLL_MS} ms)"
        );
    }
}
