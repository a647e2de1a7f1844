//! Admin endpoints (API keys): tenants, keys, settings, conversations, agent replies.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::chat::{ConversationView, History, MessageView, Sender};
use crate::domain::{
    ConversationId, KeyId, Scope,
    ScopeAccess::{Read, Write},
};
use crate::error::{Error, ErrorCode};
use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{Admin, Json, Path, Query},
};
use crate::tenancy::{
    self, ApiKeyInfo, IssuedKey, KeyRequest, RevokedKey, SettingsPatch, Tenant, TenantSettings,
};

/// Admin routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(issue_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(get_settings, patch_settings))
        .routes(routes!(list_conversations))
        .routes(routes!(get_conversation, patch_conversation))
        .routes(routes!(close_conversation))
        .routes(routes!(reply, conversation_messages))
        .routes(routes!(agent_typing))
}

/// Body of `POST /v1/admin/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTenant {
    /// URL-safe unique name (2–40 of a-z, 0-9, '-').
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Origins allowed to embed the widget.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// The tenant's plan (an active plan's code; needs `plans:write`); default `free`.
    pub plan: Option<String>,
}

/// Create a tenant (platform keys with `tenants:write`; with `plan`, also `plans:write`).
#[utoipa::path(post, path = "/v1/admin/tenants", tag = "admin", security(("api_key" = [])), request_body = CreateTenant,
    responses((status = 201, body = Tenant), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_tenant(
    State(state): State<AppState>,
    admin: Admin,
    Json(req): Json<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let new = tenancy::NewTenant {
        slug: req.slug,
        name: req.name,
        allowed_origins: req.allowed_origins,
        plan: req.plan,
    };
    let t = tenancy::create_tenant(&state.db, &admin.caller(), new).await?;
    state.origins.invalidate();
    Ok((StatusCode::CREATED, Json(t)))
}

/// A list of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TenantList {
    /// Tenants by slug.
    pub tenants: Vec<Tenant>,
}

/// List tenants (platform keys with `tenants:read`).
#[utoipa::path(get, path = "/v1/admin/tenants", tag = "admin", security(("api_key" = [])), responses((status = 200, body = TenantList)))]
async fn list_tenants(State(state): State<AppState>, admin: Admin) -> ApiResult<Json<TenantList>> {
    Ok(Json(TenantList {
        tenants: tenancy::list_tenants(&state.db, &admin.caller()).await?,
    }))
}

/// Body of `POST /v1/admin/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueKey {
    /// Scopes such as `conversations:read`.
    pub scopes: Vec<String>,
    /// Label.
    pub name: Option<String>,
    /// Lifetime such as `30d` or `12h`; none means no expiry.
    pub expires_in: Option<String>,
    /// Platform keys: the tenant (slug) to issue for; omit for a platform key.
    pub tenant: Option<String>,
}

/// Issue an API key (`keys:write`). The key is in the response once and never again.
/// A key can only grant scopes it holds itself, and the new key expires no later than
/// the key that issued it.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", security(("api_key" = [])), request_body = IssueKey,
    responses((status = 201, body = IssuedKey), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn issue_key(
    State(state): State<AppState>,
    admin: Admin,
    Json(req): Json<IssueKey>,
) -> ApiResult<(StatusCode, Json<IssuedKey>)> {
    let expires_in = req
        .expires_in
        .as_deref()
        .map(|s| {
            humantime::parse_duration(s)
                .map_err(|e| Error::validation("expires_in", format!("`{s}`: {e}")))
        })
        .transpose()?;
    let request = KeyRequest {
        tenant: req.tenant,
        scopes: req.scopes,
        name: req.name,
        expires_in,
    };
    let issued = tenancy::issue_key(&state.db, &admin.caller(), request).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// A list of keys.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyList {
    /// Keys, newest first.
    pub keys: Vec<ApiKeyInfo>,
}

/// Key list filter.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct KeyFilter {
    /// Platform keys: only this tenant's keys (slug).
    pub tenant: Option<String>,
}

/// List keys (`keys:read`): a tenant key sees its tenant's keys, a platform key all.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin", security(("api_key" = [])), params(KeyFilter), responses((status = 200, body = KeyList)))]
async fn list_keys(
    State(state): State<AppState>,
    admin: Admin,
    Query(f): Query<KeyFilter>,
) -> ApiResult<Json<KeyList>> {
    // A tenant key always lists its own tenant's keys, whatever the filter says.
    let filter = if admin.0.tenant_id.is_some() {
        None
    } else {
        f.tenant
    };
    Ok(Json(KeyList {
        keys: tenancy::list_keys(&state.db, &admin.caller(), filter.as_deref()).await?,
    }))
}

/// Revocation options.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct RevokeParams {
    /// Also revoke every key this key issued, transitively (default `true`).
    pub cascade: Option<bool>,
}

/// Revoke a key (`keys:write`), and by default every key it issued. Another tenant's
/// key id is not found.
#[utoipa::path(delete, path = "/v1/admin/keys/{id}", tag = "admin", security(("api_key" = [])),
    params(("id" = String, Path, description = "Key id"), RevokeParams), responses((status = 200, body = RevokedKey), (status = 404, body = ErrorBody)))]
async fn revoke_key(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<KeyId>,
    Query(p): Query<RevokeParams>,
) -> ApiResult<Json<RevokedKey>> {
    let cascade = p.cascade.unwrap_or(true);
    Ok(Json(
        tenancy::revoke_key(&state.db, &admin.caller(), &id, cascade).await?,
    ))
}

/// Which environment a call is about.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct EnvParam {
    /// `production` (the default) or `staging`.
    pub env: Option<String>,
}

/// The tenant's settings (`settings:read`): with `?env=staging`, the staging
/// environment's widget key and settings (404 before it was created).
#[utoipa::path(get, path = "/v1/admin/settings", tag = "admin", security(("api_key" = [])), params(EnvParam),
    responses((status = 200, body = Tenant), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn get_settings(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Query(q): Query<EnvParam>,
) -> ApiResult<Json<Tenant>> {
    admin.require(&Scope::new(crate::domain::Resource::Settings, Read))?;
    let env = crate::environments::parse_env("env", q.env.as_deref())?;
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(tenancy::tenant_in(&state.db, &tenant.id, env).await?))
}

/// Change the tenant's settings (`settings:write`); absent fields stay as they are.
/// With `?env=staging`, the staging environment's (404 before it was created).
#[utoipa::path(patch, path = "/v1/admin/settings", tag = "admin", security(("api_key" = [])), params(EnvParam), request_body = SettingsPatch,
    responses((status = 200, body = TenantSettings), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn patch_settings(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Query(q): Query<EnvParam>,
    Json(patch): Json<SettingsPatch>,
) -> ApiResult<Json<TenantSettings>> {
    admin.require(&Scope::new(crate::domain::Resource::Settings, Write))?;
    let env = crate::environments::parse_env("env", q.env.as_deref())?;
    let tenant = admin.tenant(&state, &headers).await?;
    let settings =
        crate::environments::update_settings(&state.db, &admin.caller(), &tenant, env, patch)
            .await?;
    state.origins.invalidate();
    Ok(Json(settings))
}

/// Conversation list filter.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ConversationFilter {
    /// `open` or `closed`.
    pub status: Option<String>,
    /// Only this environment's: `production` or `staging`.
    pub env: Option<String>,
    /// At most this many (1–500, default 50).
    pub limit: Option<i64>,
}

/// A list of conversations.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConversationList {
    /// Most recently active first.
    pub conversations: Vec<ConversationView>,
}

/// The tenant's conversations (`conversations:read`).
#[utoipa::path(get, path = "/v1/admin/conversations", tag = "admin", security(("api_key" = [])), params(ConversationFilter),
    responses((status = 200, body = ConversationList)))]
async fn list_conversations(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Query(f): Query<ConversationFilter>,
) -> ApiResult<Json<ConversationList>> {
    admin.require(&Scope::new(crate::domain::Resource::Conversations, Read))?;
    let tenant = admin.tenant(&state, &headers).await?;
    let conversations = state
        .chat
        .list_conversations(
            &tenant.id,
            f.status.as_deref(),
            f.env.as_deref(),
            f.limit.unwrap_or(50),
        )
        .await?;
    Ok(Json(ConversationList { conversations }))
}

/// One conversation (`conversations:read`).
#[utoipa::path(get, path = "/v1/admin/conversations/{id}", tag = "admin", security(("api_key" = [])),
    params(("id" = String, Path, description = "Conversation id")), responses((status = 200, body = ConversationView), (status = 404, body = ErrorBody)))]
async fn get_conversation(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<ConversationId>,
) -> ApiResult<Json<ConversationView>> {
    admin.require(&Scope::new(crate::domain::Resource::Conversations, Read))?;
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(state.chat.conversation(&tenant.id, None, &id).await?))
}

/// Body of `PATCH /v1/admin/conversations/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConversationPatch {
    /// The conversation's subject (1–128 characters, not blank, no control
    /// characters; trimmed). The Telegram topic is renamed after it.
    pub subject: String,
}

/// Give a conversation a subject (`conversations:write`). Its Telegram forum topic is
/// renamed after it (editForumTopic, through the outbox, after the conversation's
/// earlier messages); the same subject again changes nothing.
#[utoipa::path(patch, path = "/v1/admin/conversations/{id}", tag = "admin", security(("api_key" = [])),
    params(("id" = String, Path, description = "Conversation id")), request_body = ConversationPatch,
    responses((status = 200, body = ConversationView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn patch_conversation(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<ConversationId>,
    Json(patch): Json<ConversationPatch>,
) -> ApiResult<Json<ConversationView>> {
    let tenant = admin.tenant(&state, &headers).await?;
    let (view, _) = state
        .chat
        .set_subject(&admin.caller(), &tenant, &id, &patch.subject)
        .await?;
    Ok(Json(view))
}

/// Close a conversation (`conversations:write`); closing twice is harmless.
#[utoipa::path(post, path = "/v1/admin/conversations/{id}/close", tag = "admin", security(("api_key" = [])),
    params(("id" = String, Path, description = "Conversation id")), responses((status = 200, body = ConversationView), (status = 404, body = ErrorBody)))]
async fn close_conversation(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<ConversationId>,
) -> ApiResult<Json<ConversationView>> {
    admin.require(&Scope::new(crate::domain::Resource::Conversations, Write))?;
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(state.chat.close(&admin.caller(), &tenant, &id).await?))
}

/// Body of an agent reply.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentReply {
    /// Message text.
    pub text: String,
    /// Agent display name shown to the visitor.
    pub author: Option<String>,
    /// Idempotency id; retrying with the same id stores the reply once.
    pub client_msg_id: Option<String>,
}

/// Reply as an agent (`conversations:write`): stored as outbound and pushed live to the visitor's sockets.
#[utoipa::path(post, path = "/v1/admin/conversations/{id}/messages", tag = "admin", security(("api_key" = [])),
    params(("id" = String, Path, description = "Conversation id")), request_body = AgentReply,
    responses((status = 201, body = MessageView), (status = 200, body = MessageView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn reply(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<ConversationId>,
    Json(req): Json<AgentReply>,
) -> ApiResult<(StatusCode, Json<MessageView>)> {
    admin.require(&Scope::new(crate::domain::Resource::Conversations, Write))?;
    let tenant = admin.tenant(&state, &headers).await?;
    let author = req
        .author
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("Support");
    crate::domain::text::check_name("author", author, 80)?;
    let (msg, created) = state
        .chat
        .post_message(
            &tenant.id,
            &id,
            None,
            Sender::Agent(author),
            &req.text,
            req.client_msg_id.as_deref(),
        )
        .await?;
    state.presence.touch(&tenant.id).await;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(msg),
    ))
}

/// Show the visitor that an agent is typing (`conversations:write`): a `typing` frame
/// (`from: agent`) on the visitor's sockets, on every node. Nothing is stored; agent
/// tools call it every few seconds while the agent types (the widget hides it after
/// five seconds without a refresh). Counts as agent activity for presence.
#[utoipa::path(post, path = "/v1/admin/conversations/{id}/typing", tag = "admin", security(("api_key" = [])),
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn agent_typing(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<ConversationId>,
) -> ApiResult<StatusCode> {
    admin.require(&Scope::new(crate::domain::Resource::Conversations, Write))?;
    let tenant = admin.tenant(&state, &headers).await?;
    let conv = state.chat.conversation(&tenant.id, None, &id).await?;
    if conv.status != crate::chat::ConversationStatus::Open.as_str() {
        return Err(Error::new(ErrorCode::ConversationClosed, "the conversation is closed").into());
    }
    state.chat.typing(&id, "agent");
    state.presence.touch(&tenant.id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// History parameters.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct AdminHistory {
    /// Messages with seq greater than this.
    pub since: Option<i64>,
    /// At most this many (1–500, default 100).
    pub limit: Option<i64>,
}

/// A conversation's messages (`conversations:read`).
#[utoipa::path(get, path = "/v1/admin/conversations/{id}/messages", tag = "admin", security(("api_key" = [])),
    params(("id" = String, Path, description = "Conversation id"), AdminHistory), responses((status = 200, body = History), (status = 404, body = ErrorBody)))]
async fn conversation_messages(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<ConversationId>,
    Query(q): Query<AdminHistory>,
) -> ApiResult<Json<History>> {
    admin.require(&Scope::new(crate::domain::Resource::Conversations, Read))?;
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        state
            .chat
            .history(
                &tenant.id,
                None,
                &id,
                q.since.unwrap_or(0),
                q.limit.unwrap_or(100),
            )
            .await?,
    ))
}
