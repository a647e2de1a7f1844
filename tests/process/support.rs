//! Running the real `chatorical` binary as child processes: a throwaway installation
//! (temp dir, PostgreSQL database or SQLite), process guards that kill on drop and
//! keep stderr, and an HTTP client for seeding through the API.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::fake_telegram::FakeTelegram;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_chatorical");

/// Which database an installation runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default in the data dir.
    Sqlite,
    /// A fresh database on the server at `TEST_PG_URL`.
    Postgres,
}

fn pg_admin_url() -> String {
    std::env::var("TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A throwaway PostgreSQL database, dropped (WITH (FORCE)) with the guard.
pub struct PgDatabase {
    name: String,
    /// URL of the database itself.
    pub url: String,
}

impl PgDatabase {
    async fn create() -> Self {
        let admin = pg_admin_url();
        let name = format!("chatorical_p_{}", uuid::Uuid::new_v4().simple());
        let mut conn = AsyncPgConnection::establish(&admin)
            .await
            .expect("PostgreSQL at TEST_PG_URL");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        let (base, _) = admin
            .rsplit_once('/')
            .expect("TEST_PG_URL ends with /DATABASE");
        let url = format!("{base}/{name}");
        PgDatabase { name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and may run inside the test's runtime: own thread, own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = AsyncPgConnection::establish(&pg_admin_url()).await {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}

/// One installation: a temp dir (data dir, working dir, master key) and on
/// PostgreSQL a database of its own, talking to a fake Telegram.
pub struct Install {
    dir: TempDir,
    pg: Option<PgDatabase>,
    telegram_api: String,
}

impl Install {
    /// A fresh installation on `backend`, with Telegram at `telegram_api`.
    pub async fn new(backend: Backend, telegram_api: &str) -> Self {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgDatabase::create().await),
        };
        Install {
            dir: TempDir::new().expect("temp dir"),
            pg,
            telegram_api: telegram_api.to_string(),
        }
    }

    /// `chatorical ARGS…` with nothing inherited but `PATH`, the settings of
    /// these tests in the environment, and `--data-dir` / `--database-url`.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let dir = self.dir.path();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .current_dir(dir)
            .env("CHATORICAL_TELEGRAM__API_URL", &self.telegram_api)
            .env(
                "CHATORICAL_SECRETS__MASTER_KEY_FILE",
                dir.join("master.key"),
            )
            .env("CHATORICAL_DATABASE__AUTO_MIGRATE", "true")
            .env("CHATORICAL_WORKER__PER_CHAT_PER_SEC", "100000")
            .env("CHATORICAL_WORKER__PER_GROUP_PER_MIN", "100000000")
            .env("CHATORICAL_WORKER__PER_BOT_PER_SEC", "100000")
            .env("CHATORICAL_WORKER__LEASE_SECS", "2")
            .env("CHATORICAL_WORKER__BACKOFF_BASE_MS", "50")
            .env("CHATORICAL_WORKER__BACKOFF_MAX_SECS", "1")
            // Rate limits stay out of the way (one IP sends everything here).
            .env("CHATORICAL_LIMITS__SESSIONS_PER_IP_PER_MIN", "1000000")
            .env("CHATORICAL_LIMITS__MESSAGES_PER_VISITOR_PER_MIN", "1000000")
            .env("CHATORICAL_LOG__FORMAT", "json")
            .args(args)
            .arg("--data-dir")
            .arg(dir);
        if let Some(pg) = &self.pg {
            cmd.args(["--database-url", &pg.url]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Start a long-running command.
    pub fn spawn(&self, label: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::spawn(label, self.command(args, env))
    }

    /// Run a short command to completion; insist on success; return stdout.
    pub async fn run_ok(&self, args: &[&str]) -> String {
        let mut cmd = self.command(args, &[]);
        let what = args.join(" ");
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect("run chatorical");
        assert!(
            out.status.success(),
            "`chatorical {what}` failed: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// A platform key that may create tenants and issue keys (`keys issue --platform`).
    pub async fn platform_key(&self) -> String {
        let out = self
            .run_ok(&[
                "keys",
                "issue",
                "--platform",
                "--scope",
                "tenants:write",
                "--scope",
                "keys:write",
                "--json",
            ])
            .await;
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v["key"].as_str().expect("key in the JSON").to_string()
    }

    /// `chatorical serve --listen 127.0.0.1:0`, ready to take requests.
    pub async fn serve(&self, env: &[(&str, &str)]) -> Server {
        let proc = self.spawn("serve", &["serve", "--listen", "127.0.0.1:0"], env);
        let line = proc
            .wait_for_line(Duration::from_secs(30), |l| {
                l.starts_with("chatorical is running")
            })
            .await;
        let port = port_of(&line).unwrap_or_else(|| panic!("no port in {line:?}"));
        let base = format!("http://127.0.0.1:{port}");
        Server {
            proc,
            api: Api::new(&base),
            port,
        }
    }

    /// `chatorical worker`.
    pub fn worker(&self, label: &str) -> Proc {
        self.spawn(label, &["worker"], &[])
    }
}

/// The port of `… http://127.0.0.1:PORT …`.
fn port_of(line: &str) -> Option<u16> {
    let rest = &line[line.find("http://127.0.0.1:")? + "http://127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A child process that is killed (SIGKILL) and reaped when dropped, whose
/// stdout and stderr are collected by reader threads.
pub struct Proc {
    label: String,
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(&mut from);
        let mut line = Vec::new();
        while let Ok(n) = reader.read_until(b'\n', &mut line) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&text);
            line.clear();
        }
    })
}

impl Proc {
    fn spawn(label: &str, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stderr.take().expect("stderr"), stderr.clone()),
            collect(child.stdout.take().expect("stdout"), stdout.clone()),
        ];
        Proc {
            label: label.to_string(),
            child,
            stderr,
            stdout,
            readers,
            status: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Wait until a stderr line satisfies `pred`; return it. Panics on timeout or exit.
    pub async fn wait_for_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.stderr().lines().find(|l| pred(l)) {
                return l.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no such stderr line within {timeout:?}; stderr:\n{}",
                self.label,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL (`Child::kill` on unix) and reap.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// SIGTERM, through kill(1).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Wait up to `timeout` for the process to exit; `None` if it is still running.
    /// After an exit, stdout and stderr are complete.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.status.is_none() {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.status = Some(s);
                break;
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for r in self.readers.drain(..) {
            let _ = tokio::task::spawn_blocking(move || r.join()).await;
        }
        self.status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let err = self.stderr();
            let lines: Vec<&str> = err.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            eprintln!(
                "---- {} (pid {}) stderr, last {} lines ----\n{}",
                self.label,
                self.child.id(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// A running `serve`.
pub struct Server {
    pub proc: Proc,
    pub api: Api,
    pub port: u16,
}

/// A JSON-over-HTTP client for one server.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: Client,
}

/// A tenant with a key holding the scopes the tests need.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub widget_key: String,
    pub key: String,
    pub origin: String,
}

/// A visitor with an open conversation.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub token: String,
    pub ws_token: String,
    pub conversation_id: String,
}

impl Api {
    fn new(base: &str) -> Self {
        Api {
            base: base.to_string(),
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// A request with an optional bearer and JSON body; status and JSON answer.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    /// Like [`Api::json`], insisting on `want`.
    pub async fn expect(
        &self,
        want: StatusCode,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (status, v) = self.json(method.clone(), path, bearer, body).await;
        assert_eq!(status, want, "{method} {path}: {v}");
        v
    }

    /// A tenant (`POST /v1/admin/tenants`) and a tenant key (`POST /v1/admin/keys`).
    pub async fn tenant(&self, platform_key: &str, slug: &str) -> Tenant {
        let origin = format!("https://{slug}.example");
        let t = self
            .expect(
                StatusCode::CREATED,
                Method::POST,
                "/v1/admin/tenants",
                Some(platform_key),
                Some(json!({"slug": slug, "name": format!("{slug} Inc"), "allowed_origins": [origin]})),
            )
            .await;
        let k = self
            .expect(
                StatusCode::CREATED,
                Method::POST,
                "/v1/admin/keys",
                Some(platform_key),
                Some(json!({"tenant": slug, "scopes": ["conversations:write", "telegram:write", "outbox:write", "keys:write", "settings:write"]})),
            )
            .await;
        Tenant {
            id: t["id"].as_str().expect("tenant id").into(),
            widget_key: t["widget_key"].as_str().expect("widget_key").into(),
            key: k["key"].as_str().expect("key").into(),
            origin,
        }
    }

    /// Register a bot and a forum group with the fake, then `PUT /v1/admin/telegram`.
    /// Returns the bot token.
    pub async fn connect_telegram(
        &self,
        fake: &FakeTelegram,
        tenant: &Tenant,
        bot_id: u64,
        group: i64,
    ) -> String {
        let token = format!("{bot_id}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        fake.add_bot(&token, bot_id, &format!("support{bot_id}_bot"));
        fake.add_group(group, "Support", true);
        fake.set_member(bot_id, group, "administrator", true);
        self.expect(
            StatusCode::OK,
            Method::PUT,
            "/v1/admin/telegram",
            Some(&tenant.key),
            Some(json!({"bot_token": token, "group_chat_id": group})),
        )
        .await;
        token
    }

    /// A widget session and an open conversation.
    pub async fn visitor(&self, tenant: &Tenant) -> Visitor {
        let s = self
            .expect(
                StatusCode::OK,
                Method::POST,
                "/v1/widget/session",
                None,
                Some(json!({"widget_key": tenant.widget_key})),
            )
            .await;
        let token = s["visitor_token"]
            .as_str()
            .expect("visitor_token")
            .to_string();
        let c = self
            .expect(
                StatusCode::CREATED,
                Method::POST,
                "/v1/conversations",
                Some(&token),
                None,
            )
            .await;
        Visitor {
            token,
            ws_token: c["ws_token"].as_str().expect("ws_token").into(),
            conversation_id: c["id"].as_str().expect("conversation id").into(),
        }
    }

    /// A visitor message (`POST /v1/conversations/{id}/messages`).
    pub async fn send(&self, v: &Visitor, client_msg_id: &str, text: &str) -> Value {
        let (status, body) = self
            .json(
                Method::POST,
                &format!("/v1/conversations/{}/messages", v.conversation_id),
                Some(&v.token),
                Some(json!({"client_msg_id": client_msg_id, "text": text})),
            )
            .await;
        assert!(status.is_success(), "send: {status} {body}");
        body
    }

    /// The tenant's outbox items with `status` (at most 500).
    pub async fn outbox(&self, tenant: &Tenant, status: &str) -> Vec<Value> {
        let v = self
            .expect(
                StatusCode::OK,
                Method::GET,
                &format!("/v1/admin/outbox?status={status}&limit=500"),
                Some(&tenant.key),
                None,
            )
            .await;
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Poll until queued, in_flight and dead are all empty; panics after `timeout`.
    pub async fn outbox_drained(&self, tenant: &Tenant, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut left = Vec::new();
            for s in ["queued", "in_flight", "dead"] {
                left.extend(self.outbox(tenant, s).await);
            }
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "outbox not drained within {timeout:?}: {} item(s) left, e.g. {}",
                left.len(),
                left[0]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Poll `check` every 20 ms until it holds; panics after `timeout`.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
