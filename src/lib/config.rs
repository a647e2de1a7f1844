//! Settings: defaults < TOML file < `CHATORICAL_*` environment < command-line flags.
//!
//! The file is `--config PATH`, else `$CHATORICAL_CONFIG`, else `./chatorical.toml`,
//! else `/etc/chatorical/chatorical.toml` (the first that exists; an explicitly named
//! file must exist). Environment keys use `__` for nesting: `CHATORICAL_DATABASE__URL`.
//! Unknown keys and bad values are errors that name the key. Secrets print as `***`.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use toml::Value;

use crate::domain::Cidr;
use crate::error::{Error, ErrorCode, Result};

/// A secret string: never printed (Debug and Serialize show `***`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured on a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// All settings of a chatorical process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Settings {
    /// HTTP server.
    pub server: ServerSettings,
    /// Database.
    pub database: DatabaseSettings,
    /// WebSocket limits and timers.
    pub ws: WsSettings,
    /// Logging.
    pub log: LogSettings,
    /// The demo tenant of the embedded default.
    pub demo: DemoSettings,
    /// Telegram Bot API client.
    pub telegram: TelegramSettings,
    /// Outbox delivery worker.
    pub worker: WorkerSettings,
    /// Secrets at rest.
    pub secrets: SecretsSettings,
    /// Redis: fan-out, limits, counters and presence across nodes.
    pub redis: RedisSettings,
    /// Rate limits.
    pub limits: LimitSettings,
    /// Agent presence.
    pub presence: PresenceSettings,
    /// Trace export (OpenTelemetry) and the Prometheus endpoint.
    pub telemetry: TelemetrySettings,
    /// Billing: plans sold through Stripe.
    pub billing: BillingSettings,
    /// The audit log.
    pub audit: AuditSettings,
    /// Retention of closed conversations and unused visitors.
    pub retention: RetentionSettings,
}

/// The largest `retention.batch_size` and `retention.batch_messages`.
pub const MAX_RETENTION_BATCH: u32 = 10_000;

/// Retention settings: how the worker deletes what tenants' retention no longer keeps
/// (see [`crate::retention`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Seconds between two runs of the worker's retention (and the audit log's).
    pub interval_secs: u64,
    /// Conversations (or visitors) deleted per transaction at most (1–10,000).
    pub batch_size: u32,
    /// Messages deleted per transaction at most, a bigger conversation going in parts
    /// (1–10,000).
    pub batch_messages: u32,
    /// Least milliseconds between two transactions, leaving room to other writers; a
    /// batch that took longer is followed by a pause as long as it took. 0: no pause.
    pub pause_ms: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            interval_secs: 3600,
            batch_size: 500,
            batch_messages: 1000,
            pause_ms: 5,
        }
    }
}

/// Audit log settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Days audit entries are kept; older ones are deleted by the worker's hourly retention.
    pub retention_days: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            retention_days: 400,
        }
    }
}

/// Billing settings (the `[billing]` section; its one table is `[billing.stripe]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BillingSettings {
    /// Stripe: catalogue sync, Checkout, the customer portal and webhooks.
    pub stripe: StripeSettings,
}

/// Stripe settings (`[billing.stripe]`). Billing is on when `secret_key` is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StripeSettings {
    /// Stripe secret API key (`sk_live_…`, `sk_test_…` or a restricted `rk_…` key).
    /// Unset: no billing (`plans sync` writes the database only, billing routes answer
    /// 503 `billing_not_configured`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    /// Signing secret of the webhook endpoint (`whsec_…`), checked on every delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<Secret>,
    /// Base URL of the Stripe API (tests point it at a fake).
    pub api_base: String,
    /// Days a tenant whose payment failed keeps its plan before it drops to `free`.
    pub grace_days: u32,
    /// Seconds before one Stripe API request counts as failed (timed out).
    pub request_timeout_secs: u64,
}

impl Default for StripeSettings {
    fn default() -> Self {
        StripeSettings {
            secret_key: None,
            webhook_secret: None,
            api_base: "https://api.stripe.com".into(),
            grace_days: 7,
            request_timeout_secs: 30,
        }
    }
}

/// Trace export settings (exporting needs a binary built with the `otlp` feature) and
/// who may read `/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// Base URL of an OTLP/HTTP collector (`http://127.0.0.1:4318`); spans are POSTed
    /// to `<otlp_endpoint>/v1/traces`. Unset means no export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of traces kept, from 0.0 to 1.0.
    pub sample_ratio: f64,
    /// When set, `GET /metrics` answers only requests with `Authorization: Bearer <token>`
    /// (401 otherwise). Unset: no token is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<Secret>,
    /// A second address (`HOST:PORT`) that serves `/metrics` and nothing else; the main
    /// listener then answers 404 for it. Unset: `/metrics` is on the main listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            service_name: "chatorical".into(),
            sample_ratio: 1.0,
            metrics_token: None,
            metrics_listen: None,
        }
    }
}

/// Redis settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://HOST:PORT/DB`; unset means everything stays in this process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// When Redis is unreachable, let rate-limited calls through (true) or refuse them (false).
    pub limits_fail_open: bool,
    /// Prefix of every Redis key and channel, to share one Redis between deployments.
    pub key_prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: None,
            limits_fail_open: true,
            key_prefix: "chatorical".into(),
        }
    }
}

/// Rate limits (per minute unless named otherwise).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Widget sessions started per client IP per minute (new and resumed visitors alike).
    pub sessions_per_ip_per_min: u32,
    /// Widget sessions that start a new visitor, per tenant per minute. A session that
    /// resumes one of the tenant's visitors (a valid visitor token) is never refused by
    /// this budget, so strangers spending it cannot lock out returning visitors.
    pub sessions_per_tenant_per_min: u32,
    /// Messages a visitor may send per minute.
    pub messages_per_visitor_per_min: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            sessions_per_ip_per_min: 30,
            sessions_per_tenant_per_min: 3000,
            messages_per_visitor_per_min: 30,
        }
    }
}

/// Presence settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceSettings {
    /// Agents count as online for this long after their last activity, in seconds.
    pub window_secs: u64,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        PresenceSettings { window_secs: 300 }
    }
}

/// Telegram client settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramSettings {
    /// Bot API base URL (a local Bot API server or a test fake can stand in).
    pub api_url: String,
    /// Seconds before a Bot API request counts as timed out (and is retried).
    pub request_timeout_secs: u64,
    /// Webhook requests accepted per tenant per second (the rest get 429).
    pub webhook_per_sec: u32,
    /// Register tenants' webhooks with an `http://` public URL on any port. Telegram's
    /// cloud Bot API only takes `https://` on port 443, 80, 88 or 8443, so with this off
    /// connecting Telegram with any other public URL fails with `webhook_url_rejected`
    /// before Telegram is called. A local Bot API server (`telegram-bot-api --local`)
    /// accepts plain http on any port: turn this on only with one (or in tests).
    pub allow_http_webhook: bool,
    /// How a tenant is connected when `telegram setup` (or `PUT /v1/admin/telegram`)
    /// names no mode and it had none before.
    pub default_mode: TelegramDefaultMode,
    /// Seconds one getUpdates long poll waits for updates (mode `polling`).
    pub poll_timeout_secs: u64,
    /// Seconds a poller waits after a 409 Conflict from getUpdates (a webhook is set,
    /// or another program polls the bot); the longest wait after other errors.
    pub poll_backoff_secs: u64,
}

/// `telegram.default_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramDefaultMode {
    /// `webhook` when `server.public_url` is set, else `polling` (Telegram cannot reach
    /// a server without a public URL).
    Auto,
    /// Always `webhook`.
    Webhook,
    /// Always `polling`.
    Polling,
}

impl Default for TelegramSettings {
    fn default() -> Self {
        TelegramSettings {
            api_url: "https://api.telegram.org".into(),
            request_timeout_secs: 15,
            webhook_per_sec: 50,
            allow_http_webhook: false,
            default_mode: TelegramDefaultMode::Auto,
            poll_timeout_secs: 25,
            poll_backoff_secs: 30,
        }
    }
}

/// Outbox worker settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Run a worker inside `serve`.
    pub embedded: bool,
    /// Deliveries in flight at once per worker.
    pub concurrency: usize,
    /// Seconds a claimed item stays leased; a crashed worker's items are due again after this.
    pub lease_secs: u64,
    /// Attempts (other than 429 waits) before an item is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay in milliseconds (doubles each attempt, with jitter).
    pub backoff_base_ms: u64,
    /// Longest retry delay in seconds.
    pub backoff_max_secs: u64,
    /// Longest `retry_after` honoured from a 429, in seconds.
    pub max_retry_after_secs: u64,
    /// Fallback poll interval in milliseconds when no wake-up arrives.
    pub poll_interval_ms: u64,
    /// Requests per second per bot (Telegram allows about 30).
    pub per_bot_per_sec: u32,
    /// Messages per second per chat (Telegram allows about 1).
    pub per_chat_per_sec: u32,
    /// Messages per minute per group (Telegram allows about 20).
    pub per_group_per_min: u32,
    /// Divides the budgets' windows (a second for `per_bot_per_sec` and
    /// `per_chat_per_sec`, a minute for `per_group_per_min`) and keeps their counts: 10
    /// means 1 call per 100 ms per chat and 20 per 6 s per group. For tests that check
    /// pacing against a fake Bot API in scaled time; keep 1 against Telegram.
    pub budget_time_scale: u32,
    /// Seconds the oldest queued item of a lane (one Telegram group) may wait before the
    /// backlog is warned about: a warning in the log, and one notice in the group's
    /// General topic suggesting a relay bot, not repeated until the backlog has cleared
    /// (its oldest item younger than a quarter of this). 0 turns both off.
    pub backlog_warn_secs: u64,
    /// Send a conversation's waiting visitor messages as one Telegram message when its
    /// lane has a backlog (see `telegram::coalesce`). Off: one Telegram message per
    /// message, whatever the backlog (the lag then grows with it).
    pub coalesce: bool,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            embedded: true,
            concurrency: 32,
            lease_secs: 30,
            max_attempts: 8,
            backoff_base_ms: 500,
            backoff_max_secs: 300,
            max_retry_after_secs: 3600,
            poll_interval_ms: 1000,
            per_bot_per_sec: 30,
            per_chat_per_sec: 1,
            per_group_per_min: 20,
            budget_time_scale: 1,
            backlog_warn_secs: 60,
            coalesce: true,
        }
    }
}

/// Secrets-at-rest settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSettings {
    /// age identity file; unset means `<data_dir>/master.key` (created on first start) on
    /// the embedded default and `/etc/chatorical/master.key` with PostgreSQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<PathBuf>,
}

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on.
    pub listen: String,
    /// Public base URL (used in links); derived from `listen` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Directory for the embedded database and generated keys.
    pub data_dir: PathBuf,
    /// Secret used to sign WebSocket tokens; generated in the data dir when unset.
    /// Every node of one deployment must share it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<Secret>,
    /// Seconds to wait for in-flight requests on shutdown.
    pub shutdown_grace_secs: u64,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed:
    /// a request from one of them counts as coming from the right-most address in that
    /// header that is not itself a trusted proxy. Empty: the TCP peer is the client.
    /// Trusted proxies are also exempt from `max_connections_per_ip`.
    pub trusted_proxies: Vec<Cidr>,
    /// Seconds a client has to send the head (request line and headers) of a request,
    /// counted from the connection's accept or from the end of the previous response on
    /// a keep-alive connection; a slower connection is closed. So this is also the
    /// longest a keep-alive connection may sit idle between requests.
    pub header_read_timeout_secs: u64,
    /// Seconds a client has, once its headers are in, to send the whole request body; a
    /// body trickled slower is cut off (408 `request_timeout`) and the connection closed.
    pub body_read_timeout_secs: u64,
    /// Connections (HTTP and WebSocket) open at once in this process; one more is closed
    /// right after accept. Lowered at start to what the open-files limit allows (see
    /// `reserved_fds`).
    pub max_connections: usize,
    /// Connections open at once from one client IP address (the TCP peer; IPv6 counted
    /// by its /64); one more is closed right after accept. Peers in `trusted_proxies` are
    /// exempt (they carry many clients; limit per client at the proxy).
    pub max_connections_per_ip: usize,
    /// File descriptors kept free for everything but client connections (database,
    /// Redis, Telegram, logs): the connection cap is at most the open-files limit minus
    /// this (and never under half of that limit).
    pub reserved_fds: u64,
}

/// Database settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://…`; unset means `sqlite://<data_dir>/chatorical.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// Pool size.
    pub max_connections: usize,
    /// Run pending migrations on start (PostgreSQL; SQLite always migrates).
    pub auto_migrate: bool,
    /// Milliseconds SQLite waits for a lock before failing.
    pub busy_timeout_ms: u64,
    /// `url` goes through a pooler in transaction pooling mode (PgBouncer
    /// `pool_mode = transaction`): no cached prepared statements, every statement
    /// outside a transaction runs in one of its own (so its prepare and execute stay on
    /// one server connection), no session state. PostgreSQL only.
    pub transaction_pooling: bool,
    /// A direct PostgreSQL URL (not through a transaction pooler) for the outbox
    /// worker's LISTEN and for migrations; unset means `url`. With
    /// `transaction_pooling` and no `listen_url` the worker polls every
    /// `worker.poll_interval_ms` and migrations run in one transaction through the pooler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_url: Option<Secret>,
}

/// WebSocket settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WsSettings {
    /// Lifetime of a ws_token in seconds.
    pub token_ttl_secs: u64,
    /// Seconds between server pings.
    pub ping_interval_secs: u64,
    /// A socket silent this long (no frame, no pong) is closed.
    pub idle_timeout_secs: u64,
    /// Frames queued per socket before the socket is dropped as too slow.
    pub send_queue: usize,
    /// Largest accepted client message, in bytes (larger closes with 1009).
    pub max_message_bytes: usize,
    /// Sockets one visitor may hold open on this node: opening one more closes the
    /// visitor's oldest socket with 1008 (policy). Counted per process, not across nodes.
    pub max_sockets_per_visitor: usize,
    /// Sockets one client address (an IPv6 address counts as its /64) may hold open on
    /// this node; more upgrades are refused with 429 `too_many_sockets`. 0: no cap.
    /// Counted per process. Behind a reverse proxy set `server.trusted_proxies`, or every
    /// client counts as the proxy's address.
    pub max_sockets_per_ip: usize,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// Filter in `RUST_LOG` syntax; `telemetry::QUIET_TARGETS` stay at `info` whatever it says.
    pub filter: String,
}

/// Demo tenant settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSettings {
    /// Create the `demo` tenant on first start of the embedded default and serve the demo page.
    pub enabled: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            data_dir: PathBuf::from("chatorical-data"),
            token_secret: None,
            shutdown_grace_secs: 10,
            max_body_bytes: 64 * 1024,
            trusted_proxies: Vec::new(),
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            max_connections: 100_000,
            max_connections_per_ip: 256,
            reserved_fds: 256,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: None,
            max_connections: 16,
            auto_migrate: false,
            busy_timeout_ms: 5000,
            transaction_pooling: false,
            listen_url: None,
        }
    }
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            token_ttl_secs: 300,
            ping_interval_secs: 20,
            idle_timeout_secs: 60,
            send_queue: 64,
            max_message_bytes: 64 * 1024,
            max_sockets_per_visitor: 5,
            max_sockets_per_ip: 100,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Pretty,
            filter: "info".into(),
        }
    }
}

impl Default for DemoSettings {
    fn default() -> Self {
        DemoSettings { enabled: true }
    }
}

/// One line of documentation per settings key, used for the generated example file.
/// A test checks that every key has an entry.
pub const KEY_DOCS: &[(&str, &str)] = &[
    ("server.listen", "Address to listen on."),
    (
        "server.public_url",
        "Public base URL used in links; derived from `listen` when unset.",
    ),
    (
        "server.data_dir",
        "Directory for the embedded SQLite database and generated keys.",
    ),
    (
        "server.token_secret",
        "Secret that signs WebSocket tokens; generated in data_dir when unset. All nodes must share it.",
    ),
    (
        "server.shutdown_grace_secs",
        "Seconds to wait for in-flight requests on shutdown.",
    ),
    (
        "server.max_body_bytes",
        "Largest accepted request body, in bytes.",
    ),
    (
        "server.trusted_proxies",
        "Reverse proxies (IPs or CIDRs, e.g. [\"10.0.0.0/8\"]) whose X-Forwarded-For is believed: the client is its right-most untrusted address. Empty: the TCP peer. Also exempt from max_connections_per_ip.",
    ),
    (
        "server.header_read_timeout_secs",
        "Seconds a client has to send a request's headers (from accept, or from the previous response on a keep-alive connection); slower connections are closed. Also the longest idle time of a keep-alive connection.",
    ),
    (
        "server.body_read_timeout_secs",
        "Seconds a client has, after its headers, to send the whole request body; a slower body gets 408 and the connection is closed.",
    ),
    (
        "server.max_connections",
        "Connections (HTTP and WebSocket) open at once in this process; more are closed right after accept. Lowered at start to the open-files limit minus reserved_fds.",
    ),
    (
        "server.max_connections_per_ip",
        "Connections open at once from one client IP (the TCP peer; IPv6 counted by /64; trusted_proxies are exempt); more are closed right after accept.",
    ),
    (
        "server.reserved_fds",
        "File descriptors kept free for the database, Redis, Telegram and logs: the connection cap is at most the open-files limit minus this (never under half the limit).",
    ),
    (
        "database.url",
        "sqlite://PATH or postgres://USER@HOST/DB; unset means sqlite://<data_dir>/chatorical.db.",
    ),
    ("database.max_connections", "Connection pool size."),
    (
        "database.auto_migrate",
        "Run pending migrations on start (PostgreSQL; SQLite always migrates).",
    ),
    (
        "database.busy_timeout_ms",
        "Milliseconds SQLite waits for a lock before failing.",
    ),
    (
        "database.transaction_pooling",
        "url goes through PgBouncer (or another pooler) with pool_mode = transaction: no cached prepared statements, each statement outside a transaction runs in its own, no session state (see listen_url).",
    ),
    (
        "database.listen_url",
        "A direct PostgreSQL URL (bypassing a transaction pooler) for the worker's LISTEN and for migrations; unset means url. With transaction_pooling and no listen_url the worker polls every worker.poll_interval_ms and migrations run in one transaction through the pooler.",
    ),
    ("ws.token_ttl_secs", "Lifetime of a ws_token, in seconds."),
    ("ws.ping_interval_secs", "Seconds between server pings."),
    (
        "ws.idle_timeout_secs",
        "A socket silent this long is closed.",
    ),
    (
        "ws.send_queue",
        "Frames queued per socket before a slow reader is dropped.",
    ),
    (
        "ws.max_message_bytes",
        "Largest accepted client message; larger closes the socket with 1009.",
    ),
    (
        "ws.max_sockets_per_visitor",
        "Sockets one visitor may hold open on this node; one more closes the visitor's oldest with 1008.",
    ),
    (
        "ws.max_sockets_per_ip",
        "Sockets one client address (IPv6: its /64) may hold open on this node; more get 429 too_many_sockets. 0: no cap. Behind a proxy, set server.trusted_proxies.",
    ),
    ("log.format", "pretty or json."),
    (
        "log.filter",
        "Log filter in RUST_LOG syntax, e.g. \"info,chatorical=debug\". tokio_postgres::query stays at info whatever it says (at debug it logs every statement's parameters).",
    ),
    (
        "demo.enabled",
        "Create the demo tenant on first start of the embedded default and serve the demo page at /.",
    ),
    (
        "telegram.api_url",
        "Bot API base URL; point it at a local Bot API server if you run one.",
    ),
    (
        "telegram.request_timeout_secs",
        "Seconds before a Bot API request counts as timed out (then it is retried).",
    ),
    (
        "telegram.webhook_per_sec",
        "Webhook requests accepted per tenant per second; the rest get 429.",
    ),
    (
        "telegram.allow_http_webhook",
        "Accept an http:// public URL (any port) for webhooks: only with a local Bot API server (telegram-bot-api --local) or in tests. Off: https on port 443, 80, 88 or 8443, as Telegram's cloud API demands.",
    ),
    (
        "telegram.default_mode",
        "How `telegram setup` connects a tenant that names no mode: \"auto\" (webhook when server.public_url is set, else long polling: Telegram cannot reach a server without a public URL), \"webhook\" or \"polling\".",
    ),
    (
        "telegram.poll_timeout_secs",
        "Seconds one getUpdates long poll waits for updates (tenants in polling mode; 1-50).",
    ),
    (
        "telegram.poll_backoff_secs",
        "Seconds a poller waits after a 409 Conflict from getUpdates (a webhook is set, or another program polls the same bot), and the longest wait after other errors.",
    ),
    (
        "worker.embedded",
        "Run an outbox worker inside `serve` (run `chatorical worker` for more).",
    ),
    (
        "worker.concurrency",
        "Deliveries in flight at once per worker.",
    ),
    (
        "worker.lease_secs",
        "Seconds a claimed item stays leased; a crashed worker's items are due again after this.",
    ),
    (
        "worker.max_attempts",
        "Attempts (429 waits not counted) before an item is dead-lettered.",
    ),
    (
        "worker.backoff_base_ms",
        "First retry delay in ms; doubles per attempt, with jitter.",
    ),
    (
        "worker.backoff_max_secs",
        "Longest retry delay, in seconds.",
    ),
    (
        "worker.max_retry_after_secs",
        "Longest retry_after honoured from a Telegram 429, in seconds.",
    ),
    (
        "worker.poll_interval_ms",
        "Fallback poll interval when no wake-up arrives, in ms.",
    ),
    (
        "worker.per_bot_per_sec",
        "Requests per second per bot (Telegram allows about 30).",
    ),
    (
        "worker.per_chat_per_sec",
        "Messages per second per chat (Telegram allows about 1).",
    ),
    (
        "worker.per_group_per_min",
        "Messages per minute per group (Telegram allows about 20).",
    ),
    (
        "worker.budget_time_scale",
        "Divides the budgets' windows (1 s, 1 s, 60 s) keeping their counts; for tests in scaled time. Keep 1 against Telegram.",
    ),
    (
        "worker.backlog_warn_secs",
        "Seconds a Telegram group's oldest queued item may wait before a warning is logged and one notice (suggesting a relay bot) is posted in the group's General topic, not again until the backlog cleared; 0 turns both off.",
    ),
    (
        "worker.coalesce",
        "When a Telegram group's lane has a backlog, send a conversation's waiting visitor messages as one message (`HH:MM:SS text` lines); false: one Telegram message per message, and the lag grows with the backlog.",
    ),
    (
        "redis.url",
        "redis://HOST:PORT/DB; unset keeps fan-out, limits, counters and presence in this process.",
    ),
    (
        "redis.limits_fail_open",
        "When Redis is unreachable, let rate-limited calls through (true) or refuse them (false).",
    ),
    ("redis.key_prefix", "Prefix of every Redis key and channel."),
    (
        "limits.sessions_per_ip_per_min",
        "Widget sessions started per client IP per minute (new and resumed visitors alike).",
    ),
    (
        "limits.sessions_per_tenant_per_min",
        "Widget sessions that start a new visitor, per tenant per minute (a valid visitor token resumes and is never refused by this budget).",
    ),
    (
        "limits.messages_per_visitor_per_min",
        "Messages a visitor may send per minute.",
    ),
    (
        "presence.window_secs",
        "Agents count as online this long after their last activity, in seconds.",
    ),
    (
        "secrets.master_key_file",
        "age identity file; unset: <data_dir>/master.key (embedded, created on first start) or /etc/chatorical/master.key.",
    ),
    (
        "telemetry.otlp_endpoint",
        "Base URL of an OTLP/HTTP collector; spans go to <otlp_endpoint>/v1/traces. Unset: no export. Needs a binary built with `--features otlp`.",
    ),
    (
        "telemetry.service_name",
        "service.name of the exported spans.",
    ),
    (
        "telemetry.sample_ratio",
        "Share of traces exported, from 0.0 to 1.0.",
    ),
    (
        "telemetry.metrics_token",
        "When set, GET /metrics needs `Authorization: Bearer <token>` (401 otherwise). Unset: /metrics asks for no token.",
    ),
    (
        "telemetry.metrics_listen",
        "A second HOST:PORT serving only /metrics (the main listener then answers 404 for it). Unset: /metrics is on the main listener.",
    ),
    (
        "audit.retention_days",
        "Days audit log entries are kept; the worker deletes older ones every hour.",
    ),
    (
        "retention.interval_secs",
        "Seconds between the worker's retention runs (closed conversations past their tenant's retention, unused visitors, expired audit entries); the first run is a minute after start, or sooner when this is shorter.",
    ),
    (
        "retention.batch_size",
        "Conversations (or visitors) retention deletes per transaction at most (1-10000).",
    ),
    (
        "retention.batch_messages",
        "Messages retention deletes per transaction at most, 1-10000 (a longer conversation is deleted in parts). Short transactions keep chat writes flowing, on SQLite above all.",
    ),
    (
        "retention.pause_ms",
        "Least milliseconds retention waits between two transactions, leaving room to other writers; after a batch that took longer it waits as long as the batch took (retention holds the database about half the time at most). 0: no pause at all.",
    ),
    (
        "billing.stripe.secret_key",
        "Stripe secret API key (sk_live_..., sk_test_... or a restricted rk_... key). Unset: no billing; plans sync writes the database only and billing routes answer 503 billing_not_configured.",
    ),
    (
        "billing.stripe.webhook_secret",
        "Signing secret (whsec_...) of the Stripe webhook endpoint POST /v1/billing/stripe/webhook.",
    ),
    ("billing.stripe.api_base", "Base URL of the Stripe API."),
    (
        "billing.stripe.grace_days",
        "Days a tenant whose payment failed keeps its plan before it drops to free.",
    ),
    (
        "billing.stripe.request_timeout_secs",
        "Seconds before one Stripe API request counts as failed (timed out).",
    ),
];

/// Optional keys that have no default value but are documented in the example.
const OPTIONAL_KEYS: &[(&str, &str)] = &[
    ("server.public_url", "\"https://chat.example.com\""),
    (
        "server.token_secret",
        "\"change-me-to-32-random-characters\"",
    ),
    (
        "database.url",
        "\"postgres://postgres@127.0.0.1:5432/chatorical\"",
    ),
    (
        "database.listen_url",
        "\"postgres://postgres@127.0.0.1:5432/chatorical\"",
    ),
    ("secrets.master_key_file", "\"/etc/chatorical/master.key\""),
    ("redis.url", "\"redis://127.0.0.1:6379/0\""),
    ("telemetry.otlp_endpoint", "\"http://127.0.0.1:4318\""),
    (
        "telemetry.metrics_token",
        "\"change-me-to-a-long-random-token\"",
    ),
    ("telemetry.metrics_listen", "\"127.0.0.1:9090\""),
    ("billing.stripe.secret_key", "\"sk_live_...\""),
    ("billing.stripe.webhook_secret", "\"whsec_...\""),
];

/// Values set on the command line, the highest layer.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

/// Where the settings came from, for `config check`.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective settings.
    pub settings: Settings,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
}

/// Which database backend a URL selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// SQLite at a file path.
    Sqlite(PathBuf),
    /// PostgreSQL connection URL.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parse a URL; the scheme picks the backend, anything else is an error.
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(config_error("database.url", "sqlite:// needs a file path"));
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_string()))
        } else {
            let scheme = url.split("://").next().unwrap_or("");
            Err(config_error(
                "database.url",
                format!("unknown database scheme `{scheme}` (use sqlite:// or postgres://)"),
            ))
        }
    }
}

impl Settings {
    /// Load settings from all layers.
    pub fn load(config_path: Option<&Path>, overrides: &Overrides) -> Result<Loaded> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(config_path, &env, overrides)
    }

    /// Load settings with an explicit environment (testable).
    pub fn load_from(
        config_path: Option<&Path>,
        env: &[(String, String)],
        overrides: &Overrides,
    ) -> Result<Loaded> {
        let mut tree = Value::try_from(Settings::default())
            .map_err(|e| Error::internal(format!("serialize defaults: {e}")))?;

        let env_config = env
            .iter()
            .find(|(k, _)| k == "CHATORICAL_CONFIG")
            .map(|(_, v)| PathBuf::from(v));
        let file = match config_path.map(Path::to_path_buf).or(env_config) {
            Some(path) => Some(path),
            None => ["chatorical.toml", "/etc/chatorical/chatorical.toml"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists()),
        };
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!("cannot read config file {}: {e}", path.display()),
                )
            })?;
            let file_tree: Value = toml::from_str(&text).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!("{}: {}", path.display(), e.message()),
                )
            })?;
            merge(&mut tree, file_tree);
        }

        for (key, value) in env {
            let Some(rest) = key.strip_prefix("CHATORICAL_") else {
                continue;
            };
            if rest == "CONFIG" {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            let v = env_value(&tree, &path, value);
            set_path(&mut tree, &path, v);
        }

        if let Some(listen) = &overrides.listen {
            set_path(
                &mut tree,
                &["server".into(), "listen".into()],
                Value::String(listen.clone()),
            );
        }
        if let Some(url) = &overrides.database_url {
            set_path(
                &mut tree,
                &["database".into(), "url".into()],
                Value::String(url.clone()),
            );
        }
        if let Some(dir) = &overrides.data_dir {
            set_path(
                &mut tree,
                &["server".into(), "data_dir".into()],
                Value::String(dir.display().to_string()),
            );
        }
        if let Some(format) = overrides.log_format {
            let s = match format {
                LogFormat::Pretty => "pretty",
                LogFormat::Json => "json",
            };
            set_path(
                &mut tree,
                &["log".into(), "format".into()],
                Value::String(s.into()),
            );
        }

        let settings: Settings = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            Error::new(
                ErrorCode::InvalidConfig,
                format!("invalid setting `{key}`: {}", e.inner()),
            )
            .with_details(serde_json::json!({ "key": key }))
        })?;
        settings.validate()?;
        Ok(Loaded { settings, file })
    }

    /// Check values that parse but make no sense.
    pub fn validate(&self) -> Result<()> {
        self.listen_addr()?;
        self.database_options()?;
        if let Some(url) = &self.server.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(config_error(
                "server.public_url",
                "must start with http:// or https://",
            ));
        }
        if let Some(secret) = &self.server.token_secret
            && secret.expose().len() < 32
        {
            return Err(config_error(
                "server.token_secret",
                "must be at least 32 characters",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(config_error(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if self.server.header_read_timeout_secs == 0 {
            return Err(config_error(
                "server.header_read_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.server.body_read_timeout_secs == 0 {
            return Err(config_error(
                "server.body_read_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.server.max_connections == 0 {
            return Err(config_error("server.max_connections", "must be at least 1"));
        }
        if self.server.max_connections_per_ip == 0 {
            return Err(config_error(
                "server.max_connections_per_ip",
                "must be at least 1",
            ));
        }
        if self.ws.send_queue == 0 {
            return Err(config_error("ws.send_queue", "must be at least 1"));
        }
        if self.ws.max_sockets_per_visitor == 0 {
            return Err(config_error(
                "ws.max_sockets_per_visitor",
                "must be at least 1",
            ));
        }
        if self.ws.max_message_bytes < 1024 {
            return Err(config_error(
                "ws.max_message_bytes",
                "must be at least 1024",
            ));
        }
        if self.ws.token_ttl_secs == 0 || self.ws.idle_timeout_secs == 0 {
            return Err(config_error("ws.token_ttl_secs", "timers must be positive"));
        }
        if let Some(url) = &self.redis.url
            && !(url.expose().starts_with("redis://") || url.expose().starts_with("rediss://"))
        {
            return Err(config_error(
                "redis.url",
                "must start with redis:// or rediss://",
            ));
        }
        if self.limits.sessions_per_ip_per_min == 0
            || self.limits.sessions_per_tenant_per_min == 0
            || self.limits.messages_per_visitor_per_min == 0
        {
            return Err(config_error("limits", "limits must be at least 1"));
        }
        if !(self.telegram.api_url.starts_with("http://")
            || self.telegram.api_url.starts_with("https://"))
        {
            return Err(config_error(
                "telegram.api_url",
                "must start with http:// or https://",
            ));
        }
        if !(1..=50).contains(&self.telegram.poll_timeout_secs) {
            return Err(config_error(
                "telegram.poll_timeout_secs",
                "must be 1 to 50",
            ));
        }
        if self.telegram.poll_backoff_secs == 0 {
            return Err(config_error(
                "telegram.poll_backoff_secs",
                "must be at least 1",
            ));
        }
        if self.worker.concurrency == 0
            || self.worker.lease_secs == 0
            || self.worker.max_attempts == 0
        {
            return Err(config_error(
                "worker",
                "concurrency, lease_secs and max_attempts must be at least 1",
            ));
        }
        if self.worker.per_bot_per_sec == 0
            || self.worker.per_chat_per_sec == 0
            || self.worker.per_group_per_min == 0
        {
            return Err(config_error("worker", "rate budgets must be at least 1"));
        }
        if self.worker.budget_time_scale == 0 {
            return Err(config_error(
                "worker.budget_time_scale",
                "must be at least 1",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.filter)
            .map_err(|e| config_error("log.filter", e.to_string()))?;
        self.validate_telemetry()?;
        self.validate_billing()?;
        if self.audit.retention_days == 0 {
            return Err(config_error("audit.retention_days", "must be at least 1"));
        }
        for (key, value) in [
            ("retention.interval_secs", self.retention.interval_secs),
            ("retention.batch_size", u64::from(self.retention.batch_size)),
            (
                "retention.batch_messages",
                u64::from(self.retention.batch_messages),
            ),
        ] {
            if value == 0 {
                return Err(config_error(key, "must be at least 1"));
            }
        }
        for (key, value) in [
            ("retention.batch_size", self.retention.batch_size),
            ("retention.batch_messages", self.retention.batch_messages),
        ] {
            if value > MAX_RETENTION_BATCH {
                return Err(config_error(
                    key,
                    format!(
                        "must be at most {MAX_RETENTION_BATCH} (one transaction, one statement's parameters)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_billing(&self) -> Result<()> {
        let stripe = &self.billing.stripe;
        if !(stripe.api_base.starts_with("http://") || stripe.api_base.starts_with("https://")) {
            return Err(config_error(
                "billing.stripe.api_base",
                "must start with http:// or https://",
            ));
        }
        if stripe.grace_days == 0 {
            return Err(config_error(
                "billing.stripe.grace_days",
                "must be at least 1",
            ));
        }
        if stripe.request_timeout_secs == 0 {
            return Err(config_error(
                "billing.stripe.request_timeout_secs",
                "must be at least 1",
            ));
        }
        for (key, secret) in [
            ("billing.stripe.secret_key", &stripe.secret_key),
            ("billing.stripe.webhook_secret", &stripe.webhook_secret),
        ] {
            if let Some(secret) = secret
                && secret.expose().trim().is_empty()
            {
                return Err(config_error(key, "must not be empty (unset it instead)"));
            }
        }
        Ok(())
    }

    fn validate_telemetry(&self) -> Result<()> {
        let t = &self.telemetry;
        if let Some(endpoint) = &t.otlp_endpoint {
            if !cfg!(feature = "otlp") {
                return Err(config_error(
                    "telemetry.otlp_endpoint",
                    "is set, but this binary was built without the `otlp` feature: \
                     build it with `cargo build --release --features otlp`, or unset the key",
                ));
            }
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(config_error(
                    "telemetry.otlp_endpoint",
                    "must start with http:// or https://",
                ));
            }
        }
        if let Some(token) = &t.metrics_token
            && token.expose().len() < 16
        {
            return Err(config_error(
                "telemetry.metrics_token",
                "must be at least 16 characters",
            ));
        }
        self.metrics_addr()?;
        if t.service_name.trim().is_empty() {
            return Err(config_error("telemetry.service_name", "must not be empty"));
        }
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            return Err(config_error(
                "telemetry.sample_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        Ok(())
    }

    /// The socket address to listen on.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.server.listen.parse().map_err(|_| {
            config_error(
                "server.listen",
                format!("`{}` is not HOST:PORT", self.server.listen),
            )
        })
    }

    /// The separate `/metrics` address, when `telemetry.metrics_listen` is set.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>> {
        let Some(listen) = &self.telemetry.metrics_listen else {
            return Ok(None);
        };
        let addr: SocketAddr = listen.parse().map_err(|_| {
            config_error(
                "telemetry.metrics_listen",
                format!("`{listen}` is not HOST:PORT"),
            )
        })?;
        if let Ok(main) = self.listen_addr()
            && main == addr
            && addr.port() != 0
        {
            return Err(config_error(
                "telemetry.metrics_listen",
                "must differ from server.listen",
            ));
        }
        Ok(Some(addr))
    }

    /// The database to use: the configured URL, or the embedded SQLite file.
    pub fn database_url(&self) -> Result<DatabaseUrl> {
        match &self.database.url {
            Some(url) => DatabaseUrl::parse(url.expose()),
            None => Ok(DatabaseUrl::Sqlite(
                self.server.data_dir.join("chatorical.db"),
            )),
        }
    }

    /// How to reach PostgreSQL beyond `database.url`: transaction pooling and the
    /// direct URL for LISTEN and migrations. Errors (naming the key, never the URL)
    /// when `transaction_pooling` or `listen_url` is set without a `postgres://` url,
    /// or `listen_url` is not a `postgres://` URL.
    pub fn database_options(&self) -> Result<crate::db::PgOptions> {
        let url = self.database_url()?;
        let db = &self.database;
        let is_pg = matches!(url, DatabaseUrl::Postgres(_));
        if db.transaction_pooling && !is_pg {
            return Err(config_error(
                "database.transaction_pooling",
                "needs a postgres:// database.url",
            ));
        }
        let listen_url = match &db.listen_url {
            None => None,
            Some(_) if !is_pg => {
                return Err(config_error(
                    "database.listen_url",
                    "needs a postgres:// database.url",
                ));
            }
            Some(u) => match DatabaseUrl::parse(u.expose()) {
                Ok(DatabaseUrl::Postgres(direct)) => Some(direct),
                _ => {
                    return Err(config_error(
                        "database.listen_url",
                        "must be a postgres:// URL",
                    ));
                }
            },
        };
        Ok(crate::db::PgOptions {
            transaction_pooling: db.transaction_pooling,
            listen_url,
        })
    }

    /// The master key file: configured, or the default for this deployment kind.
    pub fn master_key_path(&self) -> PathBuf {
        match &self.secrets.master_key_file {
            Some(p) => p.clone(),
            None if self.is_embedded() => self.server.data_dir.join("master.key"),
            None => PathBuf::from("/etc/chatorical/master.key"),
        }
    }

    /// Whether this is the embedded default (SQLite).
    pub fn is_embedded(&self) -> bool {
        matches!(self.database_url(), Ok(DatabaseUrl::Sqlite(_)))
    }

    /// The public base URL, without a trailing slash.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url_or(&bound.to_string())
    }

    /// The public base URL for a process that is not listening (CLI commands): the
    /// configured one, else `http://` + the configured listen address.
    pub fn configured_public_url(&self) -> String {
        self.public_url_or(&self.server.listen)
    }

    /// `server.public_url` without a trailing slash, else `http://{listen}`.
    fn public_url_or(&self, listen: &str) -> String {
        match &self.server.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{listen}"),
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The documented example configuration file (`config/chatorical.example.toml`).
    pub fn example_toml() -> String {
        let defaults =
            Value::try_from(Settings::default()).unwrap_or(Value::Table(Default::default()));
        let mut out = String::from(
            "# chatorical configuration: every key with its default.\n\
             # Generated by `chatorical config example`; do not edit by hand.\n\
             # Layers: defaults < this file < CHATORICAL_<SECTION>__<KEY> environment < flags\n\
             # (nested tables nest further: CHATORICAL_BILLING__STRIPE__SECRET_KEY).\n",
        );
        let Value::Table(sections) = defaults else {
            return out;
        };
        for (section, body) in sections {
            if let Value::Table(keys) = body {
                write_example_table(&mut out, &section, &keys);
            }
        }
        out
    }
}

/// One table of the example file at its dotted path (`server`, `billing.stripe`): its
/// keys in `KEY_DOCS` order, each after its doc line, optional keys commented out; then
/// its sub-tables. A table with only sub-tables gets no header of its own.
fn write_example_table(out: &mut String, path: &str, keys: &toml::Table) {
    let prefix = format!("{path}.");
    let direct = |k: &&str| -> Option<String> {
        k.strip_prefix(&prefix)
            .filter(|rest| !rest.contains('.'))
            .map(str::to_string)
    };
    let mut names: Vec<String> = keys
        .iter()
        .filter(|(_, v)| !v.is_table())
        .map(|(k, _)| k.clone())
        .collect();
    names.extend(OPTIONAL_KEYS.iter().filter_map(|(k, _)| direct(k)));
    let subtables: Vec<(&String, &toml::Table)> = keys
        .iter()
        .filter_map(|(k, v)| v.as_table().map(|t| (k, t)))
        .collect();
    let order: Vec<String> = KEY_DOCS.iter().filter_map(|(k, _)| direct(k)).collect();
    names.sort_by_key(|n| order.iter().position(|o| o == n).unwrap_or(usize::MAX));
    if !names.is_empty() || subtables.is_empty() {
        out.push_str(&format!("\n[{path}]\n"));
    }
    for name in names {
        let full = format!("{path}.{name}");
        let doc = KEY_DOCS
            .iter()
            .find(|(k, _)| *k == full)
            .map(|(_, d)| *d)
            .unwrap_or("");
        out.push_str(&format!("# {doc}\n"));
        match keys.get(&name) {
            Some(v) => out.push_str(&format!("{name} = {v}\n")),
            None => {
                let example = OPTIONAL_KEYS
                    .iter()
                    .find(|(k, _)| *k == full)
                    .map(|(_, v)| *v)
                    .unwrap_or("\"\"");
                out.push_str(&format!("# {name} = {example}\n"));
            }
        }
    }
    for (name, table) in subtables {
        write_example_table(out, &format!("{path}.{name}"), table);
    }
}

fn config_error(key: &str, message: impl Into<String>) -> Error {
    let message = message.into();
    Error::new(
        ErrorCode::InvalidConfig,
        format!("invalid setting `{key}`: {message}"),
    )
    .with_details(serde_json::json!({ "key": key }))
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Table(b), Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn set_path(tree: &mut Value, path: &[String], value: Value) {
    let mut cur = tree;
    for (i, part) in path.iter().enumerate() {
        let Value::Table(table) = cur else { return };
        if i == path.len() - 1 {
            table.insert(part.clone(), value);
            return;
        }
        cur = table
            .entry(part.clone())
            .or_insert_with(|| Value::Table(Default::default()));
    }
}

/// Interpret an environment string by the type of the default at that key.
fn env_value(tree: &Value, path: &[String], raw: &str) -> Value {
    let mut cur = Some(tree);
    for part in path {
        cur = cur.and_then(|v| v.get(part));
    }
    match cur {
        Some(Value::Integer(_)) => raw
            .parse::<i64>()
            .map(Value::Integer)
            .unwrap_or_else(|_| Value::String(raw.into())),
        Some(Value::Boolean(_)) => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Value::Boolean(true),
            "false" | "0" | "no" => Value::Boolean(false),
            _ => Value::String(raw.into()),
        },
        Some(Value::Float(_)) => raw
            .parse::<f64>()
            .map(Value::Float)
            .unwrap_or_else(|_| Value::String(raw.into())),
        Some(Value::Array(_)) => Value::Array(
            raw.split(',')
                .map(|s| Value::String(s.trim().to_string()))
                .filter(|v| v.as_str() != Some(""))
                .collect(),
        ),
        _ => Value::String(raw.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_defaults_and_nests_with_double_underscore() {
        let loaded = Settings::load_from(
            None,
            &env(&[
                ("CHATORICAL_DATABASE__MAX_CONNECTIONS", "3"),
                ("CHATORICAL_SERVER__LISTEN", "0.0.0.0:9000"),
            ]),
            &Overrides::default(),
        )
        .expect("valid");
        assert_eq!(loaded.settings.database.max_connections, 3);
        assert_eq!(loaded.settings.server.listen, "0.0.0.0:9000");
    }

    #[test]
    fn flags_beat_environment() {
        let over = Overrides {
            listen: Some("127.0.0.1:1".into()),
            ..Default::default()
        };
        let loaded = Settings::load_from(
            None,
            &env(&[("CHATORICAL_SERVER__LISTEN", "0.0.0.0:9000")]),
            &over,
        )
        .expect("valid");
        assert_eq!(loaded.settings.server.listen, "127.0.0.1:1");
    }

    #[test]
    fn unknown_env_key_is_an_error_naming_it() {
        let err = Settings::load_from(
            None,
            &env(&[("CHATORICAL_DATABASE__URLL", "x")]),
            &Overrides::default(),
        )
        .expect_err("unknown key");
        assert!(err.message.contains("urll"), "{}", err.message);
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = Settings::load_from(
            None,
            &env(&[("CHATORICAL_WS__SEND_QUEUE", "many")]),
            &Overrides::default(),
        )
        .expect_err("bad value");
        assert!(err.message.contains("ws.send_queue"), "{}", err.message);
    }

    #[test]
    fn unknown_database_scheme_is_an_error() {
        let err = DatabaseUrl::parse("mysql://x").expect_err("unknown scheme");
        assert!(err.message.contains("mysql"));
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_toml() {
        let mut s = Settings::default();
        s.database.url = Some(Secret::new("postgres://user:hunter2@db/x"));
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!s.to_redacted_toml().contains("hunter2"));
    }

    #[test]
    fn transaction_pooling_and_listen_url_from_env() {
        let loaded = Settings::load_from(
            None,
            &env(&[
                (
                    "CHATORICAL_DATABASE__URL",
                    "postgres://app:hunter2@127.0.0.1:6432/x",
                ),
                ("CHATORICAL_DATABASE__TRANSACTION_POOLING", "true"),
                (
                    "CHATORICAL_DATABASE__LISTEN_URL",
                    "postgres://app:hunter3@127.0.0.1:5432/x",
                ),
            ]),
            &Overrides::default(),
        )
        .expect("valid");
        let options = loaded.settings.database_options().expect("options");
        assert!(options.transaction_pooling);
        assert_eq!(
            options.listen_url.as_deref(),
            Some("postgres://app:hunter3@127.0.0.1:5432/x")
        );
        // Neither URL is shown: not in Debug, not in `config check`'s TOML.
        for shown in [
            format!("{:?}", loaded.settings),
            format!("{options:?}"),
            loaded.settings.to_redacted_toml(),
        ] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("hunter3"),
                "{shown}"
            );
        }
        // Off by default.
        let options = Settings::default().database_options().expect("default");
        assert!(!options.transaction_pooling && options.listen_url.is_none());
    }

    #[test]
    fn transaction_pooling_and_listen_url_need_postgres() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("CHATORICAL_DATABASE__TRANSACTION_POOLING", "true")],
                "database.transaction_pooling",
            ),
            (
                &[(
                    "CHATORICAL_DATABASE__LISTEN_URL",
                    "postgres://app:hunter2@db/x",
                )],
                "database.listen_url",
            ),
            (
                &[
                    ("CHATORICAL_DATABASE__URL", "postgres://app@db/x"),
                    (
                        "CHATORICAL_DATABASE__LISTEN_URL",
                        "mysql://app:hunter2@db/x",
                    ),
                ],
                "database.listen_url",
            ),
        ];
        for (vars, key) in cases {
            let err =
                Settings::load_from(None, &env(vars), &Overrides::default()).expect_err("invalid");
            assert_eq!(err.code, ErrorCode::InvalidConfig);
            assert!(err.message.contains(key), "{key}: {}", err.message);
            assert!(!err.message.contains("hunter2"), "{}", err.message);
        }
    }

    #[test]
    fn trusted_proxies_parse_from_env_and_name_the_bad_entry() {
        let loaded = Settings::load_from(
            None,
            &env(&[(
                "CHATORICAL_SERVER__TRUSTED_PROXIES",
                "10.0.0.0/8, 127.0.0.1",
            )]),
            &Overrides::default(),
        )
        .expect("valid");
        let proxies: Vec<String> = loaded
            .settings
            .server
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "127.0.0.1/32"]);

        let err = Settings::load_from(
            None,
            &env(&[(
                "CHATORICAL_SERVER__TRUSTED_PROXIES",
                "10.0.0.0/8,proxy.local",
            )]),
            &Overrides::default(),
        )
        .expect_err("not an address");
        assert_eq!(err.code, ErrorCode::InvalidConfig);
        assert!(
            err.message.contains("server.trusted_proxies") && err.message.contains("proxy.local"),
            "{}",
            err.message
        );
    }

    #[test]
    fn otlp_endpoint_needs_the_otlp_feature() {
        let result = Settings::load_from(
            None,
            &env(&[(
                "CHATORICAL_TELEMETRY__OTLP_ENDPOINT",
                "http://127.0.0.1:4318",
            )]),
            &Overrides::default(),
        );
        if cfg!(feature = "otlp") {
            let loaded = result.expect("valid with the feature");
            assert_eq!(
                loaded.settings.telemetry.otlp_endpoint.as_deref(),
                Some("http://127.0.0.1:4318")
            );
        } else {
            let err = result.expect_err("refused without the feature");
            assert_eq!(err.code, ErrorCode::InvalidConfig);
            assert!(
                err.message.contains("telemetry.otlp_endpoint")
                    && err.message.contains("`otlp` feature"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn telemetry_values_are_checked() {
        let mut s = Settings::default();
        s.telemetry.sample_ratio = 1.5;
        let err = s.validate().expect_err("ratio above 1");
        assert!(
            err.message.contains("telemetry.sample_ratio"),
            "{}",
            err.message
        );
        let mut s = Settings::default();
        s.telemetry.service_name = " ".into();
        let err = s.validate().expect_err("empty name");
        assert!(
            err.message.contains("telemetry.service_name"),
            "{}",
            err.message
        );
        if cfg!(feature = "otlp") {
            let mut s = Settings::default();
            s.telemetry.otlp_endpoint = Some("127.0.0.1:4318".into());
            let err = s.validate().expect_err("no scheme");
            assert!(err.message.contains("http://"), "{}", err.message);
        }
    }

    #[test]
    fn connection_and_metrics_settings_are_checked_and_the_token_redacted() {
        for (key, value) in [
            ("CHATORICAL_SERVER__HEADER_READ_TIMEOUT_SECS", "0"),
            ("CHATORICAL_SERVER__MAX_CONNECTIONS", "0"),
            ("CHATORICAL_SERVER__MAX_CONNECTIONS_PER_IP", "0"),
            ("CHATORICAL_TELEMETRY__METRICS_TOKEN", "short"),
            ("CHATORICAL_TELEMETRY__METRICS_LISTEN", "localhost"),
        ] {
            let err = Settings::load_from(None, &env(&[(key, value)]), &Overrides::default())
                .expect_err(key);
            let setting = key
                .trim_start_matches("CHATORICAL_")
                .replace("__", ".")
                .to_ascii_lowercase();
            assert_eq!(err.code, ErrorCode::InvalidConfig, "{key}");
            assert!(err.message.contains(&setting), "{key}: {}", err.message);
        }
        let loaded = Settings::load_from(
            None,
            &env(&[
                (
                    "CHATORICAL_TELEMETRY__METRICS_TOKEN",
                    "scrape-token-0123456789",
                ),
                ("CHATORICAL_TELEMETRY__METRICS_LISTEN", "127.0.0.1:9464"),
            ]),
            &Overrides::default(),
        )
        .expect("valid");
        let s = loaded.settings;
        assert_eq!(
            s.metrics_addr().expect("addr"),
            Some("127.0.0.1:9464".parse().expect("addr"))
        );
        assert!(!format!("{s:?}").contains("scrape-token"));
        assert!(!s.to_redacted_toml().contains("scrape-token"));
    }

    #[test]
    fn every_key_is_documented() {
        let text = Settings::example_toml();
        let parsed: Value = toml::from_str(&text).expect("example parses");
        let defaults = Value::try_from(Settings::default()).expect("serialize");
        assert_eq!(parsed, defaults, "example must hold exactly the defaults");
        fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
            match value.as_table() {
                Some(table) => {
                    for (k, v) in table {
                        let path = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        leaves(&path, v, out);
                    }
                }
                None => out.push(prefix.to_string()),
            }
        }
        let mut keys = Vec::new();
        leaves("", &defaults, &mut keys);
        assert!(keys.iter().any(|k| k == "billing.stripe.grace_days"));
        for full in keys
            .iter()
            .map(String::as_str)
            .chain(OPTIONAL_KEYS.iter().map(|(k, _)| *k))
        {
            assert!(
                KEY_DOCS.iter().any(|(k, _)| *k == full),
                "{full} has no doc line"
            );
        }
        // Every optional key is written (commented out) in its own table.
        for (key, _) in OPTIONAL_KEYS {
            let (table, name) = key.rsplit_once('.').expect("dotted");
            let header = format!("[{table}]\n");
            let section = text.split(&header).nth(1).expect("table header");
            let section = section.split("\n[").next().unwrap_or(section);
            assert!(section.contains(&format!("\n# {name} = ")), "{key}");
        }
    }

    #[test]
    fn stripe_settings_nest_from_env_and_are_checked() {
        let loaded = Settings::load_from(
            None,
            &env(&[
                ("CHATORICAL_BILLING__STRIPE__SECRET_KEY", "sk_test_hunter2"),
                (
                    "CHATORICAL_BILLING__STRIPE__WEBHOOK_SECRET",
                    "whsec_hunter3",
                ),
                (
                    "CHATORICAL_BILLING__STRIPE__API_BASE",
                    "http://127.0.0.1:12111",
                ),
                ("CHATORICAL_BILLING__STRIPE__GRACE_DAYS", "3"),
            ]),
            &Overrides::default(),
        )
        .expect("valid");
        let stripe = &loaded.settings.billing.stripe;
        assert_eq!(
            stripe.secret_key.as_ref().map(Secret::expose),
            Some("sk_test_hunter2")
        );
        assert_eq!(
            stripe.webhook_secret.as_ref().map(Secret::expose),
            Some("whsec_hunter3")
        );
        assert_eq!(stripe.api_base, "http://127.0.0.1:12111");
        assert_eq!(stripe.grace_days, 3);
        let shown = format!(
            "{:?}{}",
            loaded.settings,
            loaded.settings.to_redacted_toml()
        );
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(
            loaded
                .settings
                .to_redacted_toml()
                .contains("secret_key = \"***\"")
        );

        for (key, value) in [
            ("CHATORICAL_BILLING__STRIPE__GRACE_DAYS", "0"),
            ("CHATORICAL_BILLING__STRIPE__API_BASE", "api.stripe.com"),
            ("CHATORICAL_BILLING__STRIPE__SECRET_KEY", ""),
            ("CHATORICAL_BILLING__STRIPE__SECRETKEY", "sk_test_x"),
        ] {
            let err = Settings::load_from(None, &env(&[(key, value)]), &Overrides::default())
                .expect_err(key);
            assert_eq!(err.code, ErrorCode::InvalidConfig, "{key}");
            assert!(
                err.message.contains("billing.stripe"),
                "{key}: {}",
                err.message
            );
        }
    }
}

#[cfg(test)]
mod drift {
    #[test]
    fn example_file_matches_settings() {
        let committed = include_str!("../../config/chatorical.example.toml");
        assert_eq!(
            committed,
            super::Settings::example_toml(),
            "config/chatorical.example.toml drifted: run `chatorical config example > config/chatorical.example.toml`"
        );
    }
}
