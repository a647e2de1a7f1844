//! Abuse of a real `serve` process, and what holds.
//!
//! | attack | what holds | test |
//! |---|---|---|
//! | slow-loris: 300 connections at once (more than the 256 open files the process may have) from 6 addresses, each sending a header line every 250 ms and never finishing, reconnecting when closed | per client IP 20 are held, the rest closed right after accept; held ones closed after the 2 s header timeout although they keep sending; the process never runs out of descriptors; `/healthz`, a widget session and a message are answered during the attack; server and attacker counts agree | `slow_loris_over_the_fd_limit_leaves_health_and_visitors_served_*` |
//! | the same without the descriptor reserve (`server.reserved_fds = 0`): accept fails with EMFILE | accept backs off (10 ms doubling to 1 s) and logs at most once per 10 s; every slow connection is still closed by the timeout; `/healthz` is answered in the meantime, visitors afterwards | `out_of_file_descriptors_backs_off_quietly_and_recovers` |
//! | another local user reads the database (conversation texts) | the data dir is created 0700, the SQLite file 0600 (and its -wal/-shm), whatever the umask; an existing 0644 database is chmod-ed 0600 with a warning | `data_dir_and_database_files_are_private_*` |
//! | an anonymous `/metrics` scrape when a token is set | 401 (tests/api/connections.rs covers the token and `telemetry.metrics_listen`); here the token comes from the environment and is never logged | `slow_loris_…` |
//!
//! Attackers come from 127.0.0.2… (other loopback addresses: other client IPs), the
//! visitor from 127.0.0.1.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
};
use tokio_util::sync::CancellationToken;

use crate::fake_telegram::FakeTelegram;
use crate::support::{Api, Backend, Install, eventually};

const METRICS_TOKEN: &str = "scrape-token-for-the-abuse-tests-0123456789";

/// How slow-loris connections ended, as their clients saw it.
#[derive(Debug, Default)]
struct Tally {
    /// Closed by the server within 1 s of connecting (over a cap).
    rejected: usize,
    /// Closed by the server later: how long each lived.
    timed_out: Vec<Duration>,
    /// The server answered the never-finished request (it must not).
    answered: usize,
    /// Still open after 10 s of sending.
    never_closed: usize,
    /// Connections that could not be made.
    connect_failed: usize,
}

/// One slow-loris client from `from`: send a request head a header line every 250 ms,
/// never finishing it, and note how the server ends the connection. With `again`,
/// reconnect (after 250 ms) until `stop`; the connection open at `stop` is still
/// watched until the server closes it.
async fn slow_loris(
    to: SocketAddr,
    from: IpAddr,
    again: bool,
    stop: CancellationToken,
    tally: Arc<Mutex<Tally>>,
) {
    loop {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .expect("bind the attacker address");
        let Ok(mut stream) = socket.connect(to).await else {
            tally.lock().expect("tally").connect_failed += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        let opened = Instant::now();
        let mut line: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: victim\r\n";
        let mut buf = [0u8; 512];
        let ended = loop {
            if stream.write_all(line).await.is_err() {
                break Some(false);
            }
            line = b"X-Slow: 1\r\n";
            match tokio::time::timeout(Duration::from_millis(250), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break Some(false),
                Ok(Ok(_)) => break Some(true),
                Err(_) => {}
            }
            if opened.elapsed() > Duration::from_secs(10) {
                break None;
            }
        };
        let lived = opened.elapsed();
        {
            let mut t = tally.lock().expect("tally");
            match ended {
                Some(true) => t.answered += 1,
                None => t.never_closed += 1,
                Some(false) if lived < Duration::from_secs(1) => t.rejected += 1,
                Some(false) => t.timed_out.push(lived),
            }
        }
        if !again || stop.is_cancelled() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        if stop.is_cancelled() {
            return;
        }
    }
}

/// `GET /metrics` with the token.
async fn scrape(api: &Api) -> String {
    let (status, body) = api
        .json(Method::GET, "/metrics", Some(METRICS_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_str().expect("metrics text").to_string()
}

/// The value of one series (`name{label="x"}`) in a Prometheus text page; 0 if absent.
fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

/// File descriptors the process has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_loris_over_the_fd_limit_leaves_health_and_visitors_served_sqlite() {
    tokio::time::timeout(Duration::from_secs(120), slow_loris_body(Backend::Sqlite))
        .await
        .expect("finished within 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_loris_over_the_fd_limit_leaves_health_and_visitors_served_postgres() {
    tokio::time::timeout(Duration::from_secs(120), slow_loris_body(Backend::Postgres))
        .await
        .expect("finished within 120 s");
}

async fn slow_loris_body(backend: Backend) {
    const FD_LIMIT: usize = 256;
    const ATTACKERS: u8 = 6;
    const PER_ATTACKER: usize = 50;
    const PER_IP: usize = 20;
    let fake = FakeTelegram::start_local().await;
    let install = Install::new(backend, &fake.api_url()).await;
    let server = install
        .serve_in_shell(
            "serve (ulimit -n 256)",
            install.dir(),
            &format!("ulimit -n {FD_LIMIT}"),
            &[
                ("CHATORICAL_SERVER__HEADER_READ_TIMEOUT_SECS", "2"),
                (
                    "CHATORICAL_SERVER__MAX_CONNECTIONS_PER_IP",
                    &PER_IP.to_string(),
                ),
                ("CHATORICAL_TELEMETRY__METRICS_TOKEN", METRICS_TOKEN),
            ],
        )
        .await;
    let pid = server.proc.pid();
    // 256 open files, 256 reserved: the cap is half the limit, and the log says why.
    let lowered = server
        .proc
        .wait_for_line(Duration::from_secs(5), |l| {
            l.contains("server.max_connections lowered")
        })
        .await;
    let lowered: Value = serde_json::from_str(&lowered).expect("JSON log line");
    assert_eq!(lowered["fields"]["max_connections"], 128, "{lowered}");
    let api = Api::unpooled(&server.api.base, Duration::from_secs(10));
    let platform = install.platform_key().await;
    let tenant = api.tenant(&platform, "lorisco").await;
    let page = scrape(&api).await;
    assert_eq!(value(&page, "chatorical_connections_limit"), 128.0);

    // The attack: 300 slow connections at once, more than the process may open files.
    let stop = CancellationToken::new();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut attackers = Vec::new();
    for a in 0..ATTACKERS {
        for _ in 0..PER_ATTACKER {
            attackers.push(tokio::spawn(slow_loris(
                SocketAddr::from(([127, 0, 0, 1], server.port)),
                loopback(2 + a),
                true,
                stop.clone(),
                tally.clone(),
            )));
        }
    }
    let attack_started = Instant::now();
    let held = PER_IP * usize::from(ATTACKERS);
    eventually(
        Duration::from_secs(10),
        "the attack holds its slots",
        || open_fds(pid) >= held,
    )
    .await;
    // Slow connections time out every 2 s and come back, so a scrape can fall between a
    // close and its reconnect: wait until one sees every slot held.
    let mut open_during = 0.0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_during < held as f64 {
        assert!(
            Instant::now() < deadline,
            "the attackers hold {held} connections: {open_during} open"
        );
        open_during = value(&scrape(&api).await, "chatorical_connections_open");
    }

    // Meanwhile, from another address: health, a widget session, a message.
    let mut health_latency = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (status, body) = api.json(Method::GET, "/healthz", None, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        health_latency.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t = Instant::now();
    let visitor = api.visitor(&tenant).await;
    let msg = api.send(&visitor, "m1", "hello during the attack").await;
    assert_eq!(msg["seq"], 1, "{msg}");
    let visitor_latency = t.elapsed();
    let slowest = health_latency.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(2),
        "/healthz waited for the attack's connections to time out: {health_latency:?}"
    );
    let mut max_fds = open_fds(pid);
    // Keep the attack up for two header timeouts more.
    while attack_started.elapsed() < Duration::from_secs(6) {
        max_fds = max_fds.max(open_fds(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    for a in attackers {
        a.await.expect("attacker task");
    }

    let t = std::mem::take(&mut *tally.lock().expect("tally"));
    assert_eq!(
        (t.answered, t.never_closed, t.connect_failed),
        (0, 0, 0),
        "{t:?}"
    );
    let (shortest, longest) = (
        t.timed_out.iter().min().copied().unwrap_or_default(),
        t.timed_out.iter().max().copied().unwrap_or_default(),
    );
    assert!(
        t.timed_out.len() >= 2 * held,
        "each held slot timed out at least twice: {} timeouts",
        t.timed_out.len()
    );
    assert!(
        shortest >= Duration::from_millis(1900) && longest < Duration::from_secs(4),
        "slow connections closed by the 2 s header timeout although they kept sending: \
         {shortest:?}..{longest:?}"
    );
    // The server's counts are the attackers' counts.
    let page = scrape(&api).await;
    let counted = |series: &str| value(&page, series) as usize;
    assert_eq!(
        counted("chatorical_connections_timed_out_total{phase=\"headers\"}"),
        t.timed_out.len(),
        "{page}"
    );
    assert_eq!(
        counted("chatorical_connections_rejected_total{reason=\"max_connections_per_ip\"}"),
        t.rejected,
        "{page}"
    );
    assert_eq!(
        counted("chatorical_connections_rejected_total{reason=\"max_connections\"}"),
        0
    );
    assert_eq!(
        counted("chatorical_accept_errors_total{error=\"out_of_file_descriptors\"}"),
        0,
        "the caps kept the process under its open-files limit"
    );
    let stderr = server.proc.stderr();
    assert!(!stderr.contains("accept failed"), "no accept errors logged");
    assert!(
        !stderr.contains(METRICS_TOKEN),
        "the metrics token is never logged"
    );
    eprintln!(
        "slow-loris on {backend:?} (ulimit -n {FD_LIMIT}, cap 128, {PER_IP} per IP): \
         {} connections rejected at accept, {} closed by the header timeout after \
         {shortest:?}..{longest:?}; at most {max_fds} fds open; /healthz during the attack \
         {health_latency:?}, session + message {visitor_latency:?}; {} log lines",
        t.rejected,
        t.timed_out.len(),
        stderr.lines().count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_file_descriptors_backs_off_quietly_and_recovers() {
    tokio::time::timeout(Duration::from_secs(120), out_of_fds_body())
        .await
        .expect("finished within 120 s");
}

async fn out_of_fds_body() {
    let fake = FakeTelegram::start_local().await;
    let install = Install::new(Backend::Sqlite, &fake.api_url()).await;
    let server = install
        .serve_in_shell(
            "serve (ulimit -n 256, no reserve)",
            install.dir(),
            "ulimit -n 256",
            &[
                ("CHATORICAL_SERVER__HEADER_READ_TIMEOUT_SECS", "2"),
                ("CHATORICAL_SERVER__RESERVED_FDS", "0"),
                ("CHATORICAL_TELEMETRY__METRICS_TOKEN", METRICS_TOKEN),
            ],
        )
        .await;
    let pid = server.proc.pid();
    let api = Api::unpooled(&server.api.base, Duration::from_secs(20));
    let platform = install.platform_key().await;
    let tenant = api.tenant(&platform, "fdco").await;
    let baseline = open_fds(pid);

    // 300 slow connections, once each: more than the files the process may open.
    let attackers: usize = 300;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = CancellationToken::new();
    let tasks: Vec<_> = (0..attackers)
        .map(|i| {
            tokio::spawn(slow_loris(
                SocketAddr::from(([127, 0, 0, 1], server.port)),
                loopback(2 + (i % 2) as u8),
                false,
                stop.clone(),
                tally.clone(),
            ))
        })
        .collect();
    let exhausted = server
        .proc
        .wait_for_line(Duration::from_secs(10), |l| l.contains("accept failed"))
        .await;
    assert!(
        exhausted.contains("out_of_file_descriptors\":true"),
        "{exhausted}"
    );
    // /healthz is answered once the timeout frees descriptors, not refused.
    let t = Instant::now();
    let (status, _) = api.json(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let health_after = t.elapsed();
    for a in tasks {
        a.await.expect("attacker task");
    }
    let t = std::mem::take(&mut *tally.lock().expect("tally"));
    assert_eq!(
        (
            t.answered,
            t.never_closed,
            t.connect_failed,
            t.timed_out.len()
        ),
        (0, 0, 0, attackers),
        "every slow connection is closed by the header timeout: {t:?}"
    );
    // Visitors are served again.
    let visitor = api.visitor(&tenant).await;
    let msg = api.send(&visitor, "m1", "hello after the attack").await;
    assert_eq!(msg["seq"], 1, "{msg}");
    let page = scrape(&api).await;
    let accept_errors = value(
        &page,
        "chatorical_accept_errors_total{error=\"out_of_file_descriptors\"}",
    );
    assert!(
        (1.0..200.0).contains(&accept_errors),
        "accept errors counted, and the loop did not spin: {accept_errors}"
    );
    assert_eq!(
        value(
            &page,
            "chatorical_connections_timed_out_total{phase=\"headers\"}"
        ) as usize,
        attackers,
        "{page}"
    );
    let stderr = server.proc.stderr();
    let logged = stderr
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        logged <= 2,
        "accept errors logged at most every 10 s, not {logged} times"
    );
    eprintln!(
        "out of fds (ulimit -n 256, {baseline} fds before the attack): {accept_errors} accept \
         errors counted, {logged} logged; /healthz answered after {health_after:?}; \
         {attackers} slow connections closed after {:?}..{:?}",
        t.timed_out.iter().min(),
        t.timed_out.iter().max()
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_dir_and_database_files_are_private_sqlite() {
    tokio::time::timeout(Duration::from_secs(90), private_files_body(Backend::Sqlite))
        .await
        .expect("finished within 90 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_dir_and_database_files_are_private_postgres() {
    tokio::time::timeout(
        Duration::from_secs(90),
        private_files_body(Backend::Postgres),
    )
    .await
    .expect("finished within 90 s");
}

async fn private_files_body(backend: Backend) {
    let fake = FakeTelegram::start_local().await;
    let install = Install::new(backend, &fake.api_url()).await;
    let data = install.dir().join("data");
    // A fresh start under the usual umask 022.
    let mut server = install
        .serve_in_shell("serve (umask 022)", &data, "umask 022", &[])
        .await;
    let platform = install.platform_key_in(&data).await;
    let tenant = server.api.tenant(&platform, "privco").await;
    let v = server.api.visitor(&tenant).await;
    server.api.send(&v, "m1", "a private message").await;
    let mut checked = vec![
        (data.clone(), 0o700),
        (data.join("ws_token.secret"), 0o600),
        (install.dir().join("master.key"), 0o600),
    ];
    let db = data.join("chatorical.db");
    if backend == Backend::Sqlite {
        for f in ["chatorical.db", "chatorical.db-wal", "chatorical.db-shm"] {
            checked.push((data.join(f), 0o600));
        }
    }
    for (path, want) in &checked {
        assert_eq!(mode(path), *want, "{} is {:o}", path.display(), mode(path));
    }
    server.proc.terminate();
    server
        .proc
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("serve stops");
    if backend == Backend::Postgres {
        assert!(!db.exists(), "no SQLite file on PostgreSQL");
        eprintln!("private files on {backend:?}: {checked:?}");
        return;
    }

    // A database left 0644 by an older version is made private on the next start.
    let loose: Vec<_> = ["chatorical.db", "chatorical.db-wal", "chatorical.db-shm"]
        .iter()
        .map(|f| data.join(f))
        .filter(|p| p.exists())
        .collect();
    for p in &loose {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let server = install
        .serve_in_shell("serve again (umask 022)", &data, "umask 022", &[])
        .await;
    let warning = server
        .proc
        .wait_for_line(Duration::from_secs(5), |l| {
            l.contains("changed to 0600") && l.contains("chatorical.db")
        })
        .await;
    assert_eq!(mode(&db), 0o600, "the old database file is private now");
    for p in &loose {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    // Same data as before.
    let (status, body) = server
        .api
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["messages"][0]["text"], "a private message", "{body}");
    eprintln!(
        "private files on {backend:?}: {checked:?}; {} loose file(s) fixed on restart: {warning}",
        loose.len()
    );
}
