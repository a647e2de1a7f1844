//! Errors as HTTP responses: `{"error":{"code","message","details"}}`.

use axum::{
    Json,
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, ErrorCode};

/// The error envelope of every non-2xx response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code, message and details of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Structured details, e.g. `{"field":"text"}`.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// An [`Error`] on its way out as a response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// HTTP status for a code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::InvalidJson | ErrorCode::InvalidSignature => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::OriginNotAllowed | ErrorCode::PlanRestricted => {
            StatusCode::FORBIDDEN
        }
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict | ErrorCode::ConversationClosed | ErrorCode::WebhookUrlRejected => {
            StatusCode::CONFLICT
        }
        ErrorCode::RateLimited | ErrorCode::TooManySockets | ErrorCode::QuotaExceeded => {
            StatusCode::TOO_MANY_REQUESTS
        }
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::StripeError => StatusCode::BAD_GATEWAY,
        ErrorCode::Unavailable | ErrorCode::BillingNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InvalidConfig | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.is_internal() {
            // The cause goes to the log only; the client gets the code.
            let cause = e.source.as_ref().map(|s| s.to_string()).unwrap_or_default();
            tracing::error!(code = %e.code, cause = %cause, "request failed");
        }
        // `rate_limited` also says when to come back in the standard header.
        let retry_after = (e.code == ErrorCode::RateLimited)
            .then(|| e.details.as_ref()?.get("retry_after")?.as_u64())
            .flatten();
        let body = ErrorBody {
            error: ErrorDetail {
                code: e.code.as_str().to_string(),
                message: e.message,
                details: e.details.unwrap_or_else(|| serde_json::json!({})),
            },
        };
        let mut resp = (status_of(e.code), Json(body)).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let code = match &r {
            JsonRejection::BytesRejection(_) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ErrorCode::PayloadTooLarge
            }
            JsonRejection::MissingJsonContentType(_) => ErrorCode::InvalidJson,
            _ => ErrorCode::InvalidJson,
        };
        let message = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                "expected Content-Type: application/json".to_string()
            }
            JsonRejection::JsonDataError(e) => {
                format!("body does not match the expected shape: {}", e.body_text())
            }
            JsonRejection::JsonSyntaxError(_) => "body is not valid JSON".to_string(),
            _ if code == ErrorCode::PayloadTooLarge => "body too large".to_string(),
            _ => "could not read the body".to_string(),
        };
        ApiError(Error::new(code, message))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError(Error::new(
            ErrorCode::ValidationFailed,
            format!("bad query string: {}", r.body_text()),
        ))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError(Error::new(
            ErrorCode::ValidationFailed,
            format!("bad path: {}", r.body_text()),
        ))
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
