//! Visitors' personal data (GDPR): `GET /v1/admin/visitors/{id}/export` and
//! `DELETE /v1/admin/visitors/{id}`.

use axum::{extract::State, http::HeaderMap};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::VisitorId;
use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{Admin, Json, Path},
};
use crate::visitors::{self, Erasure, VisitorExport};

/// Visitor routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_visitor))
        .routes(routes!(erase_visitor))
}

/// Everything stored about a visitor (`visitors:read`): profile (locale, page, name,
/// email, first and last seen), identity (verified user id), device tokens (how many
/// and when issued — never the tokens), every conversation and every message. Recorded
/// in the audit log as `visitor.exported`. Another tenant's visitor is 404. An erased
/// visitor's export shows `erased: true`, an empty profile and erased messages.
#[utoipa::path(get, path = "/v1/admin/visitors/{id}/export", tag = "admin", security(("api_key" = [])),
    params(("id" = String, Path, description = "Visitor id")),
    responses((status = 200, body = VisitorExport), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn export_visitor(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<VisitorId>,
) -> ApiResult<Json<VisitorExport>> {
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        visitors::export(&state.db, &admin.caller(), &tenant, &id).await?,
    ))
}

/// Erase a visitor (`visitors:write`), in one transaction: every message text of their
/// conversations (both directions) is replaced by an erasure marker (empty `text`,
/// `erased: true`; seqs and times stay), their open conversations are closed, subjects
/// and topic names cleared, profile and identity removed, every token revoked (their
/// open sockets close with 1008 on every node; earlier ws tokens open nothing), outbox
/// items of their conversations not delivered yet cancelled; Telegram topics are renamed to the
/// id-only name and closed. One `visitor.erased` audit entry (counts only). Erasing
/// again answers 200 with `already_erased: true`, changes nothing and records nothing.
/// Messages Telegram already received stay in Telegram. Another tenant's visitor is 404.
#[utoipa::path(delete, path = "/v1/admin/visitors/{id}", tag = "admin", security(("api_key" = [])),
    params(("id" = String, Path, description = "Visitor id")),
    responses((status = 200, body = Erasure), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn erase_visitor(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<VisitorId>,
) -> ApiResult<Json<Erasure>> {
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        visitors::erase(
            &state.db,
            state.chat.hub().as_ref(),
            &state.wake,
            &admin.caller(),
            &tenant,
            &id,
        )
        .await?,
    ))
}
