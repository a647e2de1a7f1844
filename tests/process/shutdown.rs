//! SIGTERM: `serve` closes sockets with 1001 and exits 0 without having logged a
//! secret; `worker` gives its leases back and exits 0.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue};

use crate::fake_telegram::{Failure, FakeTelegram, topic_text_update};
use crate::support::{Backend, Install, Ws, eventually, next_frame, topic_of_sent};

/// Read frames until a `message` frame with `text` arrives.
async fn wait_for_message(ws: &mut Ws, text: &str) -> Value {
    loop {
        let v = next_frame(ws, Duration::from_secs(10))
            .await
            .unwrap_or_else(|c| panic!("socket closed ({c:?}) before {text:?} arrived"));
        if v["type"] == "message" && v["message"]["text"] == text {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_stops_gracefully_on_sigterm_and_never_logs_secrets() {
    tokio::time::timeout(Duration::from_secs(90), graceful_serve_body())
        .await
        .expect("finished within 90 s");
}

async fn graceful_serve_body() {
    let started = Instant::now();
    let fake = FakeTelegram::start_local().await;
    let group = -100_333;
    let install = Install::new(Backend::Sqlite, &fake.api_url()).await;
    let mut server = install.serve(&[]).await;
    let api = server.api.clone();
    let platform = install.platform_key().await;
    let tenant = api.tenant(&platform, "quietco").await;
    let bot_token = api.connect_telegram(&fake, &tenant, 333, group).await;
    let webhook_secret = fake
        .webhook(&bot_token)
        .and_then(|h| h.secret_token)
        .expect("a webhook with a secret token");
    let v = api.visitor(&tenant).await;

    let mut req = format!("ws://127.0.0.1:{}/v1/ws?token={}", server.port, v.ws_token)
        .into_client_request()
        .expect("ws request");
    req.headers_mut().insert(
        "origin",
        HeaderValue::from_str(&tenant.origin).expect("origin header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("socket opens");
    let hello = next_frame(&mut ws, Duration::from_secs(5))
        .await
        .expect("hello");
    assert_eq!(hello["type"], "hello", "{hello}");

    // The visitor writes; the embedded worker carries it to the topic.
    let visitor_text = format!("my parcel number is PX{}", uuid::Uuid::new_v4().simple());
    api.send(&v, "m1", &visitor_text).await;
    wait_for_message(&mut ws, &visitor_text).await;
    let thread = topic_of_sent(&fake, group, &visitor_text, Duration::from_secs(15)).await;

    // An agent answers through the admin API, another one in the Telegram topic.
    let reply_text = format!("agent reply {}", uuid::Uuid::new_v4().simple());
    api.expect(
        StatusCode::CREATED,
        Method::POST,
        &format!("/v1/admin/conversations/{}/messages", v.conversation_id),
        Some(&tenant.key),
        Some(serde_json::json!({"text": reply_text, "author": "Ana"})),
    )
    .await;
    wait_for_message(&mut ws, &reply_text).await;
    let topic_text = format!("answer from the topic {}", uuid::Uuid::new_v4().simple());
    let update = topic_text_update(1, group, thread, 9001, 555, "Boris", &topic_text);
    let status = fake
        .deliver_update(&bot_token, &update)
        .await
        .expect("webhook delivered");
    assert_eq!(status, StatusCode::OK);
    wait_for_message(&mut ws, &topic_text).await;
    // A few more admin reads, as an operator would.
    for path in [
        "/v1/admin/telegram",
        "/v1/admin/outbox",
        "/v1/admin/conversations",
    ] {
        api.expect(StatusCode::OK, Method::GET, path, Some(&tenant.key), None)
            .await;
    }

    // SIGTERM: the socket is closed with 1001, the process exits 0.
    let term = Instant::now();
    server.proc.terminate();
    let close = loop {
        match next_frame(&mut ws, Duration::from_secs(10)).await {
            Ok(_) => continue,
            Err(close) => break close,
        }
    };
    let close_after = term.elapsed();
    let code = close.as_ref().map(|c| u16::from(c.code));
    assert_eq!(code, Some(1001), "close frame {close:?}");
    let status = server
        .proc
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("serve exits within 10 s of SIGTERM");
    let exit_after = term.elapsed();
    assert!(
        status.success(),
        "serve exit status {status}; stderr:\n{}",
        server.proc.stderr()
    );

    // Nothing secret, nothing a visitor or agent wrote, in the logs.
    let stderr = server.proc.stderr();
    let stdout = server.proc.stdout();
    let bot_secret = bot_token.split_once(':').expect("id:secret").1.to_string();
    let secrets = [
        ("platform API key", platform.clone()),
        ("tenant API key", tenant.key.clone()),
        ("visitor token", v.token.clone()),
        ("ws token", v.ws_token.clone()),
        ("bot token", bot_token.clone()),
        ("bot token secret part", bot_secret),
        ("webhook secret", webhook_secret.clone()),
        ("visitor message text", visitor_text.clone()),
        ("agent reply text", reply_text.clone()),
        ("Telegram answer text", topic_text.clone()),
    ];
    for (what, secret) in &secrets {
        assert!(!stderr.contains(secret.as_str()), "stderr shows the {what}");
        assert!(!stdout.contains(secret.as_str()), "stdout shows the {what}");
    }
    let mut json_lines = 0;
    let mut other_lines = Vec::new();
    for line in stderr.lines() {
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(_)) => json_lines += 1,
            _ => other_lines.push(line),
        }
    }
    assert!(
        other_lines
            .iter()
            .all(|l| l.starts_with("chatorical is running")),
        "stderr lines that are not JSON log lines: {other_lines:?}"
    );
    let with_tenant = stderr
        .lines()
        .filter(|l| l.contains(&tenant.id) && l.contains("/v1/admin/"))
        .count();
    assert!(
        tenant.id.starts_with("tn_") && with_tenant > 0,
        "admin request log lines carry the tenant id {}:\n{stderr}",
        tenant.id
    );
    eprintln!(
        "graceful serve: {json_lines} JSON log lines ({with_tenant} admin lines with the tenant id), \
         {} secrets checked; close frame {close_after:?} and exit {exit_after:?} after SIGTERM; \
         total {:?}",
        secrets.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_releases_leases_on_sigterm() {
    tokio::time::timeout(Duration::from_secs(90), release_body())
        .await
        .expect("finished within 90 s");
}

async fn release_body() {
    let started = Instant::now();
    let fake = FakeTelegram::start_local().await;
    let group = -100_444;
    let install = Install::new(Backend::Postgres, &fake.api_url()).await;
    let server = install
        .serve(&[("CHATORICAL_WORKER__EMBEDDED", "false")])
        .await;
    let api = &server.api;
    let platform = install.platform_key().await;
    let tenant = api.tenant(&platform, "leaseco").await;
    api.connect_telegram(&fake, &tenant, 444, group).await;
    let v = api.visitor(&tenant).await;
    let sent_texts = || -> Vec<String> {
        fake.sent_messages(group)
            .into_iter()
            .map(|m| m.text)
            .collect()
    };

    // An idle worker stops at once. (The first message opens the topic.)
    api.send(&v, "warmup", "warm-up message").await;
    let mut w1 = install.worker("worker #1");
    eventually(Duration::from_secs(15), "the warm-up is delivered", || {
        sent_texts().iter().any(|t| t == "warm-up message")
    })
    .await;
    api.outbox_drained(&tenant, Duration::from_secs(10)).await;
    let t = Instant::now();
    w1.terminate();
    let status = w1
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("an idle worker exits after SIGTERM");
    assert!(status.success(), "worker #1: {status}");
    let idle_exit = t.elapsed();

    // Telegram is slow: the worker is stopped in the middle of a sendMessage.
    fake.fail_always("sendmessage", None, Failure::Delay(Duration::from_secs(3)));
    let texts: Vec<String> = (0..5)
        .map(|i| format!("slow m{i} {}", uuid::Uuid::new_v4().simple()))
        .collect();
    for (i, text) in texts.iter().enumerate() {
        api.send(&v, &format!("slow{i}"), text).await;
    }
    let mut w2 = install.worker("worker #2");
    eventually(
        Duration::from_secs(15),
        "worker #2 calls sendMessage",
        || {
            fake.calls_of("sendmessage")
                .iter()
                .any(|c| c.text() == Some(texts[0].as_str()))
        },
    )
    .await;
    let in_flight = api.outbox(&tenant, "in_flight").await;
    assert_eq!(in_flight.len(), 1, "one item leased: {in_flight:?}");
    let t = Instant::now();
    w2.terminate();
    let status = w2
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("worker #2 exits within 15 s of SIGTERM");
    let busy_exit = t.elapsed();
    assert!(status.success(), "worker #2: {status}");
    let in_flight = api.outbox(&tenant, "in_flight").await;
    assert!(
        in_flight.is_empty(),
        "no lease survives a graceful stop: {in_flight:?}"
    );
    let queued = api.outbox(&tenant, "queued").await;
    let delivered = api.outbox(&tenant, "delivered").await;
    // The installation's lease is 2 s, so the worker drains for 2 s: the send stuck in
    // Telegram's 3 s delay is cut off and its lease given back. Nothing else had started.
    assert_eq!(
        (queued.len(), delivered.len()),
        (texts.len(), 1),
        "the five slow messages are queued again, only the warm-up is delivered: {queued:?}"
    );
    assert!(
        w2.stderr().contains("released leases") && w2.stderr().contains("\"released\":1"),
        "worker #2 logs that it gave back exactly one lease:\n{}",
        w2.stderr()
    );

    // A fresh worker delivers everything.
    fake.clear_failures();
    let mut w3 = install.worker("worker #3");
    eventually(
        Duration::from_secs(20),
        "worker #3 delivers every message",
        || {
            let sent = sent_texts();
            texts.iter().all(|t| sent.contains(t))
        },
    )
    .await;
    api.outbox_drained(&tenant, Duration::from_secs(10)).await;
    w3.terminate();
    let status = w3
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("worker #3 exits after SIGTERM");
    assert!(status.success(), "worker #3: {status}");
    let sent = sent_texts();
    let duplicates: usize = texts
        .iter()
        .map(|t| sent.iter().filter(|s| *s == t).count().saturating_sub(1))
        .sum();
    // At-least-once: only the send cut off by the stop may reach Telegram twice.
    assert!(
        duplicates <= 1,
        "{duplicates} duplicates after one interrupted send: {sent:?}"
    );
    assert!(
        idle_exit < Duration::from_secs(3),
        "an idle worker stops at once, not after the drain: {idle_exit:?}"
    );
    eprintln!(
        "lease release: idle worker exited {idle_exit:?} after SIGTERM, busy worker {busy_exit:?}; \
         {duplicates} duplicate(s) afterwards; total {:?}",
        started.elapsed()
    );
}
