//! Load benchmark: the release `chatorical` binary as separate server processes,
//! driven over real sockets and HTTP.
//!
//! ```sh
//! ulimit -n 1048576                  # as high as allowed; the bench caps N to fit
//! cargo bench --bench load           # defaults: about a minute
//! cargo bench --bench load -- --help
//! # stored msg/s at 50 and 200 visitors next to this box's PostgreSQL ceiling:
//! cargo bench --bench load -- --only ceiling,stored --backends postgres,sqlite --concurrency 50,200
//! # 100k idle sockets (needs a hard fd limit above ~101k for this shell, and ~3 GB RAM):
//! ulimit -n 1048576 && cargo bench --bench load -- --only idle --sockets 100000
//! ```
//!
//! Phases (`--only idle,latency,ceiling,stored,cross,slow`):
//! - idle: N widget sockets (source addresses spread over 127.0.0.x), each waits for
//!   `hello`; the server's VmRSS before and after gives KiB per socket (before: read
//!   after a burst of 300 bare connections and `--settle-secs`, like after).
//! - latency: V visitors, each with a sender (socket `send`, then HTTP POST) and a
//!   second socket on the same conversation; latency = send → the second socket gets
//!   the `message` frame. Open loop at `--rate` msg/s for `--seconds`.
//! - ceiling: this box's PostgreSQL ceiling, measured by the bench (common/ceiling.rs):
//!   in a fresh database, scratch tables shaped like `conversations` (`--ceiling-conversations`
//!   rows) and `messages` (its columns and unique indexes), then from
//!   `--ceiling-connections` plain connections, each for `--seconds`, the way pgbench runs
//!   a script (closed loop, one statement per round trip, random conversation): the
//!   message-shaped transaction `BEGIN; UPDATE … SET last_seq = last_seq + 1 … RETURNING;
//!   INSERT; COMMIT`, one INSERT per transaction, and `--ceiling-batch` messages per
//!   transaction (one `UPDATE … FROM unnest`, one multi-row INSERT) from one connection and
//!   from all. Also runs by itself right before the first stored run when PostgreSQL is
//!   among `--backends` (unless `--no-ceiling`).
//! - stored: closed-loop HTTP POSTs from V visitors for `--seconds`, for each V of
//!   `--concurrency` (a list), on each backend: msg/s (201s per second), POST→201
//!   latency, server CPU ms per stored message, and msg/s as a percentage of the
//!   ceiling's message-shaped tps when the ceiling was measured in the same run.
//! - cross: this box's commit floor first (one message-shaped transaction at a time from
//!   one connection: no message is acknowledged faster), then one node without Redis as
//!   the reference, then two servers on one PostgreSQL + Redis; sender on node A,
//!   receivers on node B (and, as a control, on node A). Socket sends are also timed to
//!   their `ack` (the write and everything before it).
//! - slow: the latency run plus a busy conversation, without and with one extra socket
//!   on it that never reads.
//!
//! Every PostgreSQL run gets a fresh database on `TEST_PG_URL` (default
//! postgres://postgres@127.0.0.1:5432/postgres), dropped at the end.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::mpsc,
};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{
        Message,
        client::IntoClientRequest,
        http::HeaderValue,
        protocol::{WebSocketConfig, frame::coding::CloseCode},
    },
};
use tokio_util::sync::CancellationToken;

use common::{
    Backend, CpuWatch, Deployment, PgDatabase, Proc, Row, Tenant, Visitor,
    ceiling::{self, Ceiling},
    histogram, ms, record, summary, verdict,
};

/// Load benchmark for chatorical (see the file header for the phases).
#[derive(Debug, Parser)]
#[command(name = "load")]
struct Args {
    /// Idle sockets to open (capped by the fd limits of this process and the server).
    #[arg(long, default_value_t = 2000)]
    sockets: usize,
    /// Offered load of the latency runs, messages per second (open loop).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Length of each latency / throughput run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Visitors (conversations) in the latency runs; each has two sockets.
    #[arg(long, default_value_t = 500)]
    visitors: usize,
    /// Tenants the visitors are spread over.
    #[arg(long, default_value_t = 10)]
    tenants: usize,
    /// Concurrent visitors of the sustained stored-messages runs (closed loop), one run
    /// per value: `50,200`.
    #[arg(long, value_delimiter = ',', default_value = "50,200")]
    concurrency: Vec<usize>,
    /// Phases to run (`ceiling` also runs before the first `stored` when PostgreSQL is
    /// among the backends).
    #[arg(long, default_value = "idle,latency,stored,cross,slow")]
    only: String,
    /// Ceiling phase: PostgreSQL connections of the message-shaped, single-INSERT and
    /// many-connection batch runs.
    #[arg(long, default_value_t = 16)]
    ceiling_connections: usize,
    /// Ceiling phase: rows of the scratch conversations table.
    #[arg(long, default_value_t = 200)]
    ceiling_conversations: usize,
    /// Ceiling phase: messages per transaction of the batch runs.
    #[arg(long, default_value_t = 64)]
    ceiling_batch: usize,
    /// Do not run the ceiling before the stored runs (unless `--only` names it).
    #[arg(long)]
    no_ceiling: bool,
    /// Backends for latency and stored (idle and slow use the first, cross PostgreSQL).
    #[arg(long, default_value = "sqlite,postgres")]
    backends: String,
    /// Redis for the cross-node phase.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Source addresses 127.0.0.1 .. 127.0.0.N for client sockets.
    #[arg(long, default_value_t = 50)]
    source_ips: u32,
    /// Seconds to let the server settle before reading its RSS.
    #[arg(long, default_value_t = 3)]
    settle_secs: u64,
    /// Visitors whose ws tokens the idle sockets reuse.
    #[arg(long, default_value_t = 20)]
    idle_visitors: usize,
    /// Socket handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    connect_parallel: usize,
    /// Slow-reader phase: messages per second into the busy conversation (HTTP).
    #[arg(long, default_value_t = 200)]
    busy_rate: u64,
    /// Slow-reader phase: characters per busy message (the server allows 8000).
    #[arg(long, default_value_t = 8000)]
    busy_chars: usize,
    /// Slow-reader phase: seconds the busy conversation runs before the measured window,
    /// so the slow reader's buffers are full (and it is dropped) while others are measured.
    #[arg(long, default_value_t = 3)]
    busy_prefill_secs: u64,
    /// Slow-reader phase: offered rate of the main schedule (0: `--rate`). Lower than
    /// `--rate` by default: the busy conversation adds 1.6 MB/s, and the comparison is
    /// about isolation, which saturation would hide.
    #[arg(long, default_value_t = 500)]
    slow_rate: u64,
    /// Also measure the latency with HTTP POST as the sender (besides socket `send`).
    #[arg(long)]
    http_latency: bool,
    /// Before each measured run wait up to this many seconds for the machine to be
    /// quiet (other builds and tests share it); 0 only reports how busy it was.
    #[arg(long, default_value_t = 0)]
    wait_quiet: u64,
    /// "Quiet": the machine's CPU busy fraction over one second is at most this.
    #[arg(long, default_value_t = 0.25)]
    quiet_below: f64,
    /// Backend of the slow-reader phase (it needs one that sustains `--rate`).
    #[arg(long, default_value = "postgres")]
    slow_backend: String,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

type Ws = WebSocketStream<TcpStream>;

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

// ---------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------

fn ws_config() -> WebSocketConfig {
    // Small client buffers: the bench process holds as many sockets as the server.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Source address for the i-th client socket: 127.0.0.(1 + i % n).
fn source_ip(i: usize, n: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 1 + (i as u32 % n.clamp(1, 250)) as u8)
}

/// Open the widget socket from `src` (with a small receive buffer when `rcvbuf`).
async fn open_ws(port: u16, token: &str, src: Ipv4Addr, rcvbuf: Option<u32>) -> Result<Ws> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src.into(), 0))
        .with_context(|| format!("bind {src}"))?;
    if let Some(b) = rcvbuf {
        sock.set_recv_buffer_size(b)?;
    }
    let stream = sock
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .context("connect")?;
    stream.set_nodelay(true)?;
    let mut req = format!("ws://127.0.0.1:{port}/v1/ws?token={token}").into_client_request()?;
    req.headers_mut()
        .insert("origin", HeaderValue::from_static(common::ORIGIN));
    let (ws, _) = client_async_with_config(req, stream, Some(ws_config()))
        .await
        .context("websocket handshake")?;
    Ok(ws)
}

#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<FrameMessage>,
}

#[derive(Deserialize)]
struct FrameMessage {
    #[serde(default)]
    client_msg_id: Option<String>,
}

/// Read until a `hello` frame (30 s).
async fn wait_hello(ws: &mut Ws) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("no hello within 30 s"))?
            .ok_or_else(|| anyhow!("socket closed before hello"))??;
        if let Message::Text(t) = m {
            let f: Frame = serde_json::from_str(t.as_str())?;
            if f.kind == "hello" {
                return Ok(());
            }
        } else if let Message::Close(c) = m {
            bail!("closed before hello: {c:?}");
        }
    }
}

async fn open_with_hello(port: u16, token: &str, src: Ipv4Addr) -> Result<Ws> {
    let mut ws = open_ws(port, token, src, None).await?;
    wait_hello(&mut ws).await?;
    Ok(ws)
}

// ---------------------------------------------------------------------------
// Floors measured in the same run
// ---------------------------------------------------------------------------

/// Round trip of 64 bytes over loopback TCP through an echo task in this process.
async fn tcp_echo_rtt(n: usize) -> Result<Histogram<u64>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            let mut buf = [0u8; 64];
            while s.read_exact(&mut buf).await.is_ok() {
                if s.write_all(&buf).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut c = TcpStream::connect(addr).await?;
    c.set_nodelay(true)?;
    let mut h = histogram();
    let mut buf = [7u8; 64];
    for i in 0..n + 100 {
        let t = Instant::now();
        c.write_all(&buf).await?;
        c.read_exact(&mut buf).await?;
        if i >= 100 {
            record(&mut h, t.elapsed());
        }
    }
    drop(c);
    server.abort();
    Ok(h)
}

/// WebSocket ping → pong round trip through the server's socket loop.
async fn ws_ping_rtt(port: u16, token: &str, n: usize) -> Result<Histogram<u64>> {
    let mut ws = open_with_hello(port, token, Ipv4Addr::LOCALHOST).await?;
    let mut h = histogram();
    for i in 0..n + 50 {
        let t = Instant::now();
        ws.send(Message::Ping(vec![1, 2, 3, 4].into())).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Pong(_)))) => break,
                Ok(Some(Ok(_))) => continue,
                other => bail!("no pong: {other:?}"),
            }
        }
        if i >= 50 {
            record(&mut h, t.elapsed());
        }
    }
    let _ = ws.close(None).await;
    Ok(h)
}

/// Closed-loop `GET /healthz` requests/s with `concurrency` clients for `secs`.
async fn healthz_throughput(base: &str, concurrency: usize, secs: f64) -> f64 {
    let http = common::http_client();
    let url = format!("{base}/healthz");
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, count) = (http.clone(), url.clone(), count.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if let Ok(r) = http.get(&url).send().await
                        && r.bytes().await.is_ok()
                    {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    count.load(Ordering::Relaxed) as f64 / secs
}

// ---------------------------------------------------------------------------
// Idle sockets
// ---------------------------------------------------------------------------

struct IdleResult {
    requested: usize,
    held: usize,
    failed: usize,
    closed_by_server: u64,
    open_secs: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    client_kib_per_socket: f64,
    cap_note: Option<String>,
}

/// Bare connections opened and closed before the idle phase reads its baseline.
const IDLE_WARMUP_CONNECTIONS: usize = 300;

async fn idle_phase(args: &Args, srv: &Proc, visitors: &[Visitor]) -> Result<IdleResult> {
    let own = common::raise_own_nofile();
    let server_limit = srv.nofile().unwrap_or(1024);
    // Headroom for the database, HTTP clients, the listener and this process's files.
    let cap = own.min(server_limit).saturating_sub(300) as usize;
    let mut n = args.sockets;
    let mut cap_note = None;
    if n > cap {
        let msg = format!(
            "capped to {cap} sockets: open-files limit is {own} for this process and {server_limit} for the server \
             (run under `ulimit -n 1048576`; the hard limit here allows no more)"
        );
        eprintln!("load: {msg}");
        cap_note = Some(msg);
        n = cap;
    }
    // A burst of bare connections first (opened and closed at once): a server that
    // returns freed heap pages after bursts (heap.rs) has then done so before the
    // baseline is read, so the baseline is as trimmed as the reading with the sockets.
    for _ in 0..IDLE_WARMUP_CONNECTIONS {
        drop(TcpStream::connect(("127.0.0.1", srv.port)).await?);
    }
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let rss_before = srv.rss_kib().unwrap_or(0);
    let client_before = common::rss_kib(std::process::id()).unwrap_or(0);
    eprintln!("load: idle: opening {n} sockets (server RSS before {rss_before} KiB)");
    let closed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let port = srv.port;
    let results: Vec<Result<tokio::task::JoinHandle<()>>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let token = visitors[i % visitors.len()].ws_token.clone();
            let src = source_ip(i, args.source_ips);
            let closed = closed.clone();
            async move {
                let mut ws = open_with_hello(port, &token, src).await?;
                // Keep reading so pings are answered; count sockets the server closes.
                Ok(tokio::spawn(async move {
                    while let Some(Ok(m)) = ws.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                    closed.fetch_add(1, Ordering::Relaxed);
                }))
            }
        })
        .buffer_unordered(args.connect_parallel.max(1))
        .collect()
        .await;
    let open_secs = started.elapsed().as_secs_f64();
    let mut handles = Vec::new();
    let mut failed = 0;
    let mut first_err = None;
    for r in results {
        match r {
            Ok(h) => handles.push(h),
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        eprintln!("load: idle: {failed} sockets failed; first error: {e:#}");
    }
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let rss_after = srv.rss_kib().unwrap_or(0);
    let client_after = common::rss_kib(std::process::id()).unwrap_or(0);
    let held = handles.len();
    let closed_by_server = closed.load(Ordering::Relaxed);
    eprintln!(
        "load: idle: {held} sockets held in {open_secs:.1} s, server RSS {rss_before} → {rss_after} KiB"
    );
    for h in &handles {
        h.abort();
    }
    for h in handles {
        let _ = h.await;
    }
    // Let the server notice the closes before the next phase.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(IdleResult {
        requested: args.sockets,
        held,
        failed,
        closed_by_server,
        open_secs,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        client_kib_per_socket: client_after.saturating_sub(client_before) as f64
            / held.max(1) as f64,
        cap_note,
    })
}

// ---------------------------------------------------------------------------
// End-to-end latency (open loop)
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    Socket,
    Http,
}

struct LatencyPlan<'a> {
    send_node: &'a Proc,
    /// Receiver of visitor i connects to `recv_nodes[i % len]`.
    recv_nodes: Vec<&'a Proc>,
    visitors: &'a [Visitor],
    via: Via,
    rate: u64,
    seconds: u64,
    source_ips: u32,
    /// A busy conversation fed over HTTP: (visitor, msg/s, characters per message).
    busy: Option<(&'a Visitor, u64, usize)>,
    /// Add one socket on the busy conversation that never reads.
    slow_reader: bool,
    /// Processes whose CPU use is reported.
    watch: Vec<&'a Proc>,
    /// How long the busy conversation runs before the measured window.
    busy_prefill: Duration,
    /// `--wait-quiet`, `--quiet-below`.
    gate: (u64, f64),
}

struct LatencyResult {
    /// One histogram per receiving node (index as in `recv_nodes`).
    per_node: Vec<Histogram<u64>>,
    all: Histogram<u64>,
    http: Histogram<u64>,
    /// Socket sends: `send` → the sender's `ack` (the write and everything before it).
    ack: Histogram<u64>,
    sched_lag: Histogram<u64>,
    sent: u64,
    received: u64,
    rejected: u64,
    cpu: String,
    slow: Option<String>,
    /// Set when the machine was busy with other work before the run.
    busy_note: Option<String>,
}

/// Nanoseconds since `t0`, plus one (0 means "not sent").
fn stamp(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64 + 1
}

/// Runs in this process so far: client_msg_ids are unique per run (`r{run}m{k}`), or
/// the server would answer a repeated id with the stored message and publish nothing.
static RUN: AtomicU64 = AtomicU64::new(0);

struct Shared {
    /// `r{run}m` (main schedule) and `r{run}b` (busy conversation).
    main_prefix: String,
    busy_prefix: String,
    t0: Instant,
    sent_at: Vec<AtomicU64>,
    busy_sent_at: Vec<AtomicU64>,
    received: AtomicU64,
    rejected: AtomicU64,
}

impl Shared {
    /// Latency of a received client_msg_id, if it is one of ours.
    fn latency(&self, id: &str) -> Option<Duration> {
        let (arr, k) = if let Some(k) = id.strip_prefix(self.main_prefix.as_str()) {
            (&self.sent_at, k)
        } else if let Some(k) = id.strip_prefix(self.busy_prefix.as_str()) {
            (&self.busy_sent_at, k)
        } else {
            return None;
        };
        let sent = arr.get(k.parse::<usize>().ok()?)?.load(Ordering::Acquire);
        if sent == 0 {
            return None;
        }
        let now = self.t0.elapsed().as_nanos() as u64 + 1;
        Some(Duration::from_nanos(now.saturating_sub(sent)))
    }
}

async fn receiver(
    mut ws: Ws,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> (Histogram<u64>, bool) {
    let mut h = histogram();
    let mut closed = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let Ok(f) = serde_json::from_str::<Frame>(t.as_str()) else { continue };
                    if f.kind != "message" {
                        continue;
                    }
                    let id = f.message.and_then(|m| m.client_msg_id).unwrap_or_default();
                    if let Some(lat) = shared.latency(&id) {
                        record(&mut h, lat);
                        shared.received.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(_)) => {}
                _ => { closed = true; break }
            }
        }
    }
    let _ = ws.close(None).await;
    (h, closed)
}

/// Owns a sender socket: writes `send` frames for the indices it is given, drains
/// everything the server sends back (its own messages) and times each `ack` from its
/// `send`.
async fn socket_sender(
    mut ws: Ws,
    mut rx: mpsc::UnboundedReceiver<u64>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> Histogram<u64> {
    let mut acks = histogram();
    let mut open = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            k = rx.recv(), if open => match k {
                Some(k) => {
                    let frame = format!(
                        r#"{{"type":"send","client_msg_id":"{}{k}","text":"bench message {k}"}}"#,
                        shared.main_prefix
                    );
                    shared.sent_at[k as usize].store(stamp(shared.t0), Ordering::Release);
                    if ws.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
                None => open = false,
            },
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let Ok(f) = serde_json::from_str::<Frame>(t.as_str()) else { continue };
                    if f.kind == "error" || f.kind == "limit" {
                        shared.rejected.fetch_add(1, Ordering::Relaxed);
                    } else if f.kind == "ack"
                        && let Some(lat) = f
                            .message
                            .and_then(|m| m.client_msg_id)
                            .and_then(|id| shared.latency(&id))
                    {
                        record(&mut acks, lat);
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    }
    let _ = ws.close(None).await;
    acks
}

async fn latency_run(plan: LatencyPlan<'_>) -> Result<LatencyResult> {
    let n = (plan.rate * plan.seconds) as usize;
    let prefill = if plan.busy.is_some() {
        plan.busy_prefill
    } else {
        Duration::ZERO
    };
    let busy_n = plan.busy.map_or(0, |(_, r, _)| {
        (r as f64 * (plan.seconds as f64 + prefill.as_secs_f64())) as usize
    });
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::new(Shared {
        main_prefix: format!("r{run}m"),
        busy_prefix: format!("r{run}b"),
        t0: Instant::now(),
        sent_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
        busy_sent_at: (0..busy_n).map(|_| AtomicU64::new(0)).collect(),
        received: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
    });
    let cancel = CancellationToken::new();
    let v = plan.visitors.len();
    let source_ips = plan.source_ips;

    // Receivers ("agent-side" sockets), one per conversation (+ the busy one).
    let mut recv_specs: Vec<(usize, u16, String)> = plan
        .visitors
        .iter()
        .enumerate()
        .map(|(i, vis)| {
            let node = i % plan.recv_nodes.len();
            (node, plan.recv_nodes[node].port, vis.ws_token.clone())
        })
        .collect();
    if let Some((bv, _, _)) = plan.busy {
        recv_specs.push((0, plan.recv_nodes[0].port, bv.ws_token.clone()));
    }
    let socks: Vec<Result<(usize, Ws)>> =
        futures_util::stream::iter(recv_specs.into_iter().enumerate())
            .map(|(i, (node, port, token))| async move {
                Ok((
                    node,
                    open_with_hello(port, &token, source_ip(i, source_ips)).await?,
                ))
            })
            .buffered(128)
            .collect()
            .await;
    let mut receivers = Vec::new();
    for s in socks {
        let (node, ws) = s?;
        let sh = shared.clone();
        let c = cancel.clone();
        receivers.push((node, tokio::spawn(receiver(ws, sh, c))));
    }

    // Senders.
    let http = common::http_client();
    let mut senders = Vec::new();
    let mut txs = Vec::new();
    if plan.via == Via::Socket {
        let socks: Vec<Result<Ws>> =
            futures_util::stream::iter(plan.visitors.iter().enumerate())
                .map(|(i, vis)| {
                    let port = plan.send_node.port;
                    async move {
                        open_with_hello(port, &vis.ws_token, source_ip(i + 7, source_ips)).await
                    }
                })
                .buffered(128)
                .collect()
                .await;
        for ws in socks {
            let (tx, rx) = mpsc::unbounded_channel();
            txs.push(tx);
            senders.push(tokio::spawn(socket_sender(
                ws?,
                rx,
                shared.clone(),
                cancel.clone(),
            )));
        }
    } else {
        // Warm the HTTP connection pool so the first sends do not pay for connects.
        let base = plan.send_node.base();
        let warm: Vec<_> = (0..64)
            .map(|_| {
                let (http, url) = (http.clone(), format!("{base}/healthz"));
                tokio::spawn(async move {
                    if let Ok(r) = http.get(url).send().await {
                        let _ = r.bytes().await;
                    }
                })
            })
            .collect();
        for w in warm {
            let _ = w.await;
        }
    }

    // The slow reader: connects, reads its hello, then never reads again.
    let mut slow_ws = None;
    if plan.slow_reader
        && let Some((bv, _, _)) = plan.busy
    {
        let mut ws = open_ws(
            plan.recv_nodes[0].port,
            &bv.ws_token,
            Ipv4Addr::new(127, 0, 0, 99),
            Some(4096),
        )
        .await?;
        wait_hello(&mut ws).await?;
        slow_ws = Some(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let busy_note = common::quiet_gate(plan.gate.0, plan.gate.1).await;
    let http_hist = Arc::new(Mutex::new(histogram()));
    let watch = CpuWatch::start(&plan.watch);
    let busy_start = tokio::time::Instant::now() + Duration::from_millis(100);
    let start = busy_start + prefill;
    // The busy conversation's own open-loop schedule.
    let busy_task = plan.busy.map(|(bv, rate, chars)| {
        let (http, base, bv, shared) = (
            http.clone(),
            plan.send_node.base(),
            bv.clone(),
            shared.clone(),
        );
        let text: String = "x".repeat(chars.max(1));
        tokio::spawn(async move {
            let mut inflight = Vec::new();
            for j in 0..busy_n {
                let due = busy_start + Duration::from_nanos(j as u64 * 1_000_000_000 / rate.max(1));
                tokio::time::sleep_until(due).await;
                let (http, base, bv, shared, text) = (
                    http.clone(),
                    base.clone(),
                    bv.clone(),
                    shared.clone(),
                    text.clone(),
                );
                inflight.push(tokio::spawn(async move {
                    shared.busy_sent_at[j].store(stamp(shared.t0), Ordering::Release);
                    match common::post_message(
                        &http,
                        &base,
                        &bv,
                        &format!("{}{j}", shared.busy_prefix),
                        &text,
                    )
                    .await
                    {
                        Ok(s) if s.as_u16() == 201 => {}
                        _ => {
                            shared.rejected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for t in inflight {
                let _ = t.await;
            }
        })
    });

    // The main open-loop schedule.
    let mut sched_lag = histogram();
    let mut http_tasks = Vec::new();
    for k in 0..n {
        let due = start + Duration::from_nanos(k as u64 * 1_000_000_000 / plan.rate.max(1));
        let now = tokio::time::Instant::now();
        if due > now {
            tokio::time::sleep_until(due).await;
        }
        record(
            &mut sched_lag,
            tokio::time::Instant::now().duration_since(due),
        );
        let vi = k % v;
        match plan.via {
            Via::Socket => {
                let _ = txs[vi].send(k as u64);
            }
            Via::Http => {
                let (http, base, vis, shared, hh) = (
                    http.clone(),
                    plan.send_node.base(),
                    plan.visitors[vi].clone(),
                    shared.clone(),
                    http_hist.clone(),
                );
                http_tasks.push(tokio::spawn(async move {
                    let t = Instant::now();
                    shared.sent_at[k].store(stamp(shared.t0), Ordering::Release);
                    let ok = matches!(
                        common::post_message(&http, &base, &vis, &format!("{}{k}", shared.main_prefix), &format!("bench message {k}")).await,
                        Ok(s) if s.as_u16() == 201
                    );
                    if ok {
                        record(&mut hh.lock().unwrap_or_else(|p| p.into_inner()), t.elapsed());
                    } else {
                        shared.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
        }
    }
    let cpu = watch.report();
    drop(txs);
    for t in http_tasks {
        let _ = t.await;
    }
    if let Some(b) = busy_task {
        let _ = b.await;
    }
    // Wait for the stragglers (up to 10 s).
    let expected = (n + busy_n) as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.received.load(Ordering::Relaxed) + shared.rejected.load(Ordering::Relaxed)
        < expected
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let mut per_node = vec![histogram(); plan.recv_nodes.len()];
    let mut all = histogram();
    let mut receivers_closed = 0;
    for (node, r) in receivers {
        if let Ok((h, closed)) = r.await {
            let _ = per_node[node].add(&h);
            let _ = all.add(&h);
            receivers_closed += usize::from(closed);
        }
    }
    let mut ack = histogram();
    for s in senders {
        if let Ok(h) = s.await {
            let _ = ack.add(&h);
        }
    }
    if receivers_closed > 0 {
        eprintln!("load: warning: {receivers_closed} receiving sockets were closed by the server");
    }
    let slow = match slow_ws {
        Some(ws) => Some(drain_slow(ws).await),
        None => None,
    };
    let http = http_hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(LatencyResult {
        per_node,
        all,
        http,
        ack,
        sched_lag,
        sent: expected,
        received: shared.received.load(Ordering::Relaxed),
        rejected: shared.rejected.load(Ordering::Relaxed),
        cpu,
        slow,
        busy_note,
    })
}

/// What happened to the slow reader: read what is left and how it ended.
async fn drain_slow(mut ws: Ws) -> String {
    let mut frames = 0u64;
    let mut ending = "still open after the run (never dropped)".to_string();
    loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => frames += 1,
            Ok(Some(Ok(Message::Close(c)))) => {
                ending = match c {
                    Some(c) if c.code == CloseCode::Again => {
                        "dropped by the server with 1013 (too slow)".to_string()
                    }
                    Some(c) => format!(
                        "closed by the server with {} {}",
                        u16::from(c.code),
                        c.reason
                    ),
                    None => "closed by the server".to_string(),
                };
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                ending = format!("connection error: {e}");
                break;
            }
            Ok(None) => {
                ending = "connection ended without a close frame".to_string();
                break;
            }
            Err(_) => break,
        }
    }
    format!("{ending}; {frames} frames were still buffered for it")
}

// ---------------------------------------------------------------------------
// Sustained stored messages (closed loop)
// ---------------------------------------------------------------------------

struct StoredResult {
    per_sec: Vec<u64>,
    total: u64,
    other: u64,
    post: Histogram<u64>,
    cpu: String,
    /// CPU ms of the server process during the run.
    server_ms: u64,
    /// CPU ms of every `postgres` process during the run.
    postgres_ms: u64,
    secs: f64,
}

impl StoredResult {
    fn rate(&self) -> f64 {
        self.total as f64 / self.secs
    }

    /// `server CPU 0.460 ms per stored message (all postgres processes 0.310 ms)`.
    fn cpu_per_message(&self, backend: Backend) -> String {
        let per = |ms: u64| ms as f64 / self.total.max(1) as f64;
        format!(
            "server CPU {:.3} ms per stored message{}",
            per(self.server_ms),
            if backend == Backend::Postgres {
                format!(" (all postgres processes {:.3} ms)", per(self.postgres_ms))
            } else {
                String::new()
            }
        )
    }
}

/// `tag` makes this run's `client_msg_id`s its own (a repeated id is answered with the
/// stored message, not stored again).
async fn stored_run(
    srv: &Proc,
    tag: &str,
    visitors: &[Visitor],
    concurrency: usize,
    seconds: u64,
) -> StoredResult {
    let http = common::http_client();
    let base = srv.base();
    let buckets: Arc<Vec<AtomicU64>> = Arc::new((0..seconds).map(|_| AtomicU64::new(0)).collect());
    let other = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watch = CpuWatch::start(&[srv]);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|c| {
            let (http, base, vis, tag) = (
                http.clone(),
                base.clone(),
                visitors[c % visitors.len()].clone(),
                tag.to_string(),
            );
            let (buckets, other, stop) = (buckets.clone(), other.clone(), stop.clone());
            tokio::spawn(async move {
                let mut h = histogram();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = common::post_message(
                        &http,
                        &base,
                        &vis,
                        &format!("s{tag}c{c}x{i}"),
                        "stored message",
                    )
                    .await;
                    i += 1;
                    let sec = start.elapsed().as_secs() as usize;
                    match r {
                        Ok(s) if s.as_u16() == 201 => {
                            record(&mut h, t.elapsed());
                            if let Some(b) = buckets.get(sec) {
                                b.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                h
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let cpu = watch.report();
    let (server_ms, postgres_ms) = (watch.procs_ms(), watch.postgres_ms());
    let mut post = histogram();
    for t in tasks {
        if let Ok(h) = t.await {
            let _ = post.add(&h);
        }
    }
    let per_sec: Vec<u64> = buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
    StoredResult {
        total: per_sec.iter().sum(),
        per_sec,
        other: other.load(Ordering::Relaxed),
        post,
        cpu,
        server_ms,
        postgres_ms,
        secs: seconds as f64,
    }
}

// ---------------------------------------------------------------------------
// Orchestration
// ---------------------------------------------------------------------------

/// A server with its seeded tenants and visitors.
struct Env {
    procs: Vec<Proc>,
    tenants: Vec<Tenant>,
    visitors: Vec<Visitor>,
    _dir: tempfile::TempDir,
    pg: Option<PgDatabase>,
    redis_prefix: Option<String>,
}

impl Env {
    async fn teardown(mut self, redis_url: &str) {
        for p in &mut self.procs {
            p.stop().await;
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_now().await;
        }
        if let Some(prefix) = &self.redis_prefix {
            common::redis_cleanup(redis_url, prefix).await;
        }
    }
}

/// Start `nodes` servers on a fresh database (and Redis when `redis`), seed tenants
/// and visitors through node 0.
async fn start_env(args: &Args, backend: Backend, nodes: usize, redis: bool) -> Result<Env> {
    let dir = tempfile::tempdir()?;
    let pg = match backend {
        Backend::Postgres => Some(PgDatabase::create(&common::pg_admin_url()).await?),
        Backend::Sqlite => None,
    };
    let mut extra: Vec<(&str, String)> = vec![("CHATORICAL_WORKER__EMBEDDED", "false".into())];
    let mut redis_prefix = None;
    if redis {
        let prefix = format!("bench_{}", uuid::Uuid::new_v4().simple());
        extra.push(("CHATORICAL_REDIS__URL", args.redis_url.clone()));
        extra.push(("CHATORICAL_REDIS__KEY_PREFIX", prefix.clone()));
        redis_prefix = Some(prefix);
    }
    let dep = Deployment::new(dir.path(), pg.as_ref().map(|p| p.url.as_str()), &extra);
    let platform = dep.platform_key().await?;
    let mut procs = Vec::new();
    for i in 0..nodes {
        let label = if nodes == 1 {
            "server".to_string()
        } else {
            format!("node {}", (b'A' + i as u8) as char)
        };
        procs.push(dep.serve(&label).await?);
    }
    let base = procs[0].base();
    let http = common::http_client();
    let mut tenants = Vec::new();
    for t in 0..args.tenants.max(1) {
        tenants.push(
            common::create_tenant(
                &http,
                &base,
                &platform,
                &format!("bench-t{t}"),
                &["conversations:write"],
            )
            .await?,
        );
    }
    let visitors = common::create_visitors(
        &http,
        &base,
        &tenants,
        args.visitors
            .max(args.idle_visitors)
            .max(args.concurrency.iter().copied().max().unwrap_or(0)),
        32,
    )
    .await?;
    Ok(Env {
        procs,
        tenants,
        visitors,
        _dir: dir,
        pg,
        redis_prefix,
    })
}

/// `; ⚠ …` when the machine was busy with other work before a run.
fn busy_note(n: &Option<String>) -> String {
    n.as_ref().map(|n| format!("; ⚠ {n}")).unwrap_or_default()
}

/// A note when the offered rate was more than the server sustained: messages missing,
/// or a median far above any per-message cost (the queue grew during the run).
fn saturation(r: &LatencyResult) -> String {
    let p50 = r.all.value_at_quantile(0.5);
    if r.received < r.sent || p50 > 50_000 {
        " (SATURATED: offered rate above what the server sustained here; latency is queueing)"
            .into()
    } else {
        String::new()
    }
}

fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("×{:.1}", a as f64 / b as f64)
    }
}

/// The ceiling phase on a fresh database of its own: printed, added to `rows`, and
/// returned (`None` when it could not be measured; the reason is printed).
async fn ceiling_phase(args: &Args, rows: &mut Vec<Row>) -> Option<Ceiling> {
    eprintln!("load: this box's PostgreSQL ceiling");
    let gate = common::quiet_gate(args.wait_quiet, args.quiet_below).await;
    let plan = ceiling::Plan {
        connections: args.ceiling_connections,
        conversations: args.ceiling_conversations,
        batch: args.ceiling_batch,
        seconds: args.seconds,
    };
    let measured = match PgDatabase::create(&common::pg_admin_url()).await {
        Ok(db) => {
            let r = ceiling::measure(&db.url, plan).await;
            db.drop_now().await;
            r
        }
        Err(e) => Err(e),
    };
    let c = match measured {
        Ok(c) => c,
        Err(e) => {
            println!("\nceiling: not measured: {e:#}");
            rows.push(Row::new(
                "PostgreSQL ceiling: message-shaped transaction",
                "-",
                "not measured",
                "-",
                format!("{e:#}"),
            ));
            return None;
        }
    };
    let line = |v: &ceiling::Variant| {
        format!(
            "{:.0} tps = {:.0} msg/s; transaction p50 {} / p99 {}; {} failed{}; {}",
            v.tps(),
            v.msg_per_sec(),
            ms(v.latency.value_at_quantile(0.5)),
            ms(v.latency.value_at_quantile(0.99)),
            v.errors,
            v.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            v.cpu
        )
    };
    println!(
        "\nceiling ({}; scratch tables in a fresh database, {} conversations, {} s per run{}):",
        c.settings,
        plan.conversations,
        plan.seconds,
        busy_note(&gate)
    );
    let variants = [
        (
            format!(
                "message-shaped transaction (BEGIN; UPDATE … RETURNING last_seq; INSERT; COMMIT), {} connections",
                c.message_shaped.connections
            ),
            &c.message_shaped,
        ),
        (
            format!(
                "one INSERT per transaction, {} connections",
                c.single_insert.connections
            ),
            &c.single_insert,
        ),
        (
            format!(
                "{} messages per transaction (UPDATE … FROM unnest; INSERT … SELECT … FROM unnest), 1 connection",
                plan.batch
            ),
            &c.batch_one,
        ),
        (
            format!(
                "{} messages per transaction, {} connections",
                plan.batch, c.batch_many.connections
            ),
            &c.batch_many,
        ),
    ];
    for (name, v) in &variants {
        println!("  {name}: {}", line(v));
        rows.push(Row::new(
            format!("PostgreSQL ceiling: {name}"),
            "-",
            format!("{:.0} tps = {:.0} msg/s", v.tps(), v.msg_per_sec()),
            "-",
            format!("{}; {}{}", line(v), c.settings, busy_note(&gate)),
        ));
    }
    Some(c)
}

struct Floors {
    tcp: Histogram<u64>,
    ws_ping: Histogram<u64>,
    healthz: Histogram<u64>,
}

async fn run(args: Args) -> Result<()> {
    let phases: Vec<String> = args.only.split(',').map(|s| s.trim().to_string()).collect();
    let has = |p: &str| phases.iter().any(|x| x == p);
    let backends = Backend::parse_list(&args.backends)?;
    if backends.is_empty() {
        bail!("no backend");
    }
    let own = common::raise_own_nofile();
    println!("# chatorical load benchmark\n");
    println!(
        "machine: {}; load average {} at start",
        common::machine(),
        common::loadavg()
    );
    println!(
        "args: sockets={} rate={} msg/s seconds={} visitors={} tenants={} concurrency={:?} only={} backends={} (open-files limit {own})",
        args.sockets,
        args.rate,
        args.seconds,
        args.visitors,
        args.tenants,
        args.concurrency,
        args.only,
        args.backends
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut floors: Option<Floors> = None;
    let mut single_p50: Vec<(Backend, u64)> = Vec::new();

    let slow_backend = *Backend::parse_list(&args.slow_backend)?
        .first()
        .ok_or_else(|| anyhow!("--slow-backend"))?;
    let requested = backends.clone();
    let mut backends = backends;
    if has("slow") && !backends.contains(&slow_backend) {
        backends.push(slow_backend);
    }
    // The ceiling: run once, right before the first stored run when PostgreSQL is among
    // the backends, or by itself when `--only` names it. `Some(None)`: tried and failed.
    let want_ceiling =
        has("ceiling") || (!args.no_ceiling && requested.contains(&Backend::Postgres));
    let mut ceiling: Option<Option<Ceiling>> = None;
    for (bi, &backend) in backends.iter().enumerate() {
        let first = bi == 0;
        let slow_here = has("slow") && backend == slow_backend;
        let listed = requested.contains(&backend);
        let wants_here =
            (listed && (has("latency") || has("stored"))) || slow_here || (first && has("idle"));
        if !wants_here {
            continue;
        }
        eprintln!("load: starting a server on {}", backend.name());
        let env = start_env(&args, backend, 1, false).await?;
        let srv = &env.procs[0];
        if floors.is_none() {
            let tcp = tcp_echo_rtt(2000).await?;
            let ws_ping = ws_ping_rtt(srv.port, &env.visitors[0].ws_token, 2000).await?;
            let http = common::http_client();
            let healthz = common::healthz_rtt(&http, &srv.base(), 2000).await?;
            println!(
                "\nfloors: TCP echo {}; ws ping {}; GET /healthz {}",
                summary(&tcp),
                summary(&ws_ping),
                summary(&healthz)
            );
            floors = Some(Floors {
                tcp,
                ws_ping,
                healthz,
            });
        }
        let f = floors.as_ref().ok_or_else(|| anyhow!("floors"))?;

        if first && has("idle") {
            let idle_visitors = &env.visitors[..args.idle_visitors.max(1).min(env.visitors.len())];
            let r = idle_phase(&args, srv, idle_visitors).await?;
            let per =
                r.rss_after_kib.saturating_sub(r.rss_before_kib) as f64 / r.held.max(1) as f64;
            println!(
                "\nidle ({}): {} of {} sockets held (opened in {:.1} s, {} failed, {} closed by the server while idle); server RSS {} → {} KiB = {:.2} KiB/socket; client {:.2} KiB/socket",
                backend.name(),
                r.held,
                r.requested,
                r.open_secs,
                r.failed,
                r.closed_by_server,
                r.rss_before_kib,
                r.rss_after_kib,
                per,
                r.client_kib_per_socket
            );
            rows.push(Row::new(
                "idle widget sockets held",
                "≥ 100,000",
                format!("{} (of {} requested)", r.held, r.requested),
                "-",
                match &r.cap_note {
                    Some(n) => format!("NOT MEASURED at 100k here: {n}"),
                    None if r.held >= 100_000 => "met".into(),
                    None => format!(
                        "{} sockets requested; run with --sockets 100000 for the target",
                        r.requested
                    ),
                },
            ));
            rows.push(Row::new(
                "server RSS per idle socket, above baseline",
                "≤ 12 KiB",
                format!("{per:.2} KiB"),
                format!("baseline RSS {:.1} MiB", r.rss_before_kib as f64 / 1024.0),
                format!(
                    "{}; {} sockets over {} visitors' tokens, {} source IPs, opened at {:.0}/s",
                    verdict(per, 12.0, true),
                    r.held,
                    args.idle_visitors,
                    args.source_ips,
                    r.held as f64 / r.open_secs.max(0.001)
                ),
            ));
        }

        if listed && has("latency") {
            let vias = if args.http_latency {
                vec![Via::Socket, Via::Http]
            } else {
                vec![Via::Socket]
            };
            for via in vias {
                let visitors = &env.visitors[..args.visitors.min(env.visitors.len())];
                eprintln!("load: latency on {} via {via:?}", backend.name());
                let r = latency_run(LatencyPlan {
                    send_node: srv,
                    recv_nodes: vec![srv],
                    visitors,
                    via,
                    rate: args.rate,
                    seconds: args.seconds,
                    source_ips: args.source_ips,
                    busy: None,
                    slow_reader: false,
                    watch: vec![srv],
                    busy_prefill: Duration::from_secs(args.busy_prefill_secs),
                    gate: (args.wait_quiet, args.quiet_below),
                })
                .await?;
                let how = match via {
                    Via::Socket => "socket `send`",
                    Via::Http => "HTTP POST",
                };
                println!(
                    "\nlatency ({}, {how}, {} msg/s offered, {} visitors): {}; received {}/{} ({} rejected); scheduler lag {}; {}{}",
                    backend.name(),
                    args.rate,
                    visitors.len(),
                    summary(&r.all),
                    r.received,
                    r.sent,
                    r.rejected,
                    summary(&r.sched_lag),
                    r.cpu,
                    if via == Via::Http {
                        format!("; POST→201 {}", summary(&r.http))
                    } else {
                        format!("; send → ack {}", summary(&r.ack))
                    }
                );
                let p50 = r.all.value_at_quantile(0.5);
                let p99 = r.all.value_at_quantile(0.99);
                let lost = r.sent.saturating_sub(r.received);
                let note = format!(
                    "{} msg/s offered over {} conversations; {} of {} delivered{}{}; {}{}",
                    args.rate,
                    visitors.len(),
                    r.received,
                    r.sent,
                    if lost > 0 {
                        format!(" ({lost} missing)")
                    } else {
                        String::new()
                    },
                    saturation(&r),
                    r.cpu,
                    busy_note(&r.busy_note)
                );
                match via {
                    Via::Socket => {
                        single_p50.push((backend, p50));
                        rows.push(Row::new(
                            format!(
                                "widget→server→stored→other socket p50 ({}, socket send)",
                                backend.name()
                            ),
                            "≤ 3 ms",
                            ms(p50),
                            format!(
                                "ws ping RTT p50 {} → {}",
                                ms(f.ws_ping.value_at_quantile(0.5)),
                                ratio(p50, f.ws_ping.value_at_quantile(0.5))
                            ),
                            format!("{}; {note}", verdict(p50 as f64 / 1000.0, 3.0, true)),
                        ));
                        rows.push(Row::new(
                            format!(
                                "widget→server→stored→other socket p99 ({}, socket send)",
                                backend.name()
                            ),
                            "≤ 15 ms",
                            format!(
                                "{} (p90 {}, max {})",
                                ms(p99),
                                ms(r.all.value_at_quantile(0.9)),
                                ms(r.all.max())
                            ),
                            format!(
                                "ws ping RTT p99 {} → {}",
                                ms(f.ws_ping.value_at_quantile(0.99)),
                                ratio(p99, f.ws_ping.value_at_quantile(0.99))
                            ),
                            format!(
                                "{}; client scheduler lag p99 {}",
                                verdict(p99 as f64 / 1000.0, 15.0, true),
                                ms(r.sched_lag.value_at_quantile(0.99))
                            ),
                        ));
                    }
                    Via::Http => {
                        rows.push(Row::new(
                            format!("HTTP POST→stored→other socket ({})", backend.name()),
                            "(same targets)",
                            format!("p50 {} / p99 {}", ms(p50), ms(p99)),
                            format!(
                                "GET /healthz RTT p50 {} → {}",
                                ms(f.healthz.value_at_quantile(0.5)),
                                ratio(p50, f.healthz.value_at_quantile(0.5))
                            ),
                            format!(
                                "POST→201 p50 {} / p99 {}; {note}",
                                ms(r.http.value_at_quantile(0.5)),
                                ms(r.http.value_at_quantile(0.99))
                            ),
                        ));
                    }
                }
            }
        }

        if slow_here {
            let visitors = &env.visitors[..args.visitors.min(env.visitors.len())];
            let busy =
                common::create_visitor(&common::http_client(), &srv.base(), &env.tenants[0], 0)
                    .await?;
            let slow_rate = if args.slow_rate > 0 {
                args.slow_rate
            } else {
                args.rate
            };
            let mut p99s = Vec::new();
            let mut fate = String::new();
            let mut inconclusive = String::new();
            let mut notes = String::new();
            for slow_reader in [false, true] {
                eprintln!(
                    "load: slow reader on {}: {}",
                    backend.name(),
                    if slow_reader { "with" } else { "without" }
                );
                let r = latency_run(LatencyPlan {
                    send_node: srv,
                    recv_nodes: vec![srv],
                    visitors,
                    via: Via::Socket,
                    rate: slow_rate,
                    seconds: args.seconds,
                    source_ips: args.source_ips,
                    busy: Some((&busy, args.busy_rate, args.busy_chars)),
                    slow_reader,
                    watch: vec![srv],
                    busy_prefill: Duration::from_secs(args.busy_prefill_secs),
                    gate: (args.wait_quiet, args.quiet_below),
                })
                .await?;
                println!(
                    "\nslow reader {} ({}; {} msg/s + busy conversation {} msg/s × {} chars, from {} s before): {}; received {}/{}; {}{}",
                    if slow_reader { "present" } else { "absent" },
                    backend.name(),
                    slow_rate,
                    args.busy_rate,
                    args.busy_chars,
                    args.busy_prefill_secs,
                    summary(&r.all),
                    r.received,
                    r.sent,
                    r.cpu,
                    r.slow
                        .as_ref()
                        .map(|s| format!("; slow socket: {s}"))
                        .unwrap_or_default()
                );
                p99s.push(r.all.value_at_quantile(0.99));
                if !saturation(&r).is_empty() {
                    inconclusive = format!(
                        "INCONCLUSIVE: the server is saturated at {slow_rate} msg/s here (queueing dominates; rerun with a lower --slow-rate)"
                    );
                }
                notes.push_str(&busy_note(&r.busy_note));
                if let Some(s) = r.slow {
                    fate = s;
                }
            }
            let (without, with) = (p99s[0], p99s[1]);
            let pct = (with as f64 / without.max(1) as f64 - 1.0) * 100.0;
            rows.push(Row::new(
                format!("one slow reader: others' p99 increase ({})", backend.name()),
                "≤ +10%",
                format!("{pct:+.1}% ({} with vs {} without)", ms(with), ms(without)),
                format!("p99 without the slow reader {}", ms(without)),
                format!(
                    "{}; {slow_rate} msg/s over {} conversations + a busy conversation {} msg/s × {} chars over HTTP (from {} s before); slow socket (4 KiB SO_RCVBUF, never reads): {fate}{notes}",
                    if inconclusive.is_empty() {
                        verdict(pct, 10.0, true).to_string()
                    } else {
                        inconclusive.clone()
                    },
                    visitors.len(),
                    args.busy_rate,
                    args.busy_chars,
                    args.busy_prefill_secs
                ),
            ));
        }

        if listed && has("stored") {
            if want_ceiling && ceiling.is_none() {
                ceiling = Some(ceiling_phase(&args, &mut rows).await);
            }
            let ceiling = ceiling.as_ref().and_then(|c| c.as_ref());
            for (run_no, &concurrency) in args.concurrency.iter().enumerate() {
                let concurrency = concurrency.max(1);
                let hz = healthz_throughput(&srv.base(), concurrency, 2.0).await;
                eprintln!(
                    "load: stored messages on {}, {concurrency} visitors",
                    backend.name()
                );
                let gate = common::quiet_gate(args.wait_quiet, args.quiet_below).await;
                let visitors = &env.visitors[..concurrency.min(env.visitors.len())];
                let tag = format!("r{run_no}");
                let r = stored_run(srv, &tag, visitors, concurrency, args.seconds).await;
                let rate = r.rate();
                let min = r.per_sec.iter().copied().min().unwrap_or(0);
                let of_ceiling = ceiling
                    .map(|c| {
                        format!(
                            " = {:.1} % of this box's ceiling ({})",
                            c.percent(rate),
                            c.reference()
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "\nstored ({}, {concurrency} concurrent visitors, closed loop): {rate:.0} msg/s{of_ceiling}; POST→201 p50 {} / p99 {}; {}; per second: {:?}; {} non-201; POST→201 {}; {}; healthz at the same concurrency {hz:.0} req/s{}",
                    backend.name(),
                    ms(r.post.value_at_quantile(0.5)),
                    ms(r.post.value_at_quantile(0.99)),
                    r.cpu_per_message(backend),
                    r.per_sec,
                    r.other,
                    summary(&r.post),
                    r.cpu,
                    busy_note(&gate)
                );
                rows.push(Row::new(
                    format!(
                        "sustained stored messages/s ({}, {concurrency} visitors)",
                        backend.name()
                    ),
                    "≥ 5,000/s",
                    format!("{rate:.0}/s (slowest second {min})"),
                    match ceiling {
                        Some(c) => format!(
                            "{:.1} % of the PostgreSQL ceiling ({}); GET /healthz at {concurrency} concurrent: {hz:.0} req/s",
                            c.percent(rate),
                            c.reference()
                        ),
                        None => format!(
                            "GET /healthz at {concurrency} concurrent: {hz:.0} req/s → {:.2}",
                            rate / hz.max(1.0)
                        ),
                    },
                    format!(
                        "{}; {concurrency} visitors × closed-loop POST, {} s; POST→201 p50 {} / p99 {}; {}; {}",
                        verdict(rate, 5000.0, false),
                        args.seconds,
                        ms(r.post.value_at_quantile(0.5)),
                        ms(r.post.value_at_quantile(0.99)),
                        r.cpu_per_message(backend),
                        r.cpu
                    ) + &busy_note(&gate),
                ));
            }
        }
        env.teardown(&args.redis_url).await;
    }

    if has("ceiling") && ceiling.is_none() {
        ceiling_phase(&args, &mut rows).await;
    }

    if has("cross") {
        if !common::redis_up(&args.redis_url).await {
            rows.push(Row::new(
                "cross-node delivery via Redis adds (p50)",
                "≤ 1 ms",
                "not run",
                "-",
                format!("Redis at {} is not answering", args.redis_url),
            ));
        } else {
            // What one commit costs on this box right now: nothing is acknowledged (or
            // delivered) faster than that.
            eprintln!("load: commit floor: one message-shaped transaction at a time");
            let floor = match PgDatabase::create(&common::pg_admin_url()).await {
                Ok(db) => {
                    let r = ceiling::commit_floor(&db.url, args.seconds.min(3)).await;
                    db.drop_now().await;
                    r
                }
                Err(e) => Err(e),
            };
            let floor_note = match &floor {
                Ok((settings, v)) => {
                    println!(
                        "\ncommit floor ({settings}; message-shaped transaction from one connection, closed loop): {} transactions, {}; {}",
                        v.tx,
                        summary(&v.latency),
                        v.cpu
                    );
                    format!(
                        "; commit floor (one message-shaped transaction at a time) p50 {} / p99 {}",
                        ms(v.latency.value_at_quantile(0.5)),
                        ms(v.latency.value_at_quantile(0.99))
                    )
                }
                Err(e) => {
                    println!("\ncommit floor: not measured: {e:#}");
                    String::new()
                }
            };
            // The single-node reference right before, under the same machine conditions.
            eprintln!("load: cross-node reference: one node on PostgreSQL, no Redis");
            let env = start_env(&args, Backend::Postgres, 1, false).await?;
            let reference = latency_run(LatencyPlan {
                send_node: &env.procs[0],
                recv_nodes: vec![&env.procs[0]],
                visitors: &env.visitors[..args.visitors.min(env.visitors.len())],
                via: Via::Socket,
                rate: args.rate,
                seconds: args.seconds,
                source_ips: args.source_ips,
                busy: None,
                slow_reader: false,
                watch: vec![&env.procs[0]],
                busy_prefill: Duration::from_secs(args.busy_prefill_secs),
                gate: (args.wait_quiet, args.quiet_below),
            })
            .await?;
            env.teardown(&args.redis_url).await;
            println!(
                "\ncross-node reference (PostgreSQL, one node, no Redis, {} msg/s): {}; send → ack {}; {}",
                args.rate,
                summary(&reference.all),
                summary(&reference.ack),
                reference.cpu
            );
            single_p50.retain(|(b, _)| *b != Backend::Postgres);
            single_p50.push((Backend::Postgres, reference.all.value_at_quantile(0.5)));
            eprintln!("load: cross-node on PostgreSQL + Redis");
            let env = start_env(&args, Backend::Postgres, 2, true).await?;
            let (a, b) = (&env.procs[0], &env.procs[1]);
            let visitors = &env.visitors[..args.visitors.min(env.visitors.len())];
            let r = latency_run(LatencyPlan {
                send_node: a,
                recv_nodes: vec![b, a],
                visitors,
                via: Via::Socket,
                rate: args.rate,
                seconds: args.seconds,
                source_ips: args.source_ips,
                busy: None,
                slow_reader: false,
                watch: vec![a, b],
                busy_prefill: Duration::from_secs(args.busy_prefill_secs),
                gate: (args.wait_quiet, args.quiet_below),
            })
            .await?;
            let cross = &r.per_node[0];
            let same = &r.per_node[1];
            println!(
                "\ncross-node (PostgreSQL + Redis, {} msg/s, sender on A): receiver on B {}; receiver on A (via Redis too) {}; send → ack {}; received {}/{}; {}",
                args.rate,
                summary(cross),
                summary(same),
                summary(&r.ack),
                r.received,
                r.sent,
                r.cpu
            );
            let c50 = cross.value_at_quantile(0.5);
            let single = single_p50
                .iter()
                .find(|(b, _)| *b == Backend::Postgres)
                .map(|(_, p)| *p);
            let (measured, baseline, verdict_s) = match single {
                Some(s) => {
                    let diff = c50 as f64 / 1000.0 - s as f64 / 1000.0;
                    (
                        format!("{diff:+.2} ms (p50 {} vs {})", ms(c50), ms(s)),
                        format!(
                            "one node, PostgreSQL, no Redis, run just before: p50 {}",
                            ms(s)
                        ),
                        verdict(diff, 1.0, true).to_string(),
                    )
                }
                None => (
                    format!("p50 {}", ms(c50)),
                    "single-node PostgreSQL run not in this invocation".into(),
                    "no baseline".into(),
                ),
            };
            rows.push(Row::new(
                "cross-node delivery via Redis adds (p50)",
                "≤ 1 ms",
                measured,
                baseline,
                format!(
                    "{verdict_s}{}{}; cross-node p99 {}; same node through Redis p50 {} / p99 {}; send → ack p50 {}{floor_note}; {}{}{}",
                    saturation(&reference),
                    saturation(&r),
                    ms(cross.value_at_quantile(0.99)),
                    ms(same.value_at_quantile(0.5)),
                    ms(same.value_at_quantile(0.99)),
                    ms(r.ack.value_at_quantile(0.5)),
                    r.cpu,
                    busy_note(&reference.busy_note),
                    busy_note(&r.busy_note)
                ),
            ));
            env.teardown(&args.redis_url).await;
        }
    }

    if let Some(f) = &floors {
        rows.push(Row::new(
            "floor: loopback TCP echo RTT (bench client)",
            "-",
            format!(
                "p50 {} / p99 {}",
                ms(f.tcp.value_at_quantile(0.5)),
                ms(f.tcp.value_at_quantile(0.99))
            ),
            "-",
            "64 B, in-process echo task, sequential",
        ));
        rows.push(Row::new(
            "floor: WebSocket ping→pong RTT via the server",
            "-",
            format!(
                "p50 {} / p99 {}",
                ms(f.ws_ping.value_at_quantile(0.5)),
                ms(f.ws_ping.value_at_quantile(0.99))
            ),
            ratio(
                f.ws_ping.value_at_quantile(0.5),
                f.tcp.value_at_quantile(0.5),
            ) + " of TCP echo",
            "sequential, idle server",
        ));
        rows.push(Row::new(
            "floor: HTTP GET /healthz RTT",
            "-",
            format!(
                "p50 {} / p99 {}",
                ms(f.healthz.value_at_quantile(0.5)),
                ms(f.healthz.value_at_quantile(0.99))
            ),
            ratio(
                f.healthz.value_at_quantile(0.5),
                f.tcp.value_at_quantile(0.5),
            ) + " of TCP echo",
            "reqwest, keep-alive, sequential, idle server",
        ));
    }
    common::print_table("chatorical load: results", &rows);
    println!("\nload average {} at the end", common::loadavg());
    Ok(())
}
