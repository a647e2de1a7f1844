//! Rate limits: widget sessions per client IP and per tenant, visitor messages per
//! visitor, Telegram webhook calls per tenant.
//!
//! Every limit is a GCRA (generic cell rate algorithm): `count` per `period`, bursting
//! to `count`. State is one number per key, the "theoretical arrival time" of the next
//! call. With Redis (`redis.url`) it lives in Redis and is updated atomically by a Lua
//! script that reads the clock of the Redis server, so every node shares one budget and
//! node clocks do not matter; without Redis it lives in this process.
//!
//! When Redis cannot be reached, `redis.limits_fail_open` decides: let calls through
//! (the default) or refuse them with `retry_after` 1 s. Either way a warning is logged
//! (at most one every 10 seconds) and [`Limiter::redis_errors`] counts.
//!
//! Widget sessions have two budgets: per client address (every session, a resumed
//! one too) and per tenant (only sessions that start a *new* visitor: strangers
//! cannot spend the budget of a tenant's returning visitors, see
//! [`crate::chat::Chat::widget_session`]). Refused sessions are counted per tenant and
//! reason ([`Limiter::session_refusals`], the `chatorical_session_refusals_total`
//! metric), so an operator sees which tenant is being flooded.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::cluster::Cluster;
use crate::config::Settings;
use crate::error::{Error, ErrorCode};

/// Longest wait for Redis before a check counts as a Redis failure.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a refusal asks callers to wait when Redis is down and limits fail closed.
const FAIL_CLOSED_WAIT: Duration = Duration::from_secs(1);
/// Most widget keys remembered for naming the tenant of a per-IP refusal; the map is
/// emptied when full (it only ever holds keys that matched a tenant).
const MAX_KNOWN_WIDGET_KEYS: usize = 10_000;
/// The tenant label of a per-IP session refusal whose widget key this node has not
/// matched to a tenant (unknown keys, or not looked up yet): no slug has parentheses.
pub const UNKNOWN_TENANT: &str = "(unknown)";

/// GCRA in one round trip. KEYS[1] the key; ARGV[1] the emission interval and ARGV[2]
/// the burst, in microseconds and calls. Returns 0 when allowed (and charged), else the
/// microseconds until the call would be allowed (nothing charged).
const GCRA_LUA: &str = r"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return allow_at - now
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return 0
";

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `POST /v1/widget/session` per client IP.
    SessionsPerIp,
    /// `POST /v1/widget/session` per tenant.
    SessionsPerTenant,
    /// Visitor messages (HTTP and socket) per visitor.
    MessagesPerVisitor,
    /// Telegram webhook calls per tenant.
    WebhookPerTenant,
}

impl Limit {
    /// Every limit, in a fixed order.
    pub const ALL: [Limit; 4] = [
        Limit::SessionsPerIp,
        Limit::SessionsPerTenant,
        Limit::MessagesPerVisitor,
        Limit::WebhookPerTenant,
    ];

    /// The limit's name (in keys and metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::SessionsPerIp => "sessions_per_ip",
            Limit::SessionsPerTenant => "sessions_per_tenant",
            Limit::MessagesPerVisitor => "messages_per_visitor",
            Limit::WebhookPerTenant => "webhook_per_tenant",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a widget session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SessionRefusal {
    /// The client address's budget (`limits.sessions_per_ip_per_min`) was spent.
    Ip,
    /// The tenant's budget for new visitors (`limits.sessions_per_tenant_per_min`) was spent.
    Tenant,
}

impl SessionRefusal {
    /// The reason's name (the `reason` label).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionRefusal::Ip => "ip",
            SessionRefusal::Tenant => "tenant",
        }
    }
}

/// The rate-limit key of a client address: an IPv4 address, or the /64 an IPv6 address
/// is in (one subscriber usually holds a whole /64).
pub fn client_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// `count` calls per `period`, bursting to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Calls allowed per period (and the burst).
    pub count: u32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// `count` per minute.
    pub fn per_minute(count: u32) -> Self {
        Rate {
            count,
            period: Duration::from_secs(60),
        }
    }

    /// `count` per second.
    pub fn per_second(count: u32) -> Self {
        Rate {
            count,
            period: Duration::from_secs(1),
        }
    }

    /// Microseconds between two calls at the steady rate (at least 1).
    fn interval_us(self) -> u64 {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        (period / u64::from(self.count.max(1))).max(1)
    }

    fn burst(self) -> u64 {
        u64::from(self.count.max(1))
    }
}

/// The rate of each [`Limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// Sessions per client IP.
    pub sessions_per_ip: Rate,
    /// Sessions per tenant.
    pub sessions_per_tenant: Rate,
    /// Messages per visitor.
    pub messages_per_visitor: Rate,
    /// Webhook calls per tenant.
    pub webhook_per_tenant: Rate,
}

impl Rates {
    /// The rates configured in `limits` and `telegram.webhook_per_sec`.
    pub fn from_settings(settings: &Settings) -> Self {
        let l = &settings.limits;
        Rates {
            sessions_per_ip: Rate::per_minute(l.sessions_per_ip_per_min),
            sessions_per_tenant: Rate::per_minute(l.sessions_per_tenant_per_min),
            messages_per_visitor: Rate::per_minute(l.messages_per_visitor_per_min),
            webhook_per_tenant: Rate::per_second(settings.telegram.webhook_per_sec),
        }
    }

    /// The rate of `limit`.
    pub fn of(&self, limit: Limit) -> Rate {
        match limit {
            Limit::SessionsPerIp => self.sessions_per_ip,
            Limit::SessionsPerTenant => self.sessions_per_tenant,
            Limit::MessagesPerVisitor => self.messages_per_visitor,
            Limit::WebhookPerTenant => self.webhook_per_tenant,
        }
    }
}

/// In-process GCRA state: the theoretical arrival time per key, in microseconds since
/// `origin`.
struct Local {
    origin: Instant,
    tats: HashMap<String, u64>,
    checks: u64,
}

impl Local {
    fn check(&mut self, key: &str, rate: Rate) -> Result<(), Duration> {
        let now = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.checks = self.checks.wrapping_add(1);
        if self.checks.is_multiple_of(4096) {
            // Keys whose budget is full again hold nothing worth keeping.
            self.tats.retain(|_, tat| *tat > now);
        }
        let interval = rate.interval_us();
        let tolerance = interval.saturating_mul(rate.burst());
        let tat = self.tats.get(key).copied().unwrap_or(now).max(now);
        let new_tat = tat.saturating_add(interval);
        let allow_at = new_tat.saturating_sub(tolerance);
        if now < allow_at {
            return Err(Duration::from_micros(allow_at - now));
        }
        self.tats.insert(key.to_string(), new_tat);
        Ok(())
    }
}

/// Checks and charges rate limits (see the module docs).
pub struct Limiter {
    cluster: Option<Cluster>,
    fail_open: bool,
    rates: Rates,
    script: redis::Script,
    local: Mutex<Local>,
    rejected: [AtomicU64; 4],
    redis_errors: crate::cluster::RedisErrors,
    /// Refused widget sessions by (tenant slug, reason).
    session_refusals: Mutex<HashMap<(String, SessionRefusal), u64>>,
    /// Widget key → tenant slug, for keys this node has matched to a tenant.
    widget_tenants: Mutex<HashMap<String, String>>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("cluster", &self.cluster)
            .field("fail_open", &self.fail_open)
            .field("rates", &self.rates)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter with the configured rates, on Redis when `cluster` is given.
    pub fn new(settings: &Settings, cluster: Option<Cluster>) -> Self {
        Limiter::with_rates(
            Rates::from_settings(settings),
            cluster,
            settings.redis.limits_fail_open,
        )
    }

    /// A limiter with explicit rates.
    pub fn with_rates(rates: Rates, cluster: Option<Cluster>, fail_open: bool) -> Self {
        Limiter {
            cluster,
            fail_open,
            rates,
            script: redis::Script::new(GCRA_LUA),
            local: Mutex::new(Local {
                origin: Instant::now(),
                tats: HashMap::new(),
                checks: 0,
            }),
            rejected: Default::default(),
            redis_errors: Default::default(),
            session_refusals: Mutex::new(HashMap::new()),
            widget_tenants: Mutex::new(HashMap::new()),
        }
    }

    /// Charge one call of `subject` (an IP, a tenant id, a visitor id) against `limit`
    /// at its configured rate. `Err(wait)` when over the limit: nothing was charged and
    /// the call may be retried after `wait`.
    pub async fn check(&self, limit: Limit, subject: &str) -> Result<(), Duration> {
        self.check_rate(limit, subject, self.rates.of(limit)).await
    }

    /// Like [`Limiter::check`] with an explicit rate.
    pub async fn check_rate(
        &self,
        limit: Limit,
        subject: &str,
        rate: Rate,
    ) -> Result<(), Duration> {
        let result = match &self.cluster {
            Some(cluster) => self.check_redis(cluster, limit, subject, rate).await,
            None => {
                let key = format!("{}:{subject}", limit.as_str());
                self.local
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .check(&key, rate)
            }
        };
        if result.is_err() {
            self.rejected[limit.index()].fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn check_redis(
        &self,
        cluster: &Cluster,
        limit: Limit,
        subject: &str,
        rate: Rate,
    ) -> Result<(), Duration> {
        let key = cluster.key(&["limit", limit.as_str(), subject]);
        let mut conn = cluster.conn();
        let mut invocation = self.script.key(&key);
        invocation.arg(rate.interval_us()).arg(rate.burst());
        let answer =
            tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async::<i64>(&mut conn)).await;
        match answer {
            Ok(Ok(wait_us)) if wait_us <= 0 => Ok(()),
            Ok(Ok(wait_us)) => Err(Duration::from_micros(wait_us.unsigned_abs())),
            Ok(Err(e)) => self.redis_failed(limit, &format!("{:?}", e.kind())),
            Err(_) => self.redis_failed(limit, "timed out"),
        }
    }

    fn redis_failed(&self, limit: Limit, error: &str) -> Result<(), Duration> {
        if let Some(errors) = self.redis_errors.record() {
            tracing::warn!(
                limit = %limit,
                error,
                errors_so_far = errors,
                fail_open = self.fail_open,
                "rate limits: Redis unavailable; {}",
                if self.fail_open {
                    "letting calls through"
                } else {
                    "refusing calls"
                }
            );
        }
        if self.fail_open {
            Ok(())
        } else {
            Err(FAIL_CLOSED_WAIT)
        }
    }

    /// Calls refused by `limit` so far (including refusals while Redis was down and
    /// limits fail closed).
    pub fn rejected(&self, limit: Limit) -> u64 {
        self.rejected[limit.index()].load(Ordering::Relaxed)
    }

    /// `(limit, refused so far)` for every limit.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        Limit::ALL
            .iter()
            .map(|l| (l.as_str(), self.rejected(*l)))
            .collect()
    }

    /// Checks that could not reach Redis so far.
    pub fn redis_errors(&self) -> u64 {
        self.redis_errors.count()
    }

    /// Charge a widget session against the budget of the client address `client`
    /// (see [`client_key`]). Runs before the widget key is looked up, so a refusal is
    /// counted for the tenant only when this node has matched `widget_key` to it
    /// before ([`Limiter::remember_widget_key`]), else for [`UNKNOWN_TENANT`].
    pub async fn check_session_ip(&self, client: &str, widget_key: &str) -> Result<(), Error> {
        self.check(Limit::SessionsPerIp, client)
            .await
            .map_err(|wait| {
                let tenant = self
                    .widget_tenants
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(widget_key)
                    .cloned()
                    .unwrap_or_else(|| UNKNOWN_TENANT.to_string());
                self.count_session_refusal(tenant, SessionRefusal::Ip);
                rate_limited(wait, "too many sessions from this address")
            })
    }

    /// Charge a session that starts a new visitor of the tenant `tenant_id` (slug
    /// `tenant_slug`) against the tenant's budget.
    pub async fn check_new_visitor(
        &self,
        tenant_id: &crate::domain::TenantId,
        tenant_slug: &str,
    ) -> Result<(), Error> {
        self.check(Limit::SessionsPerTenant, tenant_id)
            .await
            .map_err(|wait| {
                self.count_session_refusal(tenant_slug.to_string(), SessionRefusal::Tenant);
                rate_limited(wait, "too many new visitors for this site right now")
            })
    }

    /// Note that `widget_key` belongs to the tenant `tenant_slug` (after a lookup found
    /// it), to name the tenant in later per-IP refusals.
    pub fn remember_widget_key(&self, widget_key: &str, tenant_slug: &str) {
        let mut known = self
            .widget_tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if known.get(widget_key).is_some_and(|s| s == tenant_slug) {
            return;
        }
        if known.len() >= MAX_KNOWN_WIDGET_KEYS {
            known.clear();
        }
        known.insert(widget_key.to_string(), tenant_slug.to_string());
    }

    fn count_session_refusal(&self, tenant: String, reason: SessionRefusal) {
        *self
            .session_refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((tenant, reason))
            .or_insert(0) += 1;
    }

    /// Refused widget sessions so far: `(tenant slug, reason, count)`, sorted.
    pub fn session_refusals(&self) -> Vec<(String, SessionRefusal, u64)> {
        let mut out: Vec<_> = self
            .session_refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((t, r), n)| (t.clone(), *r, *n))
            .collect();
        out.sort();
        out
    }

    /// Refused widget sessions of the tenant `tenant_slug` for `reason` so far.
    pub fn session_refusals_of(&self, tenant_slug: &str, reason: SessionRefusal) -> u64 {
        self.session_refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(tenant_slug.to_string(), reason))
            .copied()
            .unwrap_or(0)
    }
}

/// Whole seconds a caller is told to wait (`retry_after`): `wait` rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The `rate_limited` error with `details.retry_after` (seconds).
pub fn rate_limited(wait: Duration, message: &str) -> Error {
    Error::new(ErrorCode::RateLimited, message)
        .with_details(serde_json::json!({ "retry_after": retry_after_secs(wait) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_limiter(rate: Rate) -> Limiter {
        Limiter::with_rates(
            Rates {
                sessions_per_ip: rate,
                sessions_per_tenant: rate,
                messages_per_visitor: rate,
                webhook_per_tenant: rate,
            },
            None,
            true,
        )
    }

    #[tokio::test]
    async fn burst_of_count_then_refused_with_the_interval() {
        let l = local_limiter(Rate::per_minute(3));
        for _ in 0..3 {
            assert!(l.check(Limit::SessionsPerIp, "1.2.3.4").await.is_ok());
        }
        let wait = l
            .check(Limit::SessionsPerIp, "1.2.3.4")
            .await
            .expect_err("fourth is refused");
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20));
        assert_eq!(retry_after_secs(wait), 20);
        assert_eq!(l.rejected(Limit::SessionsPerIp), 1);
        assert!(l.check(Limit::SessionsPerIp, "5.6.7.8").await.is_ok());
        assert!(
            l.check(Limit::SessionsPerTenant, "1.2.3.4").await.is_ok(),
            "limits do not share keys"
        );
    }

    #[tokio::test]
    async fn refill_at_the_steady_rate() {
        let l = local_limiter(Rate {
            count: 2,
            period: Duration::from_secs(1),
        });
        assert!(l.check(Limit::WebhookPerTenant, "t").await.is_ok());
        assert!(l.check(Limit::WebhookPerTenant, "t").await.is_ok());
        assert!(l.check(Limit::WebhookPerTenant, "t").await.is_err());
        // One call's worth (500 ms) later, one more fits; the next one again does not.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(l.check(Limit::WebhookPerTenant, "t").await.is_ok());
        assert!(l.check(Limit::WebhookPerTenant, "t").await.is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
    }
}
