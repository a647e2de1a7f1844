//! One error type for the library, with stable machine-readable codes.
//!
//! Every failure that can reach an API client carries an [`ErrorCode`]; the HTTP
//! layer turns an [`Error`] into `{"error":{"code","message","details"}}` and never
//! shows the cause of an internal failure to the client (it is logged instead).

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// Stable error codes: part of the public contract, never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body, query or path failed validation.
    ValidationFailed,
    /// The body was not valid JSON or did not have the expected shape.
    InvalidJson,
    /// Missing, malformed, unknown, revoked or expired credentials.
    Unauthorized,
    /// Valid credentials without the scope the call needs.
    Forbidden,
    /// The request `Origin` is not an allowed origin of the tenant.
    OriginNotAllowed,
    /// Nothing with that id exists for the caller (also used for other tenants' ids).
    NotFound,
    /// The request conflicts with the current state (e.g. duplicate slug).
    Conflict,
    /// The conversation is closed and takes no more messages.
    ConversationClosed,
    /// Too many requests; retry after `details.retry_after` seconds.
    RateLimited,
    /// Too many sockets open from one client address; close some first.
    TooManySockets,
    /// A limit of the tenant's plan is reached: `details {quota, limit, used, resets_at}`.
    QuotaExceeded,
    /// The tenant's plan does not include this channel or feature (`details.channel`).
    PlanRestricted,
    /// The body is larger than allowed.
    PayloadTooLarge,
    /// The request body did not arrive within `server.body_read_timeout_secs`.
    RequestTimeout,
    /// Configuration is invalid.
    InvalidConfig,
    /// Telegram would refuse this server's webhook URL (its cloud Bot API takes only
    /// https on port 443, 80, 88 or 8443): the operator must set `server.public_url`.
    WebhookUrlRejected,
    /// Billing is not set up on this server (`[billing.stripe]` has no `secret_key`,
    /// or no `webhook_secret` for the webhook).
    BillingNotConfigured,
    /// A signed request (a Stripe webhook) carries no valid signature for its body.
    InvalidSignature,
    /// Stripe refused a call (`details {stripe_code, stripe_type, status}`), or its
    /// answer could not be read.
    StripeError,
    /// A dependency (database) is unreachable; retry later.
    Unavailable,
    /// Anything else; details are in the server log, never in the response.
    Internal,
}

impl ErrorCode {
    /// The snake_case code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::ConversationClosed => "conversation_closed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManySockets => "too_many_sockets",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::PlanRestricted => "plan_restricted",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::WebhookUrlRejected => "webhook_url_rejected",
            ErrorCode::BillingNotConfigured => "billing_not_configured",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::StripeError => "stripe_error",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The library's error: a code, a message safe to show, optional details, and
/// (for internal failures) a cause that is only logged.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message, safe to show to the caller.
    pub message: String,
    /// Structured details (field names, retry_after...), safe to show.
    pub details: Option<Value>,
    /// The underlying cause; logged, never sent to API clients.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Shorthand result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error with a code and a caller-safe message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            details: None,
            source: None,
        }
    }

    /// Attach structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Attach a cause (kept out of responses).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// A validation error naming the offending field.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Error::new(ErrorCode::ValidationFailed, message)
            .with_details(serde_json::json!({ "field": field }))
    }

    /// Not found, with the kind of thing that was looked for.
    pub fn not_found(what: &str) -> Self {
        Error::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// Missing or bad credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Unauthorized, message)
    }

    /// An internal failure; `context` is logged, the client sees a generic message.
    pub fn internal(context: impl Into<String>) -> Self {
        let context = context.into();
        Error::new(ErrorCode::Internal, "internal error").with_source(Internal(context))
    }

    /// Whether this is an internal failure (logged at error level).
    pub fn is_internal(&self) -> bool {
        matches!(self.code, ErrorCode::Internal | ErrorCode::Unavailable)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Internal(String);

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as D};
        match &e {
            D::NotFound => Error::not_found("record").with_source(e),
            D::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                Error::new(ErrorCode::Conflict, "already exists").with_source(e)
            }
            // diesel-async reports a PostgreSQL connection that died mid-query (server
            // restarted or crashed) as `UnableToSendCommand` ("connection closed"): the
            // database is unreachable, not an internal failure — 503, retry later.
            D::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => Error::new(ErrorCode::Unavailable, "database unavailable").with_source(e),
            // PostgreSQL ends the sessions of a server that shuts down or recovers from a
            // crash with a FATAL of class 57 ("terminating connection due to administrator
            // command", "… because of crash of another server process"). diesel-async keeps
            // no SQLSTATE for it, only the (English, unless lc_messages is translated) text.
            D::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().starts_with("terminating connection") =>
            {
                Error::new(ErrorCode::Unavailable, "database unavailable").with_source(e)
            }
            _ => Error::new(ErrorCode::Internal, "internal error").with_source(e),
        }
    }
}

/// The unique constraint a write broke: its name (PostgreSQL) or its columns (SQLite,
/// whose error message lists `table.column`s), so callers can tell which duplicate it
/// was instead of treating every `conflict` alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueViolation {
    /// The constraint's name (PostgreSQL).
    pub constraint: Option<String>,
    /// `table.column` of each column of the constraint (SQLite).
    pub columns: Vec<String>,
}

impl UniqueViolation {
    /// Whether this is the constraint on `columns` of `table` (named `pg_name` on
    /// PostgreSQL).
    pub fn is(&self, pg_name: &str, table: &str, columns: &[&str]) -> bool {
        if let Some(name) = &self.constraint {
            return name == pg_name;
        }
        self.columns.len() == columns.len()
            && columns.iter().all(|c| {
                self.columns
                    .iter()
                    .any(|have| *have == format!("{table}.{c}"))
            })
    }

    fn from_info(info: &(dyn diesel::result::DatabaseErrorInformation + Send + Sync)) -> Self {
        let columns = info
            .message()
            .strip_prefix("UNIQUE constraint failed: ")
            .map(|rest| rest.split(", ").map(|c| c.trim().to_string()).collect())
            .unwrap_or_default();
        UniqueViolation {
            constraint: info.constraint_name().map(str::to_string),
            columns,
        }
    }
}

impl Error {
    /// The unique constraint behind a `conflict` that came from the database.
    pub fn unique_violation(&self) -> Option<UniqueViolation> {
        use diesel::result::{DatabaseErrorKind, Error as D};
        match self.source.as_ref()?.downcast_ref::<D>()? {
            D::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Some(UniqueViolation::from_info(info.as_ref()))
            }
            _ => None,
        }
    }
}

impl From<diesel::ConnectionError> for Error {
    fn from(e: diesel::ConnectionError) -> Self {
        Error::new(ErrorCode::Unavailable, "database unavailable").with_source(e)
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for Error {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Error::new(ErrorCode::Unavailable, "database unavailable").with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind as Kind, Error as D};

    fn database_error(kind: Kind, message: &str) -> Error {
        Error::from(D::DatabaseError(kind, Box::new(message.to_string())))
    }

    #[test]
    fn unique_violations_name_their_constraint() {
        let dup = database_error(
            Kind::UniqueViolation,
            "UNIQUE constraint failed: messages.conversation_id, messages.client_msg_id",
        );
        assert_eq!(dup.code, ErrorCode::Conflict);
        let v = dup.unique_violation().expect("a unique violation");
        assert!(v.is(
            "unused_on_sqlite",
            "messages",
            &["conversation_id", "client_msg_id"]
        ));
        assert!(!v.is("unused_on_sqlite", "messages", &["conversation_id", "seq"]));
        let seq = database_error(
            Kind::UniqueViolation,
            "UNIQUE constraint failed: messages.conversation_id, messages.seq",
        );
        let v = seq.unique_violation().expect("a unique violation");
        assert!(!v.is("x", "messages", &["conversation_id", "client_msg_id"]));
        // Not from the database, or not a unique violation: none.
        assert!(
            Error::new(ErrorCode::Conflict, "already")
                .unique_violation()
                .is_none()
        );
        assert!(
            database_error(Kind::ForeignKeyViolation, "fk")
                .unique_violation()
                .is_none()
        );
    }

    #[test]
    fn lost_database_connections_are_unavailable_not_internal() {
        for (kind, message) in [
            (Kind::ClosedConnection, "server closed the connection"),
            (Kind::UnableToSendCommand, "connection closed"),
            (
                Kind::Unknown,
                "terminating connection due to administrator command",
            ),
            (
                Kind::Unknown,
                "terminating connection because of crash of another server process",
            ),
        ] {
            assert_eq!(
                database_error(kind, message).code,
                ErrorCode::Unavailable,
                "{message}"
            );
        }
        assert_eq!(
            database_error(Kind::Unknown, "division by zero").code,
            ErrorCode::Internal
        );
    }
}
