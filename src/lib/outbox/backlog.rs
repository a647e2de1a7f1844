//! The visible backlog: per tenant and lane (one Telegram group), how many items wait,
//! how long the oldest has waited, and how long the lane needs to drain at its budget.
//!
//! One library operation ([`summary`]) serves `GET /v1/admin/outbox/summary` and
//! `chatorical outbox status`; `/metrics` shows the same numbers ([`publish_gauges`]).
//! All of them read [`snapshot`]: one grouped query over the pending rows.
//!
//! The drain estimate is the lane's budget, not a measured rate: items ÷ the number of
//! calls the lane's budgets allow a minute (the tightest of the bot's, the chat's and
//! the group's: 20 a minute with the shipped settings). It is a lower bound — the first
//! message of a new conversation costs three calls (topic, opening card, message) —
//! and ignores waits that are not budget (a 429's `retry_after`, a paused connection).
//!
//! The [`Monitor`] runs next to the outbox workers: when a lane's oldest item has
//! waited `worker.backlog_warn_secs`, it logs a warning (at most once a minute per lane
//! and process) and queues ONE notice into the group's General topic, through the
//! outbox like every other call into the group (budgeted, in order), suggesting a
//! relay bot. It is not posted again until the backlog has cleared (the oldest item
//! younger than a quarter of the threshold, or none); whether it was posted is kept in
//! `outbox_backlog`, so any number of workers and processes post it once.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::{Job, TelegramLane, Wakeup, budget::message_rates};
use crate::config::WorkerSettings;
use crate::db::{Db, repo};
use crate::domain::{Resource, Scope, ScopeAccess, TenantId, now_ms, rfc3339};
use crate::error::Result;
use crate::tenancy::{Caller, Tenant};

/// The backlog of one lane.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct LaneBacklog {
    /// The tenant's id.
    pub tenant_id: String,
    /// The tenant's slug.
    pub tenant: String,
    /// The lane (`tg:<tenant id>:<chat id>…`: one Telegram group).
    pub lane: String,
    /// The Telegram group's chat id, for a Telegram lane.
    pub chat_id: Option<i64>,
    /// Items waiting: queued, or in flight right now.
    pub items: i64,
    /// Of those, in flight right now.
    pub in_flight: i64,
    /// RFC 3339: when the oldest waiting item was queued.
    pub oldest_queued_at: String,
    /// Seconds the oldest waiting item has waited.
    pub oldest_age_secs: f64,
    /// Calls a minute the lane's budgets allow (the tightest of bot, chat and group).
    pub budget_per_min: f64,
    /// Estimated seconds until the lane has drained: `items` ÷ `budget_per_min`
    /// (a lower bound: see the module docs).
    pub drain_secs: f64,
    /// Whether the backlog notice was posted in this backlog episode.
    pub notice_posted: bool,
}

/// Every lane with a backlog, as one caller may see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BacklogSummary {
    /// RFC 3339: when the outbox was read.
    pub at: String,
    /// Seconds after which a lane's backlog is warned about (`worker.backlog_warn_secs`;
    /// 0: never).
    pub warn_after_secs: u64,
    /// The lanes with waiting items, by tenant slug and lane.
    pub lanes: Vec<LaneBacklog>,
}

/// Calls a minute the lane's budgets allow: the tightest of its rates, in real time
/// (`worker.budget_time_scale` shortens the windows, so it multiplies the rate).
pub fn budget_per_min(settings: &WorkerSettings, lane: &str) -> f64 {
    message_rates(settings, lane)
        .iter()
        .map(|(_, r)| f64::from(r.max.max(1)) * 60.0 / r.per.as_secs_f64().max(1e-6))
        .fold(f64::INFINITY, f64::min)
}

/// Every lane with pending items (of `tenant`, or all) at `at` (epoch ms, taken before
/// the query): one grouped query, one for the slugs, one for the episodes.
pub async fn snapshot(
    db: &Db,
    settings: &WorkerSettings,
    tenant: Option<&TenantId>,
) -> Result<(i64, Vec<LaneBacklog>)> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let at = now_ms();
    let tenant = tenant.map(TenantId::as_str);
    let pending = repo::outbox::pending_by_lane(&mut conn, tenant).await?;
    if pending.is_empty() {
        return Ok((at, Vec::new()));
    }
    let mut ids: Vec<String> = pending.iter().map(|p| p.tenant_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let slugs: HashMap<String, String> = repo::tenants::slugs(&mut conn, &ids)
        .await?
        .into_iter()
        .collect();
    let running: HashSet<String> = repo::backlog::running(&mut conn, tenant)
        .await?
        .into_iter()
        .map(|(lane, _)| lane)
        .collect();
    let mut lanes: Vec<LaneBacklog> = pending
        .into_iter()
        .map(|p| {
            let per_min = budget_per_min(settings, &p.lane);
            LaneBacklog {
                tenant: slugs.get(&p.tenant_id).cloned().unwrap_or_default(),
                chat_id: TelegramLane::parse(&p.lane).map(|l| l.chat_id),
                items: p.items,
                in_flight: p.in_flight,
                oldest_queued_at: rfc3339(p.oldest_at),
                oldest_age_secs: secs(at - p.oldest_at),
                budget_per_min: round3(per_min),
                drain_secs: round3(p.items as f64 * 60.0 / per_min),
                notice_posted: running.contains(&p.lane),
                tenant_id: p.tenant_id,
                lane: p.lane,
            }
        })
        .collect();
    lanes.sort_by(|a, b| (&a.tenant, &a.lane).cmp(&(&b.tenant, &b.lane)));
    Ok((at, lanes))
}

fn secs(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// The backlog the caller may see (`outbox:read`): of `tenant` when given (a tenant
/// key only its own: another is `not_found`), else a tenant key's own lanes, and a
/// platform key's or an operator's view of every tenant.
pub async fn summary(
    db: &Db,
    caller: &Caller,
    settings: &WorkerSettings,
    tenant: Option<&Tenant>,
) -> Result<BacklogSummary> {
    caller.require(&Scope::new(Resource::Outbox, ScopeAccess::Read))?;
    let only = match tenant {
        Some(t) => {
            caller.check_tenant(t)?;
            Some(t.id.clone())
        }
        None => caller.own_tenant().cloned(),
    };
    let (at, lanes) = snapshot(db, settings, only.as_ref()).await?;
    Ok(BacklogSummary {
        at: rfc3339(at),
        warn_after_secs: settings.backlog_warn_secs,
        lanes,
    })
}

/// The backlog series this process has shown in `/metrics`, so that a lane whose
/// backlog cleared shows 0 instead of its last numbers. Series exist only for lanes
/// that had a backlog since the process started (labels: tenant slug and lane).
#[derive(Debug, Default)]
pub struct BacklogSeries {
    shown: Mutex<HashSet<(String, String)>>,
}

/// Set the backlog gauges from a [`snapshot`] of every tenant:
/// `chatorical_outbox_backlog_items`, `chatorical_outbox_backlog_oldest_seconds` and
/// `chatorical_outbox_backlog_drain_seconds`, by `tenant` (slug) and `lane`.
pub fn publish_gauges(series: &BacklogSeries, lanes: &[LaneBacklog]) {
    let mut shown = series.shown.lock().unwrap_or_else(|p| p.into_inner());
    let mut now_shown = HashSet::new();
    for l in lanes {
        let labels = [("tenant", l.tenant.clone()), ("lane", l.lane.clone())];
        metrics::gauge!("chatorical_outbox_backlog_items", &labels).set(l.items as f64);
        metrics::gauge!("chatorical_outbox_backlog_oldest_seconds", &labels).set(l.oldest_age_secs);
        metrics::gauge!("chatorical_outbox_backlog_drain_seconds", &labels).set(l.drain_secs);
        now_shown.insert((l.tenant.clone(), l.lane.clone()));
    }
    for (tenant, lane) in shown.difference(&now_shown) {
        let labels = [("tenant", tenant.clone()), ("lane", lane.clone())];
        metrics::gauge!("chatorical_outbox_backlog_items", &labels).set(0.0);
        metrics::gauge!("chatorical_outbox_backlog_oldest_seconds", &labels).set(0.0);
        metrics::gauge!("chatorical_outbox_backlog_drain_seconds", &labels).set(0.0);
    }
    shown.extend(now_shown);
}

/// What one [`Monitor::check`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Lanes whose oldest item waited past the threshold.
    pub over: usize,
    /// Notices this check queued (episodes it started).
    pub notices: usize,
    /// Episodes this check ended (backlogs that cleared).
    pub cleared: usize,
}

/// Warns about lanes whose backlog grew old, and posts the notice once per episode.
pub struct Monitor {
    db: Db,
    settings: WorkerSettings,
    wake: Wakeup,
    /// When each lane was last warned about in the log (by this process).
    logged: Mutex<HashMap<String, Instant>>,
}

/// How often [`Monitor::spawn`] checks: a quarter of `worker.backlog_warn_secs`,
/// between 250 ms and 5 s.
pub fn check_interval(settings: &WorkerSettings) -> Duration {
    let quarter = settings.backlog_warn_secs.saturating_mul(250);
    Duration::from_millis(quarter.clamp(250, 5000))
}

/// A lane is warned about in the log at most this often (per process).
const LOG_EVERY: Duration = Duration::from_secs(60);

impl Monitor {
    /// A monitor over `db` with the workers' settings; wakes `wake` after queuing a
    /// notice.
    pub fn new(db: Db, settings: WorkerSettings, wake: Wakeup) -> Self {
        Monitor {
            db,
            settings,
            wake,
            logged: Mutex::new(HashMap::new()),
        }
    }

    /// One look at the outbox: warn about (and post the notice for) lanes over the
    /// threshold, end the episodes of lanes that cleared.
    pub async fn check(&self) -> Result<Checked> {
        let mut out = Checked::default();
        let warn_ms =
            i64::try_from(self.settings.backlog_warn_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        if warn_ms == 0 {
            return Ok(out);
        }
        let (seen_at, lanes) = snapshot(&self.db, &self.settings, None).await?;
        let age = |l: &LaneBacklog| (l.oldest_age_secs * 1000.0) as i64;
        for lane in &lanes {
            if age(lane) < warn_ms || TelegramLane::parse(&lane.lane).is_none() {
                continue;
            }
            out.over += 1;
            self.log(lane);
            if !lane.notice_posted && self.post_notice(lane, seen_at).await? {
                out.notices += 1;
            }
        }
        // Episodes of lanes that cleared: nothing waiting, or only young items.
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        for (lane, _) in repo::backlog::running(&mut conn, None).await? {
            let waiting = lanes
                .iter()
                .find(|l| l.lane == lane)
                .is_some_and(|l| age(l) * 4 >= warn_ms);
            if !waiting && repo::backlog::end_episode(&mut conn, &lane, seen_at, now_ms()).await? {
                tracing::info!(%lane, "outbox backlog cleared");
                out.cleared += 1;
            }
        }
        if out.notices > 0 {
            self.wake.wake();
        }
        Ok(out)
    }

    fn log(&self, lane: &LaneBacklog) {
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged
            .get(&lane.lane)
            .is_some_and(|t| now.duration_since(*t) < LOG_EVERY)
        {
            return;
        }
        logged.retain(|_, t| now.duration_since(*t) < LOG_EVERY);
        logged.insert(lane.lane.clone(), now);
        tracing::warn!(
            tenant = %lane.tenant,
            lane = %lane.lane,
            items = lane.items,
            oldest_secs = lane.oldest_age_secs,
            drain_secs = lane.drain_secs,
            "outbox backlog: the oldest item of a Telegram group has waited past \
             worker.backlog_warn_secs; a relay bot (chatorical telegram add-relay) raises \
             the group's budget"
        );
    }

    /// Start the lane's episode and queue its notice, in one transaction; only for a
    /// connection that is on and a plan that includes Telegram (a paused connection's
    /// backlog is not the budget's doing). Returns whether this call queued it.
    async fn post_notice(&self, lane: &LaneBacklog, seen_at: i64) -> Result<bool> {
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        let Some(cfg) = repo::telegram::get(&mut conn, &lane.tenant_id).await? else {
            return Ok(false);
        };
        if !cfg.enabled
            || !crate::plans::for_tenant(&mut conn, &lane.tenant_id)
                .await?
                .channels
                .telegram
        {
            return Ok(false);
        }
        let job = Job::SendText {
            text: notice_text(lane),
            topic_id: None,
        };
        let tenant_id = TenantId::from(lane.tenant_id.as_str());
        let now = now_ms();
        let queued = crate::transaction!(&mut conn, |tx| {
            let Some(episode) =
                repo::backlog::start_episode(tx, &lane.lane, &lane.tenant_id, seen_at, now).await?
            else {
                return Ok(false);
            };
            let key = format!("backlog_notice_{}_{episode}", lane.lane);
            super::enqueue(tx, &tenant_id, &job, &key, &lane.lane, now).await
        })?;
        if queued {
            tracing::warn!(tenant = %lane.tenant, lane = %lane.lane, "outbox backlog notice queued for the group");
        }
        Ok(queued)
    }

    /// Check every [`Monitor::interval`] until `shutdown`.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if self.settings.backlog_warn_secs == 0 {
                return;
            }
            let mut tick = tokio::time::interval(check_interval(&self.settings));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = self.check().await {
                    tracing::warn!(error = %e, "outbox backlog check failed; retrying");
                }
            }
        })
    }
}

/// The notice: what waits, why, and what to do. No texts, no secrets.
fn notice_text(lane: &LaneBacklog) -> String {
    let age = lane.oldest_age_secs.round() as i64;
    format!(
        "Telegram is falling behind: {items} items wait to be posted in this group, the \
         oldest for {age} s. One bot may post about {per_min} messages a minute into a group. \
         Add a relay bot to post faster: chatorical telegram add-relay --tenant {tenant} \
         --bot-token-file FILE",
        items = lane.items,
        per_min = lane.budget_per_min.round() as i64,
        tenant = lane.tenant,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_of_a_lane_is_its_tightest_rate_in_real_time() {
        let s = WorkerSettings::default();
        let lane = super::super::telegram_lane("tn_1", -100);
        assert!((budget_per_min(&s, &lane) - 20.0).abs() < 1e-9);
        let scaled = WorkerSettings {
            budget_time_scale: 10,
            ..WorkerSettings::default()
        };
        assert!((budget_per_min(&scaled, &lane) - 200.0).abs() < 1e-6);
        let chat_bound = WorkerSettings {
            per_group_per_min: 1_000,
            ..WorkerSettings::default()
        };
        assert!((budget_per_min(&chat_bound, &lane) - 60.0).abs() < 1e-9);
    }

    #[test]
    fn the_monitor_checks_four_times_per_threshold_within_bounds() {
        let m = |secs| WorkerSettings {
            backlog_warn_secs: secs,
            ..WorkerSettings::default()
        };
        assert_eq!(check_interval(&m(60)), Duration::from_secs(5));
        assert_eq!(check_interval(&m(8)), Duration::from_secs(2));
        assert_eq!(check_interval(&m(1)), Duration::from_millis(250));
    }
}
