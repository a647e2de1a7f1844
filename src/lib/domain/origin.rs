use crate::error::{Error, Result};

/// A web origin `scheme://host[:port]` in the form browsers send in the `Origin` header
/// (WHATWG URL serialisation): lower-case, IDNs as punycode, no default port, no path.
/// Compared exactly: `https://a.com` never matches `https://a.com.evil.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Origin(String);

impl Origin {
    /// Parse an origin with a URL parser and keep its normalised form
    /// (`HTTPS://Shop.Example:443/` → `https://shop.example`). Anything that is more than
    /// an origin (a path, query, fragment or credentials) or is not http(s) is refused.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::validation(
                "origin",
                format!("`{s}` is not an origin like https://example.com: {why}"),
            )
        };
        let raw = s.trim();
        if !raw.contains("://") {
            return Err(bad("no scheme"));
        }
        let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials are not part of an origin"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a path, query or fragment is not part of an origin"));
        }
        // The parser accepts `https://x.com/` with a trailing slash (path "/") but also
        // `https://x.com?` (empty query, reported as Some("")) — both caught above —
        // and writes the origin the way a browser does.
        let origin = url.origin();
        if !origin.is_tuple() {
            return Err(bad("not a tuple origin"));
        }
        Ok(Origin(origin.ascii_serialization()))
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

    fn norm(s: &str) -> Option<String> {
        Origin::parse(s).map(|o| o.0).ok()
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            norm("https://Example.com/"),
            Some("https://example.com".into())
        );
        assert_eq!(
            norm("http://localhost:8080"),
            Some("http://localhost:8080".into())
        );
        assert_eq!(
            norm("HTTPS://shop.example:443"),
            Some("https://shop.example".into())
        );
        assert_eq!(norm("http://a.test:80"), Some("http://a.test".into()));
        assert_eq!(
            norm("http://127.0.0.1:3000"),
            Some("http://127.0.0.1:3000".into())
        );
        assert_eq!(norm("http://[::1]:8080"), Some("http://[::1]:8080".into()));
        assert_eq!(
            norm("https://bücher.example"),
            Some("https://xn--bcher-kva.example".into())
        );
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
            "https://u:p@x.com",
            "https://x.com:99999",
            "http://a.test:80:80",
            "https://x.com?q=1",
            "https://x.com#frag",
            "https://",
            "https://x .com",
            "file:///etc/passwd",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}
