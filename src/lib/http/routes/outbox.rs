//! Operators' view of the outbox: list (redacted), enqueue, retry dead items.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::{
    Scope,
    ScopeAccess::{Read, Write},
};
use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{Admin, Json, Path, Query},
};
use crate::outbox::{
    OutboxItemView, OutboxStatus,
    admin::{self, ItemFilter},
    backlog::BacklogSummary,
};

/// Outbox routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, enqueue))
        .routes(routes!(retry))
        .routes(routes!(summary))
}

/// Whose backlog to show.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct SummaryFilter {
    /// Tenant slug. A platform key without it sees every tenant (or the one its
    /// `Chatorical-Tenant` header names); a tenant key sees its own lanes (naming
    /// another tenant is 404).
    pub tenant: Option<String>,
}

/// The backlog per tenant and lane (`outbox:read`): items waiting, the age of the
/// oldest, and the estimated drain time at the lane's budget (items ÷ calls a minute
/// the lane's budgets allow; a lower bound).
#[utoipa::path(get, path = "/v1/admin/outbox/summary", tag = "outbox", security(("api_key" = [])), params(SummaryFilter),
    responses((status = 200, body = BacklogSummary), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn summary(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Query(f): Query<SummaryFilter>,
) -> ApiResult<Json<BacklogSummary>> {
    admin.require(&Scope::new(crate::domain::Resource::Outbox, Read))?;
    // The platform header only for platform keys (a tenant key is always itself).
    let header = || {
        headers
            .get("chatorical-tenant")
            .and_then(|v| v.to_str().ok())
            .filter(|_| admin.0.tenant_id.is_none())
            .map(str::to_string)
    };
    let named = f.tenant.or_else(header);
    let tenant = match named {
        Some(slug) => Some(crate::tenancy::tenant_by_slug(&state.db, &slug).await?),
        None => None,
    };
    let out = crate::outbox::backlog::summary(
        &state.db,
        &admin.caller(),
        &state.settings.worker,
        tenant.as_ref(),
    )
    .await?;
    Ok(Json(out))
}

/// Outbox filter.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct OutboxFilter {
    /// queued | in_flight | delivered | dead | cancelled.
    pub status: Option<String>,
    /// At most this many (1–500, default 100).
    pub limit: Option<i64>,
    /// Show payload texts (needs `outbox:reveal`).
    pub reveal: Option<bool>,
}

/// A list of outbox items.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OutboxList {
    /// Newest first.
    pub items: Vec<OutboxItemView>,
}

/// The tenant's outbox (`outbox:read`); payload texts are `***` unless `reveal=true` with `outbox:reveal`.
#[utoipa::path(get, path = "/v1/admin/outbox", tag = "outbox", security(("api_key" = [])), params(OutboxFilter),
    responses((status = 200, body = OutboxList), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Query(f): Query<OutboxFilter>,
) -> ApiResult<Json<OutboxList>> {
    let status = f
        .status
        .as_deref()
        .map(|s| OutboxStatus::parse("status", s))
        .transpose()?;
    let filter = ItemFilter {
        status,
        limit: f.limit.unwrap_or(100),
        reveal: f.reveal.unwrap_or(false),
    };
    // Scopes first: a key without `outbox:read` learns nothing about tenants.
    admin.require(&Scope::new(crate::domain::Resource::Outbox, Read))?;
    let tenant = admin.tenant(&state, &headers).await?;
    let items = admin::list_items(&state.db, &admin.caller(), &tenant, filter, 500).await?;
    Ok(Json(OutboxList { items }))
}

/// Body of `POST /v1/admin/outbox`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnqueueText {
    /// Text to post in the tenant's Telegram group.
    pub text: String,
    /// Topic to post in (default: the tenant's default topic, else General).
    pub topic_id: Option<i64>,
    /// Idempotency key; the same key again enqueues nothing.
    pub idempotency_key: String,
}

/// Enqueued (or already there).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Enqueued {
    /// False when the idempotency key was used before.
    pub enqueued: bool,
}

/// Enqueue a text for the tenant's Telegram group (`outbox:write`).
#[utoipa::path(post, path = "/v1/admin/outbox", tag = "outbox", security(("api_key" = [])), request_body = EnqueueText,
    responses((status = 201, body = Enqueued), (status = 200, body = Enqueued), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn enqueue(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Json(req): Json<EnqueueText>,
) -> ApiResult<(StatusCode, Json<Enqueued>)> {
    admin.require(&Scope::new(crate::domain::Resource::Outbox, Write))?;
    let tenant = admin.tenant(&state, &headers).await?;
    let inserted = crate::telegram::enqueue_text(
        &state.db,
        &admin.caller(),
        &tenant,
        &req.text,
        req.topic_id,
        &req.idempotency_key,
    )
    .await?;
    if inserted {
        state.wake.wake();
    }
    Ok((
        if inserted {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(Enqueued { enqueued: inserted }),
    ))
}

/// Put a dead item back in the queue (`outbox:write`).
#[utoipa::path(post, path = "/v1/admin/outbox/{id}/retry", tag = "outbox", security(("api_key" = [])),
    params(("id" = String, Path, description = "Outbox item id")), responses((status = 200, body = OutboxItemView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn retry(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<OutboxItemView>> {
    admin.require(&Scope::new(crate::domain::Resource::Outbox, Write))?;
    let tenant = admin.tenant(&state, &headers).await?;
    let item = admin::retry_item(&state.db, &admin.caller(), &tenant, &id).await?;
    state.wake.wake();
    Ok(Json(item))
}
