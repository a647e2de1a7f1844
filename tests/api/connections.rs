//! The server's own accept loop: the header-read timeout (slow-loris, idle keep-alive),
//! connection caps per process and per client IP (WebSockets keep their slot, trusted
//! proxies are exempt), and who may read `/metrics` (bearer token, separate listener).
//! Clients come from different loopback addresses (127.0.0.X) to be different IPs.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use chatorical::config::Secret;
use futures_util::SinkExt;
use reqwest::{Method, StatusCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

use crate::helpers::{Backend, TestApp, Ws, code, eventually, next_of, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    slow_headers_and_idle_keep_alive_are_closed_after_the_header_timeout,
    websockets_hold_their_per_ip_slot_until_they_close,
    process_cap_closes_extra_connections_and_trusted_proxies_skip_the_per_ip_cap,
    metrics_token_is_required_when_set,
    metrics_listen_serves_metrics_alone_and_the_main_listener_404s,
    slow_bodies_are_cut_off_at_the_body_deadline,
);

/// A TCP connection to `to` from the loopback address `from` (`127.0.0.X`).
async fn connect_from(to: SocketAddr, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("address"))
        .expect("bind the client address");
    socket.connect(to).await.expect("connect")
}

/// One response (status, body) read from `stream`; `None` when the server closed
/// the connection (or reset it) instead of answering.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                return Some((status, body));
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("the server answers or closes within 5 s")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `GET path` (keep-alive) on `stream`, with optional extra header lines; the response,
/// or `None` when the connection was closed without one.
async fn get(stream: &mut TcpStream, path: &str, headers: &str) -> Option<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    read_response(stream).await
}

/// Wait until the server closes `stream`; how long after `since` that was.
async fn closed_after(stream: &mut TcpStream, since: Instant) -> Duration {
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
        .await
        .expect("closed by the server within 10 s");
    if let Ok(n) = read {
        assert_eq!(
            n,
            0,
            "unexpected bytes on an idle connection: {:?}",
            String::from_utf8_lossy(&chunk[..n])
        );
    }
    since.elapsed()
}

/// The widget socket opened over a connection from `from`.
async fn ws_from(app: &TestApp, from: &str, token: &str, origin: &str) -> Ws {
    let stream = connect_from(app.addr, from).await;
    let mut req = format!("ws://{}/v1/ws?token={token}", app.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("origin", HeaderValue::from_str(origin).expect("origin"));
    let (ws, _) =
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("socket opens");
    ws
}

async fn slow_headers_and_idle_keep_alive_are_closed_after_the_header_timeout(b: Backend) {
    let app = spawn_app_with(b, |s| s.server.header_read_timeout_secs = 1).await;
    let stats = app.state.metrics.connections.clone();

    // A request sent in time is answered, and the connection kept alive.
    let mut fast = connect_from(app.addr, "127.0.0.1").await;
    let answer = get(&mut fast, "/healthz", "").await;
    assert_eq!(answer.map(|(s, _)| s), Some(200));
    let answered = Instant::now();

    // Slow-loris: a request head that never ends, a header line every 100 ms.
    let mut slow = connect_from(app.addr, "127.0.0.1").await;
    let started = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        .await
        .expect("first line");
    let mut chunk = [0u8; 1024];
    let mut received = Vec::new();
    let slow_closed = loop {
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break started.elapsed();
        }
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a slow request head kept its connection open for 5 s"
        );
    };
    assert!(
        received.is_empty(),
        "no answer to a request head that never ended: {:?}",
        String::from_utf8_lossy(&received)
    );
    // The kept-alive connection, idle since its answer, is closed by the same timer.
    let idle_closed = closed_after(&mut fast, answered).await;
    for (what, took) in [("slow head", slow_closed), ("idle keep-alive", idle_closed)] {
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{what} closed after {took:?}, want about 1 s"
        );
    }
    eventually(5, "both timeouts are counted", || {
        let s = stats.snapshot();
        async move { (s.timed_out_head, s.timed_out_idle, s.open) == (1, 1, 0) }
    })
    .await;
    let s = stats.snapshot();
    assert_eq!((s.rejected_max, s.rejected_per_ip), (0, 0), "{s:?}");
    eprintln!(
        "header timeout 1 s: slow head closed after {slow_closed:?}, idle after {idle_closed:?}"
    );
}

async fn websockets_hold_their_per_ip_slot_until_they_close(b: Backend) {
    let app = spawn_app_with(b, |s| s.server.max_connections_per_ip = 2).await;
    let stats = app.state.metrics.connections.clone();
    let t = app.tenant("capco").await;
    let v1 = app.visitor(&t).await;
    let v2 = app.visitor(&t).await;

    // Two widget sockets from 127.0.0.2 take both of its slots…
    let mut ws1 = ws_from(&app, "127.0.0.2", &v1.ws_token, &t.origin).await;
    let mut ws2 = ws_from(&app, "127.0.0.2", &v2.ws_token, &t.origin).await;
    next_of(&mut ws1, "hello").await;
    next_of(&mut ws2, "hello").await;
    // …so a third connection from there is closed without an answer,
    let mut third = connect_from(app.addr, "127.0.0.2").await;
    assert_eq!(get(&mut third, "/healthz", "").await, None);
    assert_eq!(stats.snapshot().rejected_per_ip, 1);
    // while another address is served.
    let mut other = connect_from(app.addr, "127.0.0.3").await;
    assert_eq!(
        get(&mut other, "/healthz", "").await.map(|r| r.0),
        Some(200)
    );

    // The socket closes: its slot comes back.
    ws1.send(Message::Close(None)).await.expect("close");
    drop(ws1);
    eventually(5, "a request from 127.0.0.2 is answered again", || async {
        let mut again = connect_from(app.addr, "127.0.0.2").await;
        get(&mut again, "/healthz", "").await.map(|r| r.0) == Some(200)
    })
    .await;
    let s = stats.snapshot();
    assert_eq!(s.rejected_max, 0, "{s:?}");
    assert!(s.rejected_per_ip >= 1, "{s:?}");
    drop(ws2);
}

async fn process_cap_closes_extra_connections_and_trusted_proxies_skip_the_per_ip_cap(b: Backend) {
    let app = spawn_app_with(b, |s| {
        s.server.max_connections = 3;
        s.server.max_connections_per_ip = 1;
        s.server.trusted_proxies = vec!["127.0.0.4".parse().expect("cidr")];
    })
    .await;
    let stats = app.state.metrics.connections.clone();
    assert_eq!(stats.snapshot().limit, 3);

    // One connection per client IP…
    let mut client = connect_from(app.addr, "127.0.0.5").await;
    assert_eq!(
        get(&mut client, "/healthz", "").await.map(|r| r.0),
        Some(200)
    );
    let mut second = connect_from(app.addr, "127.0.0.5").await;
    assert_eq!(get(&mut second, "/healthz", "").await, None);
    // …but a trusted proxy carries many clients: two connections, both served.
    let mut proxy1 = connect_from(app.addr, "127.0.0.4").await;
    let mut proxy2 = connect_from(app.addr, "127.0.0.4").await;
    for p in [&mut proxy1, &mut proxy2] {
        assert_eq!(get(p, "/healthz", "").await.map(|r| r.0), Some(200));
    }
    // Three open: the process is full, whoever comes next.
    let mut fourth = connect_from(app.addr, "127.0.0.6").await;
    assert_eq!(get(&mut fourth, "/healthz", "").await, None);
    let s = stats.snapshot();
    assert_eq!(
        (s.open, s.rejected_per_ip, s.rejected_max),
        (3, 1, 1),
        "{s:?}"
    );

    drop(proxy1);
    eventually(5, "a slot is free again", || async {
        let mut next = connect_from(app.addr, "127.0.0.6").await;
        get(&mut next, "/healthz", "").await.map(|r| r.0) == Some(200)
    })
    .await;
}

async fn metrics_token_is_required_when_set(b: Backend) {
    let token = "scrape-token-0123456789abcdef";
    let app = spawn_app_with(b, |s| {
        s.telemetry.metrics_token = Some(Secret::new(token));
    })
    .await;
    let scrape = |auth: Option<String>| {
        let mut req = app.http.get(format!("{}/metrics", app.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789abcdef".to_string()),
        Some(format!("Bearer {token}x")),
        Some(format!("Basic {token}")),
        Some(token.to_string()),
    ] {
        let resp = scrape(auth.clone()).await.expect("sent");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(
            resp.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer")),
            "{auth:?}"
        );
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(code(&body), "unauthorized", "{auth:?}");
        assert!(
            !body.to_string().contains(token),
            "the token is never echoed"
        );
    }
    for auth in [format!("Bearer {token}"), format!("bearer {token}")] {
        let resp = scrape(Some(auth.clone())).await.expect("sent");
        assert_eq!(resp.status(), StatusCode::OK, "{auth}");
        let text = resp.text().await.expect("text");
        assert!(text.contains("chatorical_connections_open"), "{text}");
    }
    // The rest of the API does not care about the metrics token.
    let (status, _) = app.json(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn metrics_listen_serves_metrics_alone_and_the_main_listener_404s(b: Backend) {
    // Default: public on the main listener, no token asked for.
    let open = spawn_app_with(b, |_| {}).await;
    let resp = open.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("text");
    for name in [
        "chatorical_connections_open",
        "chatorical_connections_limit",
        "chatorical_connections_rejected_total",
        "chatorical_connections_timed_out_total",
        "chatorical_accept_errors_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }

    let token = "scrape-token-0123456789abcdef";
    let app = spawn_app_with(b, |s| {
        s.telemetry.metrics_listen = Some("127.0.0.1:0".into());
        s.telemetry.metrics_token = Some(Secret::new(token));
    })
    .await;
    let metrics_addr = app.metrics_addr.expect("a metrics address");
    assert_ne!(metrics_addr, app.addr);
    // The main listener has no /metrics any more, with or without the token.
    let (status, body) = app.json(Method::GET, "/metrics", Some(token), None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    // The metrics listener: /metrics with the token, nothing else.
    let mut conn = connect_from(metrics_addr, "127.0.0.1").await;
    let (status, text) = get(
        &mut conn,
        "/metrics",
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await
    .expect("an answer");
    assert_eq!(status, 200);
    assert!(text.contains("chatorical_connections_open"), "{text}");
    let (status, _) = get(&mut conn, "/metrics", "").await.expect("an answer");
    assert_eq!(status, 401);
    for path in ["/healthz", "/v1/admin/tenants", "/openapi.json"] {
        let (status, body) = get(&mut conn, path, "").await.expect("an answer");
        assert_eq!(status, 404, "{path} on the metrics listener: {body}");
    }
}

async fn slow_bodies_are_cut_off_at_the_body_deadline(b: Backend) {
    let app = spawn_app_with(b, |s| {
        s.server.header_read_timeout_secs = 10;
        s.server.body_read_timeout_secs = 1;
    })
    .await;
    let t = app.tenant("acme").await;
    let body = serde_json::json!({ "widget_key": t.widget_key }).to_string();
    let head = format!(
        "POST /v1/widget/session HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // In time, even in pieces: answered.
    let mut ok = connect_from(app.addr, "127.0.0.1").await;
    ok.write_all(head.as_bytes()).await.expect("head");
    let (first, rest) = body.split_at(5);
    ok.write_all(first.as_bytes()).await.expect("part");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ok.write_all(rest.as_bytes()).await.expect("rest");
    let answer = read_response(&mut ok).await;
    assert_eq!(answer.as_ref().map(|(s, _)| *s), Some(200), "{answer:?}");

    // A byte every 200 ms: each chunk is quick, the whole body is not.
    let mut slow = connect_from(app.addr, "127.0.0.1").await;
    slow.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    let mut chunk = [0u8; 4096];
    let mut received = Vec::new();
    for byte in body.as_bytes().iter().take(body.len() - 1) {
        if slow.write_all(&[*byte]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        if !received.is_empty() && started.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&received).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?} after {took:?}");
    assert!(text.contains("\"request_timeout\""), "{text}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "cut off after {took:?}, want about 1 s"
    );
    // And the connection is closed after the answer.
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match slow.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert_eq!(
        closed.ok(),
        Some(true),
        "the connection is closed after the 408"
    );
}
