//! Billing: Stripe Checkout and the customer portal for a tenant.

use axum::{extract::State, http::HeaderMap};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::billing::checkout::{self, CheckoutRequest, PortalRequest, SessionUrl};
use crate::domain::{Resource, Scope, ScopeAccess::Write};
use crate::error::Error;
use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{Admin, Json},
};

/// Billing routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_checkout))
        .routes(routes!(open_portal))
}

/// The client's `Idempotency-Key` header, if it sent one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map_err(|_| {
                Error::validation(
                    "Idempotency-Key",
                    "the Idempotency-Key header must be visible ASCII",
                )
            })
        })
        .transpose()
}

/// Open a Stripe Checkout Session for the tenant to subscribe to a plan
/// (`billing:write`): answers the URL to send the buyer to. `success_url` and
/// `cancel_url` must be https or under one of the tenant's allowed origins. Send an
/// `Idempotency-Key` header to retry safely: the same key and body answer the same
/// session (the same key with another body is 409 `conflict`). 409 `conflict` also when
/// the plan's price is not in Stripe yet (run `chatorical plans sync`); 502
/// `stripe_error` when Stripe refuses; 503 `unavailable` when it does not answer (retry
/// with the same key), 503 `billing_not_configured` without Stripe.
#[utoipa::path(post, path = "/v1/billing/checkout", tag = "billing", security(("api_key" = [])),
    request_body = CheckoutRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry key: the same key and body answer the same session")),
    responses((status = 200, body = SessionUrl), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn start_checkout(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Json(request): Json<CheckoutRequest>,
) -> ApiResult<Json<SessionUrl>> {
    admin.require(&Scope::new(Resource::Billing, Write))?;
    let tenant = admin.tenant(&state, &headers).await?;
    let session = checkout::checkout(
        &state.db,
        state.billing.as_ref(),
        &admin.caller(),
        &tenant,
        &request,
        idempotency_key(&headers)?,
    )
    .await?;
    Ok(Json(session))
}

/// Open a session of Stripe's customer portal for the tenant (`billing:write`), where
/// it changes its card, sees its invoices and cancels: answers the URL to send it to.
/// `return_url` must be https or under one of the tenant's allowed origins. 503
/// `billing_not_configured` without Stripe.
#[utoipa::path(post, path = "/v1/billing/portal", tag = "billing", security(("api_key" = [])),
    request_body = PortalRequest,
    responses((status = 200, body = SessionUrl), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn open_portal(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Json(request): Json<PortalRequest>,
) -> ApiResult<Json<SessionUrl>> {
    admin.require(&Scope::new(Resource::Billing, Write))?;
    let tenant = admin.tenant(&state, &headers).await?;
    let session = checkout::portal(
        &state.db,
        state.billing.as_ref(),
        &admin.caller(),
        &tenant,
        &request,
        idempotency_key(&headers)?,
    )
    .await?;
    Ok(Json(session))
}
