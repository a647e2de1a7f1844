//! Identity verification for a tenant: generate the secret, show whether it is set up.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::{
    Scope,
    ScopeAccess::{Read, Write},
};
use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{Admin, Json},
};
use crate::identity::{self, IdentitySecret, IdentityStatus};

/// Identity routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(identity_status))
        .routes(routes!(generate_secret))
}

/// Whether identity verification is set up and required (`settings:read`). The secret
/// itself is never shown here.
#[utoipa::path(get, path = "/v1/admin/identity", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = IdentityStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn identity_status(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
) -> ApiResult<Json<IdentityStatus>> {
    admin.require(&Scope::new(crate::domain::Resource::Settings, Read))?;
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        identity::status(&state.db, &admin.caller(), &tenant).await?,
    ))
}

/// Generate a new identity secret (`settings:write`), replacing any previous one: user
/// hashes made with the old secret stop verifying. The secret is in this response
/// once and never again; the host site's server computes
/// `user_hash = hex(HMAC-SHA256(secret, user_id))` with it. Require identities with
/// `PATCH /v1/admin/settings {"identity_required": true}`.
#[utoipa::path(post, path = "/v1/admin/identity/secret", tag = "admin", security(("api_key" = [])),
    responses((status = 201, body = IdentitySecret), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn generate_secret(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<IdentitySecret>)> {
    admin.require(&Scope::new(crate::domain::Resource::Settings, Write))?;
    let tenant = admin.tenant(&state, &headers).await?;
    let secret =
        identity::generate_secret(&state.db, &state.master_key, &admin.caller(), &tenant).await?;
    Ok((StatusCode::CREATED, Json(secret)))
}
