//! The application: build from settings (bind, connect, migrate), then run until a
//! shutdown signal — which the caller passes in, so tests can drive it.

use std::{
    future::Future,
    net::SocketAddr,
    path::Path,
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::chat::Chat;
use crate::cluster::Cluster;
use crate::config::{DatabaseUrl, Settings};
use crate::crypto::MasterKey;
use crate::db::Db;
use crate::domain::random_base62;
use crate::error::{Error, ErrorCode, Result};
use crate::http::{
    self, AppState, AppStateInner, Metrics, OriginCache,
    server::{self, ConnLimits},
    ws::SocketContext,
};
use crate::limits::Limiter;
use crate::outbox::{Wakeup, budget::Budgets, worker::Worker};
use crate::presence::Presence;
use crate::realtime::{Hub, LocalHub, RedisHub, SocketCaps, WsTokenSigner};
use crate::telegram::{
    Bots,
    delivery::TelegramDelivery,
    polling::Poller,
    typing::Typing,
    webhook::{UpdateHandler, WebhookCounters},
};
use crate::tenancy::{self, SettingsPatch};
use crate::usage::Usage;

/// A bound, connected, migrated server, ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    addr: SocketAddr,
    metrics_listener: Option<(TcpListener, SocketAddr)>,
    max_connections: usize,
    worker: Option<tokio::task::JoinHandle<()>>,
    dunning: Option<tokio::task::JoinHandle<()>>,
    backlog: Option<tokio::task::JoinHandle<()>>,
    poller: Option<tokio::task::JoinHandle<()>>,
    retention: Option<tokio::task::JoinHandle<()>>,
}

/// Connections the `telemetry.metrics_listen` address accepts at once (scrapers only).
const METRICS_LISTENER_CONNECTIONS: usize = 64;

/// Bind `addr`, naming `key` (the setting) in the error.
async fn bind(addr: SocketAddr, key: &str) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Error::new(
            ErrorCode::InvalidConfig,
            format!("cannot listen on {addr} ({key}): {e}"),
        )
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok((listener, bound))
}

/// The process-wide connection cap from the settings and the open-files limit; logged,
/// with a warning when the limit lowered it.
fn connection_cap(settings: &Settings) -> usize {
    let s = &settings.server;
    let nofile = server::open_files_limit();
    let cap = server::effective_max_connections(s.max_connections, s.reserved_fds, nofile);
    let limit = nofile.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    if cap < s.max_connections {
        tracing::warn!(
            max_connections = cap,
            configured = s.max_connections,
            open_files_limit = %limit,
            reserved_fds = s.reserved_fds,
            "server.max_connections lowered to fit the open-files limit; raise the limit \
             (systemd: LimitNOFILE=) to hold more connections"
        );
    }
    tracing::info!(
        max_connections = cap,
        max_connections_per_ip = s.max_connections_per_ip,
        header_read_timeout_secs = s.header_read_timeout_secs,
        open_files_limit = %limit,
        "connection limits"
    );
    cap
}

/// Load the master key, creating it on first start when it does not exist.
pub fn load_master_key(settings: &Settings) -> Result<MasterKey> {
    let path = settings.master_key_path();
    let existed = path.exists();
    let key = MasterKey::load_or_create(&path)?;
    if !existed {
        tracing::warn!(path = %path.display(), "created a new master key; back it up — secrets cannot be read without it");
    }
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(&path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the master key file is readable by group or others; chmod 600 it");
        }
    }
    Ok(key)
}

/// How often a running process checks whether the master key file changed.
pub const MASTER_KEY_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Re-read the master key file when it changes (checked every
/// [`MASTER_KEY_CHECK_INTERVAL`]) until `stop`: a rotation's new key, or the old key's
/// retirement, reaches the running process without a restart. (Values under a key not
/// yet read are also picked up at once by [`MasterKey::open`]; SIGHUP forces a re-read.)
pub fn watch_master_key(
    key: Arc<MasterKey>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(MASTER_KEY_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    key.reload_if_changed();
                }
            }
        }
    })
}

/// The process's parts an outbox worker delivering to Telegram runs with.
pub struct WorkerParts {
    /// The database.
    pub db: Db,
    /// Bots per tenant (and the master key).
    pub bots: Arc<Bots>,
    /// Usage counters (topics created).
    pub usage: Usage,
    /// In-process wake-ups (PostgreSQL NOTIFY wakes across processes).
    pub wake: Wakeup,
    /// The process's Telegram rate budgets, shared by all its workers and typing actions.
    pub budgets: Arc<Budgets>,
    /// Where panics of deliveries are counted.
    pub panics: crate::tasks::Panics,
}

/// An outbox worker delivering to Telegram: the one place `serve` and
/// `chatorical worker` build theirs.
pub fn telegram_worker(settings: &Settings, parts: &WorkerParts) -> Worker<TelegramDelivery> {
    let delivery = Arc::new(
        TelegramDelivery::new(
            parts.db.clone(),
            parts.bots.clone(),
            settings.worker.clone(),
        )
        .with_usage(parts.usage.clone())
        // The same budgets as typing actions in this process.
        .with_budgets(parts.budgets.clone()),
    );
    Worker::new(
        parts.db.clone(),
        settings.worker.clone(),
        delivery,
        parts.wake.clone(),
    )
    .with_panics(parts.panics.clone())
}

/// Start the embedded outbox worker on the application's shutdown signal (with the
/// same budgets as typing actions in this process).
fn spawn_worker(state: &AppState) -> tokio::task::JoinHandle<()> {
    let parts = WorkerParts {
        db: state.db.clone(),
        bots: state.bots.clone(),
        usage: state.usage.clone(),
        wake: state.wake.clone(),
        budgets: state.budgets.clone(),
        panics: state.panics.clone(),
    };
    let worker = Arc::new(telegram_worker(&state.settings, &parts));
    tokio::spawn(worker.run(state.shutdown.clone()))
}

/// The long poll of the bots of tenants in polling mode: one per worker process (the
/// embedded worker of `serve`, `chatorical worker`), handling updates with `handler`
/// exactly as the webhook does.
pub fn telegram_poller(
    settings: &Settings,
    bots: Arc<Bots>,
    handler: UpdateHandler,
    panics: crate::tasks::Panics,
) -> Poller {
    Poller::new(settings, bots, handler).with_panics(panics)
}

/// The update handling of a process without the HTTP server (`chatorical worker`):
/// agents' answers it polls reach widget sockets on other nodes through Redis (a
/// process without Redis has no sockets to publish to: the visitor sees them at the
/// next reconnect or gap backfill).
pub fn standalone_update_handler(
    settings: &Settings,
    db: Db,
    cluster: Option<Cluster>,
    usage: Usage,
    wake: Wakeup,
    panics: &crate::tasks::Panics,
) -> UpdateHandler {
    let hub: Arc<dyn Hub> = match &cluster {
        Some(c) => Arc::new(RedisHub::start(c.clone(), panics)),
        None => Arc::new(LocalHub::new()),
    };
    let quotas = Arc::new(crate::quota::Quotas::new(
        db.clone(),
        cluster.clone(),
        settings.redis.limits_fail_open,
    ));
    // This process issues no socket tokens: a signer nobody can verify is enough.
    let signer = WsTokenSigner::new(random_base62(48).as_bytes());
    let chat = Chat::new(db.clone(), hub, signer, settings.ws.token_ttl_secs, wake)
        .with_usage(usage)
        .with_quotas(quotas);
    let presence = Arc::new(Presence::new(
        cluster,
        Duration::from_secs(settings.presence.window_secs),
    ));
    UpdateHandler::new(db, chat, Arc::new(WebhookCounters::default()), presence)
}

/// Start the embedded worker's long poll on the application's shutdown signal.
fn spawn_poller(state: &AppState) -> tokio::task::JoinHandle<()> {
    let handler = UpdateHandler::new(
        state.db.clone(),
        state.chat.clone(),
        state.webhook.clone(),
        state.presence.clone(),
    );
    let poller = Arc::new(telegram_poller(
        &state.settings,
        state.bots.clone(),
        handler,
        state.panics.clone(),
    ));
    tokio::spawn(poller.run(state.shutdown.clone()))
}

/// Open the configured database, migrating when the settings say so (always on SQLite).
/// PostgreSQL with pending migrations and `auto_migrate = false` is an error.
pub async fn open_database(settings: &Settings) -> Result<Db> {
    let url = settings.database_url()?;
    let db = Db::connect_with(
        &url,
        settings.database.max_connections,
        settings.database.busy_timeout_ms,
        settings.database_options()?,
    )
    .await?;
    let migrate = matches!(url, DatabaseUrl::Sqlite(_)) || settings.database.auto_migrate;
    if migrate {
        let applied = db.migrate().await?;
        if !applied.is_empty() {
            tracing::info!(count = applied.len(), "applied migrations");
        }
    } else {
        let pending = db.pending_migrations().await?;
        if !pending.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "{} pending migration(s); run `chatorical migrate` or set database.auto_migrate = true",
                    pending.len()
                ),
            ));
        }
    }
    Ok(db)
}

/// The WebSocket token secret: configured, or generated once in the data dir.
fn token_secret(settings: &Settings) -> Result<Vec<u8>> {
    if let Some(s) = &settings.server.token_secret {
        return Ok(s.expose().as_bytes().to_vec());
    }
    let dir = &settings.server.data_dir;
    let path = dir.join("ws_token.secret");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && existing.trim().len() >= 32
    {
        return Ok(existing.trim().as_bytes().to_vec());
    }
    crate::files::create_private_dir(dir)?;
    let secret = random_base62(48);
    write_private(&path, &secret)?;
    Ok(secret.into_bytes())
}

pub(crate) fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        Error::new(
            ErrorCode::InvalidConfig,
            format!("cannot write {}: {e}", path.display()),
        )
    })?;
    f.write_all(contents.as_bytes()).map_err(|e| {
        Error::new(
            ErrorCode::InvalidConfig,
            format!("cannot write {}: {e}", path.display()),
        )
    })
}

impl Application {
    /// Bind the listener, open (and migrate) the database, set up the demo tenant.
    pub async fn build(settings: Settings) -> Result<Self> {
        settings.validate()?;
        crate::metrics::install();
        let db = open_database(&settings).await?;
        let (listener, addr) = bind(settings.listen_addr()?, "server.listen").await?;
        let metrics_listener = match settings.metrics_addr()? {
            Some(at) => Some(bind(at, "telemetry.metrics_listen").await?),
            None => None,
        };
        let max_connections = connection_cap(&settings);
        let public_url: Arc<str> = settings.public_url(addr).into();
        let signer = WsTokenSigner::new(&token_secret(&settings)?);
        let cluster = Cluster::connect(&settings.redis)?;
        let panics = crate::tasks::Panics::default();
        let hub: Arc<dyn Hub> = match &cluster {
            Some(c) => Arc::new(RedisHub::start(c.clone(), &panics)),
            None => Arc::new(LocalHub::new()),
        };
        let wake = Wakeup::default();
        let usage = Usage::new(db.clone(), cluster.clone());
        let quotas = Arc::new(crate::quota::Quotas::new(
            db.clone(),
            cluster.clone(),
            settings.redis.limits_fail_open,
        ));
        let chat = Chat::new(
            db.clone(),
            hub,
            signer,
            settings.ws.token_ttl_secs,
            wake.clone(),
        )
        .with_usage(usage.clone())
        .with_quotas(quotas.clone());
        let key = Arc::new(load_master_key(&settings)?);
        let bots = Arc::new(Bots::new(&settings.telegram, key)?);
        let budgets = Arc::new(Budgets::new());
        let typing = Arc::new(Typing::new(
            budgets.clone(),
            &settings.worker,
            cluster.clone(),
        ));
        let sockets = Arc::new(SocketCaps::new(
            settings.ws.max_sockets_per_visitor,
            settings.ws.max_sockets_per_ip,
        ));
        // An erased visitor's sockets (on this node, told by any node) close with 1008.
        let open = sockets.clone();
        chat.hub()
            .set_visitor_closer(Arc::new(move |visitor_id: &str| {
                open.close_visitor(visitor_id);
            }));
        let billing = crate::billing::Billing::from_settings(&settings.billing.stripe)?;
        let limiter = Arc::new(Limiter::new(&settings, cluster.clone()));
        let presence = Arc::new(Presence::new(
            cluster.clone(),
            Duration::from_secs(settings.presence.window_secs),
        ));
        let settings = Arc::new(settings);
        let shutdown = CancellationToken::new();
        let metrics = Arc::new(Metrics::default());
        let socket = Arc::new(SocketContext {
            chat: chat.clone(),
            db: db.clone(),
            bots: bots.clone(),
            limiter: limiter.clone(),
            presence: presence.clone(),
            quotas: quotas.clone(),
            typing: typing.clone(),
            settings: settings.clone(),
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            panics: panics.clone(),
        });
        let state = AppState::new(AppStateInner {
            db,
            chat,
            master_key: bots.key().clone(),
            bots,
            wake,
            webhook: Arc::new(WebhookCounters::default()),
            cluster: cluster.clone(),
            limiter,
            sockets,
            budgets,
            typing,
            presence,
            usage,
            quotas,
            billing,
            settings,
            shutdown,
            origins: OriginCache::default(),
            metrics,
            public_url,
            demo_widget_key: Arc::new(RwLock::new(None)),
            panics,
            socket,
        });
        if state.settings.demo.enabled && state.settings.is_embedded() {
            let key = ensure_demo_tenant(&state, addr).await?;
            if let Ok(mut slot) = state.demo_widget_key.write() {
                *slot = Some(key);
            }
        }
        let worker = state.settings.worker.embedded.then(|| spawn_worker(&state));
        // Grace periods that ended are checked where outbox workers run.
        let dunning = state.settings.worker.embedded.then(|| {
            crate::billing::dunning::spawn(
                state.db.clone(),
                state.wake.clone(),
                crate::billing::dunning::RUN_EVERY,
                state.shutdown.clone(),
            )
        });
        // So are the outbox's lanes watched for a backlog.
        let backlog = state.settings.worker.embedded.then(|| {
            crate::outbox::backlog::Monitor::new(
                state.db.clone(),
                state.settings.worker.clone(),
                state.wake.clone(),
            )
            .spawn(state.shutdown.clone())
        });
        // Bots of tenants in polling mode are polled where outbox workers run.
        let poller = state.settings.worker.embedded.then(|| spawn_poller(&state));
        // So is retention (closed conversations, unused visitors, the audit log), hourly.
        let retention = state.settings.worker.embedded.then(|| {
            crate::retention::spawn(
                state.db.clone(),
                state.wake.clone(),
                state.settings.retention.clone(),
                state.settings.audit.retention_days,
                state.shutdown.clone(),
            )
        });
        Ok(Application {
            listener,
            state,
            addr,
            metrics_listener,
            max_connections,
            worker,
            dunning,
            backlog,
            poller,
            retention,
        })
    }

    /// The bound address (port 0 in tests becomes a real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound `telemetry.metrics_listen` address, when set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// Shared state (database, hub, settings).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until `shutdown` resolves: then stop accepting, close sockets with 1001,
    /// and wait up to `server.shutdown_grace_secs` for in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let state = self.state.clone();
        let cancel = state.shutdown.clone();
        let grace = Duration::from_secs(state.settings.server.shutdown_grace_secs);
        let usage = state.usage.clone();
        let panics = state.panics.clone();
        let summarizer = tokio::spawn(usage.clone().run_summarizer(cancel.clone()));
        watch_master_key(state.master_key.clone(), cancel.clone());
        let settings = state.settings.clone();
        let header_timeout = Duration::from_secs(settings.server.header_read_timeout_secs);
        let stats = state.metrics.connections.clone();
        let limits = ConnLimits::new(
            self.max_connections,
            settings.server.max_connections_per_ip,
            settings.server.trusted_proxies.clone(),
            stats.clone(),
        );
        limits.publish_limit();
        if let Some((listener, addr)) = self.metrics_listener {
            tracing::info!(%addr, "serving /metrics on its own address");
            let limits = ConnLimits::new(
                METRICS_LISTENER_CONNECTIONS,
                METRICS_LISTENER_CONNECTIONS,
                Vec::new(),
                stats,
            );
            tokio::spawn(server::serve(
                listener,
                http::metrics_router(state.clone()),
                limits,
                header_timeout,
                cancel.clone(),
            ));
        }
        // Handshakes' freed pages back to the system after bursts of sockets.
        panics.spawn(
            "heap trimmer",
            crate::heap::trim_after_bursts(state.metrics.connections.clone(), cancel.clone()),
        );
        let router = http::router(state);
        let stop = cancel.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.cancel();
        });
        // Requests carry the TCP peer as ConnectInfo; behind `server.trusted_proxies` the
        // client address comes from X-Forwarded-For instead (http/client_ip.rs).
        let server = tokio::spawn(server::serve(
            self.listener,
            router,
            limits,
            header_timeout,
            cancel.clone(),
        ));
        cancel.cancelled().await;
        let mut crashed = Vec::new();
        if let Some(worker) = self.worker
            && let Ok(joined) = tokio::time::timeout(grace, worker).await
            && panics.check_join("outbox worker", &joined)
        {
            crashed.push("outbox worker");
        }
        if let Some(dunning) = self.dunning
            && let Ok(joined) = tokio::time::timeout(grace, dunning).await
            && panics.check_join("dunning job", &joined)
        {
            crashed.push("dunning job");
        }
        if let Some(backlog) = self.backlog
            && let Ok(joined) = tokio::time::timeout(grace, backlog).await
            && panics.check_join("backlog monitor", &joined)
        {
            crashed.push("backlog monitor");
        }
        if let Some(poller) = self.poller
            && let Ok(joined) = tokio::time::timeout(grace, poller).await
            && panics.check_join("telegram poller", &joined)
        {
            crashed.push("telegram poller");
        }
        if let Some(retention) = self.retention
            && let Ok(joined) = tokio::time::timeout(grace, retention).await
            && panics.check_join("retention job", &joined)
        {
            crashed.push("retention job");
        }
        let served = tokio::time::timeout(grace, server).await;
        if let Ok(joined) = &served
            && panics.check_join("http server", joined)
        {
            crashed.push("http server");
        }
        // Store what the last requests counted; with Redis, summarize once more.
        if panics.check_join("usage summarizer", &summarizer.await) {
            crashed.push("usage summarizer");
        }
        match tokio::time::timeout(grace, usage.summarize()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "last usage summary failed"),
            Err(_) => tracing::warn!("last usage summary timed out"),
        }
        if !crashed.is_empty() {
            // A supervisor restarts a process that exits with an error.
            return Err(Error::internal(format!(
                "background task(s) panicked: {}",
                crashed.join(", ")
            )));
        }
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::internal(format!("server task: {e}"))),
            Err(_) => {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "in-flight requests did not finish in time"
                );
                Ok(())
            }
        }
    }
}

/// Create the `demo` tenant on first start, and make sure its allowed origins include
/// this server's own origin. Returns its widget key.
async fn ensure_demo_tenant(state: &AppState, addr: SocketAddr) -> Result<String> {
    let mut origins = vec![state.public_url.to_string()];
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        origins.push(format!("http://localhost:{}", addr.port()));
        origins.push(format!("http://127.0.0.1:{}", addr.port()));
    }
    let tenant = match tenancy::tenant_by_slug(&state.db, "demo").await {
        Ok(t) => t,
        Err(e) if e.code == ErrorCode::NotFound => {
            let new = tenancy::NewTenant {
                slug: "demo".into(),
                name: "Demo".into(),
                allowed_origins: origins.clone(),
                plan: None,
            };
            match tenancy::create_tenant(&state.db, &tenancy::Caller::System, new).await {
                Ok(t) => t,
                Err(e) if e.code == ErrorCode::Conflict => {
                    tenancy::tenant_by_slug(&state.db, "demo").await?
                }
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let mut wanted: Vec<String> = tenant
        .settings
        .allowed_origins
        .iter()
        .map(|o| o.as_str().to_string())
        .collect();
    let before = wanted.len();
    for o in origins {
        if !wanted.contains(&o) {
            wanted.push(o);
        }
    }
    if wanted.len() != before {
        let patch = SettingsPatch {
            allowed_origins: Some(wanted),
            ..Default::default()
        };
        tenancy::update_settings(&state.db, &tenancy::Caller::System, &tenant.id, patch).await?;
    }
    Ok(tenant.widget_key)
}
