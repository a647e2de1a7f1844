//! Usage counters: per tenant and UTC day, how many conversations started, messages
//! came in and went out, and Telegram topics were created.
//!
//! # Where counts live
//! - **With Redis** (`redis.url`): [`Usage::record`] adds to one Redis hash per day,
//!   `<prefix>:usage:<YYYY-MM-DD>`, field `<tenant_id>|<metric>` (`HINCRBY`; the key
//!   expires [`REDIS_TTL`] after its last write). The hash holds the day's running
//!   total and survives restarts of the processes that counted. The summarizer
//!   ([`summarize`], every [`SUMMARIZE_EVERY`] in `serve` and `worker`, or `chatorical
//!   usage summarize`) copies every day's totals into `usage_daily` as *absolute*
//!   values. Writing a total rather than adding a delta makes repeated runs and
//!   concurrent summarizers on many nodes harmless; a row only ever moves up (an older
//!   total read by a slower summarizer never lowers a newer one). Once a day is over
//!   (from the day after tomorrow) its hash is folded one last time and deleted. The
//!   price: counts Redis loses (a flush, a restart without persistence) are lost, and
//!   the table is as fresh as the last summary.
//! - **Without Redis** (the embedded default): counts are summed in memory per (tenant,
//!   day, metric) and added to `usage_daily` in one transaction every [`FLUSH_EVERY`]
//!   (by a task started with the first count), on [`Usage::flush`], and on shutdown
//!   (`serve` and `worker` summarize, which flushes, after their last request) — one
//!   write per interval instead of an upsert of the same hot row per message. A count
//!   survives a restart (a clean stop flushes it); a crash loses at most the last
//!   interval's counts. There is nothing to summarize.
//!
//! Recording never fails or slows the caller: it only touches memory (or a task of its
//! own with Redis). A write that fails is logged (at most one warning every 10 seconds)
//! and counted in [`Usage::failed_count`]; without Redis its counts are kept and
//! written with the next flush.
//!
//! Staging (a tenant's second environment) is counted apart: its metrics are stored
//! as `staging.<metric>` (`staging.messages_inbound`), shown beside production's and
//! never read by the plan's quotas (which start from production's names).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::cluster::Cluster;
use crate::db::{Db, models::UsageRow, repo};
use crate::domain::TenantId;
use crate::domain::{Environment, now_ms, rfc3339};
use crate::error::{Error, Result};
use crate::quota::Quota;
use crate::transaction;

/// How long a day's Redis hash lives after its last write.
pub const REDIS_TTL: Duration = Duration::from_secs(8 * 24 * 3600);
/// How often `serve` and `worker` fold Redis counters into `usage_daily`.
pub const SUMMARIZE_EVERY: Duration = Duration::from_secs(60);
/// Without Redis: how often counts summed in memory are added to `usage_daily`.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Most days `show` reports at once.
pub const MAX_DAYS: u32 = 366;

const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
const WARN_EVERY: Duration = Duration::from_secs(10);
const DAY_MS: i64 = 24 * 3600 * 1000;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// A visitor's conversation was created.
    ConversationsStarted,
    /// A visitor message was stored.
    MessagesInbound,
    /// An agent message was stored (admin API or Telegram).
    MessagesOutbound,
    /// A Telegram forum topic was created for a conversation.
    TopicsCreated,
    /// A conversation's Telegram topic was renamed (a subject or the visitor's name).
    TopicRenames,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 5] = [
        Metric::ConversationsStarted,
        Metric::MessagesInbound,
        Metric::MessagesOutbound,
        Metric::TopicsCreated,
        Metric::TopicRenames,
    ];

    /// The metric's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ConversationsStarted => "conversations_started",
            Metric::MessagesInbound => "messages_inbound",
            Metric::MessagesOutbound => "messages_outbound",
            Metric::TopicsCreated => "topics_created",
            Metric::TopicRenames => "topic_renames",
        }
    }

    /// The metric with this stored name.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// The stored name of `metric` counted in `env`: production's is the metric's own
/// name, another environment's is prefixed with it (`staging.messages_inbound`).
pub fn stored_name(env: Environment, metric: Metric) -> std::borrow::Cow<'static, str> {
    match env {
        Environment::Production => metric.as_str().into(),
        other => format!("{}.{}", other.as_str(), metric.as_str()).into(),
    }
}

/// The environment and metric of a stored name (see [`stored_name`]).
pub fn parse_stored(name: &str) -> Option<(Environment, Metric)> {
    match name.split_once('.') {
        None => Metric::parse(name).map(|m| (Environment::Production, m)),
        Some(("staging", metric)) => Metric::parse(metric).map(|m| (Environment::Staging, m)),
        Some(_) => None,
    }
}

/// The UTC day (`YYYY-MM-DD`) of an epoch-millisecond time.
pub fn day_of(ms: i64) -> String {
    rfc3339(ms).get(..10).unwrap_or("1970-01-01").to_string()
}

/// Records usage (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Usage {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    cluster: Option<Cluster>,
    in_flight: AtomicUsize,
    idle: Notify,
    failed: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
    /// Without Redis: counts not yet in the database, and the task that flushes them.
    pending: Mutex<Pending>,
    /// Held while pending counts are written, so a flush returns only after every
    /// count taken by an earlier (concurrent) flush is stored too.
    writing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Pending {
    counts: HashMap<(String, String, Environment, Metric), i64>,
    flusher: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage")
            .field("cluster", &self.inner.cluster)
            .finish_non_exhaustive()
    }
}

impl Usage {
    /// Counters in Redis when `cluster` is given, else in the database.
    pub fn new(db: Db, cluster: Option<Cluster>) -> Self {
        Usage {
            inner: Arc::new(Inner {
                db,
                cluster,
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
                failed: AtomicU64::new(0),
                last_warning: Mutex::new(None),
                pending: Mutex::new(Pending::default()),
                writing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Add `n` to the tenant's production `metric` today. Returns at once; the count is
    /// stored later (see the module docs) and a failure is only logged.
    pub fn record(&self, tenant_id: &TenantId, metric: Metric, n: i64) {
        self.record_in(tenant_id, Environment::Production, metric, n);
    }

    /// Add `n` to the tenant's `metric` of environment `env` today (see [`Usage::record`]).
    pub fn record_in(&self, tenant_id: &TenantId, env: Environment, metric: Metric, n: i64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.failed("no async runtime");
            return;
        };
        let tenant_id = tenant_id.to_string();
        let day = day_of(now_ms());
        if self.inner.cluster.is_none() {
            let mut pending = self.lock_pending();
            *pending
                .counts
                .entry((tenant_id, day, env, metric))
                .or_insert(0) += n;
            if pending.flusher.as_ref().is_none_or(|h| h.is_finished()) {
                pending.flusher =
                    Some(runtime.spawn(flush_periodically(Arc::downgrade(&self.inner))));
            }
            return;
        }
        let this = self.clone();
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        runtime.spawn(async move {
            if let Err(e) = this.store(&tenant_id, &day, env, metric, n).await {
                this.failed(&e);
            }
            if this.inner.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                this.inner.idle.notify_waiters();
            }
        });
    }

    async fn store(
        &self,
        tenant_id: &str,
        day: &str,
        env: Environment,
        metric: Metric,
        n: i64,
    ) -> std::result::Result<(), String> {
        let name = stored_name(env, metric);
        match &self.inner.cluster {
            Some(cluster) => {
                let key = cluster.key(&["usage", day]);
                let field = format!("{tenant_id}|{name}");
                let ttl = i64::try_from(REDIS_TTL.as_secs()).unwrap_or(i64::MAX);
                let mut conn = cluster.conn();
                let mut pipe = redis::pipe();
                pipe.hincr(&key, &field, n)
                    .ignore()
                    .expire(&key, ttl)
                    .ignore();
                match tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("redis: {:?}", e.kind())),
                    Err(_) => Err("redis: timed out".into()),
                }
            }
            None => {
                let mut pc = self.inner.db.conn().await.map_err(|e| e.to_string())?;
                repo::usage::add(&mut pc.as_conn(), tenant_id, day, &name, n)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add the counts summed in memory to `usage_daily`, in one transaction (rows in
    /// one order, so concurrent writers wait instead of deadlocking). On failure the
    /// counts are kept for the next flush.
    async fn store_pending(&self) {
        let _writing = self.inner.writing.lock().await;
        let mut batch: Vec<((String, String, Environment, Metric), i64)> =
            std::mem::take(&mut self.lock_pending().counts)
                .into_iter()
                .filter(|(_, n)| *n != 0)
                .collect();
        if batch.is_empty() {
            return;
        }
        batch.sort();
        let stored: Result<()> = async {
            let mut pc = self.inner.db.conn().await?;
            let mut conn = pc.as_conn();
            transaction!(&mut conn, |tx| {
                for ((tenant_id, day, env, metric), n) in &batch {
                    repo::usage::add(tx, tenant_id, day, &stored_name(*env, *metric), *n).await?;
                }
                Ok(())
            })
        }
        .await;
        if let Err(e) = stored {
            let mut pending = self.lock_pending();
            for (key, n) in batch {
                *pending.counts.entry(key).or_insert(0) += n;
            }
            drop(pending);
            self.failed(&e.to_string());
        }
    }

    fn failed(&self, error: &str) {
        let failed = self.inner.failed.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .inner
            .last_warning
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(error, failed_so_far = failed, "usage count not stored");
        }
    }

    /// Failed attempts to store counts so far (without Redis, the counts of a failed
    /// attempt are kept and tried again with the next flush).
    pub fn failed_count(&self) -> u64 {
        self.inner.failed.load(Ordering::Relaxed)
    }

    /// Wait (up to 5 s) until every count recorded so far by this process is stored:
    /// in Redis, or without Redis in `usage_daily`.
    pub async fn flush(&self) {
        let wait = async {
            loop {
                let idle = self.inner.idle.notified();
                if self.inner.in_flight.load(Ordering::SeqCst) == 0 {
                    break;
                }
                idle.await;
            }
            self.store_pending().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
    }

    /// Flush, then fold Redis counters into `usage_daily` (see [`summarize`]).
    pub async fn summarize(&self) -> Result<usize> {
        self.flush().await;
        summarize(&self.inner.db, self.inner.cluster.as_ref()).await
    }

    /// Summarize every [`SUMMARIZE_EVERY`] until `shutdown` (callers summarize once
    /// more after their last request). Returns at once without Redis: the counts go
    /// to the database with their own periodic flush (and the callers' last summary).
    pub async fn run_summarizer(self, shutdown: CancellationToken) {
        if self.inner.cluster.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(SUMMARIZE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.summarize().await {
                tracing::warn!(error = %e, "usage summary failed; retrying next time");
            }
        }
    }
}

/// Without Redis: add the counts summed in memory to the database every
/// [`FLUSH_EVERY`], until the last [`Usage`] is dropped.
async fn flush_periodically(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Usage { inner }.store_pending().await;
    }
}

/// Escape Redis glob characters.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn redis_error(e: redis::RedisError) -> Error {
    Error::new(
        crate::error::ErrorCode::Unavailable,
        format!("redis: {:?}", e.kind()),
    )
}

/// Every day's running totals in Redis, sorted by (tenant, day, metric), and the keys
/// they came from with their day.
async fn redis_totals(cluster: &Cluster) -> Result<(Vec<UsageRow>, Vec<(String, String)>)> {
    let prefix = format!("{}:", cluster.key(&["usage"]));
    let pattern = format!("{}????-??-??", glob_escape(&prefix));
    let mut conn = cluster.conn();
    let mut keys = HashSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut rows = Vec::new();
    let mut days = Vec::new();
    for key in keys {
        let Some(day) = key.strip_prefix(&prefix).map(str::to_string) else {
            continue;
        };
        let fields: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        for (field, count) in fields {
            let Some((tenant_id, metric)) = field.split_once('|') else {
                continue;
            };
            if parse_stored(metric).is_none() {
                continue;
            }
            rows.push(UsageRow {
                tenant_id: tenant_id.to_string(),
                day: day.clone(),
                metric: metric.to_string(),
                count,
            });
        }
        days.push((key, day));
    }
    // One order for every summarizer: concurrent transactions lock rows in the same
    // order and wait for each other instead of deadlocking.
    rows.sort_by(|a, b| (&a.tenant_id, &a.day, &a.metric).cmp(&(&b.tenant_id, &b.day, &b.metric)));
    Ok((rows, days))
}

/// Fold Redis counters into `usage_daily`: each (tenant, day, metric) row is raised to
/// the day's running total in Redis (see the module docs for why totals, not deltas).
/// Counts of tenants deleted since are dropped. Once folded, the hashes of days before
/// yesterday are deleted (nothing counts into them any more), so each run reads about
/// two days. Returns the rows written; without Redis there is nothing to fold and it
/// returns 0.
pub async fn summarize(db: &Db, cluster: Option<&Cluster>) -> Result<usize> {
    let Some(cluster) = cluster else {
        return Ok(0);
    };
    let (rows, keys) = redis_totals(cluster).await?;
    let mut written = 0;
    if !rows.is_empty() {
        let mut pc = db.conn().await?;
        let mut conn = pc.as_conn();
        let tenants: HashSet<String> = repo::tenants::list(&mut conn)
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect();
        let rows: Vec<UsageRow> = rows
            .into_iter()
            .filter(|r| tenants.contains(&r.tenant_id))
            .collect();
        if !rows.is_empty() {
            transaction!(&mut conn, |tx| {
                for row in &rows {
                    repo::usage::raise_to(tx, row).await?;
                }
                Ok(())
            })?;
            written = rows.len();
        }
    }
    let settled = day_of(now_ms() - 2 * DAY_MS);
    let done: Vec<&String> = keys
        .iter()
        .filter(|(_, day)| day.as_str() <= settled.as_str())
        .map(|(key, _)| key)
        .collect();
    if !done.is_empty() {
        let mut conn = cluster.conn();
        redis::cmd("DEL")
            .arg(&done)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_error)?;
    }
    Ok(written)
}

/// A count per metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageCounts {
    /// Conversations started by visitors.
    pub conversations_started: i64,
    /// Messages from visitors.
    pub messages_inbound: i64,
    /// Messages from agents (admin API and Telegram).
    pub messages_outbound: i64,
    /// Telegram forum topics created.
    pub topics_created: i64,
    /// Telegram forum topics renamed.
    pub topic_renames: i64,
}

impl UsageCounts {
    fn add(&mut self, metric: Metric, n: i64) {
        let slot = match metric {
            Metric::ConversationsStarted => &mut self.conversations_started,
            Metric::MessagesInbound => &mut self.messages_inbound,
            Metric::MessagesOutbound => &mut self.messages_outbound,
            Metric::TopicsCreated => &mut self.topics_created,
            Metric::TopicRenames => &mut self.topic_renames,
        };
        *slot = slot.saturating_add(n);
    }
}

/// One day of a tenant's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageDay {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The day's counts.
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// A tenant's usage in its staging environment: counted apart, never against the
/// plan's quotas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StagingUsage {
    /// The same days as the report's, oldest first.
    pub days: Vec<UsageDay>,
    /// Sums over all reported days.
    pub totals: UsageCounts,
}

/// A tenant's usage over the last days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// Tenant id.
    pub tenant_id: String,
    /// First day reported (UTC, `YYYY-MM-DD`).
    pub from: String,
    /// Last day reported: today (UTC).
    pub to: String,
    /// Every day from `from` to `to`, oldest first (days without usage count zero).
    pub days: Vec<UsageDay>,
    /// Sums over all reported days (production: what the plan's quotas count).
    pub totals: UsageCounts,
    /// The staging environment's days and totals.
    #[serde(default)]
    pub staging: StagingUsage,
    /// The tenant's plan now.
    pub plan: PlanSummary,
    /// Every quota of the plan: its limit, what is used today (open now, for
    /// `active_conversations`), what remains and when it resets.
    pub quotas: Vec<QuotaUsage>,
}

/// Which plan a tenant is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanSummary {
    /// Plan code.
    pub code: String,
    /// Plan name.
    pub name: String,
    /// Days closed conversations are kept; `null`: unlimited.
    pub retention_days: Option<u32>,
}

/// Where a tenant stands on one quota of its plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaUsage {
    /// The quota (the plan's limit field).
    pub quota: String,
    /// The plan's limit; `null`: unlimited.
    pub limit: Option<u64>,
    /// Used today (open now, for `active_conversations`).
    pub used: u64,
    /// What is left today; `null`: unlimited.
    pub remaining: Option<u64>,
    /// When the count starts again (next 00:00 UTC); `null` for the open-conversation
    /// cap.
    pub resets_at: Option<String>,
}

/// The tenant's usage for the last `days` days (1–[`MAX_DAYS`], today included), as
/// stored in `usage_daily` (with Redis: as of the last summary), and where it stands on
/// its plan's quotas now (from `quotas`' counters).
pub async fn show(
    db: &Db,
    quotas: &crate::quota::Quotas,
    caller: &crate::tenancy::Caller,
    tenant: &crate::tenancy::Tenant,
    days: u32,
) -> Result<UsageReport> {
    caller.require(&crate::domain::Scope::new(
        crate::domain::Resource::Usage,
        crate::domain::ScopeAccess::Read,
    ))?;
    caller.check_tenant(tenant)?;
    let tenant_id = tenant.id.as_str();
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(Error::validation(
            "days",
            format!("days must be 1-{MAX_DAYS}"),
        ));
    }
    let now = now_ms();
    let all: Vec<String> = (0..i64::from(days))
        .rev()
        .map(|back| day_of(now - back * DAY_MS))
        .collect();
    let from = all.first().cloned().unwrap_or_else(|| day_of(now));
    let to = all.last().cloned().unwrap_or_else(|| day_of(now));
    let mut pc = db.conn().await?;
    let rows = repo::usage::range(&mut pc.as_conn(), tenant_id, &from, &to).await?;
    let mut by_day: BTreeMap<String, (UsageCounts, UsageCounts)> = all
        .iter()
        .map(|d| (d.clone(), Default::default()))
        .collect();
    let mut totals = UsageCounts::default();
    let mut staging = StagingUsage::default();
    for row in rows {
        let Some((env, metric)) = parse_stored(&row.metric) else {
            continue;
        };
        if let Some((production, staging_day)) = by_day.get_mut(&row.day) {
            match env {
                Environment::Production => {
                    production.add(metric, row.count);
                    totals.add(metric, row.count);
                }
                Environment::Staging => {
                    staging_day.add(metric, row.count);
                    staging.totals.add(metric, row.count);
                }
            }
        }
    }
    let mut conn = pc.as_conn();
    let plan = crate::plans::for_tenant(&mut conn, tenant_id).await?;
    let open = repo::conversations::count_open(&mut conn, tenant_id).await?;
    drop(pc);
    let mut standing = Vec::new();
    for quota in crate::quota::Quota::ALL {
        let limit = match quota {
            Quota::ConversationStartsPerDay => plan.limits.conversation_starts_per_day,
            Quota::MessagesPerDay => plan.limits.messages_per_day,
            Quota::TopicRenamesPerDay => plan.limits.topic_renames_per_day,
            Quota::ActiveConversations => plan.limits.active_conversations,
        }
        .map(u64::from);
        let used = match quota {
            Quota::ActiveConversations => u64::try_from(open).unwrap_or(0),
            daily => quotas.used_today(&tenant.id, daily).await?,
        };
        standing.push(QuotaUsage {
            quota: quota.as_str().to_string(),
            limit,
            used,
            remaining: limit.map(|l| l.saturating_sub(used)),
            resets_at: quota.is_daily().then(|| quotas.resets_at()),
        });
    }
    Ok(UsageReport {
        tenant_id: tenant_id.to_string(),
        from,
        to,
        days: by_day
            .into_iter()
            .map(|(day, (counts, staged))| {
                staging.days.push(UsageDay {
                    day: day.clone(),
                    counts: staged,
                });
                UsageDay { day, counts }
            })
            .collect(),
        totals,
        staging,
        plan: PlanSummary {
            code: plan.code.to_string(),
            name: plan.name,
            retention_days: plan.limits.retention_days,
        },
        quotas: standing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_is_the_utc_date() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_795_650_000_000), "2026-11-25");
        assert_eq!(day_of(1_795_651_200_000), "2026-11-26");
    }

    #[test]
    fn metric_names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.as_str()), Some(m));
        }
        assert_eq!(Metric::parse("topic_rename"), None);
    }

    #[test]
    fn staging_metrics_are_stored_apart() {
        for m in Metric::ALL {
            for env in Environment::ALL {
                assert_eq!(parse_stored(&stored_name(env, m)), Some((env, m)));
            }
        }
        assert_eq!(
            stored_name(Environment::Staging, Metric::MessagesInbound),
            "staging.messages_inbound"
        );
        assert_eq!(parse_stored("preview.messages_inbound"), None);
        assert_eq!(parse_stored("staging.nothing"), None);
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
