//! Widget strings and their translations: the catalogue of keys with built-in defaults,
//! a tiny template syntax, locales and the fallback chain, and each tenant's overrides.
//!
//! # Keys
//! Every string the widget shows has a stable key ([`CATALOGUE`], e.g. `widget.title`)
//! with a built-in English text, and the variables its template may use (e.g.
//! `widget.rate_limited` may use `{{retry_after}}`). Built-in German texts ([`builtin`])
//! exist for every key as well. A tenant overrides any key in any locale
//! (`PUT /v1/admin/templates/{key}/{locale}`, `chatorical templates set`). A key
//! outside the catalogue is always `not_found`.
//!
//! # Template syntax
//! Literal text with `{{variable}}` placeholders; whitespace inside the braces is
//! allowed (`{{ retry_after }}`). A variable name is a letter or `_` followed by
//! letters, digits or `_`. A `{{` without a closing `}}`, or with an empty or invalid
//! name, is a syntax error; a variable the key does not allow is an error too. Both
//! are `validation_failed` with `details: {"field": "body", "position": N}` (plus
//! `"variable"` for a disallowed one), `N` being the 0-based character (Unicode
//! scalar value) offset of the offending `{{`. There is no escape for a literal `{{`;
//! a lone `{`, `}` or `}}` is plain text. When rendering, a variable without a value
//! renders as the empty string.
//!
//! # Locales and fallback
//! A locale is `ll` or `ll-RR` (ISO 639-1 language, optional ISO 3166 region), case
//! normalised (`DE-at` → `de-AT`); anything else is `validation_failed` (`field:
//! "locale"`). A string is looked up along the chain: the exact locale (`de-AT`), its
//! language (`de`), the tenant's `settings.default_locale` (and its language), then
//! `en`. At each step the tenant's override wins over the built-in text; the first
//! step that has either is used. English always has a built-in, so every key resolves.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use utoipa::ToSchema;

use crate::audit::{Action, Entry};
use crate::db::{Db, models::TemplateRow, repo};
use crate::domain::{Resource, Scope, ScopeAccess};
use crate::domain::{now_ms, rfc3339};
use crate::error::{Error, ErrorCode, Result};
use crate::tenancy::{Caller, Tenant};

/// One widget string: its key, built-in English text and allowed variables.
#[derive(Debug, Clone, Copy)]
pub struct StringDef {
    /// Stable key, e.g. `widget.title`.
    pub key: &'static str,
    /// Built-in English text (a template).
    pub en: &'static str,
    /// Variables the template may use.
    pub variables: &'static [&'static str],
    /// Where the widget shows it.
    pub description: &'static str,
}

const fn def(
    key: &'static str,
    en: &'static str,
    variables: &'static [&'static str],
    description: &'static str,
) -> StringDef {
    StringDef {
        key,
        en,
        variables,
        description,
    }
}

/// Every string the widget shows (widget/widget.js keeps the same English defaults).
pub const CATALOGUE: &[StringDef] = &[
    def(
        "widget.launcher",
        "Chat",
        &[],
        "text on the round launcher button",
    ),
    def(
        "widget.open_chat",
        "Open chat",
        &[],
        "launcher's accessible label while closed",
    ),
    def(
        "widget.close_chat",
        "Close chat",
        &[],
        "close button and launcher label while open",
    ),
    def(
        "widget.unread",
        "{{count}} unread",
        &["count"],
        "unread messages, appended to the launcher label",
    ),
    def("widget.title", "Chat with us", &[], "panel title"),
    def(
        "widget.greeting",
        "Hi! Ask us anything \u{2013} we usually reply within a few minutes.",
        &[],
        "shown while the conversation has no messages",
    ),
    def(
        "widget.messages_label",
        "Messages",
        &[],
        "accessible label of the message list",
    ),
    def(
        "widget.input_label",
        "Message",
        &[],
        "accessible label of the text box",
    ),
    def(
        "widget.placeholder",
        "Type your message\u{2026}",
        &[],
        "text box placeholder",
    ),
    def("widget.send", "Send", &[], "send button"),
    def(
        "widget.sending",
        "sending\u{2026}",
        &[],
        "under a message not yet stored",
    ),
    def("widget.edited", "edited", &[], "under an edited message"),
    def(
        "widget.failed",
        "not sent: {{reason}}",
        &["reason"],
        "under a message that failed",
    ),
    def(
        "widget.retry",
        "Retry",
        &[],
        "button to resend a failed message",
    ),
    def(
        "widget.agent_name",
        "Support",
        &[],
        "author of agent messages without a name",
    ),
    def(
        "widget.typing",
        "Support is typing\u{2026}",
        &[],
        "while an agent types",
    ),
    def(
        "widget.agents_online",
        "We're online",
        &[],
        "under the title while agents are online",
    ),
    def(
        "widget.agents_away",
        "We'll reply as soon as we can",
        &[],
        "under the title while no agent is online (the away message)",
    ),
    def(
        "widget.connecting",
        "connecting\u{2026}",
        &[],
        "status while connecting",
    ),
    def(
        "widget.reconnecting",
        "offline \u{2013} reconnecting",
        &[],
        "status after a lost connection",
    ),
    def(
        "widget.unavailable",
        "Chat is unavailable right now.",
        &[],
        "status when the widget cannot work",
    ),
    def(
        "widget.rate_limited",
        "You're sending too fast \u{2013} try again in {{retry_after}} s",
        &["retry_after"],
        "notice while rate limited (seconds left)",
    ),
    def(
        "widget.quota_conversations",
        "This chat is not taking new conversations today \u{2013} try again after {{time}}",
        &["time"],
        "notice when the plan's conversations a day are used up (the reset time in the visitor's time zone)",
    ),
    def(
        "widget.quota_messages",
        "This chat is not taking more messages today \u{2013} try again after {{time}}",
        &["time"],
        "notice when the plan's messages a day are used up (the reset time in the visitor's time zone)",
    ),
    def(
        "widget.quota_active",
        "All our agents' conversations are busy \u{2013} please try again later",
        &[],
        "notice when the plan's open conversations are all taken",
    ),
    def(
        "widget.not_sent",
        "not sent",
        &[],
        "under a message a plan limit refused (kept, with a Retry button)",
    ),
    def(
        "widget.conversation_closed",
        "This conversation was closed. Send a message to start a new one.",
        &[],
        "notice after agents closed the conversation",
    ),
    def(
        "widget.too_long",
        "Messages can be at most {{max}} characters.",
        &["max"],
        "notice when a message is too long",
    ),
    def(
        "widget.identify_prompt",
        "Tell us your name",
        &[],
        "button that opens the optional name form",
    ),
    def(
        "widget.identify_name",
        "Your name",
        &[],
        "label of the name field",
    ),
    def(
        "widget.identify_email",
        "Email (optional)",
        &[],
        "label of the email field",
    ),
    def(
        "widget.identify_save",
        "Save",
        &[],
        "name form's save button",
    ),
    def(
        "widget.identify_cancel",
        "Not now",
        &[],
        "name form's button that closes it",
    ),
    def(
        "widget.identify_thanks",
        "Thanks, {{name}}!",
        &["name"],
        "shown after the name was saved (the name, or the email without one)",
    ),
    def(
        "widget.identify_failed",
        "That did not work \u{2013} please check your name and email.",
        &[],
        "shown when the name form could not be saved",
    ),
];

/// Built-in German texts (`de`), so that `de`, `de-AT`, `de-CH`… read German.
const DE: &[(&str, &str)] = &[
    ("widget.launcher", "Chat"),
    ("widget.open_chat", "Chat \u{f6}ffnen"),
    ("widget.close_chat", "Chat schlie\u{df}en"),
    ("widget.unread", "{{count}} ungelesen"),
    ("widget.title", "Schreiben Sie uns"),
    (
        "widget.greeting",
        "Hallo! Fragen Sie uns gern \u{2013} wir antworten meist innerhalb weniger Minuten.",
    ),
    ("widget.messages_label", "Nachrichten"),
    ("widget.input_label", "Nachricht"),
    ("widget.placeholder", "Ihre Nachricht\u{2026}"),
    ("widget.send", "Senden"),
    ("widget.sending", "wird gesendet\u{2026}"),
    ("widget.edited", "bearbeitet"),
    ("widget.failed", "nicht gesendet: {{reason}}"),
    ("widget.retry", "Erneut senden"),
    ("widget.agent_name", "Support"),
    ("widget.typing", "Der Support schreibt\u{2026}"),
    ("widget.agents_online", "Wir sind online"),
    (
        "widget.agents_away",
        "Wir antworten so bald wie m\u{f6}glich",
    ),
    ("widget.connecting", "Verbindung wird hergestellt\u{2026}"),
    (
        "widget.reconnecting",
        "offline \u{2013} Verbindung wird wiederhergestellt",
    ),
    (
        "widget.unavailable",
        "Der Chat ist gerade nicht verf\u{fc}gbar.",
    ),
    (
        "widget.rate_limited",
        "Sie senden zu schnell \u{2013} bitte in {{retry_after}} s erneut versuchen",
    ),
    (
        "widget.quota_conversations",
        "Dieser Chat nimmt heute keine neuen Gespr\u{e4}che mehr an \u{2013} bitte nach {{time}} erneut versuchen",
    ),
    (
        "widget.quota_messages",
        "Dieser Chat nimmt heute keine weiteren Nachrichten mehr an \u{2013} bitte nach {{time}} erneut versuchen",
    ),
    (
        "widget.quota_active",
        "Alle unsere Mitarbeitenden sind gerade in Gespr\u{e4}chen \u{2013} bitte versuchen Sie es sp\u{e4}ter erneut",
    ),
    ("widget.not_sent", "nicht gesendet"),
    (
        "widget.conversation_closed",
        "Dieses Gespr\u{e4}ch wurde beendet. Senden Sie eine Nachricht, um ein neues zu beginnen.",
    ),
    (
        "widget.too_long",
        "Nachrichten d\u{fc}rfen h\u{f6}chstens {{max}} Zeichen lang sein.",
    ),
    ("widget.identify_prompt", "Sagen Sie uns Ihren Namen"),
    ("widget.identify_name", "Ihr Name"),
    ("widget.identify_email", "E-Mail (optional)"),
    ("widget.identify_save", "Speichern"),
    ("widget.identify_cancel", "Nicht jetzt"),
    ("widget.identify_thanks", "Danke, {{name}}!"),
    (
        "widget.identify_failed",
        "Das hat nicht geklappt \u{2013} bitte pr\u{fc}fen Sie Name und E-Mail.",
    ),
];

/// Longest template body, in characters.
pub const MAX_BODY_CHARS: usize = 2000;

/// The catalogue entry for `key`, or `not_found` naming it.
pub fn string_def(key: &str) -> Result<&'static StringDef> {
    CATALOGUE.iter().find(|d| d.key == key).ok_or_else(|| {
        Error::new(ErrorCode::NotFound, format!("unknown string key `{key}`"))
            .with_details(serde_json::json!({ "field": "key", "key": key }))
    })
}

/// The built-in text of `key` in exactly `locale` (built-ins exist for `en` and `de`).
pub fn builtin(locale: &Locale, key: &str) -> Option<&'static str> {
    match locale.as_str() {
        "en" => CATALOGUE.iter().find(|d| d.key == key).map(|d| d.en),
        "de" => DE.iter().find(|(k, _)| *k == key).map(|(_, v)| *v),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Locales
// ---------------------------------------------------------------------------

/// A locale: `ll` or `ll-RR`, case normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locale(String);

impl Locale {
    /// Parse `ll` or `ll-RR` (any case); anything else is `validation_failed`.
    pub fn parse(s: &str) -> Result<Self> {
        Self::try_parse(s).ok_or_else(|| {
            Error::validation(
                "locale",
                format!("locale `{s}` must look like `en` or `de-AT`"),
            )
        })
    }

    fn try_parse(s: &str) -> Option<Self> {
        let two_letters = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_alphabetic());
        let (lang, region) = match s.split_once('-') {
            Some((l, r)) => (l, Some(r)),
            None => (s, None),
        };
        if !two_letters(lang) || !region.is_none_or(two_letters) {
            return None;
        }
        let mut out = lang.to_ascii_lowercase();
        if let Some(r) = region {
            out.push('-');
            out.push_str(&r.to_ascii_uppercase());
        }
        Some(Locale(out))
    }

    /// A tenant's configured default, read leniently: `zh-Hant` counts as `zh`;
    /// `None` when not even the language part is usable.
    pub fn lenient(s: &str) -> Option<Self> {
        Self::try_parse(s.trim()).or_else(|| {
            let lang = s.trim().split('-').next()?;
            Self::try_parse(lang)
        })
    }

    /// As text (`de-AT`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The language alone (`de` for `de-AT`), if this locale has a region.
    pub fn language(&self) -> Option<Locale> {
        self.0
            .split_once('-')
            .map(|(lang, _)| Locale(lang.to_string()))
    }
}

impl std::fmt::Display for Locale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The locales to look in, in order: `requested`, its language, the tenant default
/// (and its language), `en`; without repeats.
pub fn fallback_chain(requested: &Locale, tenant_default: &str) -> Vec<Locale> {
    let mut chain = Vec::new();
    let mut push = |l: Locale| {
        if !chain.contains(&l) {
            chain.push(l);
        }
    };
    push(requested.clone());
    if let Some(l) = requested.language() {
        push(l);
    }
    if let Some(d) = Locale::lenient(tenant_default) {
        let lang = d.language();
        push(d);
        if let Some(l) = lang {
            push(l);
        }
    }
    push(Locale("en".into()));
    chain
}

// ---------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal text.
    Text(&'a str),
    /// A `{{variable}}` placeholder, by name; `at` is its character offset.
    Var {
        /// Variable name.
        name: &'a str,
        /// 0-based character offset of its `{{`.
        at: usize,
    },
}

/// Why a template body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// 0-based character offset of the offending `{{`.
    pub position: usize,
    /// The variable, when one was named.
    pub variable: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl TemplateError {
    /// As an API error: `validation_failed` with `field`, `position` (and `variable`).
    pub fn into_error(self) -> Error {
        let mut details = serde_json::json!({ "field": "body", "position": self.position });
        if let Some(v) = &self.variable {
            details["variable"] = serde_json::json!(v);
        }
        Error::new(
            ErrorCode::ValidationFailed,
            format!("{} at character {}", self.message, self.position),
        )
        .with_details(details)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Split a template into text and placeholders; syntax errors name the position.
pub fn parse(body: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = body;
    let mut consumed = 0; // bytes of `body` before `rest`
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        let at = body[..consumed + open].chars().count();
        let inner_start = open + 2;
        let Some(close) = rest[inner_start..].find("}}") else {
            return Err(TemplateError {
                position: at,
                variable: None,
                message: "`{{` is not closed by `}}`".into(),
            });
        };
        let raw = &rest[inner_start..inner_start + close];
        let name = raw.trim();
        if name.is_empty() {
            return Err(TemplateError {
                position: at,
                variable: None,
                message: "empty placeholder `{{}}`".into(),
            });
        }
        if !valid_name(name) {
            return Err(TemplateError {
                position: at,
                variable: None,
                message: format!(
                    "invalid variable name `{name}` (letters, digits and `_`, not starting with a digit)"
                ),
            });
        }
        pieces.push(Piece::Var { name, at });
        let next = inner_start + close + 2;
        consumed += next;
        rest = &rest[next..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// Check a body for `def`: length, syntax, and only the variables the key allows.
pub fn validate(def: &StringDef, body: &str) -> Result<()> {
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(Error::validation(
            "body",
            format!("a template is at most {MAX_BODY_CHARS} characters"),
        ));
    }
    for piece in parse(body).map_err(TemplateError::into_error)? {
        if let Piece::Var { name, at } = piece
            && !def.variables.contains(&name)
        {
            let allowed = if def.variables.is_empty() {
                "none".to_string()
            } else {
                def.variables.join(", ")
            };
            return Err(TemplateError {
                position: at,
                variable: Some(name.to_string()),
                message: format!(
                    "unknown variable `{name}` for `{}` (allowed: {allowed})",
                    def.key
                ),
            }
            .into_error());
        }
    }
    Ok(())
}

/// Render a (valid) template: placeholders take their value, or the empty string.
pub fn render(body: &str, vars: &BTreeMap<String, String>) -> String {
    match parse(body) {
        Ok(pieces) => pieces
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => t,
                Piece::Var { name, .. } => vars.get(name).map(String::as_str).unwrap_or(""),
            })
            .collect(),
        // Stored and built-in bodies are validated; show a broken one as it is.
        Err(_) => body.to_string(),
    }
}

// ---------------------------------------------------------------------------
// A tenant's templates
// ---------------------------------------------------------------------------

/// A tenant's override of one string in one locale.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Template {
    /// String key, e.g. `widget.title`.
    pub key: String,
    /// Locale, e.g. `de` or `de-AT`.
    pub locale: String,
    /// The template text.
    pub body: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<TemplateRow> for Template {
    fn from(r: TemplateRow) -> Self {
        Template {
            key: r.key,
            locale: r.locale,
            body: r.body,
            updated_at: rfc3339(r.updated_at),
        }
    }
}

fn template_not_found(key: &str, locale: &Locale) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("no template for `{key}` in `{locale}`"),
    )
}

/// Store (create or replace) the tenant's template for `key` in `locale`, recording
/// `template.set` (the key, the locale, the text's length and digest — never the text)
/// in the same transaction. The same text again writes and records nothing.
pub async fn set(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    key: &str,
    locale: &str,
    body: &str,
) -> Result<Template> {
    caller.require(&Scope::new(Resource::Templates, ScopeAccess::Write))?;
    caller.check_tenant(tenant)?;
    let def = string_def(key)?;
    let locale = Locale::parse(locale)?;
    validate(def, body)?;
    let row = TemplateRow {
        tenant_id: tenant.id.to_string(),
        key: def.key.to_string(),
        locale: locale.as_str().to_string(),
        body: body.to_string(),
        updated_at: now_ms(),
    };
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let stored = crate::transaction!(&mut conn, |tx| {
        let previous = repo::templates::get(tx, &tenant.id, def.key, locale.as_str()).await?;
        if let Some(previous) = previous.as_ref().filter(|p| p.body == row.body) {
            // The same text again: nothing written, nothing recorded.
            return Ok(previous.clone());
        }
        repo::templates::upsert(tx, &row).await?;
        crate::audit::record(
            tx,
            caller,
            Entry::new(Action::TemplateSet)
                .tenant(&tenant.id)
                .target(format!("{}/{}", row.key, row.locale))
                .changes(serde_json::json!({
                    "key": row.key,
                    "locale": row.locale,
                    "created": previous.is_none(),
                    "chars": row.body.chars().count(),
                    "sha256": body_digest(&row.body),
                })),
        )
        .await?;
        Ok(row)
    })?;
    Ok(stored.into())
}

/// A short digest of a template text for the audit log (which never holds the text):
/// the first 16 hex digits of its SHA-256.
fn body_digest(body: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(body.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The tenant's template for `key` in exactly `locale`, or `not_found`.
pub async fn get(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    key: &str,
    locale: &str,
) -> Result<Template> {
    caller.require(&Scope::new(Resource::Templates, ScopeAccess::Read))?;
    caller.check_tenant(tenant)?;
    let def = string_def(key)?;
    let locale = Locale::parse(locale)?;
    let mut pc = db.conn().await?;
    repo::templates::get(&mut pc.as_conn(), &tenant.id, def.key, locale.as_str())
        .await?
        .map(Template::from)
        .ok_or_else(|| template_not_found(key, &locale))
}

/// Delete the tenant's template for `key` in `locale`, recording `template.deleted`;
/// returns what was deleted (`not_found`, recording nothing, when there was none).
pub async fn delete(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    key: &str,
    locale: &str,
) -> Result<Template> {
    caller.require(&Scope::new(Resource::Templates, ScopeAccess::Write))?;
    caller.check_tenant(tenant)?;
    let def = string_def(key)?;
    let locale = Locale::parse(locale)?;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let deleted = crate::transaction!(&mut conn, |tx| {
        let deleted = repo::templates::delete(tx, &tenant.id, def.key, locale.as_str())
            .await?
            .ok_or_else(|| template_not_found(key, &locale))?;
        crate::audit::record(
            tx,
            caller,
            Entry::new(Action::TemplateDeleted)
                .tenant(&tenant.id)
                .target(format!("{}/{}", deleted.key, deleted.locale))
                .changes(serde_json::json!({
                    "key": deleted.key,
                    "locale": deleted.locale,
                })),
        )
        .await?;
        Ok(deleted)
    })?;
    Ok(deleted.into())
}

/// The tenant's templates, optionally of one key and/or one locale.
pub async fn list(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    key: Option<&str>,
    locale: Option<&str>,
) -> Result<Vec<Template>> {
    caller.require(&Scope::new(Resource::Templates, ScopeAccess::Read))?;
    caller.check_tenant(tenant)?;
    let key = key.map(string_def).transpose()?.map(|d| d.key);
    let locale = locale.map(Locale::parse).transpose()?;
    let mut pc = db.conn().await?;
    Ok(repo::templates::list(
        &mut pc.as_conn(),
        &tenant.id,
        key,
        locale.as_ref().map(Locale::as_str),
    )
    .await?
    .into_iter()
    .map(Template::from)
    .collect())
}

/// Where a resolved string came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The tenant's template.
    Override,
    /// The built-in default.
    Builtin,
    /// The body given with the preview request.
    Body,
}

/// A rendered string.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Preview {
    /// String key.
    pub key: String,
    /// The locale of the text used, after fallback (the requested one for a given body).
    pub locale_used: String,
    /// Whether the text was the tenant's, built in, or the given body.
    pub source: Source,
    /// The rendered text.
    pub text: String,
}

/// A tenant's overrides along a chain, by (key, locale).
struct Overrides(HashMap<(String, String), String>);

impl Overrides {
    async fn load(db: &Db, tenant: &Tenant, chain: &[Locale]) -> Result<Self> {
        let locales: Vec<String> = chain.iter().map(|l| l.as_str().to_string()).collect();
        let mut pc = db.conn().await?;
        let rows = repo::templates::in_locales(&mut pc.as_conn(), &tenant.id, &locales).await?;
        Ok(Overrides(
            rows.into_iter()
                .map(|r| ((r.key, r.locale), r.body))
                .collect(),
        ))
    }

    /// The text for `def`: the first locale of `chain` with an override or a built-in.
    fn resolve<'a>(
        &'a self,
        chain: &[Locale],
        def: &'static StringDef,
    ) -> (&'a str, Locale, Source) {
        for l in chain {
            if let Some(body) = self.0.get(&(def.key.to_string(), l.as_str().to_string())) {
                return (body, l.clone(), Source::Override);
            }
            if let Some(text) = builtin(l, def.key) {
                return (text, l.clone(), Source::Builtin);
            }
        }
        // Chains end in `en`, which has every key: not reached.
        (def.en, Locale("en".into()), Source::Builtin)
    }
}

/// Render `key` for `locale` with `vars`: the given `body` (validated for the key), or
/// the tenant's / built-in text found along the fallback chain. Variables the key does
/// not use are ignored; missing ones render as the empty string.
pub async fn preview(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    key: &str,
    locale: &str,
    vars: &BTreeMap<String, String>,
    body: Option<&str>,
) -> Result<Preview> {
    caller.require(&Scope::new(Resource::Templates, ScopeAccess::Read))?;
    caller.check_tenant(tenant)?;
    let def = string_def(key)?;
    let locale = Locale::parse(locale)?;
    if let Some(body) = body {
        validate(def, body)?;
        return Ok(Preview {
            key: def.key.into(),
            locale_used: locale.as_str().into(),
            source: Source::Body,
            text: render(body, vars),
        });
    }
    let chain = fallback_chain(&locale, &tenant.settings.default_locale);
    let overrides = Overrides::load(db, tenant, &chain).await?;
    let (text, used, source) = overrides.resolve(&chain, def);
    Ok(Preview {
        key: def.key.into(),
        locale_used: used.as_str().into(),
        source,
        text: render(text, vars),
    })
}

/// Every widget string for a locale, merged along the fallback chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Strings {
    /// The requested locale, normalised.
    pub locale: String,
    /// Every catalogue key → its template (placeholders are filled in by the widget).
    pub strings: BTreeMap<String, String>,
}

/// All of a tenant's widget strings for `locale` (every key of the catalogue).
pub async fn strings(db: &Db, tenant: &Tenant, locale: &Locale) -> Result<Strings> {
    let chain = fallback_chain(locale, &tenant.settings.default_locale);
    let overrides = Overrides::load(db, tenant, &chain).await?;
    Ok(Strings {
        locale: locale.as_str().into(),
        strings: CATALOGUE
            .iter()
            .map(|d| {
                (
                    d.key.to_string(),
                    overrides.resolve(&chain, d).0.to_string(),
                )
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid_and_complete() {
        let en = Locale::parse("en").unwrap();
        let de = Locale::parse("de").unwrap();
        let mut keys = std::collections::HashSet::new();
        for d in CATALOGUE {
            assert!(keys.insert(d.key), "{} twice", d.key);
            validate(d, d.en).unwrap_or_else(|e| panic!("{}: {e}", d.key));
            let german = builtin(&de, d.key).unwrap_or_else(|| panic!("{} has no de", d.key));
            validate(d, german).unwrap_or_else(|e| panic!("{} (de): {e}", d.key));
            assert_eq!(builtin(&en, d.key), Some(d.en));
        }
        assert_eq!(DE.len(), CATALOGUE.len());
    }

    /// widget/widget.js carries the English defaults for when `/v1/i18n` fails: the
    /// same keys and texts as the catalogue.
    #[test]
    fn the_widget_ships_the_same_english_strings() {
        let js = crate::assets::WIDGET_JS;
        let start = js.find("var STRINGS = {").expect("STRINGS in widget.js");
        let block = &js[start..];
        let block = &block[..block.find("};").expect("end of STRINGS")];
        let unescape = |s: &str| {
            let mut out = String::new();
            let mut chars = s.chars();
            while let Some(c) = chars.next() {
                match (c, chars.clone().next()) {
                    ('\\', Some('u')) => {
                        chars.next();
                        let hex: String = chars.by_ref().take(4).collect();
                        let code = u32::from_str_radix(&hex, 16).expect("\\u escape");
                        out.push(char::from_u32(code).expect("a character"));
                    }
                    ('\\', Some(next)) => {
                        chars.next();
                        out.push(next);
                    }
                    _ => out.push(c),
                }
            }
            out
        };
        let found: BTreeMap<String, String> = block
            .lines()
            .skip(1)
            .filter_map(|line| {
                let line = line.trim().trim_end_matches(',');
                let (k, v) = line.split_once("': '")?;
                let v = v.strip_suffix('\'').expect("a quoted value");
                Some((k.trim_start_matches('\'').to_string(), unescape(v)))
            })
            .collect();
        let expected: BTreeMap<String, String> = CATALOGUE
            .iter()
            .map(|d| (d.key.to_string(), d.en.to_string()))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn locales_parse_and_normalise() {
        assert_eq!(Locale::parse("DE-at").unwrap().as_str(), "de-AT");
        assert_eq!(Locale::parse("en").unwrap().as_str(), "en");
        for bad in [
            "", "e", "eng", "de-", "de-AUT", "de_AT", "de-AT-x", "1e", "dé",
        ] {
            assert!(Locale::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Locale::lenient("zh-Hant").unwrap().as_str(), "zh");
        assert_eq!(Locale::lenient("???"), None);
    }

    #[test]
    fn chain_goes_exact_language_default_en() {
        let names = |c: Vec<Locale>| c.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        let de_at = Locale::parse("de-AT").unwrap();
        assert_eq!(names(fallback_chain(&de_at, "en")), ["de-AT", "de", "en"]);
        assert_eq!(
            names(fallback_chain(&de_at, "fr-CA")),
            ["de-AT", "de", "fr-CA", "fr", "en"]
        );
        let en = Locale::parse("en").unwrap();
        assert_eq!(names(fallback_chain(&en, "de")), ["en", "de"]);
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let e = parse("Hi {{ name }} and {{ oops").unwrap_err();
        assert_eq!(e.position, 18);
        assert_eq!(parse("äö {{}}").unwrap_err().position, 3);
        assert_eq!(parse("x {{ 1a }}").unwrap_err().position, 2);
        assert_eq!(parse("{{a b}}").unwrap_err().position, 0);
        let pieces = parse("a {{ x }}}b { } }}").unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Text("a "),
                Piece::Var { name: "x", at: 2 },
                Piece::Text("}b { } }}"),
            ]
        );
    }

    #[test]
    fn unknown_variables_are_refused_and_rendering_fills_in() {
        let d = string_def("widget.rate_limited").unwrap();
        let e = validate(d, "wait {{retry_after}} {{ secs }}").unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationFailed);
        let details = e.details.unwrap();
        assert_eq!(details["position"], 21);
        assert_eq!(details["variable"], "secs");
        assert_eq!(details["field"], "body");
        let vars = BTreeMap::from([("retry_after".to_string(), "7".to_string())]);
        assert_eq!(render("wait {{ retry_after }}s{{other}}", &vars), "wait 7s");
        assert_eq!(string_def("nope").unwrap_err().code, ErrorCode::NotFound);
    }
}
