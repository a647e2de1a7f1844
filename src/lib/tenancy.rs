//! Tenants and API keys: creating tenants, issuing and checking scoped keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{
    Conn, Db,
    models::{ApiKeyRow, TenantEnvironmentRow, TenantRow},
    repo,
};
use crate::domain::{
    ApiKeySecret, Environment, KeyId, Origin, Scope, Scopes, TenantId, TenantSlug, new_id, now_ms,
    random_base62, rfc3339, text,
};
use crate::error::{Error, ErrorCode, Result};

/// Per-tenant settings, stored as JSON on the tenant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSettings {
    /// Exact origins allowed to embed the widget and open sockets (`https://shop.example`).
    #[schema(value_type = Vec<String>)]
    #[serde(deserialize_with = "stored_origins")]
    pub allowed_origins: Vec<Origin>,
    /// Feature flags.
    pub flags: BTreeMap<String, bool>,
    /// Locale used when the visitor's is unknown.
    pub default_locale: String,
    /// Days to keep closed conversations (none = forever).
    pub retention_days: Option<u32>,
    /// Widget accent colour (`#rrggbb`).
    pub accent_color: String,
    /// Refuse widget sessions without a verified identity (`user_id` + `user_hash`).
    pub identity_required: bool,
    /// Which bottom corner the widget sits in.
    pub widget_position: WidgetPosition,
}

/// The bottom corner of the page the widget's launcher sits in.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WidgetPosition {
    /// Bottom right (the default).
    #[default]
    Right,
    /// Bottom left.
    Left,
}

/// How the widget looks for a tenant, sent with every widget session. Texts (title,
/// greeting, away message) are templates: `widget.title`, `widget.greeting`,
/// `widget.agents_away` in `/v1/admin/templates`, per locale.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct WidgetTheme {
    /// Accent colour `#rrggbb` (launcher, header, own messages).
    pub accent_color: String,
    /// Bottom corner of the launcher.
    pub position: WidgetPosition,
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings {
            allowed_origins: Vec::new(),
            flags: BTreeMap::new(),
            default_locale: "en".into(),
            retention_days: None,
            accent_color: "#2f6feb".into(),
            identity_required: false,
            widget_position: WidgetPosition::Right,
        }
    }
}

/// A partial settings update (`PATCH /v1/admin/settings`): absent fields stay.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// Replace the allowed origins.
    pub allowed_origins: Option<Vec<String>>,
    /// Set (true/false) individual flags; `null` deletes a flag.
    pub flags: Option<BTreeMap<String, Option<bool>>>,
    /// Default locale.
    pub default_locale: Option<String>,
    /// Retention in days; `0` clears it.
    pub retention_days: Option<u32>,
    /// Accent colour `#rrggbb`.
    pub accent_color: Option<String>,
    /// Require a verified identity for widget sessions (needs an identity secret first).
    pub identity_required: Option<bool>,
    /// Bottom corner of the widget: `right` or `left`.
    pub widget_position: Option<WidgetPosition>,
}

/// Most allowed origins a tenant can list.
pub const MAX_ORIGINS: usize = 100;
/// Most feature flags a tenant can hold.
pub const MAX_FLAGS: usize = 100;
/// Longest flag name, in bytes.
pub const MAX_FLAG_NAME: usize = 64;

impl TenantSettings {
    /// Apply a patch, validating every field.
    pub fn apply(&mut self, patch: SettingsPatch) -> Result<()> {
        if let Some(origins) = patch.allowed_origins {
            self.allowed_origins = parse_origins(&origins)?;
        }
        if let Some(flags) = patch.flags {
            let before = self.flags.len();
            for (k, v) in flags {
                check_flag_name("flags", &k)?;
                match v {
                    Some(on) => {
                        self.flags.insert(k, on);
                    }
                    None => {
                        self.flags.remove(&k);
                    }
                }
            }
            // A tenant already over the limit (from before it existed) can still delete.
            if self.flags.len() > MAX_FLAGS && self.flags.len() > before {
                return Err(Error::validation(
                    "flags",
                    format!("at most {MAX_FLAGS} flags (delete one with `\"name\": null`)"),
                )
                .with_details(serde_json::json!({ "field": "flags", "max": MAX_FLAGS })));
            }
        }
        if let Some(locale) = patch.default_locale {
            let ok = (2..=16).contains(&locale.len())
                && locale
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(Error::validation(
                    "default_locale",
                    "locale must look like en or de-AT",
                ));
            }
            self.default_locale = locale;
        }
        if let Some(days) = patch.retention_days {
            self.retention_days = (days > 0).then_some(days);
        }
        if let Some(color) = patch.accent_color {
            let ok = color.len() == 7
                && color.starts_with('#')
                && color[1..].bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(Error::validation(
                    "accent_color",
                    "colour must look like #2f6feb",
                ));
            }
            self.accent_color = color;
        }
        if let Some(required) = patch.identity_required {
            self.identity_required = required;
        }
        if let Some(position) = patch.widget_position {
            self.widget_position = position;
        }
        Ok(())
    }

    /// The widget's look, as sent to the widget.
    pub fn widget_theme(&self) -> WidgetTheme {
        WidgetTheme {
            accent_color: self.accent_color.clone(),
            position: self.widget_position,
        }
    }

    /// Whether `origin` (as sent by a browser) is exactly one of the allowed origins.
    pub fn allows_origin(&self, origin: &str) -> bool {
        // Compare the raw header byte-for-byte with the normalised list: a browser
        // sends origins in canonical lower-case form.
        self.allowed_origins.iter().any(|o| o.as_str() == origin)
    }
}

/// `validation_failed` naming `field` unless `name` is a flag name: 1–[`MAX_FLAG_NAME`]
/// characters of A-Z, a-z, 0-9, '_', '-', '.', ':'.
pub fn check_flag_name(field: &str, name: &str) -> Result<()> {
    let ok = (1..=MAX_FLAG_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            field,
            format!(
                "flag names are 1-{MAX_FLAG_NAME} characters of A-Z, a-z, 0-9, '_', '-', '.', ':'"
            ),
        ))
    }
}

/// A new public widget key (`wk_…`).
pub(crate) fn new_widget_key() -> String {
    format!("wk_{}", random_base62(24))
}

/// Stored origins, read leniently: an entry an older release accepted but this one's
/// URL parser refuses (`http://a.test:80:80`) is dropped with a warning instead of making
/// the whole tenant unreadable; the rest are normalised.
fn stored_origins<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<Origin>, D::Error> {
    let raw: Vec<String> = Vec::deserialize(d)?;
    let mut out: Vec<Origin> = Vec::with_capacity(raw.len());
    for item in raw {
        match Origin::parse(&item) {
            Ok(o) if !out.contains(&o) => out.push(o),
            Ok(_) => {}
            Err(_) => tracing::warn!(
                origin = %text::escape_controls(&item),
                "ignoring a stored allowed origin that is not a valid origin; set the tenant's allowed_origins again"
            ),
        }
    }
    Ok(out)
}

/// Parse a list of origins, naming the bad one.
pub fn parse_origins(items: &[String]) -> Result<Vec<Origin>> {
    if items.len() > MAX_ORIGINS {
        return Err(Error::validation(
            "allowed_origins",
            format!("at most {MAX_ORIGINS} allowed origins"),
        ));
    }
    let mut out = Vec::new();
    for item in items {
        let o = Origin::parse(item).map_err(|e| Error::validation("allowed_origins", e.message))?;
        if !out.contains(&o) {
            out.push(o);
        }
    }
    Ok(out)
}

/// A tenant with parsed settings, as one of its environments sees it: the widget key
/// and settings (allowed origins, look, flags, identity) are that environment's.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tenant {
    /// Opaque id.
    #[schema(value_type = String)]
    pub id: TenantId,
    /// Unique slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// The environment whose widget key and settings these are (`production` unless
    /// asked for another).
    pub environment: Environment,
    /// The environment's public widget key (`wk_…`), safe to embed in pages.
    pub widget_key: String,
    /// The code of the tenant's plan (`free` until changed).
    pub plan: String,
    /// The environment's settings.
    pub settings: TenantSettings,
    /// RFC 3339.
    pub created_at: String,
}

/// Parse stored settings JSON, naming whose they are when unreadable.
fn parse_settings(json: &str, whose: impl std::fmt::Display) -> Result<TenantSettings> {
    serde_json::from_str(json)
        .map_err(|e| Error::internal(format!("{whose} has unreadable settings: {e}")))
}

impl Tenant {
    /// Parse a stored row: the tenant's production environment.
    pub fn from_row(row: TenantRow) -> Result<Self> {
        let settings = parse_settings(&row.settings, format_args!("tenant {}", row.id))?;
        Ok(Tenant {
            id: row.id.into(),
            slug: row.slug,
            name: row.name,
            environment: Environment::Production,
            widget_key: row.widget_key,
            plan: row.plan_code,
            settings,
            created_at: rfc3339(row.created_at),
        })
    }

    /// The tenant as its environment `env` (a row of `tenant_environments`) sees it.
    pub fn in_environment(row: TenantRow, env: TenantEnvironmentRow) -> Result<Self> {
        let environment = Environment::from_stored(&env.environment);
        let settings = parse_settings(
            &env.settings,
            format_args!("tenant {} ({environment})", row.id),
        )?;
        Ok(Tenant {
            id: row.id.into(),
            slug: row.slug,
            name: row.name,
            environment,
            widget_key: env.widget_key,
            plan: row.plan_code,
            settings,
            created_at: rfc3339(row.created_at),
        })
    }

    /// `origin_not_allowed` unless `origin` (a browser's `Origin` header) is exactly
    /// one of the tenant's allowed origins.
    pub fn check_origin(&self, origin: &str) -> Result<()> {
        if self.settings.allows_origin(origin) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::OriginNotAllowed,
                "this origin is not allowed for the tenant",
            ))
        }
    }
}

/// `forbidden` for a tenant key: managing tenants (and plans) is for platform keys,
/// operators and the service.
pub(crate) fn platform_only(caller: &Caller) -> Result<()> {
    if caller.own_tenant().is_some() {
        return Err(Error::new(
            ErrorCode::Forbidden,
            "this call needs a platform key",
        ));
    }
    Ok(())
}

/// What to create a tenant with.
#[derive(Debug, Clone, Default)]
pub struct NewTenant {
    /// URL-safe unique name (2–40 of a-z, 0-9, '-').
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Origins allowed to embed the widget.
    pub allowed_origins: Vec<String>,
    /// The plan's code; `None`: `free`. A named plan must exist and be active.
    pub plan: Option<String>,
}

/// Create a tenant with a fresh widget key (`tenants:write`, not with a tenant key; a
/// named plan also needs `plans:write`). Without a plan the tenant is on `free`.
pub async fn create_tenant(db: &Db, caller: &Caller, new: NewTenant) -> Result<Tenant> {
    caller.require(&Scope::new(
        crate::domain::Resource::Tenants,
        crate::domain::ScopeAccess::Write,
    ))?;
    platform_only(caller)?;
    let plan = match &new.plan {
        Some(code) => {
            caller.require(&Scope::new(
                crate::domain::Resource::Plans,
                crate::domain::ScopeAccess::Write,
            ))?;
            Some(crate::plans::PlanCode::parse("plan", code)?)
        }
        None => None,
    };
    let slug = TenantSlug::parse(&new.slug)?;
    let name = new.name.trim();
    if name.is_empty() {
        return Err(Error::validation("name", "name must be 1-120 characters"));
    }
    text::check_name("name", name, 120)?;
    let settings = TenantSettings {
        allowed_origins: parse_origins(&new.allowed_origins)?,
        ..Default::default()
    };
    let now = now_ms();
    let row = TenantRow {
        id: new_id("tn"),
        slug: slug.as_str().to_string(),
        name: name.to_string(),
        widget_key: new_widget_key(),
        settings: serde_json::to_string(&settings).map_err(|e| Error::internal(e.to_string()))?,
        created_at: now,
        updated_at: now,
        identity_secret_enc: None,
        plan_code: plan
            .as_ref()
            .map_or(crate::plans::PlanCode::FREE, |p| p.as_str())
            .to_string(),
    };
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let inserted = crate::transaction!(&mut conn, |tx| {
        if let Some(plan) = &plan {
            crate::plans::check_assignable(tx, "plan", plan).await?;
        }
        repo::tenants::insert(tx, &row).await?;
        crate::audit::record(
            tx,
            caller,
            crate::audit::Entry::new(crate::audit::Action::TenantCreated)
                .tenant(&TenantId::from(row.id.clone()))
                .target(row.id.clone())
                .changes(serde_json::json!({
                    "slug": row.slug,
                    "name": row.name,
                    "plan": row.plan_code,
                    "allowed_origins": settings.allowed_origins.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
                })),
        )
        .await
    });
    match inserted {
        Ok(()) => Tenant::from_row(row),
        Err(e) if e.code == ErrorCode::Conflict => Err(Error::new(
            ErrorCode::Conflict,
            format!("a tenant with slug `{}` already exists", slug.as_str()),
        )
        .with_details(serde_json::json!({ "field": "slug" }))),
        Err(e) => Err(e),
    }
}

/// Find a tenant by slug, or `not_found`.
pub async fn tenant_by_slug(db: &Db, slug: &str) -> Result<Tenant> {
    let mut pc = db.conn().await?;
    repo::tenants::by_slug(&mut pc.as_conn(), slug)
        .await?
        .ok_or_else(|| Error::not_found("tenant"))
        .and_then(Tenant::from_row)
}

/// The tenant whose public widget key this is, as the key's environment sees it (a
/// staging key: the staging settings and origins); `unauthorized` for an unknown key.
pub async fn tenant_by_widget_key(db: &Db, widget_key: &str) -> Result<Tenant> {
    let mut pc = db.conn().await?;
    by_widget_key(&mut pc.as_conn(), widget_key)
        .await?
        .map(|(t, _)| t)
        .ok_or_else(|| Error::unauthorized("unknown widget key"))
}

/// The tenant of a widget key of any of its environments, as that environment sees it,
/// with the tenant's sealed identity secret (if it has one); `None` for an unknown key.
/// Production keys (every key of a tenant without a staging environment) take one read.
pub(crate) async fn by_widget_key(
    conn: &mut Conn<'_>,
    widget_key: &str,
) -> Result<Option<(Tenant, Option<String>)>> {
    if let Some(mut row) = repo::tenants::by_widget_key(conn, widget_key).await? {
        let sealed = row.identity_secret_enc.take();
        return Ok(Some((Tenant::from_row(row)?, sealed)));
    }
    match repo::environments::by_widget_key(conn, widget_key).await? {
        Some((env, mut row)) => {
            let sealed = row.identity_secret_enc.take();
            Ok(Some((Tenant::in_environment(row, env)?, sealed)))
        }
        None => Ok(None),
    }
}

/// Find a tenant by id, or `not_found`: its production environment.
pub async fn tenant_by_id(db: &Db, id: &TenantId) -> Result<Tenant> {
    let mut pc = db.conn().await?;
    repo::tenants::by_id(&mut pc.as_conn(), id)
        .await?
        .ok_or_else(|| Error::not_found("tenant"))
        .and_then(Tenant::from_row)
}

/// The tenant `id` as its environment `env` sees it; `not_found` for an unknown tenant
/// or an environment it has not created.
pub async fn tenant_in(db: &Db, id: &TenantId, env: Environment) -> Result<Tenant> {
    let mut pc = db.conn().await?;
    let row = repo::tenants::by_id(&mut pc.as_conn(), id)
        .await?
        .ok_or_else(|| Error::not_found("tenant"))?;
    in_environment(&mut pc.as_conn(), row, env).await
}

/// `row` as its environment `env` sees it (reading the environment's row unless it is
/// production); `not_found` for an environment the tenant has not created.
pub(crate) async fn in_environment(
    conn: &mut Conn<'_>,
    row: TenantRow,
    env: Environment,
) -> Result<Tenant> {
    match env {
        Environment::Production => Tenant::from_row(row),
        other => {
            let env_row = repo::environments::get(conn, &row.id, other.as_str())
                .await?
                .ok_or_else(|| crate::environments::not_created(other))?;
            Tenant::in_environment(row, env_row)
        }
    }
}

/// All tenants (`tenants:read`, not with a tenant key).
pub async fn list_tenants(db: &Db, caller: &Caller) -> Result<Vec<Tenant>> {
    caller.require(&Scope::new(
        crate::domain::Resource::Tenants,
        crate::domain::ScopeAccess::Read,
    ))?;
    platform_only(caller)?;
    let mut pc = db.conn().await?;
    repo::tenants::list(&mut pc.as_conn())
        .await?
        .into_iter()
        .map(Tenant::from_row)
        .collect()
}

/// Apply a settings patch to a tenant's production environment (the caller's scopes
/// are checked; operators may do anything), recording `settings.updated` with the
/// fields that changed in the same transaction. A patch that changes nothing writes
/// nothing. See [`crate::environments::update_settings`] for any environment.
pub async fn update_settings(
    db: &Db,
    caller: &Caller,
    tenant_id: &TenantId,
    patch: SettingsPatch,
) -> Result<TenantSettings> {
    crate::environments::update_settings_of(db, caller, tenant_id, Environment::Production, patch)
        .await
}

/// The settings fields that differ, as `{field: {"from": old, "to": new}}`.
pub(crate) fn settings_diff(
    before: &TenantSettings,
    after: &TenantSettings,
) -> serde_json::Map<String, serde_json::Value> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return Default::default();
    };
    b.iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), serde_json::json!({ "from": a.get(k), "to": v })))
        .collect()
}

/// Who is asking for an operation: the caller every operation takes, checks and records.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An operator at the command line, with the database in hand: may do anything.
    Operator,
    /// The service itself (start-up, the worker): may do anything.
    System,
    /// An API key, limited to its scopes (and its tenant, for a tenant key).
    Key(Principal),
}

impl Caller {
    /// `forbidden` unless the caller may do what `needed` names (operators always may).
    pub fn require(&self, needed: &Scope) -> Result<()> {
        match self {
            Caller::Operator | Caller::System => Ok(()),
            Caller::Key(p) => p.require(needed),
        }
    }

    /// `not_found` when a tenant key would act on another tenant than its own (as if
    /// that tenant did not exist); platform keys and operators may act on any.
    pub fn check_tenant(&self, tenant: &Tenant) -> Result<()> {
        match self.own_tenant() {
            Some(own) if *own != tenant.id => Err(Error::not_found("tenant")),
            _ => Ok(()),
        }
    }

    /// The tenant a tenant key is bound to; `None` for platform keys and operators.
    pub fn own_tenant(&self) -> Option<&TenantId> {
        match self {
            Caller::Operator | Caller::System => None,
            Caller::Key(p) => p.tenant_id.as_ref(),
        }
    }

    /// The tenant an operation acts on: a tenant key's own tenant (a `slug` naming another
    /// tenant is `not_found`, as if it did not exist), else the tenant `slug` names, else
    /// none (the platform).
    pub async fn resolve_tenant(&self, db: &Db, slug: Option<&str>) -> Result<Option<Tenant>> {
        match (self.own_tenant(), slug) {
            (Some(own), None) => Ok(Some(tenant_by_id(db, own).await?)),
            (Some(own), Some(slug)) => {
                let t = tenant_by_slug(db, slug).await?;
                if t.id != *own {
                    return Err(Error::not_found("tenant"));
                }
                Ok(Some(t))
            }
            (None, Some(slug)) => Ok(Some(tenant_by_slug(db, slug).await?)),
            (None, None) => Ok(None),
        }
    }
}

/// An API key as shown in listings (never the key itself).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    /// Opaque id, used to revoke.
    pub id: String,
    /// Owning tenant's slug; `null` for platform keys.
    pub tenant: Option<String>,
    /// Label.
    pub name: String,
    /// Recognisable start of the key.
    pub prefix: String,
    /// Recognisable end of the key.
    pub last4: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, if it expires.
    pub expires_at: Option<String>,
    /// RFC 3339, if revoked.
    pub revoked_at: Option<String>,
    /// RFC 3339, last use (updated at most once a minute).
    pub last_used_at: Option<String>,
    /// Id of the key that issued this one; `null` when an operator issued it with the CLI.
    /// Revoking a key revokes the keys it issued (unless asked not to).
    pub issued_by: Option<String>,
}

impl ApiKeyInfo {
    fn from_row(row: ApiKeyRow, tenant_slug: Option<String>) -> Self {
        ApiKeyInfo {
            id: row.id,
            tenant: tenant_slug,
            name: row.name,
            prefix: row.prefix,
            last4: row.last4,
            scopes: Scopes::from_stored(&row.scopes).names(),
            created_at: rfc3339(row.created_at),
            expires_at: row.expires_at.map(rfc3339),
            revoked_at: row.revoked_at.map(rfc3339),
            last_used_at: row.last_used_at.map(rfc3339),
            issued_by: row.issued_by,
        }
    }
}

/// A freshly issued key: the only time the plaintext exists outside the caller.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedKey {
    /// The key's metadata.
    #[serde(flatten)]
    pub info: ApiKeyInfo,
    /// The key itself, shown once.
    pub key: String,
}

/// What to issue.
#[derive(Debug, Clone, Default)]
pub struct KeyRequest {
    /// The tenant (slug) the key acts for; `None`: the caller's own tenant for a tenant
    /// key, a platform key otherwise.
    pub tenant: Option<String>,
    /// Scopes such as `conversations:read`.
    pub scopes: Vec<String>,
    /// Label (at most 80 characters, no control characters).
    pub name: Option<String>,
    /// Lifetime; `None`: no expiry of its own (still capped by the issuer's).
    pub expires_in: Option<std::time::Duration>,
}

/// Issue a key. A key can only grant scopes it holds itself, whoever it belongs to, and
/// the new key expires no later than the key that issued it; the issuer is recorded
/// (`issued_by`) so revoking it can revoke what it issued. Operators (the CLI) may issue
/// anything. Tenant keys issue keys of their own tenant only.
pub async fn issue_key(db: &Db, caller: &Caller, req: KeyRequest) -> Result<IssuedKey> {
    caller.require(&Scope::new(
        crate::domain::Resource::Keys,
        crate::domain::ScopeAccess::Write,
    ))?;
    let scopes = Scopes::parse_list(&req.scopes)?;
    let name = req.name.as_deref().unwrap_or("").trim();
    text::check_name("name", name, 80)?;
    let tenant = caller.resolve_tenant(db, req.tenant.as_deref()).await?;
    if tenant.is_some()
        && scopes.grants(&Scope::new(
            crate::domain::Resource::Tenants,
            crate::domain::ScopeAccess::Read,
        ))
    {
        return Err(Error::validation(
            "scopes",
            "tenants:* scopes are for platform keys only",
        ));
    }
    let now = now_ms();
    let mut expires_at = match req.expires_in {
        Some(d) if d.is_zero() => {
            return Err(Error::validation(
                "expires_in",
                "expiry must be in the future",
            ));
        }
        Some(d) => {
            let at = now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            if at > crate::domain::MAX_RFC3339_MS {
                return Err(Error::validation(
                    "expires_in",
                    "expiry must be before the year 10000",
                ));
            }
            Some(at)
        }
        None => None,
    };
    let issuer = match caller {
        Caller::Operator | Caller::System => None,
        Caller::Key(p) => {
            if let Some(scope) = scopes.iter().find(|s| !p.scopes.grants(s)) {
                return Err(Error::new(
                    ErrorCode::Forbidden,
                    format!("cannot grant `{scope}`: this key does not hold it"),
                )
                .with_details(serde_json::json!({ "scope": scope.to_string() })));
            }
            if let Some(limit) = p.expires_at {
                expires_at = Some(expires_at.map_or(limit, |at| at.min(limit)));
            }
            Some(p.key_id.clone())
        }
    };
    let secret = ApiKeySecret::generate();
    let row = ApiKeyRow {
        id: new_id("key"),
        tenant_id: tenant.as_ref().map(|t| t.id.to_string()),
        name: name.to_string(),
        key_hash: secret.hash(),
        prefix: secret.prefix(),
        last4: secret.last4(),
        scopes: scopes.to_stored(),
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
        issued_by: issuer.as_ref().map(KeyId::to_string),
    };
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    crate::transaction!(&mut conn, |tx| {
        // The issuer may have been revoked since it authenticated: a key issued after
        // that would escape the cascade.
        if let Some(issuer) = &issuer
            && !repo::api_keys::lock_active(tx, issuer).await?
        {
            return Err(Error::unauthorized("API key revoked"));
        }
        repo::api_keys::insert(tx, &row).await?;
        crate::audit::record(
            tx,
            caller,
            crate::audit::Entry::new(crate::audit::Action::KeyIssued)
                .tenant_opt(tenant.as_ref().map(|t| &t.id))
                .target(row.id.clone())
                .changes(serde_json::json!({
                    "name": row.name,
                    "prefix": row.prefix,
                    "scopes": scopes.names(),
                    "expires_at": row.expires_at.map(rfc3339),
                })),
        )
        .await
    })?;
    Ok(IssuedKey {
        info: ApiKeyInfo::from_row(row, tenant.map(|t| t.slug)),
        key: secret.expose().to_string(),
    })
}

/// List keys: a tenant key sees its tenant's keys; a platform key or an operator all keys,
/// or one tenant's (`tenant` slug).
pub async fn list_keys(db: &Db, caller: &Caller, tenant: Option<&str>) -> Result<Vec<ApiKeyInfo>> {
    caller.require(&Scope::new(
        crate::domain::Resource::Keys,
        crate::domain::ScopeAccess::Read,
    ))?;
    let tenant = caller.resolve_tenant(db, tenant).await?;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let rows = repo::api_keys::list(&mut conn, tenant.as_ref().map(|t| t.id.as_str())).await?;
    let mut slugs: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let slug = match &row.tenant_id {
            None => None,
            Some(id) => {
                if !slugs.contains_key(id) {
                    let slug = repo::tenants::by_id(&mut conn, id)
                        .await?
                        .map(|t| t.slug)
                        .unwrap_or_default();
                    slugs.insert(id.clone(), slug);
                }
                slugs.get(id).cloned()
            }
        };
        out.push(ApiKeyInfo::from_row(row, slug));
    }
    Ok(out)
}

/// A revoked key and what its revocation took with it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevokedKey {
    /// The key, as it is now.
    #[serde(flatten)]
    pub info: ApiKeyInfo,
    /// Keys it issued (directly or through keys it issued) revoked with it now.
    pub cascaded: usize,
}

/// Revoke a key (idempotent). A tenant key revokes its tenant's keys only (others are
/// `not_found`). With `cascade` (the default of the API and the CLI) every key it issued,
/// and every key those issued, is revoked in the same transaction.
pub async fn revoke_key(db: &Db, caller: &Caller, id: &KeyId, cascade: bool) -> Result<RevokedKey> {
    caller.require(&Scope::new(
        crate::domain::Resource::Keys,
        crate::domain::ScopeAccess::Write,
    ))?;
    let tenant_id = caller.own_tenant().map(TenantId::to_string);
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let now = now_ms();
    let (row, cascaded) = crate::transaction!(&mut conn, |tx| {
        let already = repo::api_keys::get(tx, tenant_id.as_deref(), id)
            .await?
            .ok_or_else(|| Error::not_found("key"))?
            .revoked_at
            .is_some();
        if !repo::api_keys::revoke(tx, tenant_id.as_deref(), id, now).await? {
            return Err(Error::not_found("key"));
        }
        let mut cascaded = 0;
        if cascade {
            let mut seen = std::collections::HashSet::from([id.to_string()]);
            let mut frontier = vec![id.to_string()];
            while !frontier.is_empty() {
                let children: Vec<String> = repo::api_keys::issued_by_any(tx, &frontier)
                    .await?
                    .into_iter()
                    .filter(|c| seen.insert(c.clone()))
                    .collect();
                cascaded += repo::api_keys::revoke_many(tx, &children, now).await?;
                frontier = children;
            }
        }
        let row = repo::api_keys::get(tx, tenant_id.as_deref(), id)
            .await?
            .ok_or_else(|| Error::not_found("key"))?;
        // Revoking a revoked key again changes nothing (unless it reaches keys its
        // earlier revocation did not cascade to) and records nothing.
        if !already || cascaded > 0 {
            crate::audit::record(
                tx,
                caller,
                crate::audit::Entry::new(crate::audit::Action::KeyRevoked)
                    .tenant_opt(row.tenant_id.clone().map(TenantId::from).as_ref())
                    .target(row.id.clone())
                    .changes(serde_json::json!({ "name": row.name, "cascaded": cascaded })),
            )
            .await?;
        }
        Ok((row, cascaded))
    })?;
    let slug = match &row.tenant_id {
        Some(t) => repo::tenants::by_id(&mut conn, t).await?.map(|t| t.slug),
        None => None,
    };
    Ok(RevokedKey {
        info: ApiKeyInfo::from_row(row, slug),
        cascaded,
    })
}

/// Who is calling an admin endpoint.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's id.
    pub key_id: KeyId,
    /// The tenant the key belongs to; `None` for platform keys.
    pub tenant_id: Option<TenantId>,
    /// Granted scopes.
    pub scopes: Scopes,
    /// When the key expires, epoch ms.
    pub expires_at: Option<i64>,
    /// The key's name (recorded with audit entries).
    pub name: String,
    /// The HTTP request's id (`X-Request-Id`), recorded with audit entries.
    pub request_id: Option<String>,
}

impl Principal {
    /// `forbidden` unless a scope grants `needed`.
    pub fn require(&self, needed: &Scope) -> Result<()> {
        if self.scopes.grants(needed) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::Forbidden,
                format!("this key lacks the `{needed}` scope"),
            )
            .with_details(serde_json::json!({ "required_scope": needed.to_string() })))
        }
    }
}

/// Check a presented bearer key. The checksum is verified before any database access.
pub async fn authenticate(db: &Db, presented: &str) -> Result<Principal> {
    let secret = ApiKeySecret::parse(presented).map_err(|e| Error::unauthorized(e.to_string()))?;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let row = repo::api_keys::by_hash(&mut conn, &secret.hash())
        .await?
        .ok_or_else(|| Error::unauthorized("unknown API key"))?;
    let now = now_ms();
    if row.revoked_at.is_some() {
        return Err(Error::unauthorized("API key revoked"));
    }
    if row.expires_at.is_some_and(|e| e <= now) {
        return Err(Error::unauthorized("API key expired"));
    }
    const DEBOUNCE_MS: i64 = 60_000;
    if row.last_used_at.is_none_or(|t| t < now - DEBOUNCE_MS) {
        repo::api_keys::touch(&mut conn, &row.id, now, DEBOUNCE_MS).await?;
    }
    Ok(Principal {
        key_id: row.id.into(),
        tenant_id: row.tenant_id.map(TenantId::from),
        scopes: Scopes::from_stored(&row.scopes),
        expires_at: row.expires_at,
        name: row.name,
        request_id: None,
    })
}
