//! `/metrics` of a real `serve` process (its own recorder, so counts are exact): the
//! counters and gauges move by exactly what the test did.

use std::{collections::BTreeMap, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::fake_telegram::{FakeTelegram, topic_text_update};
use crate::support::{Api, Backend, Install, topic_of_sent};

/// Every sample of a Prometheus text page: `name{labels}` → value.
async fn scrape(api: &Api) -> BTreeMap<String, f64> {
    let (status, body) = api.json(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().expect("text page").to_string();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the sample whose name is `name` and whose labels include every one of
/// `labels` (0 when absent).
fn sample(page: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    page.iter()
        .filter(|(k, _)| {
            (k.as_str() == name || k.starts_with(&format!("{name}{{")))
                && labels.iter().all(|l| k.contains(l))
        })
        .map(|(_, v)| *v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_exactly_what_happened() {
    let fake = FakeTelegram::start_local().await;
    let install = Install::new(Backend::Sqlite, &fake.api_url()).await;
    let server = install.serve(&[]).await;
    let api = &server.api;
    let platform = install.platform_key().await;
    let tenant = api.tenant(&platform, "metrico").await;
    let group = -100_777;
    let token = api.connect_telegram(&fake, &tenant, 777, group).await;
    let v = api.visitor(&tenant).await;

    let before = scrape(api).await;
    let route = "route=\"/v1/conversations/{id}/messages\"";
    for i in 0..3 {
        api.send(&v, &format!("m{i}"), &format!("counted {i}"))
            .await;
    }
    // The same client_msg_id again is a 200, not a second stored message.
    api.send(&v, "m0", "counted 0").await;
    let thread = topic_of_sent(&fake, group, "counted 2", Duration::from_secs(20)).await;
    api.outbox_drained(&tenant, Duration::from_secs(20)).await;
    let delivered = api.outbox(&tenant, "delivered").await.len();
    assert!(
        delivered >= 3,
        "three messages (and the topic's card) delivered"
    );
    // An agent answers in the topic: one webhook update stored.
    let status = fake
        .deliver_update(
            &token,
            &topic_text_update(9001, group, thread, 501, 42, "Ana", "an answer"),
        )
        .await
        .expect("webhook call");
    assert!(status.is_success());
    // Two sockets open.
    let _ws1 = server.ws(&v.ws_token, &tenant.origin).await;
    let _ws2 = server.ws(&v.ws_token, &tenant.origin).await;
    // A rejected message (empty text) is a 422 on the same route.
    let (status, _) = api
        .json(
            Method::POST,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            Some(json!({"client_msg_id": "e1", "text": "   "})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let after = scrape(api).await;
    let delta =
        |name: &str, labels: &[&str]| sample(&after, name, labels) - sample(&before, name, labels);
    assert_eq!(
        delta(
            "chatorical_http_requests_total",
            &[route, "method=\"POST\"", "status=\"201\""]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "chatorical_http_requests_total",
            &[route, "method=\"POST\"", "status=\"200\""]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "chatorical_http_requests_total",
            &[route, "method=\"POST\"", "status=\"422\""]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "chatorical_http_request_duration_seconds_count",
            &[route, "method=\"POST\""]
        ),
        5.0
    );
    assert_eq!(
        delta(
            "chatorical_messages_stored_total",
            &["direction=\"inbound\""]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "chatorical_messages_stored_total",
            &["direction=\"outbound\""]
        ),
        1.0
    );
    assert_eq!(
        delta("chatorical_webhook_updates_total", &["outcome=\"ok\""]),
        1.0,
        "{after:#?}"
    );
    assert_eq!(sample(&after, "chatorical_sockets_open", &[]), 2.0);
    assert_eq!(
        sample(&after, "chatorical_outbox_items", &["status=\"delivered\""]),
        delivered as f64
    );
    assert_eq!(
        sample(&after, "chatorical_outbox_items", &["status=\"queued\""]),
        0.0
    );
    assert_eq!(
        delta(
            "chatorical_outbox_attempts_total",
            &["outcome=\"delivered\""]
        ),
        delivered as f64
    );
    // No tenant ids or raw paths in labels.
    assert!(
        after
            .keys()
            .all(|k| !k.contains(&tenant.id) && !k.contains(&v.conversation_id))
    );
}

/// Scrape until `name` reaches `at_least` (panics after 15 s with what it last read).
async fn scrape_until(api: &Api, name: &str, at_least: f64) -> BTreeMap<String, f64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let page = scrape(api).await;
        let value = sample(&page, name, &[]);
        if value >= at_least {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} stayed at {value}, expected at least {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The server gives its heap's free pages back to the system (glibc): once when it
/// starts serving, then once after a burst of connections is over — and not again
/// while nothing new arrives.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heap_is_trimmed_at_start_and_after_a_burst_of_connections() {
    let fake = FakeTelegram::start_local().await;
    let install = Install::new(Backend::Sqlite, &fake.api_url()).await;
    let server = install.serve(&[]).await;
    let api = &server.api;
    let page = scrape_until(api, "chatorical_heap_trims_total", 1.0).await;
    assert_eq!(sample(&page, "chatorical_heap_trims_total", &[]), 1.0);
    let arrived = |page: &BTreeMap<String, f64>| {
        sample(page, "chatorical_connections_accepted_total", &[])
            + sample(page, "chatorical_connections_rejected_total", &[])
    };
    let arrived_before = arrived(&page);

    // A burst: 300 connections, each closed at once.
    for _ in 0..300 {
        let conn = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("connect");
        drop(conn);
    }
    let page = scrape_until(api, "chatorical_heap_trims_total", 2.0).await;
    assert_eq!(sample(&page, "chatorical_heap_trims_total", &[]), 2.0);
    // Accepted, or (had the server not yet seen the closes) rejected over the per-IP cap.
    assert!(
        arrived(&page) >= arrived_before + 300.0,
        "every connection of the burst was counted"
    );
    // Quiet afterwards: no further trim.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let page = scrape(api).await;
    assert_eq!(sample(&page, "chatorical_heap_trims_total", &[]), 2.0);
}
