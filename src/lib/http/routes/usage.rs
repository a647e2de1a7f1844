//! Usage: a tenant's daily counters.

use axum::{extract::State, http::HeaderMap};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::{Scope, ScopeAccess::Read};
use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{Admin, Json, Query},
};
use crate::usage::{self, UsageReport};

/// Usage routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show))
}

/// Which days to report.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct UsageParams {
    /// The last this many days, today (UTC) included (1–366, default 30).
    pub days: Option<u32>,
}

/// The tenant's usage per UTC day (`usage:read`): conversations started, messages in
/// and out, Telegram topics created. With Redis the counts are as of the last summary
/// (every minute); on the embedded default they are current.
#[utoipa::path(get, path = "/v1/admin/usage", tag = "admin", security(("api_key" = [])), params(UsageParams),
    responses((status = 200, body = UsageReport), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Query(p): Query<UsageParams>,
) -> ApiResult<Json<UsageReport>> {
    admin.require(&Scope::new(crate::domain::Resource::Usage, Read))?;
    let tenant = admin.tenant(&state, &headers).await?;
    let report = usage::show(
        &state.db,
        &state.quotas,
        &admin.caller(),
        &tenant,
        p.days.unwrap_or(30),
    )
    .await?;
    Ok(Json(report))
}
