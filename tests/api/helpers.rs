//! `spawn_app()` and request helpers shared by the API tests.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use chatorical::{
    app::Application,
    config::{Secret, Settings},
    http::AppState,
};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue},
};

use crate::pg::PgDatabase;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Run the same test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

/// A running server on port 0 with its own database.
pub(crate) struct TestApp {
    pub addr: SocketAddr,
    /// The `telemetry.metrics_listen` address, when the test set one.
    pub metrics_addr: Option<SocketAddr>,
    pub base: String,
    pub http: Client,
    pub state: AppState,
    pub platform_key: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    /// Set when `run_until_stopped` returned an error (e.g. a background task panicked).
    exit: Arc<std::sync::Mutex<Option<String>>>,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

/// A tenant made through the API, with a key holding every tenant scope.
#[derive(Debug, Clone)]
pub(crate) struct TenantFixture {
    pub id: String,
    pub slug: String,
    pub widget_key: String,
    pub key: String,
    pub origin: String,
}

/// A visitor with an open conversation.
#[derive(Debug, Clone)]
pub(crate) struct VisitorFixture {
    pub token: String,
    pub ws_token: String,
    pub conversation_id: String,
}

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub(crate) async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.data_dir = dir.path().to_path_buf();
    settings.server.shutdown_grace_secs = 2;
    settings.demo.enabled = false;
    settings.log.filter = "off".into();
    settings.database.max_connections = 8;
    settings.secrets.master_key_file = Some(dir.path().join("master.key"));
    // Shared by every node of a test deployment (ws tokens verify on any node).
    settings.server.token_secret = Some(Secret::new("test-token-secret-0123456789abcdefghijkl"));
    // Nothing is throttled by the budgets unless a test says so.
    settings.worker.per_chat_per_sec = 10_000;
    settings.worker.per_group_per_min = 1_000_000;
    settings.worker.per_bot_per_sec = 10_000;
    // Nor by the rate limits (tests/api/limits.rs sets its own).
    settings.limits.sessions_per_ip_per_min = 1_000_000;
    settings.limits.sessions_per_tenant_per_min = 1_000_000;
    settings.limits.messages_per_visitor_per_min = 1_000_000;
    settings.worker.backoff_base_ms = 50;
    settings.worker.backoff_max_secs = 1;
    // Webhooks at this server's plain-http loopback address, which the fake Bot API
    // takes as a local Bot API server does (FakeTelegram::start_local).
    settings.telegram.allow_http_webhook = true;
    // These tests connect tenants in webhook mode unless they ask for polling (with
    // no server.public_url the product's default would be polling).
    settings.telegram.default_mode = chatorical::config::TelegramDefaultMode::Webhook;
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let db = PgDatabase::create_async("chatorical_t").await;
            settings.database.url = Some(Secret::new(db.url.clone()));
            settings.database.auto_migrate = true;
            Some(db)
        }
    };
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("app builds");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let exit: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let exit_slot = exit.clone();
    let server = tokio::spawn(async move {
        let result = app
            .run_until_stopped(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = result {
            *exit_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    });
    // Every scope there is: a key can only grant what it holds, and tests issue tenant
    // keys with it.
    let mut scopes: Vec<String> = chatorical::domain::Resource::ALL
        .iter()
        .map(|r| format!("{}:write", r.as_str()))
        .collect();
    scopes.push("outbox:reveal".into());
    let platform = chatorical::tenancy::issue_key(
        &state.db,
        &chatorical::tenancy::Caller::Operator,
        chatorical::tenancy::KeyRequest {
            scopes,
            name: Some("test platform".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("platform key: {e:?}"));
    TestApp {
        addr,
        metrics_addr,
        base: format!("http://{addr}"),
        http: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        state,
        platform_key: platform.key,
        stop: Some(tx),
        server: Some(server),
        exit,
        _dir: dir,
        _pg: pg,
    }
}

impl TestApp {
    /// Send a request with an optional bearer and JSON body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request sent")
    }

    /// Like [`call`], returning status and JSON body.
    pub(crate) async fn json(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let resp = self.call(method, path, bearer, body).await;
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Create a tenant through the API, and a key for it with every tenant scope.
    pub(crate) async fn tenant(&self, slug: &str) -> TenantFixture {
        let origin = format!("https://{slug}.example");
        let (status, t) = self
            .json(
                Method::POST,
                "/v1/admin/tenants",
                Some(&self.platform_key),
                Some(json!({"slug": slug, "name": slug, "allowed_origins": [origin]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{t}");
        let (status, k) = self
            .json(
                Method::POST,
                "/v1/admin/keys",
                Some(&self.platform_key),
                Some(json!({"tenant": slug, "scopes": ["keys:write", "settings:write", "conversations:write", "telegram:write", "outbox:write", "outbox:reveal"], "name": "all"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{k}");
        TenantFixture {
            id: t["id"].as_str().expect("id").into(),
            slug: slug.into(),
            widget_key: t["widget_key"].as_str().expect("widget_key").into(),
            key: k["key"].as_str().expect("key").into(),
            origin,
        }
    }

    /// Put the tenant on a plan without limits (created on first use), for tests that
    /// start more conversations or send more messages than the `free` plan allows.
    pub(crate) async fn unlimited(&self, tenant: &TenantFixture) {
        let (status, p) = self
            .json(
                Method::PUT,
                "/v1/admin/plans/unlimited",
                Some(&self.platform_key),
                Some(json!({"name": "Unlimited", "active": true, "limits": {}, "channels": ["widget", "telegram"], "features": {}})),
            )
            .await;
        assert!(status.is_success(), "{status}: {p}");
        let (status, r) = self
            .json(
                Method::PUT,
                &format!("/v1/admin/tenants/{}/plan", tenant.slug),
                Some(&self.platform_key),
                Some(json!({"plan": "unlimited"})),
            )
            .await;
        assert!(status.is_success(), "{status}: {r}");
    }

    /// Issue a tenant key with the given scopes (via the platform key).
    pub(crate) async fn key(&self, tenant: &TenantFixture, scopes: &[&str]) -> (String, String) {
        let (status, k) = self
            .json(
                Method::POST,
                "/v1/admin/keys",
                Some(&self.platform_key),
                Some(json!({"tenant": tenant.slug, "scopes": scopes})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{k}");
        (
            k["id"].as_str().expect("id").into(),
            k["key"].as_str().expect("key").into(),
        )
    }

    /// A new visitor of `tenant` with an open conversation.
    pub(crate) async fn visitor(&self, tenant: &TenantFixture) -> VisitorFixture {
        let (status, s) = self
            .json(
                Method::POST,
                "/v1/widget/session",
                None,
                Some(json!({"widget_key": tenant.widget_key})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{s}");
        let token = s["visitor_token"]
            .as_str()
            .expect("visitor_token")
            .to_string();
        let (status, c) = self
            .json(Method::POST, "/v1/conversations", Some(&token), None)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        VisitorFixture {
            token,
            ws_token: c["ws_token"].as_str().expect("ws_token").into(),
            conversation_id: c["id"].as_str().expect("id").into(),
        }
    }

    /// Post a visitor message; returns status and body.
    pub(crate) async fn send(
        &self,
        v: &VisitorFixture,
        client_msg_id: &str,
        text: &str,
    ) -> (StatusCode, Value) {
        self.json(
            Method::POST,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            Some(json!({"client_msg_id": client_msg_id, "text": text})),
        )
        .await
    }

    /// Post an agent reply through the admin API.
    pub(crate) async fn reply(
        &self,
        t: &TenantFixture,
        conversation_id: &str,
        text: &str,
    ) -> (StatusCode, Value) {
        self.json(
            Method::POST,
            &format!("/v1/admin/conversations/{conversation_id}/messages"),
            Some(&t.key),
            Some(json!({"text": text, "author": "Ana"})),
        )
        .await
    }

    /// Open the widget socket with an optional `Origin`.
    pub(crate) async fn ws(
        &self,
        token: &str,
        origin: Option<&str>,
    ) -> Result<Ws, tungstenite::Error> {
        let mut req = format!("ws://{}/v1/ws?token={token}", self.addr).into_client_request()?;
        if let Some(o) = origin {
            req.headers_mut()
                .insert("origin", HeaderValue::from_str(o).expect("header"));
        }
        tokio_tungstenite::connect_async(req)
            .await
            .map(|(ws, _)| ws)
    }

    /// Stop the server (as SIGTERM would) and wait for it.
    pub(crate) async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }
}

impl Drop for TestApp {
    /// Stops the server, and fails the test when the app panicked anywhere (a handler,
    /// the worker, a socket, the hub) or its run ended abnormally, even if every
    /// request the test made looked fine.
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if std::thread::panicking() {
            return;
        }
        let panics = self.state.panics.count();
        assert_eq!(
            panics, 0,
            "the app panicked {panics} time(s); see the log above"
        );
        let exit = self.exit.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(exit.is_none(), "the app stopped abnormally: {exit:?}");
    }
}

/// The HTTP status a refused socket upgrade answered with.
pub(crate) fn refused_status(e: &tungstenite::Error) -> Option<u16> {
    match e {
        tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
        _ => None,
    }
}

/// Next JSON text frame (skipping pings), within 5 s.
pub(crate) async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Read frames until one of `kind` arrives.
pub(crate) async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// Send a JSON frame.
pub(crate) async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send frame");
}

/// The error code of an error envelope.
pub(crate) fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

/// A tenant connected to a fake Telegram: its bot, its forum group, its app.
pub(crate) struct TelegramFixture {
    pub app: TestApp,
    pub fake: crate::fake_telegram::FakeTelegram,
    pub tenant: TenantFixture,
    pub token: String,
    pub bot_id: u64,
    pub group: i64,
}

/// The shipped Telegram budgets (30/s per bot, 1/s per chat, 20/min per group) in time
/// scaled `scale` times, instead of the raised budgets the other tests run with.
pub(crate) fn shipped_budgets(s: &mut chatorical::config::Settings, scale: u32) {
    let shipped = chatorical::config::WorkerSettings::default();
    s.worker.per_bot_per_sec = shipped.per_bot_per_sec;
    s.worker.per_chat_per_sec = shipped.per_chat_per_sec;
    s.worker.per_group_per_min = shipped.per_group_per_min;
    s.worker.budget_time_scale = scale;
}

/// Bot token of the n-th fake bot.
pub(crate) fn bot_token(n: u64) -> String {
    format!("{n}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA{n}")
}

/// Register a bot and a forum group with the fake (bot is an admin that may manage topics).
pub(crate) fn fake_bot_and_group(
    fake: &crate::fake_telegram::FakeTelegram,
    bot_id: u64,
    group: i64,
) -> String {
    let token = bot_token(bot_id);
    fake.add_bot(&token, bot_id, &format!("bot{bot_id}"));
    fake.add_group(group, "Support", true);
    fake.set_member(bot_id, group, "administrator", true);
    token
}

/// Connect `tenant` to the fake through the admin API.
pub(crate) async fn connect_telegram(
    app: &TestApp,
    tenant: &TenantFixture,
    token: &str,
    group: i64,
) -> Value {
    let (status, body) = app
        .json(
            Method::PUT,
            "/v1/admin/telegram",
            Some(&tenant.key),
            Some(json!({"bot_token": token, "group_chat_id": group})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// An app talking to a fake Telegram, with tenant `acme` connected.
pub(crate) async fn spawn_with_telegram(
    backend: Backend,
    tweak: impl FnOnce(&mut Settings),
) -> TelegramFixture {
    let fake = crate::fake_telegram::FakeTelegram::start_local().await;
    let api_url = fake.api_url();
    let app = spawn_app_with(backend, |s| {
        s.telegram.api_url = api_url;
        s.telegram.request_timeout_secs = 3;
        tweak(s);
    })
    .await;
    let tenant = app.tenant("acme").await;
    let token = fake_bot_and_group(&fake, 111, -100111);
    connect_telegram(&app, &tenant, &token, -100111).await;
    TelegramFixture {
        app,
        fake,
        tenant,
        token,
        bot_id: 111,
        group: -100111,
    }
}

/// Poll until `check` holds (or panic after `secs`).
pub(crate) async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
