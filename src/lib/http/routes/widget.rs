//! Widget (visitor) endpoints: session, conversation, messages, history.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::chat::{
    History, Known, MessageView, MessagesPerDay, OpenedConversation, Sender, Session, SessionStart,
    VisitorIdentity,
};
use crate::domain::ConversationId;
use crate::http::{
    AppState,
    client_ip::ClientIp,
    error::{ApiResult, ErrorBody},
    extract::{Json, Path, Query, VisitorAuth, origin},
};
use crate::limits::{Limit, rate_limited};

/// Routes for the widget.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_session))
        .routes(routes!(identify))
        .routes(routes!(open_conversation))
        .routes(routes!(send_message, list_messages))
}

/// Body of `POST /v1/widget/session`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionRequest {
    /// The tenant's public widget key (`wk_…`).
    pub widget_key: String,
    /// The token from an earlier session, to resume as the same visitor.
    pub visitor_token: Option<String>,
    /// Browser locale, e.g. `de-AT`.
    pub locale: Option<String>,
    /// The page the widget is on (shown to agents).
    pub page_url: Option<String>,
    /// The host site's signed-in user (1–128 characters); needs `user_hash`.
    pub user_id: Option<String>,
    /// Lower-case hex HMAC-SHA256 of `user_id`, keyed with the tenant's identity secret
    /// (computed by the host site's server).
    pub user_hash: Option<String>,
    /// The verified user's display name (1–128 characters), shown to agents and naming
    /// the conversation's Telegram topic. Ignored without a verified identity.
    pub user_name: Option<String>,
    /// The verified user's email address. Ignored without a verified identity.
    pub user_email: Option<String>,
}

/// Start or resume a visitor session. Limited per client IP
/// (`limits.sessions_per_ip_per_min`, every session) and per tenant
/// (`limits.sessions_per_tenant_per_min`, only sessions that start a new visitor: a
/// `visitor_token` of one of the tenant's visitors resumes and is never refused for the
/// tenant's budget); over either: 429 `rate_limited` with `retry_after`.
///
/// Identity verification: with `user_id` and `user_hash` the session belongs to that
/// user's visitor (the same conversation on every device). A hash that does not match
/// is 401 `unauthorized`; no identity while the tenant requires one is 401 too; an
/// identity for a tenant without an identity secret is 422. A verified session may
/// carry the user's `user_name` and `user_email`: stored on the visitor, they rename
/// the open conversation's Telegram topic (as `POST /v1/widget/identify` does).
///
/// The client IP is the TCP peer address, or behind a reverse proxy listed in
/// `server.trusted_proxies` the right-most `X-Forwarded-For` address that is not a trusted
/// proxy (`Forwarded` is not read).
#[utoipa::path(post, path = "/v1/widget/session", tag = "widget", request_body = SessionRequest,
    responses((status = 200, body = Session), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn create_session(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Json(req): Json<SessionRequest>,
) -> ApiResult<Json<Session>> {
    let session = state
        .chat
        .widget_session(
            &state.limiter,
            &state.master_key,
            SessionStart {
                client,
                origin: origin(&headers),
                widget_key: &req.widget_key,
                visitor_token: req.visitor_token.as_deref(),
                locale: req.locale.as_deref(),
                page_url: req.page_url.as_deref(),
                user_id: req.user_id.as_deref(),
                user_hash: req.user_hash.as_deref(),
                user_name: req.user_name.as_deref(),
                user_email: req.user_email.as_deref(),
            },
        )
        .await?;
    Ok(Json(session))
}

/// Body of `POST /v1/widget/identify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentifyRequest {
    /// The visitor's name (1–128 characters, not blank, no control characters).
    pub name: Option<String>,
    /// The visitor's email address (one `@`, at most 254 characters).
    pub email: Option<String>,
}

/// The visitor says who they are: `name`, `email` or both (an absent one stays as it
/// was). Shown to agents: the open conversation's Telegram topic is renamed after them
/// (unless agents gave it a subject). Counts against the visitor's message budget
/// (`limits.messages_per_visitor_per_min`): over it, 429 `rate_limited`.
#[utoipa::path(post, path = "/v1/widget/identify", tag = "widget", security(("visitor_token" = [])), request_body = IdentifyRequest,
    responses((status = 200, body = VisitorIdentity), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn identify(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
    Json(req): Json<IdentifyRequest>,
) -> ApiResult<Json<VisitorIdentity>> {
    if let Err(wait) = state
        .limiter
        .check(Limit::MessagesPerVisitor, &visitor.id)
        .await
    {
        return Err(rate_limited(wait, "too many requests").into());
    }
    let identity = state
        .chat
        .identify(&visitor, req.name.as_deref(), req.email.as_deref())
        .await?;
    Ok(Json(identity))
}

/// The visitor's open conversation; created (201) if there is none (200 otherwise).
#[utoipa::path(post, path = "/v1/conversations", tag = "widget", security(("visitor_token" = [])),
    responses((status = 201, body = OpenedConversation), (status = 200, body = OpenedConversation), (status = 401, body = ErrorBody)))]
async fn open_conversation(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
) -> ApiResult<(StatusCode, Json<OpenedConversation>)> {
    let (conv, created) = state.chat.open_conversation(&visitor).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(conv)))
}

/// Body of `POST /v1/conversations/{id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendRequest {
    /// Client-chosen id; sending the same id again returns the stored message.
    pub client_msg_id: String,
    /// Message text (1–8000 characters).
    pub text: String,
}

/// Send a message as the visitor. 201 when stored, 200 when this `client_msg_id` was already stored.
/// Limited per visitor (`limits.messages_per_visitor_per_min`, shared with the socket):
/// over it, 429 `rate_limited` with `retry_after` and nothing is stored.
#[utoipa::path(post, path = "/v1/conversations/{id}/messages", tag = "widget", security(("visitor_token" = [])),
    params(("id" = String, Path, description = "Conversation id")), request_body = SendRequest,
    responses((status = 201, body = MessageView), (status = 200, body = MessageView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn send_message(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
    plan: Option<axum::Extension<MessagesPerDay>>,
    Path(id): Path<ConversationId>,
    Json(req): Json<SendRequest>,
) -> ApiResult<(StatusCode, Json<MessageView>)> {
    if let Err(wait) = state
        .limiter
        .check(Limit::MessagesPerVisitor, &visitor.id)
        .await
    {
        return Err(rate_limited(wait, "too many messages").into());
    }
    let (msg, created) = state
        .chat
        .post_message_known(
            &visitor.tenant_id,
            &id,
            Known {
                environment: Some(visitor.environment),
                messages_per_day: plan.map(|axum::Extension(limit)| limit),
                ahead: None,
            },
            Sender::Visitor(&visitor.id),
            &req.text,
            Some(&req.client_msg_id),
        )
        .await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(msg),
    ))
}

/// Backfill parameters.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct HistoryParams {
    /// Return messages with `seq` greater than this (default 0).
    pub since: Option<i64>,
    /// At most this many (1–500, default 100).
    pub limit: Option<i64>,
}

/// Messages after `since`, in seq order.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "widget", security(("visitor_token" = [])),
    params(("id" = String, Path, description = "Conversation id"), HistoryParams),
    responses((status = 200, body = History), (status = 404, body = ErrorBody)))]
async fn list_messages(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
    Path(id): Path<ConversationId>,
    Query(q): Query<HistoryParams>,
) -> ApiResult<Json<History>> {
    let h = state
        .chat
        .history(
            &visitor.tenant_id,
            Some(&visitor.id),
            &id,
            q.since.unwrap_or(0),
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(h))
}
