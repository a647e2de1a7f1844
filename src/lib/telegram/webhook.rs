//! `POST /v1/telegram/webhook/{tenant_slug}`: agents' answers from the forum topics.
//!
//! The secret header is compared in constant time ([`authenticate`]); the update is
//! then handled by [`handle_update`], which the long poll (`telegram::polling`) uses
//! for every update it gets too. Updates are deduplicated by `(tenant, update_id)` in
//! the same transaction that stores the message, so a 2xx is only ever sent after
//! commit and a retried update is stored once; a polled update's transaction also
//! stores the next offset.
//!
//! `/subject New subject` (or `/subject@BotName New subject`) in a conversation's topic
//! is a command, not an answer: it sets the conversation's subject, renaming the topic
//! ([`Chat::rename`]), and never reaches the visitor. A subject that is not valid gets
//! a short notice in the topic instead.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use subtle::ConstantTimeEq;
use teloxide::types::{Message, Update, UpdateKind};

use super::FIELD_WEBHOOK_SECRET;
use crate::chat::{Chat, Rename, store_message};
use crate::crypto::MasterKey;
use crate::db::{
    Db,
    models::{MessageRow, TelegramConfigRow},
    repo,
};
use crate::domain::{Environment, TenantId, new_id, now_ms};
use crate::error::{Error, ErrorCode, Result};
use crate::outbox;
use crate::presence::Presence;
use crate::quota::{Exceeded, Quota};
use crate::transaction;

/// Outcomes of handled updates (webhook and long poll alike), for metrics.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    /// Stored (or edited) an agent message.
    pub ok: AtomicU64,
    /// Unknown tenant, missing or wrong secret.
    pub unauthorized: AtomicU64,
    /// An update id seen before.
    pub duplicate: AtomicU64,
    /// Acknowledged and ignored (service messages, other chats, the bot itself…).
    pub ignored: AtomicU64,
    /// Not a Telegram update.
    pub parse_error: AtomicU64,
    /// Over the per-tenant rate.
    pub rate_limited: AtomicU64,
    /// Past a quota of the tenant's plan (not stored; a notice went to the topic).
    pub over_quota: AtomicU64,
}

impl WebhookCounters {
    /// `(outcome, count)` pairs.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("ok", self.ok.load(Ordering::Relaxed)),
            ("unauthorized", self.unauthorized.load(Ordering::Relaxed)),
            ("duplicate", self.duplicate.load(Ordering::Relaxed)),
            ("ignored", self.ignored.load(Ordering::Relaxed)),
            ("parse_error", self.parse_error.load(Ordering::Relaxed)),
            ("rate_limited", self.rate_limited.load(Ordering::Relaxed)),
            ("over_quota", self.over_quota.load(Ordering::Relaxed)),
        ]
    }
}

/// What happened to an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Stored a new agent message.
    Stored,
    /// Applied an edit.
    Edited,
    /// A `/subject` command: set the conversation's subject (or answered with a
    /// notice why not).
    Subject,
    /// Past a quota of the tenant's plan: not stored (or not renamed); the agents got a
    /// notice in the topic.
    OverQuota,
    /// Seen before.
    Duplicate,
    /// Nothing to do.
    Ignored,
}

enum Effect {
    New((MessageRow, crate::domain::Environment)),
    Edit(MessageRow),
    /// A `/subject` command was handled.
    Subject(crate::chat::Renamed),
    /// Past a plan quota: not done, a notice queued for the topic.
    OverQuota,
    Nothing,
}

/// What handling an update takes: the webhook route and the long poll each build one
/// over the process's parts.
#[derive(Clone)]
pub struct UpdateHandler {
    db: Db,
    chat: Chat,
    counters: Arc<WebhookCounters>,
    presence: Arc<Presence>,
}

impl UpdateHandler {
    /// Handle updates over `db` with `chat` (stores, publishes, quotas), counting
    /// outcomes in `counters` and agents' activity in `presence`.
    pub fn new(
        db: Db,
        chat: Chat,
        counters: Arc<WebhookCounters>,
        presence: Arc<Presence>,
    ) -> Self {
        UpdateHandler {
            db,
            chat,
            counters,
            presence,
        }
    }

    /// The outcome counters.
    pub fn counters(&self) -> &WebhookCounters {
        &self.counters
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// The error [`handle_update`] returns when the poller no longer holds the lease on
/// the tenant's updates: nothing was written.
pub fn lease_lost() -> Error {
    Error::new(
        ErrorCode::Conflict,
        "another worker polls this bot's updates now",
    )
    .with_details(serde_json::json!({ "reason": "poll_lease_lost" }))
}

/// Whether `e` is [`lease_lost`].
pub fn is_lease_lost(e: &Error) -> bool {
    e.code == ErrorCode::Conflict
        && e.details
            .as_ref()
            .is_some_and(|d| d["reason"] == "poll_lease_lost")
}

/// An authenticated webhook call: the tenant and its Telegram connection.
pub struct Authenticated {
    tenant_id: String,
    cfg: crate::db::models::TelegramConfigRow,
}

impl Authenticated {
    /// The tenant the call is for.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }
}

/// Check the tenant and the secret header (constant time). `unauthorized` otherwise.
pub async fn authenticate(
    db: &Db,
    key: &MasterKey,
    counters: &WebhookCounters,
    slug: &str,
    secret: Option<&str>,
) -> Result<Authenticated> {
    let unauthorized = || {
        counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        Error::unauthorized("unknown tenant or wrong secret")
    };
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let tenant = repo::tenants::by_slug(&mut conn, slug)
        .await?
        .ok_or_else(unauthorized)?;
    let cfg = repo::telegram::get(&mut conn, &tenant.id)
        .await?
        .ok_or_else(unauthorized)?;
    // A secret we cannot decrypt is our fault (the master key), not the caller's.
    let expected = key
        .open(&tenant.id, FIELD_WEBHOOK_SECRET, &cfg.webhook_secret_enc)
        .map_err(|_| Error::internal("webhook secret cannot be decrypted"))?;
    let presented = secret.ok_or_else(unauthorized)?;
    if bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
        return Ok(Authenticated {
            tenant_id: tenant.id,
            cfg,
        });
    }
    // A relay bot's webhook: the same URL, the relay's own secret. Its updates are read
    // as that bot's (its update ids, its username for commands).
    for (relay, expected) in super::relays::webhook_secrets(&mut conn, key, &tenant.id).await? {
        if bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
            let cfg = TelegramConfigRow {
                bot_id: relay.bot_id,
                bot_username: relay.bot_username,
                ..cfg
            };
            return Ok(Authenticated {
                tenant_id: tenant.id,
                cfg,
            });
        }
    }
    Err(unauthorized())
}

/// A human's text message in a topic of the tenant's forum group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentText {
    /// The forum topic (`message_thread_id`).
    pub topic: i64,
    /// Telegram's message id (edits refer to it).
    pub telegram_message_id: i64,
    /// Trimmed, without NUL, not blank, at most [`crate::chat::MAX_TEXT_CHARS`] characters.
    pub text: String,
    /// The sender's full name, without NUL.
    pub author: String,
    /// The sender's Telegram user id (the actor of a `/subject` in the audit log).
    pub user_id: i64,
    /// An `edited_message` rather than a new one.
    pub edited: bool,
    /// The message of the topic it replies to, if it is an explicit reply (not the
    /// topic's opening service message, which every topic message "replies" to).
    pub reply_to: Option<ReplyTo>,
}

/// What an agent's message replies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// The Telegram message id replied to.
    pub telegram_message_id: i64,
    /// The part of it the agent quoted (Telegram's `quote`): its text and its position
    /// in UTF-16 units (approximate, says the Bot API).
    pub quote: Option<(String, usize)>,
}

/// A webhook body read against the tenant's connection, before any database work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUpdate {
    /// Telegram's `update_id` (deduplicated per tenant).
    pub update_id: i64,
    /// The agent's text, or `None` for anything we acknowledge and ignore (service
    /// messages, other chats, the bot itself, other update kinds).
    pub agent: Option<AgentText>,
}

/// Read a webhook body as the route receives it: `invalid_json` when it is not a
/// Telegram update. Pure: no database, no panics on any input (property-tested in
/// `tests/parsers.rs` against a checked-in corpus).
pub fn parse_update(body: &[u8], group_chat_id: i64, bot_id: i64) -> Result<ParsedUpdate> {
    let update: Update = serde_json::from_slice(body)
        .map_err(|_| Error::new(ErrorCode::InvalidJson, "not a Telegram update"))?;
    Ok(read_update(&update, group_chat_id, bot_id))
}

/// An update as teloxide read it (a webhook body, or one of getUpdates' answer), read
/// against the tenant's connection. Kinds teloxide cannot read are ignored.
pub fn read_update(update: &Update, group_chat_id: i64, bot_id: i64) -> ParsedUpdate {
    let agent = match &update.kind {
        UpdateKind::Message(m) => agent_text(m, group_chat_id, bot_id, false),
        UpdateKind::EditedMessage(m) => agent_text(m, group_chat_id, bot_id, true),
        _ => None,
    };
    ParsedUpdate {
        update_id: i64::from(update.id.0),
        agent,
    }
}

/// Handle one authenticated webhook call: `invalid_json` for a body that is not an
/// update; database trouble is an error too (Telegram then retries). The rest is
/// [`handle_update`].
pub async fn process(handler: &UpdateHandler, auth: Authenticated, body: &[u8]) -> Result<Handled> {
    let Authenticated { tenant_id, cfg } = auth;
    let update: Update = serde_json::from_slice(body).map_err(|_| {
        handler.counters.parse_error.fetch_add(1, Ordering::Relaxed);
        Error::new(ErrorCode::InvalidJson, "not a Telegram update")
    })?;
    handle_update(handler, &TenantId::from(tenant_id), &cfg, &update, None).await
}

/// Handle one update of the tenant's bot, from the webhook or from a long poll: dedup
/// by update id, an agent's answer stored and published to the visitor, an edit
/// applied, a `/subject` command, quotas, metrics and agents' presence. Database
/// trouble is an error (the webhook answers 5xx and Telegram retries; the poller asks
/// again from the stored offset).
///
/// `poller` is the long poll's lease holder: the transaction then also stores the
/// next offset (this update's id + 1), so the update's effects and the offset commit
/// together, and fails with [`lease_lost`] (writing nothing) when another worker
/// holds the lease now.
///
/// An agent's new message is one of the plan's messages a day, taken before the write;
/// past the limit it is not stored (the visitor never sees it) and the bot answers in
/// the topic with a notice naming the quota, the limit and the reset — at most one a
/// topic an hour. A `/subject` past the plan's renames a day gets a notice too.
pub async fn handle_update(
    handler: &UpdateHandler,
    tenant_id: &TenantId,
    cfg: &TelegramConfigRow,
    update: &Update,
    poller: Option<&str>,
) -> Result<Handled> {
    let UpdateHandler {
        db,
        chat,
        counters,
        presence,
    } = handler;
    let handled = handle(db, chat, counters, tenant_id, cfg, update, poller).await?;
    if matches!(
        handled,
        Handled::Stored | Handled::Edited | Handled::Subject
    ) {
        // An agent answered in the group.
        presence.touch(tenant_id).await;
    }
    Ok(handled)
}

async fn handle(
    db: &Db,
    chat: &Chat,
    counters: &WebhookCounters,
    tenant_id: &TenantId,
    cfg: &TelegramConfigRow,
    update: &Update,
    poller: Option<&str>,
) -> Result<Handled> {
    let tenant_id = tenant_id.clone();
    let parsed = read_update(update, cfg.group_chat_id, cfg.bot_id);
    if !cfg.enabled {
        if let Some(poller) = poller {
            // Acknowledged and ignored, as the webhook does: the poll moves past it.
            let mut pc = db.conn().await?;
            let mut conn = pc.as_conn();
            let (bot_id, next) = (cfg.bot_id, parsed.update_id + 1);
            transaction!(&mut conn, |tx| {
                let held =
                    repo::telegram::advance_offset(tx, &tenant_id, bot_id, poller, next, now_ms())
                        .await?;
                if held { Ok(()) } else { Err(lease_lost()) }
            })?;
        }
        counters.ignored.fetch_add(1, Ordering::Relaxed);
        return Ok(Handled::Ignored);
    }
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let update_id = parsed.update_id;
    // Staging may have a forum group of its own (the same bot): an agent's message there
    // answers a staging conversation, and topic ids are that group's.
    let staging_group =
        repo::environments::telegram_group(&mut conn, &tenant_id, Environment::Staging.as_str())
            .await?;
    let (parsed, group, topics_of) = match staging_group {
        Some(own) if parsed.agent.is_none() => match read_update(update, own, cfg.bot_id) {
            p if p.agent.is_some() => (p, own, Some(Environment::Staging)),
            _ => (parsed, cfg.group_chat_id, Some(Environment::Production)),
        },
        Some(_) => (parsed, cfg.group_chat_id, Some(Environment::Production)),
        // One group for both: a topic's conversation may be of either environment.
        None => (parsed, cfg.group_chat_id, None),
    };
    // A new message (not an edit, not a command) of a production conversation takes
    // one of the day's messages first; given back (dropped) unless it is stored.
    // Staging's take nothing from the plan: which environment the topic's conversation
    // is must be known first (read only when one group holds both environments').
    // Every bot of the group sees a `/subject@OtherBot`: a command for any of the
    // tenant's bots (main or relay) is a command, whichever bot brought it.
    let mut bot_names = vec![cfg.bot_username.clone()];
    if parsed.agent.as_ref().is_some_and(|a| a.text.contains('@')) {
        bot_names.extend(
            repo::telegram_relays::list(&mut conn, &tenant_id)
                .await?
                .into_iter()
                .map(|r| r.bot_username),
        );
        if let Some(main) = repo::telegram::get(&mut conn, &tenant_id).await? {
            bot_names.push(main.bot_username);
        }
    }
    let command = |text: &str| {
        bot_names
            .iter()
            .find_map(|name| subject_command_owned(text, name))
    };
    let new_message = parsed
        .agent
        .as_ref()
        .filter(|a| !a.edited && command(&a.text).is_none());
    let counts = match (new_message, topics_of) {
        (None, _) => false,
        (Some(_), Some(env)) => env.counts_against_quotas(),
        (Some(a), None) => repo::conversations::by_topic(&mut conn, &tenant_id, a.topic, None)
            .await?
            .is_none_or(|c| Environment::from_stored(&c.environment).counts_against_quotas()),
    };
    let topics_of = topics_of.map(Environment::as_str);
    let message_quota = match &parsed.agent {
        Some(_) if counts => {
            let limit = crate::plans::for_tenant(&mut conn, &tenant_id)
                .await?
                .limits
                .messages_per_day;
            Some(
                chat.quotas()
                    .take(&mut conn, &tenant_id, Quota::MessagesPerDay, limit)
                    .await?,
            )
        }
        _ => None,
    };
    let now = now_ms();
    let lane = outbox::telegram_lane(&tenant_id, group);
    let effect = transaction!(&mut conn, |tx| {
        if let Some(poller) = poller
            && !repo::telegram::advance_offset(
                tx,
                &tenant_id,
                cfg.bot_id,
                poller,
                update_id + 1,
                now,
            )
            .await?
        {
            return Err(lease_lost());
        }
        if !repo::telegram::record_update(tx, &tenant_id, cfg.bot_id, update_id, now).await? {
            return Ok(None);
        }
        let Some(agent) = &parsed.agent else {
            return Ok(Some(Effect::Nothing));
        };
        let Some(conv) =
            repo::conversations::by_topic(tx, &tenant_id, agent.topic, topics_of).await?
        else {
            return Ok(Some(Effect::Nothing));
        };
        let telegram_id = agent.telegram_message_id;
        if let Some(subject) = command(&agent.text) {
            let subject = subject.as_str();
            // New or edited: the latest subject wins; never an answer to the visitor.
            let change = Rename::Subject {
                conversation_id: &conv.id,
                subject,
            };
            return match chat.rename(tx, &tenant_id, change, now).await {
                Ok(renamed) => {
                    if renamed.changed {
                        let actor = crate::audit::Actor::Telegram {
                            user_id: agent.user_id,
                        };
                        let entry = crate::chat::subject_changed(
                            &tenant_id,
                            &crate::domain::ConversationId::from(conv.id.as_str()),
                            subject,
                            renamed.renamed,
                        );
                        crate::audit::record_as(tx, &actor, None, entry).await?;
                    }
                    Ok(Some(Effect::Subject(renamed)))
                }
                Err(e) if e.code == ErrorCode::ValidationFailed => {
                    let notice = outbox::Job::SendText {
                        text: format!(
                            "Subject not changed: {}. Write /subject followed by the new subject (at most {} characters).",
                            e.message,
                            crate::chat::MAX_SUBJECT_CHARS
                        ),
                        topic_id: Some(agent.topic),
                    };
                    let key = format!("tg_subject_notice_{}_{update_id}", cfg.bot_id);
                    outbox::enqueue(tx, &tenant_id, &notice, &key, &lane, now).await?;
                    Ok(Some(Effect::Nothing))
                }
                Err(e) => match Exceeded::from_error(&e) {
                    Some(exceeded) => {
                        quota_notice(tx, &tenant_id, &lane, agent.topic, &exceeded, now).await?;
                        Ok(Some(Effect::OverQuota))
                    }
                    None => Err(e),
                },
            };
        }
        if agent.edited {
            let row = repo::messages::edit_by_telegram_id(
                tx,
                &tenant_id,
                &conv.id,
                telegram_id,
                &agent.text,
                now,
            )
            .await?;
            return Ok(Some(row.map_or(Effect::Nothing, Effect::Edit)));
        }
        if conv.status != crate::chat::ConversationStatus::Open.as_str() {
            return Ok(Some(Effect::Nothing));
        }
        // Every bot in the group sees an agent's message, each with its own update id:
        // the copy another bot brought first is stored already.
        let client_msg_id = format!("tg_{telegram_id}");
        if repo::messages::by_client_msg_id(tx, &tenant_id, &conv.id, &client_msg_id)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        if let Some(Err(exceeded)) = &message_quota {
            quota_notice(tx, &tenant_id, &lane, agent.topic, exceeded, now).await?;
            return Ok(Some(Effect::OverQuota));
        }
        let reply_to = match &agent.reply_to {
            Some(r) => replied_messages(tx, &tenant_id, &conv.id, r).await?,
            None => None,
        };
        let row = MessageRow {
            id: new_id("msg"),
            tenant_id: tenant_id.to_string(),
            conversation_id: conv.id.clone(),
            seq: 0,
            direction: crate::chat::Direction::Outbound.as_str().into(),
            author: Some(agent.author.clone()),
            body: agent.text.clone(),
            client_msg_id: Some(client_msg_id),
            created_at: now,
            edited_at: None,
            telegram_message_id: Some(telegram_id),
            erased_at: None,
            reply_to,
        };
        // Closed between the check and the insert: acknowledged, not stored.
        Ok(Some(
            store_message(tx, row, None, now)
                .await?
                .map_or(Effect::Nothing, Effect::New),
        ))
    });
    // Two bots brought the same agent message at the same moment: the other one's
    // transaction stored it (this one rolled back, its update id unrecorded).
    let effect = match effect {
        Err(e)
            if e.unique_violation().is_some_and(|v| {
                v.is(
                    "messages_conversation_id_client_msg_id_key",
                    "messages",
                    &["conversation_id", "client_msg_id"],
                )
            }) =>
        {
            None
        }
        other => other?,
    };
    Ok(match effect {
        None => {
            counters.duplicate.fetch_add(1, Ordering::Relaxed);
            Handled::Duplicate
        }
        Some(Effect::New((row, environment))) => {
            if let Some(Ok(taken)) = message_quota {
                taken.keep();
            }
            counters.ok.fetch_add(1, Ordering::Relaxed);
            chat.message_stored(row, environment);
            Handled::Stored
        }
        Some(Effect::Edit(row)) => {
            counters.ok.fetch_add(1, Ordering::Relaxed);
            chat.publish_edit(row);
            Handled::Edited
        }
        Some(Effect::Subject(renamed)) => {
            counters.ok.fetch_add(1, Ordering::Relaxed);
            chat.rename_committed(&tenant_id, renamed);
            Handled::Subject
        }
        Some(Effect::OverQuota) => {
            counters.over_quota.fetch_add(1, Ordering::Relaxed);
            chat.wake_outbox();
            Handled::OverQuota
        }
        Some(Effect::Nothing) => {
            counters.ignored.fetch_add(1, Ordering::Relaxed);
            chat.wake_outbox();
            Handled::Ignored
        }
    })
}

/// The visitor messages of the conversation an agent's reply answers, as stored in
/// `messages.reply_to` (a JSON array of ids): those the replied-to Telegram message
/// carried — one, or a combined message's set (see `telegram::coalesce`), narrowed to
/// the line the agent quoted when the quote names one. `None` when it carried none of
/// them (a reply to the opening card, or to another agent).
async fn replied_messages(
    tx: &mut crate::db::Conn<'_>,
    tenant_id: &TenantId,
    conversation_id: &str,
    reply: &ReplyTo,
) -> Result<Option<String>> {
    let set = repo::messages::inbound_by_telegram_id(
        tx,
        tenant_id,
        conversation_id,
        reply.telegram_message_id,
    )
    .await?;
    if set.is_empty() {
        return Ok(None);
    }
    let quoted = match &reply.quote {
        Some((text, position)) if set.len() > 1 => {
            let entries: Vec<(i64, &str)> = set
                .iter()
                .map(|m| (m.created_at, m.body.as_str()))
                .collect();
            super::coalesce::quoted_entry(&entries, text, *position)
        }
        _ => None,
    };
    let ids: Vec<&str> = match quoted {
        Some(i) => vec![set[i].id.as_str()],
        None => set.iter().map(|m| m.id.as_str()).collect(),
    };
    Ok(Some(serde_json::Value::from(ids).to_string()))
}

/// Tell the agents in the topic that the plan's `exceeded` quota is used up: what was
/// not done, the limit and when it resets. At most one such notice per topic, quota and
/// hour (the outbox's idempotency key).
async fn quota_notice(
    tx: &mut crate::db::Conn<'_>,
    tenant_id: &TenantId,
    lane: &str,
    topic: i64,
    exceeded: &Exceeded,
    now: i64,
) -> Result<()> {
    let what = match exceeded.quota {
        Quota::TopicRenamesPerDay => "Subject not changed",
        _ => "Not delivered to the visitor",
    };
    let until = exceeded
        .resets_at
        .as_deref()
        .map_or(String::new(), |at| format!(" It resets at {at}."));
    let notice = outbox::Job::SendText {
        text: format!(
            "{what}: the plan's limit of {} ({}) is reached.{until}",
            exceeded.limit, exceeded.quota
        ),
        topic_id: Some(topic),
    };
    let hour = now.div_euclid(3_600_000);
    let key = format!("quota_notice_{topic}_{}_{hour}", exceeded.quota);
    outbox::enqueue(tx, tenant_id, &notice, &key, lane, now).await?;
    Ok(())
}

/// The subject of a `/subject New subject` command addressed to this bot: plain
/// `/subject`, or `/subject@<bot_username>` (any case); the rest of the text, trimmed
/// (empty when none was given). `None` for any other text, a command for another bot
/// included.
pub fn subject_command<'a>(text: &'a str, bot_username: &str) -> Option<&'a str> {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    let (command, rest) = text.split_at(end);
    let (name, bot) = match command.split_once('@') {
        Some((name, bot)) => (name, Some(bot)),
        None => (command, None),
    };
    let ours = bot.is_none_or(|b| b.eq_ignore_ascii_case(bot_username));
    (name.eq_ignore_ascii_case("/subject") && ours).then(|| rest.trim())
}

/// [`subject_command`] with the subject copied out.
fn subject_command_owned(text: &str, bot_username: &str) -> Option<String> {
    subject_command(text, bot_username).map(str::to_string)
}

/// A human's text message in a topic of the tenant's group.
fn agent_text(msg: &Message, group_chat_id: i64, bot_id: i64, edited: bool) -> Option<AgentText> {
    if msg.chat.id.0 != group_chat_id {
        return None;
    }
    let from = msg.from.as_ref()?;
    if from.is_bot || i64::try_from(from.id.0).ok() == Some(bot_id) {
        return None;
    }
    // NUL is dropped: PostgreSQL cannot store it, and refusing the update would make
    // Telegram retry it forever.
    // Cut to our limit before the blank check: a long run of invisible characters
    // before the first visible one must not leave a blank message behind.
    let text: String = msg
        .text()?
        .replace('\0', "")
        .trim()
        .chars()
        .take(crate::chat::MAX_TEXT_CHARS)
        .collect();
    let text = text.trim_end();
    if crate::domain::text::is_blank(text) {
        return None;
    }
    let topic = msg.thread_id.map(|t| i64::from(t.0.0))?;
    let reply_to = msg
        .reply_to_message()
        .map(|r| i64::from(r.id.0))
        .filter(|id| *id != topic)
        .map(|telegram_message_id| ReplyTo {
            telegram_message_id,
            quote: msg.quote().map(|q| {
                (
                    q.text.clone(),
                    usize::try_from(q.position).unwrap_or(usize::MAX),
                )
            }),
        });
    Some(AgentText {
        topic,
        telegram_message_id: i64::from(msg.id.0),
        text: text.to_string(),
        author: from.full_name().replace('\0', ""),
        user_id: i64::try_from(from.id.0).unwrap_or(i64::MAX),
        edited,
        reply_to,
    })
}

#[cfg(test)]
mod tests {
    use super::subject_command;

    #[test]
    fn subject_commands_for_this_bot_only() {
        let bot = "SupportBot";
        assert_eq!(
            subject_command("/subject Refund for order 42", bot),
            Some("Refund for order 42")
        );
        assert_eq!(
            subject_command("/subject@SupportBot  Refund ", bot),
            Some("Refund")
        );
        assert_eq!(
            subject_command("/SUBJECT@supportbot Refund", bot),
            Some("Refund")
        );
        assert_eq!(
            subject_command("/subject\nTwo\nlines", bot),
            Some("Two\nlines")
        );
        assert_eq!(subject_command("/subject", bot), Some(""));
        assert_eq!(subject_command("/subject@OtherBot Refund", bot), None);
        assert_eq!(subject_command("/subjects Refund", bot), None);
        assert_eq!(subject_command("subject Refund", bot), None);
        assert_eq!(subject_command("Please see /subject Refund", bot), None);
    }
}
