//! Plans as code: the catalogue of what tenants may do — limits per UTC day, channels,
//! feature flags — and what it costs, and which plan each tenant is on.
//!
//! The operations ([`list`], [`get`], [`put`], [`delete`], [`set_tenant_plan`]) take the
//! caller: `plans:read` / `plans:write` on a platform key (a tenant key is refused, as
//! for tenants), or an operator. [`for_tenant`] reads a tenant's plan, as it is right
//! now (nothing is cached: a change takes effect at once), for the code that enforces
//! it. The catalogue file and `chatorical plans sync` live in [`catalogue`].

pub mod catalogue;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{Conn, Db, models::PlanRow, repo};
use crate::domain::{
    Resource, SLUG_RULE, Scope, ScopeAccess, TenantId, is_slug, now_ms, rfc3339, text,
};
use crate::error::{Error, ErrorCode, Result};
use crate::tenancy::{self, Caller, Tenant};

/// A plan's code: 2–40 of `a-z`, `0-9`, `-`, starting with a letter (the slug rules).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PlanCode(String);

impl PlanCode {
    /// The plan every tenant starts on; it exists from the first migration and is never
    /// deleted.
    pub const FREE: &'static str = "free";

    /// Parse a code; `field` names it in the error.
    pub fn parse(field: &str, s: &str) -> Result<Self> {
        if is_slug(s) {
            Ok(PlanCode(s.to_string()))
        } else {
            Err(Error::validation(
                field,
                format!(
                    "plan code `{}` is not valid: it must be {SLUG_RULE}",
                    text::escape_controls(s)
                ),
            ))
        }
    }

    /// The `free` plan's code.
    pub fn free() -> Self {
        PlanCode(Self::FREE.to_string())
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlanCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Limits of a plan; `null` (or absent) is unlimited. Daily limits reset at 00:00 UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Conversations started per day.
    pub conversation_starts_per_day: Option<u32>,
    /// Conversation subject (Telegram topic) renames per day.
    pub topic_renames_per_day: Option<u32>,
    /// Messages per day, both directions.
    pub messages_per_day: Option<u32>,
    /// Conversations open at once.
    pub active_conversations: Option<u32>,
    /// Days closed conversations are kept (at least 1).
    pub retention_days: Option<u32>,
}

/// The largest number a limit can hold.
pub const MAX_LIMIT: u32 = i32::MAX as u32;

impl Limits {
    /// Every limit with its name, in a fixed order.
    pub fn entries(&self) -> [(&'static str, Option<u32>); 5] {
        [
            (
                "conversation_starts_per_day",
                self.conversation_starts_per_day,
            ),
            ("topic_renames_per_day", self.topic_renames_per_day),
            ("messages_per_day", self.messages_per_day),
            ("active_conversations", self.active_conversations),
            ("retention_days", self.retention_days),
        ]
    }
}

/// The channels a plan includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Channels {
    /// The website widget.
    pub widget: bool,
    /// Delivery to and replies from Telegram.
    pub telegram: bool,
}

impl Default for Channels {
    /// Both channels.
    fn default() -> Self {
        Channels {
            widget: true,
            telegram: true,
        }
    }
}

impl Channels {
    /// The channels' names.
    pub const NAMES: [&'static str; 2] = ["widget", "telegram"];
}

/// Channels are written as a table (`{"widget": true, "telegram": false}`, both
/// required) or as the list of the channels that are on (`["widget"]`).
impl<'de> Deserialize<'de> for Channels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{self, MapAccess, SeqAccess, Visitor};

        struct ChannelsVisitor;

        impl<'de> Visitor<'de> for ChannelsVisitor {
            type Value = Channels;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a list of channels (["widget", "telegram"]) or a table of booleans"#)
            }

            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Channels, A::Error> {
                let mut on = Channels {
                    widget: false,
                    telegram: false,
                };
                while let Some(name) = seq.next_element::<String>()? {
                    match name.as_str() {
                        "widget" => on.widget = true,
                        "telegram" => on.telegram = true,
                        other => return Err(de::Error::unknown_variant(other, &Channels::NAMES)),
                    }
                }
                Ok(on)
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Channels, A::Error> {
                let (mut widget, mut telegram) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    let slot = match key.as_str() {
                        "widget" => &mut widget,
                        "telegram" => &mut telegram,
                        other => return Err(de::Error::unknown_field(other, &Channels::NAMES)),
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom(format!("duplicate field `{key}`")));
                    }
                    *slot = Some(map.next_value::<bool>()?);
                }
                Ok(Channels {
                    widget: widget.ok_or_else(|| de::Error::missing_field("widget"))?,
                    telegram: telegram.ok_or_else(|| de::Error::missing_field("telegram"))?,
                })
            }
        }

        d.deserialize_any(ChannelsVisitor)
    }
}

/// Most feature flags a plan can have.
pub const MAX_FEATURES: usize = 64;
/// Longest feature name, in bytes.
pub const MAX_FEATURE_NAME: usize = 64;
/// Longest plan name, in characters.
pub const MAX_NAME: usize = 100;

/// Whether `key` is a feature name: 1–64 of `a-z`, `0-9`, `_`, `-`, starting with a letter.
fn is_feature_name(key: &str) -> bool {
    (1..=MAX_FEATURE_NAME).contains(&key.len())
        && key.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// What can be written of a plan: the body of `PUT /v1/admin/plans/{code}` and one
/// `[plans.<code>]` table of the catalogue file. Absent fields take their defaults:
/// active, not sold (no prices), no limits (unlimited), both channels, no features.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// Display name (1–100 characters).
    pub name: String,
    /// Whether tenants can be put on the plan (default true). Tenants on an inactive
    /// plan keep it.
    #[serde(default = "active_by_default")]
    pub active: bool,
    /// Price per month in EUR cents; absent: not sold monthly.
    #[serde(default)]
    pub price_month_cents: Option<i64>,
    /// Price per year in EUR cents; absent: not sold yearly.
    #[serde(default)]
    pub price_year_cents: Option<i64>,
    /// Limits; an absent limit is unlimited.
    #[serde(default)]
    pub limits: Limits,
    /// Channels; default both. Also accepted as a list: `["widget", "telegram"]`.
    #[serde(default)]
    pub channels: Channels,
    /// Free-form feature flags (names: 1–64 of a-z, 0-9, '_', '-', starting with a letter).
    #[serde(default)]
    pub features: BTreeMap<String, bool>,
}

fn active_by_default() -> bool {
    true
}

impl PlanSpec {
    /// Check every field, naming the one that fails (`name`, `price_month_cents`,
    /// `limits.messages_per_day`, `features`…), and trim the name.
    pub fn validate(mut self) -> Result<Self> {
        self.name = self.name.trim().to_string();
        if self.name.is_empty() {
            return Err(Error::validation(
                "name",
                format!("name must be 1-{MAX_NAME} characters"),
            ));
        }
        text::check_name("name", &self.name, MAX_NAME)?;
        for (field, price) in [
            ("price_month_cents", self.price_month_cents),
            ("price_year_cents", self.price_year_cents),
        ] {
            if price.is_some_and(|p| p < 0) {
                return Err(Error::validation(
                    field,
                    format!("{field} must be 0 or more (EUR cents); leave it out when not sold"),
                ));
            }
        }
        for (name, limit) in self.limits.entries() {
            let field = format!("limits.{name}");
            match limit {
                Some(n) if n > MAX_LIMIT => {
                    return Err(Error::validation(
                        &field,
                        format!("{field} must be at most {MAX_LIMIT}; leave it out for unlimited"),
                    ));
                }
                Some(0) if name == "retention_days" => {
                    return Err(Error::validation(
                        &field,
                        format!("{field} must be at least 1; leave it out to keep conversations"),
                    ));
                }
                _ => {}
            }
        }
        if self.features.len() > MAX_FEATURES {
            return Err(Error::validation(
                "features",
                format!("at most {MAX_FEATURES} features"),
            ));
        }
        if let Some(bad) = self.features.keys().find(|k| !is_feature_name(k)) {
            return Err(Error::validation(
                "features",
                format!(
                    "feature name `{}` is not valid: it must be 1-{MAX_FEATURE_NAME} characters of a-z, 0-9, '_' and '-', starting with a letter",
                    text::escape_controls(bad)
                ),
            )
            .with_details(serde_json::json!({ "field": "features", "key": bad })));
        }
        Ok(self)
    }

    /// The fields that differ from `old`, each as `field: old → new`.
    pub fn changes_from(&self, old: &PlanSpec) -> Vec<FieldChange> {
        let mut out = Vec::new();
        let mut push = |field: String, old: String, new: String| {
            if old != new {
                out.push(FieldChange { field, old, new });
            }
        };
        push("name".into(), show_text(&old.name), show_text(&self.name));
        push(
            "active".into(),
            old.active.to_string(),
            self.active.to_string(),
        );
        push(
            "price_month_cents".into(),
            show_price(old.price_month_cents),
            show_price(self.price_month_cents),
        );
        push(
            "price_year_cents".into(),
            show_price(old.price_year_cents),
            show_price(self.price_year_cents),
        );
        for ((name, was), (_, is)) in old.limits.entries().into_iter().zip(self.limits.entries()) {
            push(format!("limits.{name}"), show_limit(was), show_limit(is));
        }
        push(
            "channels.widget".into(),
            old.channels.widget.to_string(),
            self.channels.widget.to_string(),
        );
        push(
            "channels.telegram".into(),
            old.channels.telegram.to_string(),
            self.channels.telegram.to_string(),
        );
        let keys: std::collections::BTreeSet<&String> =
            old.features.keys().chain(self.features.keys()).collect();
        for key in keys {
            let show = |v: Option<&bool>| v.map_or_else(|| "-".to_string(), |b| b.to_string());
            push(
                format!("features.{key}"),
                show(old.features.get(key)),
                show(self.features.get(key)),
            );
        }
        out
    }

    fn to_row(&self, code: &PlanCode, created_at: i64, updated_at: i64) -> Result<PlanRow> {
        let limit = |v: Option<u32>| -> Result<Option<i32>> {
            v.map(|n| i32::try_from(n).map_err(|_| Error::internal("limit out of range")))
                .transpose()
        };
        Ok(PlanRow {
            code: code.as_str().to_string(),
            name: self.name.clone(),
            active: self.active,
            price_month_cents: self.price_month_cents,
            price_year_cents: self.price_year_cents,
            conversation_starts_per_day: limit(self.limits.conversation_starts_per_day)?,
            topic_renames_per_day: limit(self.limits.topic_renames_per_day)?,
            messages_per_day: limit(self.limits.messages_per_day)?,
            active_conversations: limit(self.limits.active_conversations)?,
            retention_days: limit(self.limits.retention_days)?,
            channel_widget: self.channels.widget,
            channel_telegram: self.channels.telegram,
            features: serde_json::to_string(&self.features)
                .map_err(|e| Error::internal(e.to_string()))?,
            created_at,
            updated_at,
        })
    }
}

/// A text value as shown in a change: quoted, controls escaped.
fn show_text(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn show_price(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_string(), |c| c.to_string())
}

fn show_limit(v: Option<u32>) -> String {
    v.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

/// One changed field: `field: old → new`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldChange {
    /// The field, e.g. `limits.messages_per_day` or `features.custom_branding`.
    pub field: String,
    /// Its value before (`unlimited` for no limit, `-` for no price or no feature).
    pub old: String,
    /// Its value after.
    pub new: String,
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} → {}", self.field, self.old, self.new)
    }
}

/// A plan as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Plan {
    /// Code (slug), unique.
    #[schema(value_type = String)]
    pub code: PlanCode,
    /// Display name.
    pub name: String,
    /// Whether tenants can be put on it (tenants on an inactive plan keep it).
    pub active: bool,
    /// Price per month in EUR cents; `null`: not sold monthly.
    pub price_month_cents: Option<i64>,
    /// Price per year in EUR cents; `null`: not sold yearly.
    pub price_year_cents: Option<i64>,
    /// Limits; `null` is unlimited.
    pub limits: Limits,
    /// Channels.
    pub channels: Channels,
    /// Feature flags.
    pub features: BTreeMap<String, bool>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; changes only when something about the plan changed.
    pub updated_at: String,
}

impl Plan {
    /// Parse a stored row.
    pub fn from_row(row: PlanRow) -> Result<Self> {
        let code = row.code;
        let limit = |v: Option<i32>| stored_limit(&code, v);
        let limits = Limits {
            conversation_starts_per_day: limit(row.conversation_starts_per_day)?,
            topic_renames_per_day: limit(row.topic_renames_per_day)?,
            messages_per_day: limit(row.messages_per_day)?,
            active_conversations: limit(row.active_conversations)?,
            retention_days: limit(row.retention_days)?,
        };
        let features = serde_json::from_str(&row.features)
            .map_err(|e| Error::internal(format!("plan {code} has unreadable features: {e}")))?;
        Ok(Plan {
            code: PlanCode(code),
            name: row.name,
            active: row.active,
            price_month_cents: row.price_month_cents,
            price_year_cents: row.price_year_cents,
            limits,
            channels: Channels {
                widget: row.channel_widget,
                telegram: row.channel_telegram,
            },
            features,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        })
    }

    /// The writable part of the plan.
    pub fn spec(&self) -> PlanSpec {
        PlanSpec {
            name: self.name.clone(),
            active: self.active,
            price_month_cents: self.price_month_cents,
            price_year_cents: self.price_year_cents,
            limits: self.limits,
            channels: self.channels,
            features: self.features.clone(),
        }
    }

    /// Whether a feature flag is on (absent: off).
    pub fn feature(&self, name: &str) -> bool {
        self.features.get(name).copied().unwrap_or(false)
    }
}

/// `plans:<access>` on a platform key (or an operator, or the service).
fn require(caller: &Caller, access: ScopeAccess) -> Result<()> {
    caller.require(&Scope::new(Resource::Plans, access))?;
    tenancy::platform_only(caller)
}

/// Every plan, by code (`plans:read`, platform keys only).
pub async fn list(db: &Db, caller: &Caller) -> Result<Vec<Plan>> {
    require(caller, ScopeAccess::Read)?;
    let mut pc = db.conn().await?;
    repo::plans::list(&mut pc.as_conn())
        .await?
        .into_iter()
        .map(Plan::from_row)
        .collect()
}

/// One plan (`plans:read`, platform keys only); `not_found` if there is none.
pub async fn get(db: &Db, caller: &Caller, code: &str) -> Result<Plan> {
    require(caller, ScopeAccess::Read)?;
    let code = PlanCode::parse("code", code)?;
    let mut pc = db.conn().await?;
    repo::plans::get(&mut pc.as_conn(), code.as_str())
        .await?
        .ok_or_else(|| Error::not_found("plan"))
        .and_then(Plan::from_row)
}

/// What [`put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// There was no plan with that code.
    Created,
    /// The plan was replaced; at least one field changed.
    Replaced,
    /// The plan was already exactly like this: nothing was written.
    Unchanged,
}

/// Create or replace one plan (`plans:write`, platform keys only), recording
/// `plan.updated` in the same transaction. Replacing a plan with what it already is
/// writes and records nothing (`updated_at` stays).
pub async fn put(
    db: &Db,
    caller: &Caller,
    code: &str,
    spec: PlanSpec,
) -> Result<(Plan, PutOutcome)> {
    require(caller, ScopeAccess::Write)?;
    let code = PlanCode::parse("code", code)?;
    let spec = spec.validate()?;
    let now = now_ms();
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let (row, outcome) = crate::transaction!(&mut conn, |tx| {
        match repo::plans::get(tx, code.as_str()).await? {
            None => {
                let row = spec.to_row(&code, now, now)?;
                repo::plans::insert(tx, &row).await?;
                crate::audit::record(tx, caller, plan_updated(&code, None, &spec)).await?;
                Ok((row, PutOutcome::Created))
            }
            Some(old) => {
                let current = Plan::from_row(old.clone())?;
                if spec.changes_from(&current.spec()).is_empty() {
                    return Ok((old, PutOutcome::Unchanged));
                }
                let row = spec.to_row(&code, old.created_at, now)?;
                repo::plans::replace(tx, &row).await?;
                crate::audit::record(
                    tx,
                    caller,
                    plan_updated(&code, Some(&current.spec()), &spec),
                )
                .await?;
                Ok((row, PutOutcome::Replaced))
            }
        }
    })?;
    Ok((Plan::from_row(row)?, outcome))
}

/// A deleted plan, and where its tenants went.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeletedPlan {
    /// The plan as it was.
    pub plan: Plan,
    /// Tenants moved to `reassigned_to` in the same transaction.
    pub reassigned: u64,
    /// The plan its tenants were moved to, when asked to.
    #[schema(value_type = Option<String>)]
    pub reassigned_to: Option<PlanCode>,
}

/// Delete a plan (`plans:write`, platform keys only). A plan still used by tenants is
/// refused (`conflict`, naming how many) unless `reassign` names an active plan to
/// move them to, in the same transaction. `free` is never deleted. Records `plan.deleted`
/// and, for each moved tenant, `plan.changed` (reason `plan_deleted`).
pub async fn delete(
    db: &Db,
    caller: &Caller,
    code: &str,
    reassign: Option<&str>,
) -> Result<DeletedPlan> {
    require(caller, ScopeAccess::Write)?;
    let code = PlanCode::parse("code", code)?;
    let reassign = reassign
        .map(|r| PlanCode::parse("reassign", r))
        .transpose()?;
    if code.as_str() == PlanCode::FREE {
        return Err(Error::new(
            ErrorCode::Conflict,
            "the free plan cannot be deleted: it is every new tenant's plan",
        )
        .with_details(serde_json::json!({ "plan": PlanCode::FREE })));
    }
    if reassign.as_ref() == Some(&code) {
        return Err(Error::validation(
            "reassign",
            "reassign names the plan being deleted; name another plan",
        ));
    }
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let now = now_ms();
    let (row, reassigned) = crate::transaction!(&mut conn, |tx| {
        let row = repo::plans::get(tx, code.as_str())
            .await?
            .ok_or_else(|| Error::not_found("plan"))?;
        let in_use = repo::plans::tenant_count(tx, code.as_str()).await?;
        let mut reassigned = 0;
        // Each moved tenant's own log shows its plan changing (after the deletion).
        let mut moves = Vec::new();
        match &reassign {
            Some(to) => {
                assignable(tx, "reassign", to).await?;
                let moved = repo::plans::tenant_ids_on(tx, code.as_str()).await?;
                reassigned = repo::plans::reassign_tenants(tx, code.as_str(), to.as_str(), now)
                    .await? as u64;
                moves = moved
                    .into_iter()
                    .map(|t| {
                        plan_changed(
                            &TenantId::from(t),
                            code.as_str(),
                            to.as_str(),
                            "plan_deleted",
                        )
                    })
                    .collect();
            }
            None if in_use > 0 => {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "plan `{code}` is used by {in_use} tenant{}: reassign {} to another plan to delete it",
                        if in_use == 1 { "" } else { "s" },
                        if in_use == 1 { "it" } else { "them" }
                    ),
                )
                .with_details(serde_json::json!({ "plan": code.as_str(), "tenants": in_use })));
            }
            None => {}
        }
        repo::plans::delete(tx, code.as_str())
            .await
            .map_err(|e| in_use_conflict(e, &code))?;
        crate::audit::record(
            tx,
            caller,
            crate::audit::Entry::new(crate::audit::Action::PlanDeleted)
                .target(code.as_str())
                .changes(serde_json::json!({
                    "name": row.name,
                    "reassigned": reassigned,
                    "reassigned_to": reassign.as_ref().map(PlanCode::as_str),
                })),
        )
        .await?;
        for entry in moves {
            crate::audit::record(tx, caller, entry).await?;
        }
        Ok((row, reassigned))
    })?;
    Ok(DeletedPlan {
        plan: Plan::from_row(row)?,
        reassigned,
        reassigned_to: reassign,
    })
}

/// A tenant put on a plan by a concurrent request between the count and the delete
/// makes the database refuse the delete: the same `conflict` as a counted one.
fn in_use_conflict(e: Error, code: &PlanCode) -> Error {
    use diesel::result::{DatabaseErrorKind, Error as D};
    let fk = e.source.as_ref().and_then(|s| s.downcast_ref::<D>()).is_some_and(|d| {
        matches!(d, D::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _))
            || matches!(d, D::DatabaseError(_, info) if info.message().contains("FOREIGN KEY constraint failed"))
    });
    if fk {
        Error::new(
            ErrorCode::Conflict,
            format!("plan `{code}` is used by tenants: reassign them to another plan to delete it"),
        )
        .with_details(serde_json::json!({ "plan": code.as_str() }))
    } else {
        e
    }
}

/// The plan `code`, if it exists and is active; else `validation_failed` naming `field`.
async fn assignable(conn: &mut Conn<'_>, field: &str, code: &PlanCode) -> Result<PlanRow> {
    match repo::plans::get(conn, code.as_str()).await? {
        None => Err(Error::validation(
            field,
            format!("there is no plan `{code}`"),
        )),
        Some(row) if !row.active => Err(Error::validation(
            field,
            format!("plan `{code}` is not active: tenants cannot be put on it"),
        )),
        Some(row) => Ok(row),
    }
}

/// Check that a new tenant can be put on `code` (it exists and is active); used by
/// `tenancy::create_tenant` inside its transaction.
pub(crate) async fn check_assignable(
    conn: &mut Conn<'_>,
    field: &str,
    code: &PlanCode,
) -> Result<()> {
    assignable(conn, field, code).await.map(|_| ())
}

/// Put a tenant on a plan (`plans:write`, platform keys only). The plan must exist and
/// be active. It takes effect at once: the next request of the tenant is held to it.
/// Records `plan.changed` (`{from, to}`) in the same transaction; putting a tenant on the
/// plan it has changes and records nothing.
pub async fn set_tenant_plan(
    db: &Db,
    caller: &Caller,
    tenant_slug: &str,
    code: &str,
) -> Result<Tenant> {
    require(caller, ScopeAccess::Write)?;
    let code = PlanCode::parse("plan", code)?;
    let tenant = tenancy::tenant_by_slug(db, tenant_slug).await?;
    if tenant.plan == code.as_str() {
        return Ok(tenant);
    }
    let now = now_ms();
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    crate::transaction!(&mut conn, |tx| {
        repo::tenants::lock(tx, &tenant.id).await?;
        let from = repo::plans::of_tenant(tx, &tenant.id)
            .await?
            .ok_or_else(|| Error::not_found("tenant"))?
            .code;
        if from == code.as_str() {
            // Put on it meanwhile: nothing changes, nothing is recorded.
            return Ok(());
        }
        assignable(tx, "plan", &code).await?;
        if !repo::plans::set_tenant_plan(tx, &tenant.id, code.as_str(), now).await? {
            return Err(Error::not_found("tenant"));
        }
        let entry = plan_changed(&tenant.id, &from, code.as_str(), "set");
        crate::audit::record(tx, caller, entry).await
    })?;
    tenancy::tenant_by_id(db, &tenant.id).await
}

/// The audit entry of a plan created (`old` is `None`) or changed: `plan.updated`
/// with the whole plan when created, else the fields that changed (`{field: {from, to}}`).
pub(crate) fn plan_updated(
    code: &PlanCode,
    old: Option<&PlanSpec>,
    new: &PlanSpec,
) -> crate::audit::Entry {
    let changes = match old {
        // Feature names are chosen by people: a list, never object keys (which the
        // audit log checks against names such as `token`).
        None => serde_json::json!({
            "created": true,
            "name": new.name,
            "active": new.active,
            "price_month_cents": new.price_month_cents,
            "price_year_cents": new.price_year_cents,
            "limits": new.limits,
            "channels": new.channels,
            "features": new
                .features
                .iter()
                .map(|(name, on)| serde_json::json!({ "name": name, "on": on }))
                .collect::<Vec<_>>(),
        }),
        Some(old) => {
            let fields: serde_json::Map<String, serde_json::Value> = new
                .changes_from(old)
                .into_iter()
                .map(|c| (c.field, serde_json::json!({ "from": c.old, "to": c.new })))
                .collect();
            serde_json::json!({ "created": false, "fields": fields })
        }
    };
    crate::audit::Entry::new(crate::audit::Action::PlanUpdated)
        .target(code.as_str())
        .changes(changes)
}

/// The audit entry of a tenant moved from plan `from` to plan `to` (`plan.changed`);
/// `reason` says why: `set` (an operator or a platform key), `plan_deleted`,
/// `subscription` (Stripe), `dunning` (a grace period ended unpaid).
pub(crate) fn plan_changed(
    tenant_id: &TenantId,
    from: &str,
    to: &str,
    reason: &str,
) -> crate::audit::Entry {
    crate::audit::Entry::new(crate::audit::Action::PlanChanged)
        .tenant(tenant_id)
        .target(tenant_id.to_string())
        .changes(serde_json::json!({ "from": from, "to": to, "reason": reason }))
}

/// 403 `plan_restricted`: the tenant's plan does not include `channel` (`details.channel`).
pub fn restricted(channel: &str) -> Error {
    Error::new(
        ErrorCode::PlanRestricted,
        format!("the plan does not include the {channel} channel"),
    )
    .with_details(serde_json::json!({ "channel": channel }))
}

/// A tenant's plan as it is now, for the code that enforces it (no caller: this is not
/// an operation; read inside the caller's transaction when it must agree with a write).
/// `not_found` for an unknown tenant.
pub async fn for_tenant(conn: &mut Conn<'_>, tenant_id: &str) -> Result<Plan> {
    repo::plans::of_tenant(conn, tenant_id)
        .await?
        .ok_or_else(|| Error::not_found("tenant"))
        .and_then(Plan::from_row)
}

/// A limit as stored (`NULL`: unlimited); a negative one is an internal error naming
/// the plan `code`.
pub(crate) fn stored_limit(code: &str, v: Option<i32>) -> Result<Option<u32>> {
    v.map(|n| {
        u32::try_from(n).map_err(|_| Error::internal(format!("plan {code} has a negative limit")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PlanSpec {
        PlanSpec {
            name: "Pro".into(),
            active: true,
            price_month_cents: Some(1900),
            price_year_cents: None,
            limits: Limits {
                messages_per_day: Some(5000),
                ..Default::default()
            },
            channels: Channels::default(),
            features: BTreeMap::from([("custom_branding".to_string(), true)]),
        }
    }

    fn field_of(e: &Error) -> String {
        e.details.as_ref().expect("details")["field"]
            .as_str()
            .expect("field")
            .to_string()
    }

    #[test]
    fn codes_follow_the_slug_rules() {
        assert_eq!(
            PlanCode::parse("code", "pro-2").expect("valid").as_str(),
            "pro-2"
        );
        for bad in ["", "p", "Pro", "2pro", "pro-", "pro plan", "pro_plan"] {
            let e = PlanCode::parse("reassign", bad).expect_err(bad);
            assert_eq!(field_of(&e), "reassign");
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(spec().validate().is_ok());
        let cases: Vec<(PlanSpec, &str)> = vec![
            (
                PlanSpec {
                    name: "  ".into(),
                    ..spec()
                },
                "name",
            ),
            (
                PlanSpec {
                    name: "x".repeat(101),
                    ..spec()
                },
                "name",
            ),
            (
                PlanSpec {
                    price_month_cents: Some(-1),
                    ..spec()
                },
                "price_month_cents",
            ),
            (
                PlanSpec {
                    price_year_cents: Some(-5),
                    ..spec()
                },
                "price_year_cents",
            ),
            (
                PlanSpec {
                    limits: Limits {
                        messages_per_day: Some(u32::MAX),
                        ..Default::default()
                    },
                    ..spec()
                },
                "limits.messages_per_day",
            ),
            (
                PlanSpec {
                    limits: Limits {
                        retention_days: Some(0),
                        ..Default::default()
                    },
                    ..spec()
                },
                "limits.retention_days",
            ),
            (
                PlanSpec {
                    features: BTreeMap::from([("Bad Name".to_string(), true)]),
                    ..spec()
                },
                "features",
            ),
        ];
        for (s, field) in cases {
            let e = s.validate().expect_err(field);
            assert_eq!(e.code, ErrorCode::ValidationFailed);
            assert_eq!(field_of(&e), field, "{}", e.message);
        }
        // Zero is a limit (nothing allowed), not unlimited.
        let zero = PlanSpec {
            limits: Limits {
                topic_renames_per_day: Some(0),
                ..Default::default()
            },
            ..spec()
        };
        assert!(zero.validate().is_ok());
    }

    #[test]
    fn changes_list_each_field_that_differs() {
        let old = spec();
        assert!(old.changes_from(&old).is_empty());
        let mut new = spec();
        new.limits.messages_per_day = None;
        new.limits.active_conversations = Some(3);
        new.features.remove("custom_branding");
        new.features.insert("api".into(), true);
        new.channels.telegram = false;
        let shown: Vec<String> = new
            .changes_from(&old)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "limits.messages_per_day: 5000 → unlimited",
                "limits.active_conversations: unlimited → 3",
                "channels.telegram: true → false",
                "features.api: - → true",
                "features.custom_branding: true → -",
            ]
        );
    }

    #[test]
    fn channels_are_a_list_or_a_table() {
        let list: Channels = serde_json::from_str(r#"["telegram"]"#).expect("list");
        assert_eq!(
            list,
            Channels {
                widget: false,
                telegram: true
            }
        );
        let table: Channels =
            serde_json::from_str(r#"{"widget": true, "telegram": false}"#).expect("table");
        assert_eq!(
            table,
            Channels {
                widget: true,
                telegram: false
            }
        );
        for bad in [
            r#"["email"]"#,
            r#"{"widget": true}"#,
            r#"{"widget": true, "telegram": true, "sms": true}"#,
            "true",
        ] {
            assert!(serde_json::from_str::<Channels>(bad).is_err(), "{bad}");
        }
    }
}
