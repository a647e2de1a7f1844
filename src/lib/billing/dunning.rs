//! Dunning: a tenant whose payment failed keeps its plan for `billing.stripe.grace_days`
//! (the grace period starts with the first failure — `invoice.payment_failed` or the
//! subscription turning `past_due` — see [`super::subscription::Tracked::reconcile`]);
//! if nothing is paid by then, [`run_due`] puts it on `free`, once, and tells its
//! agents. A payment (`invoice.paid`, or the subscription active again) ends the grace
//! period, or the downgrade.
//!
//! [`run_due`] runs every [`RUN_EVERY`] inside whatever runs outbox workers (`serve`
//! with the embedded worker, `chatorical worker`); several processes may run it at
//! once: each tenant is downgraded in a transaction that re-checks it under the
//! tenant's row lock.
//!
//! The notices (one when a payment fails, one at the downgrade) go into the General
//! topic of the tenant's Telegram group, when Telegram is connected, through the
//! outbox (`Job::SendText` without a topic, one idempotency key per event).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::subscription::{Tracked, enforce};
use crate::db::{Conn, Db, repo};
use crate::domain::{TenantId, now_ms, rfc3339};
use crate::error::Result;
use crate::outbox::{self, Job, Wakeup};
use crate::transaction;

/// How often the worker looks for grace periods that ended.
pub const RUN_EVERY: Duration = Duration::from_secs(60);

/// Tenants downgraded per query.
const BATCH: i64 = 100;

/// What one [`run_due`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DunningRun {
    /// Tenants put on `free` because their grace period ended unpaid.
    pub downgraded: Vec<TenantId>,
    /// Telegram notices queued (wake the outbox when not zero).
    pub notices: usize,
}

/// Downgrade every tenant whose grace period ended by `now` (epoch ms) to `free`, each
/// in its own transaction, and queue their notices. Idempotent: a tenant is downgraded
/// once per unpaid grace period, however often (and in however many processes) this
/// runs.
pub async fn run_due(db: &Db, now: i64) -> Result<DunningRun> {
    let mut run = DunningRun::default();
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    loop {
        let due = repo::billing_subscriptions::grace_ended(&mut conn, now, BATCH).await?;
        let last_batch = (due.len() as i64) < BATCH;
        for tenant_id in due {
            let tenant_id = TenantId::from(tenant_id);
            if let Some(noticed) = downgrade(&mut conn, &tenant_id, now).await? {
                tracing::info!(tenant = %tenant_id, "grace period ended unpaid: tenant moved to the free plan");
                run.notices += usize::from(noticed);
                run.downgraded.push(tenant_id);
            }
        }
        if last_batch {
            return Ok(run);
        }
    }
}

/// Downgrade one tenant if its grace period still ended by `now`; `Some(noticed)` when
/// it did. What it writes is stamped with the wall clock (`now` only decides: tests
/// pass a time past the deadline, and the notice must still go out at once).
async fn downgrade(conn: &mut Conn<'_>, tenant_id: &TenantId, now: i64) -> Result<Option<bool>> {
    let written = now_ms();
    transaction!(conn, |tx| {
        repo::tenants::lock(tx, tenant_id).await?;
        let Some(row) = repo::billing_subscriptions::get(tx, tenant_id).await? else {
            return Ok(None);
        };
        let mut tracked = Tracked::from_row(row)?;
        let Some(deadline) = tracked.grace_until else {
            return Ok(None);
        };
        if !tracked.grace_expired(now) {
            return Ok(None);
        }
        let enforced = enforce(tx, &tracked, written).await?;
        repo::billing_subscriptions::save(tx, &tracked.to_row(written)).await?;
        if let Some((from, to)) = &enforced.moved {
            let entry = crate::plans::plan_changed(tenant_id, from, to, "dunning");
            crate::audit::record_as(tx, &crate::audit::Actor::System, None, entry).await?;
        }
        let plan = tracked.plan.clone().unwrap_or_else(|| "paid".into());
        let text = format!(
            "Billing: the payment for the {plan} plan is still outstanding after the grace \
             period (ended {}), so the account is now on the free plan and its limits apply. \
             Paying the open invoice restores the {plan} plan.",
            rfc3339(deadline)
        );
        let key = format!("billing_downgraded_{tenant_id}_{deadline}");
        Ok(Some(notify(tx, tenant_id, &text, &key, written).await?))
    })
}

/// Queue `text` for the General topic of the tenant's Telegram group, in the caller's
/// transaction, under `idempotency_key`; false when the tenant has no Telegram
/// connection (or the notice was queued before).
pub(crate) async fn notify(
    tx: &mut Conn<'_>,
    tenant_id: &TenantId,
    text: &str,
    idempotency_key: &str,
    now: i64,
) -> Result<bool> {
    let Some(cfg) = repo::telegram::get(tx, tenant_id).await? else {
        return Ok(false);
    };
    let job = Job::SendText {
        text: text.to_string(),
        topic_id: None,
    };
    let lane = outbox::telegram_lane(tenant_id, cfg.group_chat_id);
    outbox::enqueue(tx, tenant_id, &job, idempotency_key, &lane, now).await
}

/// Run [`run_due`] every `every` until `shutdown` (the first run `every` after the
/// start); wakes this process's outbox workers when notices were queued. Failures are
/// logged and retried at the next tick.
pub fn spawn(
    db: Db,
    wake: Wakeup,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: start one period after start-up instead, when
        // the process is serving.
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match run_due(&db, now_ms()).await {
                Ok(run) if run.notices > 0 => wake.wake(),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "dunning run failed; retrying next time"),
            }
        }
    })
}
