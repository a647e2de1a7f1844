//! Running the real `chatorical` binary as child processes: a throwaway installation
//! (temp dir, PostgreSQL database or SQLite), process guards that kill on drop and
//! keep stderr, and an HTTP client for seeding through the API.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::{
    Message, client::IntoClientRequest, http::HeaderValue, protocol::CloseFrame,
};

use crate::fake_telegram::FakeTelegram;
use crate::pg::PgDatabase;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_chatorical");

/// Which database an installation runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The embedded default in the data dir.
    Sqlite,
    /// A fresh database on the server at `TEST_PG_URL`.
    Postgres,
}

/// One installation: a temp dir (data dir, working dir, master key) and on
/// PostgreSQL a database of its own, talking to a fake Telegram.
pub(crate) struct Install {
    dir: TempDir,
    pg: Option<PgDatabase>,
    telegram_api: String,
    /// Settings every command of this installation gets (after the defaults below).
    env: Vec<(String, String)>,
    /// `--database-url` instead of the database's own URL (a pooler in front of it).
    database_url: Option<String>,
}

impl Install {
    /// A fresh installation on `backend`, with Telegram at `telegram_api`.
    pub(crate) async fn new(backend: Backend, telegram_api: &str) -> Self {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgDatabase::create_async("chatorical_p").await),
        };
        Install {
            dir: TempDir::new().expect("temp dir"),
            pg,
            telegram_api: telegram_api.to_string(),
            env: Vec::new(),
            database_url: None,
        }
    }

    /// Give every command of this installation the setting `key=value` (as if it
    /// were in the shared configuration file of every node).
    pub(crate) fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Give every command `--database-url URL` (e.g. a pooler in front of the
    /// installation's PostgreSQL database) instead of the database's own URL.
    pub(crate) fn with_database_url(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_string());
        self
    }

    /// `chatorical ARGS…` with nothing inherited but `PATH`, the settings of
    /// these tests in the environment, and `--data-dir` / `--database-url`.
    pub(crate) fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        self.command_in(self.dir.path(), args, env)
    }

    /// Like [`Install::command`] with `--data-dir DATA_DIR` (another node's own
    /// directory; the working dir and master key stay the installation's).
    pub(crate) fn command_in(
        &self,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Command {
        let dir = self.dir.path();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .current_dir(dir)
            .env("CHATORICAL_TELEGRAM__API_URL", &self.telegram_api)
            // The fake is a local Bot API server: webhooks at plain http on loopback.
            .env("CHATORICAL_TELEGRAM__ALLOW_HTTP_WEBHOOK", "true")
            // Webhook mode unless a test asks for polling (no server.public_url here).
            .env("CHATORICAL_TELEGRAM__DEFAULT_MODE", "webhook")
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
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .arg("--data-dir")
            .arg(data_dir);
        if let Some(pg) = &self.pg {
            let url = self.database_url.as_deref().unwrap_or(&pg.url);
            cmd.args(["--database-url", url]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Start a long-running command.
    pub(crate) fn spawn(&self, label: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::spawn(label, self.command(args, env))
    }

    /// Run a short command to completion; insist on success; return stdout.
    pub(crate) async fn run_ok(&self, args: &[&str]) -> String {
        self.run_ok_in(self.dir.path(), args).await
    }

    /// Like [`Install::run_ok`] with `--data-dir DATA_DIR`.
    pub(crate) async fn run_ok_in(&self, data_dir: &Path, args: &[&str]) -> String {
        let mut cmd = self.command_in(data_dir, args, &[]);
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

    /// A platform key that may create tenants and issue them keys with the tenant scopes
    /// (`keys issue --platform`).
    pub(crate) async fn platform_key(&self) -> String {
        self.platform_key_in(self.dir.path()).await
    }

    /// Like [`Install::platform_key`], for the node whose data dir is `data_dir`.
    pub(crate) async fn platform_key_in(&self, data_dir: &Path) -> String {
        let out = self
            .run_ok_in(
                data_dir,
                &[
                    "keys",
                    "issue",
                    "--platform",
                    "--scope",
                    "tenants:write",
                    "--scope",
                    "keys:write",
                    // A key grants only what it holds: the tenant keys issued with it.
                    "--scope",
                    "conversations:write",
                    "--scope",
                    "telegram:write",
                    "--scope",
                    "outbox:write",
                    "--scope",
                    "settings:write",
                    "--scope",
                    "templates:write",
                    "--scope",
                    "usage:write",
                    "--scope",
                    "plans:write",
                    "--json",
                ],
            )
            .await;
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v["key"].as_str().expect("key in the JSON").to_string()
    }

    /// A tenant (`tenants create --json`) allowing the origin `https://SLUG.example`,
    /// and a key with every tenant scope the tests use (`keys issue --json`).
    ///
    /// The tenant is on a plan without limits (`unlimited`, synced from a catalogue file
    /// first): these tests are about other things than plans.
    pub(crate) async fn tenant(&self, slug: &str) -> Tenant {
        let origin = format!("https://{slug}.example");
        let catalogue = self.dir.path().join("unlimited-plan.toml");
        std::fs::write(&catalogue, UNLIMITED_PLAN).expect("write the plan catalogue");
        let catalogue = catalogue.to_str().expect("utf-8 path").to_string();
        self.run_ok(&["plans", "sync", "--file", &catalogue]).await;
        let out = self
            .run_ok(&[
                "tenants",
                "create",
                "--slug",
                slug,
                "--name",
                &format!("{slug} Inc"),
                "--origin",
                &origin,
                "--plan",
                "unlimited",
                "--json",
            ])
            .await;
        let t: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let mut args = vec!["keys", "issue", "--tenant", slug, "--json"];
        for scope in [
            "conversations:write",
            "telegram:write",
            "outbox:write",
            "keys:write",
            "settings:write",
            "usage:read",
        ] {
            args.extend(["--scope", scope]);
        }
        let out = self.run_ok(&args).await;
        let k: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        Tenant {
            id: t["id"].as_str().expect("tenant id").into(),
            slug: slug.into(),
            widget_key: t["widget_key"].as_str().expect("widget_key").into(),
            key: k["key"].as_str().expect("key").into(),
            origin,
        }
    }

    /// `chatorical serve --listen 127.0.0.1:0`, ready to take requests.
    pub(crate) async fn serve(&self, env: &[(&str, &str)]) -> Server {
        self.serve_labelled("serve", self.dir.path(), env).await
    }

    /// `serve` with a data dir of its own: one more node of the deployment. Ready
    /// once it said so and `/readyz` answers 200 (database and Redis reachable).
    pub(crate) async fn node(&self, label: &str, data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let server = self.serve_labelled(label, data_dir, env).await;
        server.api.ready(Duration::from_secs(30)).await;
        server
    }

    async fn serve_labelled(&self, label: &str, data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let cmd = self.command_in(data_dir, &["serve", "--listen", "127.0.0.1:0"], env);
        start_server(label, cmd).await
    }

    /// `serve` on `data_dir`, started by `sh -c "SETUP; exec chatorical serve …"`: the
    /// shell sets process limits or the umask (`ulimit -n 256; umask 022`) for it.
    pub(crate) async fn serve_in_shell(
        &self,
        label: &str,
        data_dir: &Path,
        setup: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let cmd = self.command_in(data_dir, &["serve", "--listen", "127.0.0.1:0"], env);
        start_server(label, in_shell(&cmd, setup)).await
    }

    /// The installation's database (the default data dir's SQLite file, or its
    /// PostgreSQL database), for a test that reads or seeds it directly.
    pub(crate) fn database(&self) -> chatorical::config::DatabaseUrl {
        match &self.pg {
            Some(pg) => chatorical::config::DatabaseUrl::Postgres(pg.url.clone()),
            None => chatorical::config::DatabaseUrl::Sqlite(self.dir.path().join("chatorical.db")),
        }
    }

    /// The installation's own directory (working dir, master key, default data dir).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `chatorical worker`.
    pub(crate) fn worker(&self, label: &str) -> Proc {
        self.spawn(label, &["worker"], &[])
    }
}

/// `cmd` (its program, arguments, environment and working dir) run by
/// `sh -c "SETUP; exec PROGRAM ARGS…"`, so that the shell's `ulimit`/`umask` apply to it.
fn in_shell(cmd: &Command, setup: &str) -> Command {
    let mut sh = Command::new("sh");
    sh.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            sh.env(k, v);
        }
    }
    if let Some(dir) = cmd.get_current_dir() {
        sh.current_dir(dir);
    }
    sh.arg("-c")
        .arg(format!("{setup}; exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    sh
}

/// Spawn a `serve` command and wait until it says it is running (on which port).
async fn start_server(label: &str, cmd: Command) -> Server {
    let proc = Proc::spawn(label, cmd);
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

/// The port of `… http://127.0.0.1:PORT …`.
fn port_of(line: &str) -> Option<u16> {
    let rest = &line[line.find("http://127.0.0.1:")? + "http://127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A child process that is killed (SIGKILL) and reaped when dropped, whose
/// stdout and stderr are collected by reader threads.
pub(crate) struct Proc {
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
    pub(crate) fn spawn(label: &str, mut cmd: Command) -> Self {
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
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Everything written to stdout so far.
    pub(crate) fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Wait until a stderr line satisfies `pred`; return it. Panics on timeout or exit.
    pub(crate) async fn wait_for_line(
        &self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
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
    pub(crate) fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// SIGTERM, through kill(1).
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Wait up to `timeout` for the process to exit; `None` if it is still running.
    /// After an exit, stdout and stderr are complete.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
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
    /// Kills the process, and fails the test when it logged a panic (caught or not):
    /// a process that panicked is broken even if every answer the test saw was fine.
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let err = self.stderr();
            let panic = err
                .lines()
                .find(|l| l.contains("panicked") || l.contains("task panicked"));
            assert!(
                panic.is_none(),
                "{} (pid {}) panicked: {}",
                self.label,
                self.child.id(),
                panic.unwrap_or_default()
            );
        }
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
pub(crate) struct Server {
    pub proc: Proc,
    pub api: Api,
    pub port: u16,
}

/// A widget socket.
pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Server {
    /// Open the widget socket with `token`, from a page on `origin`.
    pub(crate) async fn ws(&self, token: &str, origin: &str) -> Ws {
        let mut req = format!("ws://127.0.0.1:{}/v1/ws?token={token}", self.port)
            .into_client_request()
            .expect("ws request");
        req.headers_mut().insert(
            "origin",
            HeaderValue::from_str(origin).expect("origin header"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .unwrap_or_else(|e| panic!("socket on {}: {e}", self.proc.label));
        ws
    }
}

/// The next frame that is not a ping or pong, within `timeout`: a JSON text
/// frame, or the close frame.
pub(crate) async fn next_frame(
    ws: &mut Ws,
    timeout: Duration,
) -> Result<Value, Option<CloseFrame>> {
    loop {
        let msg = tokio::time::timeout(timeout, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket still open")
            .expect("a frame");
        match msg {
            Message::Text(t) => return Ok(serde_json::from_str(t.as_str()).expect("JSON frame")),
            Message::Close(frame) => return Err(frame),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// A JSON-over-HTTP client for one server.
#[derive(Clone)]
pub(crate) struct Api {
    pub base: String,
    http: Client,
}

/// A plan catalogue with one plan without limits.
const UNLIMITED_PLAN: &str = "[plans.unlimited]\nname = \"Unlimited\"\n";

/// A tenant with a key holding the scopes the tests need.
#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    pub id: String,
    pub slug: String,
    pub widget_key: String,
    pub key: String,
    pub origin: String,
}

/// A visitor with an open conversation.
#[derive(Debug, Clone)]
pub(crate) struct Visitor {
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

    /// A client that keeps no idle connection: each request on a connection of its
    /// own, closed after the answer.
    pub(crate) fn unpooled(base: &str, timeout: Duration) -> Self {
        Api {
            base: base.to_string(),
            http: Client::builder()
                .timeout(timeout)
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
        }
    }

    /// A request with an optional bearer and JSON body; status and JSON answer.
    pub(crate) async fn json(
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
    pub(crate) async fn expect(
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
    pub(crate) async fn tenant(&self, platform_key: &str, slug: &str) -> Tenant {
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
        // On a plan without limits: these tests are about other things than plans.
        self.json(
            Method::PUT,
            "/v1/admin/plans/unlimited",
            Some(platform_key),
            Some(json!({"name": "Unlimited"})),
        )
        .await;
        self.expect(
            StatusCode::OK,
            Method::PUT,
            &format!("/v1/admin/tenants/{slug}/plan"),
            Some(platform_key),
            Some(json!({"plan": "unlimited"})),
        )
        .await;
        Tenant {
            id: t["id"].as_str().expect("tenant id").into(),
            slug: slug.into(),
            widget_key: t["widget_key"].as_str().expect("widget_key").into(),
            key: k["key"].as_str().expect("key").into(),
            origin,
        }
    }

    /// Poll `GET /readyz` until it answers 200; panics after `timeout`.
    pub(crate) async fn ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.json(Method::GET, "/readyz", None, None).await;
            if status == StatusCode::OK {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {timeout:?}: {status} {body}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Register a bot and a forum group with the fake, then `PUT /v1/admin/telegram`.
    /// Returns the bot token.
    pub(crate) async fn connect_telegram(
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
    pub(crate) async fn visitor(&self, tenant: &Tenant) -> Visitor {
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
    pub(crate) async fn send(&self, v: &Visitor, client_msg_id: &str, text: &str) -> Value {
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
    pub(crate) async fn outbox(&self, tenant: &Tenant, status: &str) -> Vec<Value> {
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
    pub(crate) async fn outbox_drained(&self, tenant: &Tenant, timeout: Duration) {
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
pub(crate) async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until the fake Bot API got `text` in `group`; the forum topic it went into.
pub(crate) async fn topic_of_sent(
    fake: &FakeTelegram,
    group: i64,
    text: &str,
    timeout: Duration,
) -> i32 {
    eventually(timeout, "the visitor's message reaches Telegram", || {
        fake.sent_messages(group).iter().any(|m| m.text == text)
    })
    .await;
    fake.sent_messages(group)
        .iter()
        .find(|m| m.text == text)
        .and_then(|m| m.thread_id)
        .expect("sent into the conversation's topic")
}
