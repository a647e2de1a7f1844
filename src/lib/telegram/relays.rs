//! Relay bots: extra bots of a tenant in its forum group. Telegram lets one bot send
//! about 20 messages a minute into a group; each relay bot brings a budget of its own.
//!
//! Every conversation's topic belongs to one bot (`telegram_topic_bots`), chosen when
//! the conversation's first item is queued — the bot with the fewest open
//! conversations — and sticky afterwards: that bot creates the topic and makes every
//! call about it, in its own outbox lane (`tg:<tenant>:<chat>:r<bot id>`), so the
//! topic's order is one lane's order. Removing a relay hands its topics to the
//! remaining bots and moves its pending items to their lanes in one transaction.
//!
//! Agents' answers reach us through whichever bot's webhook Telegram uses (every bot
//! of the group sees them); each bot has its own webhook secret, and an answer seen by
//! several bots is stored once (see `webhook`). In polling mode relays are not polled:
//! the main bot, an admin of the group, receives every agent message itself.

use serde::Serialize;
use teloxide::{
    prelude::Requester,
    types::{ChatId, ChatMemberKind, UserId},
};
use utoipa::ToSchema;

use super::mode::TelegramMode;
use super::setup::{check_webhook_url, short, webhook_url};
use super::{Bots, relay_field};
use crate::audit::{Action, Entry};
use crate::db::{
    Conn, Db,
    models::{TelegramConfigRow, TelegramRelayRow},
    repo,
};
use crate::domain::{Resource, Scope, ScopeAccess, TenantId, now_ms, random_base62, rfc3339};
use crate::error::{Error, ErrorCode, Result};
use crate::outbox::{TelegramLane, telegram_lane};
use crate::tenancy::{Caller, Tenant};
use crate::transaction;

/// A relay bot as shown to people (never its token or webhook secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RelayView {
    /// The relay bot's user id (names it in `DELETE …/relays/{bot_id}`).
    pub bot_id: i64,
    /// The relay bot's username.
    pub bot_username: String,
    /// Open conversations whose topics this bot serves.
    pub open_topics: i64,
    /// Items waiting in its outbox lane (queued or in flight).
    pub pending: i64,
    /// When it was added (RFC 3339).
    pub added_at: String,
}

/// What removing a relay did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RelayRemoved {
    /// The removed relay's bot id.
    pub bot_id: i64,
    /// Its username.
    pub bot_username: String,
    /// Conversations whose topics moved to the remaining bots.
    pub topics_reassigned: usize,
    /// Pending outbox items moved to the remaining bots' lanes.
    pub items_moved: usize,
}

fn connect_first() -> Error {
    Error::new(
        ErrorCode::Conflict,
        "connect Telegram first (PUT /v1/admin/telegram): a relay joins the main bot's group",
    )
}

/// The tenant's relays with their open topics and pending items.
pub(crate) async fn views(conn: &mut Conn<'_>, tenant_id: &str) -> Result<Vec<RelayView>> {
    let relays = repo::telegram_relays::list(conn, tenant_id).await?;
    if relays.is_empty() {
        return Ok(Vec::new());
    }
    let loads = repo::telegram_relays::open_loads(conn, tenant_id).await?;
    let pending =
        repo::telegram_relays::pending_by_lane(conn, tenant_id, &format!("tg:{tenant_id}:"))
            .await?;
    Ok(relays
        .into_iter()
        .map(|r| RelayView {
            bot_id: r.bot_id,
            open_topics: loads
                .iter()
                .find(|(b, _)| *b == Some(r.bot_id))
                .map_or(0, |(_, n)| *n),
            pending: pending
                .iter()
                .filter(|(lane, _)| {
                    TelegramLane::parse(lane)
                        .is_some_and(|l| l.tenant_id == tenant_id && l.relay == Some(r.bot_id))
                })
                .map(|(_, n)| *n)
                .sum(),
            bot_username: r.bot_username,
            added_at: rfc3339(r.created_at),
        })
        .collect())
}

/// `GET /v1/admin/telegram/relays` and `chatorical telegram relays` (`telegram:read`):
/// the tenant's relay bots.
pub async fn list(db: &Db, caller: &Caller, tenant: &Tenant) -> Result<Vec<RelayView>> {
    caller.require(&Scope::new(Resource::Telegram, ScopeAccess::Read))?;
    caller.check_tenant(tenant)?;
    let mut pc = db.conn().await?;
    views(&mut pc.as_conn(), &tenant.id).await
}

/// `PUT /v1/admin/telegram/relays` and `chatorical telegram add-relay`
/// (`telegram:write`; a tenant key only for its own tenant): check the bot with getMe
/// and its rights in the tenant's group with getChatMember (it must be an admin that
/// may manage topics — it creates its topics), register its webhook with a secret of
/// its own (in `polling` mode delete it instead), store it sealed and record
/// `telegram.relay_added` (never the token or the secret). Adding a relay again
/// re-registers it with the new token.
pub async fn add(
    db: &Db,
    bots: &Bots,
    caller: &Caller,
    tenant: &Tenant,
    public_url: &str,
    bot_token: &str,
) -> Result<RelayView> {
    caller.require(&Scope::new(Resource::Telegram, ScopeAccess::Write))?;
    caller.check_tenant(tenant)?;
    let cfg = {
        let mut pc = db.conn().await?;
        repo::telegram::get(&mut pc.as_conn(), &tenant.id)
            .await?
            .ok_or_else(connect_first)?
    };
    let mode = TelegramMode::from_stored(&cfg.mode);
    let parsed = match mode {
        TelegramMode::Webhook => Some(check_webhook_url(
            &webhook_url(public_url, &tenant.slug),
            bots.allow_http_webhook(),
        )?),
        TelegramMode::Polling => None,
    };
    let bot_token = bot_token.trim();
    let (id_part, secret_part) = bot_token.split_once(':').unwrap_or(("", ""));
    if id_part.is_empty() || !id_part.bytes().all(|b| b.is_ascii_digit()) || secret_part.len() < 10
    {
        return Err(Error::validation(
            "bot_token",
            "bot_token must look like 123456:ABC-DEF… (from @BotFather)",
        ));
    }
    let bot = bots.for_token(bot_token);
    let me = bot.get_me().await.map_err(|e| {
        Error::validation(
            "bot_token",
            format!("Telegram refused the relay bot's token: {}", short(&e)),
        )
    })?;
    let bot_id = i64::try_from(me.id.0).unwrap_or(i64::MAX);
    let username = me.username.clone().unwrap_or_default();
    if bot_id == cfg.bot_id {
        return Err(Error::validation(
            "bot_token",
            "this is the tenant's main bot: a relay must be another bot",
        ));
    }
    let group = cfg.group_chat_id;
    let member = bot
        .get_chat_member(ChatId(group), me.id)
        .await
        .map_err(|e| {
            Error::validation(
                "bot_token",
                format!(
                    "cannot read @{username}'s rights in group {group}: {} — add the bot to the group as an admin",
                    short(&e)
                ),
            )
        })?;
    let may = match &member.kind {
        ChatMemberKind::Owner(_) => true,
        ChatMemberKind::Administrator(a) => a.can_manage_topics,
        _ => false,
    };
    if !may {
        return Err(Error::validation(
            "bot_token",
            format!(
                "@{username} is not an admin of group {group} with the Manage Topics right: \
                 add it to the group as an admin that may manage topics, then try again"
            ),
        ));
    }
    let secret = random_base62(48);
    super::mode::apply(&bot, mode, parsed.map(|url| (url, secret.clone())))
        .await
        .map_err(|e| match e.code {
            ErrorCode::Internal => e,
            _ => Error::validation("bot_token", e.message),
        })?;
    let now = now_ms();
    let row = TelegramRelayRow {
        tenant_id: tenant.id.to_string(),
        bot_id,
        bot_username: username.clone(),
        bot_token_enc: bots
            .key()
            .seal(&tenant.id, &relay_field(bot_id, "bot_token"), bot_token)?,
        webhook_secret_enc: bots.key().seal(
            &tenant.id,
            &relay_field(bot_id, "webhook_secret"),
            &secret,
        )?,
        created_at: now,
    };
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let tenant_id = tenant.id.clone();
    transaction!(&mut conn, |tx| {
        if repo::telegram::get(tx, &tenant_id).await?.is_none() {
            return Err(connect_first());
        }
        let new = repo::telegram_relays::upsert(tx, &row).await?;
        crate::audit::record(
            tx,
            caller,
            Entry::new(Action::TelegramRelayAdded)
                .tenant(&tenant_id)
                .target(bot_id.to_string())
                .changes(serde_json::json!({
                    "bot_id": bot_id,
                    "bot_username": username,
                    "group_chat_id": group,
                    "mode": mode.as_str(),
                    "readded": !new,
                })),
        )
        .await
    })?;
    views(&mut conn, &tenant.id)
        .await?
        .into_iter()
        .find(|v| v.bot_id == bot_id)
        .ok_or_else(|| Error::not_found("relay bot"))
}

/// `DELETE /v1/admin/telegram/relays/{bot_id}` and `chatorical telegram remove-relay`
/// (`telegram:write`): in one transaction the relay is forgotten, each conversation
/// whose topic it served goes to the remaining bot with the fewest open topics, and its
/// pending outbox items move to that bot's lane in their order (an item in flight moves
/// too, still leased: if its call went out it is marked delivered as usual, else it is
/// retried by the new bot, ahead of the topic's later items); items of no conversation
/// go to the main bot's lane. Records `telegram.relay_removed`. Then the relay's
/// webhook is deleted (best effort). The caller wakes its workers.
pub async fn remove(
    db: &Db,
    bots: &Bots,
    caller: &Caller,
    tenant: &Tenant,
    bot_id: i64,
) -> Result<RelayRemoved> {
    caller.require(&Scope::new(Resource::Telegram, ScopeAccess::Write))?;
    caller.check_tenant(tenant)?;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let now = now_ms();
    let tenant_id = tenant.id.clone();
    let (relay, removed) = transaction!(&mut conn, |tx| {
        let cfg = repo::telegram::get(tx, &tenant_id)
            .await?
            .ok_or_else(|| Error::not_found("relay bot"))?;
        let relay = repo::telegram_relays::get(tx, &tenant_id, bot_id)
            .await?
            .ok_or_else(|| Error::not_found("relay bot"))?;
        repo::telegram_relays::delete(tx, &tenant_id, bot_id).await?;
        let remaining = repo::telegram_relays::list(tx, &tenant_id).await?;
        let mut loads = Loads::read(tx, &cfg, &remaining, Some(bot_id)).await?;
        // Every lane of this relay (one per chat it ever served: normally the group).
        let lanes: Vec<TelegramLane> =
            repo::telegram_relays::pending_by_lane(tx, &tenant_id, &format!("tg:{tenant_id}:"))
                .await?
                .into_iter()
                .filter_map(|(lane, _)| TelegramLane::parse(&lane))
                .filter(|l| l.tenant_id == tenant_id.as_str() && l.relay == Some(bot_id))
                .collect();
        let conversations = repo::telegram_relays::conversations_of(tx, &tenant_id, bot_id).await?;
        let mut items_moved = 0;
        for conversation in &conversations {
            let to = loads.pick();
            repo::telegram_relays::assign(tx, &tenant_id, conversation, to.bot_id, now).await?;
            for lane in &lanes {
                let target = TelegramLane {
                    relay: to.relay,
                    ..lane.clone()
                };
                items_moved += repo::telegram_relays::move_conversation_items(
                    tx,
                    &tenant_id,
                    conversation,
                    &lane.key(),
                    &target.key(),
                    now,
                )
                .await?;
            }
        }
        for lane in &lanes {
            let main = telegram_lane(&tenant_id, lane.chat_id);
            items_moved += repo::outbox::move_lane(tx, &tenant_id, &lane.key(), &main, now).await?;
        }
        let removed = RelayRemoved {
            bot_id,
            bot_username: relay.bot_username.clone(),
            topics_reassigned: conversations.len(),
            items_moved,
        };
        crate::audit::record(
            tx,
            caller,
            Entry::new(Action::TelegramRelayRemoved)
                .tenant(&tenant_id)
                .target(bot_id.to_string())
                .changes(serde_json::json!({
                    "bot_id": bot_id,
                    "bot_username": relay.bot_username,
                    "topics_reassigned": removed.topics_reassigned,
                    "items_moved": items_moved,
                })),
        )
        .await?;
        Ok((relay, removed))
    })?;
    if let Ok(bot) = bots.for_relay(&relay)
        && let Err(e) = bot.delete_webhook().await
    {
        tracing::warn!(tenant = %tenant.id, relay = bot_id, error = %short(&e), "deleteWebhook of a removed relay failed");
    }
    Ok(removed)
}

/// A bot that can take a topic.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// The bot's user id (what an assignment stores).
    bot_id: i64,
    /// `None` for the main bot.
    relay: Option<i64>,
    /// Its open topics.
    load: i64,
}

/// The tenant's bots with their open topics; picks the least loaded.
struct Loads(Vec<Candidate>);

impl Loads {
    async fn read(
        tx: &mut Conn<'_>,
        cfg: &TelegramConfigRow,
        relays: &[TelegramRelayRow],
        leaving: Option<i64>,
    ) -> Result<Loads> {
        let counted = repo::telegram_relays::open_loads(tx, &cfg.tenant_id).await?;
        let load_of = |bot: i64| {
            counted
                .iter()
                .find(|(b, _)| *b == Some(bot))
                .map_or(0, |(_, n)| *n)
        };
        // The main bot serves whatever is not a current relay's (nor `leaving`'s, whose
        // topics are being handed out).
        let main = counted
            .iter()
            .filter(|(b, _)| {
                b.is_none_or(|b| Some(b) != leaving && relays.iter().all(|r| r.bot_id != b))
            })
            .map(|(_, n)| *n)
            .sum();
        let mut all = vec![Candidate {
            bot_id: cfg.bot_id,
            relay: None,
            load: main,
        }];
        all.extend(relays.iter().map(|r| Candidate {
            bot_id: r.bot_id,
            relay: Some(r.bot_id),
            load: load_of(r.bot_id),
        }));
        Ok(Loads(all))
    }

    /// The bot with the fewest open topics (the main bot first on a tie), counted as
    /// having one more from now on.
    fn pick(&mut self) -> Candidate {
        let best = self
            .0
            .iter_mut()
            .min_by_key(|c| c.load)
            .expect("the main bot is always a candidate");
        best.load += 1;
        *best
    }
}

/// The outbox lane for work on a conversation's topic in `group` (the conversation's
/// group: the tenant's `tenant_group`, or staging's own), inside the caller's
/// transaction: the lane of the bot its topic belongs to. A conversation of a tenant
/// with relays gets its bot here, when its first item is queued (see the module docs);
/// a tenant without relays reads one list and writes nothing.
pub async fn conversation_lane(
    tx: &mut Conn<'_>,
    cfg: &TelegramConfigRow,
    conversation_id: &str,
    group: i64,
) -> Result<String> {
    let tenant_id = cfg.tenant_id.as_str();
    let main = telegram_lane(tenant_id, group);
    // Relays are members of the tenant's group, not of staging's own.
    if group != cfg.group_chat_id {
        return Ok(main);
    }
    let relays = repo::telegram_relays::list(tx, tenant_id).await?;
    if relays.is_empty() {
        return Ok(main);
    }
    let lane_of = |bot: i64| {
        if relays.iter().any(|r| r.bot_id == bot) {
            TelegramLane {
                tenant_id: tenant_id.to_string(),
                chat_id: group,
                relay: Some(bot),
            }
            .key()
        } else {
            main.clone()
        }
    };
    if let Some(bot) = repo::telegram_relays::assigned_bot(tx, tenant_id, conversation_id).await? {
        return Ok(lane_of(bot));
    }
    let now = now_ms();
    // A topic from before the tenant had relays stays with the main bot.
    let has_topic = repo::conversations::get(tx, tenant_id, conversation_id)
        .await?
        .is_some_and(|c| c.telegram_topic_id.is_some());
    let bot = if has_topic {
        cfg.bot_id
    } else {
        Loads::read(tx, cfg, &relays, None).await?.pick().bot_id
    };
    repo::telegram_relays::assign(tx, tenant_id, conversation_id, bot, now).await?;
    Ok(lane_of(bot))
}

/// [`conversation_lane`] for a tenant id (the main bot's lane of `group` when the
/// tenant has no relay, or no connection; one query then).
pub async fn lane_for(
    tx: &mut Conn<'_>,
    tenant_id: &TenantId,
    conversation_id: &str,
    group: i64,
) -> Result<String> {
    Lanes::default()
        .lane(tx, tenant_id, conversation_id, group)
        .await
}

/// [`lane_for`] for many messages in one transaction: whether a tenant has relays is
/// read once per tenant (a batch of one tenant's messages without relays reads it once).
#[derive(Debug, Default)]
pub struct Lanes {
    /// Tenants read to have no relay.
    without_relays: Vec<TenantId>,
}

impl Lanes {
    /// The lane of `conversation_id`'s topic in `group` (see [`lane_for`]).
    pub async fn lane(
        &mut self,
        tx: &mut Conn<'_>,
        tenant_id: &TenantId,
        conversation_id: &str,
        group: i64,
    ) -> Result<String> {
        if self.without_relays.contains(tenant_id) {
            return Ok(telegram_lane(tenant_id, group));
        }
        if repo::telegram_relays::list(tx, tenant_id).await?.is_empty() {
            self.without_relays.push(tenant_id.clone());
            return Ok(telegram_lane(tenant_id, group));
        }
        match repo::telegram::get(tx, tenant_id).await? {
            Some(cfg) => conversation_lane(tx, &cfg, conversation_id, group).await,
            None => Ok(telegram_lane(tenant_id, group)),
        }
    }
}

/// `tenants validate`: each relay's token still opens and names its bot, the bot is an
/// admin of the group that may manage topics, and its webhook is registered (mode
/// `webhook`) or absent (mode `polling`).
pub async fn validate(
    db: &Db,
    bots: &Bots,
    cfg: &TelegramConfigRow,
    expected_webhook: &str,
    out: &mut Vec<super::validate::Check>,
) {
    let relays = match db.conn().await {
        Ok(mut pc) => repo::telegram_relays::list(&mut pc.as_conn(), &cfg.tenant_id)
            .await
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let polling = TelegramMode::from_stored(&cfg.mode) == TelegramMode::Polling;
    for relay in relays {
        let name = format!("relay @{}", relay.bot_username);
        let check = |what: &str, ok: bool, detail: String| super::validate::Check {
            check: format!("{name}: {what}"),
            ok,
            detail,
        };
        let Ok(bot) = bots.for_relay(&relay) else {
            out.push(check(
                "bot token",
                false,
                "the stored token cannot be decrypted for this tenant".into(),
            ));
            continue;
        };
        match bot.get_me().await {
            Ok(me) if i64::try_from(me.id.0).ok() == Some(relay.bot_id) => {
                out.push(check(
                    "bot reachable",
                    true,
                    format!("bot {}", relay.bot_id),
                ));
            }
            Ok(me) => out.push(check(
                "bot reachable",
                false,
                format!("token now belongs to another bot ({})", me.id),
            )),
            Err(e) => out.push(check("bot reachable", false, short(&e))),
        }
        let user = UserId(u64::try_from(relay.bot_id).unwrap_or(0));
        match bot.get_chat_member(ChatId(cfg.group_chat_id), user).await {
            Ok(m) => {
                let (ok, detail) = match &m.kind {
                    ChatMemberKind::Owner(_) => (true, "owner".to_string()),
                    ChatMemberKind::Administrator(a) if a.can_manage_topics => {
                        (true, "admin with Manage Topics".into())
                    }
                    ChatMemberKind::Administrator(_) => (
                        false,
                        "admin without Manage Topics: it cannot create its topics".into(),
                    ),
                    _ => (false, "the bot is not an admin of the group".into()),
                };
                out.push(check("group admin", ok, detail));
            }
            Err(e) => out.push(check("group admin", false, short(&e))),
        }
        match bot.get_webhook_info().await {
            Ok(info) => {
                let url = info.url.map(|u| u.to_string());
                let (ok, detail) = match (&url, polling) {
                    (None, true) => (
                        true,
                        "no webhook (the main bot's updates are polled)".into(),
                    ),
                    (Some(u), true) => (false, format!("a webhook is set ({u}) in polling mode")),
                    (Some(u), false) if u == expected_webhook => match info.last_error_message {
                        Some(err) => (false, format!("{u}: Telegram reports: {err}")),
                        None => (true, format!("{u} ({} pending)", info.pending_update_count)),
                    },
                    (other, false) => (
                        false,
                        format!("registered {other:?}, expected {expected_webhook}"),
                    ),
                };
                out.push(check("webhook", ok, detail));
            }
            Err(e) => out.push(check("webhook", false, short(&e))),
        }
    }
}

/// The sealed webhook secrets of the tenant's relays with their bot ids and usernames
/// (the webhook compares a presented secret with each).
pub(crate) async fn webhook_secrets(
    conn: &mut Conn<'_>,
    key: &crate::crypto::MasterKey,
    tenant_id: &str,
) -> Result<Vec<(TelegramRelayRow, String)>> {
    let relays = repo::telegram_relays::list(conn, tenant_id).await?;
    let mut out = Vec::with_capacity(relays.len());
    for relay in relays {
        let secret = key
            .open(
                tenant_id,
                &relay_field(relay.bot_id, "webhook_secret"),
                &relay.webhook_secret_enc,
            )
            .map_err(|_| Error::internal("a relay's webhook secret cannot be decrypted"))?;
        out.push((relay, secret));
    }
    Ok(out)
}

/// Tell Telegram how each of the tenant's relays delivers its updates (`webhook`: the
/// tenant's webhook `url` with the relay's own secret; `polling`: no webhook). Best
/// effort: a refusal is logged.
pub(crate) async fn apply_mode(
    db: &Db,
    bots: &Bots,
    tenant_id: &str,
    mode: TelegramMode,
    url: Option<reqwest::Url>,
) {
    let relays = match db.conn().await {
        Ok(mut pc) => match webhook_secrets(&mut pc.as_conn(), bots.key(), tenant_id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(tenant = %tenant_id, error = %e, "relay bots not switched");
                return;
            }
        },
        Err(_) => return,
    };
    for (relay, secret) in relays {
        let Ok(bot) = bots.for_relay(&relay) else {
            continue;
        };
        let webhook = url.clone().map(|u| (u, secret));
        if let Err(e) = super::mode::apply(&bot, mode, webhook).await {
            tracing::warn!(tenant = %tenant_id, relay = relay.bot_id, error = %e.message,
                "a relay bot's mode was not switched");
        }
    }
}

/// Forget every relay of the tenant and which topics they served, inside the caller's
/// transaction (the tenant connected another group: the relays are members of the old
/// one). Their pending items move to the main bot's lanes, in order. Returns how many
/// relays there were.
pub(crate) async fn forget_all(tx: &mut Conn<'_>, tenant_id: &TenantId, now: i64) -> Result<usize> {
    let relays = repo::telegram_relays::list(tx, tenant_id).await?;
    if relays.is_empty() {
        return Ok(0);
    }
    let lanes =
        repo::telegram_relays::pending_by_lane(tx, tenant_id, &format!("tg:{tenant_id}:")).await?;
    for (key, _) in lanes {
        if let Some(lane) = TelegramLane::parse(&key)
            .filter(|l| l.tenant_id == tenant_id.as_str() && l.relay.is_some())
        {
            let main = telegram_lane(tenant_id, lane.chat_id);
            repo::outbox::move_lane(tx, tenant_id, &key, &main, now).await?;
        }
    }
    repo::telegram_relays::forget_assignments(tx, tenant_id).await?;
    for relay in &relays {
        repo::telegram_relays::delete(tx, tenant_id, relay.bot_id).await?;
    }
    Ok(relays.len())
}
