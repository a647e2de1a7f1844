//! Delivering outbox items to Telegram: a topic per conversation (created on the
//! first delivery, re-created when Telegram says it is gone), visitor messages into
//! it, topics renamed and closed with their conversations, and deleted after them
//! when retention purged them (`Job::DeleteTopic`, for tenants that opted in).

use std::{sync::Arc, time::Duration};

use teloxide::{
    Bot, RequestError,
    payloads::{EditForumTopicSetters, SendMessageSetters},
    prelude::Requester,
    types::{ChatId, MessageId, ThreadId},
};

use super::{
    Bots, classify, coalesce, is_no_topic_rights, is_thread_gone, split, topic::topic_name,
};
use crate::config::WorkerSettings;
use crate::db::{
    Db,
    models::{ConversationRow, MessageRow, OutboxRow, TelegramConfigRow, TelegramRelayRow},
    repo,
};
use crate::domain::text::escape_controls;
use crate::domain::{Environment, now_ms};
use crate::outbox::{
    self, Carried, Job, Outcome,
    budget::{Budgets, Rate, message_rates},
    job::MessageJob,
    worker::Deliver,
};
use crate::usage::{Metric, Usage};

/// How long a tenant's items wait before looking again while its plan does not
/// include Telegram.
const PLAN_HOLD: Duration = Duration::from_secs(5);

/// What the delivery of a visitor's message reads with the tenant's connection: the
/// message, its conversation and whether an earlier attempt recorded a set of
/// followers for the item (`None`: the message or its conversation no longer exists).
type MessageRead = Option<(MessageRow, ConversationRow, bool)>;

/// Delivers outbox items with each tenant's bot.
pub struct TelegramDelivery {
    db: Db,
    bots: Arc<Bots>,
    settings: WorkerSettings,
    usage: Option<Usage>,
    budgets: Arc<Budgets>,
}

/// The tenant's bot, with the budgets every call into its group is charged to right
/// before it goes out (waiting for room): a message, a topic created, closed or
/// reopened.
struct GroupBot<'a> {
    bot: Bot,
    budgets: &'a Budgets,
    rates: Vec<(String, Rate)>,
}

impl std::ops::Deref for GroupBot<'_> {
    type Target = Bot;
    fn deref(&self) -> &Bot {
        &self.bot
    }
}

impl GroupBot<'_> {
    fn wants(&self) -> Vec<(&str, Rate)> {
        self.rates.iter().map(|(k, r)| (k.as_str(), *r)).collect()
    }

    async fn pace(&self) {
        self.budgets.take(&self.wants()).await;
    }

    /// Calls the group budget has room for right now (see [`Budgets::room`]).
    fn room(&self) -> usize {
        self.budgets.room(&self.wants())
    }
}

/// A lane whose group budget has room for this many calls or more right now is not
/// counted (it has no backlog whatever it holds).
const ROOM_WITHOUT_BACKLOG: usize = 1000;

/// A failed step: either a Bot API error or an outcome decided already.
enum Step {
    Api(RequestError),
    Done(Outcome),
}

impl From<crate::error::Error> for Step {
    fn from(e: crate::error::Error) -> Self {
        // Our database failed mid-delivery: try again later.
        Step::Done(Outcome::Retry {
            after: Duration::from_secs(2),
            error: e.to_string(),
            counts: true,
        })
    }
}

impl TelegramDelivery {
    /// Delivery over `db` with `bots`.
    pub fn new(db: Db, bots: Arc<Bots>, settings: WorkerSettings) -> Self {
        TelegramDelivery {
            db,
            bots,
            settings,
            usage: None,
            budgets: Arc::new(Budgets::new()),
        }
    }

    /// Charge calls to `budgets` (shared with whatever else in this process calls the
    /// Bot API: typing actions, other workers) instead of budgets of its own.
    pub fn with_budgets(mut self, budgets: Arc<Budgets>) -> Self {
        self.budgets = budgets;
        self
    }

    /// Count created topics in `usage`.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    fn outcome_of(&self, err: &RequestError, attempts: i32) -> Outcome {
        let backoff = outbox::backoff(
            attempts,
            self.settings.backoff_base_ms,
            self.settings.backoff_max_secs,
        );
        classify(
            err,
            Duration::from_secs(self.settings.max_retry_after_secs),
            backoff,
        )
    }

    /// One attempt; a group that Telegram says became a supergroup is followed once
    /// (the connection, or the environment's group, moves to the new chat id) and the
    /// item sent there.
    async fn attempt(&self, item: &OutboxRow) -> Outcome {
        // An unknown kind or a payload that does not fit it will never deliver.
        let job = match Job::parse(&item.kind, &item.payload) {
            Ok(job) => job,
            Err(e) => return Outcome::Dead { error: e.message },
        };
        let mut migrated = false;
        loop {
            let (cfg, read) = match self.config(item, &job).await {
                Ok(target) => target,
                Err(Step::Done(o)) => return o,
                Err(Step::Api(e)) => return self.outcome_of(&e, item.attempts),
            };
            let (cfg, own_group) = match self.target(item, cfg).await {
                Ok(target) => target,
                Err(Step::Done(o)) => return o,
                Err(Step::Api(e)) => return self.outcome_of(&e, item.attempts),
            };
            let relay = match self.relay_of(item).await {
                Ok(relay) => relay,
                Err(Step::Done(o)) => return o,
                Err(Step::Api(e)) => return self.outcome_of(&e, item.attempts),
            };
            match self.run(item, &cfg, &job, relay.as_ref(), read).await {
                Ok(carried) => return Outcome::Delivered(carried),
                Err(Step::Done(o)) => return o,
                Err(Step::Api(RequestError::MigrateToChatId(to))) if !migrated => {
                    migrated = true;
                    tracing::warn!(tenant = %cfg.tenant_id, from = cfg.group_chat_id, to = to.0,
                        "the Telegram group became a supergroup; following it");
                    let tenant_id = cfg.tenant_id.as_str().into();
                    let followed = match own_group {
                        None => {
                            super::setup::follow_migration(
                                &self.db,
                                &tenant_id,
                                cfg.group_chat_id,
                                to.0,
                            )
                            .await
                        }
                        Some(env) => {
                            crate::environments::follow_migration(
                                &self.db,
                                &tenant_id,
                                env,
                                cfg.group_chat_id,
                                to.0,
                            )
                            .await
                        }
                    };
                    if let Err(e) = followed {
                        // Our database failed: try again later (Telegram will say it again).
                        return Outcome::Retry {
                            after: Duration::from_secs(2),
                            error: e.to_string(),
                            counts: true,
                        };
                    }
                }
                Err(Step::Api(e)) => return self.outcome_of(&e, item.attempts),
            }
        }
    }

    /// The tenant's Telegram connection, if it is on; for a visitor's message, read
    /// in the same statement, what its delivery needs (see [`MessageRead`]; `None`
    /// for other jobs).
    async fn config(
        &self,
        item: &OutboxRow,
        job: &Job,
    ) -> Result<(TelegramConfigRow, MessageRead), Step> {
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        let read = match job {
            Job::SendMessage(p) => {
                crate::db::sqlite_inline_reads(repo::telegram::get_for_message(
                    &mut conn,
                    &item.tenant_id,
                    &p.message_id,
                    &p.conversation_id,
                    &item.id,
                ))
                .await?
            }
            _ => crate::db::sqlite_inline_reads(repo::telegram::get_with_plan_channel(
                &mut conn,
                &item.tenant_id,
            ))
            .await?
            .map(|(cfg, channel)| (cfg, channel, None)),
        };
        let Some((cfg, plan_has_telegram, read)) = read else {
            return Err(Step::Done(Outcome::Dead {
                error: "Telegram is not connected for this tenant".into(),
            }));
        };
        if !cfg.enabled {
            return Err(Step::Done(Outcome::Retry {
                after: Duration::from_secs(60),
                error: "Telegram is paused".into(),
                counts: false,
            }));
        }
        // A plan without Telegram holds the tenant's items (nothing is lost); they go
        // out within seconds of a plan that includes it.
        if !plan_has_telegram {
            return Err(Step::Done(Outcome::Retry {
                after: PLAN_HOLD,
                error: "the tenant's plan does not include Telegram".into(),
                counts: false,
            }));
        }
        Ok((cfg, read))
    }

    /// Where the item goes: its lane's group — the tenant's, or an environment's group
    /// of its own (then `cfg` names that chat, without the tenant group's default
    /// topic, and the environment is returned). A lane of a group that is neither (one
    /// replaced since the item was queued) goes to the tenant's group, as before
    /// environments existed. Items of the tenant's group read nothing more.
    async fn target(
        &self,
        item: &OutboxRow,
        cfg: TelegramConfigRow,
    ) -> Result<(TelegramConfigRow, Option<Environment>), Step> {
        let Some(lane) = outbox::TelegramLane::parse(&item.lane) else {
            return Ok((cfg, None));
        };
        if lane.chat_id == cfg.group_chat_id {
            return Ok((cfg, None));
        }
        let mut pc = self.db.conn().await?;
        let own = crate::db::sqlite_inline_reads(repo::environments::telegram_group(
            &mut pc.as_conn(),
            &cfg.tenant_id,
            Environment::Staging.as_str(),
        ))
        .await?;
        if own != Some(lane.chat_id) {
            return Ok((cfg, None));
        }
        let routed = TelegramConfigRow {
            group_chat_id: lane.chat_id,
            default_topic_id: None,
            ..cfg
        };
        Ok((routed, Some(Environment::Staging)))
    }

    /// The relay bot whose lane the item is in (`None`: the main bot's lane). An item
    /// claimed from the lane of a relay removed since then was moved to another bot's
    /// lane by the removal: it waits briefly and goes with that bot.
    async fn relay_of(&self, item: &OutboxRow) -> Result<Option<TelegramRelayRow>, Step> {
        let Some(bot) = outbox::TelegramLane::parse(&item.lane).and_then(|l| l.relay) else {
            return Ok(None);
        };
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        let relay = repo::telegram_relays::get(&mut conn, &item.tenant_id, bot);
        match crate::db::sqlite_inline_reads(relay).await? {
            Some(relay) => Ok(Some(relay)),
            None => Err(Step::Done(Outcome::Retry {
                after: Duration::from_millis(200),
                error: "the relay bot was removed; another bot takes the item".into(),
                counts: false,
            })),
        }
    }

    async fn run(
        &self,
        item: &OutboxRow,
        cfg: &TelegramConfigRow,
        job: &Job,
        relay: Option<&TelegramRelayRow>,
        read: MessageRead,
    ) -> Result<Option<Carried>, Step> {
        let bot = match relay {
            Some(relay) => self.bots.for_relay(relay),
            None => self.bots.for_tenant(cfg),
        }
        .map_err(|_| {
            Step::Done(Outcome::Dead {
                error: "the stored bot token cannot be decrypted for this tenant".into(),
            })
        })?;
        let lane = outbox::TelegramLane {
            tenant_id: cfg.tenant_id.clone(),
            chat_id: cfg.group_chat_id,
            relay: relay.map(|r| r.bot_id),
        };
        let bot = GroupBot {
            bot,
            budgets: &self.budgets,
            rates: message_rates(&self.settings, &lane.key()),
        };
        match job {
            Job::SendMessage(p) => self.send_visitor_message(item, cfg, &bot, p, read).await,
            Job::CloseTopic { conversation_id } => {
                self.close_topic(cfg, &bot, conversation_id).await?;
                Ok(None)
            }
            Job::RenameTopic { conversation_id } => {
                self.rename_topic(cfg, &bot, conversation_id).await?;
                Ok(None)
            }
            Job::DeleteTopic { chat_id, topic_id } => {
                self.delete_topic(cfg, &bot, *chat_id, *topic_id).await?;
                Ok(None)
            }
            Job::SendText { text, topic_id } => {
                // Texts are split when queued; one queued whole that is too long (an
                // older item) still goes, as parts.
                for text in split::rendered_parts(text) {
                    let mut req = bot.send_message(ChatId(cfg.group_chat_id), text);
                    if let Some(t) = topic_id.or(cfg.default_topic_id) {
                        req = req.message_thread_id(thread(t));
                    }
                    bot.pace().await;
                    req.await.map_err(Step::Api)?;
                }
                Ok(None)
            }
        }
    }

    async fn send_visitor_message(
        &self,
        item: &OutboxRow,
        cfg: &TelegramConfigRow,
        bot: &GroupBot<'_>,
        p: &MessageJob,
        read: MessageRead,
    ) -> Result<Option<Carried>, Step> {
        let (message, conv, recorded) = read.ok_or_else(|| {
            Step::Done(Outcome::Dead {
                error: "the message or conversation no longer exists".into(),
            })
        })?;
        if message.erased_at.is_some() {
            // Erased with its visitor (the item is cancelled too): never sent.
            return Err(Step::Done(Outcome::Dead {
                error: "the message was erased".into(),
            }));
        }
        // Whether a set of followers is recorded for this item (then marking it
        // delivered marks them too).
        let mut batch = recorded;
        if p.part.is_none() {
            // Index reads (and a short transaction that leaves the async workers).
            let (followers, recorded) =
                crate::db::sqlite_inline_reads(self.followers(item, bot, p, &message, recorded))
                    .await?;
            batch = recorded;
            if !followers.is_empty() {
                return self
                    .send_combined(cfg, bot, &conv, message, followers)
                    .await;
            }
        }
        let texts = match p.part {
            Some(part) => {
                let text = message
                    .body
                    .get(part.start..part.end)
                    .filter(|_| (1..=part.parts).contains(&part.part))
                    .ok_or_else(|| {
                        Step::Done(Outcome::Dead {
                            error: "the message part is out of range".into(),
                        })
                    })?;
                vec![split::render(text, part.part, part.parts)]
            }
            // Queued whole (before messages were split when queued): all parts here.
            None => split::rendered_parts(&message.body),
        };
        // The first part's Telegram message stands for the message.
        let first = p.part.is_none_or(|part| part.part == 1);
        let mut topic = self.ensure_topic(cfg, bot, &conv).await?;
        let mut carried = None;
        for (i, text) in texts.into_iter().enumerate() {
            let sent;
            (topic, sent) = self.send_into_topic(cfg, bot, &conv, topic, text).await?;
            if first && i == 0 {
                carried = Some(Carried {
                    message_ids: vec![message.id.clone()],
                    telegram_message_id: sent,
                    batch,
                });
            }
        }
        Ok(carried)
    }

    /// The messages to send with the head `item` in one Telegram message (see
    /// [`coalesce`]): the set recorded for it by an earlier attempt (those still
    /// queued), else — when the lane has a backlog — the conversation's next whole
    /// visitor messages in the lane that fit, recorded under the head's lease before
    /// anything is sent. Empty: the head goes alone. `recorded`: whether the delivery's
    /// first read found a recorded set. Also returns whether a set is recorded for the
    /// head now.
    async fn followers(
        &self,
        item: &OutboxRow,
        bot: &GroupBot<'_>,
        p: &MessageJob,
        head: &MessageRow,
        recorded: bool,
    ) -> Result<(Vec<MessageRow>, bool), Step> {
        let tenant = item.tenant_id.as_str();
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        if recorded {
            let (recorded, queued) = repo::outbox::batch_of(&mut conn, tenant, &item.id).await?;
            if recorded {
                let ids: Vec<String> = queued
                    .iter()
                    .filter_map(|row| match Job::parse(&row.kind, &row.payload) {
                        Ok(Job::SendMessage(m)) => Some(m.message_id.to_string()),
                        _ => None,
                    })
                    .collect();
                let mut messages = repo::messages::by_ids(&mut conn, tenant, &ids).await?;
                messages.retain(|m| m.erased_at.is_none());
                let order = |m: &MessageRow| ids.iter().position(|id| *id == m.id);
                messages.sort_by_key(order);
                return Ok((messages, true));
            }
        }
        let room = bot.room();
        if !self.settings.coalesce || room >= ROOM_WITHOUT_BACKLOG {
            return Ok((Vec::new(), false));
        }
        let cap = i64::try_from(room + 1).unwrap_or(i64::MAX);
        if repo::outbox::count_pending_in_lane(&mut conn, &item.lane, cap).await? <= room {
            return Ok((Vec::new(), false));
        }
        let limit = i64::try_from(coalesce::MAX_ENTRIES).unwrap_or(i64::MAX);
        let after = repo::outbox::pending_after(
            &mut conn,
            tenant,
            &item.lane,
            &p.conversation_id,
            &item.id,
            limit,
        )
        .await?;
        // Whole visitor messages of the conversation, up to the first item of it that
        // is anything else (or not plainly queued): nothing overtakes that item.
        let mut wanted: Vec<(String, String)> = Vec::new();
        for row in &after {
            if row.status != crate::outbox::OutboxStatus::Queued.as_str() {
                break;
            }
            match Job::parse(&row.kind, &row.payload) {
                Ok(Job::SendMessage(m)) if m.part.is_none() => {
                    wanted.push((row.id.clone(), m.message_id.to_string()));
                }
                _ => break,
            }
        }
        if wanted.is_empty() {
            return Ok((Vec::new(), false));
        }
        let ids: Vec<String> = wanted.iter().map(|(_, m)| m.clone()).collect();
        let found = repo::messages::by_ids(&mut conn, tenant, &ids).await?;
        // In lane order, up to the first that is gone or erased (it dead-letters or is
        // cancelled on its own).
        let mut followers = Vec::new();
        for (item_id, message_id) in wanted {
            match found.iter().find(|m| m.id == message_id) {
                Some(m) if m.erased_at.is_none() => followers.push((item_id, m.clone())),
                _ => break,
            }
        }
        let entries: Vec<(i64, &str)> = std::iter::once(head)
            .chain(followers.iter().map(|(_, m)| m))
            .map(|m| (m.created_at, m.body.as_str()))
            .collect();
        let fit = coalesce::fitting(&entries);
        if fit <= 1 {
            return Ok((Vec::new(), false));
        }
        followers.truncate(fit - 1);
        let item_ids: Vec<String> = followers.iter().map(|(id, _)| id.clone()).collect();
        let worker = item.leased_by.clone().unwrap_or_default();
        let now = now_ms();
        let head_id = item.id.as_str();
        let held = crate::transaction!(&mut conn, |tx| {
            repo::outbox::record_batch(tx, tenant, head_id, &worker, &item_ids, now).await
        })?;
        if !held {
            // Another worker delivers the head now (this one's lease ran out).
            return Err(Step::Done(Outcome::Retry {
                after: Duration::from_secs(1),
                error: "lost the lease before sending".into(),
                counts: false,
            }));
        }
        Ok((followers.into_iter().map(|(_, m)| m).collect(), true))
    }

    /// Send the head's message and its followers as one Telegram message of entries,
    /// which carries every message of the set.
    async fn send_combined(
        &self,
        cfg: &TelegramConfigRow,
        bot: &GroupBot<'_>,
        conv: &ConversationRow,
        head: MessageRow,
        followers: Vec<MessageRow>,
    ) -> Result<Option<Carried>, Step> {
        let set: Vec<MessageRow> = std::iter::once(head).chain(followers).collect();
        let entries: Vec<(i64, &str)> = set
            .iter()
            .map(|m| (m.created_at, m.body.as_str()))
            .collect();
        let (text, _) = coalesce::render(&entries);
        let message_ids: Vec<String> = set.iter().map(|m| m.id.clone()).collect();
        let topic = self.ensure_topic(cfg, bot, conv).await?;
        let (_, sent) = self.send_into_topic(cfg, bot, conv, topic, text).await?;
        metrics::counter!("chatorical_outbox_coalesced_sends_total").increment(1);
        metrics::counter!("chatorical_outbox_coalesced_messages_total")
            .increment(u64::try_from(set.len()).unwrap_or(u64::MAX));
        Ok(Some(Carried {
            message_ids,
            telegram_message_id: sent,
            batch: true,
        }))
    }

    /// Send `text` into the conversation's topic (re-created once if Telegram says it
    /// is gone). Returns the topic it went into and the sent message's id (recorded
    /// on the messages it carries when the item is marked delivered).
    async fn send_into_topic(
        &self,
        cfg: &TelegramConfigRow,
        bot: &GroupBot<'_>,
        conv: &ConversationRow,
        mut topic: Option<i64>,
        text: String,
    ) -> Result<(Option<i64>, i64), Step> {
        let gone = || {
            Step::Done(Outcome::Dead {
                error: "the message or conversation no longer exists".into(),
            })
        };
        let mut recreated = false;
        loop {
            let mut req = bot.send_message(ChatId(cfg.group_chat_id), text.clone());
            if let Some(t) = topic {
                req = req.message_thread_id(thread(t));
            }
            bot.pace().await;
            match req.await {
                Ok(sent) => return Ok((topic, i64::from(sent.id.0))),
                Err(e) if is_thread_gone(&e) && !recreated && topic.is_some() => {
                    // The topic was deleted in Telegram: forget it and open a new one.
                    let old = topic.unwrap_or_default();
                    tracing::info!(tenant = %cfg.tenant_id, conversation = %conv.id, "forum topic gone; re-creating");
                    let mut pc = self.db.conn().await?;
                    repo::conversations::clear_topic(
                        &mut pc.as_conn(),
                        &cfg.tenant_id,
                        &conv.id,
                        old,
                    )
                    .await?;
                    let fresh =
                        repo::conversations::get(&mut pc.as_conn(), &cfg.tenant_id, &conv.id)
                            .await?
                            .ok_or_else(gone)?;
                    drop(pc);
                    topic = self.ensure_topic(cfg, bot, &fresh).await?;
                    recreated = true;
                }
                Err(e) => return Err(Step::Api(e)),
            }
        }
    }

    /// The conversation's topic: the recorded one, a newly created one (with an
    /// opening card), or the tenant's default topic when the bot may not create topics.
    async fn ensure_topic(
        &self,
        cfg: &TelegramConfigRow,
        bot: &GroupBot<'_>,
        conv: &ConversationRow,
    ) -> Result<Option<i64>, Step> {
        if let Some(t) = conv.telegram_topic_id {
            if conv.telegram_topic_closed {
                bot.pace().await;
                match bot
                    .reopen_forum_topic(ChatId(cfg.group_chat_id), thread(t))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_not_modified(&e) => {}
                    Err(e) if is_thread_gone(&e) => return Ok(Some(t)),
                    Err(e) => return Err(Step::Api(e)),
                }
                let mut pc = self.db.conn().await?;
                repo::conversations::set_topic_closed(
                    &mut pc.as_conn(),
                    &cfg.tenant_id,
                    &conv.id,
                    false,
                )
                .await?;
            }
            return Ok(Some(t));
        }
        if !cfg.can_manage_topics {
            return Ok(cfg.default_topic_id);
        }
        let mut pc = self.db.conn().await?;
        let visitor =
            repo::visitors::get(&mut pc.as_conn(), &cfg.tenant_id, &conv.visitor_id).await?;
        drop(pc);
        let name = topic_name(conv, visitor.as_ref());
        bot.pace().await;
        let created = match bot
            .create_forum_topic(ChatId(cfg.group_chat_id), name.clone())
            .await
        {
            Ok(t) => i64::from(t.thread_id.0.0),
            Err(e) if is_no_topic_rights(&e) => {
                tracing::warn!(tenant = %cfg.tenant_id, "bot may not create topics; using the default topic");
                return Ok(cfg.default_topic_id);
            }
            Err(e) => return Err(Step::Api(e)),
        };
        let mut pc = self.db.conn().await?;
        let recorded = repo::conversations::set_topic(
            &mut pc.as_conn(),
            &cfg.tenant_id,
            &conv.id,
            created,
            &name,
        )
        .await?;
        if !recorded {
            // Only after a lost lease: another delivery recorded a topic first; use it.
            let conv =
                repo::conversations::get(&mut pc.as_conn(), &cfg.tenant_id, &conv.id).await?;
            return Ok(conv.and_then(|c| c.telegram_topic_id).or(Some(created)));
        }
        drop(pc);
        if let Some(usage) = &self.usage {
            usage.record_in(
                &cfg.tenant_id.as_str().into(),
                Environment::from_stored(&conv.environment),
                Metric::TopicsCreated,
                1,
            );
        }
        let card = opening_card(conv, visitor.as_ref());
        bot.pace().await;
        if let Err(e) = bot
            .send_message(ChatId(cfg.group_chat_id), card)
            .message_thread_id(thread(created))
            .await
        {
            // The card is a courtesy; the message itself still goes out.
            tracing::warn!(tenant = %cfg.tenant_id, error = %super::setup::short(&e), "opening card not sent");
        }
        Ok(Some(created))
    }

    async fn close_topic(
        &self,
        cfg: &TelegramConfigRow,
        bot: &GroupBot<'_>,
        conversation_id: &str,
    ) -> Result<(), Step> {
        let mut pc = self.db.conn().await?;
        let conv =
            repo::conversations::get(&mut pc.as_conn(), &cfg.tenant_id, conversation_id).await?;
        drop(pc);
        let Some(topic) = conv.and_then(|c| c.telegram_topic_id) else {
            return Ok(());
        };
        bot.pace().await;
        match bot
            .close_forum_topic(ChatId(cfg.group_chat_id), thread(topic))
            .await
        {
            Ok(_) => {}
            Err(e) if is_thread_gone(&e) || is_not_modified(&e) => {}
            Err(e) => return Err(Step::Api(e)),
        }
        let mut pc = self.db.conn().await?;
        repo::conversations::set_topic_closed(
            &mut pc.as_conn(),
            &cfg.tenant_id,
            conversation_id,
            true,
        )
        .await?;
        Ok(())
    }

    /// Give the conversation's topic its current name (editForumTopic). Read now, not
    /// when the rename was queued: of several renames queued in a row the first makes
    /// the call and the others find the name applied already; a retry after a call
    /// whose answer was lost gets TOPIC_NOT_MODIFIED, which counts as done. Nothing to
    /// do without a topic (the one created later takes the current name) or when
    /// Telegram says the topic is gone (the next message re-creates it, named).
    async fn rename_topic(
        &self,
        cfg: &TelegramConfigRow,
        bot: &GroupBot<'_>,
        conversation_id: &str,
    ) -> Result<(), Step> {
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        let Some(conv) =
            repo::conversations::get(&mut conn, &cfg.tenant_id, conversation_id).await?
        else {
            return Ok(());
        };
        let Some(topic) = conv.telegram_topic_id else {
            return Ok(());
        };
        let visitor = repo::visitors::get(&mut conn, &cfg.tenant_id, &conv.visitor_id).await?;
        drop(pc);
        let name = topic_name(&conv, visitor.as_ref());
        if conv.telegram_topic_name.as_deref() == Some(name.as_str()) {
            return Ok(());
        }
        bot.pace().await;
        match bot
            .edit_forum_topic(ChatId(cfg.group_chat_id), thread(topic))
            .name(name.clone())
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_modified(&e) => {}
            Err(e) if is_thread_gone(&e) => return Ok(()),
            Err(e) => return Err(Step::Api(e)),
        }
        let mut pc = self.db.conn().await?;
        repo::conversations::set_topic_name(
            &mut pc.as_conn(),
            &cfg.tenant_id,
            conversation_id,
            topic,
            &name,
        )
        .await?;
        Ok(())
    }
}

impl TelegramDelivery {
    /// Delete a purged conversation's topic with its messages (`deleteForumTopic`), in
    /// the chat the item names (the group the topic was created in), paced by that
    /// chat's budgets. A topic Telegram says is gone is done already; the tenant's
    /// default topic (where conversations go when the bot may not create topics) is
    /// never deleted.
    async fn delete_topic(
        &self,
        cfg: &TelegramConfigRow,
        bot: &GroupBot<'_>,
        chat_id: i64,
        topic_id: i64,
    ) -> Result<(), Step> {
        if chat_id == cfg.group_chat_id && cfg.default_topic_id == Some(topic_id) {
            return Ok(());
        }
        let bot = GroupBot {
            bot: bot.bot.clone(),
            budgets: &self.budgets,
            rates: message_rates(
                &self.settings,
                &outbox::telegram_lane(&cfg.tenant_id, chat_id),
            ),
        };
        bot.pace().await;
        match bot
            .delete_forum_topic(ChatId(chat_id), thread(topic_id))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_thread_gone(&e) => Ok(()),
            Err(e) => Err(Step::Api(e)),
        }
    }
}

/// Telegram's answer to a topic call that changes nothing (closing a closed topic,
/// renaming it to its name): the wanted state holds already.
fn is_not_modified(e: &RequestError) -> bool {
    e.to_string()
        .to_ascii_lowercase()
        .contains("topic_not_modified")
}

impl Deliver for TelegramDelivery {
    async fn deliver(&self, item: &OutboxRow) -> Outcome {
        self.attempt(item).await
    }

    fn budget_wait(&self, lane: &str) -> Option<Duration> {
        let rates = message_rates(&self.settings, lane);
        let wants: Vec<(&str, Rate)> = rates.iter().map(|(k, r)| (k.as_str(), *r)).collect();
        self.budgets.check(&wants).err()
    }
}

pub(crate) fn thread(id: i64) -> ThreadId {
    ThreadId(MessageId(i32::try_from(id).unwrap_or(i32::MAX)))
}

fn opening_card(conv: &ConversationRow, visitor: Option<&crate::db::models::VisitorRow>) -> String {
    let page = visitor
        .and_then(|v| v.page_url.as_deref())
        .unwrap_or("unknown");
    let locale = visitor
        .and_then(|v| v.locale.as_deref())
        .unwrap_or("unknown");
    let identity = match visitor.and_then(|v| v.external_user_id.as_deref()) {
        Some(user) => format!("verified user {user}"),
        None => "not verified".to_string(),
    };
    // What the visitor said about themselves, when they did (one line each).
    let told: String = [
        ("Name", visitor.and_then(|v| v.name.as_deref())),
        ("Email", visitor.and_then(|v| v.email.as_deref())),
    ]
    .into_iter()
    .filter_map(|(label, value)| Some(format!("\n{label}: {}", escape_controls(value?))))
    .collect();
    format!(
        "New conversation {}\nVisitor: {}{told}\nPage: {page}\nLocale: {locale}\nIdentity: {identity}\n\nReply in this topic to answer the visitor.",
        conv.id, conv.visitor_id
    )
}
