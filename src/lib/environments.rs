//! A tenant's environments and feature flags.
//!
//! Every tenant has `production` — its widget key and settings on the tenant row, as
//! before environments existed — and may create `staging` (a row of
//! `tenant_environments`): a second widget key with its own allowed origins and
//! settings. A widget key resolves to its environment's view of the tenant
//! ([`crate::tenancy::tenant_by_widget_key`]), so a staging key works only from staging
//! origins and a production key only from production ones. Visitors and conversations
//! remember their environment; staging's are counted apart in usage and metrics and
//! never against the plan's quotas, and their Telegram topics are prefixed `[staging] `
//! (or go to a forum group of staging's own).
//!
//! Feature flags are per environment (`settings.flags`) and override the plan's
//! `features` of the same name: the widget session carries the merged, effective set.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::audit;
use crate::db::{Conn, Db, models::TenantEnvironmentRow, repo};
use crate::domain::{Environment, Resource, Scope, ScopeAccess, TenantId, now_ms, rfc3339};
use crate::error::{Error, ErrorCode, Result};
use crate::tenancy::{self, Caller, SettingsPatch, Tenant, TenantSettings};
use crate::transaction;

/// One environment of a tenant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnvironmentView {
    /// `production` or `staging`.
    pub environment: Environment,
    /// The environment's public widget key (`wk_…`), to embed in that site's pages.
    pub widget_key: String,
    /// The environment's settings (allowed origins, look, flags, identity).
    pub settings: TenantSettings,
    /// Staging: the forum group of its own its conversations go to (the tenant's bot);
    /// `null`: the tenant's group, topics prefixed `[staging] `. Always `null` for
    /// production (its group is the tenant's Telegram connection).
    pub telegram_group_chat_id: Option<i64>,
    /// RFC 3339: when the environment was created (production: the tenant).
    pub created_at: String,
    /// RFC 3339: last change of its key, settings or group.
    pub updated_at: String,
}

/// A tenant's environments.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnvironmentList {
    /// The tenant's slug.
    pub tenant: String,
    /// Production first, then the others the tenant created.
    pub environments: Vec<EnvironmentView>,
}

/// What to change about an environment ([`put`]); absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentChange {
    /// Give the environment a new widget key (the old one stops working at once).
    pub rotate_widget_key: bool,
    /// Replace the environment's allowed origins.
    pub allowed_origins: Option<Vec<String>>,
    /// Staging only: `Some(Some(id))` sends its conversations to a forum group of its
    /// own (the tenant's bot must be an admin there that may manage topics);
    /// `Some(None)` back to the tenant's group with `[staging] ` topics.
    pub telegram_group_chat_id: Option<Option<i64>>,
}

fn settings_scope(access: ScopeAccess) -> Scope {
    Scope::new(Resource::Settings, access)
}

fn to_json(settings: &TenantSettings) -> Result<String> {
    serde_json::to_string(settings).map_err(|e| Error::internal(e.to_string()))
}

fn parse_settings(json: &str) -> Result<TenantSettings> {
    serde_json::from_str(json)
        .map_err(|e| Error::internal(format!("unreadable environment settings: {e}")))
}

fn view_of_row(row: &TenantEnvironmentRow) -> Result<EnvironmentView> {
    Ok(EnvironmentView {
        environment: Environment::from_stored(&row.environment),
        widget_key: row.widget_key.clone(),
        settings: parse_settings(&row.settings)?,
        telegram_group_chat_id: row.telegram_group_chat_id,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    })
}

/// The environment `env` of the tenant as it is now, inside the caller's connection or
/// transaction; `not_found` for one the tenant has not created.
async fn read_view(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    env: Environment,
) -> Result<EnvironmentView> {
    match env {
        Environment::Production => {
            let row = repo::tenants::by_id(conn, tenant_id)
                .await?
                .ok_or_else(|| Error::not_found("tenant"))?;
            Ok(EnvironmentView {
                environment: Environment::Production,
                widget_key: row.widget_key,
                settings: parse_settings(&row.settings)?,
                telegram_group_chat_id: None,
                created_at: rfc3339(row.created_at),
                updated_at: rfc3339(row.updated_at),
            })
        }
        other => repo::environments::get(conn, tenant_id, other.as_str())
            .await?
            .ok_or_else(|| not_created(other))
            .and_then(|row| view_of_row(&row)),
    }
}

/// Store the environment's settings (it exists: read first in the same transaction).
async fn write_settings(
    tx: &mut Conn<'_>,
    tenant_id: &str,
    env: Environment,
    settings: &TenantSettings,
    now: i64,
) -> Result<()> {
    let json = to_json(settings)?;
    let stored = match env {
        Environment::Production => {
            repo::tenants::update_settings(tx, tenant_id, &json, now).await?
        }
        other => {
            repo::environments::update_settings(tx, tenant_id, other.as_str(), &json, now).await?
        }
    };
    if stored {
        Ok(())
    } else {
        Err(not_created(env))
    }
}

/// Every allowed origin of every tenant's every environment (for CORS preflights, which
/// come before any widget key). No caller: this is not an operation.
pub async fn all_allowed_origins(db: &Db) -> Result<std::collections::HashSet<String>> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let mut out = std::collections::HashSet::new();
    let production = repo::tenants::list(&mut conn).await?;
    let others = repo::environments::list_all(&mut conn).await?;
    let settings = production
        .iter()
        .map(|t| t.settings.as_str())
        .chain(others.iter().map(|e| e.settings.as_str()));
    for json in settings {
        let settings = parse_settings(json)?;
        out.extend(
            settings
                .allowed_origins
                .iter()
                .map(|o| o.as_str().to_string()),
        );
    }
    Ok(out)
}

/// The tenant's environments (`settings:read`): production, and staging once created.
pub async fn list(db: &Db, caller: &Caller, tenant: &Tenant) -> Result<EnvironmentList> {
    caller.require(&settings_scope(ScopeAccess::Read))?;
    caller.check_tenant(tenant)?;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let mut environments = vec![read_view(&mut conn, &tenant.id, Environment::Production).await?];
    for row in repo::environments::list(&mut conn, &tenant.id).await? {
        environments.push(view_of_row(&row)?);
    }
    Ok(EnvironmentList {
        tenant: tenant.slug.clone(),
        environments,
    })
}

/// One environment of the tenant (`settings:read`); `not_found` for staging before it
/// was created.
pub async fn get(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    env: Environment,
) -> Result<EnvironmentView> {
    caller.require(&settings_scope(ScopeAccess::Read))?;
    caller.check_tenant(tenant)?;
    let mut pc = db.conn().await?;
    read_view(&mut pc.as_conn(), &tenant.id, env).await
}

/// Create or change an environment (`settings:write`), in one transaction with its
/// `environment.updated` audit entry (what changed, never the key itself): staging is
/// created on first use (a fresh widget key, default settings, `change` applied);
/// `rotate_widget_key` gives it a new key; `allowed_origins` replaces its origins;
/// `telegram_group_chat_id` (staging only) moves its conversations to a forum group of
/// its own or back — their topics are then created anew in the group they now go to.
/// Returns the environment and whether this call created it.
pub async fn put(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    env: Environment,
    change: EnvironmentChange,
) -> Result<(EnvironmentView, bool)> {
    caller.require(&settings_scope(ScopeAccess::Write))?;
    caller.check_tenant(tenant)?;
    let origins = change
        .allowed_origins
        .as_deref()
        .map(tenancy::parse_origins)
        .transpose()?;
    if env == Environment::Production && change.telegram_group_chat_id.is_some() {
        return Err(Error::validation(
            "telegram_group_chat_id",
            "production's group is the tenant's Telegram connection (PUT /v1/admin/telegram)",
        ));
    }
    let tenant_id = tenant.id.as_str();
    let now = now_ms();
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    transaction!(&mut conn, |tx| {
        // One change of a tenant's environments at a time.
        repo::tenants::lock(tx, tenant_id).await?;
        let created = match env {
            Environment::Production => false,
            other => {
                if repo::environments::get(tx, tenant_id, other.as_str())
                    .await?
                    .is_none()
                {
                    let row = TenantEnvironmentRow {
                        tenant_id: tenant_id.to_string(),
                        environment: other.as_str().to_string(),
                        widget_key: tenancy::new_widget_key(),
                        settings: to_json(&TenantSettings::default())?,
                        telegram_group_chat_id: None,
                        created_at: now,
                        updated_at: now,
                    };
                    repo::environments::insert(tx, &row).await?;
                    true
                } else {
                    false
                }
            }
        };
        if change.rotate_widget_key {
            let key = tenancy::new_widget_key();
            match env {
                Environment::Production => {
                    repo::tenants::set_widget_key(tx, tenant_id, &key, now).await?;
                }
                other => {
                    repo::environments::set_widget_key(tx, tenant_id, other.as_str(), &key, now)
                        .await?;
                }
            }
        }
        let mut changes = serde_json::Map::new();
        if created {
            changes.insert("created".into(), true.into());
        }
        if change.rotate_widget_key {
            // Which key it was is no business of the log: only that it changed.
            changes.insert("widget_key_rotated".into(), true.into());
        }
        if let Some(origins) = &origins {
            let before = read_view(tx, tenant_id, env).await?.settings;
            let mut settings = before.clone();
            settings.allowed_origins = origins.clone();
            if settings != before {
                write_settings(tx, tenant_id, env, &settings, now).await?;
                changes.extend(tenancy::settings_diff(&before, &settings));
            }
        }
        if let Some(group) = change.telegram_group_chat_id {
            let before = repo::environments::telegram_group(tx, tenant_id, env.as_str()).await?;
            if before != group {
                set_telegram_group(tx, tenant_id, env, group, now).await?;
                changes.insert(
                    "telegram_group_chat_id".into(),
                    serde_json::json!({ "from": before, "to": group }),
                );
            }
        }
        if !changes.is_empty() {
            changes.insert("environment".into(), env.as_str().into());
            audit::record(
                tx,
                caller,
                audit::Entry::new(audit::Action::EnvironmentUpdated)
                    .tenant(&tenant.id)
                    .target(format!("{tenant_id}:{env}"))
                    .changes(serde_json::Value::Object(changes)),
            )
            .await?;
        }
        let view = read_view(tx, tenant_id, env).await?;
        Ok((view, created))
    })
}

/// Point the environment's conversations at `group` (or back at the tenant's group),
/// inside the caller's transaction. The group must not be the tenant's own (that is the
/// `[staging] ` prefix mode: no group) and needs Telegram connected. When it changes,
/// the environment's topics are forgotten: they live in the old group, and the next
/// delivery creates each one anew where its conversation goes now; items still queued
/// for the old group of its own go to where it goes now.
async fn set_telegram_group(
    tx: &mut Conn<'_>,
    tenant_id: &str,
    env: Environment,
    group: Option<i64>,
    now: i64,
) -> Result<()> {
    let cfg = repo::telegram::get(tx, tenant_id).await?;
    if let Some(id) = group {
        let Some(cfg) = &cfg else {
            return Err(Error::validation(
                "telegram_group_chat_id",
                "connect Telegram first (PUT /v1/admin/telegram): the group uses the tenant's bot",
            ));
        };
        if id == cfg.group_chat_id {
            return Err(Error::validation(
                "telegram_group_chat_id",
                "this is the tenant's own group: leave the group unset to use it with [staging] topics",
            ));
        }
        if id >= 0 {
            return Err(Error::validation(
                "telegram_group_chat_id",
                "a forum supergroup's chat id is negative (-100…)",
            ));
        }
    }
    let before = repo::environments::telegram_group(tx, tenant_id, env.as_str()).await?;
    if before == group {
        return Ok(());
    }
    repo::environments::set_telegram_group(tx, tenant_id, env.as_str(), group, now).await?;
    repo::conversations::clear_env_topics(tx, tenant_id, env.as_str()).await?;
    if let (Some(old), Some(cfg)) = (before, &cfg) {
        let to = group.unwrap_or(cfg.group_chat_id);
        let old_lane = crate::outbox::telegram_lane(tenant_id, old);
        let new_lane = crate::outbox::telegram_lane(tenant_id, to);
        repo::outbox::move_lane(tx, tenant_id, &old_lane, &new_lane, now).await?;
    }
    Ok(())
}

/// An environment's group of its own became a supergroup (Telegram answered
/// `migrate_to_chat_id`): follow it, as [`crate::telegram::setup::follow_migration`]
/// does for the tenant's group — the environment's group, its topics (forgotten, to
/// be created anew) and its queued items move to `to`, in one transaction. `false`
/// when the environment's group is not `from` (any more).
pub async fn follow_migration(
    db: &Db,
    tenant_id: &crate::domain::TenantId,
    env: Environment,
    from: i64,
    to: i64,
) -> Result<bool> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let now = now_ms();
    let old_lane = crate::outbox::telegram_lane(tenant_id, from);
    let new_lane = crate::outbox::telegram_lane(tenant_id, to);
    transaction!(&mut conn, |tx| {
        if repo::environments::telegram_group(tx, tenant_id, env.as_str()).await? != Some(from) {
            return Ok(false);
        }
        repo::environments::set_telegram_group(tx, tenant_id, env.as_str(), Some(to), now).await?;
        repo::conversations::clear_env_topics(tx, tenant_id, env.as_str()).await?;
        repo::outbox::move_lane(tx, tenant_id, &old_lane, &new_lane, now).await?;
        Ok(true)
    })
}

/// Apply a settings patch to one environment of the tenant (`settings:write`), in one
/// transaction; every field is validated first (nothing is written on a bad one).
/// `identity_required` needs the tenant's identity secret (shared by its environments).
/// Records `settings.updated` with the fields that changed (and, for staging, the
/// environment) in the same transaction; a patch that changes nothing writes nothing.
pub async fn update_settings(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    env: Environment,
    patch: SettingsPatch,
) -> Result<TenantSettings> {
    caller.check_tenant(tenant)?;
    update_settings_of(db, caller, &tenant.id, env, patch).await
}

/// [`update_settings`] by the tenant's id (whoever found the tenant checked the
/// caller's tenancy; the scope is checked here).
pub(crate) async fn update_settings_of(
    db: &Db,
    caller: &Caller,
    tenant_id: &TenantId,
    env: Environment,
    patch: SettingsPatch,
) -> Result<TenantSettings> {
    caller.require(&settings_scope(ScopeAccess::Write))?;
    let require_identity = patch.identity_required == Some(true);
    let now = now_ms();
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    transaction!(&mut conn, |tx| {
        repo::tenants::lock(tx, tenant_id).await?;
        let before = read_view(tx, tenant_id, env).await?.settings;
        let mut settings = before.clone();
        settings.apply(patch.clone())?;
        if require_identity
            && repo::tenants::identity_secret(tx, tenant_id)
                .await?
                .is_none()
        {
            // Every session would be refused: there is nothing to verify identities with.
            return Err(Error::validation(
                "identity_required",
                "generate an identity secret first (POST /v1/admin/identity/secret)",
            ));
        }
        let mut changes = tenancy::settings_diff(&before, &settings);
        if changes.is_empty() {
            return Ok(settings);
        }
        write_settings(tx, tenant_id, env, &settings, now).await?;
        if env != Environment::Production {
            changes.insert("environment".into(), env.as_str().into());
        }
        audit::record(
            tx,
            caller,
            audit::Entry::new(audit::Action::SettingsUpdated)
                .tenant(tenant_id)
                .target(tenant_id.to_string())
                .changes(serde_json::Value::Object(changes)),
        )
        .await?;
        Ok(settings)
    })
}

/// The flags a widget of the environment sees: the plan's `features`, each overridden
/// by the environment's flag of the same name, plus the environment's other flags.
pub fn effective_flags(
    plan_features: &BTreeMap<String, bool>,
    flags: &BTreeMap<String, bool>,
) -> BTreeMap<String, bool> {
    let mut out = plan_features.clone();
    out.extend(flags.iter().map(|(k, v)| (k.clone(), *v)));
    out
}

/// An environment's feature flags.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlagList {
    /// The environment.
    pub environment: Environment,
    /// The environment's own flags (`settings.flags`).
    pub flags: BTreeMap<String, bool>,
    /// The plan's features.
    pub plan: BTreeMap<String, bool>,
    /// What the widget sees: the plan's features overridden by the environment's flags.
    pub effective: BTreeMap<String, bool>,
}

/// Where a flag's effective value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlagSource {
    /// The environment's own flag.
    Tenant,
    /// The plan's feature.
    Plan,
    /// Neither sets it: off.
    Default,
}

/// One feature flag of an environment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Flag {
    /// The flag's name.
    pub name: String,
    /// The environment.
    pub environment: Environment,
    /// The effective value the widget sees.
    pub value: bool,
    /// Where `value` comes from.
    pub source: FlagSource,
    /// The environment's own value, if set.
    pub tenant: Option<bool>,
    /// The plan's feature of that name, if any.
    pub plan: Option<bool>,
}

fn flag_of(name: &str, env: Environment, tenant: Option<bool>, plan: Option<bool>) -> Flag {
    let (value, source) = match (tenant, plan) {
        (Some(v), _) => (v, FlagSource::Tenant),
        (None, Some(v)) => (v, FlagSource::Plan),
        (None, None) => (false, FlagSource::Default),
    };
    Flag {
        name: name.to_string(),
        environment: env,
        value,
        source,
        tenant,
        plan,
    }
}

/// The environment's flags with the plan's features (`settings:read`).
pub async fn flags(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    env: Environment,
) -> Result<FlagList> {
    caller.require(&settings_scope(ScopeAccess::Read))?;
    caller.check_tenant(tenant)?;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let settings = read_view(&mut conn, &tenant.id, env).await?.settings;
    let plan = crate::plans::for_tenant(&mut conn, &tenant.id)
        .await?
        .features;
    Ok(FlagList {
        environment: env,
        effective: effective_flags(&plan, &settings.flags),
        flags: settings.flags,
        plan,
    })
}

/// One flag of the environment (`settings:read`); `not_found` when neither the
/// environment nor the plan has it. A bad name is `validation_failed`.
pub async fn flag(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    env: Environment,
    name: &str,
) -> Result<Flag> {
    caller.require(&settings_scope(ScopeAccess::Read))?;
    caller.check_tenant(tenant)?;
    tenancy::check_flag_name("name", name)?;
    let list = flags(db, caller, tenant, env).await?;
    let flag = flag_of(
        name,
        env,
        list.flags.get(name).copied(),
        list.plan.get(name).copied(),
    );
    if flag.source == FlagSource::Default {
        return Err(Error::not_found("flag"));
    }
    Ok(flag)
}

/// Set (`Some`) or unset (`None`) one flag of the environment (`settings:write`) in one
/// transaction, with its `flag.set` or `flag.unset` audit entry; setting a flag to the
/// value it has, or unsetting one that is not set, changes (and records) nothing. At most
/// [`tenancy::MAX_FLAGS`] flags per environment.
pub async fn set_flag(
    db: &Db,
    caller: &Caller,
    tenant: &Tenant,
    env: Environment,
    name: &str,
    value: Option<bool>,
) -> Result<Flag> {
    caller.require(&settings_scope(ScopeAccess::Write))?;
    caller.check_tenant(tenant)?;
    tenancy::check_flag_name("name", name)?;
    let tenant_id = tenant.id.as_str();
    let now = now_ms();
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let (own, plan) = transaction!(&mut conn, |tx| {
        repo::tenants::lock(tx, tenant_id).await?;
        let mut settings = read_view(tx, tenant_id, env).await?.settings;
        let before = settings.flags.get(name).copied();
        if before != value {
            settings.apply(SettingsPatch {
                flags: Some(BTreeMap::from([(name.to_string(), value)])),
                ..Default::default()
            })?;
            write_settings(tx, tenant_id, env, &settings, now).await?;
            let action = match value {
                Some(_) => audit::Action::FlagSet,
                None => audit::Action::FlagUnset,
            };
            audit::record(
                tx,
                caller,
                audit::Entry::new(action)
                    .tenant(&tenant.id)
                    .target(name.to_string())
                    .changes(serde_json::json!({
                        "environment": env.as_str(),
                        "from": before,
                        "to": value,
                    })),
            )
            .await?;
        }
        let plan = crate::plans::for_tenant(tx, tenant_id).await?;
        Ok((value, plan.features.get(name).copied()))
    })?;
    Ok(flag_of(name, env, own, plan))
}

/// `validation_failed` for an environment name other than `production` or `staging`;
/// absent: production.
pub fn parse_env(field: &str, env: Option<&str>) -> Result<Environment> {
    env.map_or(Ok(Environment::Production), |e| {
        Environment::parse(field, e)
    })
}

/// `not_found` for an environment the tenant has not created, saying how to create it.
pub fn not_created(env: Environment) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!(
            "the tenant has no {env} environment (create it with PUT /v1/admin/environments/{env})"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_flags_override_the_plans_features() {
        let plan = BTreeMap::from([("a".to_string(), true), ("b".to_string(), false)]);
        let own = BTreeMap::from([("a".to_string(), false), ("c".to_string(), true)]);
        let eff = effective_flags(&plan, &own);
        assert_eq!(
            eff,
            BTreeMap::from([
                ("a".to_string(), false),
                ("b".to_string(), false),
                ("c".to_string(), true)
            ])
        );
        let f = flag_of("a", Environment::Staging, Some(false), Some(true));
        assert_eq!((f.value, f.source), (false, FlagSource::Tenant));
        let f = flag_of("b", Environment::Staging, None, Some(true));
        assert_eq!((f.value, f.source), (true, FlagSource::Plan));
        let f = flag_of("z", Environment::Staging, None, None);
        assert_eq!((f.value, f.source), (false, FlagSource::Default));
    }
}
