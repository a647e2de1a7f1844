//! Domain newtypes: parsed once at the edge, trusted everywhere after.

mod api_key;
mod cidr;
mod ids;
mod origin;
mod scope;
mod slug;
mod token;

pub use api_key::{ApiKeySecret, KeyParseError};
pub use cidr::{Cidr, CidrParseError};
pub use ids::new_id;
pub use origin::Origin;
pub use scope::{Scope, ScopeAccess, Scopes};
pub use slug::TenantSlug;
pub use token::{VisitorToken, random_base62, sha256_hex};

/// Milliseconds since the Unix epoch (all timestamps are stored this way).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Format epoch milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
