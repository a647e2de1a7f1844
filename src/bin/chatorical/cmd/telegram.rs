//! `chatorical telegram setup|status|mode|set|enable|disable|disconnect|add-relay|remove-relay|relays`.

use std::{io::Read, path::PathBuf, process::ExitCode, sync::Arc};

use clap::Subcommand;

use chatorical::{
    app::load_master_key,
    telegram::{Bots, TelegramMode, mode, relays, setup},
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
    /// Add a relay bot to the tenant's forum group (another bot, admin of the group with
    /// Manage Topics): each bot has its own budget of messages a minute, and new
    /// conversations' topics are spread over the bots.
    AddRelay {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// File holding the relay bot's token (`-` reads standard input); never pass it as
        /// an argument.
        #[arg(long, value_name = "FILE")]
        bot_token_file: PathBuf,
    },
    /// Remove a relay bot: its topics and pending messages go to the remaining bots.
    RemoveRelay {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// The relay bot's user id (see `telegram relays`).
        #[arg(long, value_name = "ID")]
        bot_id: i64,
    },
    /// List a tenant's relay bots with the open topics each serves.
    Relays {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
}

/// The token in `path` (`-`: standard input).
fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
    }
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
            let token = read_token(&bot_token_file)?;
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
        TelegramCommand::AddRelay {
            tenant,
            bot_token_file,
        } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let token = read_token(&bot_token_file)?;
            let relay = relays::add(
                &db,
                &bots,
                &Caller::Operator,
                &tenant,
                &public_url,
                token.trim(),
            )
            .await?;
            print_relays(g, std::slice::from_ref(&relay))?;
        }
        TelegramCommand::RemoveRelay { tenant, bot_id } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let removed = relays::remove(&db, &bots, &Caller::Operator, &tenant, bot_id).await?;
            if g.json {
                output::json(&removed)?;
            } else {
                println!(
                    "Relay @{} removed: {} topic(s) and {} pending item(s) moved to the remaining bots",
                    removed.bot_username, removed.topics_reassigned, removed.items_moved
                );
            }
        }
        TelegramCommand::Relays { tenant } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let list = relays::list(&db, &Caller::Operator, &tenant).await?;
            print_relays(g, &list)?;
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
    for r in &s.relays {
        t.add_row(vec![
            "relay".to_string(),
            format!(
                "@{} ({}): {} open topic(s), {} pending",
                r.bot_username, r.bot_id, r.open_topics, r.pending
            ),
        ]);
    }
    output::print_table(&t);
    Ok(())
}

fn print_relays(g: &Global, relays: &[relays::RelayView]) -> anyhow::Result<()> {
    if g.json {
        return output::json(&serde_json::json!({ "relays": relays }));
    }
    let mut t = output::table(&["bot id", "username", "open topics", "pending", "added"]);
    for r in relays {
        t.add_row(vec![
            r.bot_id.to_string(),
            format!("@{}", r.bot_username),
            r.open_topics.to_string(),
            r.pending.to_string(),
            r.added_at.clone(),
        ]);
    }
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
