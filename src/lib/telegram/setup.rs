//! Connecting a tenant's bot and forum group: validate with the Bot API, register
//! the webhook with a fresh secret (or, in polling mode, delete any webhook), store
//! the secrets sealed.

use serde::Serialize;
use teloxide::{
    prelude::Requester,
    types::{AllowedUpdate, ChatFullInfoKind, ChatFullInfoPublicKind, ChatId, ChatMemberKind},
};
use utoipa::ToSchema;

use super::mode::TelegramMode;
use super::{Bots, FIELD_BOT_TOKEN, FIELD_WEBHOOK_SECRET, redact_token};
use crate::audit::{Action, Entry};
use crate::db::{Db, models::TelegramConfigRow, repo};
use crate::domain::{Resource, Scope, ScopeAccess, now_ms, random_base62};
use crate::error::{Error, ErrorCode, Result};
use crate::tenancy::{Caller, Tenant};
use crate::transaction;

/// A tenant's Telegram connection as shown to people (secrets redacted).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TelegramStatus {
    /// The bot's user id.
    pub bot_id: i64,
    /// The bot's username.
    pub bot_username: String,
    /// `123456:***`.
    pub bot_token: String,
    /// The forum supergroup.
    pub group_chat_id: i64,
    /// Topic used when the bot may not create topics.
    pub default_topic_id: Option<i64>,
    /// Whether the bot may create topics.
    pub can_manage_topics: bool,
    /// Delivery and webhook on.
    pub enabled: bool,
    /// Where Telegram sends updates in `webhook` mode.
    pub webhook_url: String,
    /// How updates arrive: `webhook` (Telegram calls `webhook_url`) or `polling` (a
    /// worker long-polls getUpdates; no public URL needed).
    pub mode: TelegramMode,
    /// Where long polling stands (mode `polling` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polling: Option<PollingStatus>,
    /// Whether retention also deletes a purged conversation's forum topic (with its
    /// messages) in the group; needs the bot's "Delete messages" admin right.
    pub delete_topics_on_retention: bool,
    /// Relay bots in the same group, with the open topics each serves (`telegram
    /// add-relay`, `PUT /v1/admin/telegram/relays`); absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<super::relays::RelayView>,
}

/// Where long polling of a tenant's bot stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PollingStatus {
    /// The next update id the poller asks getUpdates for (the last handled one + 1);
    /// `null` before the first update.
    pub offset: Option<i64>,
    /// When getUpdates last answered (RFC 3339), `null` before the first poll.
    pub last_poll_at: Option<String>,
    /// What the last failed getUpdates said, until one answers again — e.g. `409
    /// Conflict: …` when a webhook is set or another program polls the same bot.
    pub last_error: Option<String>,
    /// When that was (RFC 3339).
    pub last_error_at: Option<String>,
    /// Whether a worker holds the lease on polling the bot right now.
    pub polled: bool,
}

/// The updates the webhook and the poller ask Telegram for.
pub const ALLOWED_UPDATES: [AllowedUpdate; 2] =
    [AllowedUpdate::Message, AllowedUpdate::EditedMessage];

/// The webhook URL of a tenant.
pub fn webhook_url(public_url: &str, slug: &str) -> String {
    format!(
        "{}/v1/telegram/webhook/{slug}",
        public_url.trim_end_matches('/')
    )
}

/// Status of a stored connection.
pub fn status(
    bots: &Bots,
    cfg: &TelegramConfigRow,
    public_url: &str,
    slug: &str,
) -> TelegramStatus {
    let token = bots
        .key()
        .open(&cfg.tenant_id, FIELD_BOT_TOKEN, &cfg.bot_token_enc)
        .map(|t| redact_token(&t))
        .unwrap_or_else(|_| "(cannot decrypt)".into());
    TelegramStatus {
        bot_id: cfg.bot_id,
        bot_username: cfg.bot_username.clone(),
        bot_token: token,
        group_chat_id: cfg.group_chat_id,
        default_topic_id: cfg.default_topic_id,
        can_manage_topics: cfg.can_manage_topics,
        enabled: cfg.enabled,
        webhook_url: webhook_url(public_url, slug),
        mode: TelegramMode::from_stored(&cfg.mode),
        polling: None,
        delete_topics_on_retention: cfg.delete_topics_on_retention,
        relays: Vec::new(),
    }
}

/// `status` with where polling stands (`poll`: the tenant's `telegram_polls` row, if
/// a worker ever polled its bot) when the mode is `polling`.
pub fn with_polling(
    mut status: TelegramStatus,
    poll: Option<&crate::db::models::TelegramPollRow>,
) -> TelegramStatus {
    if status.mode == TelegramMode::Polling {
        let now = now_ms();
        status.polling = Some(PollingStatus {
            offset: poll.and_then(|p| p.poll_offset),
            last_poll_at: poll
                .and_then(|p| p.last_poll_at)
                .map(crate::domain::rfc3339),
            last_error: poll.and_then(|p| p.last_error.clone()),
            last_error_at: poll
                .and_then(|p| p.last_error_at)
                .map(crate::domain::rfc3339),
            polled: poll.is_some_and(|p| {
                p.leased_by.is_some() && p.lease_until.is_some_and(|until| until >= now)
            }),
        });
    }
    status
}

/// The ports Telegram's cloud Bot API delivers webhooks to.
pub const WEBHOOK_PORTS: [u16; 4] = [443, 80, 88, 8443];

/// `url` parsed, if Telegram will take it as a webhook: `https://` on one of
/// [`WEBHOOK_PORTS`]; with `allow_http` (a local Bot API server) also `http://` and any
/// port. Otherwise 409 `webhook_url_rejected`, saying which setting to change.
pub fn check_webhook_url(url: &str, allow_http: bool) -> Result<reqwest::Url> {
    let rejected = |why: &str| {
        Error::new(
            ErrorCode::WebhookUrlRejected,
            format!(
                "Telegram would refuse the webhook URL {url}: {why}. Set server.public_url to \
                 an https:// URL on port 443, 80, 88 or 8443 (telegram.allow_http_webhook \
                 is for a local Bot API server)"
            ),
        )
        .with_details(serde_json::json!({ "webhook_url": url, "setting": "server.public_url" }))
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| rejected("it is not a valid URL"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ => return Err(rejected("it is not https://")),
    }
    let port = parsed.port_or_known_default().unwrap_or(0);
    if !allow_http && !WEBHOOK_PORTS.contains(&port) {
        return Err(rejected(&format!("port {port} is not 443, 80, 88 or 8443")));
    }
    Ok(parsed)
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::validation(field, message)
}

/// What connecting Telegram takes: the bot and the forum group.
#[derive(Debug, Clone, Copy)]
pub struct Connect<'a> {
    /// The bot token from @BotFather (never logged or returned).
    pub bot_token: &'a str,
    /// The forum supergroup's chat id.
    pub group_chat_id: i64,
    /// The topic used when the bot may not create topics.
    pub default_topic_id: Option<i64>,
    /// How updates arrive; `None` keeps the connection's mode, or for a new one
    /// takes `default_mode`.
    pub mode: Option<TelegramMode>,
    /// The mode of a new connection that names none ([`TelegramMode::default_for`]).
    pub default_mode: TelegramMode,
}

/// `PUT /v1/admin/telegram` and `chatorical telegram setup` (`telegram:write`; a
/// tenant key only for its own tenant): validate the bot and group with Telegram,
/// register the webhook (mode `webhook`) or delete it (mode `polling`: a worker
/// long-polls getUpdates, which Telegram refuses while a webhook is set), store the
/// connection and record `telegram.connected` (never the token or the webhook secret;
/// with the mode), and `telegram.mode_changed` when a reconnect changes the mode. A
/// tenant whose plan does not include Telegram is refused first (403 `plan_restricted`).
pub async fn connect(
    db: &Db,
    bots: &Bots,
    caller: &Caller,
    tenant: &Tenant,
    public_url: &str,
    req: Connect<'_>,
) -> Result<TelegramStatus> {
    caller.require(&Scope::new(Resource::Telegram, ScopeAccess::Write))?;
    caller.check_tenant(tenant)?;
    let Connect {
        bot_token,
        group_chat_id,
        default_topic_id,
        mode,
        default_mode,
    } = req;
    let (plan, current_mode) = {
        let mut pc = db.conn().await?;
        let mut conn = pc.as_conn();
        let plan = crate::plans::for_tenant(&mut conn, &tenant.id).await?;
        let current = repo::telegram::get(&mut conn, &tenant.id).await?;
        (plan, current.map(|c| TelegramMode::from_stored(&c.mode)))
    };
    if !plan.channels.telegram {
        return Err(crate::plans::restricted("telegram"));
    }
    let mode = mode.or(current_mode).unwrap_or(default_mode);
    let bot_token = bot_token.trim();
    // Before anything reaches Telegram: nothing half-done when it would refuse the URL.
    let parsed = match mode {
        TelegramMode::Webhook => Some(check_webhook_url(
            &webhook_url(public_url, &tenant.slug),
            bots.allow_http_webhook(),
        )?),
        TelegramMode::Polling => None,
    };
    let (id_part, secret_part) = bot_token.split_once(':').unwrap_or(("", ""));
    if id_part.is_empty() || !id_part.bytes().all(|b| b.is_ascii_digit()) || secret_part.len() < 10
    {
        return Err(invalid(
            "bot_token",
            "bot_token must look like 123456:ABC-DEF… (from @BotFather)",
        ));
    }
    let bot = bots.for_token(bot_token);
    let me = bot.get_me().await.map_err(|e| {
        invalid(
            "bot_token",
            format!("Telegram refused the bot token: {}", short(&e)),
        )
    })?;
    let chat = bot.get_chat(ChatId(group_chat_id)).await.map_err(|e| {
        invalid(
            "group_chat_id",
            format!("the bot cannot see group {group_chat_id}: {}", short(&e)),
        )
    })?;
    let is_forum = match &chat.kind {
        ChatFullInfoKind::Public(p) => {
            matches!(&p.kind, ChatFullInfoPublicKind::Supergroup(s) if s.is_forum)
        }
        _ => false,
    };
    if !is_forum {
        return Err(invalid(
            "group_chat_id",
            "the group is not a forum: enable Topics in the group settings",
        ));
    }
    let member = bot
        .get_chat_member(ChatId(group_chat_id), me.id)
        .await
        .map_err(|e| {
            invalid(
                "group_chat_id",
                format!("cannot read the bot's rights in the group: {}", short(&e)),
            )
        })?;
    let can_manage_topics = match &member.kind {
        ChatMemberKind::Owner(_) => true,
        ChatMemberKind::Administrator(a) => a.can_manage_topics,
        _ => false,
    };
    if !member.kind.is_present() {
        return Err(invalid(
            "group_chat_id",
            "the bot is not a member of the group",
        ));
    }
    if !can_manage_topics && default_topic_id.is_none() {
        return Err(invalid(
            "default_topic_id",
            "the bot may not create topics: make it an admin with Manage Topics, or give a default_topic_id",
        ));
    }
    // Kept in polling mode too: switching to webhook later registers it.
    let secret = random_base62(48);
    super::mode::apply(&bot, mode, parsed.map(|url| (url, secret.clone())))
        .await
        .map_err(|e| match e.code {
            ErrorCode::Internal => e,
            _ => invalid("bot_token", e.message),
        })?;
    let now = now_ms();
    let mut row = TelegramConfigRow {
        tenant_id: tenant.id.to_string(),
        bot_token_enc: bots.key().seal(&tenant.id, FIELD_BOT_TOKEN, bot_token)?,
        webhook_secret_enc: bots.key().seal(&tenant.id, FIELD_WEBHOOK_SECRET, &secret)?,
        bot_id: i64::try_from(me.id.0).unwrap_or(i64::MAX),
        bot_username: me.username.clone().unwrap_or_default(),
        group_chat_id,
        default_topic_id,
        can_manage_topics,
        enabled: true,
        created_at: now,
        updated_at: now,
        mode: mode.as_str().to_string(),
        delete_topics_on_retention: false,
    };
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let previous = repo::telegram::get(&mut conn, &tenant.id).await?;
    // A reconnection keeps the tenant's choice (the upsert leaves the column alone).
    row.delete_topics_on_retention = previous
        .as_ref()
        .is_some_and(|p| p.delete_topics_on_retention);
    let tenant_id = tenant.id.clone();
    transaction!(&mut conn, |tx| {
        // A reconnect that switches the mode says so, as `telegram mode` does.
        let was = previous
            .as_ref()
            .map(|p| TelegramMode::from_stored(&p.mode));
        if let Some(was) = was.filter(|was| *was != mode) {
            crate::audit::record(
                tx,
                caller,
                Entry::new(Action::TelegramModeChanged)
                    .tenant(&tenant_id)
                    .target(tenant_id.to_string())
                    .changes(serde_json::json!({
                        "mode": { "from": was.as_str(), "to": mode.as_str() },
                    })),
            )
            .await?;
        }

        // Thread ids are per group: after a group change the old topics mean nothing.
        let group_changed = previous
            .as_ref()
            .is_some_and(|p| p.group_chat_id != row.group_chat_id);
        let mut relays_forgotten = 0;
        if group_changed {
            repo::conversations::clear_all_topics(tx, &tenant_id).await?;
            // Relay bots are members of the old group: forgotten with it.
            relays_forgotten = super::relays::forget_all(tx, &tenant_id, now).await?;
        }
        repo::telegram::upsert(tx, &row).await?;
        // Every connect registers a new webhook secret, so it always changes something.
        // Never the token or the webhook secret.
        crate::audit::record(
            tx,
            caller,
            Entry::new(Action::TelegramConnected)
                .tenant(&tenant_id)
                .target(tenant_id.to_string())
                .changes(serde_json::json!({
                    "bot_id": row.bot_id,
                    "bot_username": row.bot_username,
                    "group_chat_id": row.group_chat_id,
                    "default_topic_id": row.default_topic_id,
                    "can_manage_topics": row.can_manage_topics,
                    "mode": row.mode,
                    "reconnected": previous.is_some(),
                    "group_changed": group_changed,
                    "relays_forgotten": relays_forgotten,
                })),
        )
        .await
    })?;
    let poll = repo::telegram::poll_state(&mut conn, &tenant.id).await?;
    Ok(with_polling(
        status(bots, &row, public_url, &tenant.slug),
        poll.as_ref(),
    ))
}

/// Follow a group that Telegram migrated to a supergroup (a Bot API call into `from`
/// answered `migrate_to_chat_id` = `to`): in one transaction the tenant's connection
/// moves to `to`, its conversations forget their topics and the default topic (thread
/// ids belong to the old chat; topics are created anew), and its pending outbox items
/// move to the new chat's lane in their order; recorded as `telegram.connected` by
/// `system`. Returns `false` (changing nothing)
/// when the connection no longer names `from` — someone followed it already, or
/// connected another group.
pub async fn follow_migration(
    db: &Db,
    tenant_id: &crate::domain::TenantId,
    from: i64,
    to: i64,
) -> Result<bool> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let now = now_ms();
    let old_lane = crate::outbox::telegram_lane(tenant_id, from);
    let new_lane = crate::outbox::telegram_lane(tenant_id, to);
    transaction!(&mut conn, |tx| {
        if !repo::telegram::move_group(tx, tenant_id, from, to, now).await? {
            return Ok(false);
        }
        repo::conversations::clear_all_topics(tx, tenant_id).await?;
        repo::outbox::move_lane(tx, tenant_id, &old_lane, &new_lane, now).await?;
        // Telegram moved the group; the service followed it.
        crate::audit::record_as(
            tx,
            &crate::audit::Actor::System,
            None,
            Entry::new(Action::TelegramConnected)
                .tenant(tenant_id)
                .target(tenant_id.to_string())
                .changes(serde_json::json!({
                    "group_chat_id": { "from": from, "to": to },
                    "migrated": true,
                })),
        )
        .await?;
        Ok(true)
    })
}

/// `DELETE /v1/admin/telegram` and `chatorical telegram disconnect` (`telegram:write`;
/// a tenant key only for its own tenant): remove the connection and the webhook (the
/// webhook removal is best effort), recording `telegram.disconnected`.
pub async fn disconnect(db: &Db, bots: &Bots, caller: &Caller, tenant: &Tenant) -> Result<()> {
    caller.require(&Scope::new(Resource::Telegram, ScopeAccess::Write))?;
    caller.check_tenant(tenant)?;
    let cfg = {
        let mut pc = db.conn().await?;
        repo::telegram::get(&mut pc.as_conn(), &tenant.id)
            .await?
            .ok_or_else(|| Error::not_found("telegram connection"))?
    };
    if let Ok(bot) = bots.for_tenant(&cfg)
        && let Err(e) = bot.delete_webhook().await
    {
        tracing::warn!(tenant = %tenant.id, error = %short(&e), "deleteWebhook failed");
    }
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    transaction!(&mut conn, |tx| {
        // Disconnected meanwhile (a concurrent call): nothing changes, nothing recorded.
        if !repo::telegram::delete(tx, &tenant.id).await? {
            return Err(Error::not_found("telegram connection"));
        }
        crate::audit::record(
            tx,
            caller,
            Entry::new(Action::TelegramDisconnected)
                .tenant(&tenant.id)
                .target(tenant.id.to_string())
                .changes(serde_json::json!({
                    "bot_username": cfg.bot_username,
                    "group_chat_id": cfg.group_chat_id,
                })),
        )
        .await
    })
}

/// An error's text without anything secret (teloxide errors never carry the token,
/// but network errors can carry the request URL, which does).
pub fn short(e: &teloxide::RequestError) -> String {
    match e {
        teloxide::RequestError::Network(_) => "network error".into(),
        other => other.to_string(),
    }
}

/// The tenant's Telegram connection, secrets redacted (`telegram:read`); `not_found`
/// when it has none. `GET /v1/admin/telegram` and `chatorical telegram status`.
pub async fn current_status(
    db: &Db,
    bots: &Bots,
    caller: &crate::tenancy::Caller,
    tenant: &Tenant,
    public_url: &str,
) -> Result<TelegramStatus> {
    caller.require(&crate::domain::Scope::new(
        crate::domain::Resource::Telegram,
        crate::domain::ScopeAccess::Read,
    ))?;
    caller.check_tenant(tenant)?;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let cfg = repo::telegram::get(&mut conn, &tenant.id)
        .await?
        .ok_or_else(|| Error::not_found("telegram connection"))?;
    let poll = repo::telegram::poll_state(&mut conn, &tenant.id).await?;
    let mut status = with_polling(status(bots, &cfg, public_url, &tenant.slug), poll.as_ref());
    status.relays = super::relays::views(&mut conn, &tenant.id).await?;
    Ok(status)
}

/// Pause (`false`: items wait in the outbox, webhook updates are acknowledged and
/// ignored) or resume (`true`: waiting items are due at once) the tenant's Telegram
/// (`telegram:write`); `not_found` when it has no connection. The caller wakes its
/// workers after a resume. `PATCH /v1/admin/telegram` and `chatorical telegram
/// enable|disable`. Records `telegram.toggled` only when `enabled` changed.
pub async fn set_enabled(
    db: &Db,
    bots: &Bots,
    caller: &crate::tenancy::Caller,
    tenant: &Tenant,
    public_url: &str,
    enabled: bool,
) -> Result<TelegramStatus> {
    caller.require(&crate::domain::Scope::new(
        crate::domain::Resource::Telegram,
        crate::domain::ScopeAccess::Write,
    ))?;
    caller.check_tenant(tenant)?;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let now = crate::domain::now_ms();
    let tenant_id = tenant.id.as_str();
    let cfg = crate::transaction!(&mut conn, |tx| {
        let was = repo::telegram::get(tx, tenant_id)
            .await?
            .ok_or_else(|| Error::not_found("telegram connection"))?
            .enabled;
        if !repo::telegram::set_enabled(tx, tenant_id, enabled, now).await? {
            return Err(Error::not_found("telegram connection"));
        }
        if enabled {
            repo::outbox::make_due(tx, tenant_id, now).await?;
        }
        // Pausing a paused connection (or resuming a running one) records nothing.
        if was != enabled {
            crate::audit::record(
                tx,
                caller,
                Entry::new(Action::TelegramToggled)
                    .tenant(&tenant.id)
                    .target(tenant_id.to_string())
                    .changes(serde_json::json!({ "enabled": enabled })),
            )
            .await?;
        }
        repo::telegram::get(tx, tenant_id)
            .await?
            .ok_or_else(|| Error::not_found("telegram connection"))
    })?;
    let poll = repo::telegram::poll_state(&mut conn, tenant_id).await?;
    Ok(with_polling(
        status(bots, &cfg, public_url, &tenant.slug),
        poll.as_ref(),
    ))
}

/// Opt in to (`true`) or out of retention deleting a purged conversation's forum
/// topic (`telegram:write`; a tenant key only for its own tenant); `not_found` when the
/// tenant has no connection. Recorded as `settings.updated`
/// (`telegram.delete_topics_on_retention`) when it changed; setting the value it has
/// writes nothing. `PATCH /v1/admin/telegram` and `chatorical telegram set`.
pub async fn set_delete_topics_on_retention(
    db: &Db,
    bots: &Bots,
    caller: &Caller,
    tenant: &Tenant,
    public_url: &str,
    on: bool,
) -> Result<TelegramStatus> {
    caller.require(&Scope::new(Resource::Telegram, ScopeAccess::Write))?;
    caller.check_tenant(tenant)?;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let now = now_ms();
    let tenant_id = &tenant.id;
    let cfg = transaction!(&mut conn, |tx| {
        let before = repo::telegram::get(tx, tenant_id)
            .await?
            .ok_or_else(|| Error::not_found("telegram connection"))?;
        if before.delete_topics_on_retention == on {
            return Ok(before);
        }
        repo::telegram::set_delete_topics_on_retention(tx, tenant_id, on, now).await?;
        crate::audit::record(
            tx,
            caller,
            Entry::new(Action::SettingsUpdated)
                .tenant(tenant_id)
                .target(tenant_id.to_string())
                .changes(serde_json::json!({
                    "telegram.delete_topics_on_retention": { "from": !on, "to": on }
                })),
        )
        .await?;
        repo::telegram::get(tx, tenant_id)
            .await?
            .ok_or_else(|| Error::not_found("telegram connection"))
    })?;
    Ok(status(bots, &cfg, public_url, &tenant.slug))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_telegram_would_refuse_are_refused_before_calling_it() {
        for ok in [
            "https://chat.example.com/v1/telegram/webhook/acme",
            "https://chat.example.com:8443/hook",
            "https://chat.example.com:88/hook",
        ] {
            assert!(check_webhook_url(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://chat.example.com/hook",
            "http://127.0.0.1:8080/hook",
            "https://chat.example.com:8080/hook",
            "ftp://chat.example.com/hook",
            "not a url",
        ] {
            let e = check_webhook_url(bad, false).expect_err(bad);
            assert_eq!(e.code, ErrorCode::WebhookUrlRejected, "{bad}");
            assert!(e.message.contains("server.public_url"), "{}", e.message);
        }
        // A local Bot API server takes plain http on any port; still not ftp.
        assert!(check_webhook_url("http://127.0.0.1:8080/hook", true).is_ok());
        assert!(check_webhook_url("https://127.0.0.1:9999/hook", true).is_ok());
        assert!(check_webhook_url("ftp://chat.example.com/hook", true).is_err());
    }
}
