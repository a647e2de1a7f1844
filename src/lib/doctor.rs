//! `chatorical doctor`: what an operator checks first, in order — the configuration,
//! the database and its migrations, Redis, the master key and the secrets it must open,
//! the public URL, and each tenant's Telegram webhook. Every check says ✔ or ✘ (or
//! that it was skipped, and why) with a hint for a failure; nothing is changed (no
//! database file, key or webhook is created).

use std::{path::Path, time::Duration};

use serde::Serialize;

use crate::cluster::Cluster;
use crate::config::{DatabaseUrl, Settings};
use crate::crypto::MasterKey;
use crate::db::{Db, repo};
use crate::telegram::{Bots, setup};

/// How long a network check (database, Redis, public URL, Telegram) may take.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(5);

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Passed.
    Ok,
    /// Failed: the report's exit code is 1.
    Failed,
    /// Not applicable here (e.g. no Redis configured), or not possible after an
    /// earlier failure.
    Skipped,
}

impl Outcome {
    /// The mark shown in the table.
    pub fn mark(self) -> &'static str {
        match self {
            Outcome::Ok => "✔",
            Outcome::Failed => "✘",
            Outcome::Skipped => "–",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable name: `config`, `database`, `migrations`, `redis`, `master_key`,
    /// `secrets`, `public_url`, `telegram_webhook:<tenant slug>`.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// What was found (never a secret).
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    fn failed(name: impl Into<String>, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::Failed,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    fn skipped(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::Skipped,
            detail: detail.into(),
            hint: None,
        }
    }
}

/// Every check, in the order they ran.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether no check failed.
    pub healthy: bool,
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Self {
        Report {
            healthy: checks.iter().all(|c| c.outcome != Outcome::Failed),
            checks,
        }
    }

    /// The report of a configuration that could not be loaded: that check fails, the
    /// others cannot run.
    pub fn invalid_config(error: &str) -> Self {
        let mut checks = vec![Check::failed(
            "config",
            error,
            "fix the setting named above (`chatorical config check` shows the effective configuration)",
        )];
        checks.extend(
            [
                "database",
                "migrations",
                "redis",
                "master_key",
                "secrets",
                "public_url",
            ]
            .into_iter()
            .map(|name| Check::skipped(name, "needs a valid configuration")),
        );
        Report::new(checks)
    }

    /// The check named `name`, if it ran.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Run every check against the loaded `settings` (`source`: the configuration file,
/// if any, for the `config` line).
pub async fn run(settings: &Settings, source: Option<&Path>) -> Report {
    let mut checks = Vec::new();
    match settings.validate() {
        Ok(()) => checks.push(Check::ok(
            "config",
            match source {
                Some(f) => format!("valid ({})", f.display()),
                None => "valid (defaults and environment; no file)".into(),
            },
        )),
        Err(e) => {
            return Report::invalid_config(&e.to_string());
        }
    }

    let db = database(settings, &mut checks).await;
    // Secrets and webhooks read tables a pending migration may not have created yet.
    let migrated = checks
        .iter()
        .any(|c| c.name == "migrations" && c.outcome == Outcome::Ok);
    let db = db.filter(|_| migrated);
    checks.push(redis(settings).await);
    let key = master_key(settings, db.as_ref(), &mut checks).await;
    checks.push(public_url(settings).await);
    match (&db, key) {
        (Some(db), Some(key)) => telegram_webhooks(settings, db, key, &mut checks).await,
        _ => checks.push(Check::skipped(
            "telegram_webhook",
            "needs the database (migrated) and the master key",
        )),
    }
    Report::new(checks)
}

/// `database` and `migrations`; the pool when the database answers.
async fn database(settings: &Settings, checks: &mut Vec<Check>) -> Option<Db> {
    let url = match settings.database_url() {
        Ok(url) => url,
        Err(e) => {
            checks.push(Check::failed(
                "database",
                e.to_string(),
                "set database.url to sqlite://PATH or postgres://…",
            ));
            checks.push(Check::skipped("migrations", "needs the database"));
            return None;
        }
    };
    let (label, hint) = match &url {
        DatabaseUrl::Sqlite(path) => {
            if !path.exists() {
                checks.push(Check::failed(
                    "database",
                    format!("no database file at {}", path.display()),
                    "`chatorical migrate` (or the first `chatorical serve`) creates it; check \
                     server.data_dir / database.url",
                ));
                checks.push(Check::skipped("migrations", "needs the database"));
                return None;
            }
            (
                format!("SQLite {}", path.display()),
                "check the file's owner and permissions (the service user must read and write \
                 it and its directory)",
            )
        }
        DatabaseUrl::Postgres(_) => (
            "PostgreSQL".to_string(),
            "check database.url (host, port, user, database) and that PostgreSQL accepts \
             connections from this host",
        ),
    };
    let opened = async {
        let db = Db::connect(&url, 1, settings.database.busy_timeout_ms).await?;
        db.ping().await?;
        Ok::<_, crate::error::Error>(db)
    };
    let db = match tokio::time::timeout(NETWORK_TIMEOUT, opened).await {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => {
            checks.push(Check::failed(
                "database",
                format!("{label}: {}", redact_url_errors(&e.to_string())),
                hint,
            ));
            checks.push(Check::skipped("migrations", "needs the database"));
            return None;
        }
        Err(_) => {
            checks.push(Check::failed(
                "database",
                format!("{label}: no answer within {}s", NETWORK_TIMEOUT.as_secs()),
                hint,
            ));
            checks.push(Check::skipped("migrations", "needs the database"));
            return None;
        }
    };
    checks.push(Check::ok("database", format!("{label} answers")));
    checks.push(match db.pending_migrations().await {
        Ok(pending) if pending.is_empty() => Check::ok("migrations", "up to date"),
        Ok(pending) => Check::failed(
            "migrations",
            format!(
                "{} pending: {}",
                pending.len(),
                pending.first().map(String::as_str).unwrap_or_default()
            ),
            "run `chatorical migrate` (or set database.auto_migrate = true)",
        ),
        Err(e) => Check::failed(
            "migrations",
            e.to_string(),
            "the migrations table cannot be read: check the database user's rights",
        ),
    });
    Some(db)
}

/// Database errors can quote the URL (with its password): keep only their kind.
fn redact_url_errors(text: &str) -> String {
    if text.contains("://") {
        "cannot connect (the error quoted the URL and is not shown)".into()
    } else {
        text.to_string()
    }
}

/// `redis`: PING when `redis.url` is set.
async fn redis(settings: &Settings) -> Check {
    if settings.redis.url.is_none() {
        return Check::skipped("redis", "not configured (everything stays in this process)");
    }
    match Cluster::connect(&settings.redis) {
        Ok(Some(cluster)) => {
            if cluster.ping().await {
                Check::ok("redis", "answers PING")
            } else {
                let fail_open = if settings.redis.limits_fail_open {
                    "rate limits let calls through while it is down (limits_fail_open)"
                } else {
                    "rate-limited calls are refused while it is down"
                };
                Check::failed(
                    "redis",
                    format!("no answer to PING; {fail_open}"),
                    "check redis.url and that Redis is running and reachable from this host",
                )
            }
        }
        Ok(None) => Check::skipped("redis", "not configured"),
        Err(e) => Check::failed("redis", e.to_string(), "fix redis.url"),
    }
}

/// `master_key` (present, a regular file, mode 0600 or stricter) and `secrets` (every
/// sealed value in the database opens with it). Returns the key when it could be read.
async fn master_key(
    settings: &Settings,
    db: Option<&Db>,
    checks: &mut Vec<Check>,
) -> Option<MasterKey> {
    let path = settings.master_key_path();
    let shown = path.display().to_string();
    let stored = match db {
        Some(db) => crate::secrets::count(db).await.ok(),
        None => None,
    };
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(_) if stored.is_none() => {
            checks.push(Check::skipped(
                "master_key",
                format!("{shown} does not exist; whether secrets need it takes the database"),
            ));
            checks.push(Check::skipped("secrets", "needs the database, migrated"));
            return None;
        }
        Err(_) => {
            if stored == Some(0) {
                checks.push(Check::ok(
                    "master_key",
                    format!(
                        "{shown} does not exist yet; nothing is sealed, `serve` creates it on \
                         first start (back it up then)"
                    ),
                ));
                checks.push(Check::ok("secrets", "none stored"));
            } else {
                checks.push(Check::failed(
                    "master_key",
                    format!("{shown} is missing"),
                    "restore the key file from your backup (secrets.master_key_file); without \
                     it stored bot tokens and secrets cannot be read",
                ));
                checks.push(Check::skipped("secrets", "needs the master key"));
            }
            return None;
        }
    };
    let mut key_ok = true;
    if !meta.is_file() {
        checks.push(Check::failed(
            "master_key",
            format!("{shown} is not a regular file"),
            "point secrets.master_key_file at the key file",
        ));
        checks.push(Check::skipped("secrets", "needs the master key"));
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            key_ok = false;
            checks.push(Check::failed(
                "master_key",
                format!("{shown} has mode {mode:o}: group or others can read it"),
                format!("chmod 600 {shown} (and chown it to the service user)"),
            ));
        }
    }
    let key = match MasterKey::load(&path) {
        Ok(key) => key,
        Err(e) => {
            if key_ok {
                checks.push(Check::failed(
                    "master_key",
                    e.to_string(),
                    "the file must hold AGE-SECRET-KEY-1… lines, newest first",
                ));
            }
            checks.push(Check::skipped("secrets", "needs the master key"));
            return None;
        }
    };
    if key_ok {
        checks.push(Check::ok(
            "master_key",
            format!("{shown} (mode 600, {} identity(ies))", key.len()),
        ));
    }
    match db {
        None => checks.push(Check::skipped("secrets", "needs the database, migrated")),
        Some(db) => checks.push(match crate::secrets::status(db, &key, 500).await {
            Ok(status) if status.unreadable.total == 0 => Check::ok(
                "secrets",
                format!("all {} stored secret(s) open", status.total),
            ),
            Ok(status) => Check::failed(
                "secrets",
                format!(
                    "{} of {} stored secret(s) do not open with this key",
                    status.unreadable.total, status.total
                ),
                "the key file lacks the identity they were sealed under: put the older \
                 identity back below the newest one (see `chatorical secrets status`)",
            ),
            Err(e) => Check::failed("secrets", e.to_string(), "check the database"),
        }),
    }
    Some(key)
}

/// `public_url`: `GET {server.public_url}/healthz` from here.
async fn public_url(settings: &Settings) -> Check {
    let Some(configured) = &settings.server.public_url else {
        return Check::skipped(
            "public_url",
            "server.public_url is not set (links and webhooks use http://server.listen)",
        );
    };
    let base = configured.trim_end_matches('/');
    let url = format!("{base}/healthz");
    let client = match reqwest::Client::builder().timeout(NETWORK_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => return Check::failed("public_url", e.to_string(), "HTTP client"),
    };
    let hint = "server.public_url must reach this service (through the reverse proxy, if any): \
                check DNS, TLS and the proxy's route to server.listen";
    match client.get(&url).send().await {
        Ok(resp) if resp.status().is_success() => {
            Check::ok("public_url", format!("{url} answered {}", resp.status()))
        }
        Ok(resp) => Check::failed(
            "public_url",
            format!("{url} answered {}", resp.status()),
            hint,
        ),
        Err(e) => {
            let why = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            Check::failed("public_url", format!("{url}: {why}"), hint)
        }
    }
}

/// `telegram_webhook:<slug>`: for each tenant connected in webhook mode, where
/// Telegram delivers its updates (getWebhookInfo) against where it should.
async fn telegram_webhooks(settings: &Settings, db: &Db, key: MasterKey, checks: &mut Vec<Check>) {
    let connected = match db.conn().await {
        Ok(mut pc) => repo::telegram::all_with_slugs(&mut pc.as_conn()).await,
        Err(e) => Err(e),
    };
    let connected = match connected {
        Ok(list) => list,
        Err(e) => {
            checks.push(Check::failed(
                "telegram_webhook",
                e.to_string(),
                "check the database",
            ));
            return;
        }
    };
    let webhooks: Vec<_> = connected
        .into_iter()
        .filter(|(_, cfg)| cfg.mode == "webhook")
        .collect();
    if webhooks.is_empty() {
        checks.push(Check::skipped(
            "telegram_webhook",
            "no tenant has Telegram connected in webhook mode",
        ));
        return;
    }
    let bots = match Bots::new(&settings.telegram, std::sync::Arc::new(key)) {
        Ok(b) => b,
        Err(e) => {
            checks.push(Check::failed(
                "telegram_webhook",
                e.to_string(),
                "fix telegram.api_url",
            ));
            return;
        }
    };
    let public = settings.configured_public_url();
    for (slug, cfg) in webhooks {
        let name = format!("telegram_webhook:{slug}");
        let expected = setup::webhook_url(&public, &slug);
        if !cfg.enabled {
            checks.push(Check::skipped(
                name,
                "Telegram is paused for this tenant (`chatorical telegram enable`)",
            ));
            continue;
        }
        let bot = match bots.for_tenant(&cfg) {
            Ok(b) => b,
            Err(_) => {
                checks.push(Check::failed(
                    name,
                    "the bot token does not open with the master key",
                    "see the `secrets` line",
                ));
                continue;
            }
        };
        use teloxide::prelude::Requester as _;
        let info = tokio::time::timeout(NETWORK_TIMEOUT, bot.get_webhook_info()).await;
        checks.push(match info {
            Err(_) => Check::failed(
                name,
                format!("getWebhookInfo: no answer within {}s", NETWORK_TIMEOUT.as_secs()),
                "check that this host reaches telegram.api_url",
            ),
            Ok(Err(e)) => Check::failed(
                name,
                format!("getWebhookInfo: {}", setup::short(&e)),
                "check the bot token (`chatorical telegram status`) and that this host \
                 reaches telegram.api_url",
            ),
            Ok(Ok(info)) => {
                let registered = info.url.as_ref().map(|u| u.as_str().to_string());
                match registered {
                    Some(url) if url == expected => {
                        match info.last_error_message.filter(|m| !m.is_empty()) {
                            Some(last) => Check::failed(
                                name,
                                format!(
                                    "registered at {url}, but Telegram's last delivery failed: {last}"
                                ),
                                "Telegram cannot reach server.public_url: check the `public_url` \
                                 line, TLS and the reverse proxy",
                            ),
                            None => Check::ok(
                                name,
                                format!(
                                    "registered at {url}, {} update(s) waiting",
                                    info.pending_update_count
                                ),
                            ),
                        }
                    }
                    Some(url) => Check::failed(
                        name,
                        format!("registered at {url}, expected {expected}"),
                        format!(
                            "re-register it: `chatorical telegram setup --tenant {slug} …` \
                             (or check server.public_url)"
                        ),
                    ),
                    None => Check::failed(
                        name,
                        format!("no webhook registered, expected {expected}"),
                        format!(
                            "re-register it: `chatorical telegram setup --tenant {slug} …`, or \
                             switch to polling with `chatorical telegram mode --tenant {slug} polling`"
                        ),
                    ),
                }
            }
        });
    }
}
