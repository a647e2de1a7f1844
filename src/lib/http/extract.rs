//! Extractors whose rejections use the API's error envelope, and the callers'
//! credentials: admin keys and visitor tokens.

use axum::{
    body::{Body, Bytes},
    extract::{
        FromRequest, FromRequestParts, OptionalFromRequestParts, Request, rejection::JsonRejection,
    },
    http::{HeaderMap, header, request::Parts},
};

use crate::domain::Scope;
use crate::error::{Error, ErrorCode};
use crate::tenancy::{self, Principal, Tenant};

use super::{AppState, error::ApiError};

/// `axum::Json` with the API's error format on rejection. A body with a NUL character
/// (`\u0000`) in any string is refused (422 `validation_failed`): PostgreSQL cannot store
/// NUL in `text` or `jsonb`, and no field of the API needs one.
pub(crate) struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| ApiError::from(JsonRejection::from(e)))?;
        let req = Request::from_parts(parts, Body::from(bytes.clone()));
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        if has_nul_escape(&bytes) {
            return Err(Error::validation("body", "strings must not contain NUL (U+0000)").into());
        }
        Ok(Json(value))
    }
}

/// Whether JSON text holds the escape `\u0000` (a raw NUL is not valid JSON). An escape
/// is a `\u0000` preceded by an odd number of backslashes: in `\\u0000` the backslash
/// itself is escaped.
fn has_nul_escape(json: &[u8]) -> bool {
    json.windows(6).enumerate().any(|(i, w)| {
        w == b"\\u0000" && json[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
    })
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` with the API's error format on rejection.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` with the API's error format on rejection.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct Path<T>(pub T);

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The `Origin` header, if the request has one.
pub(crate) fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// An admin caller, authenticated by `Authorization: Bearer chk_…`.
#[derive(Debug, Clone)]
pub(crate) struct Admin(pub Principal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = bearer(&parts.headers)
            .ok_or_else(|| Error::unauthorized("missing Authorization: Bearer <API key>"))?;
        let mut principal = tenancy::authenticate(&state.db, key).await?;
        principal.request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        tracing::Span::current().record("key", principal.key_id.as_str());
        if let Some(t) = &principal.tenant_id {
            tracing::Span::current().record("tenant", t.as_str());
        }
        Ok(Admin(principal))
    }
}

impl Admin {
    /// The caller, for operations that take one.
    pub(crate) fn caller(&self) -> tenancy::Caller {
        tenancy::Caller::Key(self.0.clone())
    }

    /// Require a scope.
    pub(crate) fn require(&self, scope: &Scope) -> Result<(), ApiError> {
        self.0.require(scope).map_err(ApiError)
    }

    /// The tenant this call acts for: a tenant key's own tenant, or for a platform
    /// key the tenant named by the `Chatorical-Tenant: <slug>` header.
    pub(crate) async fn tenant(
        &self,
        state: &AppState,
        headers: &HeaderMap,
    ) -> Result<Tenant, ApiError> {
        match &self.0.tenant_id {
            Some(id) => Ok(tenancy::tenant_by_id(&state.db, id).await?),
            None => {
                let slug = headers
                    .get("chatorical-tenant")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        Error::new(
                            ErrorCode::Forbidden,
                            "a platform key must name the tenant in the Chatorical-Tenant header",
                        )
                    })?;
                let tenant = tenancy::tenant_by_slug(&state.db, slug).await?;
                tracing::Span::current().record("tenant", tenant.id.as_str());
                Ok(tenant)
            }
        }
    }
}

/// A widget visitor, authenticated by `Authorization: Bearer vt_…`. A request from a
/// browser origin that is not one of the tenant's allowed origins is refused, and so is
/// an anonymous visitor of a tenant that requires identity verification (a token
/// issued before it did).
#[derive(Debug, Clone)]
pub(crate) struct VisitorAuth(pub crate::chat::Visitor);

impl FromRequestParts<AppState> for VisitorAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| Error::unauthorized("missing Authorization: Bearer <visitor token>"))?;
        // The visitor and their tenant in one read (not a second one for the tenant).
        let (visitor, verified, tenant, messages_per_day) =
            state.chat.authenticate_visitor_with_tenant(token).await?;
        // For the message route (read in the same statement; see `Chat::post_message_known`).
        parts.extensions.insert(messages_per_day);
        tracing::Span::current().record("tenant", visitor.tenant_id.as_str());
        if let Some(o) = origin(&parts.headers) {
            check_origin(&tenant, o)?;
        }
        if !verified && tenant.settings.identity_required {
            return Err(Error::unauthorized(
                "this site requires a verified identity: start a new session with user_id and user_hash",
            )
            .into());
        }
        Ok(VisitorAuth(visitor))
    }
}

impl OptionalFromRequestParts<AppState> for VisitorAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        if bearer(&parts.headers).is_none() {
            return Ok(None);
        }
        <VisitorAuth as FromRequestParts<AppState>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

/// `origin_not_allowed` unless `origin` is exactly one of the tenant's allowed origins.
pub(crate) fn check_origin(tenant: &Tenant, origin: &str) -> Result<(), Error> {
    tenant.check_origin(origin)
}
