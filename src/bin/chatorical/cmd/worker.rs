//! `chatorical worker`: outbox workers (and the long poll of tenants in Telegram
//! polling mode) without the HTTP server.

use std::{process::ExitCode, sync::Arc};

use clap::Args;
use tokio_util::sync::CancellationToken;

use chatorical::{
    app::{
        WorkerParts, load_master_key, standalone_update_handler, telegram_poller, telegram_worker,
    },
    cluster::Cluster,
    config::Settings,
    outbox::{Wakeup, budget::Budgets},
    telegram::Bots,
    usage::Usage,
};

use crate::cli::Global;

/// Arguments of `worker`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Workers to run in this process.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}

/// Deliver outbox items until SIGTERM; then finish or release what is in flight.
pub(crate) async fn run(g: &Global, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let settings = super::load(g, None)?.settings;
    let telemetry = chatorical::telemetry::start(
        settings.log.format,
        &settings.log.filter,
        &settings.telemetry,
    )?;
    let worked = work(settings, args).await;
    telemetry.shutdown().await;
    worked
}

async fn work(settings: Settings, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    // On SQLite: held until exit, so that `restore` refuses while this runs.
    let _data_lock = chatorical::backup::DataLock::hold_shared(&settings)?;
    let db = chatorical::app::open_database(&settings).await?;
    let key = Arc::new(load_master_key(&settings)?);
    let shutdown = CancellationToken::new();
    // Follow the key file through a rotation (`secrets rotate`, `secrets retire-old`).
    chatorical::app::watch_master_key(key.clone(), shutdown.clone());
    super::reload_master_key_on_sighup(key.clone());
    let bots = Arc::new(Bots::new(&settings.telegram, key)?);
    let cluster = Cluster::connect(&settings.redis)?;
    // Counts topics it creates, and folds the Redis usage counters every minute.
    let usage = Usage::new(db.clone(), cluster.clone());
    let summarizer = tokio::spawn(usage.clone().run_summarizer(shutdown.clone()));
    // One set of Telegram budgets for all the workers of this process.
    let parts = WorkerParts {
        db: db.clone(),
        bots,
        usage: usage.clone(),
        wake: Wakeup::default(),
        budgets: Arc::new(Budgets::new()),
        panics: chatorical::tasks::Panics::default(),
    };
    let panics = parts.panics.clone();
    // Grace periods of failed payments that ended: downgrade those tenants.
    let dunning = chatorical::billing::dunning::spawn(
        db.clone(),
        parts.wake.clone(),
        chatorical::billing::dunning::RUN_EVERY,
        shutdown.clone(),
    );
    // Lanes whose oldest item waits too long: a warning, and one notice per backlog.
    let backlog = chatorical::outbox::backlog::Monitor::new(
        db.clone(),
        settings.worker.clone(),
        parts.wake.clone(),
    )
    .spawn(shutdown.clone());
    // One long poll per process for the bots of tenants in polling mode (a lease in
    // the database keeps it to one poller per bot across processes).
    let handler = standalone_update_handler(
        &settings,
        db.clone(),
        cluster.clone(),
        usage.clone(),
        parts.wake.clone(),
        &panics,
    );
    if cluster.is_none() {
        tracing::info!(
            "no redis.url: agents' answers this worker polls reach visitors' sockets on \
             other processes only when they reconnect or backfill"
        );
    }
    let poller = Arc::new(telegram_poller(
        &settings,
        parts.bots.clone(),
        handler,
        panics.clone(),
    ));
    let polling = tokio::spawn(poller.run(shutdown.clone()));
    // Retention (closed conversations, unused visitors, the audit log), hourly.
    let retention = chatorical::retention::spawn(
        db.clone(),
        parts.wake.clone(),
        settings.retention.clone(),
        settings.audit.retention_days,
        shutdown.clone(),
    );
    let mut handles = Vec::new();
    for _ in 0..args.workers.max(1) {
        let worker = Arc::new(telegram_worker(&settings, &parts));
        handles.push(tokio::spawn(worker.run(shutdown.clone())));
    }
    let stop = super::shutdown_signal();
    eprintln!(
        "chatorical worker running ({} worker(s); Ctrl-C to stop)",
        handles.len()
    );
    stop.await;
    shutdown.cancel();
    for h in handles {
        panics.check_join("outbox worker", &h.await);
    }
    panics.check_join("usage summarizer", &summarizer.await);
    panics.check_join("dunning job", &dunning.await);
    panics.check_join("backlog monitor", &backlog.await);
    panics.check_join("telegram poller", &polling.await);
    panics.check_join("retention job", &retention.await);
    if let Err(e) = usage.summarize().await {
        tracing::warn!(error = %e, "last usage summary failed");
    }
    if panics.count() > 0 {
        // Logged where they happened; a supervisor sees a failed run.
        eprintln!(
            "error: {} task panic(s) during this run; see the log",
            panics.count()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
