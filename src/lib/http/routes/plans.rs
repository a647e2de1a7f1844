//! Plans (platform keys): the catalogue, one plan, and a tenant's plan.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{Admin, Json, Path, Query},
};
use crate::plans::{self, DeletedPlan, Plan, PlanSpec, PutOutcome};
use crate::tenancy::Tenant;

/// Plan routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plans))
        .routes(routes!(get_plan, put_plan, delete_plan))
        .routes(routes!(set_tenant_plan))
}

/// A list of plans.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlanList {
    /// Plans by code.
    pub plans: Vec<Plan>,
}

/// Every plan, active or not (`plans:read`, platform keys).
#[utoipa::path(get, path = "/v1/admin/plans", tag = "plans", security(("api_key" = [])),
    responses((status = 200, body = PlanList), (status = 403, body = ErrorBody)))]
async fn list_plans(State(state): State<AppState>, admin: Admin) -> ApiResult<Json<PlanList>> {
    Ok(Json(PlanList {
        plans: plans::list(&state.db, &admin.caller()).await?,
    }))
}

/// One plan (`plans:read`, platform keys).
#[utoipa::path(get, path = "/v1/admin/plans/{code}", tag = "plans", security(("api_key" = [])),
    params(("code" = String, Path, description = "Plan code")),
    responses((status = 200, body = Plan), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_plan(
    State(state): State<AppState>,
    admin: Admin,
    Path(code): Path<String>,
) -> ApiResult<Json<Plan>> {
    Ok(Json(plans::get(&state.db, &admin.caller(), &code).await?))
}

/// Create or replace a plan (`plans:write`, platform keys): 201 when created, 200 when
/// replaced (or already exactly so: nothing is written then). Absent fields take their
/// defaults (active, no prices, unlimited, both channels, no features). Tenants on the
/// plan are held to the new limits at once. 422 `validation_failed` names the field in
/// `details.field` (`name`, `price_month_cents`, `limits.messages_per_day`, `features`…).
#[utoipa::path(put, path = "/v1/admin/plans/{code}", tag = "plans", security(("api_key" = [])),
    params(("code" = String, Path, description = "Plan code: 2-40 of a-z, 0-9, '-', starting with a letter")),
    request_body = PlanSpec,
    responses((status = 201, body = Plan), (status = 200, body = Plan), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_plan(
    State(state): State<AppState>,
    admin: Admin,
    Path(code): Path<String>,
    Json(spec): Json<PlanSpec>,
) -> ApiResult<(StatusCode, Json<Plan>)> {
    let (plan, outcome) = plans::put(&state.db, &admin.caller(), &code, spec).await?;
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Replaced | PutOutcome::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(plan)))
}

/// Deletion options.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct DeleteParams {
    /// Move the plan's tenants to this (active) plan, in the same transaction.
    pub reassign: Option<String>,
}

/// Delete a plan (`plans:write`, platform keys). A plan still used by tenants is 409
/// `conflict` (`details.tenants`: how many) unless `reassign` names an active plan to
/// move them to. `free` is never deleted (409).
#[utoipa::path(delete, path = "/v1/admin/plans/{code}", tag = "plans", security(("api_key" = [])),
    params(("code" = String, Path, description = "Plan code"), DeleteParams),
    responses((status = 200, body = DeletedPlan), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn delete_plan(
    State(state): State<AppState>,
    admin: Admin,
    Path(code): Path<String>,
    Query(p): Query<DeleteParams>,
) -> ApiResult<Json<DeletedPlan>> {
    Ok(Json(
        plans::delete(&state.db, &admin.caller(), &code, p.reassign.as_deref()).await?,
    ))
}

/// Body of `PUT /v1/admin/tenants/{slug}/plan`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetPlan {
    /// The code of an active plan.
    pub plan: String,
}

/// Put a tenant on a plan (`plans:write`, platform keys). It takes effect at once.
/// An unknown or inactive plan is 422 `validation_failed` (`details.field: "plan"`).
#[utoipa::path(put, path = "/v1/admin/tenants/{slug}/plan", tag = "plans", security(("api_key" = [])),
    params(("slug" = String, Path, description = "Tenant slug")), request_body = SetPlan,
    responses((status = 200, body = Tenant), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_tenant_plan(
    State(state): State<AppState>,
    admin: Admin,
    Path(slug): Path<String>,
    Json(req): Json<SetPlan>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(
        plans::set_tenant_plan(&state.db, &admin.caller(), &slug, &req.plan).await?,
    ))
}
