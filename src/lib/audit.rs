//! The audit log: who changed what, when, through which request — append-only.
//!
//! Every operation that changes a tenant's or the platform's configuration records one
//! [`Entry`] with [`record`] in the transaction of the change itself, so an entry exists
//! exactly when the change does. `changes` is a small JSON object of what changed; it
//! never holds a secret, a token, a key or a message text ([`record`] refuses field
//! names that would). The table refuses UPDATE and DELETE (triggers, see the migration
//! `2026-12-01-000006_audit`) except through [`purge_expired`], the log's own retention.
//!
//! Readers: [`list`] (`GET /v1/admin/audit`, `audit:read`: a tenant key sees its own
//! tenant's entries, a platform key all) and [`export`] (`chatorical audit export`:
//! JSON lines or CSV streamed page by page into a temporary file renamed at the end).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{Conn, Db, repo};
use crate::domain::{KeyId, Resource, Scope, ScopeAccess, TenantId, now_ms, rfc3339};
use crate::error::{Error, ErrorCode, Result};
use crate::tenancy::Caller;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An API key (stored as `key:<id>`, with the key's name).
    Key {
        /// The key's id.
        id: KeyId,
        /// The key's name when it acted.
        name: String,
    },
    /// An operator at the command line (`cli:<user>@<host>`).
    Cli {
        /// The login name.
        user: String,
        /// The machine's host name.
        host: String,
    },
    /// A Telegram user, through the tenant's bot (`telegram:<user id>`).
    Telegram {
        /// Telegram's user id.
        user_id: i64,
    },
    /// Stripe, through its webhook.
    Stripe,
    /// The service itself (the worker's jobs: retention, dunning).
    System,
}

impl Actor {
    /// The actor behind a caller: an API key, the operator at this machine's command
    /// line, or the service.
    pub fn of(caller: &Caller) -> Actor {
        match caller {
            Caller::Key(p) => Actor::Key {
                id: p.key_id.clone(),
                name: p.name.clone(),
            },
            Caller::Operator => Actor::operator(),
            Caller::System => Actor::System,
        }
    }

    /// The operator running this process: `$USER` (or `$LOGNAME`, else the uid) at the
    /// machine's host name.
    pub fn operator() -> Actor {
        static OPERATOR: OnceLock<(String, String)> = OnceLock::new();
        let (user, host) = OPERATOR.get_or_init(|| {
            let user = ["USER", "LOGNAME"]
                .iter()
                .filter_map(|v| std::env::var(v).ok())
                .find(|u| !u.is_empty())
                .unwrap_or_else(|| {
                    let uid = rustix::process::getuid().as_raw();
                    login_name(uid).unwrap_or_else(|| format!("uid{uid}"))
                });
            let host = rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned();
            (clean(&user), clean(&host))
        });
        Actor::Cli {
            user: user.clone(),
            host: host.clone(),
        }
    }

    /// The stored form: `key:<id>`, `cli:<user>@<host>`, `telegram:<id>`, `stripe`, `system`.
    pub fn stored(&self) -> String {
        match self {
            Actor::Key { id, .. } => format!("key:{id}"),
            Actor::Cli { user, host } => format!("cli:{user}@{host}"),
            Actor::Telegram { user_id } => format!("telegram:{user_id}"),
            Actor::Stripe => "stripe".into(),
            Actor::System => "system".into(),
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Actor::Key { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// The login name of `uid` in `/etc/passwd`.
fn login_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

/// Keep a user or host name printable and short (they come from the environment).
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(64)
        .collect()
}

/// What was done: stable names (`key.issued`), the `action` of `GET /v1/admin/audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema)]
pub enum Action {
    /// A tenant was created.
    TenantCreated,
    /// An API key was issued.
    KeyIssued,
    /// An API key was revoked (with the keys it issued).
    KeyRevoked,
    /// Tenant settings changed.
    SettingsUpdated,
    /// The identity-verification secret was generated or replaced.
    IdentitySecretRotated,
    /// Telegram was connected (or reconnected).
    TelegramConnected,
    /// Telegram was disconnected.
    TelegramDisconnected,
    /// Telegram delivery was paused or resumed.
    TelegramToggled,
    /// How Telegram updates arrive changed (`webhook` / `polling`).
    TelegramModeChanged,
    /// A relay bot was added to the tenant's group (or re-registered).
    TelegramRelayAdded,
    /// A relay bot was removed; its topics went to the remaining bots.
    TelegramRelayRemoved,
    /// A widget text was set.
    TemplateSet,
    /// A widget text was deleted.
    TemplateDeleted,
    /// A plan was created or changed.
    PlanUpdated,
    /// A plan was deleted.
    PlanDeleted,
    /// A tenant's plan changed.
    PlanChanged,
    /// A conversation's subject changed.
    ConversationUpdated,
    /// A conversation was closed.
    ConversationClosed,
    /// An outbox item was queued by hand.
    OutboxEnqueued,
    /// An outbox item was retried.
    OutboxRetried,
    /// A visitor's data was exported.
    VisitorExported,
    /// A visitor was erased.
    VisitorErased,
    /// Retention deleted old conversations (one summary per run and tenant).
    RetentionPurged,
    /// A Checkout Session was started.
    BillingCheckoutStarted,
    /// A customer-portal session was opened.
    BillingPortalOpened,
    /// Stripe changed the tenant's subscription.
    BillingSubscriptionUpdated,
    /// The master key's secrets were re-encrypted.
    SecretsRotated,
    /// A feature flag was set.
    FlagSet,
    /// A feature flag was removed.
    FlagUnset,
    /// An environment was created or its widget key replaced.
    EnvironmentUpdated,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 30] = [
        Action::TenantCreated,
        Action::KeyIssued,
        Action::KeyRevoked,
        Action::SettingsUpdated,
        Action::IdentitySecretRotated,
        Action::TelegramConnected,
        Action::TelegramDisconnected,
        Action::TelegramToggled,
        Action::TelegramModeChanged,
        Action::TelegramRelayAdded,
        Action::TelegramRelayRemoved,
        Action::TemplateSet,
        Action::TemplateDeleted,
        Action::PlanUpdated,
        Action::PlanDeleted,
        Action::PlanChanged,
        Action::ConversationUpdated,
        Action::ConversationClosed,
        Action::OutboxEnqueued,
        Action::OutboxRetried,
        Action::VisitorExported,
        Action::VisitorErased,
        Action::RetentionPurged,
        Action::BillingCheckoutStarted,
        Action::BillingPortalOpened,
        Action::BillingSubscriptionUpdated,
        Action::SecretsRotated,
        Action::FlagSet,
        Action::FlagUnset,
        Action::EnvironmentUpdated,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::TenantCreated => "tenant.created",
            Action::KeyIssued => "key.issued",
            Action::KeyRevoked => "key.revoked",
            Action::SettingsUpdated => "settings.updated",
            Action::IdentitySecretRotated => "identity.secret_rotated",
            Action::TelegramConnected => "telegram.connected",
            Action::TelegramDisconnected => "telegram.disconnected",
            Action::TelegramToggled => "telegram.toggled",
            Action::TelegramModeChanged => "telegram.mode_changed",
            Action::TelegramRelayAdded => "telegram.relay_added",
            Action::TelegramRelayRemoved => "telegram.relay_removed",
            Action::TemplateSet => "template.set",
            Action::TemplateDeleted => "template.deleted",
            Action::PlanUpdated => "plan.updated",
            Action::PlanDeleted => "plan.deleted",
            Action::PlanChanged => "plan.changed",
            Action::ConversationUpdated => "conversation.updated",
            Action::ConversationClosed => "conversation.closed",
            Action::OutboxEnqueued => "outbox.enqueued",
            Action::OutboxRetried => "outbox.retried",
            Action::VisitorExported => "visitor.exported",
            Action::VisitorErased => "visitor.erased",
            Action::RetentionPurged => "retention.purged",
            Action::BillingCheckoutStarted => "billing.checkout_started",
            Action::BillingPortalOpened => "billing.portal_opened",
            Action::BillingSubscriptionUpdated => "billing.subscription_updated",
            Action::SecretsRotated => "secrets.rotated",
            Action::FlagSet => "flag.set",
            Action::FlagUnset => "flag.unset",
            Action::EnvironmentUpdated => "environment.updated",
        }
    }

    /// Parse a stable name; `validation_failed` naming `field` otherwise.
    pub fn parse(field: &str, s: &str) -> Result<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                Error::validation(field, format!("unknown audit action `{}`", truncate(s)))
            })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change to record.
#[derive(Debug, Clone)]
pub struct Entry {
    tenant: Option<TenantId>,
    action: Action,
    target: Option<String>,
    changes: serde_json::Value,
}

impl Entry {
    /// An entry for `action` on the platform (no tenant), with no target and no changes.
    pub fn new(action: Action) -> Self {
        Entry {
            tenant: None,
            action,
            target: None,
            changes: serde_json::Value::Object(Default::default()),
        }
    }

    /// The tenant the change belongs to.
    pub fn tenant(mut self, tenant: &TenantId) -> Self {
        self.tenant = Some(tenant.clone());
        self
    }

    /// The tenant the change belongs to, if any.
    pub fn tenant_opt(mut self, tenant: Option<&TenantId>) -> Self {
        self.tenant = tenant.cloned();
        self
    }

    /// The id of what changed.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// What changed: a JSON object (names and values that are not secrets or message texts).
    pub fn changes(mut self, changes: serde_json::Value) -> Self {
        self.changes = changes;
        self
    }
}

/// Field names an entry's `changes` must never carry: they would hold a secret or a
/// message text.
const FORBIDDEN_FIELDS: [&str; 12] = [
    "token",
    "bot_token",
    "secret",
    "webhook_secret",
    "identity_secret",
    "password",
    "key_hash",
    "api_key",
    "text",
    "body",
    "message",
    "user_hash",
];

fn check_changes(v: &serde_json::Value) -> Result<()> {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if FORBIDDEN_FIELDS.contains(&k.as_str()) {
                    return Err(Error::internal(format!(
                        "audit entry refused: field `{k}` may hold a secret or a message text"
                    )));
                }
                check_changes(v)?;
            }
            Ok(())
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(check_changes),
        _ => Ok(()),
    }
}

/// Record `entry` as done by `caller` (its actor and, for an API key, its request id),
/// on `conn` — the transaction of the change.
pub async fn record(conn: &mut Conn<'_>, caller: &Caller, entry: Entry) -> Result<()> {
    let request_id = match caller {
        Caller::Key(p) => p.request_id.clone(),
        _ => None,
    };
    record_as(conn, &Actor::of(caller), request_id.as_deref(), entry).await
}

/// Record `entry` as done by `actor` (Telegram users, Stripe, the service).
pub async fn record_as(
    conn: &mut Conn<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    entry: Entry,
) -> Result<()> {
    if !entry.changes.is_object() {
        return Err(Error::internal("audit changes must be a JSON object"));
    }
    check_changes(&entry.changes)?;
    let changes = entry.changes.to_string();
    let actor_stored = actor.stored();
    repo::audit::insert(
        conn,
        &repo::audit::NewAuditRow {
            at: now_ms(),
            tenant_id: entry.tenant.as_deref(),
            actor: &actor_stored,
            actor_name: actor.name(),
            action: entry.action.as_str(),
            target: entry.target.as_deref(),
            request_id,
            changes: &changes,
        },
    )
    .await?;
    metrics::counter!("chatorical_audit_entries_total", "action" => entry.action.as_str())
        .increment(1);
    Ok(())
}

/// One audit entry as shown by the API and exports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct AuditEntry {
    /// Sequence number (entries are listed in this order).
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// The tenant's id; `null`: the platform.
    pub tenant_id: Option<String>,
    /// `key:<id>`, `cli:<user>@<host>`, `telegram:<user id>`, `stripe` or `system`.
    pub actor: String,
    /// The API key's name, when the actor is a key.
    pub actor_name: Option<String>,
    /// Stable action name (`key.issued`, `settings.updated`…).
    pub action: String,
    /// The id of what changed.
    pub target: Option<String>,
    /// The request's `X-Request-Id`, for changes made over HTTP.
    pub request_id: Option<String>,
    /// What changed.
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
}

impl AuditEntry {
    fn from_row(row: repo::audit::AuditRow) -> Self {
        AuditEntry {
            id: row.id,
            at: rfc3339(row.at),
            tenant_id: row.tenant_id,
            actor: row.actor,
            actor_name: row.actor_name,
            action: row.action,
            target: row.target,
            request_id: row.request_id,
            changes: serde_json::from_str(&row.changes)
                .unwrap_or(serde_json::Value::Object(Default::default())),
        }
    }
}

/// Which entries to read (`GET /v1/admin/audit`'s query).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// At or after (RFC 3339 or `YYYY-MM-DD`).
    pub since: Option<String>,
    /// Before (RFC 3339 or `YYYY-MM-DD`).
    pub until: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor (`key:<id>`, `cli:<user>@<host>`, `stripe`…).
    pub actor: Option<String>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size (1–500, default 100).
    pub limit: Option<u32>,
}

/// One page of entries.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    /// Entries in id order.
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// Parse an instant given as `YYYY-MM-DD` (midnight UTC) or RFC 3339, as epoch ms.
pub fn parse_instant(field: &str, s: &str) -> Result<i64> {
    let s = s.trim();
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&full)
        .or_else(|_| humantime::parse_rfc3339(&full))
        .map_err(|_| {
            Error::validation(
                field,
                format!(
                    "`{}` is not a date (YYYY-MM-DD) or an RFC 3339 time",
                    truncate(s)
                ),
            )
        })?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .map_err(|_| Error::validation(field, "must be after 1970"))
}

/// Validated filter, shared by [`list`] and [`export`].
struct Filter {
    tenant_id: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    action: Option<Action>,
    actor: Option<String>,
}

impl Filter {
    fn repo(&self) -> repo::audit::Filter<'_> {
        repo::audit::Filter {
            tenant_id: self.tenant_id.as_deref(),
            since: self.since,
            until: self.until,
            action: self.action.map(Action::as_str),
            actor: self.actor.as_deref(),
        }
    }
}

fn parse_cursor(cursor: Option<&str>) -> Result<i64> {
    match cursor {
        None => Ok(0),
        Some(c) => c
            .strip_prefix("au_")
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::validation("cursor", "not a cursor from a previous page")),
    }
}

/// A page of the audit log (`audit:read`): a tenant key reads its tenant's entries; a
/// platform key or an operator reads every entry, or one tenant's (`tenant` slug).
pub async fn list(
    db: &Db,
    caller: &Caller,
    tenant: Option<&str>,
    query: AuditQuery,
) -> Result<AuditPage> {
    caller.require(&Scope::new(Resource::Audit, ScopeAccess::Read))?;
    let tenant = caller.resolve_tenant(db, tenant).await?;
    let limit = i64::from(query.limit.unwrap_or(100));
    if !(1..=500).contains(&limit) {
        return Err(Error::validation("limit", "limit must be 1-500"));
    }
    let filter = Filter {
        tenant_id: tenant.map(|t| t.id.to_string()),
        since: query
            .since
            .as_deref()
            .map(|s| parse_instant("since", s))
            .transpose()?,
        until: query
            .until
            .as_deref()
            .map(|s| parse_instant("until", s))
            .transpose()?,
        action: query
            .action
            .as_deref()
            .map(|s| Action::parse("action", s))
            .transpose()?,
        actor: query.actor,
    };
    let after = parse_cursor(query.cursor.as_deref())?;
    let mut pc = db.conn().await?;
    let rows = repo::audit::page(&mut pc.as_conn(), &filter.repo(), after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let entries: Vec<AuditEntry> = rows
        .into_iter()
        .take(limit as usize)
        .map(AuditEntry::from_row)
        .collect();
    let next_cursor = more
        .then(|| entries.last().map(|e| format!("au_{}", e.id)))
        .flatten();
    Ok(AuditPage {
        entries,
        next_cursor,
    })
}

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row; `changes` as JSON text.
    Csv,
}

/// Whose entries an export holds.
#[derive(Debug, Clone)]
pub enum ExportScope {
    /// One tenant's (slug).
    Tenant(String),
    /// Every entry: the platform's and all tenants'.
    Platform,
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Whose entries.
    pub scope: ExportScope,
    /// At or after (RFC 3339 or `YYYY-MM-DD`).
    pub since: String,
    /// Before (RFC 3339 or `YYYY-MM-DD`).
    pub until: Option<String>,
    /// File format.
    pub format: ExportFormat,
    /// The file to write (replaced at the end, never left half-written).
    pub out: PathBuf,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// Entries written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The file.
    pub path: String,
}

/// Rows read per query while exporting.
const EXPORT_PAGE: i64 = 2_000;

/// Export audit entries to a file, page by page (memory stays flat however many rows),
/// into an unnamed file in `out`'s directory that is synced and renamed over `out` only
/// when complete: on any failure, or a kill, `out` is untouched and nothing is left. `progress` is
/// called with (rows written, rows expected) after each page.
pub async fn export(
    db: &Db,
    caller: &Caller,
    req: ExportRequest,
    mut progress: impl FnMut(u64, u64),
) -> Result<ExportReport> {
    caller.require(&Scope::new(Resource::Audit, ScopeAccess::Read))?;
    let tenant = match &req.scope {
        ExportScope::Tenant(slug) => caller.resolve_tenant(db, Some(slug)).await?,
        ExportScope::Platform => {
            crate::tenancy::platform_only(caller)?;
            None
        }
    };
    let filter = Filter {
        tenant_id: tenant.map(|t| t.id.to_string()),
        since: Some(parse_instant("since", &req.since)?),
        until: req
            .until
            .as_deref()
            .map(|s| parse_instant("until", s))
            .transpose()?,
        action: None,
        actor: None,
    };
    let file = ExportFile::create(&req.out)?;
    let (rows, bytes) =
        write_export(db, &filter, req.format, &file, &req.out, &mut progress).await?;
    file.publish(&req.out)?;
    Ok(ExportReport {
        rows,
        bytes,
        path: req.out.display().to_string(),
    })
}

/// The file an export writes: on Linux an unnamed file in the target's directory
/// (`O_TMPFILE`), so a process killed mid-export leaves nothing behind; it gets a name
/// only when complete (linked under a temporary name and renamed over the target at
/// once). Where the file system has no unnamed files, a hidden `.<name>.tmp-<pid>`
/// that is removed on failure.
struct ExportFile {
    file: std::fs::File,
    /// The temporary name of a named fallback file.
    named: Option<PathBuf>,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::ValidationFailed,
        format!("cannot write {}: {e}", path.display()),
    )
}

impl ExportFile {
    fn create(out: &Path) -> Result<Self> {
        let name = out
            .file_name()
            .ok_or_else(|| Error::validation("out", "must name a file"))?;
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let unnamed = rustix::fs::open(
            &dir,
            rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o600),
        );
        match unnamed {
            Ok(fd) => Ok(ExportFile {
                file: std::fs::File::from(fd),
                named: None,
            }),
            Err(e) if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::NOTDIR => {
                Err(io_error(out, "no such directory"))
            }
            Err(_) => {
                let mut tmp_name = std::ffi::OsString::from(".");
                tmp_name.push(name);
                tmp_name.push(format!(".tmp-{}", std::process::id()));
                let tmp = out.with_file_name(tmp_name);
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .map_err(|e| io_error(&tmp, e))?;
                Ok(ExportFile {
                    file,
                    named: Some(tmp),
                })
            }
        }
    }

    /// Give the complete file the name `out` (replacing what was there).
    fn publish(self, out: &Path) -> Result<()> {
        self.file.sync_all().map_err(|e| io_error(out, e))?;
        let tmp = match &self.named {
            Some(tmp) => tmp.clone(),
            None => {
                let mut tmp_name = std::ffi::OsString::from(".");
                tmp_name.push(out.file_name().unwrap_or_default());
                tmp_name.push(format!(".link-{}", std::process::id()));
                let tmp = out.with_file_name(tmp_name);
                let _ = std::fs::remove_file(&tmp);
                let fd_path = format!(
                    "/proc/self/fd/{}",
                    std::os::fd::AsRawFd::as_raw_fd(&self.file)
                );
                rustix::fs::linkat(
                    rustix::fs::CWD,
                    fd_path.as_str(),
                    rustix::fs::CWD,
                    &tmp,
                    rustix::fs::AtFlags::SYMLINK_FOLLOW,
                )
                .map_err(|e| io_error(out, e))?;
                tmp
            }
        };
        std::fs::rename(&tmp, out).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_error(out, e)
        })
    }
}

impl Drop for ExportFile {
    fn drop(&mut self) {
        // A named fallback file not renamed into place is half-written: remove it.
        if let Some(tmp) = &self.named
            && tmp.exists()
        {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

async fn write_export(
    db: &Db,
    filter: &Filter,
    format: ExportFormat,
    out: &ExportFile,
    path: &Path,
    progress: &mut impl FnMut(u64, u64),
) -> Result<(u64, u64)> {
    let io_err = |e: std::io::Error| io_error(path, e);
    let counted = CountingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 16, &out.file),
        bytes: 0,
    };
    let mut csv_out = None;
    let mut json_out = None;
    match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(counted);
            w.write_record([
                "id",
                "at",
                "tenant_id",
                "actor",
                "actor_name",
                "action",
                "target",
                "request_id",
                "changes",
            ])
            .map_err(|e| Error::internal(format!("csv: {e}")))?;
            csv_out = Some(w);
        }
        ExportFormat::Jsonl => json_out = Some(counted),
    }
    let expected = {
        let mut pc = db.conn().await?;
        repo::audit::count(&mut pc.as_conn(), &filter.repo()).await?
    };
    let expected = u64::try_from(expected).unwrap_or(0);
    let mut after = 0i64;
    let mut rows = 0u64;
    loop {
        // One connection per page, given back before writing: an export never pins a
        // pooled connection (or a snapshot) for its whole run.
        let page = {
            let mut pc = db.conn().await?;
            repo::audit::page(&mut pc.as_conn(), &filter.repo(), after, EXPORT_PAGE).await?
        };
        let Some(last) = page.last() else { break };
        after = last.id;
        let n = page.len();
        for row in page {
            if let Some(w) = csv_out.as_mut() {
                let at = rfc3339(row.at);
                w.write_record([
                    row.id.to_string().as_str(),
                    at.as_str(),
                    row.tenant_id.as_deref().unwrap_or(""),
                    row.actor.as_str(),
                    row.actor_name.as_deref().unwrap_or(""),
                    row.action.as_str(),
                    row.target.as_deref().unwrap_or(""),
                    row.request_id.as_deref().unwrap_or(""),
                    row.changes.as_str(),
                ])
                .map_err(|e| io_err(std::io::Error::other(e.to_string())))?;
            } else if let Some(w) = json_out.as_mut() {
                serde_json::to_writer(&mut *w, &AuditEntry::from_row(row))
                    .map_err(|e| io_err(std::io::Error::other(e.to_string())))?;
                w.write_all(b"\n").map_err(io_err)?;
            }
        }
        rows += n as u64;
        progress(rows, expected.max(rows));
        if (n as i64) < EXPORT_PAGE {
            break;
        }
    }
    let counted = match (csv_out, json_out) {
        (Some(w), _) => w
            .into_inner()
            .map_err(|e| io_err(std::io::Error::other(e.to_string())))?,
        (None, Some(w)) => w,
        (None, None) => return Err(Error::internal("no writer")),
    };
    let bytes = counted.bytes;
    counted
        .inner
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?;
    Ok((rows, bytes))
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Entries deleted per transaction by [`purge_expired`].
const PURGE_BATCH: i64 = 1_000;

/// The audit log's own retention: delete entries older than `retention_days`, in
/// batches of bounded size, each its own transaction (the only DELETE the table's
/// triggers let through). Returns how many were deleted.
pub async fn purge_expired(db: &Db, retention_days: u32) -> Result<u64> {
    let cutoff = now_ms() - i64::from(retention_days) * 86_400_000;
    let mut total = 0u64;
    loop {
        let mut pc = db.conn().await?;
        let mut conn = pc.as_conn();
        let n = crate::transaction!(&mut conn, |tx| {
            repo::audit::purge_before(tx, cutoff, PURGE_BATCH).await
        })?;
        total += n as u64;
        if (n as i64) < PURGE_BATCH {
            break;
        }
    }
    if total > 0 {
        metrics::counter!("chatorical_audit_purged_total").increment(total);
        tracing::info!(deleted = total, retention_days, "audit log retention");
    }
    Ok(total)
}
