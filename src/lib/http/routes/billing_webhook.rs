//! Stripe's webhook: `POST /v1/billing/stripe/webhook`.

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::HeaderMap,
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::billing::events;
use crate::domain::now_ms;
use crate::error::{Error, ErrorCode};
use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::Json,
};

/// Largest event body taken (Stripe's events carry whole objects: an invoice with its
/// lines can pass the API's usual 64 KiB).
const MAX_EVENT_BYTES: usize = 512 * 1024;

/// The webhook route.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(receive_event))
        .layer(DefaultBodyLimit::max(MAX_EVENT_BYTES))
}

/// Accepted event.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventAck {
    /// applied | stale (older than the state held: nothing changed) | unmatched (no
    /// tenant) | unknown_plan (stored; the tenant's plan unchanged) | ignored (a type not
    /// acted on) | duplicate (received before).
    pub outcome: String,
}

/// Stripe's webhook endpoint. `Stripe-Signature` must sign the raw body with the
/// endpoint's secret (`billing.stripe.webhook_secret`) within 300 s; the event is
/// recorded and applied in one transaction and answered 2xx only after it commits
/// (a replay answers `duplicate`). 503 without Stripe configured, and when the
/// database is down (Stripe retries).
#[utoipa::path(post, path = "/v1/billing/stripe/webhook", tag = "billing",
    params(("Stripe-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"{t}.{body}\">")),
    request_body(content = Object, description = "A Stripe event", example = json!({
        "id": "evt_1QxYz",
        "object": "event",
        "type": "customer.subscription.updated",
        "created": 1767225600,
        "data": {"object": {
            "id": "sub_1QxYz", "object": "subscription", "customer": "cus_1QxYz",
            "status": "active", "cancel_at_period_end": false,
            "metadata": {"chatorical_tenant": "tn_0192..."},
            "items": {"data": [{"current_period_end": 1769904000,
                "price": {"lookup_key": "chatorical_pro_month", "recurring": {"interval": "month"}}}]}
        }}
    })),
    responses((status = 200, body = EventAck),
        (status = 400, description = "`invalid_signature` or `invalid_json`", body = ErrorBody),
        (status = 503, description = "`billing_not_configured`, or `unavailable` (database down)", body = ErrorBody)))]
async fn receive_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<EventAck>> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let received = events::receive(
        &state.db,
        state.billing.as_ref(),
        signature,
        &body,
        now_ms(),
    )
    .await
    .map_err(|e| {
        // Database trouble must be a 5xx so that Stripe retries.
        if e.code == ErrorCode::Internal {
            Error::new(ErrorCode::Unavailable, "try again").with_source(e)
        } else {
            e
        }
    })?;
    if received.notified {
        state.wake.wake();
    }
    Ok(Json(EventAck {
        outcome: received.outcome.as_str().into(),
    }))
}
