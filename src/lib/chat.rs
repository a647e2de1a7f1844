//! Visitor chat: sessions, conversations and messages, shared by the HTTP API and
//! the socket. Every function acts for one tenant.

use std::{net::IpAddr, sync::Arc};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::crypto::MasterKey;
use crate::db::{
    Conn, Db,
    models::{ConversationRow, MessageRow, VisitorRow},
    repo,
};
use crate::domain::{
    ConversationId, Environment, Resource, Scope, ScopeAccess, TenantId, VisitorId, VisitorToken,
    new_id, now_ms, rfc3339, text as display,
};
use crate::error::{Error, ErrorCode, Result};
use crate::limits::{Limiter, client_key};
use crate::outbox::{self, Wakeup};
use crate::quota::{Exceeded, Quota, Quotas, Taken};
use crate::realtime::{Hub, HubEvent, ServerFrame, WsClaims, WsTokenSigner};
use crate::telegram::{split, topic::topic_name};
use crate::tenancy::{Caller, Tenant};
use crate::transaction;
use crate::usage::{Metric, Usage};

pub mod writer;

/// Longest message text, in characters.
pub const MAX_TEXT_CHARS: usize = 8000;

/// Longest conversation subject and visitor name, in characters (a forum topic's
/// name in Telegram is at most 128 characters).
pub const MAX_SUBJECT_CHARS: usize = 128;

/// Longest email address, in characters.
pub const MAX_EMAIL_CHARS: usize = 254;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Visitor → agents.
    Inbound,
    /// Agents → visitor.
    Outbound,
}

impl Direction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    /// A stored direction. Only `inbound` and `outbound` are ever written; anything
    /// else is logged as the corruption it is (and shown as inbound, never dropped).
    pub fn from_stored(s: &str) -> Direction {
        match s {
            "inbound" => Direction::Inbound,
            "outbound" => Direction::Outbound,
            other => {
                tracing::error!(direction = %other, "a stored message has an unknown direction");
                Direction::Inbound
            }
        }
    }
}

/// Who writes a message: the fact that decides its direction, who may write into the
/// conversation and what author it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender<'a> {
    /// The conversation's visitor (inbound; only into their own conversation).
    Visitor(&'a VisitorId),
    /// An agent (outbound), shown with this name.
    Agent(&'a str),
    /// The service itself (outbound, no author): automatic notices.
    System,
}

impl Sender<'_> {
    /// Visitor → agents is inbound, the rest outbound.
    pub fn direction(self) -> Direction {
        match self {
            Sender::Visitor(_) => Direction::Inbound,
            Sender::Agent(_) | Sender::System => Direction::Outbound,
        }
    }
}

/// Whether a conversation takes messages. Stored as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConversationStatus {
    /// Open: visitor and agents write.
    Open,
    /// Closed: read-only; the visitor's next message opens a new conversation.
    Closed,
}

impl ConversationStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Open => "open",
            ConversationStatus::Closed => "closed",
        }
    }

    /// A status filter given by a caller; `validation_failed` naming `field` otherwise.
    pub fn parse(field: &str, s: &str) -> Result<Self> {
        match s {
            "open" => Ok(ConversationStatus::Open),
            "closed" => Ok(ConversationStatus::Closed),
            _ => Err(Error::validation(
                field,
                format!("{field} must be open or closed"),
            )),
        }
    }
}

/// A message as the API and the socket show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct MessageView {
    /// Opaque id.
    pub id: String,
    /// Conversation id.
    pub conversation_id: String,
    /// Dense per-conversation sequence number, from 1.
    pub seq: i64,
    /// `inbound` (visitor → agents) or `outbound` (agents → visitor).
    pub direction: Direction,
    /// Agent display name; `null` for the visitor.
    pub author: Option<String>,
    /// Text.
    pub text: String,
    /// The sender's idempotency id.
    pub client_msg_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, if edited.
    pub edited_at: Option<String>,
    /// `true` when the text was erased with its visitor's data (`text` is then empty;
    /// seq, direction, author and times stay). Absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub erased: bool,
    /// The ids of the visitor messages an agent's message answers (an agent's reply
    /// in Telegram: the quoted line's message, else every message the replied-to
    /// Telegram message carried). Absent when it answers nothing in particular.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_to: Vec<String>,
}

impl From<MessageRow> for MessageView {
    fn from(r: MessageRow) -> Self {
        MessageView {
            id: r.id,
            conversation_id: r.conversation_id,
            seq: r.seq,
            direction: Direction::from_stored(&r.direction),
            author: r.author,
            text: r.body,
            client_msg_id: r.client_msg_id,
            created_at: rfc3339(r.created_at),
            edited_at: r.edited_at.map(rfc3339),
            erased: r.erased_at.is_some(),
            reply_to: r
                .reply_to
                .as_deref()
                .and_then(|ids| serde_json::from_str(ids).ok())
                .unwrap_or_default(),
        }
    }
}

/// A conversation as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ConversationView {
    /// Opaque id.
    pub id: String,
    /// The visitor's id.
    pub visitor_id: String,
    /// `open` or `closed`.
    pub status: String,
    /// Highest message seq.
    pub last_seq: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, last activity.
    pub updated_at: String,
    /// RFC 3339, if closed.
    pub closed_at: Option<String>,
    /// The subject agents gave it (its Telegram topic is named after it), if any.
    pub subject: Option<String>,
    /// The environment it came from: `production`, or `staging` (a staging widget key's
    /// visitor: counted apart, never against the plan's quotas).
    pub environment: Environment,
}

impl From<ConversationRow> for ConversationView {
    fn from(r: ConversationRow) -> Self {
        ConversationView {
            environment: Environment::from_stored(&r.environment),
            id: r.id,
            visitor_id: r.visitor_id,
            subject: r.subject,
            status: r.status,
            last_seq: r.last_seq,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            closed_at: r.closed_at.map(rfc3339),
        }
    }
}

/// What a widget gets when it starts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// Long-lived visitor token; keep it (localStorage) and send it back next time.
    pub visitor_token: String,
    /// Short-lived token for `GET /v1/ws?token=`.
    pub ws_token: String,
    /// RFC 3339 expiry of `ws_token`.
    pub ws_token_expires_at: String,
    /// The visitor's open conversation, if there is one.
    pub conversation_id: Option<String>,
    /// The tenant's widget look (colour, corner).
    pub theme: crate::tenancy::WidgetTheme,
    /// The effective feature flags, for the widget to adapt to: the plan's features,
    /// each overridden by the environment's flag of the same name, and the
    /// environment's other flags.
    pub features: std::collections::BTreeMap<String, bool>,
    /// The environment of the widget key: `production` or `staging`.
    #[serde(default)]
    pub environment: Environment,
}

/// A widget's request for a session (`POST /v1/widget/session`), with where it came from.
#[derive(Debug, Clone, Copy)]
pub struct SessionStart<'a> {
    /// The client's address (see `http::client_ip`).
    pub client: IpAddr,
    /// The browser's `Origin` header, when sent.
    pub origin: Option<&'a str>,
    /// The tenant's public widget key.
    pub widget_key: &'a str,
    /// The token of an earlier session, to resume as that visitor.
    pub visitor_token: Option<&'a str>,
    /// Browser locale, e.g. `de-AT` (ignored unless 2–16 of A-Z, a-z, 0-9, '-').
    pub locale: Option<&'a str>,
    /// The page the widget is on (ignored unless an http(s) URL of at most 2000 bytes).
    pub page_url: Option<&'a str>,
    /// The host site's signed-in user; needs `user_hash`.
    pub user_id: Option<&'a str>,
    /// HMAC-SHA256 of `user_id` with the tenant's identity secret, lower-case hex.
    pub user_hash: Option<&'a str>,
    /// The verified user's display name (ignored without a verified identity).
    pub user_name: Option<&'a str>,
    /// The verified user's email address (ignored without a verified identity).
    pub user_email: Option<&'a str>,
}

/// What changes a conversation's topic name: every rename is one of these and goes
/// through [`Chat::rename`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rename<'a> {
    /// Agents give a conversation a subject (admin API, `/subject` in Telegram).
    Subject {
        /// The conversation.
        conversation_id: &'a str,
        /// The new subject (1–128 characters, trimmed).
        subject: &'a str,
    },
    /// A visitor says who they are (widget identify, a verified identity's display
    /// name): stored on the visitor; their open conversation's topic follows.
    Visitor {
        /// The visitor.
        visitor_id: &'a str,
        /// Their name, if given (1–128 characters; absent: unchanged).
        name: Option<&'a str>,
        /// Their email address, if given (absent: unchanged).
        email: Option<&'a str>,
    },
}

/// What a rename did. Hand it to [`Chat::rename_committed`] once the transaction it
/// ran in is committed (dropped without that, its quota is given back).
#[derive(Debug)]
pub struct Renamed {
    /// The conversation whose topic it concerns: the renamed one, or the visitor's open
    /// conversation (none when the visitor has none).
    pub conversation_id: Option<String>,
    /// Whether the topic name changed, so a `RenameTopic` item was queued (when the
    /// tenant has Telegram connected). `false` for a rename to the name it has, and for
    /// a visitor's name past the plan's renames a day (stored; the topic keeps its name).
    pub renamed: bool,
    /// Whether anything was stored: the subject, or the visitor's name or email, differs
    /// from what it was (`false` for the same subject again).
    pub changed: bool,
    /// The rename taken from the plan's `topic_renames_per_day`.
    quota: crate::quota::Taken,
    /// The environment of the conversation (or visitor) renamed: where it is counted.
    environment: Environment,
}

/// What a visitor said about themselves (`POST /v1/widget/identify`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct VisitorIdentity {
    /// The name they gave.
    pub name: Option<String>,
    /// The email address they gave.
    pub email: Option<String>,
}

/// A conversation with a fresh socket token for it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenedConversation {
    /// The conversation.
    #[serde(flatten)]
    pub conversation: ConversationView,
    /// Token for `GET /v1/ws?token=` bound to this conversation.
    pub ws_token: String,
    /// RFC 3339 expiry of `ws_token`.
    pub ws_token_expires_at: String,
}

/// A page of history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct History {
    /// Messages with `seq > since`, in seq order.
    pub messages: Vec<MessageView>,
    /// The conversation's highest seq.
    pub last_seq: i64,
}

/// The chat use cases, over a database and a hub.
#[derive(Clone)]
pub struct Chat {
    db: Db,
    hub: Arc<dyn Hub>,
    signer: WsTokenSigner,
    ws_ttl_ms: i64,
    wake: Wakeup,
    usage: Usage,
    quotas: Arc<Quotas>,
    /// The group-commit writers of new messages, started at the first post.
    writers: Arc<std::sync::OnceLock<writer::Writers>>,
}

/// The tenant's plan's limit on messages a day (`None`: unlimited), as read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessagesPerDay(pub Option<u32>);

impl MessagesPerDay {
    fn from_stored(plan: &str, limit: Option<i32>) -> Result<Self> {
        crate::plans::stored_limit(plan, limit).map(MessagesPerDay)
    }
}

/// What the caller of [`Chat::post_message_known`] already knows.
#[derive(Debug, Default)]
pub struct Known {
    /// The conversation's environment (a visitor's is theirs); `None` reads it.
    pub environment: Option<Environment>,
    /// The plan's limit, read just before (with the visitor's token); `None` reads it.
    pub messages_per_day: Option<MessagesPerDay>,
    /// The day's quota, taken while the plan was read (see [`Chat::take_message_ahead`]).
    pub ahead: Option<TakenAhead>,
}

/// One of the tenant's messages of the day taken against the limit a caller expected
/// (see [`Chat::take_message_ahead`]). Dropped unused, it is given back.
#[derive(Debug)]
pub struct TakenAhead {
    limit: MessagesPerDay,
    taken: Result<std::result::Result<crate::quota::Taken, crate::quota::Exceeded>>,
}

/// A visitor authenticated by their token.
#[derive(Debug, Clone)]
pub struct Visitor {
    /// Visitor id.
    pub id: VisitorId,
    /// Tenant id.
    pub tenant_id: TenantId,
    /// The environment the visitor belongs to (their first session's widget key).
    pub environment: Environment,
}

fn check_client_msg_id(id: &str) -> Result<()> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            "client_msg_id",
            "client_msg_id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '_'",
        ))
    }
}

/// A subject or a visitor's name as stored: trimmed, not blank, without NUL or other
/// control characters, at most [`MAX_SUBJECT_CHARS`]; `validation_failed` naming
/// `field` otherwise.
pub fn check_label<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    let value = value.trim();
    if value.contains('\0') {
        return Err(Error::validation(
            field,
            format!("{field} must not contain NUL (U+0000)"),
        ));
    }
    if display::is_blank(value) {
        return Err(Error::validation(
            field,
            format!("{field} must not be empty"),
        ));
    }
    display::check_name(field, value, MAX_SUBJECT_CHARS)?;
    Ok(value)
}

/// An email address, checked loosely: trimmed, one `@` with something on both sides,
/// no spaces or control characters, at most [`MAX_EMAIL_CHARS`]; `validation_failed`
/// naming `field` otherwise.
pub fn check_email<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    let value = value.trim();
    if value.chars().count() > MAX_EMAIL_CHARS {
        return Err(Error::validation(
            field,
            format!("{field} must be at most {MAX_EMAIL_CHARS} characters"),
        ));
    }
    let well_formed = value
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && value.matches('@').count() == 1
        && !value.chars().any(display::is_invisible);
    if !well_formed {
        return Err(Error::validation(
            field,
            format!("{field} must be an email address like name@example.com"),
        ));
    }
    Ok(value)
}

fn check_text(text: &str) -> Result<()> {
    if crate::domain::text::is_blank(text) {
        // Only whitespace, zero-width or other invisible characters: nothing to read.
        return Err(Error::validation("text", "text must not be empty"));
    }
    if text.contains('\0') {
        // PostgreSQL cannot store NUL in text; refused on every backend alike.
        return Err(Error::validation(
            "text",
            "text must not contain NUL (U+0000)",
        ));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Error::validation(
            "text",
            format!("text must be at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(())
}

impl Chat {
    /// Chat over `db`, publishing to `hub`.
    pub fn new(
        db: Db,
        hub: Arc<dyn Hub>,
        signer: WsTokenSigner,
        ws_ttl_secs: u64,
        wake: Wakeup,
    ) -> Self {
        Chat {
            usage: Usage::new(db.clone(), None),
            quotas: Arc::new(Quotas::new(db.clone(), None, true)),
            db,
            hub,
            signer,
            wake,
            ws_ttl_ms: i64::try_from(ws_ttl_secs)
                .unwrap_or(300)
                .saturating_mul(1000),
            writers: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// The group-commit writers (started on the current runtime at the first call).
    fn writers(&self) -> &writer::Writers {
        self.writers
            .get_or_init(|| writer::Writers::start(&self.db))
    }

    /// What this process's message writers did so far (zeros before the first post).
    pub fn write_stats(&self) -> writer::WriteStats {
        self.writers.get().map(|w| w.stats()).unwrap_or_default()
    }

    /// Store `messages` as one batch of the message writer, in one transaction, or
    /// each alone when anything in the batch fails; one answer per message, as
    /// [`store_message`] gives it. Only storing: nothing is counted or published (the
    /// writer's own batches are how posts get here; this is for tests and tools).
    pub async fn store_batch(&self, messages: &[writer::NewMessage]) -> Vec<writer::Stored> {
        self.writers().store_batch(messages).await
    }

    /// Count usage with `usage` (by default counts go straight to the database).
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// Take plan quotas from `quotas` (by default counters of this process alone).
    pub fn with_quotas(mut self, quotas: Arc<Quotas>) -> Self {
        self.quotas = quotas;
        self
    }

    /// The plan quotas.
    pub fn quotas(&self) -> &Arc<Quotas> {
        &self.quotas
    }

    /// The usage counters.
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// The hub frames go to.
    pub fn hub(&self) -> &Arc<dyn Hub> {
        &self.hub
    }

    /// The token signer.
    pub fn signer(&self) -> &WsTokenSigner {
        &self.signer
    }

    fn ws_token(
        &self,
        tenant_id: &TenantId,
        environment: Environment,
        visitor_id: &VisitorId,
        conversation_id: Option<&str>,
    ) -> (String, String) {
        let exp = now_ms() + self.ws_ttl_ms;
        let claims = WsClaims {
            t: tenant_id.clone(),
            e: environment,
            v: visitor_id.clone(),
            c: conversation_id.unwrap_or("").to_string(),
            exp,
        };
        (self.signer.sign(&claims), rfc3339(exp))
    }

    /// `POST /v1/widget/session`: start or resume a widget session, in this order:
    ///
    /// 1. the client address's budget (`limits.sessions_per_ip_per_min`), for every
    ///    session and before any database work (unknown widget keys are charged too);
    /// 2. the widget key names the tenant and one of its environments (else 401), the
    ///    browser's `Origin` (when sent) is one of that environment's allowed origins
    ///    (else 403 `origin_not_allowed`: a staging key from a production origin, or the
    ///    other way round), and the identity, if any, verifies (see
    ///    [`crate::identity::verify`]);
    /// 3. a *resume* — a visitor token that belongs to a visitor of this tenant — is
    ///    never refused for the tenant's budget; anything else (no token, a malformed,
    ///    unknown or other tenant's token) starts a new visitor and is charged to the
    ///    tenant's budget for new visitors (`limits.sessions_per_tenant_per_min`).
    ///    Strangers spending that budget therefore cannot lock out returning visitors.
    ///
    /// Over a budget: 429 `rate_limited` with `retry_after`, counted per tenant and
    /// reason in [`Limiter::session_refusals`].
    pub async fn widget_session(
        &self,
        limiter: &Limiter,
        key: &MasterKey,
        req: SessionStart<'_>,
    ) -> Result<Session> {
        limiter
            .check_session_ip(&client_key(req.client), req.widget_key)
            .await?;
        let (tenant, identity_secret, plan) = {
            let mut pc = self.db.conn().await?;
            let mut conn = pc.as_conn();
            let (tenant, sealed) = crate::tenancy::by_widget_key(&mut conn, req.widget_key)
                .await?
                .ok_or_else(|| Error::unauthorized("unknown widget key"))?;
            let plan = crate::plans::for_tenant(&mut conn, &tenant.id).await?;
            (tenant, sealed, plan)
        };
        tracing::Span::current().record("tenant", tenant.id.as_str());
        limiter.remember_widget_key(&tenant.widget_key, &tenant.slug);
        if let Some(origin) = req.origin {
            tenant.check_origin(origin)?;
        }
        if !plan.channels.widget {
            return Err(crate::plans::restricted("widget"));
        }
        let user_id = crate::identity::verify(
            key,
            &tenant,
            identity_secret.as_deref(),
            req.user_id,
            req.user_hash,
        )?;
        // A display name and email count only with a verified identity (the host site
        // vouches for them); an anonymous session's are ignored.
        let told = match user_id {
            Some(_) => Told {
                name: req
                    .user_name
                    .map(|n| check_label("user_name", n))
                    .transpose()?,
                email: req
                    .user_email
                    .map(|e| check_email("user_email", e))
                    .transpose()?,
            },
            None => Told::default(),
        };
        let existing = self.resumable(&tenant, req.visitor_token).await?;
        if existing.is_none() {
            limiter.check_new_visitor(&tenant.id, &tenant.slug).await?;
        }
        let mut session = self
            .start_session(
                &tenant,
                existing,
                user_id.as_deref(),
                told,
                req.locale,
                req.page_url,
            )
            .await?;
        session.features =
            crate::environments::effective_flags(&plan.features, &tenant.settings.flags);
        Ok(session)
    }

    /// The visitor `visitor_token` resumes: one of `tenant`'s visitors of the same
    /// environment, or none (no, a malformed, an unknown or another tenant's token, or a
    /// visitor of the tenant's other environment).
    async fn resumable(
        &self,
        tenant: &Tenant,
        visitor_token: Option<&str>,
    ) -> Result<Option<(VisitorRow, VisitorToken)>> {
        let Some(token) = visitor_token.and_then(VisitorToken::parse) else {
            return Ok(None);
        };
        let mut pc = self.db.conn().await?;
        Ok(
            repo::visitors::by_token_hash(&mut pc.as_conn(), &tenant.id, &token.hash())
                .await?
                .filter(|v| v.environment == tenant.environment.as_str())
                .map(|v| (v, token)),
        )
    }

    /// Start (or resume) a widget session for `tenant`: `existing` is the visitor the
    /// request's token resumes ([`Chat::resumable`]); without one, a new visitor.
    ///
    /// `user_id` is a verified identity (see [`crate::identity::verify`]). A visitor
    /// token only resumes a visitor of the same identity: an anonymous session never
    /// resumes a verified user's visitor (a shared computer after signing out), and a
    /// verified user never resumes another user's. A verified user gets their visitor
    /// (and so its open conversation) on every device: on a device that has none of
    /// the visitor's tokens, a new token is added for that device — the other devices'
    /// tokens keep working. An anonymous visitor of this device that signs in becomes
    /// the user's visitor, when the user has none yet. What a verified user's session
    /// `told` (display name, email) is stored on the visitor and renames their open
    /// conversation's topic ([`Chat::rename`]).
    async fn start_session(
        &self,
        tenant: &Tenant,
        existing: Option<(VisitorRow, VisitorToken)>,
        user_id: Option<&str>,
        told: Told<'_>,
        locale: Option<&str>,
        page_url: Option<&str>,
    ) -> Result<Session> {
        let page_url = page_url
            .filter(|u| (u.starts_with("https://") || u.starts_with("http://")) && u.len() <= 2000);
        let locale = locale.filter(|l| {
            (2..=16).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        let now = now_ms();
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        let (visitor, token) = match (existing, user_id) {
            (Some((v, t)), _) if v.external_user_id.as_deref() == user_id => {
                repo::visitors::touch(&mut conn, &tenant.id, &v.id, locale, page_url, now).await?;
                (v, t)
            }
            (existing, Some(user_id)) => {
                let (v, t) =
                    identified_visitor(&mut conn, tenant, user_id, existing, locale, page_url, now)
                        .await?;
                repo::visitors::touch(&mut conn, &tenant.id, &v.id, locale, page_url, now).await?;
                (v, t)
            }
            (_, None) => {
                let token = VisitorToken::generate();
                let row = new_visitor(tenant, &token, None, locale, page_url, now);
                repo::visitors::insert(&mut conn, &row).await?;
                (row, token)
            }
        };
        let conversation_id = if told.name.is_some() || told.email.is_some() {
            let change = Rename::Visitor {
                visitor_id: &visitor.id,
                name: told.name,
                email: told.email,
            };
            let renamed = transaction!(&mut conn, |tx| self
                .rename(tx, &tenant.id, change, now)
                .await)?;
            self.rename_committed(&tenant.id, renamed).1
        } else {
            repo::conversations::open_for_visitor(&mut conn, &tenant.id, &visitor.id)
                .await?
                .map(|c| c.id)
        };
        let (ws_token, ws_token_expires_at) = self.ws_token(
            &tenant.id,
            tenant.environment,
            &VisitorId::from(visitor.id.as_str()),
            conversation_id.as_deref(),
        );
        Ok(Session {
            visitor_token: token.expose().to_string(),
            ws_token,
            ws_token_expires_at,
            conversation_id,
            theme: tenant.settings.widget_theme(),
            features: Default::default(),
            environment: tenant.environment,
        })
    }

    /// Tell the conversation's sockets (on every node) that someone is typing:
    /// `from` is `agent` or `visitor`. Nothing is stored.
    pub fn typing(&self, conversation_id: &ConversationId, from: &str) {
        let frame = ServerFrame::Typing { from: from.into() };
        self.hub
            .publish(conversation_id, HubEvent::other(frame.to_json()));
    }

    /// The visitor a bearer token belongs to, whether it is a verified user, and the
    /// visitor's tenant as the visitor's environment sees it (its origins and settings)
    /// and its plan's limit on messages a day — read together (one statement for most
    /// production tokens).
    pub async fn authenticate_visitor_with_tenant(
        &self,
        token: &str,
    ) -> Result<(Visitor, bool, Tenant, MessagesPerDay)> {
        let token = VisitorToken::parse(token)
            .ok_or_else(|| Error::unauthorized("invalid visitor token"))?;
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        // Every widget request and socket starts here: index lookups, run inline.
        let (v, tenant, messages_per_day, environment) = crate::db::sqlite_inline_reads(async {
            let (v, tenant, messages_per_day) =
                repo::visitors::by_token_hash_any_with_tenant(&mut conn, &token.hash())
                    .await?
                    .ok_or_else(|| Error::unauthorized("invalid visitor token"))?;
            let messages_per_day =
                MessagesPerDay::from_stored(&tenant.plan_code, messages_per_day)?;
            let environment = Environment::from_stored(&v.environment);
            let tenant = crate::tenancy::in_environment(&mut conn, tenant, environment)
                .await
                .map_err(|e| match e.code {
                    ErrorCode::NotFound => Error::unauthorized("invalid visitor token"),
                    _ => e,
                })?;
            Ok::<_, Error>((v, tenant, messages_per_day, environment))
        })
        .await?;
        let verified = v.external_user_id.is_some();
        Ok((
            Visitor {
                id: v.id.into(),
                tenant_id: v.tenant_id.into(),
                environment,
            },
            verified,
            tenant,
            messages_per_day,
        ))
    }

    /// `unauthorized` unless the visitor a ws token names still exists and is not
    /// erased (tokens issued before an erasure open nothing).
    pub async fn check_socket_visitor(&self, visitor: &Visitor) -> Result<()> {
        let mut pc = self.db.conn().await?;
        if repo::visitors::is_active(&mut pc.as_conn(), &visitor.tenant_id, &visitor.id).await? {
            Ok(())
        } else {
            Err(Error::unauthorized("invalid or expired ws token"))
        }
    }

    /// The visitor's open conversation, created if none (in the visitor's environment).
    /// A new production one is within the tenant's plan: its conversation starts a day
    /// (taken before the insert, given back if none is created) and its cap on open
    /// conversations (counted in the insert's transaction, under the tenant's lock; only
    /// production's open conversations count). Over either: 429 `quota_exceeded`. A
    /// staging conversation takes nothing from the plan.
    pub async fn open_conversation(&self, visitor: &Visitor) -> Result<(OpenedConversation, bool)> {
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        let existing =
            repo::conversations::open_for_visitor(&mut conn, &visitor.tenant_id, &visitor.id)
                .await?;
        let (row, created) = match existing {
            Some(row) => (row, false),
            None if !visitor.environment.counts_against_quotas() => {
                repo::conversations::open_or_create(
                    &mut conn,
                    &visitor.tenant_id,
                    &visitor.id,
                    visitor.environment.as_str(),
                    now_ms(),
                )
                .await?
            }
            None => {
                let plan = crate::plans::for_tenant(&mut conn, &visitor.tenant_id).await?;
                let taken = self
                    .quotas
                    .take(
                        &mut conn,
                        &visitor.tenant_id,
                        Quota::ConversationStartsPerDay,
                        plan.limits.conversation_starts_per_day,
                    )
                    .await?
                    .map_err(Exceeded::into_error)?;
                let cap = plan.limits.active_conversations;
                let opened = transaction!(&mut conn, |tx| {
                    // The visitor's row lock: an erasure running now either commits
                    // first (then nothing is opened) or sees this conversation.
                    if !repo::visitors::lock_active(tx, &visitor.tenant_id, &visitor.id).await? {
                        return Err(Error::unauthorized("invalid visitor token"));
                    }
                    if let Some(cap) = cap {
                        repo::tenants::lock(tx, &visitor.tenant_id).await?;
                        // The visitor's own open conversation may have appeared meanwhile.
                        if let Some(row) = repo::conversations::open_for_visitor(
                            tx,
                            &visitor.tenant_id,
                            &visitor.id,
                        )
                        .await?
                        {
                            return Ok((row, false));
                        }
                        let open = repo::conversations::count_open(tx, &visitor.tenant_id).await?;
                        let used = u64::try_from(open).unwrap_or(0);
                        if used >= u64::from(cap) {
                            return Err(Exceeded {
                                quota: Quota::ActiveConversations,
                                limit: u64::from(cap),
                                used,
                                resets_at: None,
                            }
                            .into_error());
                        }
                    }
                    repo::conversations::open_or_create(
                        tx,
                        &visitor.tenant_id,
                        &visitor.id,
                        visitor.environment.as_str(),
                        now_ms(),
                    )
                    .await
                });
                match opened {
                    Ok((row, true)) => {
                        taken.keep();
                        (row, true)
                    }
                    Ok((row, false)) => {
                        self.quotas.give_back(taken).await;
                        (row, false)
                    }
                    Err(e) => {
                        self.quotas.give_back(taken).await;
                        return Err(e);
                    }
                }
            }
        };
        if created {
            self.usage.record_in(
                &visitor.tenant_id,
                visitor.environment,
                Metric::ConversationsStarted,
                1,
            );
            metrics::counter!("chatorical_conversations_started_total", "environment" => visitor.environment.as_str())
                .increment(1);
        }
        let (ws_token, ws_token_expires_at) = self.ws_token(
            &visitor.tenant_id,
            visitor.environment,
            &visitor.id,
            Some(&row.id),
        );
        Ok((
            OpenedConversation {
                conversation: row.into(),
                ws_token,
                ws_token_expires_at,
            },
            created,
        ))
    }

    /// A conversation of the tenant; with `Some(visitor)` only that visitor's.
    pub async fn conversation(
        &self,
        tenant_id: &TenantId,
        visitor_id: Option<&VisitorId>,
        id: &ConversationId,
    ) -> Result<ConversationView> {
        let mut pc = self.db.conn().await?;
        let row = repo::conversations::get(&mut pc.as_conn(), tenant_id, id)
            .await?
            .filter(|c| visitor_id.is_none_or(|v| *v == c.visitor_id.as_str()))
            .ok_or_else(|| Error::not_found("conversation"))?;
        Ok(row.into())
    }

    /// The tenant's conversations; with `env` (`production` or `staging`) only that
    /// environment's.
    pub async fn list_conversations(
        &self,
        tenant_id: &TenantId,
        status: Option<&str>,
        env: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ConversationView>> {
        let status = status
            .map(|s| ConversationStatus::parse("status", s))
            .transpose()?
            .map(ConversationStatus::as_str);
        let env = env
            .map(|e| Environment::parse("env", e))
            .transpose()?
            .map(Environment::as_str);
        let mut pc = self.db.conn().await?;
        Ok(repo::conversations::list(
            &mut pc.as_conn(),
            tenant_id,
            status,
            env,
            limit.clamp(1, 500),
        )
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
    }

    /// Messages after `since`, at most `limit` (1–500).
    pub async fn history(
        &self,
        tenant_id: &TenantId,
        visitor_id: Option<&VisitorId>,
        conversation_id: &ConversationId,
        since: i64,
        limit: i64,
    ) -> Result<History> {
        let conv = self
            .conversation(tenant_id, visitor_id, conversation_id)
            .await?;
        let mut pc = self.db.conn().await?;
        let rows = repo::messages::since(
            &mut pc.as_conn(),
            tenant_id,
            conversation_id,
            since.max(0),
            limit.clamp(1, 500),
        )
        .await?;
        Ok(History {
            messages: rows.into_iter().map(Into::into).collect(),
            last_seq: conv.last_seq,
        })
    }

    /// Store a message and publish it. The same `client_msg_id` again returns the
    /// stored message and `false`. A visitor writes only into their own conversation
    /// (another is `not_found`). A new message of a production conversation is within
    /// the tenant's plan: one of its messages a day is taken before the write and given
    /// back when nothing new is stored; over the limit, 429 `quota_exceeded` (a retry of
    /// a message stored earlier still gets it). A staging conversation's messages take
    /// nothing from the plan.
    ///
    /// `environment` is the conversation's when the caller knows it (a visitor's is
    /// theirs); `None` reads it.
    pub async fn post_message(
        &self,
        tenant_id: &TenantId,
        conversation_id: &ConversationId,
        environment: Option<Environment>,
        sender: Sender<'_>,
        text: &str,
        client_msg_id: Option<&str>,
    ) -> Result<(MessageView, bool)> {
        let known = Known {
            environment,
            ..Known::default()
        };
        self.post_message_known(
            tenant_id,
            conversation_id,
            known,
            sender,
            text,
            client_msg_id,
        )
        .await
    }

    /// The tenant's plan's limit on messages a day, read now (for
    /// [`Chat::post_message_known`] when the caller reads it alongside other work).
    pub async fn messages_per_day(&self, tenant_id: &TenantId) -> Result<MessagesPerDay> {
        let mut pc = self.db.conn().await?;
        let plan = crate::plans::for_tenant(&mut pc.as_conn(), tenant_id).await?;
        Ok(MessagesPerDay(plan.limits.messages_per_day))
    }

    /// Take one of the tenant's messages of the day against `expected`, the plan's limit as
    /// the caller last read it (a socket's previous send), so that the take overlaps the
    /// plan's read instead of following it. [`Chat::post_message_known`] keeps it only
    /// when the plan, read meanwhile, still has that limit (else it gives it back and
    /// takes against the limit read): a message is always measured against the plan as
    /// it is now, and a limit change takes effect at once.
    pub async fn take_message_ahead(
        &self,
        tenant_id: &TenantId,
        expected: MessagesPerDay,
    ) -> TakenAhead {
        let taken = async {
            let mut pc = self.db.conn().await?;
            self.quotas
                .take(
                    &mut pc.as_conn(),
                    tenant_id,
                    Quota::MessagesPerDay,
                    expected.0,
                )
                .await
        }
        .await;
        TakenAhead {
            limit: expected,
            taken,
        }
    }

    /// [`Chat::post_message`] with what the caller read just before (the plan's limit
    /// read with the visitor's token saves reading it again).
    pub async fn post_message_known(
        &self,
        tenant_id: &TenantId,
        conversation_id: &ConversationId,
        known: Known,
        sender: Sender<'_>,
        text: &str,
        client_msg_id: Option<&str>,
    ) -> Result<(MessageView, bool)> {
        let Known {
            environment,
            messages_per_day,
            ahead,
        } = known;
        check_text(text)?;
        if let Some(id) = client_msg_id {
            check_client_msg_id(id)?;
        }
        // One connection for the plan, the quota and the write.
        let mut pc = self.db.conn().await?;
        let environment = match environment {
            Some(env) => env,
            // Unknown conversations are sorted out by the write (not found).
            None => {
                repo::conversations::environment_of(&mut pc.as_conn(), tenant_id, conversation_id)
                    .await?
                    .map_or(Environment::Production, |e| Environment::from_stored(&e))
            }
        };
        if !environment.counts_against_quotas() {
            return self
                .store_posted(pc, tenant_id, conversation_id, sender, text, client_msg_id)
                .await;
        }
        let taken = {
            let mut conn = pc.as_conn();
            let limit = match messages_per_day {
                Some(MessagesPerDay(limit)) => limit,
                None => {
                    crate::plans::for_tenant(&mut conn, tenant_id)
                        .await?
                        .limits
                        .messages_per_day
                }
            };
            match ahead {
                // Taken against the limit the plan has now: as good as taken now.
                Some(ahead) if ahead.limit == MessagesPerDay(limit) => ahead.taken?,
                ahead => {
                    // Taken against a limit the plan no longer has: back before taking again.
                    if let Some(TakenAhead {
                        taken: Ok(Ok(taken)),
                        ..
                    }) = ahead
                    {
                        self.quotas.give_back(taken).await;
                    }
                    self.quotas
                        .take(&mut conn, tenant_id, Quota::MessagesPerDay, limit)
                        .await?
                }
            }
        };
        let taken = match taken {
            Ok(taken) => taken,
            Err(exceeded) => {
                drop(pc);
                if let Sender::Visitor(v) = sender {
                    // Only their own conversation's messages, as on the usual path.
                    self.conversation(tenant_id, Some(v), conversation_id)
                        .await?;
                }
                let mut pc = self.db.conn().await?;
                if let Some(id) = client_msg_id
                    && let Some(stored) = repo::messages::by_client_msg_id(
                        &mut pc.as_conn(),
                        tenant_id,
                        conversation_id,
                        id,
                    )
                    .await?
                {
                    return Ok((stored.into(), false));
                }
                return Err(exceeded.into_error());
            }
        };
        let result = self
            .store_posted(pc, tenant_id, conversation_id, sender, text, client_msg_id)
            .await;
        match &result {
            Ok((_, true)) => taken.keep(),
            _ => self.quotas.give_back(taken).await,
        }
        result
    }

    /// [`Chat::post_message`] after the checks (`pc` is the connection they used; it
    /// goes back to the pool before the write).
    async fn store_posted(
        &self,
        pc: crate::db::PooledConn,
        tenant_id: &TenantId,
        conversation_id: &ConversationId,
        sender: Sender<'_>,
        text: &str,
        client_msg_id: Option<&str>,
    ) -> Result<(MessageView, bool)> {
        let (visitor_id, author) = match sender {
            Sender::Visitor(id) => (Some(id), None),
            Sender::Agent(name) => (None, Some(name)),
            Sender::System => (None, None),
        };
        let direction = sender.direction();
        let client_msg_id = client_msg_id.map_or_else(|| new_id("srv"), str::to_string);
        drop(pc);
        let now = now_ms();
        let row = MessageRow {
            id: new_id("msg"),
            tenant_id: tenant_id.to_string(),
            conversation_id: conversation_id.to_string(),
            seq: 0,
            direction: direction.as_str().to_string(),
            author: author.map(str::to_string),
            body: text.to_string(),
            client_msg_id: Some(client_msg_id.clone()),
            created_at: now,
            edited_at: None,
            telegram_message_id: None,
            erased_at: None,
            reply_to: None,
        };
        // Through the group-commit writer (see `writer`): with the other messages
        // waiting, in one transaction that takes the next seq of the open conversation
        // (checking tenant and visitor), inserts the row (a duplicate client_msg_id
        // fails on the unique index and the message is stored again alone, where that
        // rolls its seq back) and queues the outbox item; answered after the commit.
        // Everything unusual (not found, closed, a retry) is sorted out afterwards, off
        // the common path.
        let stored = self
            .writers()
            .store(row, visitor_id.map(VisitorId::as_str), now)
            .await;
        let (row, environment) = match stored {
            Ok(Some(stored)) => stored,
            // Not open, or not theirs: another visitor's (or tenant's) conversation is
            // not found; a retry of a stored message returns it even once closed.
            Ok(None) => {
                self.conversation(tenant_id, visitor_id, conversation_id)
                    .await?;
                let mut pc = self.db.conn().await?;
                return repo::messages::by_client_msg_id(
                    &mut pc.as_conn(),
                    tenant_id,
                    conversation_id,
                    &client_msg_id,
                )
                .await?
                .map(|m| (m.into(), false))
                .ok_or_else(|| {
                    Error::new(ErrorCode::ConversationClosed, "the conversation is closed")
                });
            }
            // The same client_msg_id again (a retry, or a concurrent send that won):
            // the seq taken above was rolled back with the insert. Only that constraint:
            // any other unique violation is a real error.
            Err(e)
                if e.unique_violation().is_some_and(|v| {
                    v.is(
                        "messages_conversation_id_client_msg_id_key",
                        "messages",
                        &["conversation_id", "client_msg_id"],
                    )
                }) =>
            {
                let mut pc = self.db.conn().await?;
                return repo::messages::by_client_msg_id(
                    &mut pc.as_conn(),
                    tenant_id,
                    conversation_id,
                    &client_msg_id,
                )
                .await?
                .map(|m| (m.into(), false))
                .ok_or(e);
            }
            Err(e) => return Err(e),
        };
        Ok((self.message_stored(row, environment), true))
    }

    /// After the commit of a new message, whoever stored it: count it in the tenant's
    /// usage (apart for its conversation's `environment`), wake this process's workers
    /// (an inbound message may have queued outbox items) and publish it to the
    /// conversation's sockets.
    pub fn message_stored(&self, row: MessageRow, environment: Environment) -> MessageView {
        let direction = Direction::from_stored(&row.direction);
        let metric = match direction {
            Direction::Inbound => {
                self.wake.wake();
                Metric::MessagesInbound
            }
            Direction::Outbound => Metric::MessagesOutbound,
        };
        self.usage.record_in(
            &TenantId::from(row.tenant_id.as_str()),
            environment,
            metric,
            1,
        );
        metrics::counter!("chatorical_messages_stored_total", "direction" => direction.as_str(), "environment" => environment.as_str())
            .increment(1);
        self.publish_message(row)
    }

    /// Tell the conversation's sockets about a stored message.
    pub fn publish_message(&self, row: MessageRow) -> MessageView {
        let view = MessageView::from(row);
        let frame = ServerFrame::Message {
            message: view.clone(),
        }
        .to_json();
        let event = HubEvent {
            seq: Some(view.seq),
            frame,
        };
        self.hub.publish(&view.conversation_id, event);
        view
    }

    /// Tell the conversation's sockets about an edited message.
    pub fn publish_edit(&self, row: MessageRow) -> MessageView {
        let view = MessageView::from(row);
        let frame = ServerFrame::MessageEdited {
            message: view.clone(),
        }
        .to_json();
        self.hub
            .publish(&view.conversation_id, HubEvent::other(frame));
        view
    }

    /// `POST /v1/admin/conversations/{id}/close` (`conversations:write`; another
    /// tenant's conversation is `not_found`): close a conversation, queue the closing of
    /// its topic, record `conversation.closed`, and tell its sockets. Closing a closed
    /// conversation changes and records nothing.
    pub async fn close(
        &self,
        caller: &Caller,
        tenant: &Tenant,
        conversation_id: &ConversationId,
    ) -> Result<ConversationView> {
        caller.require(&Scope::new(Resource::Conversations, ScopeAccess::Write))?;
        caller.check_tenant(tenant)?;
        let tenant_id = &tenant.id;
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        let now = now_ms();
        let closed = transaction!(&mut conn, |tx| {
            let closed = repo::conversations::close(tx, tenant_id, conversation_id, now).await?;
            if closed && let Some(lane) = conversation_lane(tx, tenant_id, conversation_id).await? {
                let job = outbox::Job::CloseTopic {
                    conversation_id: conversation_id.clone(),
                };
                let key = format!("conv_close_{conversation_id}");
                outbox::enqueue(tx, tenant_id, &job, &key, &lane, now).await?;
            }
            if closed {
                crate::audit::record(
                    tx,
                    caller,
                    crate::audit::Entry::new(crate::audit::Action::ConversationClosed)
                        .tenant(tenant_id)
                        .target(conversation_id.to_string()),
                )
                .await?;
            }
            Ok(closed)
        })?;
        if closed {
            self.wake.wake();
        }
        let row = repo::conversations::get(&mut conn, tenant_id, conversation_id)
            .await?
            .ok_or_else(|| Error::not_found("conversation"))?;
        if closed {
            self.hub.publish(
                conversation_id,
                HubEvent::other(
                    ServerFrame::ConversationClosed {
                        conversation_id: conversation_id.to_string(),
                    }
                    .to_json(),
                ),
            );
        }
        Ok(row.into())
    }

    /// `PATCH /v1/admin/conversations/{id}`: give a conversation a subject
    /// (`conversations:write`; another tenant's conversation is `not_found`). Its
    /// Telegram topic is renamed after it; the same subject again changes nothing. A new
    /// subject records `conversation.updated` ([`subject_changed`]) in the same
    /// transaction. Returns the conversation and whether the topic name changed.
    pub async fn set_subject(
        &self,
        caller: &Caller,
        tenant: &Tenant,
        conversation_id: &ConversationId,
        subject: &str,
    ) -> Result<(ConversationView, bool)> {
        caller.require(&Scope::new(Resource::Conversations, ScopeAccess::Write))?;
        caller.check_tenant(tenant)?;
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        let now = now_ms();
        let change = Rename::Subject {
            conversation_id,
            subject,
        };
        let (row, renamed) = transaction!(&mut conn, |tx| {
            let renamed = self.rename(tx, &tenant.id, change, now).await?;
            if renamed.changed {
                crate::audit::record(
                    tx,
                    caller,
                    subject_changed(&tenant.id, conversation_id, subject, renamed.renamed),
                )
                .await?;
            }
            let row = repo::conversations::get(tx, &tenant.id, conversation_id)
                .await?
                .ok_or_else(|| Error::not_found("conversation"))?;
            Ok((row, renamed))
        })?;
        let (renamed, _) = self.rename_committed(&tenant.id, renamed);
        Ok((row.into(), renamed))
    }

    /// `POST /v1/widget/identify`: the visitor says who they are (`name` and/or
    /// `email`; at least one). Stored on the visitor; their open conversation's topic is
    /// renamed after them unless it has a subject.
    pub async fn identify(
        &self,
        visitor: &Visitor,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<VisitorIdentity> {
        if name.is_none() && email.is_none() {
            return Err(Error::validation("name", "give a name, an email or both"));
        }
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        let now = now_ms();
        let change = Rename::Visitor {
            visitor_id: &visitor.id,
            name,
            email,
        };
        let tenant_id = &visitor.tenant_id;
        let (row, renamed) = transaction!(&mut conn, |tx| {
            let renamed = self.rename(tx, tenant_id, change, now).await?;
            let row = repo::visitors::get(tx, tenant_id, &visitor.id)
                .await?
                .ok_or_else(|| Error::not_found("visitor"))?;
            Ok((row, renamed))
        })?;
        self.rename_committed(tenant_id, renamed);
        Ok(VisitorIdentity {
            name: row.name,
            email: row.email,
        })
    }

    /// Every rename, from every entry point (the admin API, the widget's identify, a
    /// verified identity's display name, `/subject` in Telegram), inside the caller's
    /// transaction: check the input (`validation_failed` naming the field), store the
    /// subject or the visitor's name and email, and — only when that changes the topic
    /// name ([`topic_name`]) — queue a [`outbox::Job::RenameTopic`] in the
    /// conversation's lane, after its earlier messages. A rename to the name the topic
    /// has already changes nothing and queues nothing.
    ///
    /// The item's idempotency key is unique per rename (`conv_rename_<conversation>_<id>`):
    /// every rename is delivered, and the delivery reads the name then, so renames
    /// queued in a row coalesce into one call (see `telegram::delivery`).
    pub async fn rename(
        &self,
        tx: &mut Conn<'_>,
        tenant_id: &TenantId,
        change: Rename<'_>,
        now: i64,
    ) -> Result<Renamed> {
        // First what would change (checked input, reads only), then the writes.
        let (conversation_id, renamed, checked, environment) = match change {
            Rename::Subject {
                conversation_id,
                subject,
            } => {
                let subject = check_label("subject", subject)?;
                let conv = repo::conversations::get(tx, tenant_id, conversation_id)
                    .await?
                    .ok_or_else(|| Error::not_found("conversation"))?;
                if conv.subject.as_deref() == Some(subject) {
                    return Ok(Renamed {
                        environment: Environment::from_stored(&conv.environment),
                        conversation_id: Some(conv.id),
                        renamed: false,
                        changed: false,
                        quota: Taken::nothing(),
                    });
                }
                let visitor = repo::visitors::get(tx, tenant_id, &conv.visitor_id).await?;
                let after = ConversationRow {
                    subject: Some(subject.to_string()),
                    ..conv.clone()
                };
                let renamed =
                    topic_name(&conv, visitor.as_ref()) != topic_name(&after, visitor.as_ref());
                let checked = Rename::Subject {
                    conversation_id,
                    subject,
                };
                let env = Environment::from_stored(&conv.environment);
                (Some(conv.id), renamed, checked, env)
            }
            Rename::Visitor {
                visitor_id,
                name,
                email,
            } => {
                let name = name.map(|n| check_label("name", n)).transpose()?;
                let email = email.map(|e| check_email("email", e)).transpose()?;
                let visitor = repo::visitors::get(tx, tenant_id, visitor_id)
                    .await?
                    .ok_or_else(|| Error::not_found("visitor"))?;
                let conv = repo::conversations::open_for_visitor(tx, tenant_id, visitor_id).await?;
                let after = VisitorRow {
                    name: name.map(str::to_string).or_else(|| visitor.name.clone()),
                    email: email.map(str::to_string).or_else(|| visitor.email.clone()),
                    ..visitor.clone()
                };
                let env = Environment::from_stored(&visitor.environment);
                if after.name == visitor.name && after.email == visitor.email {
                    return Ok(Renamed {
                        conversation_id: conv.map(|c| c.id),
                        renamed: false,
                        changed: false,
                        quota: Taken::nothing(),
                        environment: env,
                    });
                }
                let renamed = conv
                    .as_ref()
                    .is_some_and(|c| topic_name(c, Some(&visitor)) != topic_name(c, Some(&after)));
                let checked = Rename::Visitor {
                    visitor_id,
                    name,
                    email,
                };
                (conv.map(|c| c.id), renamed, checked, env)
            }
        };
        // A rename that changes the topic's name is one of the plan's renames a day:
        // an agent's is refused past the limit; a visitor's name is still stored, and
        // the topic keeps the name it has. Staging's renames take nothing from the plan.
        let (renamed, quota) = if renamed && !environment.counts_against_quotas() {
            (true, Taken::nothing())
        } else if renamed {
            let limit = crate::plans::for_tenant(tx, tenant_id)
                .await?
                .limits
                .topic_renames_per_day;
            match self
                .quotas
                .take(tx, tenant_id, Quota::TopicRenamesPerDay, limit)
                .await?
            {
                Ok(taken) => (true, taken),
                Err(_) if matches!(checked, Rename::Visitor { .. }) => (false, Taken::nothing()),
                Err(exceeded) => return Err(exceeded.into_error()),
            }
        } else {
            (false, Taken::nothing())
        };
        match checked {
            Rename::Subject {
                conversation_id,
                subject,
            } => {
                repo::conversations::set_subject(tx, tenant_id, conversation_id, subject).await?;
            }
            Rename::Visitor {
                visitor_id,
                name,
                email,
            } => {
                repo::visitors::set_identity(tx, tenant_id, visitor_id, name, email).await?;
            }
        }
        if let (true, Some(id)) = (renamed, &conversation_id)
            && let Some(lane) = environment_lane(tx, tenant_id, environment, id).await?
        {
            let job = outbox::Job::RenameTopic {
                conversation_id: id.clone(),
            };
            let key = format!("conv_rename_{id}_{}", new_id("rn"));
            outbox::enqueue(tx, tenant_id, &job, &key, &lane, now).await?;
        }
        Ok(Renamed {
            conversation_id,
            renamed,
            changed: true,
            quota,
            environment,
        })
    }

    /// After the commit of a transaction that ran [`Chat::rename`]: the rename stays
    /// counted (in the plan's quota and the usage), and the outbox workers of this
    /// process wake for the queued rename. Returns whether the topic is renamed and the
    /// conversation it concerns.
    pub fn rename_committed(
        &self,
        tenant_id: &TenantId,
        renamed: Renamed,
    ) -> (bool, Option<String>) {
        renamed.quota.keep();
        if renamed.renamed {
            self.usage
                .record_in(tenant_id, renamed.environment, Metric::TopicRenames, 1);
            self.wake.wake();
        }
        (renamed.renamed, renamed.conversation_id)
    }

    /// Wake this process's outbox workers (after a commit that queued items).
    pub fn wake_outbox(&self) {
        self.wake.wake();
    }
}

/// What a session says about its verified user (display name, email), checked.
#[derive(Debug, Clone, Copy, Default)]
struct Told<'a> {
    name: Option<&'a str>,
    email: Option<&'a str>,
}

fn new_visitor(
    tenant: &Tenant,
    token: &VisitorToken,
    user_id: Option<&str>,
    locale: Option<&str>,
    page_url: Option<&str>,
    now: i64,
) -> VisitorRow {
    VisitorRow {
        id: new_id("vis"),
        tenant_id: tenant.id.to_string(),
        token_hash: token.hash(),
        locale: locale.map(str::to_string),
        created_at: now,
        last_seen_at: now,
        page_url: page_url.map(str::to_string),
        external_user_id: user_id.map(str::to_string),
        name: None,
        email: None,
        environment: tenant.environment.as_str().to_string(),
        erased_at: None,
    }
}

/// The visitor of a verified user, with a token for this device. `existing` is the
/// visitor this device's token belongs to (not the user's: that case resumes).
async fn identified_visitor(
    conn: &mut Conn<'_>,
    tenant: &Tenant,
    user_id: &str,
    existing: Option<(VisitorRow, VisitorToken)>,
    locale: Option<&str>,
    page_url: Option<&str>,
    now: i64,
) -> Result<(VisitorRow, VisitorToken)> {
    // Another device of the user got there first: join it, with a token of our own.
    let env = tenant.environment.as_str();
    if let Some(v) = repo::visitors::by_external_user(conn, &tenant.id, env, user_id).await? {
        let token = VisitorToken::generate();
        repo::visitors::add_token(conn, &tenant.id, &v.id, &token.hash(), now).await?;
        return Ok((v, token));
    }
    // This device chatted anonymously before signing in: that visitor (and its
    // conversation) becomes the user's.
    if let Some((v, t)) = existing.filter(|(v, _)| v.external_user_id.is_none()) {
        match repo::visitors::claim_external_user(conn, &tenant.id, &v.id, user_id).await {
            Ok(true) => {
                let v = VisitorRow {
                    external_user_id: Some(user_id.to_string()),
                    ..v
                };
                return Ok((v, t));
            }
            // Claimed meanwhile, or the user's visitor was created meanwhile: below.
            Ok(false) => {}
            Err(e) if e.code == ErrorCode::Conflict => {}
            Err(e) => return Err(e),
        }
    }
    // The user's first session. Concurrent first sessions (two devices at once) race
    // on the unique (tenant, external_user_id) index: the loser joins the winner.
    let token = VisitorToken::generate();
    let row = new_visitor(tenant, &token, Some(user_id), locale, page_url, now);
    if repo::visitors::insert_if_absent(conn, &row).await? {
        return Ok((row, token));
    }
    let v = repo::visitors::by_external_user(conn, &tenant.id, env, user_id)
        .await?
        .ok_or_else(|| Error::internal("identified visitor vanished after a conflict"))?;
    repo::visitors::add_token(conn, &tenant.id, &v.id, &token.hash(), now).await?;
    Ok((v, token))
}

/// The audit entry of a conversation's subject change (`conversation.updated`). The
/// subject itself is left out — agents write what they like there, names and order
/// numbers included — only that it changed, its length, and whether the topic was
/// renamed.
pub fn subject_changed(
    tenant_id: &TenantId,
    conversation_id: &ConversationId,
    subject: &str,
    topic_renamed: bool,
) -> crate::audit::Entry {
    crate::audit::Entry::new(crate::audit::Action::ConversationUpdated)
        .tenant(tenant_id)
        .target(conversation_id.to_string())
        .changes(serde_json::json!({
            "subject_changed": true,
            "subject_chars": subject.trim().chars().count(),
            "topic_renamed": topic_renamed,
        }))
}

/// The one way a message is stored, inside the caller's transaction (the widget, the
/// socket, the admin API and the Telegram webhook all come here): take the open
/// conversation's next seq — only the visitor's own conversation when `visitor_id` is
/// given — insert the row, and queue an inbound message for Telegram when the tenant
/// has a group (a staging conversation's: staging's own group when it has one). `None`
/// when the conversation is not open (or not the visitor's); a duplicate
/// `client_msg_id` fails on its unique constraint (see [`Error::unique_violation`])
/// and rolls the seq back with the transaction. Returns the row and its
/// conversation's environment.
pub async fn store_message(
    tx: &mut Conn<'_>,
    row: MessageRow,
    visitor_id: Option<&str>,
    now: i64,
) -> Result<Option<(MessageRow, Environment)>> {
    let Some((seq, group, environment)) = repo::conversations::next_seq_for_message(
        tx,
        &row.tenant_id,
        &row.conversation_id,
        visitor_id,
        now,
    )
    .await?
    else {
        return Ok(None);
    };
    let row = MessageRow { seq, ..row };
    let environment = Environment::from_stored(&environment);
    repo::messages::insert(tx, &row).await?;
    if Direction::from_stored(&row.direction) == Direction::Inbound
        && let Some(group) = group
    {
        let group = crate::telegram::group_for(tx, &row.tenant_id, environment, group).await?;
        enqueue_for_group(tx, &row, group, now).await?;
    }
    Ok(Some((row, environment)))
}

/// [`store_message`] for many messages in the caller's transaction, in order, with the
/// same answers it gives each alone: the seqs and the rows of all of them in one
/// statement on PostgreSQL (see `repo::messages::insert_taking_seqs`; a conversation's
/// messages take its next seqs in the order given), then the outbox items of the
/// inbound ones in one INSERT. A batch in which one conversation is written by
/// different visitors (or by a visitor and an agent) goes message by message. A
/// duplicate `client_msg_id` fails the INSERT (and the caller's transaction), as alone.
pub async fn store_messages(
    tx: &mut Conn<'_>,
    batch: &[writer::NewMessage],
) -> Result<Vec<Option<(MessageRow, Environment)>>> {
    let rows: Vec<(&MessageRow, Option<&str>)> = batch
        .iter()
        .map(|m| (&m.row, m.visitor_id.as_deref()))
        .collect();
    let consistent = rows.iter().enumerate().all(|(i, (r, v))| {
        rows[..i].iter().all(|(o, ov)| {
            (&o.tenant_id, &o.conversation_id) != (&r.tenant_id, &r.conversation_id) || ov == v
        })
    });
    if !consistent {
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            out.push(store_message(tx, m.row.clone(), m.visitor_id.as_deref(), m.now).await?);
        }
        return Ok(out);
    }
    let now = batch.iter().map(|m| m.now).max().unwrap_or_else(now_ms);
    let placed = repo::messages::insert_taking_seqs(tx, &rows, now).await?;
    let mut answers = Vec::with_capacity(batch.len());
    // The outbox items of all of them, in their order, in one INSERT.
    let mut lanes = crate::telegram::relays::Lanes::default();
    let mut items = Vec::new();
    for (place, m) in placed.into_iter().zip(batch) {
        let Some(place) = place else {
            answers.push(None);
            continue;
        };
        let environment = Environment::from_stored(&place.environment);
        let row = MessageRow {
            seq: place.seq,
            ..m.row.clone()
        };
        if Direction::from_stored(&row.direction) == Direction::Inbound
            && let Some(group) = place.group_chat_id
        {
            let group = crate::telegram::group_for(tx, &row.tenant_id, environment, group).await?;
            let tenant_id = TenantId::from(row.tenant_id.as_str());
            let lane = lanes
                .lane(tx, &tenant_id, &row.conversation_id, group)
                .await?;
            items.extend(
                outbox_items(&row, &lane, m.now)
                    .into_iter()
                    .map(|i| (tenant_id.clone(), i)),
            );
        }
        answers.push(Some((row, environment)));
    }
    outbox::enqueue_many(tx, &items).await?;
    Ok(answers)
}

/// The outbox lane for the conversation's topic in the environment's Telegram group
/// (staging's own group when it has one, else the tenant's): the lane of the bot the
/// topic belongs to (see `telegram::relays`); `None` without a Telegram connection.
async fn environment_lane(
    tx: &mut Conn<'_>,
    tenant_id: &TenantId,
    environment: Environment,
    conversation_id: &str,
) -> Result<Option<String>> {
    let Some(cfg) = repo::telegram::get(tx, tenant_id).await? else {
        return Ok(None);
    };
    let group = crate::telegram::group_for(tx, tenant_id, environment, cfg.group_chat_id).await?;
    Ok(Some(
        crate::telegram::relays::conversation_lane(tx, &cfg, conversation_id, group).await?,
    ))
}

/// The outbox lane of a conversation's Telegram group (see [`environment_lane`]).
async fn conversation_lane(
    tx: &mut Conn<'_>,
    tenant_id: &TenantId,
    conversation_id: &str,
) -> Result<Option<String>> {
    let environment = repo::conversations::environment_of(tx, tenant_id, conversation_id)
        .await?
        .map_or(Environment::Production, |e| Environment::from_stored(&e));
    environment_lane(tx, tenant_id, environment, conversation_id).await
}

/// Queue a visitor message for its Telegram topic in the tenant's group `group_chat_id`.
async fn enqueue_for_group(
    tx: &mut Conn<'_>,
    row: &MessageRow,
    group_chat_id: i64,
    now: i64,
) -> Result<()> {
    let tenant_id = TenantId::from(row.tenant_id.as_str());
    let lane =
        crate::telegram::relays::lane_for(tx, &tenant_id, &row.conversation_id, group_chat_id)
            .await?;
    let items: Vec<_> = outbox_items(row, &lane, now)
        .into_iter()
        .map(|i| (tenant_id.clone(), i))
        .collect();
    outbox::enqueue_many(tx, &items).await?;
    Ok(())
}

/// The outbox items that carry a visitor message to its Telegram topic on `lane`.
/// A message too long for one Telegram message goes as ordered parts, one item per
/// part (`…_part_<i>`): the lane delivers them in order, each part is retried on its
/// own, and a part that went out is never sent again.
fn outbox_items(row: &MessageRow, lane: &str, now: i64) -> Vec<outbox::NewItem> {
    let ranges = split::split(&row.body);
    let parts = ranges.len();
    ranges
        .into_iter()
        .enumerate()
        .map(|(i, range)| {
            let (part, key) = if parts == 1 {
                (None, format!("conv_msg_out_{}", row.id))
            } else {
                let part = outbox::job::Part {
                    part: i + 1,
                    parts,
                    start: range.start,
                    end: range.end,
                };
                (
                    Some(part),
                    format!("conv_msg_out_{}_part_{}", row.id, i + 1),
                )
            };
            outbox::NewItem {
                job: outbox::Job::SendMessage(outbox::job::MessageJob {
                    conversation_id: row.conversation_id.as_str().into(),
                    message_id: row.id.as_str().into(),
                    part,
                }),
                idempotency_key: key,
                lane: lane.to_string(),
                now,
            }
        })
        .collect()
}
