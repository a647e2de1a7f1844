//! `chatorical widget release`: the embed snippet for the widget script this binary
//! serves, pinned by content version and Subresource Integrity.
//!
//! The version is [`widget_version`] — the same content hash `GET /widget.js?v=…`
//! answers with immutable cache headers — and the integrity is the SHA-384 of exactly
//! the bytes served ([`WIDGET_JS`]). Nothing depends on the time or the machine, so
//! releasing twice without changes gives byte-identical output.
//!
//! The snippet carries [`WIDGET_KEY_PLACEHOLDER`], or with [`release_for_tenant`]
//! (`--tenant SLUG`) that tenant's public widget key, ready to paste.

use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::Serialize;
use sha2::{Digest, Sha384};

use crate::assets::{WIDGET_JS, widget_version};
use crate::db::Db;
use crate::error::{Error, ErrorCode, Result};
use crate::tenancy;

/// Placeholder for the tenant's widget key in the snippet.
pub const WIDGET_KEY_PLACEHOLDER: &str = "YOUR_WIDGET_KEY";

/// A release of the embedded widget script for one public server URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    /// Content version (`?v=`), as the server computes it.
    pub version: String,
    /// Subresource Integrity value: `sha384-<base64>`.
    pub integrity: String,
    /// Size of the script in bytes.
    pub bytes: usize,
    /// The script URL: `<origin>/widget.js?v=<version>`.
    pub src: String,
    /// The `<script>` tag to paste into pages.
    pub snippet: String,
}

/// Parse the server's public base URL: `http(s)://host[:port][/prefix]`, no query,
/// fragment or credentials. Returned without a trailing slash.
pub fn parse_origin(origin: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::new(
            ErrorCode::ValidationFailed,
            format!("--origin `{origin}`: {why}"),
        )
        .with_details(serde_json::json!({ "field": "origin" }))
    };
    let url = reqwest::Url::parse(origin.trim()).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(bad("must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("needs a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// `sha384-<base64>` of `bytes`.
pub fn integrity_of(bytes: &[u8]) -> String {
    format!("sha384-{}", B64.encode(Sha384::digest(bytes)))
}

fn attr(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The release of the embedded widget script for a server at `origin`, with
/// [`WIDGET_KEY_PLACEHOLDER`] in the snippet.
pub fn release(origin: &str) -> Result<Release> {
    release_with_key(origin, WIDGET_KEY_PLACEHOLDER)
}

/// The release for a server at `origin` with the widget key of the tenant `slug` in
/// the snippet (an operator's command: widget keys are public). The origin is checked
/// before the database is read; an unknown slug is `not_found`.
pub async fn release_for_tenant(db: &Db, origin: &str, slug: &str) -> Result<Release> {
    parse_origin(origin)?;
    let tenant = tenancy::tenant_by_slug(db, slug).await.map_err(|e| {
        if e.code == ErrorCode::NotFound {
            Error::new(ErrorCode::NotFound, format!("no tenant with slug `{slug}`"))
                .with_details(serde_json::json!({ "field": "tenant" }))
        } else {
            e
        }
    })?;
    release_with_key(origin, &tenant.widget_key)
}

fn release_with_key(origin: &str, widget_key: &str) -> Result<Release> {
    let origin = parse_origin(origin)?;
    let version = widget_version();
    let integrity = integrity_of(WIDGET_JS.as_bytes());
    let src = format!("{origin}/widget.js?v={version}");
    let snippet = format!(
        "<script src=\"{}\" integrity=\"{integrity}\" crossorigin=\"anonymous\" \
         data-widget-key=\"{}\" async></script>",
        attr(&src),
        attr(widget_key)
    );
    Ok(Release {
        version,
        integrity,
        bytes: WIDGET_JS.len(),
        src,
        snippet,
    })
}

/// Names of the files [`write`] produces in its directory.
pub fn file_names(release: &Release) -> [String; 3] {
    [
        format!("widget.{}.js", release.version),
        "snippet.html".to_string(),
        "release.json".to_string(),
    ]
}

/// Write `widget.<version>.js` (the exact bytes served), `snippet.html` and
/// `release.json` into `dir` (created if missing). Each file is written to a temporary
/// name and renamed, so a reader never sees half a file. Returns the paths written.
pub fn write(release: &Release, dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |path: &Path, e: std::io::Error| {
        Error::new(
            ErrorCode::InvalidConfig,
            format!("cannot write {}: {e}", path.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let manifest = serde_json::json!({
        "version": release.version,
        "integrity": release.integrity,
        "sha384": release.integrity.trim_start_matches("sha384-"),
        "bytes": release.bytes,
        "src": release.src,
        "snippet": release.snippet,
    });
    let manifest =
        serde_json::to_string_pretty(&manifest).map_err(|e| Error::internal(e.to_string()))? + "\n";
    let [asset, snippet, json] = file_names(release);
    let files = [
        (asset, WIDGET_JS.as_bytes().to_vec()),
        (snippet, format!("{}\n", release.snippet).into_bytes()),
        (json, manifest.into_bytes()),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, bytes) in files {
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, &bytes).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_must_be_a_plain_http_base_url() {
        assert_eq!(
            parse_origin("https://Chat.Example.com/").expect("ok"),
            "https://chat.example.com"
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:8080").expect("ok"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            parse_origin("https://example.com/chat/").expect("ok"),
            "https://example.com/chat"
        );
        for bad in [
            "ftp://example.com",
            "chat.example.com",
            "",
            "https://example.com/?a=1",
            "https://example.com/#x",
            "https://user:pw@example.com",
            "javascript:alert(1)",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn release_pins_version_and_integrity_of_the_served_bytes() {
        let r = release("https://chat.example.com").expect("release");
        assert_eq!(r.version, widget_version());
        assert_eq!(r.integrity, integrity_of(WIDGET_JS.as_bytes()));
        assert_eq!(r.bytes, WIDGET_JS.len());
        assert_eq!(
            r.snippet,
            format!(
                "<script src=\"https://chat.example.com/widget.js?v={}\" integrity=\"{}\" \
                 crossorigin=\"anonymous\" data-widget-key=\"YOUR_WIDGET_KEY\" async></script>",
                r.version, r.integrity
            )
        );
        assert_eq!(r, release("https://chat.example.com/").expect("again"));
    }

    #[test]
    fn integrity_is_base64_sha384() {
        // SHA-384("abc"), FIPS 180-2.
        assert_eq!(
            integrity_of(b"abc"),
            "sha384-ywB1P0WjXou1oD1pmsZQBycsMqsO3tFjGotgWkP/W+2AhgcroefMI1i67KE0yCWn"
        );
    }
}
