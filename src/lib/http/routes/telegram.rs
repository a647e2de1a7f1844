//! Telegram: the tenant's connection (admin) and the webhook (Telegram).

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::{
    Scope,
    ScopeAccess::{Read, Write},
};
use crate::error::{Error, ErrorCode};
use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{Admin, Json, Path},
};
use crate::limits::{Limit, rate_limited};
use crate::telegram::{
    TelegramMode, mode,
    relays::{self, RelayRemoved, RelayView},
    setup::{self, TelegramStatus},
    webhook,
};

/// Telegram routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(connect, status, disconnect, toggle))
        .routes(routes!(add_relay, list_relays))
        .routes(routes!(remove_relay))
        .routes(routes!(receive_update))
}

/// Body of `PUT /v1/admin/telegram`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectTelegram {
    /// The bot token from @BotFather (stored encrypted; never shown again).
    pub bot_token: String,
    /// The forum supergroup's chat id (e.g. -1001234567890).
    pub group_chat_id: i64,
    /// Topic used when the bot may not create topics.
    pub default_topic_id: Option<i64>,
    /// `webhook` or `polling`; absent keeps the current mode, or for a new connection
    /// takes `telegram.default_mode` (by default `webhook` when the server has a
    /// `server.public_url`, else `polling`).
    pub mode: Option<TelegramMode>,
}

/// Connect the tenant's bot and forum group (`telegram:write`): checks the bot with
/// getMe, the group is a forum where the bot may manage topics, and registers the
/// webhook — or in `polling` mode deletes it, and a worker long-polls getUpdates.
/// 409 `webhook_url_rejected` when Telegram would refuse the server's webhook URL (not
/// https on port 443, 80, 88 or 8443, and `telegram.allow_http_webhook` off).
#[utoipa::path(put, path = "/v1/admin/telegram", tag = "telegram", security(("api_key" = [])), request_body = ConnectTelegram,
    responses((status = 200, body = TelegramStatus), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn connect(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Json(req): Json<ConnectTelegram>,
) -> ApiResult<Json<TelegramStatus>> {
    let tenant = admin.tenant(&state, &headers).await?;
    let status = setup::connect(
        &state.db,
        &state.bots,
        &admin.caller(),
        &tenant,
        &state.public_url,
        setup::Connect {
            bot_token: &req.bot_token,
            group_chat_id: req.group_chat_id,
            default_topic_id: req.default_topic_id,
            mode: req.mode,
            default_mode: TelegramMode::default_for(&state.settings),
        },
    )
    .await?;
    Ok(Json(status))
}

/// The tenant's Telegram connection, secrets redacted (`telegram:read`).
#[utoipa::path(get, path = "/v1/admin/telegram", tag = "telegram", security(("api_key" = [])),
    responses((status = 200, body = TelegramStatus), (status = 404, body = ErrorBody)))]
async fn status(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
) -> ApiResult<Json<TelegramStatus>> {
    admin.require(&Scope::new(crate::domain::Resource::Telegram, Read))?;
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        setup::current_status(
            &state.db,
            &state.bots,
            &admin.caller(),
            &tenant,
            &state.public_url,
        )
        .await?,
    ))
}

/// Disconnected.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Disconnected {
    /// Always true.
    pub disconnected: bool,
}

/// Disconnect Telegram (`telegram:write`): deleteWebhook, then forget the bot.
#[utoipa::path(delete, path = "/v1/admin/telegram", tag = "telegram", security(("api_key" = [])),
    responses((status = 200, body = Disconnected), (status = 404, body = ErrorBody)))]
async fn disconnect(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
) -> ApiResult<Json<Disconnected>> {
    let tenant = admin.tenant(&state, &headers).await?;
    setup::disconnect(&state.db, &state.bots, &admin.caller(), &tenant).await?;
    Ok(Json(Disconnected { disconnected: true }))
}

/// Body of `PATCH /v1/admin/telegram`: at least one of the fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToggleTelegram {
    /// false pauses delivery (items wait) and acknowledges-and-ignores webhook updates.
    pub enabled: Option<bool>,
    /// true: retention also deletes a purged conversation's forum topic (with its
    /// messages) in the group; the bot needs the "Delete messages" admin right.
    pub delete_topics_on_retention: Option<bool>,
    /// `webhook` (registers the webhook: needs a URL Telegram can reach) or `polling`
    /// (deletes the webhook; a worker long-polls getUpdates).
    pub mode: Option<TelegramMode>,
}

/// Pause or resume Telegram for the tenant, or switch how its updates arrive
/// (`telegram:write`). At least one of `enabled` and `mode`. A mode switch tells
/// Telegram first (setWebhook or deleteWebhook) and changes nothing when it refuses;
/// 409 `webhook_url_rejected` when Telegram would refuse the server's webhook URL.
#[utoipa::path(patch, path = "/v1/admin/telegram", tag = "telegram", security(("api_key" = [])), request_body = ToggleTelegram,
    responses((status = 200, body = TelegramStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn toggle(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Json(req): Json<ToggleTelegram>,
) -> ApiResult<Json<TelegramStatus>> {
    admin.require(&Scope::new(crate::domain::Resource::Telegram, Write))?;
    if req.enabled.is_none() && req.mode.is_none() && req.delete_topics_on_retention.is_none() {
        return Err(Error::validation(
            "enabled",
            "give `enabled`, `mode` or `delete_topics_on_retention`",
        )
        .into());
    }
    let tenant = admin.tenant(&state, &headers).await?;
    let mut status = None;
    if let Some(mode) = req.mode {
        status = Some(
            mode::set_mode(
                &state.db,
                &state.bots,
                &admin.caller(),
                &tenant,
                &state.public_url,
                mode,
            )
            .await?,
        );
    }
    if let Some(on) = req.delete_topics_on_retention {
        status = Some(
            setup::set_delete_topics_on_retention(
                &state.db,
                &state.bots,
                &admin.caller(),
                &tenant,
                &state.public_url,
                on,
            )
            .await?,
        );
    }
    if let Some(enabled) = req.enabled {
        status = Some(
            setup::set_enabled(
                &state.db,
                &state.bots,
                &admin.caller(),
                &tenant,
                &state.public_url,
                enabled,
            )
            .await?,
        );
        if enabled {
            state.wake.wake();
        }
    }
    let status = status.ok_or_else(|| Error::internal("no change applied"))?;
    Ok(Json(status))
}

/// Body of `PUT /v1/admin/telegram/relays`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddRelay {
    /// The relay bot's token from @BotFather (stored encrypted; never shown again). The
    /// bot must be an admin of the tenant's forum group with Manage Topics.
    pub bot_token: String,
}

/// The tenant's relay bots.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RelayList {
    /// Oldest first.
    pub relays: Vec<RelayView>,
}

/// Add a relay bot to the tenant's forum group, or re-register one added before
/// (`telegram:write`): getMe, its rights in the group (admin with Manage Topics), its
/// webhook with a secret of its own (or none in `polling` mode). Each bot has its own
/// budget of messages a minute in the group; new conversations' topics are spread over
/// the bots. The token is never returned: the bot is named by its id and username.
#[utoipa::path(put, path = "/v1/admin/telegram/relays", tag = "telegram", security(("api_key" = [])), request_body = AddRelay,
    responses((status = 200, body = RelayView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_relay(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Json(req): Json<AddRelay>,
) -> ApiResult<Json<RelayView>> {
    let tenant = admin.tenant(&state, &headers).await?;
    let relay = relays::add(
        &state.db,
        &state.bots,
        &admin.caller(),
        &tenant,
        &state.public_url,
        &req.bot_token,
    )
    .await?;
    Ok(Json(relay))
}

/// The tenant's relay bots with the open topics each serves and its pending items
/// (`telegram:read`).
#[utoipa::path(get, path = "/v1/admin/telegram/relays", tag = "telegram", security(("api_key" = [])),
    responses((status = 200, body = RelayList)))]
async fn list_relays(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
) -> ApiResult<Json<RelayList>> {
    admin.require(&Scope::new(crate::domain::Resource::Telegram, Read))?;
    let tenant = admin.tenant(&state, &headers).await?;
    let relays = relays::list(&state.db, &admin.caller(), &tenant).await?;
    Ok(Json(RelayList { relays }))
}

/// Remove a relay bot (`telegram:write`): its topics go to the remaining bots and its
/// pending items move to their lanes in one transaction, in order; then its webhook is
/// deleted.
#[utoipa::path(delete, path = "/v1/admin/telegram/relays/{bot_id}", tag = "telegram", security(("api_key" = [])),
    params(("bot_id" = i64, Path, description = "The relay bot's user id")),
    responses((status = 200, body = RelayRemoved), (status = 404, body = ErrorBody)))]
async fn remove_relay(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(bot_id): Path<i64>,
) -> ApiResult<Json<RelayRemoved>> {
    let tenant = admin.tenant(&state, &headers).await?;
    let removed = relays::remove(&state.db, &state.bots, &admin.caller(), &tenant, bot_id).await?;
    state.wake.wake();
    Ok(Json(removed))
}

/// Accepted update.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookAck {
    /// stored | edited | subject (a `/subject` command) | over_quota (past a plan
    /// quota: not stored, the agents told in the topic) | duplicate | ignored.
    pub outcome: String,
}

/// Telegram's webhook for a tenant. Header `X-Telegram-Bot-Api-Secret-Token` must be
/// the secret registered at setup; 2xx only after the update is committed.
#[utoipa::path(post, path = "/v1/telegram/webhook/{tenant_slug}", tag = "telegram",
    params(("tenant_slug" = String, Path, description = "Tenant slug"), ("X-Telegram-Bot-Api-Secret-Token" = String, Header, description = "Webhook secret")),
    request_body(content = Object, description = "A Telegram Update", example = json!({
        "update_id": 100000001,
        "message": {
            "message_id": 9001,
            "message_thread_id": 101,
            "is_topic_message": true,
            "date": 1767225600,
            "chat": {"id": -1001234567890_i64, "type": "supergroup", "title": "Support", "is_forum": true},
            "from": {"id": 5550001, "is_bot": false, "first_name": "Ana"},
            "text": "It ships today."
        }
    })),
    responses((status = 200, body = WebhookAck), (status = 400, description = "`invalid_json`: not a Telegram update", body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn receive_update(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<WebhookAck>)> {
    let secret = headers
        .get("x-telegram-bot-api-secret-token")
        .and_then(|v| v.to_str().ok());
    let unavailable = |e: Error| {
        // Database trouble must be a 5xx so that Telegram retries.
        if e.code == ErrorCode::Internal {
            Error::new(ErrorCode::Unavailable, "try again").with_source(e)
        } else {
            e
        }
    };
    let auth = webhook::authenticate(&state.db, &state.master_key, &state.webhook, &slug, secret)
        .await
        .map_err(unavailable)?;
    // Limited after authentication: strangers who know a slug cannot use up the
    // tenant's budget and delay its agents' answers.
    if let Err(wait) = state
        .limiter
        .check(Limit::WebhookPerTenant, auth.tenant_id())
        .await
    {
        state
            .webhook
            .rate_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(rate_limited(wait, "too many webhook calls").into());
    }
    let handler = webhook::UpdateHandler::new(
        state.db.clone(),
        state.chat.clone(),
        state.webhook.clone(),
        state.presence.clone(),
    );
    let handled = webhook::process(&handler, auth, &body)
        .await
        .map_err(unavailable)?;
    let outcome = match handled {
        webhook::Handled::Stored => "stored",
        webhook::Handled::Edited => "edited",
        webhook::Handled::Subject => "subject",
        webhook::Handled::OverQuota => "over_quota",
        webhook::Handled::Duplicate => "duplicate",
        webhook::Handled::Ignored => "ignored",
    };
    Ok((
        StatusCode::OK,
        Json(WebhookAck {
            outcome: outcome.into(),
        }),
    ))
}
