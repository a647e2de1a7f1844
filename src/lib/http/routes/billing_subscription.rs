//! `GET /v1/billing/subscription`: where the tenant stands with billing.

use axum::{extract::State, http::HeaderMap};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::billing::subscription::{self, BillingStatus};
use crate::domain::{Resource, Scope, ScopeAccess};
use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{Admin, Json},
};

/// The subscription route.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show))
}

/// The tenant's plan and Stripe subscription (`billing:read`): status, interval, end of
/// the paid period, whether it is cancelled at the period's end, and — after a failed
/// payment — the grace period's end (`dunning: grace`) or the downgrade to `free`
/// (`dunning: downgraded`). 503 `billing_not_configured` without Stripe.
#[utoipa::path(get, path = "/v1/billing/subscription", tag = "billing", security(("api_key" = [])),
    responses((status = 200, body = BillingStatus), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
) -> ApiResult<Json<BillingStatus>> {
    if state.billing.is_none() {
        return Err(crate::billing::not_configured().into());
    }
    admin.require(&Scope::new(Resource::Billing, ScopeAccess::Read))?;
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        subscription::status(&state.db, &admin.caller(), &tenant).await?,
    ))
}
