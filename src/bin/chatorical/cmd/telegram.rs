//! `chatorical telegram setup|status|mode|set|enable|disable|disconnect`.

use std::{io::Read, path::PathBuf, process::ExitCode, sync::Arc};

use clap::Subcommand;

use chatorical::{
    app::load_master_key,
    telegram::{Bots, TelegramMode, mode, setup},
    tenancy::{self, Caller},
};

use crate::cli::Global;
use crate::output;

/// Telegram commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TelegramCommand {
    /// Connect a tenant's bot and forum group (validates with Telegram; registers the
    /// webhook, or in polling mode deletes it and a worker long-polls getUpdates).
    Setup {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// File holding the bot token (`-` reads standard input); never pass it as an argument.
        #[arg(long, value_name = "FILE")]
        bot_token_file: PathBuf,
        /// The forum supergroup's chat id (e.g. -1001234567890).
        #[arg(long, value_name = "ID", allow_hyphen_values = true)]
        group: i64,
        /// Topic to use when the bot may not create topics.
        #[arg(long, value_name = "ID")]
        default_topic: Option<i64>,
        /// How updates arrive: `webhook` (Telegram calls server.public_url) or `polling`
        /// (a worker long-polls; no public URL needed). Default: the tenant's current
        /// mode, else telegram.default_mode (webhook when server.public_url is set,
        /// else polling).
        #[arg(long, value_enum)]
        mode: Option<TelegramMode>,
    },
    /// Switch how a tenant's updates arrive: `webhook` (setWebhook) or `polling`
    /// (deleteWebhook; a worker long-polls getUpdates).
    Mode {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// The new mode.
        #[arg(value_enum)]
        mode: TelegramMode,
    },
    /// Show a tenant's Telegram connection (token redacted).
    Status {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
    /// Change a tenant's Telegram options.
    Set {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Whether retention also deletes a purged conversation's forum topic with its
        /// messages (the bot needs the "Delete messages" admin right).
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        delete_topics_on_retention: bool,
    },
    /// Pause delivery and ignore webhook updates (items wait in the outbox).
    Disable {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
    /// Resume after `disable`.
    Enable {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
    /// Disconnect (deleteWebhook and forget the bot).
    Disconnect {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
}

/// Run a telegram command.
pub(crate) async fn run(g: &Global, cmd: TelegramCommand) -> anyhow::Result<ExitCode> {
    let (settings, db) = super::open(g).await?;
    let bots = Bots::new(&settings.telegram, Arc::new(load_master_key(&settings)?))?;
    let public_url = settings.configured_public_url();
    match cmd {
        TelegramCommand::Setup {
            tenant,
            bot_token_file,
            group,
            default_topic,
            mode,
        } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let token = if bot_token_file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s
            } else {
                std::fs::read_to_string(&bot_token_file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", bot_token_file.display()))?
            };
            let status = setup::connect(
                &db,
                &bots,
                &Caller::Operator,
                &tenant,
                &public_url,
                setup::Connect {
                    bot_token: token.trim(),
                    group_chat_id: group,
                    default_topic_id: default_topic,
                    mode,
                    default_mode: TelegramMode::default_for(&settings),
                },
            )
            .await?;
            print_status(g, &status)?;
        }
        TelegramCommand::Status { tenant } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let status =
                setup::current_status(&db, &bots, &Caller::Operator, &tenant, &public_url).await?;
            print_status(g, &status)?;
        }
        TelegramCommand::Mode { tenant, mode } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let status =
                mode::set_mode(&db, &bots, &Caller::Operator, &tenant, &public_url, mode).await?;
            print_status(g, &status)?;
        }
        TelegramCommand::Set {
            tenant,
            delete_topics_on_retention,
        } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let status = setup::set_delete_topics_on_retention(
                &db,
                &bots,
                &Caller::Operator,
                &tenant,
                &public_url,
                delete_topics_on_retention,
            )
            .await?;
            print_status(g, &status)?;
        }
        TelegramCommand::Disable { tenant } => {
            switch(g, &db, &bots, &public_url, &tenant, false).await?
        }
        TelegramCommand::Enable { tenant } => {
            switch(g, &db, &bots, &public_url, &tenant, true).await?
        }
        TelegramCommand::Disconnect { tenant } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            setup::disconnect(&db, &bots, &Caller::Operator, &tenant).await?;
            if g.json {
                output::json(&serde_json::json!({ "disconnected": true }))?;
            } else {
                println!("Telegram disconnected for {}", tenant.slug);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(g: &Global, s: &setup::TelegramStatus) -> anyhow::Result<()> {
    if g.json {
        return output::json(s);
    }
    let mut t = output::table(&["field", "value"]);
    t.add_row(vec![
        "bot".to_string(),
        format!("@{} ({})", s.bot_username, s.bot_id),
    ]);
    t.add_row(vec!["bot token".to_string(), s.bot_token.clone()]);
    t.add_row(vec!["group".to_string(), s.group_chat_id.to_string()]);
    t.add_row(vec![
        "default topic".to_string(),
        s.default_topic_id.map_or("-".into(), |t| t.to_string()),
    ]);
    t.add_row(vec![
        "can manage topics".to_string(),
        s.can_manage_topics.to_string(),
    ]);
    t.add_row(vec!["enabled".to_string(), s.enabled.to_string()]);
    t.add_row(vec![
        "delete topics on retention".to_string(),
        s.delete_topics_on_retention.to_string(),
    ]);
    t.add_row(vec!["mode".to_string(), s.mode.to_string()]);
    match &s.polling {
        None => t.add_row(vec!["webhook".to_string(), s.webhook_url.clone()]),
        Some(p) => {
            let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            t.add_row(vec![
                "polled by a worker".to_string(),
                if p.polled {
                    "yes"
                } else {
                    "no (is a worker running?)"
                }
                .to_string(),
            ]);
            t.add_row(vec!["last poll".to_string(), or_dash(&p.last_poll_at)]);
            t.add_row(vec![
                "next update id".to_string(),
                p.offset.map_or("-".into(), |o| o.to_string()),
            ]);
            match &p.last_error {
                Some(e) => t.add_row(vec![
                    "last error".to_string(),
                    format!("{e} (at {})", or_dash(&p.last_error_at)),
                ]),
                None => t.add_row(vec!["last error".to_string(), "-".to_string()]),
            }
        }
    };
    output::print_table(&t);
    Ok(())
}

/// Pause or resume a tenant's Telegram delivery and webhook. A running worker picks
/// the waiting items up at its next poll (or NOTIFY on PostgreSQL).
async fn switch(
    g: &Global,
    db: &chatorical::db::Db,
    bots: &Bots,
    public_url: &str,
    slug: &str,
    enabled: bool,
) -> anyhow::Result<()> {
    let tenant = tenancy::tenant_by_slug(db, slug).await?;
    let status =
        setup::set_enabled(db, bots, &Caller::Operator, &tenant, public_url, enabled).await?;
    print_status(g, &status)
}
