//! Telegram long polling across real processes: a `chatorical worker` killed (SIGKILL)
//! after it committed the updates of a getUpdates answer and before its next
//! getUpdates reached Telegram neither loses nor repeats an update once a worker runs
//! again — the next poll asks from the offset stored with the last update — and
//! `serve`'s embedded worker and a `chatorical worker` poll one bot once.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::fake_telegram::{FakeTelegram, topic_text_update};
use crate::support::{Api, Backend, Install, Visitor, eventually, topic_of_sent};

const BOT: u64 = 888;
const GROUP: i64 = -100_888;
const AGENT: u64 = 555;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_poller_loses_and_repeats_nothing_postgres() {
    tokio::time::timeout(
        Duration::from_secs(120),
        killed_poller_body(Backend::Postgres),
    )
    .await
    .expect("finishes within 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_poller_loses_and_repeats_nothing_sqlite() {
    tokio::time::timeout(
        Duration::from_secs(120),
        killed_poller_body(Backend::Sqlite),
    )
    .await
    .expect("finishes within 120 s");
}

/// An installation whose tenants poll, quickly.
async fn polling_install(backend: Backend, fake: &FakeTelegram) -> Install {
    Install::new(backend, &fake.api_url())
        .await
        .with_env("CHATORICAL_TELEGRAM__DEFAULT_MODE", "polling")
        .with_env("CHATORICAL_TELEGRAM__POLL_TIMEOUT_SECS", "2")
        .with_env("CHATORICAL_TELEGRAM__POLL_BACKOFF_SECS", "1")
        .with_env("CHATORICAL_WORKER__POLL_INTERVAL_MS", "100")
}

/// The agents' answers the visitor's history holds, in order.
async fn agent_texts(api: &Api, v: &Visitor) -> Vec<String> {
    let (status, body) = api
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|m| m["direction"] == "outbound")
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn wait_for_texts(api: &Api, v: &Visitor, n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let texts = agent_texts(api, v).await;
        if texts.len() >= n {
            return texts;
        }
        assert!(
            Instant::now() < deadline,
            "{n} answers not stored within {timeout:?}: {texts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn killed_poller_body(backend: Backend) {
    let fake = FakeTelegram::start_local().await;
    let install = polling_install(backend, &fake).await;
    // Only the `chatorical worker` processes deliver and poll.
    let server = install
        .serve(&[("CHATORICAL_WORKER__EMBEDDED", "false")])
        .await;
    let api = &server.api;
    let platform = install.platform_key().await;
    let tenant = api.tenant(&platform, "pollco").await;
    let token = api.connect_telegram(&fake, &tenant, BOT, GROUP).await;
    let st = api
        .expect(
            StatusCode::OK,
            Method::GET,
            "/v1/admin/telegram",
            Some(&tenant.key),
            None,
        )
        .await;
    assert_eq!(st["mode"], "polling", "{st}");

    let mut worker = install.spawn("worker-1", &["worker"], &[]);
    let v = api.visitor(&tenant).await;
    api.send(&v, "m1", "Is anyone there?").await;
    let thread = topic_of_sent(&fake, GROUP, "Is anyone there?", Duration::from_secs(20)).await;

    // Five answers in one getUpdates answer. The worker stores them (each with the next
    // offset) and asks again from 1006; that request is held before Telegram processes
    // it, and the worker is killed there: Telegram never learnt that 1001-1005 arrived.
    fake.hold_polls(&token, Some(1005));
    let mut expected: Vec<String> = Vec::new();
    let mut batch = Vec::new();
    for i in 1..=5u32 {
        let text = format!("answer {i}");
        batch.push(topic_text_update(
            1000 + i,
            GROUP,
            thread,
            5000 + i as i32,
            AGENT,
            "Ana",
            &text,
        ));
        expected.push(text);
    }
    fake.queue_updates(&token, batch);
    eventually(
        Duration::from_secs(20),
        "the next getUpdates, from 1006",
        || fake.poll_offsets(&token).contains(&Some(1006)),
    )
    .await;
    assert_eq!(
        wait_for_texts(api, &v, 5, Duration::from_secs(5)).await,
        expected
    );
    worker.kill();
    assert_eq!(
        fake.pending_updates(&token),
        vec![1001, 1002, 1003, 1004, 1005],
        "Telegram would send them again to a poller that forgot where it was"
    );
    fake.hold_polls(&token, None);

    // A new worker process (once the dead one's lease ran out) asks from 1006: nothing
    // is repeated, and what comes next arrives.
    let polls_before = fake.poll_offsets(&token).len();
    let _worker = install.spawn("worker-2", &["worker"], &[]);
    eventually(Duration::from_secs(30), "the new worker polls", || {
        fake.poll_offsets(&token).len() > polls_before
    })
    .await;
    let first = fake.poll_offsets(&token)[polls_before];
    assert_eq!(first, Some(1006), "the stored offset is used");
    for i in 6..=8u32 {
        let text = format!("answer {i}");
        fake.queue_update(
            &token,
            topic_text_update(
                1000 + i,
                GROUP,
                thread,
                5000 + i as i32,
                AGENT,
                "Ana",
                &text,
            ),
        );
        expected.push(text);
    }
    let texts = wait_for_texts(api, &v, 8, Duration::from_secs(20)).await;
    assert_eq!(texts, expected, "every answer once, in order");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(agent_texts(api, &v).await, expected, "nothing stored twice");
    eventually(Duration::from_secs(10), "all confirmed", || {
        fake.pending_updates(&token).is_empty()
    })
    .await;
    let status: Value = api
        .expect(
            StatusCode::OK,
            Method::GET,
            "/v1/admin/telegram",
            Some(&tenant.key),
            None,
        )
        .await;
    assert_eq!(status["polling"]["offset"], 1009, "{status}");
    assert_eq!(status["polling"]["polled"], true, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_and_a_worker_poll_a_bot_once() {
    tokio::time::timeout(Duration::from_secs(120), one_poller_body())
        .await
        .expect("finishes within 120 s");
}

async fn one_poller_body() {
    let fake = FakeTelegram::start_local().await;
    let install = polling_install(Backend::Postgres, &fake).await;
    // The embedded worker polls, and so would a `chatorical worker`.
    let server = install.serve(&[]).await;
    let api = &server.api;
    let platform = install.platform_key().await;
    let tenant = api.tenant(&platform, "oneco").await;
    let token = api.connect_telegram(&fake, &tenant, BOT, GROUP).await;
    let _worker = install.spawn("worker", &["worker"], &[]);
    let v = api.visitor(&tenant).await;
    api.send(&v, "m1", "Hello?").await;
    let thread = topic_of_sent(&fake, GROUP, "Hello?", Duration::from_secs(20)).await;
    let mut expected = Vec::new();
    for i in 1..=10u32 {
        let text = format!("reply {i}");
        fake.queue_update(
            &token,
            topic_text_update(
                2000 + i,
                GROUP,
                thread,
                6000 + i as i32,
                AGENT,
                "Ana",
                &text,
            ),
        );
        expected.push(text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let texts = wait_for_texts(api, &v, 10, Duration::from_secs(20)).await;
    assert_eq!(texts, expected, "every reply once");
    let stats = fake.polls(&token);
    assert_eq!(stats.terminated, 0, "never two pollers at once: {stats:?}");
    assert_eq!(stats.max_in_flight, 1, "{stats:?}");
    assert!(stats.requests >= 2, "{stats:?}");
}
