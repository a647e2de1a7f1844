use crate::error::{Error, Result};

/// A web origin `scheme://host[:port]`, normalised to lower case without a path.
/// Compared exactly: `https://a.com` never matches `https://a.com.evil.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Origin(String);

impl Origin {
    /// Parse an origin as a browser sends it in the `Origin` header.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::validation(
                "origin",
                format!("`{s}` is not an origin like https://example.com"),
            )
        };
        let lower = s.trim().to_ascii_lowercase();
        let (scheme, rest) = lower.split_once("://").ok_or_else(bad)?;
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad());
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
            _ => (rest, None),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        {
            return Err(bad());
        }
        if let Some(p) = port {
            p.parse::<u16>().map_err(|_| bad())?;
        }
        Ok(Origin(format!("{scheme}://{rest}")))
    }
    /// The origin text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Origin {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Origin::parse(&s)
    }
}

impl From<Origin> for String {
    fn from(o: Origin) -> String {
        o.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            Origin::parse("https://Example.com/").map(|o| o.0).ok(),
            Some("https://example.com".into())
        );
        assert!(Origin::parse("http://localhost:8080").is_ok());
    }

    #[test]
    fn rejects_non_origins() {
        for bad in [
            "null",
            "",
            "example.com",
            "ftp://x.com",
            "https://x.com/path",
            "https://u@x.com",
            "https://x.com:99999",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}
