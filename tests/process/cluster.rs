//! Two `serve` processes on one PostgreSQL database and one Redis behave as one
//! service (issue 4; `tests/api/cluster.rs` has the same in one process):
//! answers posted to node B (admin API, Telegram webhook) reach a socket on node A,
//! and so does presence; rate limits and usage counters are shared; Redis dying
//! mid-conversation loses nothing and shows nothing twice.
//!
//! Every test has its own database (migrated with `chatorical migrate`), its own
//! Redis key prefix (or its own `redis-server`), a tenant and key made with the CLI,
//! and nodes with data dirs of their own that share what every node of a deployment
//! shares: `database.url`, `redis.url`, `server.token_secret` and the master key.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

use crate::fake_telegram::{FakeTelegram, topic_text_update};
use crate::support::{Api, Backend, Install, Server, Tenant, Visitor, Ws, topic_of_sent};

/// `server.token_secret` of every node: a ws token from one node opens a socket on another.
const TOKEN_SECRET: &str = "process-cluster-token-secret-0123456789abcdef";

/// A key prefix of its own on the shared Redis.
fn unique_prefix() -> String {
    format!("chatorical_ptest_{}", uuid::Uuid::new_v4().simple())
}

// ---------------------------------------------------------------------------
// A redis-server of the test's own
// ---------------------------------------------------------------------------

/// A `redis-server` the test starts on a free port (never the shared one), killed
/// when dropped.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("its address")
            .port();
        let mut redis = OwnRedis { port, child: None };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Start `redis-server` on the port; return once it answers as this child.
    async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is running already");
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "redis-server on port {} exited at start: {status}",
                    self.port
                );
            }
            // Ready when it answers, and it is ours (not something else on the port).
            if self.server_pid().await == Some(pid) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} not answering within 15 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
    }

    /// The `process_id` of whatever Redis answers on the port.
    async fn server_pid(&self) -> Option<u32> {
        let client = redis::Client::open(self.url()).ok()?;
        let ask = async {
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            let info: String = redis::cmd("INFO")
                .arg("server")
                .query_async(&mut conn)
                .await
                .ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("process_id:"))
                .and_then(|p| p.trim().parse().ok())
        };
        tokio::time::timeout(Duration::from_secs(1), ask)
            .await
            .ok()
            .flatten()
    }

    /// Kill it (SIGKILL, as a crash would) and reap it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// Two nodes
// ---------------------------------------------------------------------------

/// One deployment: an installation (database, master key, settings) and two
/// `serve` nodes, each with a data dir of its own.
pub(crate) struct Deployment {
    pub(crate) install: Install,
    pub(crate) a: Server,
    pub(crate) b: Server,
    _dirs: [TempDir; 2],
}

/// `chatorical migrate`, then node A, then node B (A creates the master key both
/// use), each ready (`/readyz` 200: database and Redis reachable).
pub(crate) async fn deployment(
    telegram_api: &str,
    redis_url: &str,
    settings: &[(&str, &str)],
) -> Deployment {
    let mut install = Install::new(Backend::Postgres, telegram_api)
        .await
        .with_env("CHATORICAL_REDIS__URL", redis_url)
        .with_env("CHATORICAL_REDIS__KEY_PREFIX", &unique_prefix())
        .with_env("CHATORICAL_SERVER__TOKEN_SECRET", TOKEN_SECRET)
        // Migrated once, by the operator, before the nodes start.
        .with_env("CHATORICAL_DATABASE__AUTO_MIGRATE", "false");
    for (k, v) in settings {
        install = install.with_env(k, v);
    }
    install.run_ok(&["migrate"]).await;
    let dirs = [
        TempDir::new().expect("node A data dir"),
        TempDir::new().expect("node B data dir"),
    ];
    let a = install.node("node A", dirs[0].path(), &[]).await;
    let b = install.node("node B", dirs[1].path(), &[]).await;
    assert_ne!(a.port, b.port);
    Deployment {
        install,
        a,
        b,
        _dirs: dirs,
    }
}

/// An agent reply through `node`'s admin API.
async fn reply(node: &Api, t: &Tenant, v: &Visitor, text: &str) -> Value {
    node.expect(
        StatusCode::CREATED,
        Method::POST,
        &format!("/v1/admin/conversations/{}/messages", v.conversation_id),
        Some(&t.key),
        Some(json!({"text": text, "author": "Ana"})),
    )
    .await
}

// ---------------------------------------------------------------------------
// What a socket showed
// ---------------------------------------------------------------------------

/// A widget socket and every `message` and `presence` frame it showed.
struct Socket {
    label: String,
    ws: Ws,
    messages: Vec<Value>,
    presence: Vec<bool>,
}

impl Socket {
    /// Open a socket on `node` and read its `hello`.
    async fn open(label: &str, node: &Server, t: &Tenant, v: &Visitor) -> Self {
        let mut socket = Socket {
            label: label.to_string(),
            ws: node.ws(&v.ws_token, &t.origin).await,
            messages: Vec::new(),
            presence: Vec::new(),
        };
        let hello = socket.next(Instant::now() + Duration::from_secs(15)).await;
        assert_eq!(hello["type"], "hello", "{label}: first frame {hello}");
        assert_eq!(hello["conversation_id"], v.conversation_id.as_str());
        socket
    }

    /// The next JSON frame before `deadline` (pings skipped); panics on a close,
    /// an error or the deadline, saying what arrived so far.
    async fn next(&mut self, deadline: Instant) -> Value {
        loop {
            let msg = tokio::time::timeout_at(deadline.into(), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no frame in time; {}", self.label, self.shown()));
            let msg = msg
                .unwrap_or_else(|| panic!("{}: socket ended; {}", self.label, self.shown()))
                .unwrap_or_else(|e| panic!("{}: socket failed: {e}; {}", self.label, self.shown()));
            match msg {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    match frame["type"].as_str() {
                        Some("message") => self.messages.push(frame["message"].clone()),
                        Some("presence") => self
                            .presence
                            .push(frame["agents_online"].as_bool().expect("agents_online")),
                        _ => {}
                    }
                    return frame;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!(
                    "{}: unexpected frame {other:?}; {}",
                    self.label,
                    self.shown()
                ),
            }
        }
    }

    /// Read frames until `done` holds, for up to `within`.
    async fn until(&mut self, within: Duration, what: &str, done: impl Fn(&Socket) -> bool) {
        let deadline = Instant::now() + within;
        while !done(self) {
            if Instant::now() >= deadline {
                panic!(
                    "{}: not within {within:?}: {what}; {}",
                    self.label,
                    self.shown()
                );
            }
            self.next(deadline).await;
        }
    }

    /// Whether a message with `text` was shown.
    fn has(&self, text: &str) -> bool {
        self.messages.iter().any(|m| m["text"] == text)
    }

    fn texts(&self) -> Vec<&str> {
        self.messages
            .iter()
            .map(|m| m["text"].as_str().unwrap_or("<no text>"))
            .collect()
    }

    fn shown(&self) -> String {
        let seqs: Vec<i64> = self
            .messages
            .iter()
            .map(|m| m["seq"].as_i64().unwrap_or(-1))
            .collect();
        format!(
            "shown so far: seqs {seqs:?}, texts {:?}, presence {:?}",
            self.texts(),
            self.presence
        )
    }

    /// Every message of `expected` exactly once, nothing else, in seq order 1..=n.
    fn assert_exactly(&self, expected: &[String]) {
        let seqs: Vec<i64> = self
            .messages
            .iter()
            .map(|m| m["seq"].as_i64().expect("seq"))
            .collect();
        let want: Vec<i64> = (1..=i64::try_from(expected.len()).expect("count")).collect();
        assert_eq!(
            seqs,
            want,
            "{}: every message exactly once, in seq order; {}",
            self.label,
            self.shown()
        );
        assert_eq!(self.texts(), expected, "{}", self.label);
    }
}

// ---------------------------------------------------------------------------
// (1) Answers and presence through node B reach a socket on node A
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_presence_through_node_b_reach_a_socket_on_node_a() {
    tokio::time::timeout(Duration::from_secs(120), answers_body())
        .await
        .expect("finished within 120 s");
}

async fn answers_body() {
    let started = Instant::now();
    let group = -100_888;
    let fake = FakeTelegram::start_local().await;
    // Node A refreshes presence every second (the default is 20 s).
    let d = deployment(
        &fake.api_url(),
        &crate::test_redis::url(),
        &[("CHATORICAL_WS__PING_INTERVAL_SECS", "1")],
    )
    .await;
    let t = d.install.tenant("acme").await;
    // Telegram is connected through node B, so its webhook points at node B.
    let bot_token = d.b.api.connect_telegram(&fake, &t, 888, group).await;
    let hook = fake.webhook(&bot_token).expect("a webhook");
    assert!(
        hook.url.starts_with(&d.b.api.base),
        "the webhook calls node B: {}",
        hook.url
    );
    let v = d.a.api.visitor(&t).await;
    let mut ws = Socket::open("socket on A", &d.a, &t, &v).await;
    ws.until(Duration::from_secs(15), "the first presence", |s| {
        !s.presence.is_empty()
    })
    .await;
    assert_eq!(ws.presence, [false], "nobody has answered yet");

    // An agent answers through node B's admin API: the message and the agents'
    // presence reach the socket on node A.
    reply(&d.b.api, &t, &v, "admin reply via node B").await;
    ws.until(
        Duration::from_secs(20),
        "the reply and presence from node B",
        |s| s.has("admin reply via node B") && s.presence.last() == Some(&true),
    )
    .await;

    // The visitor writes through node B; an embedded worker takes it to Telegram.
    let visitor_text = format!("visitor via node B {}", uuid::Uuid::new_v4().simple());
    d.b.api.send(&v, "m1", &visitor_text).await;
    ws.until(Duration::from_secs(15), "the visitor's message", |s| {
        s.has(&visitor_text)
    })
    .await;
    let thread = topic_of_sent(&fake, group, &visitor_text, Duration::from_secs(20)).await;

    // An agent answers in the topic: Telegram calls node B's webhook.
    let update = topic_text_update(1, group, thread, 9001, 555, "Boris", "answer via Telegram");
    let status = fake
        .deliver_update(&bot_token, &update)
        .await
        .expect("webhook call");
    assert_eq!(status, StatusCode::OK);
    ws.until(Duration::from_secs(15), "the Telegram answer", |s| {
        s.has("answer via Telegram")
    })
    .await;
    let answer = ws
        .messages
        .iter()
        .find(|m| m["text"] == "answer via Telegram")
        .expect("shown");
    assert_eq!(answer["direction"], "outbound", "{answer}");
    assert_eq!(answer["author"], "Boris", "{answer}");
    ws.assert_exactly(&[
        "admin reply via node B".to_string(),
        visitor_text,
        "answer via Telegram".to_string(),
    ]);
    eprintln!(
        "cluster answers: presence {:?}, total {:?}",
        ws.presence,
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// (2) Rate limits and usage counters span the nodes
// ---------------------------------------------------------------------------

/// A POST; status, `Retry-After` and JSON body.
async fn post(
    http: &reqwest::Client,
    node: &Api,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> (StatusCode, Option<u64>, Value) {
    let mut req = http.post(format!("{}{path}", node.base)).json(&body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

/// 429 `rate_limited` with `details.retry_after` ≥ 1 and the same `Retry-After`.
fn assert_rate_limited(what: &str, (status, retry_after, body): &(StatusCode, Option<u64>, Value)) {
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{what}: {body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{what}: {body}");
    let secs = body["error"]["details"]["retry_after"]
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: details.retry_after in {body}"));
    assert!(secs >= 1, "{what}: {body}");
    assert_eq!(
        *retry_after,
        Some(secs),
        "{what}: Retry-After matches {body}"
    );
}

const LIMIT: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_usage_span_the_nodes() {
    tokio::time::timeout(Duration::from_secs(120), limits_body())
        .await
        .expect("finished within 120 s");
}

async fn limits_body() {
    let started = Instant::now();
    let fake = FakeTelegram::start_local().await;
    // 4 per minute: the budget refills one call every 15 s, far longer than the test
    // takes to spend it.
    let limit = LIMIT.to_string();
    let d = deployment(
        &fake.api_url(),
        &crate::test_redis::url(),
        &[
            ("CHATORICAL_LIMITS__SESSIONS_PER_TENANT_PER_MIN", &limit),
            ("CHATORICAL_LIMITS__MESSAGES_PER_VISITOR_PER_MIN", &limit),
        ],
    )
    .await;
    let (a, b) = (&d.a.api, &d.b.api);
    let t = d.install.tenant("acme").await;
    let other = d.install.tenant("other").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    // Sessions per tenant: two visitors with conversations (one per node) and two
    // more sessions, alternating; the fifth and sixth are refused on either node.
    let v1 = a.visitor(&t).await;
    let v2 = b.visitor(&t).await;
    let session = json!({"widget_key": t.widget_key});
    for node in [a, b] {
        let (status, _, body) =
            post(&http, node, "/v1/widget/session", None, session.clone()).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a session within the budget: {body}"
        );
    }
    for (name, node) in [("A", a), ("B", b)] {
        let r = post(&http, node, "/v1/widget/session", None, session.clone()).await;
        assert_rate_limited(&format!("a session over the budget on node {name}"), &r);
    }
    // Another tenant has a budget of its own.
    let o = b.visitor(&other).await;
    b.send(&o, "o1", "hello from elsewhere").await;

    // Messages per visitor: four split across the nodes, then one more on each.
    let path = format!("/v1/conversations/{}/messages", v1.conversation_id);
    for i in 0..LIMIT {
        let node = if i.is_multiple_of(2) { a } else { b };
        let body = json!({"client_msg_id": format!("m{i}"), "text": format!("message {i}")});
        let (status, _, body) = post(&http, node, &path, Some(&v1.token), body).await;
        assert_eq!(status, StatusCode::CREATED, "message {i}: {body}");
    }
    for (name, node) in [("A", a), ("B", b)] {
        let body = json!({"client_msg_id": format!("over-{name}"), "text": "one too many"});
        let r = post(&http, node, &path, Some(&v1.token), body).await;
        assert_rate_limited(&format!("a message over the budget on node {name}"), &r);
    }
    // Another visitor has a budget of its own; agents are not limited.
    b.send(&v2, "v2", "from the second visitor").await;
    reply(a, &t, &v1, "agent on A").await;
    reply(b, &t, &v1, "agent on B").await;

    // Usage: what succeeded, nothing that was refused. Counts are recorded after the
    // answer, so fold Redis into the database until they are all there.
    let want = json!({
        "conversations_started": 2,
        "messages_inbound": LIMIT + 1,
        "messages_outbound": 2,
        "topics_created": 0,
        "topic_renames": 0,
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        d.install.run_ok(&["usage", "summarize"]).await;
        let out = d
            .install
            .run_ok(&[
                "usage", "show", "--tenant", &t.slug, "--days", "2", "--json",
            ])
            .await;
        let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        if report["totals"] == want {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "usage totals {} never became {want}",
            report["totals"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Both nodes report the same through the API.
    for node in [a, b] {
        let report = node
            .expect(
                StatusCode::OK,
                Method::GET,
                "/v1/admin/usage?days=2",
                Some(&t.key),
                None,
            )
            .await;
        assert_eq!(report, shown, "{} reports what the CLI shows", node.base);
    }
    eprintln!("cluster limits and usage: total {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// (3) Redis dies mid-conversation
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_loses_nothing_and_shows_nothing_twice() {
    tokio::time::timeout(Duration::from_secs(150), outage_body())
        .await
        .expect("finished within 150 s");
}

/// Post message `i` of `phase` through one of the nodes, alternating nodes and
/// mixing agent replies with visitor messages; insist on 201.
async fn post_one(d: &Deployment, t: &Tenant, v: &Visitor, phase: &str, i: usize) -> String {
    let (name, node) = if i.is_multiple_of(2) {
        ("A", &d.a.api)
    } else {
        ("B", &d.b.api)
    };
    let text = format!("{phase} {i} via {name}");
    if i.is_multiple_of(3) {
        let body = node.send(v, &format!("{phase}-{i}"), &text).await;
        assert_eq!(body["text"], text.as_str(), "{body}");
    } else {
        reply(node, t, v, &text).await;
    }
    text
}

async fn outage_body() {
    let started = Instant::now();
    let fake = FakeTelegram::start_local().await;
    let mut redis = OwnRedis::start().await;
    let d = deployment(&fake.api_url(), &redis.url(), &[]).await;
    let t = d.install.tenant("acme").await;
    let v = d.a.api.visitor(&t).await;
    // The same visitor has the conversation open on both nodes (two tabs).
    let mut on_a = Socket::open("socket on A", &d.a, &t, &v).await;
    let mut on_b = Socket::open("socket on B", &d.b, &t, &v).await;

    let mut expected = Vec::new();
    for i in 0..6 {
        expected.push(post_one(&d, &t, &v, "before", i).await);
    }
    for ws in [&mut on_a, &mut on_b] {
        ws.until(
            Duration::from_secs(20),
            "the messages before the outage",
            |s| s.messages.len() >= 6,
        )
        .await;
    }

    // Redis dies. Every post still commits, through either node.
    redis.stop();
    for node in [&d.a.api, &d.b.api] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = node.json(Method::GET, "/readyz", None, None).await;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(body["checks"]["redis"], "unavailable", "{body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} still ready 20 s after Redis died: {body}",
                node.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for i in 0..10 {
        expected.push(post_one(&d, &t, &v, "during", i).await);
    }
    // Meanwhile each node's own posts still reach its socket (in order: a gap left by
    // the other node is read from the database).
    on_a.until(
        Duration::from_secs(20),
        "node A's posts during the outage",
        |s| s.has("during 8 via A"),
    )
    .await;
    on_b.until(
        Duration::from_secs(20),
        "node B's posts during the outage",
        |s| s.has("during 9 via B"),
    )
    .await;

    // Redis comes back on the same port; more posts; every socket catches up.
    redis.restart().await;
    for i in 0..6 {
        expected.push(post_one(&d, &t, &v, "after", i).await);
    }
    // A last message once both nodes see Redis again: behind it nothing can still
    // be on its way to a socket (a duplicate or a gap would break the seq order).
    for node in [&d.a.api, &d.b.api] {
        node.ready(Duration::from_secs(20)).await;
    }
    expected.push(post_one(&d, &t, &v, "last", 1).await);
    let n = expected.len();
    for ws in [&mut on_a, &mut on_b] {
        ws.until(Duration::from_secs(45), "every message", |s| {
            s.has(&expected[n - 1])
        })
        .await;
        ws.assert_exactly(&expected);
    }
    eprintln!(
        "cluster Redis outage: {n} messages on 2 sockets, total {:?}",
        started.elapsed()
    );
}
