//! Rows as stored. Domain meaning (parsed settings, scopes) is added by the repos.

use diesel::prelude::*;

use super::schema::{
    api_keys, conversations, messages, outbox, telegram_configs, telegram_polls, telegram_relays,
    tenants, usage_daily, visitors,
};

/// A tenant row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants)]
pub struct TenantRow {
    /// Opaque id (`tn_…`).
    pub id: String,
    /// URL-safe unique name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Public widget key (`wk_…`).
    pub widget_key: String,
    /// Settings as JSON text.
    pub settings: String,
    /// Created, epoch ms.
    pub created_at: i64,
    /// Last changed, epoch ms.
    pub updated_at: i64,
    /// Identity verification secret, sealed for (tenant, "identity.secret").
    pub identity_secret_enc: Option<String>,
    /// The tenant's plan (`plans.code`).
    pub plan_code: String,
}

/// An API key row (never the key itself).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    /// Opaque id (`key_…`).
    pub id: String,
    /// Owning tenant; `None` for platform keys.
    pub tenant_id: Option<String>,
    /// Label.
    pub name: String,
    /// SHA-256 hex of the key.
    pub key_hash: String,
    /// First 12 characters of the key.
    pub prefix: String,
    /// Last 4 characters of the key.
    pub last4: String,
    /// Space-separated scopes.
    pub scopes: String,
    /// Issued, epoch ms.
    pub created_at: i64,
    /// Expiry, epoch ms.
    pub expires_at: Option<i64>,
    /// Revocation time, epoch ms.
    pub revoked_at: Option<i64>,
    /// Last use (debounced), epoch ms.
    pub last_used_at: Option<i64>,
    /// The key that issued this one; `None` when an operator issued it on the command line.
    pub issued_by: Option<String>,
}

/// A visitor row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = visitors)]
pub struct VisitorRow {
    /// Opaque id (`vis_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// SHA-256 hex of the visitor token.
    pub token_hash: String,
    /// Preferred locale, if told.
    pub locale: Option<String>,
    /// Created, epoch ms.
    pub created_at: i64,
    /// Last session, epoch ms.
    pub last_seen_at: i64,
    /// The page the widget was last opened on.
    pub page_url: Option<String>,
    /// The verified user id of the host site (identity verification), if any.
    pub external_user_id: Option<String>,
    /// The name the visitor gave (widget identify, or a verified identity's display name).
    pub name: Option<String>,
    /// The email address the visitor gave.
    pub email: Option<String>,
    /// The environment whose widget key started the visitor's first session
    /// (`production` or `staging`).
    pub environment: String,
    /// When the visitor was erased (profile, identity and tokens removed), epoch ms.
    pub erased_at: Option<i64>,
}

/// A conversation row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = conversations)]
pub struct ConversationRow {
    /// Opaque id (`cv_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The visitor who started it.
    pub visitor_id: String,
    /// `open` or `closed`.
    pub status: String,
    /// Highest message seq.
    pub last_seq: i64,
    /// Created, epoch ms.
    pub created_at: i64,
    /// Last activity, epoch ms.
    pub updated_at: i64,
    /// Closed, epoch ms.
    pub closed_at: Option<i64>,
    /// The conversation's forum topic, once created.
    pub telegram_topic_id: Option<i64>,
    /// Whether the topic was closed (closeForumTopic) with the conversation.
    pub telegram_topic_closed: bool,
    /// The subject agents gave the conversation (names its topic).
    pub subject: Option<String>,
    /// The name the topic was last given in Telegram (created or renamed).
    pub telegram_topic_name: Option<String>,
    /// The visitor's environment (`production` or `staging`).
    pub environment: String,
}

/// A message row.
// `None` is bound as NULL, not rendered as DEFAULT: one statement shape, so
// PostgreSQL prepares the insert once per connection instead of on every row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages, treat_none_as_default_value = false)]
pub struct MessageRow {
    /// Opaque id (`msg_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Conversation.
    pub conversation_id: String,
    /// Dense per-conversation sequence number, from 1.
    pub seq: i64,
    /// `inbound` (visitor → agents) or `outbound` (agents → visitor).
    pub direction: String,
    /// Author display name (agents); `None` for the visitor.
    pub author: Option<String>,
    /// Text.
    pub body: String,
    /// Client-chosen idempotency id.
    pub client_msg_id: Option<String>,
    /// Created, epoch ms.
    pub created_at: i64,
    /// Last edit, epoch ms.
    pub edited_at: Option<i64>,
    /// The Telegram message carrying it (either direction).
    pub telegram_message_id: Option<i64>,
    /// When its text was erased with its visitor (the body is then empty), epoch ms.
    pub erased_at: Option<i64>,
    /// The visitor messages an agent's message answers (a Telegram reply): a JSON
    /// array of message ids; `None` when it answers nothing in particular.
    pub reply_to: Option<String>,
}

/// A tenant's Telegram connection (secrets sealed with the master key).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = telegram_configs)]
pub struct TelegramConfigRow {
    /// Tenant.
    pub tenant_id: String,
    /// Bot token, sealed for (tenant, "bot_token").
    pub bot_token_enc: String,
    /// Webhook secret, sealed for (tenant, "webhook_secret").
    pub webhook_secret_enc: String,
    /// The bot's user id (from getMe).
    pub bot_id: i64,
    /// The bot's username.
    pub bot_username: String,
    /// The forum supergroup.
    pub group_chat_id: i64,
    /// Topic used when the bot may not create topics.
    pub default_topic_id: Option<i64>,
    /// Whether the bot may create topics (checked at setup).
    pub can_manage_topics: bool,
    /// Delivery and webhook switched on.
    pub enabled: bool,
    /// Created, epoch ms.
    pub created_at: i64,
    /// Last changed, epoch ms.
    pub updated_at: i64,
    /// Retention also deletes a purged conversation's forum topic (opt-in).
    pub delete_topics_on_retention: bool,
    /// How updates arrive: `webhook` (Telegram calls us) or `polling` (a worker calls
    /// getUpdates), see `telegram::TelegramMode`.
    pub mode: String,
}

/// A relay bot of a tenant: another bot in its forum group with budgets of its own
/// (secrets sealed with the master key, bound to the tenant and the relay).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = telegram_relays)]
pub struct TelegramRelayRow {
    /// Tenant.
    pub tenant_id: String,
    /// The relay bot's user id (from getMe).
    pub bot_id: i64,
    /// The relay bot's username.
    pub bot_username: String,
    /// Bot token, sealed for (tenant, `telegram.relay.<bot id>.bot_token`).
    pub bot_token_enc: String,
    /// Webhook secret, sealed for (tenant, `telegram.relay.<bot id>.webhook_secret`).
    pub webhook_secret_enc: String,
    /// Added, epoch ms.
    pub created_at: i64,
}

/// Where long polling of a tenant's bot stands (`telegram_polls`).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = telegram_polls)]
pub struct TelegramPollRow {
    /// Tenant.
    pub tenant_id: String,
    /// The bot the offset belongs to (update ids are counted per bot).
    pub bot_id: i64,
    /// The next update id to ask getUpdates for (the last handled one + 1).
    pub poll_offset: Option<i64>,
    /// When `poll_offset` was stored, epoch ms.
    pub poll_offset_at: Option<i64>,
    /// The poller holding the lease.
    pub leased_by: Option<String>,
    /// Until when, epoch ms.
    pub lease_until: Option<i64>,
    /// Last getUpdates answered, epoch ms.
    pub last_poll_at: Option<i64>,
    /// What the last failed getUpdates said (cleared by the next answer).
    pub last_error: Option<String>,
    /// When, epoch ms.
    pub last_error_at: Option<i64>,
}

/// A durable outbox item.
// `None` is bound as NULL, not rendered as DEFAULT: one statement shape, so
// PostgreSQL prepares the insert once per connection instead of on every row.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = outbox, treat_none_as_default_value = false)]
pub struct OutboxRow {
    /// Opaque, time-ordered id (`ob_…`): order within a lane.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// What to do, e.g. `telegram.send_message`.
    pub kind: String,
    /// Unique per tenant; enqueueing the same key again is a no-op.
    pub idempotency_key: String,
    /// Items of one lane are delivered one at a time, in order (e.g. one Telegram chat).
    pub lane: String,
    /// JSON payload.
    pub payload: String,
    /// queued | in_flight | delivered | dead | cancelled.
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// Not before, epoch ms.
    pub next_attempt_at: i64,
    /// Lease expiry while in flight, epoch ms.
    pub lease_until: Option<i64>,
    /// Which worker holds the lease.
    pub leased_by: Option<String>,
    /// Last failure, for people.
    pub last_error: Option<String>,
    /// Enqueued, epoch ms.
    pub created_at: i64,
    /// Last change, epoch ms.
    pub updated_at: i64,
    /// Delivered, epoch ms.
    pub delivered_at: Option<i64>,
    /// The conversation the item is about, if any (retention and erasure find a
    /// conversation's items by it).
    pub conversation_id: Option<String>,
}

/// One tenant's count of one metric on one day.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = usage_daily)]
pub struct UsageRow {
    /// Tenant.
    pub tenant_id: String,
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Metric name, e.g. `messages_inbound`.
    pub metric: String,
    /// The count.
    pub count: i64,
}

/// A tenant's override of one widget string in one locale.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::templates)]
pub struct TemplateRow {
    /// Tenant.
    pub tenant_id: String,
    /// String key, e.g. `widget.title` (one of `i18n::CATALOGUE`).
    pub key: String,
    /// Normalised locale, `de` or `de-AT`.
    pub locale: String,
    /// The template: text with `{{variable}}` placeholders (validated when stored).
    pub body: String,
    /// Last changed, epoch ms.
    pub updated_at: i64,
}

/// A plan of the catalogue (limits: `None` = unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::plans)]
pub struct PlanRow {
    /// Slug, the primary key.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Whether tenants can be put on it.
    pub active: bool,
    /// EUR cents per month; `None`: not sold monthly.
    pub price_month_cents: Option<i64>,
    /// EUR cents per year; `None`: not sold yearly.
    pub price_year_cents: Option<i64>,
    /// Conversations started per UTC day.
    pub conversation_starts_per_day: Option<i32>,
    /// Topic renames per UTC day.
    pub topic_renames_per_day: Option<i32>,
    /// Messages (both directions) per UTC day.
    pub messages_per_day: Option<i32>,
    /// Conversations open at once.
    pub active_conversations: Option<i32>,
    /// Days closed conversations are kept.
    pub retention_days: Option<i32>,
    /// The website widget is on.
    pub channel_widget: bool,
    /// Telegram delivery is on.
    pub channel_telegram: bool,
    /// JSON object of boolean feature flags.
    pub features: String,
    /// Created, epoch ms.
    pub created_at: i64,
    /// Last changed, epoch ms.
    pub updated_at: i64,
}

/// A tenant's Stripe Customer.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::billing_customers)]
pub struct BillingCustomerRow {
    /// Tenant.
    pub tenant_id: String,
    /// Stripe's id, `cus_…`.
    pub stripe_customer_id: String,
    /// Created, epoch ms.
    pub created_at: i64,
}

/// A Checkout Session asked for with a client's `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::billing_checkouts)]
pub struct BillingCheckoutRow {
    /// Tenant.
    pub tenant_id: String,
    /// The client's `Idempotency-Key` header.
    pub idempotency_key: String,
    /// SHA-256 (hex) of what was asked for: the same key with another request is refused.
    pub request_hash: String,
    /// Stripe's id, `cs_…`.
    pub stripe_session_id: String,
    /// Where the client sends the buyer.
    pub url: String,
    /// Created, epoch ms.
    pub created_at: i64,
}

/// A tenant's environment besides production (which lives on the tenant row).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::tenant_environments)]
pub struct TenantEnvironmentRow {
    /// Tenant.
    pub tenant_id: String,
    /// `staging`.
    pub environment: String,
    /// The environment's public widget key (`wk_…`).
    pub widget_key: String,
    /// The environment's settings as JSON text (`TenantSettings`).
    pub settings: String,
    /// A forum group of the environment's own (the tenant's bot), if any.
    pub telegram_group_chat_id: Option<i64>,
    /// Created, epoch ms.
    pub created_at: i64,
    /// Last changed, epoch ms.
    pub updated_at: i64,
}
