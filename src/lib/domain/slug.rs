use crate::error::{Error, Result};

/// A tenant slug: 2–40 chars of `a-z`, `0-9`, `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantSlug(String);

impl TenantSlug {
    /// Parse a slug, naming the rule that failed.
    pub fn parse(s: &str) -> Result<Self> {
        let ok_len = (2..=40).contains(&s.len());
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok_start = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
        let ok_end = !s.ends_with('-');
        if ok_len && ok_chars && ok_start && ok_end {
            Ok(TenantSlug(s.to_string()))
        } else {
            Err(Error::validation(
                "slug",
                "slug must be 2-40 characters of a-z, 0-9 and '-', starting with a letter",
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
