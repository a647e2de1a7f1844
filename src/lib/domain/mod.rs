//! Domain newtypes: parsed once at the edge, trusted everywhere after.

mod api_key;
mod cidr;
mod environment;
mod ids;
mod origin;
/// API key scopes: resources and access.
pub mod scope;
mod slug;
pub mod text;
mod token;

pub use api_key::{ApiKeySecret, KeyParseError};
pub use cidr::{Cidr, CidrParseError};
pub use environment::Environment;
pub use ids::{ConversationId, KeyId, MessageId, TenantId, VisitorId, new_id};
pub use origin::Origin;
pub use scope::{Resource, Scope, ScopeAccess, Scopes};
pub use slug::{SLUG_RULE, TenantSlug, is_slug};
pub use token::{VisitorToken, random_base62, sha256_hex};

/// Milliseconds since the Unix epoch (all timestamps are stored this way).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The latest instant RFC 3339 can write (9999-12-31T23:59:59.999Z), in epoch milliseconds.
pub const MAX_RFC3339_MS: i64 = 253_402_300_799_999;

/// Format epoch milliseconds as RFC 3339 (UTC, millisecond precision). Instants outside
/// 1970..=9999 are written as the nearest end of that range (the formatter cannot write a
/// five-digit year and would panic).
pub fn rfc3339(ms: i64) -> String {
    let ms = ms.clamp(0, MAX_RFC3339_MS);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
