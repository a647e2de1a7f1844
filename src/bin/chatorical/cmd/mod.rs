//! One file per command: its arguments and how it runs.

pub mod config;
pub mod keys;
pub mod man;
pub mod migrate;
pub mod serve;
pub mod tenants;

use chatorical::config::{Loaded, Overrides, Settings};

use crate::cli::Global;

/// Load settings from all layers, with `listen` as an extra flag.
pub fn load(g: &Global, listen: Option<String>) -> anyhow::Result<Loaded> {
    let over = Overrides {
        listen,
        database_url: g.database_url.clone(),
        data_dir: g.data_dir.clone(),
        log_format: g.log_format,
    };
    Ok(Settings::load(g.config.as_deref(), &over)?)
}

/// Load settings, start logging and open the database (migrating where configured).
pub async fn open(g: &Global) -> anyhow::Result<(Settings, chatorical::db::Db)> {
    let loaded = load(g, None)?;
    chatorical::telemetry::init(
        loaded.settings.log.format,
        &quiet_filter(&loaded.settings.log.filter),
    );
    let db = chatorical::app::open_database(&loaded.settings).await?;
    Ok((loaded.settings, db))
}

/// Operator commands log warnings only, unless asked for more.
fn quiet_filter(configured: &str) -> String {
    if configured == "info" {
        "warn".into()
    } else {
        configured.into()
    }
}
