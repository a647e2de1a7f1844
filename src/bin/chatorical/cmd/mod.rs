//! One file per command: its arguments and how it runs.

pub(crate) mod audit;
pub(crate) mod backup;
pub(crate) mod billing;
pub(crate) mod completions;
pub(crate) mod config;
pub(crate) mod doctor;
pub(crate) mod environments;
pub(crate) mod flags;
pub(crate) mod keys;
pub(crate) mod man;
pub(crate) mod migrate;
pub(crate) mod outbox;
pub(crate) mod plans;
pub(crate) mod retention;
pub(crate) mod secrets;
pub(crate) mod serve;
pub(crate) mod telegram;
pub(crate) mod templates;
pub(crate) mod tenants;
pub(crate) mod usage;
pub(crate) mod visitors;
pub(crate) mod widget;
pub(crate) mod worker;

use chatorical::config::{Loaded, Overrides, Settings};

use crate::cli::Global;

/// Load settings from all layers, with `listen` as an extra flag.
pub(crate) fn load(g: &Global, listen: Option<String>) -> anyhow::Result<Loaded> {
    let over = Overrides {
        listen,
        database_url: g.database_url.clone(),
        data_dir: g.data_dir.clone(),
        log_format: g.log_format,
    };
    Ok(Settings::load(g.config.as_deref(), &over)?)
}

/// Load settings, start logging and open the database (migrating where configured).
pub(crate) async fn open(g: &Global) -> anyhow::Result<(Settings, chatorical::db::Db)> {
    let loaded = load(g, None)?;
    chatorical::telemetry::init(
        loaded.settings.log.format,
        &quiet_filter(&loaded.settings.log.filter),
    );
    let db = chatorical::app::open_database(&loaded.settings).await?;
    Ok((loaded.settings, db))
}

/// Operator commands log warnings only, unless asked for more.
pub(crate) fn quiet_filter(configured: &str) -> String {
    if configured == "info" {
        "warn".into()
    } else {
        configured.into()
    }
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called
/// (not when the future is first polled), so call it before announcing readiness.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(term) => {}
                _ = wait(int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

/// Re-read the master key file on every SIGHUP (`systemctl reload`), e.g. right after
/// `secrets rotate` or `secrets retire-old`.
pub(crate) fn reload_master_key_on_sighup(key: std::sync::Arc<chatorical::crypto::MasterKey>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!(
                "cannot listen for SIGHUP; the master key file is still re-read when it changes"
            );
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match key.reload() {
                    Ok(changed) => {
                        tracing::info!(changed, keys = ?key.fingerprints(), "SIGHUP: master key file re-read")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: master key file cannot be used; keeping the key in memory")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = key;
}
