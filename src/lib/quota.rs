//! Plan quotas, enforced exactly on every node.
//!
//! Three quotas count per UTC day — conversation starts, messages (both directions)
//! and topic renames — and one is a cap on what exists at once: open conversations.
//!
//! A daily quota is taken **before** the write it limits and given back when the write
//! does not happen (a duplicate, a closed conversation, a failed transaction): a refused
//! or undone request never counts. A quota the plan leaves unlimited is counted too
//! (never refused), so a limit that applies later the same day (a downgrade) starts
//! from the day's real count. With Redis (`redis.url`) the counter of a tenant,
//! quota and day is one Redis key, checked and incremented by one Lua script, so any
//! number of nodes together never admit more than the limit; without Redis it lives in
//! this process (one node by definition). Keys live two days; a new day is a new key,
//! so counters reset at 00:00 UTC.
//!
//! A counter that does not exist yet (the first write of the day, or after Redis lost
//! its data or this process restarted) starts from the day's usage summary in the
//! database (`usage_daily`, the same events counted by [`crate::usage`]), so a restart
//! does not hand out a fresh day.
//!
//! The active-conversation cap is not a counter: the conversation insert counts the
//! tenant's open conversations in the same transaction, under a lock of the tenant's
//! row on PostgreSQL (SQLite runs write transactions one at a time).
//!
//! When Redis cannot be reached, `redis.limits_fail_open` decides, as for rate limits:
//! admit (the default; logged, counted in [`Quotas::redis_errors`]) or refuse with 503.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use utoipa::ToSchema;

use crate::cluster::Cluster;
use crate::db::{Conn, Db, repo};
use crate::domain::{TenantId, now_ms, rfc3339};
use crate::error::{Error, ErrorCode, Result};
use crate::usage::{Metric, day_of};

const DAY_MS: i64 = 24 * 3600 * 1000;
/// Redis keys outlive their day by a day (reports read yesterday's too).
const KEY_TTL_SECS: u64 = 2 * 24 * 3600;
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// The limit an unlimited quota is counted under (never reached: a plan's limits are
/// at most [`crate::plans::MAX_LIMIT`], and Lua reads it as a float well above that).
const UNLIMITED: u64 = u64::MAX;

/// Check and take `ARGV[2]` of the counter `KEYS[1]` under the limit `ARGV[1]`.
/// A missing counter starts at `ARGV[4]` (set only if still missing) or, with an empty
/// seed, the script answers `{-1, 0}` so the caller can read the seed and ask again.
/// Answers `{1, used}` when taken, `{0, used}` when the limit would be passed.
const TAKE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  if ARGV[4] == '' then return {-1, 0} end
  redis.call('SET', KEYS[1], ARGV[4], 'EX', tonumber(ARGV[3]), 'NX')
  v = redis.call('GET', KEYS[1])
end
local used = tonumber(v)
local n = tonumber(ARGV[2])
if used + n > tonumber(ARGV[1]) then return {0, used} end
used = redis.call('INCRBY', KEYS[1], n)
return {1, used}
";

/// Give back `ARGV[1]` of the counter `KEYS[1]` (never below zero; a missing key stays
/// missing).
const GIVE_BACK_LUA: &str = r"
local v = tonumber(redis.call('GET', KEYS[1]))
if not v then return 0 end
local n = math.min(v, tonumber(ARGV[1]))
if n > 0 then redis.call('DECRBY', KEYS[1], n) end
return n
";

/// What a plan limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Quota {
    /// New conversations a day.
    ConversationStartsPerDay,
    /// Messages a day, visitors' and agents' together.
    MessagesPerDay,
    /// Telegram topic renames a day.
    TopicRenamesPerDay,
    /// Open conversations at once.
    ActiveConversations,
}

impl Quota {
    /// Every quota, in report order.
    pub const ALL: [Quota; 4] = [
        Quota::ConversationStartsPerDay,
        Quota::MessagesPerDay,
        Quota::TopicRenamesPerDay,
        Quota::ActiveConversations,
    ];

    /// The quota's name: the plan's limit field and `details.quota` of a refusal.
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::ConversationStartsPerDay => "conversation_starts_per_day",
            Quota::MessagesPerDay => "messages_per_day",
            Quota::TopicRenamesPerDay => "topic_renames_per_day",
            Quota::ActiveConversations => "active_conversations",
        }
    }

    /// Whether the quota counts per UTC day (else it caps a current number).
    pub fn is_daily(self) -> bool {
        !matches!(self, Quota::ActiveConversations)
    }

    /// The usage metrics the quota's day counts: where a counter starts from.
    fn metrics(self) -> &'static [Metric] {
        match self {
            Quota::ConversationStartsPerDay => &[Metric::ConversationsStarted],
            Quota::MessagesPerDay => &[Metric::MessagesInbound, Metric::MessagesOutbound],
            Quota::TopicRenamesPerDay => &[Metric::TopicRenames],
            Quota::ActiveConversations => &[],
        }
    }

    /// Words for messages: "messages a day".
    fn describe(self) -> &'static str {
        match self {
            Quota::ConversationStartsPerDay => "new conversations a day",
            Quota::MessagesPerDay => "messages a day",
            Quota::TopicRenamesPerDay => "topic renames a day",
            Quota::ActiveConversations => "open conversations at once",
        }
    }
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the plan's `limit` of `quota` is used up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Exceeded {
    /// Which quota.
    pub quota: Quota,
    /// The plan's limit.
    pub limit: u64,
    /// Used so far (today, or open now).
    pub used: u64,
    /// When the count starts again (RFC 3339, next 00:00 UTC); `null` for the
    /// active-conversation cap, which frees up when conversations close.
    pub resets_at: Option<String>,
}

impl Exceeded {
    /// Seconds from `now` (epoch ms) until `resets_at` (0 for the cap).
    pub fn retry_after_secs(&self, now: i64) -> u64 {
        let Some(at) = self
            .resets_at
            .as_deref()
            .and_then(|at| humantime::parse_rfc3339(at).ok())
        else {
            return 0;
        };
        let at = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        u64::try_from((at - now + 999) / 1000).unwrap_or(0)
    }

    /// The error: 429 `quota_exceeded` with these details.
    pub fn into_error(self) -> Error {
        let message = match &self.resets_at {
            Some(at) => format!(
                "the plan allows {} {}; try again after {at}",
                self.limit,
                self.quota.describe()
            ),
            None => format!(
                "the plan allows {} {}; close some first",
                self.limit,
                self.quota.describe()
            ),
        };
        let details = serde_json::to_value(&self).unwrap_or_default();
        Error::new(ErrorCode::QuotaExceeded, message).with_details(details)
    }

    /// The refusal an error carries, if it is one.
    pub fn from_error(e: &Error) -> Option<Exceeded> {
        if e.code != ErrorCode::QuotaExceeded {
            return None;
        }
        let d = e.details.as_ref()?;
        let quota = Quota::ALL
            .into_iter()
            .find(|q| d.get("quota").and_then(|v| v.as_str()) == Some(q.as_str()))?;
        Some(Exceeded {
            quota,
            limit: d.get("limit")?.as_u64()?,
            used: d.get("used")?.as_u64()?,
            resets_at: d
                .get("resets_at")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        })
    }
}

/// The start of the next UTC day after `now` (epoch ms).
pub fn next_midnight(now: i64) -> i64 {
    (now.div_euclid(DAY_MS) + 1) * DAY_MS
}

/// What [`Quotas::take`] took. [`Taken::keep`] it once the write it was taken for is
/// committed; dropped without that (an error, a rollback, a duplicate), it is given back.
#[derive(Debug)]
#[must_use = "keep a taken quota once the write is committed; dropping it gives it back"]
pub struct Taken {
    /// `None`: nothing is counted (Redis down and failing open, or kept).
    held: Option<(Counter, Arc<Quotas>)>,
}

impl Taken {
    /// Nothing taken (nothing to count).
    pub fn nothing() -> Self {
        Taken { held: None }
    }

    /// The write it was taken for happened: it stays taken.
    pub fn keep(mut self) {
        self.held = None;
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let Some((counter, quotas)) = self.held.take() {
            quotas.give_back_now(counter);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Counter {
    tenant_id: TenantId,
    quota: Quota,
    day: i64,
}

/// The clock quotas count days by: the system clock, shifted in tests only.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Now, epoch ms.
    pub fn now(&self) -> i64 {
        now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Move this clock forward by `by` (tests drive the daily reset with it). Only in
    /// builds with the `test-clock` feature: production builds cannot reach it.
    #[cfg(feature = "test-clock")]
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// The daily counters (see the module docs). One per process, shared by every request.
pub struct Quotas {
    db: Db,
    cluster: Option<Cluster>,
    fail_open: bool,
    clock: Clock,
    take: redis::Script,
    give_back: redis::Script,
    local: Mutex<HashMap<Counter, u64>>,
    redis_errors: crate::cluster::RedisErrors,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas")
            .field("redis", &self.cluster.is_some())
            .field("fail_open", &self.fail_open)
            .finish_non_exhaustive()
    }
}

impl Quotas {
    /// Counters over `db`, in Redis when `cluster` is given.
    pub fn new(db: Db, cluster: Option<Cluster>, fail_open: bool) -> Self {
        Quotas {
            db,
            cluster,
            fail_open,
            clock: Clock::default(),
            take: redis::Script::new(TAKE_LUA),
            give_back: redis::Script::new(GIVE_BACK_LUA),
            local: Mutex::new(HashMap::new()),
            redis_errors: Default::default(),
        }
    }

    /// The clock days are counted by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Calls that could not reach Redis so far.
    pub fn redis_errors(&self) -> u64 {
        self.redis_errors.count()
    }

    /// When today's counts start again: the next 00:00 UTC, RFC 3339.
    pub fn resets_at(&self) -> String {
        rfc3339(next_midnight(self.clock.now()))
    }

    fn counter(&self, tenant_id: &TenantId, quota: Quota) -> Counter {
        Counter {
            tenant_id: tenant_id.clone(),
            quota,
            day: self.clock.now().div_euclid(DAY_MS),
        }
    }

    /// Take one of the daily `quota` of the tenant, whose plan allows `limit` a day.
    /// Over the limit: `Err(Exceeded)` and nothing is taken.
    ///
    /// `None` (unlimited) is never refused but counted all the same: the day's count
    /// must be right when the tenant's plan gets a limit later that day (a downgrade,
    /// a changed plan), and for the usage report.
    ///
    /// `conn` is the caller's connection (or transaction): a counter that does not
    /// exist yet is seeded with it, so a caller never waits for a second connection
    /// while holding one.
    pub async fn take(
        self: &Arc<Self>,
        conn: &mut Conn<'_>,
        tenant_id: &TenantId,
        quota: Quota,
        limit: Option<u32>,
    ) -> Result<Result<Taken, Exceeded>> {
        let limit = limit.map_or(UNLIMITED, u64::from);
        let counter = self.counter(tenant_id, quota);
        let answer = match &self.cluster {
            Some(cluster) => self.take_redis(conn, cluster, &counter, limit).await?,
            None => self.take_local(conn, &counter, limit).await?,
        };
        Ok(match answer {
            Took::Yes => Ok(Taken {
                held: Some((counter, self.clone())),
            }),
            Took::Unchecked => Ok(Taken::nothing()),
            Took::No(used) => Err(Exceeded {
                quota,
                limit,
                used,
                resets_at: Some(rfc3339((counter.day + 1) * DAY_MS)),
            }),
        })
    }

    /// Give back what [`Quotas::take`] took (the write did not happen), and wait until
    /// it is back (dropping the [`Taken`] gives it back in the background).
    pub async fn give_back(&self, mut taken: Taken) {
        let Some((counter, _)) = taken.held.take() else {
            return;
        };
        match &self.cluster {
            Some(cluster) => self.give_back_redis(cluster, &counter).await,
            None => self.give_back_local(&counter),
        }
    }

    /// From [`Taken`]'s drop: at once in this process; with Redis, on a task.
    fn give_back_now(self: Arc<Self>, counter: Counter) {
        match self.cluster.clone() {
            None => self.give_back_local(&counter),
            Some(cluster) => match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move { self.give_back_redis(&cluster, &counter).await });
                }
                Err(_) => self.redis_failed(counter.quota, "give back outside the runtime"),
            },
        }
    }

    fn give_back_local(&self, counter: &Counter) {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(used) = local.get_mut(counter) {
            *used = used.saturating_sub(1);
        }
    }

    async fn give_back_redis(&self, cluster: &Cluster, counter: &Counter) {
        let key = self.redis_key(cluster, counter);
        let mut conn = cluster.conn();
        let mut call = self.give_back.key(&key);
        call.arg(1);
        let answer = tokio::time::timeout(REDIS_TIMEOUT, call.invoke_async::<i64>(&mut conn)).await;
        if !matches!(answer, Ok(Ok(_))) {
            self.redis_failed(counter.quota, "give back");
        }
    }

    /// How much of the daily `quota` the tenant used today.
    pub async fn used_today(&self, tenant_id: &TenantId, quota: Quota) -> Result<u64> {
        let counter = self.counter(tenant_id, quota);
        if let Some(cluster) = &self.cluster {
            let mut conn = cluster.conn();
            let got = tokio::time::timeout(
                REDIS_TIMEOUT,
                redis::cmd("GET")
                    .arg(self.redis_key(cluster, &counter))
                    .query_async::<Option<u64>>(&mut conn),
            )
            .await;
            match got {
                Ok(Ok(Some(used))) => return Ok(used),
                Ok(Ok(None)) => {}
                _ => self.redis_failed(quota, "read"),
            }
        } else if let Some(used) = self
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&counter)
        {
            return Ok(*used);
        }
        let mut pc = self.db.conn().await?;
        seed(&mut pc.as_conn(), &counter).await
    }

    fn redis_key(&self, cluster: &Cluster, c: &Counter) -> String {
        cluster.key(&["quota", &c.tenant_id, c.quota.as_str(), &c.day.to_string()])
    }

    async fn take_local(&self, conn: &mut Conn<'_>, c: &Counter, limit: u64) -> Result<Took> {
        let known = self
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(c);
        let start = if known { 0 } else { seed(conn, c).await? };
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        // Yesterday's counters are done with.
        local.retain(|k, _| k.day >= c.day - 1);
        let used = local.entry(c.clone()).or_insert(start);
        if *used >= limit {
            return Ok(Took::No(*used));
        }
        *used += 1;
        Ok(Took::Yes)
    }

    async fn take_redis(
        &self,
        conn: &mut Conn<'_>,
        cluster: &Cluster,
        c: &Counter,
        limit: u64,
    ) -> Result<Took> {
        let key = self.redis_key(cluster, c);
        let mut seed = String::new();
        for _ in 0..2 {
            let mut redis = cluster.conn();
            let mut call = self.take.key(&key);
            call.arg(limit).arg(1).arg(KEY_TTL_SECS).arg(&seed);
            let answer =
                tokio::time::timeout(REDIS_TIMEOUT, call.invoke_async::<(i64, u64)>(&mut redis))
                    .await;
            match answer {
                Ok(Ok((1, _))) => return Ok(Took::Yes),
                Ok(Ok((0, used))) => return Ok(Took::No(used)),
                Ok(Ok(_)) => seed = self::seed(conn, c).await?.to_string(),
                Ok(Err(e)) => return self.fail(c.quota, &format!("{:?}", e.kind())),
                Err(_) => return self.fail(c.quota, "timed out"),
            }
        }
        self.fail(c.quota, "counter missing after seeding")
    }

    fn fail(&self, quota: Quota, error: &str) -> Result<Took> {
        self.redis_failed(quota, error);
        if self.fail_open {
            Ok(Took::Unchecked)
        } else {
            Err(Error::new(
                ErrorCode::Unavailable,
                "quotas cannot be checked right now; try again shortly",
            ))
        }
    }

    fn redis_failed(&self, quota: Quota, error: &str) {
        if let Some(errors) = self.redis_errors.record() {
            tracing::warn!(%quota, error, errors_so_far = errors, fail_open = self.fail_open,
                "quotas: Redis unavailable");
        }
    }
}

/// Where a counter that does not exist yet starts: the day's usage as summarized in the
/// database.
async fn seed(conn: &mut Conn<'_>, c: &Counter) -> Result<u64> {
    let day = day_of(c.day * DAY_MS);
    let rows = repo::usage::range(conn, &c.tenant_id, &day, &day).await?;
    let names: Vec<&str> = c.quota.metrics().iter().map(|m| m.as_str()).collect();
    Ok(rows
        .iter()
        .filter(|r| names.contains(&r.metric.as_str()))
        .map(|r| u64::try_from(r.count).unwrap_or(0))
        .sum())
}

enum Took {
    Yes,
    /// Redis was down and quotas fail open: admitted without counting.
    Unchecked,
    No(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_reset_at_utc_midnight() {
        // 2026-11-30T23:59:59.999Z → 2026-12-01T00:00:00Z.
        let before = 1_796_083_199_999;
        assert_eq!(rfc3339(next_midnight(before)), "2026-12-01T00:00:00.000Z");
        assert_eq!(next_midnight(before + 1), before + 1 + DAY_MS);
    }

    #[test]
    fn refusals_round_trip_through_the_error() {
        let e = Exceeded {
            quota: Quota::MessagesPerDay,
            limit: 5,
            used: 5,
            resets_at: Some("2026-12-01T00:00:00.000Z".into()),
        };
        let err = e.clone().into_error();
        assert_eq!(err.code, ErrorCode::QuotaExceeded);
        assert_eq!(
            err.details.as_ref().map(|d| d["quota"].clone()),
            Some("messages_per_day".into())
        );
        assert_eq!(Exceeded::from_error(&err), Some(e));
    }
}
