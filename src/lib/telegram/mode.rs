//! How a tenant's updates arrive — Telegram calls our webhook, or a worker polls
//! getUpdates — and switching between the two (`PATCH /v1/admin/telegram {"mode"}`,
//! `chatorical telegram mode`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Bots;
use super::setup::{
    ALLOWED_UPDATES, TelegramStatus, check_webhook_url, short, status, webhook_url, with_polling,
};
use crate::audit::{Action, Entry};
use crate::config::{Settings, TelegramDefaultMode};
use crate::db::{Db, repo};
use crate::domain::{Resource, Scope, ScopeAccess, now_ms};
use crate::error::{Error, ErrorCode, Result};
use crate::tenancy::{Caller, Tenant};
use crate::transaction;

/// How a tenant's Telegram updates arrive.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    /// Telegram calls `{server.public_url}/v1/telegram/webhook/{slug}` (needs a URL
    /// Telegram can reach).
    Webhook,
    /// A worker long-polls getUpdates (no public URL needed: laptops, servers behind NAT).
    Polling,
}

impl TelegramMode {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TelegramMode::Webhook => "webhook",
            TelegramMode::Polling => "polling",
        }
    }

    /// A stored mode (the column only holds these two; anything else reads as `webhook`,
    /// what every connection was before polling existed).
    pub fn from_stored(s: &str) -> Self {
        match s {
            "polling" => TelegramMode::Polling,
            _ => TelegramMode::Webhook,
        }
    }

    /// The mode a tenant gets when it is connected without one (`telegram.default_mode`):
    /// with `auto`, `webhook` when `server.public_url` is set, else `polling` —
    /// Telegram cannot reach a server that has no public URL.
    pub fn default_for(settings: &Settings) -> Self {
        match settings.telegram.default_mode {
            TelegramDefaultMode::Webhook => TelegramMode::Webhook,
            TelegramDefaultMode::Polling => TelegramMode::Polling,
            TelegramDefaultMode::Auto if settings.server.public_url.is_some() => {
                TelegramMode::Webhook
            }
            TelegramDefaultMode::Auto => TelegramMode::Polling,
        }
    }
}

impl std::fmt::Display for TelegramMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Make Telegram deliver the bot's updates the way `mode` says: `webhook` registers
/// the webhook (with the tenant's stored secret), `polling` deletes it (Telegram
/// refuses getUpdates while a webhook is set).
pub(crate) async fn apply(
    bot: &teloxide::Bot,
    mode: TelegramMode,
    webhook: Option<(reqwest::Url, String)>,
) -> Result<()> {
    use teloxide::prelude::Requester;
    let failed = |what: &str, e: &teloxide::RequestError| match e {
        teloxide::RequestError::Network(_) | teloxide::RequestError::Io(_) => Error::new(
            ErrorCode::Unavailable,
            format!("{what} failed: Telegram cannot be reached; try again"),
        ),
        other => Error::validation("mode", format!("{what} failed: {}", short(other))),
    };
    match (mode, webhook) {
        (TelegramMode::Webhook, Some((url, secret))) => {
            use teloxide::payloads::SetWebhookSetters;
            bot.set_webhook(url)
                .secret_token(secret)
                .allowed_updates(ALLOWED_UPDATES.to_vec())
                .await
                .map_err(|e| failed("setWebhook", &e))?;
        }
        (TelegramMode::Webhook, None) => {
            return Err(Error::internal("a webhook needs its URL and secret"));
        }
        (TelegramMode::Polling, _) => {
            bot.delete_webhook()
                .await
                .map_err(|e| failed("deleteWebhook", &e))?;
        }
    }
    Ok(())
}

/// Switch how the tenant's updates arrive (`telegram:write`; a tenant key only for its
/// own tenant); `not_found` without a connection. To `webhook`: the webhook URL is
/// checked first (409 `webhook_url_rejected` when Telegram would refuse it, nothing
/// changed), then registered with setWebhook. To `polling`: deleteWebhook, then a
/// worker polls getUpdates. Telegram is told first; the mode is stored (with a
/// `telegram.mode_changed` audit entry when it changed) only when Telegram agreed.
/// Asking for the current mode tells Telegram again and records nothing.
/// `PATCH /v1/admin/telegram {"mode"}` and `chatorical telegram mode`.
pub async fn set_mode(
    db: &Db,
    bots: &Bots,
    caller: &Caller,
    tenant: &Tenant,
    public_url: &str,
    mode: TelegramMode,
) -> Result<TelegramStatus> {
    caller.require(&Scope::new(Resource::Telegram, ScopeAccess::Write))?;
    caller.check_tenant(tenant)?;
    let cfg = {
        let mut pc = db.conn().await?;
        repo::telegram::get(&mut pc.as_conn(), &tenant.id)
            .await?
            .ok_or_else(|| Error::not_found("telegram connection"))?
    };
    let webhook = match mode {
        TelegramMode::Webhook => {
            let url = check_webhook_url(
                &webhook_url(public_url, &tenant.slug),
                bots.allow_http_webhook(),
            )?;
            let secret = bots
                .key()
                .open(
                    &tenant.id,
                    super::FIELD_WEBHOOK_SECRET,
                    &cfg.webhook_secret_enc,
                )
                .map_err(|_| Error::internal("webhook secret cannot be decrypted"))?;
            Some((url, secret))
        }
        TelegramMode::Polling => None,
    };
    let bot = bots.for_tenant(&cfg)?;
    apply(&bot, mode, webhook.clone()).await?;
    // The relays follow (each with its own secret); the main bot brings every agent
    // message anyway, so a relay Telegram refuses is logged, not fatal.
    super::relays::apply_mode(db, bots, &tenant.id, mode, webhook.map(|(url, _)| url)).await;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let now = now_ms();
    let cfg = transaction!(&mut conn, |tx| {
        let before = repo::telegram::get(tx, &tenant.id)
            .await?
            .ok_or_else(|| Error::not_found("telegram connection"))?;
        let was = TelegramMode::from_stored(&before.mode);
        if was != mode {
            repo::telegram::set_mode(tx, &tenant.id, mode.as_str(), now).await?;
            crate::audit::record(
                tx,
                caller,
                Entry::new(Action::TelegramModeChanged)
                    .tenant(&tenant.id)
                    .target(tenant.id.to_string())
                    .changes(serde_json::json!({
                        "mode": { "from": was.as_str(), "to": mode.as_str() },
                    })),
            )
            .await?;
        }
        repo::telegram::get(tx, &tenant.id)
            .await?
            .ok_or_else(|| Error::not_found("telegram connection"))
    })?;
    let poll = repo::telegram::poll_state(&mut conn, &tenant.id).await?;
    Ok(with_polling(
        status(bots, &cfg, public_url, &tenant.slug),
        poll.as_ref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mode_follows_the_public_url_unless_configured() {
        let mut s = Settings::default();
        assert_eq!(TelegramMode::default_for(&s), TelegramMode::Polling);
        s.server.public_url = Some("https://chat.example.com".into());
        assert_eq!(TelegramMode::default_for(&s), TelegramMode::Webhook);
        s.telegram.default_mode = TelegramDefaultMode::Polling;
        assert_eq!(TelegramMode::default_for(&s), TelegramMode::Polling);
        s.server.public_url = None;
        s.telegram.default_mode = TelegramDefaultMode::Webhook;
        assert_eq!(TelegramMode::default_for(&s), TelegramMode::Webhook);
        assert_eq!(TelegramMode::from_stored("polling"), TelegramMode::Polling);
        assert_eq!(TelegramMode::from_stored("webhook"), TelegramMode::Webhook);
    }
}
