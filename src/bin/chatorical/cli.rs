//! The command line: `chatorical <command>`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use chatorical::config::LogFormat;

use crate::cmd;

/// Multi-tenant support chat: a website widget on one side, a Telegram forum topic
/// per conversation on the other.
#[derive(Debug, Parser)]
#[command(name = "chatorical", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by all commands.
#[derive(Debug, Args, Clone)]
pub(crate) struct Global {
    /// Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Database URL (sqlite://PATH or postgres://…); overrides the file and environment.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Data directory for the embedded database and generated keys.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the HTTP API, the widget socket, the widget script and the demo page.
    Serve(cmd::serve::ServeArgs),
    /// Deliver outbox items to Telegram (run any number beside `serve`).
    Worker(cmd::worker::WorkerArgs),
    /// Apply pending database migrations.
    Migrate(cmd::migrate::MigrateArgs),
    /// Create, list and show tenants; put a tenant on a plan.
    #[command(subcommand)]
    Tenants(cmd::tenants::TenantsCommand),
    /// Plans as code: sync the catalogue file, list, show and delete plans.
    #[command(subcommand)]
    Plans(cmd::plans::PlansCommand),
    /// Billing: where a tenant stands with its Stripe subscription.
    #[command(subcommand)]
    Billing(cmd::billing::BillingCommand),
    /// Issue, list and revoke API keys.
    #[command(subcommand)]
    Keys(cmd::keys::KeysCommand),
    /// Connect a tenant's Telegram bot and forum group.
    #[command(subcommand)]
    Telegram(cmd::telegram::TelegramCommand),
    /// Inspect and retry outbox items.
    #[command(subcommand)]
    Outbox(cmd::outbox::OutboxCommand),
    /// Per-tenant daily usage: summarize the counters, show a tenant's days.
    #[command(subcommand)]
    Usage(cmd::usage::UsageCommand),
    /// A tenant's feature flags per environment (over the plan's features): list, set, unset.
    #[command(subcommand)]
    Flags(cmd::flags::FlagsCommand),
    /// A tenant's texts for the widget's strings, per locale: list, set, delete, preview.
    #[command(subcommand)]
    Templates(cmd::templates::TemplatesCommand),
    /// Master key rotation: which key seals what, rotate, retire old keys.
    #[command(subcommand)]
    Secrets(cmd::secrets::SecretsCommand),
    /// The audit log: list entries, export them to a file.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Visitors' personal data (GDPR): export everything about a visitor, erase it.
    #[command(subcommand)]
    Visitors(cmd::visitors::VisitorsCommand),
    /// Retention: delete closed conversations past their tenant's retention, and unused visitors.
    #[command(subcommand)]
    Retention(cmd::retention::RetentionCommand),
    /// Copy the embedded SQLite database to a file while `serve` keeps running, and check the copy.
    Backup(cmd::backup::BackupArgs),
    /// Replace the embedded SQLite database with a backup (refused while `serve` or a `worker` runs).
    Restore(cmd::backup::RestoreArgs),
    /// Print shell completions (bash, zsh, fish) on stdout.
    Completions(cmd::completions::CompletionsArgs),
    /// Check or print configuration.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Check what an operator checks first: configuration, database and migrations,
    /// Redis, the master key and the secrets it opens, the public URL, Telegram webhooks.
    Doctor(cmd::doctor::DoctorArgs),
    /// Release the widget script: versioned asset and an embed snippet with SRI.
    #[command(subcommand)]
    Widget(cmd::widget::WidgetCommand),
    /// Write man pages for every command (used to keep man/ current).
    #[command(hide = true)]
    Man(cmd::man::ManArgs),
}
