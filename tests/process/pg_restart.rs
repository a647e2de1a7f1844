//! PostgreSQL restarted under load (QUALITY.md, reliability test 7): a Jepsen-style
//! history check. One `serve` process runs on a PostgreSQL server of the test's own
//! (never the shared one on 5432); eight clients post visitor messages and agent
//! replies with unique `client_msg_id`s while the server is restarted twice — once
//! `pg_ctl restart -m fast`, once `-m immediate` (a crash: no shutdown checkpoint,
//! sessions cut) followed by a second of downtime. Every request's outcome is
//! recorded. Then:
//!
//! - during the outages requests fail cleanly: a 5xx with the error envelope, or a
//!   timeout — never a 4xx, never a dropped connection;
//! - `serve` recovers by itself (`/readyz` 200 again, new sends succeed, same process);
//! - every failed request, retried once with the same `client_msg_id`, succeeds;
//! - every message that got a 2xx exists exactly once with the same id, seq and text,
//!   and each conversation's seqs are 1..=n: nothing lost, nothing doubled, no gaps.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{Backend, Install, Tenant};

// ---------------------------------------------------------------------------
// A PostgreSQL server of the test's own
// ---------------------------------------------------------------------------

/// The directory with `initdb`, `pg_ctl` and `createdb`: `$PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian), else whatever `PATH` has.
fn pg_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A PostgreSQL cluster in a temp dir, listening on 127.0.0.1 on a free port (trust
/// auth, fsync on), stopped (`-m immediate`) when dropped — also when the test panics.
/// As root, `initdb` and `postgres` run as the `postgres` OS user (`runuser`), which
/// owns the temp dir; as anyone else, as that user.
struct OwnPostgres {
    bin: Option<PathBuf>,
    dir: TempDir,
    port: u16,
    as_postgres_user: bool,
}

impl OwnPostgres {
    /// `initdb`, start, `createdb chatorical`.
    async fn start() -> Self {
        let bin = pg_bin_dir();
        let dir = TempDir::new().expect("temp dir for PostgreSQL");
        // SAFETY: geteuid has no preconditions and cannot fail.
        let as_postgres_user = unsafe { libc::geteuid() } == 0;
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["postgres:", &dir.path().display().to_string()])
                .status()
                .expect("run chown");
            assert!(status.success(), "chown postgres: {}", dir.path().display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("its address")
            .port();
        let pg = OwnPostgres {
            bin,
            dir,
            port,
            as_postgres_user,
        };
        let data = pg.data_dir().display().to_string();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                // Server messages in English whatever the machine's locale.
                "--locale=C",
                "--no-sync",
            ],
        )
        .await;
        pg.pg_ctl(&["start"]).await;
        // createdb is a client: no need to be the postgres OS user.
        let createdb = pg.tool("createdb");
        let port = pg.port.to_string();
        let out = blocking(move || {
            Command::new(createdb)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "chatorical",
                ])
                .stdin(Stdio::null())
                .output()
        })
        .await;
        pg.check("createdb", &out);
        pg
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The URL of the test's database.
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/chatorical", self.port)
    }

    fn tool(&self, name: &str) -> PathBuf {
        self.bin
            .as_ref()
            .map_or_else(|| PathBuf::from(name), |b| b.join(name))
    }

    /// `NAME ARGS…` as the server's OS user.
    fn command(&self, name: &str, args: &[&str]) -> Command {
        let tool = self.tool(name);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(tool);
            c
        } else {
            Command::new(tool)
        };
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    /// Run `NAME ARGS…` as the server's OS user; insist on success.
    async fn run(&self, name: &str, args: &[&str]) {
        let mut cmd = self.command(name, args);
        let out = blocking(move || cmd.output()).await;
        self.check(&format!("{name} {}", args.join(" ")), &out);
    }

    /// `pg_ctl ACTION…` on this cluster, waiting for it to finish. The log goes to a
    /// file (never to pg_ctl's stdout, which the postmaster would keep open).
    async fn pg_ctl(&self, action: &[&str]) {
        let data = self.data_dir().display().to_string();
        let log = self.log_file().display().to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=on -c synchronous_commit=on \
             -c full_page_writes=on -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        let mut args = vec!["-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args).await;
    }

    /// `pg_ctl restart -m fast`: active sessions are cut, a clean shutdown, a start.
    async fn restart_fast(&self) {
        self.pg_ctl(&["-m", "fast", "restart"]).await;
    }

    /// `pg_ctl stop -m immediate`: every process is killed at once, as in a crash;
    /// the next start runs crash recovery from the WAL.
    async fn stop_immediate(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]).await;
    }

    /// Start the (stopped) server again on the same port.
    async fn start_again(&self) {
        self.pg_ctl(&["start"]).await;
    }

    fn check(&self, what: &str, out: &std::io::Result<Output>) {
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "`{what}` failed: {}\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            ),
            Err(e) => panic!(
                "cannot run `{what}` (PostgreSQL binaries: {:?}; set PG_BIN): {e}",
                self.bin
            ),
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data_dir().display().to_string();
        let stopped = self
            .command("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            // Not running, or pg_ctl failed: make sure no postmaster outlives the test.
            if let Some(pid) = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
            {
                // SAFETY: kill(2) with a pid read from our own cluster's pid file.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "---- own PostgreSQL (port {}) log, last lines ----\n{}",
                self.port,
                self.log_tail()
            );
        }
    }
}

/// Run a blocking call off the test's runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

// ---------------------------------------------------------------------------
// The history
// ---------------------------------------------------------------------------

const CONVERSATIONS: usize = 4;
const CLIENTS: usize = 8;
/// Each request's deadline: a request that takes longer counts as timed out (its
/// outcome unknown, like any other failure).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Who sends: the visitor (widget API) or an agent (admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    Visitor,
    Agent,
}

/// One conversation under load and its visitor's token.
#[derive(Debug, Clone)]
struct Conversation {
    id: String,
    visitor_token: String,
}

/// One message post.
#[derive(Debug, Clone)]
struct Request {
    conversation: usize,
    sender: Sender,
    client_msg_id: String,
    text: String,
}

/// What a request got back.
#[derive(Debug, Clone)]
enum Outcome {
    /// 2xx: stored (201) or already stored (200), with the message's id and seq.
    Ok { status: u16, id: String, seq: i64 },
    /// A non-2xx answer with its error code (`None`: no error envelope).
    Failed { status: u16, code: Option<String> },
    /// No answer in time, or the connection failed.
    NoAnswer(String),
}

impl Outcome {
    fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }
}

/// A request, when it was sent (since the start of the load) and what it got.
#[derive(Debug, Clone)]
struct Event {
    request: Request,
    sent_at: Duration,
    outcome: Outcome,
}

/// Everything needed to post into the conversations.
struct Target {
    http: Client,
    base: String,
    tenant: Tenant,
    conversations: Vec<Conversation>,
}

impl Target {
    /// Post `r` once; a 2xx must echo what was sent.
    async fn post(&self, r: &Request) -> Outcome {
        let c = &self.conversations[r.conversation];
        let (path, bearer, body) = match r.sender {
            Sender::Visitor => (
                format!("/v1/conversations/{}/messages", c.id),
                &c.visitor_token,
                json!({"client_msg_id": r.client_msg_id, "text": r.text}),
            ),
            Sender::Agent => (
                format!("/v1/admin/conversations/{}/messages", c.id),
                &self.tenant.key,
                json!({"client_msg_id": r.client_msg_id, "text": r.text, "author": "Ana"}),
            ),
        };
        let sent = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => return Outcome::NoAnswer(format!("{e:?}")),
        };
        let status = resp.status();
        let body: Value = match resp.text().await {
            Ok(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            Err(e) => return Outcome::NoAnswer(format!("reading the body: {e:?}")),
        };
        if !status.is_success() {
            return Outcome::Failed {
                status: status.as_u16(),
                code: body["error"]["code"].as_str().map(str::to_string),
            };
        }
        assert!(
            body["text"] == r.text.as_str()
                && body["client_msg_id"] == r.client_msg_id.as_str()
                && body["conversation_id"] == c.id.as_str(),
            "{status} for {r:?} answered another message: {body}"
        );
        Outcome::Ok {
            status: status.as_u16(),
            id: body["id"].as_str().expect("message id").to_string(),
            seq: body["seq"].as_i64().expect("seq"),
        }
    }

    /// `GET /readyz`: 200 ready, 503 not; `None` without an answer.
    async fn readyz(&self) -> Option<(StatusCode, Value)> {
        let resp = self
            .http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .ok()?;
        let status = resp.status();
        Some((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Poll `/readyz` until `want`; how long it took. Panics after `within`.
    async fn until_ready_is(&self, want: StatusCode, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let answer = self.readyz().await;
            if let Some((status, body)) = &answer
                && *status == want
            {
                if want == StatusCode::SERVICE_UNAVAILABLE {
                    assert_eq!(body["checks"]["database"], "unavailable", "{body}");
                }
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "/readyz not {want} within {within:?}; last answer {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every message of conversation `c`, in seq order (admin API, paged by seq).
    async fn messages(&self, c: usize) -> Vec<Value> {
        let id = &self.conversations[c].id;
        let mut all: Vec<Value> = Vec::new();
        loop {
            let since = all.last().map_or(0, |m| m["seq"].as_i64().expect("seq"));
            let resp = self
                .http
                .get(format!(
                    "{}/v1/admin/conversations/{id}/messages?since={since}&limit=500",
                    self.base
                ))
                .bearer_auth(&self.tenant.key)
                .send()
                .await
                .expect("history request");
            assert_eq!(resp.status(), StatusCode::OK, "history of {id}");
            let page: Value = resp.json().await.expect("history JSON");
            let page = page["messages"].as_array().cloned().unwrap_or_default();
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    }
}

/// The shared record of the load phase.
#[derive(Default)]
struct History {
    events: Mutex<Vec<Event>>,
    oks: AtomicUsize,
}

/// One client: posts one message after another into its conversation until `stop`,
/// recording every outcome; after a failure it waits a little (as a widget would).
async fn client(
    n: usize,
    target: Arc<Target>,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    start: Instant,
) {
    let conversation = n % CONVERSATIONS;
    // Two clients per conversation: the first half visitors, the rest agents.
    let sender = if n < CLIENTS / 2 {
        Sender::Visitor
    } else {
        Sender::Agent
    };
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let request = Request {
            conversation,
            sender,
            client_msg_id: format!("c{n}-{i}"),
            text: format!("client {n} message {i} {}", uuid::Uuid::new_v4().simple()),
        };
        i += 1;
        let sent_at = start.elapsed();
        let outcome = target.post(&request).await;
        let ok = outcome.is_ok();
        history.events.lock().expect("history").push(Event {
            request,
            sent_at,
            outcome,
        });
        if ok {
            history.oks.fetch_add(1, Ordering::SeqCst);
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The requests `serve` logged as failed (with their causes).
fn failures_logged(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| l.contains("request failed"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Wait until `more` further requests succeeded (the load makes progress).
async fn progress(history: &History, more: usize, what: &str) {
    let from = history.oks.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while history.oks.load(Ordering::SeqCst) < from + more {
        assert!(
            Instant::now() < deadline,
            "{what}: fewer than {more} successful posts within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_keeps_every_acknowledged_message() {
    tokio::time::timeout(Duration::from_secs(120), pg_restart_body())
        .await
        .expect("finished within 120 s");
}

async fn pg_restart_body() {
    let started = Instant::now();
    let pg = OwnPostgres::start().await;
    // No Telegram: the tenant never connects a bot, so nothing calls this address.
    let install = Install::new(Backend::Sqlite, "http://127.0.0.1:9/")
        .await
        .with_env("CHATORICAL_DATABASE__URL", &pg.url())
        .with_env("CHATORICAL_DATABASE__AUTO_MIGRATE", "false");
    install.run_ok(&["migrate"]).await;
    let mut server = install.serve(&[]).await;
    server.api.ready(Duration::from_secs(30)).await;
    let tenant = install.tenant("pgrestart").await;
    let mut conversations = Vec::new();
    for _ in 0..CONVERSATIONS {
        let v = server.api.visitor(&tenant).await;
        conversations.push(Conversation {
            id: v.conversation_id,
            visitor_token: v.token,
        });
    }
    let target = Arc::new(Target {
        http: Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("client"),
        base: server.api.base.clone(),
        tenant,
        conversations,
    });
    let setup = started.elapsed();

    // The load: eight clients, two per conversation.
    let history = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load_start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(client(
                n,
                target.clone(),
                history.clone(),
                stop.clone(),
                load_start,
            ))
        })
        .collect();
    progress(&history, 300, "before the restarts").await;

    // 1. A clean restart: sessions cut, a shutdown checkpoint, a start.
    let fast_at = load_start.elapsed();
    pg.restart_fast().await;
    let fast_recovery = target
        .until_ready_is(StatusCode::OK, Duration::from_secs(30))
        .await;
    progress(&history, 300, "after `pg_ctl restart -m fast`").await;

    // 2. A crash: every PostgreSQL process killed; a second down; crash recovery.
    let immediate_at = load_start.elapsed();
    pg.stop_immediate().await;
    target
        .until_ready_is(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.start_again().await;
    let up_again_at = load_start.elapsed();
    let immediate_recovery = target
        .until_ready_is(StatusCode::OK, Duration::from_secs(30))
        .await;
    progress(
        &history,
        300,
        "after `pg_ctl stop -m immediate` and a start",
    )
    .await;

    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("client task");
    }
    let load_time = load_start.elapsed();
    let events = std::mem::take(&mut *history.events.lock().expect("history"));

    // Failures are clean: a 5xx with the error envelope, or no answer in time.
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        match &e.outcome {
            Outcome::Ok { .. } => {}
            Outcome::Failed { status, code } => {
                // 503 `unavailable`, also for a statement cut off mid-flight (that was a
                // 500 `internal` until "connection closed" and PostgreSQL's "terminating
                // connection …" were mapped to `unavailable`).
                assert!(
                    *status == 503 && code.as_deref() == Some("unavailable"),
                    "a request during the restarts failed with {status} {code:?} \
                     (must be 503 with the error envelope, code `unavailable`): {e:?}; \
                     serve logged:\n{}",
                    failures_logged(&server.proc.stderr())
                );
                *failures
                    .entry(format!("{status} {}", code.as_deref().unwrap_or("")))
                    .or_default() += 1;
            }
            Outcome::NoAnswer(why) => {
                assert!(
                    why.contains("TimedOut") || why.contains("timed out"),
                    "the server dropped a request instead of answering: {why}"
                );
                *failures.entry("no answer in time".into()).or_default() += 1;
            }
        }
    }
    let failed: Vec<&Event> = events.iter().filter(|e| !e.outcome.is_ok()).collect();
    assert!(
        !failed.is_empty(),
        "no request failed while PostgreSQL was down: the test saw no outage"
    );
    // Every client succeeded again after the crash (the server recovered by itself).
    for n in 0..CLIENTS {
        let prefix = format!("c{n}-");
        assert!(
            events
                .iter()
                .any(|e| e.request.client_msg_id.starts_with(&prefix)
                    && e.sent_at > up_again_at
                    && e.outcome.is_ok()),
            "client {n} had no successful post after PostgreSQL came back"
        );
    }
    assert!(
        server.proc.wait_exit(Duration::ZERO).await.is_none(),
        "serve exited; stderr:\n{}",
        server.proc.stderr()
    );

    // Retry every failed request once, with the same client_msg_id and text: each
    // succeeds now — 201 if it was never stored, 200 if it was (committed, but the
    // answer was lost with the connection).
    let retries: Vec<(Request, Outcome)> = futures_util::stream::iter(failed.iter().map(|e| {
        let target = target.clone();
        let request = e.request.clone();
        async move {
            let outcome = target.post(&request).await;
            (request, outcome)
        }
    }))
    .buffer_unordered(CLIENTS)
    .collect()
    .await;
    let mut retried_created = 0usize;
    let mut retried_existing = 0usize;
    for (request, outcome) in &retries {
        match outcome {
            Outcome::Ok { status: 201, .. } => retried_created += 1,
            Outcome::Ok { .. } => retried_existing += 1,
            other => panic!("the retry of {request:?} failed after recovery: {other:?}"),
        }
    }

    // What was acknowledged: the last 2xx of each client_msg_id (original or retry).
    let mut acknowledged: HashMap<&str, (&Request, &str, i64)> = HashMap::new();
    let all_outcomes = events
        .iter()
        .map(|e| (&e.request, &e.outcome))
        .chain(retries.iter().map(|(r, o)| (r, o)));
    for (request, outcome) in all_outcomes {
        if let Outcome::Ok { id, seq, .. } = outcome {
            if let Some((_, first_id, first_seq)) = acknowledged.get(request.client_msg_id.as_str())
            {
                assert_eq!(
                    (*first_id, *first_seq),
                    (id.as_str(), *seq),
                    "two 2xx for {} named different messages",
                    request.client_msg_id
                );
            }
            acknowledged.insert(&request.client_msg_id, (request, id, *seq));
        }
    }
    // Every request was acknowledged in the end (all failures were retried).
    assert_eq!(acknowledged.len(), events.len());

    // The database: every acknowledged message exactly once, with its id, seq and
    // text, in its conversation; seqs dense from 1; nothing else.
    let mut stored_total = 0usize;
    let mut per_conversation = Vec::new();
    for c in 0..CONVERSATIONS {
        let messages = target.messages(c).await;
        let seqs: Vec<i64> = messages
            .iter()
            .map(|m| m["seq"].as_i64().expect("seq"))
            .collect();
        let dense: Vec<i64> = (1..=i64::try_from(seqs.len()).expect("count")).collect();
        assert!(
            seqs == dense,
            "conversation {c}: seqs are not 1..={} in order: {:?}",
            seqs.len(),
            seqs.windows(2).find(|w| w[1] != w[0] + 1)
        );
        let mut seen: HashMap<&str, i64> = HashMap::new();
        for m in &messages {
            let cmid = m["client_msg_id"].as_str().expect("client_msg_id");
            if let Some(other) = seen.insert(cmid, m["seq"].as_i64().expect("seq")) {
                panic!("conversation {c}: {cmid} stored twice (seq {other} and {m})");
            }
            let (request, id, seq) = acknowledged
                .get(cmid)
                .unwrap_or_else(|| panic!("conversation {c}: stored but never acknowledged: {m}"));
            assert_eq!(request.conversation, c, "{m} in the wrong conversation");
            assert_eq!(
                m["id"], *id,
                "{cmid}: the stored id is the acknowledged one"
            );
            assert_eq!(
                m["seq"], *seq,
                "{cmid}: the stored seq is the acknowledged one"
            );
            assert_eq!(m["text"], request.text.as_str(), "{cmid}: the stored text");
            let direction = match request.sender {
                Sender::Visitor => "inbound",
                Sender::Agent => "outbound",
            };
            assert_eq!(m["direction"], direction, "{m}");
        }
        stored_total += messages.len();
        per_conversation.push(messages.len());
    }
    assert_eq!(
        stored_total,
        acknowledged.len(),
        "every acknowledged message is stored (and nothing else)"
    );
    assert!(
        !server.proc.stderr().contains("panicked"),
        "serve panicked:\n{}",
        server.proc.stderr()
    );

    let oks = events.len() - failed.len();
    let failed_in = |from: Duration, to: Duration| {
        failed
            .iter()
            .filter(|e| (from..to).contains(&e.sent_at))
            .count()
    };
    let by_phase = [
        failed_in(Duration::ZERO, fast_at),
        failed_in(fast_at, immediate_at),
        failed_in(immediate_at, load_time),
    ];
    eprintln!(
        "pg restart history: {} requests over {load_time:?} ({oks} ok, {} failed: {failures:?}; before/around the fast restart/around the crash: \
         {by_phase:?}); \
         restart -m fast at {fast_at:?} (ready again after {fast_recovery:?}), \
         -m immediate at {immediate_at:?} (up at {up_again_at:?}, ready after {immediate_recovery:?}); \
         {} retried: {retried_created} created, {retried_existing} already stored; \
         {stored_total} stored {per_conversation:?}, each once, seqs dense; \
         setup {setup:?}, total {:?}",
        events.len(),
        failed.len(),
        retries.len(),
        started.elapsed()
    );
    drop(server);
    drop(pg);
}
