//! Visitors' personal data (GDPR): [`export`] everything stored about a visitor, and
//! [`erase`] it.
//!
//! Erasure keeps the shape of the visitor's conversations (ids, seqs, directions,
//! authors, times: the agents' history shows erased rows) and removes what the visitor
//! said and who they are, in one transaction:
//!
//! - every message text in their conversations, both directions (agents' replies quote
//!   visitors), becomes empty with `erased_at` set (`erased: true` in the API);
//! - their open conversations are closed; subjects and recorded topic names (either may
//!   name them) are cleared;
//! - the profile and identity (locale, page, name, email, verified user id) are removed,
//!   the first device's token is replaced by a value no token hashes to and the other
//!   device tokens are deleted — no token of theirs authenticates again, and a ws token
//!   issued earlier opens no socket (checked at the upgrade);
//! - undelivered outbox items of their conversations (queued, in flight, or dead and
//!   retryable) are cancelled: never delivered;
//! - with Telegram connected, each topic that showed more than ids is renamed to the
//!   id-only name and each open topic closed, through the outbox;
//! - one `visitor.erased` audit entry with counts only.
//!
//! After the commit their open sockets are closed with 1008 on every node (the hub's
//! [`Hub::close_visitor`]), and on SQLite the write-ahead log is checkpointed and
//! truncated (with `secure_delete` on every connection, freed space is zeroed), so the
//! erased texts are gone from the database file. Erasing again changes nothing and
//! records nothing. What Telegram already received (delivered messages, the topic's
//! opening card) is Telegram's copy, out of this service's reach.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::{self, Action, Entry};
use crate::chat::MessageView;
use crate::db::{Db, models::ConversationRow, repo};
use crate::domain::{Environment, Resource, Scope, ScopeAccess, VisitorId, now_ms, rfc3339};
use crate::error::{Error, Result};
use crate::outbox::{self, Job, Wakeup};
use crate::realtime::Hub;
use crate::telegram::topic::topic_name;
use crate::tenancy::{Caller, Tenant};
use crate::transaction;

/// Messages read per query while exporting.
const EXPORT_PAGE: i64 = 500;

/// Everything stored about a visitor (`GET /v1/admin/visitors/{id}/export`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct VisitorExport {
    /// RFC 3339: when this export was made.
    pub exported_at: String,
    /// The tenant's slug.
    pub tenant: String,
    /// The visitor's profile.
    pub visitor: VisitorProfile,
    /// Identity verification.
    pub identity: IdentityExport,
    /// The visitor's device tokens (never the tokens or their hashes).
    pub device_tokens: DeviceTokens,
    /// Every conversation of the visitor, oldest first, with every message.
    pub conversations: Vec<ConversationExport>,
}

/// A visitor's profile as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct VisitorProfile {
    /// Opaque id (`vis_…`).
    pub id: String,
    /// RFC 3339: first session.
    pub created_at: String,
    /// RFC 3339: last session.
    pub last_seen_at: String,
    /// The browser's locale, if sent.
    pub locale: Option<String>,
    /// The page the widget was last opened on.
    pub page_url: Option<String>,
    /// The name the visitor gave (or their verified identity's display name).
    pub name: Option<String>,
    /// The email address the visitor gave.
    pub email: Option<String>,
    /// The environment of the visitor's first session: `production` or `staging`.
    pub environment: Environment,
    /// Whether the visitor was erased (then profile and identity are empty).
    pub erased: bool,
    /// RFC 3339: when the visitor was erased.
    pub erased_at: Option<String>,
}

/// A visitor's identity verification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct IdentityExport {
    /// Whether the visitor is a verified user of the host site.
    pub verified: bool,
    /// The host site's user id, when verified.
    pub external_user_id: Option<String>,
}

/// A visitor's device tokens: how many work, and when they were issued.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct DeviceTokens {
    /// Tokens that authenticate as the visitor (0 once erased).
    pub active: usize,
    /// RFC 3339, oldest first: when each working token was issued.
    pub issued_at: Vec<String>,
}

/// A conversation with its messages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ConversationExport {
    /// Opaque id.
    pub id: String,
    /// `open` or `closed`.
    pub status: String,
    /// `production` or `staging`.
    pub environment: Environment,
    /// The subject agents gave it.
    pub subject: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: last activity.
    pub updated_at: String,
    /// RFC 3339, if closed.
    pub closed_at: Option<String>,
    /// Its Telegram forum topic, once created.
    pub telegram_topic_id: Option<i64>,
    /// The name the topic was last given in Telegram.
    pub telegram_topic_name: Option<String>,
    /// Highest message seq.
    pub last_seq: i64,
    /// Every message, in seq order (erased ones with `erased: true` and empty text).
    pub messages: Vec<MessageView>,
}

/// What an erasure did (`DELETE /v1/admin/visitors/{id}`). Erasing again returns the
/// same shape with `already_erased: true` and the counts of what that call changed
/// (nothing, normally).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Erasure {
    /// The visitor.
    pub visitor_id: String,
    /// RFC 3339: when the visitor was erased (the first erasure).
    pub erased_at: String,
    /// Whether the visitor was erased before this call.
    pub already_erased: bool,
    /// The visitor's conversations (kept, with their texts erased).
    pub conversations: usize,
    /// Open conversations this call closed.
    pub conversations_closed: usize,
    /// Message texts this call erased.
    pub messages_erased: usize,
    /// Conversations whose subject or recorded topic name this call cleared.
    pub labels_cleared: usize,
    /// Device tokens this call revoked.
    pub tokens_revoked: usize,
    /// Undelivered outbox items (queued, in flight, dead) this call cancelled.
    pub outbox_cancelled: usize,
    /// Telegram topics queued for a rename to the id-only name.
    pub topics_renamed: usize,
    /// Telegram topics queued to be closed.
    pub topics_closed: usize,
}

impl Erasure {
    fn changed_anything(&self) -> bool {
        !self.already_erased
            || self.conversations_closed
                + self.messages_erased
                + self.labels_cleared
                + self.tokens_revoked
                + self.outbox_cancelled
                + self.topics_renamed
                + self.topics_closed
                > 0
    }
}

fn conversation_export(row: ConversationRow, messages: Vec<MessageView>) -> ConversationExport {
    ConversationExport {
        environment: Environment::from_stored(&row.environment),
        id: row.id,
        status: row.status,
        subject: row.subject,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
        closed_at: row.closed_at.map(rfc3339),
        telegram_topic_id: row.telegram_topic_id,
        telegram_topic_name: row.telegram_topic_name,
        last_seq: row.last_seq,
        messages,
    }
}

/// Everything stored about one of `tenant`'s visitors (`visitors:read`; a visitor of
/// another tenant, or none, is `not_found`): profile, identity, device tokens (counts
/// and times only), conversations and every message. Recorded in the audit log as
/// `visitor.exported` (counts only). An erased visitor's export shows the erased state.
pub async fn export(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    visitor_id: &VisitorId,
) -> Result<VisitorExport> {
    caller.require(&Scope::new(Resource::Visitors, ScopeAccess::Read))?;
    caller.check_tenant(tenant)?;
    let tenant_id = &tenant.id;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    // Read without the write lock (SQLite), page by page; the audit entry afterwards.
    let visitor = repo::visitors::get(&mut conn, tenant_id, visitor_id)
        .await?
        .ok_or_else(|| Error::not_found("visitor"))?;
    let extra_tokens = repo::visitors::token_times(&mut conn, tenant_id, visitor_id).await?;
    let mut conversations = Vec::new();
    let mut message_count = 0usize;
    for conv in repo::conversations::of_visitor(&mut conn, tenant_id, visitor_id).await? {
        let mut messages: Vec<MessageView> = Vec::new();
        let mut after = 0;
        loop {
            let page =
                repo::messages::since(&mut conn, tenant_id, &conv.id, after, EXPORT_PAGE).await?;
            let n = page.len();
            if let Some(last) = page.last() {
                after = last.seq;
            }
            messages.extend(page.into_iter().map(MessageView::from));
            if (n as i64) < EXPORT_PAGE {
                break;
            }
        }
        message_count += messages.len();
        conversations.push(conversation_export(conv, messages));
    }
    let erased = visitor.erased_at.is_some();
    let issued_at: Vec<String> = if erased {
        Vec::new()
    } else {
        std::iter::once(visitor.created_at)
            .chain(extra_tokens)
            .map(rfc3339)
            .collect()
    };
    let out = VisitorExport {
        exported_at: rfc3339(now_ms()),
        tenant: tenant.slug.clone(),
        identity: IdentityExport {
            verified: visitor.external_user_id.is_some(),
            external_user_id: visitor.external_user_id,
        },
        device_tokens: DeviceTokens {
            active: issued_at.len(),
            issued_at,
        },
        visitor: VisitorProfile {
            id: visitor.id,
            created_at: rfc3339(visitor.created_at),
            last_seen_at: rfc3339(visitor.last_seen_at),
            locale: visitor.locale,
            page_url: visitor.page_url,
            name: visitor.name,
            email: visitor.email,
            environment: Environment::from_stored(&visitor.environment),
            erased,
            erased_at: visitor.erased_at.map(rfc3339),
        },
        conversations,
    };
    let changes = serde_json::json!({
        "conversations": out.conversations.len(),
        "messages": message_count,
        "erased": erased,
    });
    transaction!(&mut conn, |tx| {
        audit::record(
            tx,
            caller,
            Entry::new(Action::VisitorExported)
                .tenant(tenant_id)
                .target(visitor_id.as_str())
                .changes(changes.clone()),
        )
        .await
    })?;
    Ok(out)
}

/// Why erased visitors' pending outbox items were cancelled (`last_error`).
const CANCELLED: &str = "cancelled: the visitor's data was erased";

/// Erase one of `tenant`'s visitors (`visitors:write`; a visitor of another tenant, or
/// none, is `not_found`) — see the module documentation for what goes. One transaction;
/// then the visitor's sockets are closed on every node through `hub`, this process's
/// outbox workers woken through `wake` for the topic renames and closes, and (SQLite)
/// the write-ahead log truncated. Idempotent: erasing an erased visitor changes nothing
/// and records no audit entry.
pub async fn erase(
    db: &Db,
    hub: &dyn Hub,
    wake: &Wakeup,
    caller: &Caller,
    tenant: &Tenant,
    visitor_id: &VisitorId,
) -> Result<Erasure> {
    caller.require(&Scope::new(Resource::Visitors, ScopeAccess::Write))?;
    caller.check_tenant(tenant)?;
    let tenant_id = &tenant.id;
    let now = now_ms();
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let erasure = transaction!(&mut conn, |tx| {
        // The visitor's row lock first: a conversation being opened for them now
        // (which takes the same lock) either commits before this reads on, or finds
        // them erased.
        if !repo::visitors::lock(tx, tenant_id, visitor_id).await? {
            return Err(Error::not_found("visitor"));
        }
        let before = repo::visitors::get(tx, tenant_id, visitor_id)
            .await?
            .ok_or_else(|| Error::not_found("visitor"))?;
        // Closing takes the conversations' row locks: a message being stored into one
        // commits first (and its text is erased below) or finds it closed.
        let conversations_closed =
            repo::conversations::close_all_of_visitor(tx, tenant_id, visitor_id, now).await?;
        let conversations = repo::conversations::of_visitor(tx, tenant_id, visitor_id).await?;
        let messages_erased =
            repo::messages::erase_of_visitor(tx, tenant_id, visitor_id, now).await?;
        // Renames and closes only read ids and the current state when delivered: they
        // stay (they are what erasure queues itself).
        let keep = [
            Job::RenameTopic {
                conversation_id: String::new(),
            }
            .kind(),
            Job::CloseTopic {
                conversation_id: String::new().into(),
            }
            .kind(),
        ];
        let outbox_cancelled =
            repo::outbox::cancel_for_visitor(tx, tenant_id, visitor_id, &keep, CANCELLED, now)
                .await?;
        let labels_cleared =
            repo::conversations::clear_labels_of_visitor(tx, tenant_id, visitor_id).await?;
        let first_token =
            usize::from(before.token_hash != repo::visitors::revoked_token_hash(visitor_id));
        let tokens_revoked =
            first_token + repo::visitors::delete_tokens(tx, tenant_id, visitor_id).await?;
        let erased_at = before.erased_at.unwrap_or(now);
        repo::visitors::erase(tx, tenant_id, visitor_id, erased_at).await?;
        let (topics_renamed, topics_closed) =
            queue_topic_work(tx, tenant_id, &conversations, now).await?;
        let erasure = Erasure {
            visitor_id: visitor_id.to_string(),
            erased_at: rfc3339(erased_at),
            already_erased: before.erased_at.is_some(),
            conversations: conversations.len(),
            conversations_closed,
            messages_erased,
            labels_cleared,
            tokens_revoked,
            outbox_cancelled,
            topics_renamed,
            topics_closed,
        };
        if erasure.changed_anything() {
            audit::record(
                tx,
                caller,
                Entry::new(Action::VisitorErased)
                    .tenant(tenant_id)
                    .target(visitor_id.as_str())
                    .changes(serde_json::json!({
                        "conversations": erasure.conversations,
                        "conversations_closed": erasure.conversations_closed,
                        "messages_erased": erasure.messages_erased,
                        "labels_cleared": erasure.labels_cleared,
                        "tokens_revoked": erasure.tokens_revoked,
                        "outbox_cancelled": erasure.outbox_cancelled,
                        "topics_renamed": erasure.topics_renamed,
                        "topics_closed": erasure.topics_closed,
                    })),
            )
            .await?;
        }
        Ok(erasure)
    })?;
    drop(pc);
    hub.close_visitor(visitor_id).await;
    if erasure.topics_renamed + erasure.topics_closed > 0 {
        wake.wake();
    }
    if erasure.changed_anything() {
        metrics::counter!("chatorical_visitors_erased_total").increment(1);
        match db.truncate_wal().await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "the write-ahead log could not be truncated after an erasure (readers busy); the next checkpoint does it"
            ),
            Err(e) => tracing::warn!(error = %e, "checkpoint after an erasure failed"),
        }
    }
    Ok(erasure)
}

/// With Telegram connected: queue a rename to the id-only name (`[staging] ` prefixed in
/// staging's topics of the tenant's group) for every topic whose name showed more than
/// ids (or is not known), and a close for every open topic, in the lane of the
/// conversation's group. Keys are per conversation: erasing again queues nothing new.
/// Returns how many of each were queued.
async fn queue_topic_work(
    tx: &mut crate::db::Conn<'_>,
    tenant_id: &crate::domain::TenantId,
    conversations: &[ConversationRow],
    now: i64,
) -> Result<(usize, usize)> {
    let Some(cfg) = repo::telegram::get(tx, tenant_id).await? else {
        return Ok((0, 0));
    };
    let (mut renamed, mut closed) = (0, 0);
    for conv in conversations {
        if conv.telegram_topic_id.is_none() {
            continue;
        }
        // The conversation's group: staging's own when it has one.
        let environment = Environment::from_stored(&conv.environment);
        let group =
            crate::telegram::group_for(tx, tenant_id, environment, cfg.group_chat_id).await?;
        // The lane of the bot the topic belongs to, behind the topic's other items.
        let lane = crate::telegram::relays::conversation_lane(tx, &cfg, &conv.id, group).await?;
        let anonymous = topic_name(
            &ConversationRow {
                subject: None,
                ..conv.clone()
            },
            None,
        );
        if conv.telegram_topic_name.as_deref() != Some(anonymous.as_str()) {
            let job = Job::RenameTopic {
                conversation_id: conv.id.clone(),
            };
            let key = format!("conv_erase_rename_{}", conv.id);
            renamed += usize::from(outbox::enqueue(tx, tenant_id, &job, &key, &lane, now).await?);
        }
        if !conv.telegram_topic_closed {
            let job = Job::CloseTopic {
                conversation_id: conv.id.as_str().into(),
            };
            let key = format!("conv_erase_close_{}", conv.id);
            closed += usize::from(outbox::enqueue(tx, tenant_id, &job, &key, &lane, now).await?);
        }
    }
    Ok((renamed, closed))
}
