use crate::error::{Error, Result};

/// The slug rule, as told to people: tenant slugs and plan codes follow it.
pub const SLUG_RULE: &str = "2-40 characters of a-z, 0-9 and '-', starting with a letter";

/// Whether `s` is a slug: 2–40 chars of `a-z`, `0-9`, `-`, starting with a letter and
/// not ending with `-`.
pub fn is_slug(s: &str) -> bool {
    let ok_len = (2..=40).contains(&s.len());
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_start = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    let ok_end = !s.ends_with('-');
    ok_len && ok_chars && ok_start && ok_end
}

/// A tenant slug: 2–40 chars of `a-z`, `0-9`, `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantSlug(String);

impl TenantSlug {
    /// Parse a slug, naming the rule that failed.
    pub fn parse(s: &str) -> Result<Self> {
        if is_slug(s) {
            Ok(TenantSlug(s.to_string()))
        } else {
            Err(Error::validation(
                "slug",
                format!("slug must be {SLUG_RULE}"),
            ))
        }
    }
    /// The slug text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(TenantSlug::parse("acme").is_ok());
        assert!(TenantSlug::parse("acme-2").is_ok());
        for bad in ["", "a", "Acme", "2acme", "acme-", "ac me", "acme_co"] {
            assert!(TenantSlug::parse(bad).is_err(), "{bad}");
        }
    }
}
