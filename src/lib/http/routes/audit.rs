//! The audit log: `GET /v1/admin/audit`.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::audit::{self, AuditPage, AuditQuery};
use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{Admin, Json, Query},
};

/// Audit routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Which entries to list.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct AuditParams {
    /// At or after this time (RFC 3339 or `YYYY-MM-DD`, UTC midnight).
    pub since: Option<String>,
    /// Before this time (RFC 3339 or `YYYY-MM-DD`).
    pub until: Option<String>,
    /// Only this action (`key.issued`, `settings.updated`…).
    pub action: Option<String>,
    /// Only this actor (`key:<id>`, `cli:<user>@<host>`, `telegram:<user id>`, `stripe`, `system`).
    pub actor: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1-500 (default 100).
    pub limit: Option<u32>,
    /// A platform key's filter: only this tenant's entries (slug).
    pub tenant: Option<String>,
}

/// The audit log, oldest first (`audit:read`): who changed what, when, and through which
/// request. A tenant key sees its own tenant's entries; a platform key every entry (or one
/// tenant's with `tenant`). Follow `next_cursor` until it is `null`.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", security(("api_key" = [])), params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Query(p): Query<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    let page = audit::list(
        &state.db,
        &admin.caller(),
        p.tenant.as_deref(),
        AuditQuery {
            since: p.since,
            until: p.until,
            action: p.action,
            actor: p.actor,
            cursor: p.cursor,
            limit: p.limit,
        },
    )
    .await?;
    Ok(Json(page))
}
