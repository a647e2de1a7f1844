//! Visitor typing, shown to agents as a `typing` chat action in the conversation's
//! forum topic. Ephemeral — never queued, never stored — and bounded:
//!
//! - per conversation: at most one action per [`TYPING_EVERY`], however many sockets
//!   the visitor has open. With Redis the mark is a `SET NX PX` key, so it holds across
//!   nodes; without Redis (or while Redis does not answer) it is kept in this process.
//! - by the process's Telegram budgets ([`typing_rates`]): the bot's, the chat's and
//!   the group's budgets that the outbox worker's messages take from (an action is
//!   charged to them like a message), within a typing share of the chat and only while
//!   the group has used less than half its budget — so a group with a backlog shows no
//!   typing. An action that does not fit is dropped, not delayed: a late "typing…" is
//!   worth nothing.
//! - by the tenant's plan: while it does not include Telegram, nothing is shown there
//!   (as the delivery holds the tenant's queued items).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use teloxide::{
    payloads::SendChatActionSetters,
    prelude::Requester,
    types::{ChatAction, ChatId},
};

use super::Bots;
use crate::chat::{Chat, Visitor};
use crate::cluster::Cluster;
use crate::config::WorkerSettings;
use crate::db::{
    Db,
    models::{ConversationRow, TelegramConfigRow},
    repo,
};
use crate::domain::ConversationId;
use crate::error::Result;
use crate::outbox::budget::{Budgets, Rate, typing_rates};

/// A conversation's typing reaches Telegram at most this often (Telegram shows a chat
/// action for about five seconds).
pub const TYPING_EVERY: Duration = Duration::from_secs(4);

/// Longest wait for Redis before the in-process mark is used instead.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// What became of one typing signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypingOutcome {
    /// A `sendChatAction` went out.
    Sent,
    /// The conversation's typing was passed on less than [`TYPING_EVERY`] ago.
    Throttled,
    /// The bot's or the chat's budget had no room: dropped.
    OverBudget,
    /// Nothing to show it in (no open topic, Telegram paused or not connected).
    NotShown,
    /// The database or the Bot API failed (logged at debug level).
    Failed,
}

impl TypingOutcome {
    /// Every outcome, in a fixed order.
    pub const ALL: [TypingOutcome; 5] = [
        TypingOutcome::Sent,
        TypingOutcome::Throttled,
        TypingOutcome::OverBudget,
        TypingOutcome::NotShown,
        TypingOutcome::Failed,
    ];

    /// The outcome's name (a metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            TypingOutcome::Sent => "sent",
            TypingOutcome::Throttled => "throttled",
            TypingOutcome::OverBudget => "over_budget",
            TypingOutcome::NotShown => "not_shown",
            TypingOutcome::Failed => "failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// When each conversation's typing was last passed on (in this process).
struct Recent {
    at: HashMap<String, Instant>,
    pruned: Instant,
}

/// Passes visitors' typing on to Telegram within the limits above.
pub struct Typing {
    budgets: Arc<Budgets>,
    rates: WorkerSettings,
    cluster: Option<Cluster>,
    recent: Mutex<Recent>,
    counts: [AtomicU64; 5],
}

impl Typing {
    /// Typing that takes from `budgets` at the rates of `rates`, throttled through
    /// `cluster` when there is one.
    pub fn new(budgets: Arc<Budgets>, rates: &WorkerSettings, cluster: Option<Cluster>) -> Self {
        Typing {
            budgets,
            rates: rates.clone(),
            cluster,
            recent: Mutex::new(Recent {
                at: HashMap::new(),
                pruned: Instant::now(),
            }),
            counts: Default::default(),
        }
    }

    /// How many typing signals ended with `outcome` in this process.
    pub fn count(&self, outcome: TypingOutcome) -> u64 {
        self.counts[outcome.index()].load(Ordering::Relaxed)
    }

    /// The visitor is typing in `conversation_id` (a socket said so): tell the
    /// conversation's other sockets, and show a `typing` action in its Telegram topic —
    /// at most once per [`TYPING_EVERY`] per conversation, and only when the budgets
    /// have room.
    pub async fn visitor_typing(
        &self,
        chat: &Chat,
        db: &Db,
        bots: &Bots,
        visitor: &Visitor,
        conversation_id: &ConversationId,
    ) -> TypingOutcome {
        let outcome = self.pass_on(chat, db, bots, visitor, conversation_id).await;
        self.counts[outcome.index()].fetch_add(1, Ordering::Relaxed);
        outcome
    }

    async fn pass_on(
        &self,
        chat: &Chat,
        db: &Db,
        bots: &Bots,
        visitor: &Visitor,
        conversation_id: &ConversationId,
    ) -> TypingOutcome {
        if !self.first_in_interval(conversation_id).await {
            return TypingOutcome::Throttled;
        }
        chat.typing(conversation_id, "visitor");
        let loaded = load(db, visitor, conversation_id).await;
        let (conv, cfg) = match loaded {
            Ok((Some(conv), Some(cfg))) => (conv, cfg),
            Ok(_) => return TypingOutcome::NotShown,
            Err(e) => {
                tracing::debug!(error = %e, "typing action not shown in Telegram");
                return TypingOutcome::Failed;
            }
        };
        let Some(topic) = conv
            .telegram_topic_id
            .filter(|_| !conv.telegram_topic_closed)
        else {
            return TypingOutcome::NotShown;
        };
        if !cfg.enabled || conv.status != crate::chat::ConversationStatus::Open.as_str() {
            return TypingOutcome::NotShown;
        }
        let rates = typing_rates(&self.rates, &cfg.tenant_id, cfg.group_chat_id);
        let wants: Vec<(&str, Rate)> = rates.iter().map(|(k, r)| (k.as_str(), *r)).collect();
        if self.budgets.try_take(&wants).is_err() {
            return TypingOutcome::OverBudget;
        }
        let Ok(bot) = bots.for_tenant(&cfg) else {
            return TypingOutcome::Failed;
        };
        match bot
            .send_chat_action(ChatId(cfg.group_chat_id), ChatAction::Typing)
            .message_thread_id(super::delivery::thread(topic))
            .await
        {
            Ok(_) => TypingOutcome::Sent,
            Err(e) => {
                tracing::debug!(error = %super::setup::short(&e), "typing action not shown in Telegram");
                TypingOutcome::Failed
            }
        }
    }

    /// Whether this is the conversation's first typing in the current interval (and
    /// mark it). Redis when configured and answering, else this process.
    async fn first_in_interval(&self, conversation_id: &str) -> bool {
        if let Some(cluster) = &self.cluster {
            let key = cluster.key(&["typing", conversation_id]);
            let mut conn = cluster.conn();
            let ms = u64::try_from(TYPING_EVERY.as_millis()).unwrap_or(4000);
            let mut cmd = redis::cmd("SET");
            cmd.arg(&key).arg(1).arg("NX").arg("PX").arg(ms);
            let set = cmd.query_async::<Option<String>>(&mut conn);
            match tokio::time::timeout(REDIS_TIMEOUT, set).await {
                Ok(Ok(reply)) => return reply.is_some(),
                Ok(Err(e)) => {
                    tracing::debug!(error = ?e.kind(), "typing throttle: Redis failed; using this process's")
                }
                Err(_) => tracing::debug!("typing throttle: Redis timed out; using this process's"),
            }
        }
        self.first_here(conversation_id)
    }

    fn first_here(&self, conversation_id: &str) -> bool {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(recent.pruned) >= TYPING_EVERY {
            recent
                .at
                .retain(|_, t| now.duration_since(*t) < TYPING_EVERY);
            recent.pruned = now;
        }
        match recent.at.get(conversation_id) {
            Some(t) if now.duration_since(*t) < TYPING_EVERY => false,
            _ => {
                recent.at.insert(conversation_id.to_string(), now);
                true
            }
        }
    }
}

/// The visitor's conversation (any other is `None`) and the tenant's Telegram config
/// (`None` too while the tenant's plan does not include Telegram).
async fn load(
    db: &Db,
    visitor: &Visitor,
    conversation_id: &str,
) -> Result<(Option<ConversationRow>, Option<TelegramConfigRow>)> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let conv = repo::conversations::get(&mut conn, &visitor.tenant_id, conversation_id)
        .await?
        .filter(|c| visitor.id == c.visitor_id.as_str());
    let cfg = match repo::telegram::get(&mut conn, &visitor.tenant_id).await? {
        Some(cfg)
            if crate::plans::for_tenant(&mut conn, &visitor.tenant_id)
                .await?
                .channels
                .telegram =>
        {
            // The group the visitor's environment's topics are in.
            let group = super::group_for(
                &mut conn,
                &visitor.tenant_id,
                visitor.environment,
                cfg.group_chat_id,
            )
            .await?;
            Some(TelegramConfigRow {
                group_chat_id: group,
                ..cfg
            })
        }
        _ => None,
    };
    Ok((conv, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_per_conversation_per_interval_in_process() {
        let t = Typing::new(Arc::new(Budgets::new()), &WorkerSettings::default(), None);
        assert!(t.first_here("cv_1"));
        assert!(!t.first_here("cv_1"));
        assert!(t.first_here("cv_2"), "conversations are independent");
        assert!(!t.first_here("cv_2"));
    }
}
