//! The plan catalogue file and `chatorical plans sync`.
//!
//! The file is TOML: one `[plans.<code>]` table per plan with the fields of a
//! [`PlanSpec`] (`name`, `active`, `price_month_cents`, `price_year_cents`,
//! `[plans.<code>.limits]`, `channels` as a list or a table, `[plans.<code>.features]`).
//! Unknown keys are errors; every error names the file, the line and the field.
//!
//! A sync first reads the file completely (an invalid file changes nothing), then a
//! [`SyncTarget`] makes itself match it: it computes the changes per plan (`created`,
//! `updated` with each `field: old → new`, `unchanged`, `deactivated` with `--prune`)
//! and applies them all at once, or with `dry_run` only reports them. Plans are never
//! deleted by a sync. The database ([`Database`]) is the first target; Stripe's
//! products and prices (`billing::catalogue::Stripe`) the second.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FieldChange, Plan, PlanCode, PlanSpec, plan_updated};
use crate::db::{Db, repo};
use crate::domain::{Resource, Scope, ScopeAccess, now_ms, text};
use crate::error::{Error, ErrorCode, Result};
use crate::tenancy::{self, Caller};

/// A parsed and validated catalogue file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue {
    /// Where it came from (the file name as given), for messages.
    pub source: String,
    /// The plans, by code.
    pub plans: BTreeMap<PlanCode, PlanSpec>,
}

/// The file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    plans: BTreeMap<String, PlanSpec>,
}

impl Catalogue {
    /// Read and check a catalogue file.
    pub fn load(path: &Path) -> Result<Catalogue> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorCode::ValidationFailed,
                format!("{source}: cannot read the file: {e}"),
            )
            .with_details(serde_json::json!({ "file": source }))
        })?;
        Catalogue::parse(&source, &text)
    }

    /// Parse and check catalogue text; `source` names it in errors
    /// (`plans.toml:12: plans.pro.limits.messages_per_day: …`).
    pub fn parse(source: &str, text: &str) -> Result<Catalogue> {
        let located = |span: Option<Range<usize>>, field: Option<&str>, message: &str| {
            file_error(source, text, span, field, message)
        };
        let tree =
            toml::de::DeTable::parse(text).map_err(|e| located(e.span(), None, e.message()))?;
        let deserializer = toml::de::Deserializer::parse(text)
            .map_err(|e| located(e.span(), None, e.message()))?;
        let file: File = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let span = inner.span().or_else(|| span_of(tree.get_ref(), &path));
            let field = (path != ".").then_some(path.as_str());
            located(span, field, inner.message())
        })?;
        let mut plans = BTreeMap::new();
        for (code, spec) in file.plans {
            let at = |field: &str| format!("plans.{code}.{field}");
            let parsed = PlanCode::parse("code", &code).map_err(|e| {
                let field = format!("plans.{code}");
                located(span_of(tree.get_ref(), &field), Some(&field), &e.message)
            })?;
            let spec = spec.validate().map_err(|e| {
                let details = e.details.clone().unwrap_or_default();
                let field = details["field"].as_str().unwrap_or_default();
                let path = match details["key"].as_str() {
                    Some(key) => at(&format!("{field}.{key}")),
                    None => at(field),
                };
                located(span_of(tree.get_ref(), &path), Some(&at(field)), &e.message)
            })?;
            plans.insert(parsed, spec);
        }
        Ok(Catalogue {
            source: source.to_string(),
            plans,
        })
    }
}

/// `<file>:<line>: <field>: <message>`, with the same in `details`.
fn file_error(
    source: &str,
    text: &str,
    span: Option<Range<usize>>,
    field: Option<&str>,
    message: &str,
) -> Error {
    let line = span.map(|s| line_of(text, s.start));
    let mut at = source.to_string();
    if let Some(line) = line {
        at.push_str(&format!(":{line}"));
    }
    let message = text::escape_controls(message.trim());
    let full = match field {
        Some(field) => format!("{at}: {field}: {message}"),
        None => format!("{at}: {message}"),
    };
    Error::new(ErrorCode::ValidationFailed, full).with_details(serde_json::json!({
        "file": source,
        "line": line,
        "field": field,
    }))
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Where the key at `path` (`plans.pro.limits.messages_per_day`) is written: the span of
/// its deepest part found in the file (a missing field points at its table).
fn span_of(root: &toml::de::DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let mut table = root;
    let mut found = None;
    for part in path.split('.') {
        let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref() == part) else {
            break;
        };
        found = Some(key.span());
        match value.get_ref() {
            toml::de::DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    found
}

/// How to sync.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    /// Compute and report the changes; write nothing.
    pub dry_run: bool,
    /// Deactivate active plans that are not in the file (they are never deleted).
    pub prune: bool,
}

/// What a sync does (or did) to one plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// In the file, not in the target: created.
    Created,
    /// In both, different: these fields changed.
    Updated {
        /// Each changed field.
        changes: Vec<FieldChange>,
    },
    /// In both, the same: nothing written.
    Unchanged,
    /// Not in the file, active in the target, `prune` asked: made inactive.
    Deactivated,
}

impl Action {
    /// `created`, `updated`, `unchanged` or `deactivated`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated { .. } => "updated",
            Action::Unchanged => "unchanged",
            Action::Deactivated => "deactivated",
        }
    }
}

/// One plan's line in a sync report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PlanChange {
    /// The plan.
    #[schema(value_type = String)]
    pub code: PlanCode,
    /// What happens to it.
    #[serde(flatten)]
    pub action: Action,
    /// The write calls this target made for the plan (in a dry run: would make), when
    /// it lists them (Stripe does; the database does not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<String>,
}

/// What a sync did to one target (or, for a dry run, would do).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncReport {
    /// The target: `database` or `stripe`.
    pub target: String,
    /// The catalogue file.
    pub file: String,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// Whether anything differs between the file and the target.
    pub changed: bool,
    /// One entry per plan in the file (and per pruned plan), by code.
    pub plans: Vec<PlanChange>,
}

impl SyncReport {
    /// How many plans got `action` (by its name).
    pub fn count(&self, action: &str) -> usize {
        self.plans
            .iter()
            .filter(|p| p.action.as_str() == action)
            .count()
    }
}

/// The changes that make a target holding `current` match the catalogue: per plan of
/// the file `created`, `updated` or `unchanged`; with `prune`, `deactivated` for each
/// active plan the file lacks (inactive ones the file lacks are not listed).
pub fn plan_changes(catalogue: &Catalogue, current: &[Plan], prune: bool) -> Vec<PlanChange> {
    let current: BTreeMap<&PlanCode, &Plan> = current.iter().map(|p| (&p.code, p)).collect();
    let mut out: Vec<PlanChange> = catalogue
        .plans
        .iter()
        .map(|(code, spec)| {
            let action = match current.get(code) {
                None => Action::Created,
                Some(plan) => {
                    let changes = spec.changes_from(&plan.spec());
                    if changes.is_empty() {
                        Action::Unchanged
                    } else {
                        Action::Updated { changes }
                    }
                }
            };
            PlanChange {
                code: code.clone(),
                action,
                calls: Vec::new(),
            }
        })
        .collect();
    if prune {
        out.extend(
            current
                .values()
                .filter(|p| p.active && !catalogue.plans.contains_key(&p.code))
                .map(|p| PlanChange {
                    code: p.code.clone(),
                    action: Action::Deactivated,
                    calls: Vec::new(),
                }),
        );
        out.sort_by(|a, b| a.code.cmp(&b.code));
    }
    out
}

/// Somewhere a catalogue is synced to. A target reads what it holds, computes the
/// changes with [`plan_changes`] and applies them all or nothing; with `dry_run` it
/// writes nothing. Call it through [`sync`], which checks the caller.
pub trait SyncTarget {
    /// Its name in reports (`database`).
    fn name(&self) -> &'static str;

    /// Make the target match `catalogue` for `caller` (already checked by [`sync`]; a
    /// target that keeps an audit trail records the changes as theirs); returns what
    /// changed (or would change).
    fn apply(
        &self,
        caller: &Caller,
        catalogue: &Catalogue,
        options: SyncOptions,
    ) -> impl Future<Output = Result<Vec<PlanChange>>> + Send;
}

/// The `plans` table: changes are applied in one transaction, which reads the plans
/// it diffs against; a sync that changes nothing writes nothing.
pub struct Database<'a> {
    db: &'a Db,
}

impl<'a> Database<'a> {
    /// The database as a sync target.
    pub fn new(db: &'a Db) -> Self {
        Database { db }
    }
}

async fn load_plans(conn: &mut crate::db::Conn<'_>) -> Result<Vec<Plan>> {
    repo::plans::list(conn)
        .await?
        .into_iter()
        .map(Plan::from_row)
        .collect()
}

impl SyncTarget for Database<'_> {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn apply(
        &self,
        caller: &Caller,
        catalogue: &Catalogue,
        options: SyncOptions,
    ) -> Result<Vec<PlanChange>> {
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        let current = load_plans(&mut conn).await?;
        let changes = plan_changes(catalogue, &current, options.prune);
        if options.dry_run || changes.iter().all(|c| c.action == Action::Unchanged) {
            // Nothing to write: not even a write transaction.
            return Ok(changes);
        }
        let now = now_ms();
        crate::transaction!(&mut conn, |tx| {
            // Diff again against what is there now, under the write transaction.
            let current = load_plans(tx).await?;
            let changes = plan_changes(catalogue, &current, options.prune);
            // One `plan.updated` per plan written, in this transaction.
            let was = |code: &PlanCode| current.iter().find(|p| &p.code == code).map(Plan::spec);
            for change in &changes {
                let code = &change.code;
                match &change.action {
                    Action::Unchanged => {}
                    Action::Created => {
                        let spec = &catalogue.plans[code];
                        let row = spec.to_row(code, now, now)?;
                        repo::plans::insert(tx, &row).await?;
                        crate::audit::record(tx, caller, plan_updated(code, None, spec)).await?;
                    }
                    Action::Updated { .. } => {
                        // `replace` keeps `created_at`.
                        let spec = &catalogue.plans[code];
                        let row = spec.to_row(code, now, now)?;
                        repo::plans::replace(tx, &row).await?;
                        let entry = plan_updated(code, was(code).as_ref(), spec);
                        crate::audit::record(tx, caller, entry).await?;
                    }
                    Action::Deactivated => {
                        repo::plans::deactivate(tx, code.as_str(), now).await?;
                        if let Some(old) = was(code) {
                            let new = PlanSpec {
                                active: false,
                                ..old.clone()
                            };
                            let entry = plan_updated(code, Some(&old), &new);
                            crate::audit::record(tx, caller, entry).await?;
                        }
                    }
                }
            }
            Ok(changes)
        })
    }
}

/// Sync a catalogue to a target (`plans:write`, or `plans:read` for a dry run; platform
/// keys only).
pub async fn sync<T: SyncTarget>(
    caller: &Caller,
    catalogue: &Catalogue,
    target: &T,
    options: SyncOptions,
) -> Result<SyncReport> {
    let access = if options.dry_run {
        ScopeAccess::Read
    } else {
        ScopeAccess::Write
    };
    caller.require(&Scope::new(Resource::Plans, access))?;
    tenancy::platform_only(caller)?;
    let plans = target.apply(caller, catalogue, options).await?;
    Ok(SyncReport {
        target: target.name().to_string(),
        file: catalogue.source.clone(),
        dry_run: options.dry_run,
        changed: plans.iter().any(|p| p.action != Action::Unchanged),
        plans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[plans.free]
name = "Free"
channels = ["widget", "telegram"]

[plans.free.limits]
conversation_starts_per_day = 20
messages_per_day = 500

[plans.pro]
name = "Pro"
price_month_cents = 1900
price_year_cents = 19000
channels = { widget = true, telegram = true }

[plans.pro.limits]
messages_per_day = 10000
retention_days = 365

[plans.pro.features]
custom_branding = true
"#;

    fn error(text: &str) -> (String, Option<u64>, Option<String>) {
        let e = Catalogue::parse("plans.toml", text).expect_err("invalid");
        assert_eq!(e.code, ErrorCode::ValidationFailed);
        let d = e.details.clone().expect("details");
        (
            e.message,
            d["line"].as_u64(),
            d["field"].as_str().map(str::to_string),
        )
    }

    #[test]
    fn a_good_file_parses() {
        let c = Catalogue::parse("plans.toml", GOOD).expect("valid");
        assert_eq!(c.plans.len(), 2);
        let pro = &c.plans[&PlanCode::parse("code", "pro").expect("code")];
        assert_eq!(pro.price_month_cents, Some(1900));
        assert_eq!(pro.limits.messages_per_day, Some(10000));
        assert_eq!(pro.limits.conversation_starts_per_day, None);
        assert!(pro.active);
        assert_eq!(pro.features.get("custom_branding"), Some(&true));
        let free = &c.plans[&PlanCode::free()];
        assert!(free.channels.widget && free.channels.telegram);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        // An unknown key in a limits table.
        let text = GOOD.replace("retention_days = 365", "retention_dayz = 365");
        let (message, line, _) = error(&text);
        assert_eq!(line, Some(18), "{message}");
        assert!(message.starts_with("plans.toml:18: "), "{message}");
        assert!(message.contains("retention_dayz"), "{message}");

        // A wrong type.
        let text = GOOD.replace("messages_per_day = 10000", "messages_per_day = \"lots\"");
        let (message, line, field) = error(&text);
        assert_eq!(line, Some(17), "{message}");
        assert_eq!(field.as_deref(), Some("plans.pro.limits.messages_per_day"));
        assert!(
            message.starts_with("plans.toml:17: plans.pro.limits.messages_per_day: "),
            "{message}"
        );

        // A rule of the plan (validation after parsing).
        let text = GOOD.replace("price_year_cents = 19000", "price_year_cents = -1");
        let (message, line, field) = error(&text);
        assert_eq!(line, Some(13), "{message}");
        assert_eq!(field.as_deref(), Some("plans.pro.price_year_cents"));

        let text = GOOD.replace("retention_days = 365", "retention_days = 0");
        let (message, line, field) = error(&text);
        assert_eq!(
            (line, field.as_deref()),
            (Some(18), Some("plans.pro.limits.retention_days")),
            "{message}"
        );

        let text = GOOD.replace("custom_branding = true", "Custom = true");
        let (message, line, field) = error(&text);
        assert_eq!(
            (line, field.as_deref()),
            (Some(21), Some("plans.pro.features")),
            "{message}"
        );

        // A bad code names the table.
        let text = GOOD
            .replace("[plans.pro]", "[plans.Pro]")
            .replace("plans.pro.", "plans.Pro.");
        let (message, line, field) = error(&text);
        assert_eq!(
            (line, field.as_deref()),
            (Some(10), Some("plans.Pro")),
            "{message}"
        );

        // An unknown channel, an unknown top-level key, a syntax error.
        let text = GOOD.replace(r#"["widget", "telegram"]"#, r#"["widget", "email"]"#);
        let (message, line, _) = error(&text);
        assert_eq!(line, Some(4), "{message}");
        assert!(message.contains("email"), "{message}");
        let (message, line, _) = error("[plan.free]\nname = \"Free\"\n");
        assert_eq!(line, Some(1), "{message}");
        let (message, line, _) = error("[plans.free]\nname = \"Free\n");
        assert_eq!(line, Some(2), "{message}");
        // A missing name.
        let (message, _, field) = error("[plans.free]\nactive = true\n");
        assert!(message.contains("name"), "{message} {field:?}");
    }

    fn plan(code: &str, spec: &PlanSpec) -> Plan {
        let code = PlanCode::parse("code", code).expect("code");
        Plan::from_row(spec.to_row(&code, 1, 1).expect("row")).expect("plan")
    }

    #[test]
    fn changes_per_plan() {
        let c = Catalogue::parse("plans.toml", GOOD).expect("valid");
        let free = c.plans[&PlanCode::free()].clone();
        let mut old_pro = c.plans[&PlanCode::parse("code", "pro").expect("code")].clone();
        old_pro.limits.messages_per_day = Some(5000);
        let legacy = PlanSpec {
            name: "Legacy".into(),
            ..free.clone()
        };
        let current = vec![
            plan("free", &free),
            plan("legacy", &legacy),
            plan("pro", &old_pro),
        ];
        let changes = plan_changes(&c, &current, false);
        let actions: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| (c.code.as_str(), c.action.as_str()))
            .collect();
        assert_eq!(actions, [("free", "unchanged"), ("pro", "updated")]);
        let Action::Updated { changes: fields } = &changes[1].action else {
            panic!("updated");
        };
        assert_eq!(
            fields.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["limits.messages_per_day: 5000 → 10000"]
        );
        let pruned = plan_changes(&c, &current, true);
        let actions: Vec<(&str, &str)> = pruned
            .iter()
            .map(|c| (c.code.as_str(), c.action.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("free", "unchanged"),
                ("legacy", "deactivated"),
                ("pro", "updated")
            ]
        );
        let empty = Catalogue::parse("plans.toml", "").expect("empty file");
        assert!(plan_changes(&empty, &[], true).is_empty());
        assert_eq!(
            plan_changes(&c, &[], false)
                .iter()
                .filter(|c| c.action == Action::Created)
                .count(),
            2
        );
    }
}
