//! `chatorical serve`.

use std::process::ExitCode;

use clap::Args;

use chatorical::{app::Application, config::Settings};

use crate::cli::Global;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

/// Serve until SIGTERM or Ctrl-C; then flush the spans still queued for export.
pub(crate) async fn run(g: &Global, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g, args.listen)?;
    let settings = loaded.settings;
    let telemetry = chatorical::telemetry::start(
        settings.log.format,
        &settings.log.filter,
        &settings.telemetry,
    )?;
    if let Some(file) = &loaded.file {
        tracing::info!(file = %file.display(), "configuration file");
    }
    let served = serve(settings).await;
    telemetry.shutdown().await;
    served
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    // On SQLite: held until exit, so that `restore` refuses while this runs.
    let _data_lock = chatorical::backup::DataLock::hold_shared(&settings)?;
    let app = Application::build(settings).await?;
    let stop = super::shutdown_signal();
    super::reload_master_key_on_sighup(app.state().master_key.clone());
    let url = app.state().public_url.clone();
    tracing::info!(addr = %app.local_addr(), backend = ?app.state().db.backend(), "listening");
    if app
        .state()
        .demo_widget_key
        .read()
        .map(|k| k.is_some())
        .unwrap_or(false)
    {
        eprintln!("chatorical is running: open {url}/ for the demo chat (Ctrl-C to stop)");
    } else {
        eprintln!("chatorical is running on {url} (Ctrl-C to stop)");
    }
    app.run_until_stopped(stop).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
