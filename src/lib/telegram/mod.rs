//! The Telegram bridge: a tenant's bot and forum group, a topic per conversation,
//! delivery of visitor messages (an outbox [`Deliver`](crate::outbox::worker::Deliver)
//! implementation) and the webhook — or, without a public URL, the long poll
//! (`polling`) — that brings agents' answers back.

pub(crate) mod coalesce;
pub mod delivery;
pub mod mode;
pub mod polling;
pub mod relays;
pub mod setup;
pub(crate) mod split;
pub mod topic;
pub mod typing;
pub mod validate;
pub mod webhook;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use teloxide::{Bot, RequestError};

use crate::config::TelegramSettings;
use crate::crypto::MasterKey;
use crate::db::models::TelegramConfigRow;
use crate::error::{Error, ErrorCode, Result};
use crate::outbox::Outcome;

pub use mode::TelegramMode;

/// Field names the sealed secrets are bound to.
pub const FIELD_BOT_TOKEN: &str = "telegram.bot_token";
/// Field name of the sealed webhook secret.
pub const FIELD_WEBHOOK_SECRET: &str = "telegram.webhook_secret";

/// The field a relay bot's sealed secret is bound to (`bot_token` or
/// `webhook_secret`): the relay's bot id is part of it, so one relay's ciphertext copied
/// onto another relay does not open.
pub fn relay_field(bot_id: i64, what: &str) -> String {
    format!("telegram.relay.{bot_id}.{what}")
}

/// The forum group an environment's conversations go to: staging's group of its own
/// when it has one, else the tenant's group `tenant_group` (staging's topics are then
/// prefixed `[staging] `, see [`topic::topic_name`]). Production reads nothing.
pub async fn group_for(
    conn: &mut crate::db::Conn<'_>,
    tenant_id: &str,
    environment: crate::domain::Environment,
    tenant_group: i64,
) -> Result<i64> {
    if environment == crate::domain::Environment::Production {
        return Ok(tenant_group);
    }
    Ok(
        crate::db::repo::environments::telegram_group(conn, tenant_id, environment.as_str())
            .await?
            .unwrap_or(tenant_group),
    )
}

/// Builds (and caches) one teloxide [`Bot`] per tenant, pointed at the configured
/// Bot API URL.
pub struct Bots {
    api_url: reqwest::Url,
    allow_http_webhook: bool,
    client: reqwest::Client,
    /// For getUpdates: its timeout outlasts the long poll's.
    poll_client: reqwest::Client,
    key: Arc<MasterKey>,
    cache: Mutex<HashMap<String, (String, Bot)>>,
}

impl Bots {
    /// Bots for `settings.api_url`, decrypting tokens with `key`.
    pub fn new(settings: &TelegramSettings, key: Arc<MasterKey>) -> Result<Self> {
        let api_url = reqwest::Url::parse(&settings.api_url).map_err(|e| {
            Error::new(
                ErrorCode::InvalidConfig,
                format!("invalid setting `telegram.api_url`: {e}"),
            )
        })?;
        let client = teloxide::net::default_reqwest_settings()
            .timeout(Duration::from_secs(settings.request_timeout_secs.max(1)))
            .build()
            .map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("telegram client: {e}")))?;
        // teloxide does not lengthen a request's timeout for getUpdates' `timeout`: a
        // client of its own waits the long poll plus the usual request timeout.
        let poll_client = teloxide::net::default_reqwest_settings()
            .timeout(Duration::from_secs(
                settings.request_timeout_secs.max(1) + settings.poll_timeout_secs,
            ))
            .build()
            .map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("telegram client: {e}")))?;
        Ok(Bots {
            api_url,
            allow_http_webhook: settings.allow_http_webhook,
            client,
            poll_client,
            key,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Whether webhooks may be plain http on any port (`telegram.allow_http_webhook`:
    /// a local Bot API server), not only what Telegram's cloud API takes.
    pub fn allow_http_webhook(&self) -> bool {
        self.allow_http_webhook
    }

    /// The master key.
    pub fn key(&self) -> &Arc<MasterKey> {
        &self.key
    }

    /// A bot for a plaintext token (setup, before anything is stored).
    pub fn for_token(&self, token: &str) -> Bot {
        Bot::with_client(token, self.client.clone()).set_api_url(self.api_url.clone())
    }

    /// The tenant's bot for getUpdates long polls (a client whose timeout outlasts
    /// `telegram.poll_timeout_secs`).
    pub fn poller_for_tenant(&self, cfg: &TelegramConfigRow) -> Result<Bot> {
        let token = self
            .key
            .open(&cfg.tenant_id, FIELD_BOT_TOKEN, &cfg.bot_token_enc)?;
        Ok(Bot::with_client(token, self.poll_client.clone()).set_api_url(self.api_url.clone()))
    }

    /// A relay bot of a tenant; the token is decrypted once per stored ciphertext.
    pub fn for_relay(&self, relay: &crate::db::models::TelegramRelayRow) -> Result<Bot> {
        let cache_key = format!("{}:r{}", relay.tenant_id, relay.bot_id);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((enc, bot)) = cache.get(&cache_key)
            && *enc == relay.bot_token_enc
        {
            return Ok(bot.clone());
        }
        let token = self.key.open(
            &relay.tenant_id,
            &relay_field(relay.bot_id, "bot_token"),
            &relay.bot_token_enc,
        )?;
        let bot = self.for_token(&token);
        cache.insert(cache_key, (relay.bot_token_enc.clone(), bot.clone()));
        Ok(bot)
    }

    /// The tenant's bot; the token is decrypted once per stored ciphertext.
    pub fn for_tenant(&self, cfg: &TelegramConfigRow) -> Result<Bot> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((enc, bot)) = cache.get(&cfg.tenant_id)
            && *enc == cfg.bot_token_enc
        {
            return Ok(bot.clone());
        }
        let token = self
            .key
            .open(&cfg.tenant_id, FIELD_BOT_TOKEN, &cfg.bot_token_enc)?;
        let bot = self.for_token(&token);
        cache.insert(
            cfg.tenant_id.clone(),
            (cfg.bot_token_enc.clone(), bot.clone()),
        );
        Ok(bot)
    }
}

/// Longest operator text for [`enqueue_text`], in characters.
pub const MAX_OPERATOR_TEXT_CHARS: usize = 4096;

/// Queue an operator's `text` for the tenant's Telegram group (into `topic_id`, else
/// the default topic). `idempotency_key` (1-128 characters) makes a retry a no-op:
/// returns whether this call queued it. Telegram counts a message's length so that a
/// text of 4,096 characters may still not fit (characters outside the BMP count
/// twice): such a text is queued as ordered parts (`split`), one item each. Needs
/// `outbox:write` (a tenant key for its own tenant); records `outbox.enqueued` (the
/// length, never the text) in the same transaction when it queued anything.
pub async fn enqueue_text(
    db: &crate::db::Db,
    caller: &crate::tenancy::Caller,
    tenant: &crate::tenancy::Tenant,
    text: &str,
    topic_id: Option<i64>,
    idempotency_key: &str,
) -> Result<bool> {
    caller.require(&crate::domain::Scope::new(
        crate::domain::Resource::Outbox,
        crate::domain::ScopeAccess::Write,
    ))?;
    caller.check_tenant(tenant)?;
    let tenant_id = &tenant.id;
    if crate::domain::text::is_blank(text) || text.chars().count() > MAX_OPERATOR_TEXT_CHARS {
        return Err(Error::validation(
            "text",
            format!("text must be 1-{MAX_OPERATOR_TEXT_CHARS} characters"),
        ));
    }
    if idempotency_key.is_empty() || idempotency_key.len() > 128 {
        return Err(Error::validation(
            "idempotency_key",
            "idempotency_key must be 1-128 characters",
        ));
    }
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let now = crate::domain::now_ms();
    let parts = split::rendered_parts(text);
    let n = parts.len();
    crate::transaction!(&mut conn, |tx| {
        let cfg = crate::db::repo::telegram::get(tx, tenant_id)
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Conflict,
                    "connect Telegram first (PUT /v1/admin/telegram)",
                )
            })?;
        let lane = crate::outbox::telegram_lane(tenant_id, cfg.group_chat_id);
        let mut inserted = false;
        for (i, part) in parts.iter().enumerate() {
            let job = crate::outbox::Job::SendText {
                text: part.to_string(),
                topic_id,
            };
            let key = if n == 1 {
                format!("api_{idempotency_key}")
            } else {
                format!("api_{idempotency_key}_part_{}", i + 1)
            };
            let added = crate::outbox::enqueue(tx, tenant_id, &job, &key, &lane, now).await?;
            inserted |= added;
        }
        // The same idempotency key again queues and records nothing. Never the text.
        if inserted {
            crate::audit::record(
                tx,
                caller,
                crate::audit::Entry::new(crate::audit::Action::OutboxEnqueued)
                    .tenant(tenant_id)
                    .target(format!("api_{idempotency_key}"))
                    .changes(serde_json::json!({
                        "kind": "telegram.send_text",
                        "parts": n,
                        "chars": text.chars().count(),
                        "topic_id": topic_id,
                    })),
            )
            .await?;
        }
        Ok(inserted)
    })
}

/// What a Bot API error means for a delivery.
pub fn classify(err: &RequestError, retry_after_cap: Duration, backoff: Duration) -> Outcome {
    match err {
        RequestError::RetryAfter(secs) => Outcome::Retry {
            after: secs
                .duration()
                .min(retry_after_cap)
                .max(Duration::from_secs(1)),
            error: format!("429 Too Many Requests: retry after {}", secs.seconds()),
            counts: false,
        },
        RequestError::Api(api) => {
            let text = description(api);
            if is_permanent(&text) {
                Outcome::Dead { error: text }
            } else {
                Outcome::Retry {
                    after: backoff,
                    error: text,
                    counts: true,
                }
            }
        }
        RequestError::MigrateToChatId(id) => Outcome::Dead {
            error: format!(
                "the group became supergroup {id}; connect Telegram again with the new id"
            ),
        },
        RequestError::Network(e) => Outcome::Retry {
            after: backoff,
            error: if e.is_timeout() {
                "request timed out".into()
            } else {
                "network error".into()
            },
            counts: true,
        },
        RequestError::InvalidJson { .. } => Outcome::Retry {
            after: backoff,
            error: "unreadable answer from Telegram".into(),
            counts: true,
        },
        RequestError::Io(_) => Outcome::Retry {
            after: backoff,
            error: "I/O error".into(),
            counts: true,
        },
    }
}

/// What Telegram said: its description as sent. (teloxide shows a description it has
/// no variant for as `Unknown error: "…"`, which would hide the `Bad Request:` prefix.)
pub fn description(api: &teloxide::ApiError) -> String {
    match api {
        teloxide::ApiError::Unknown(text) => text.clone(),
        other => other.to_string(),
    }
}

/// 400/401/403-class answers: retrying cannot help.
fn is_permanent(description: &str) -> bool {
    let d = description.to_ascii_lowercase();
    d.starts_with("bad request")
        || d.starts_with("forbidden")
        || d.starts_with("unauthorized")
        || d.contains("not found")
        || d.contains("bot was kicked")
        || d.contains("bot was blocked")
        || d.contains("not enough rights")
}

/// Whether an error says the forum topic no longer exists.
pub fn is_thread_gone(err: &RequestError) -> bool {
    match err {
        RequestError::Api(api) => {
            let d = description(api).to_ascii_lowercase();
            d.contains("thread not found")
                || d.contains("topic_deleted")
                || d.contains("topic deleted")
                || d.contains("topic_id_invalid")
        }
        _ => false,
    }
}

/// Whether an error says the bot may not create topics.
pub fn is_no_topic_rights(err: &RequestError) -> bool {
    match err {
        RequestError::Api(api) => {
            let d = description(api).to_ascii_lowercase();
            d.contains("not enough rights")
                || d.contains("not a forum")
                || d.contains("chat_not_modified")
        }
        _ => false,
    }
}

/// Show a bot token as `123456:***`.
pub fn redact_token(token: &str) -> String {
    match token.split_once(':') {
        Some((id, _)) => format!("{id}:***"),
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(description: &str) -> RequestError {
        let body = serde_json::json!({ "data": description }).to_string();
        #[derive(serde::Deserialize)]
        struct Wrapped {
            data: teloxide::ApiError,
        }
        let wrapped: Wrapped = serde_json::from_str(&body).expect("an ApiError");
        RequestError::Api(wrapped.data)
    }

    #[test]
    fn any_bad_request_dead_letters_even_one_teloxide_does_not_know() {
        let backoff = Duration::from_millis(100);
        let cap = Duration::from_secs(60);
        for description in [
            "Bad Request: TOPIC_CLOSED",
            "Bad Request: message is too long",
            "Bad Request: not enough rights to send text messages to the chat",
            "Forbidden: bot was kicked from the supergroup chat",
        ] {
            match classify(&api(description), cap, backoff) {
                Outcome::Dead { error } => assert_eq!(error, description),
                other => panic!("{description}: {other:?}"),
            }
        }
        match classify(&api("Internal Server Error"), cap, backoff) {
            Outcome::Retry { after, counts, .. } => {
                assert_eq!(after, backoff);
                assert!(counts);
            }
            other => panic!("{other:?}"),
        }
    }
}
