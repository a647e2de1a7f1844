//! The worker loop: claim due lane heads under a lease (lanes take turns), deliver
//! them concurrently, record the outcome — a delivery that ends well leases its lane's
//! next item in the same transaction and goes on with it; wake on enqueue (in-process
//! signal or PostgreSQL NOTIFY) with a fallback poll. On shutdown it stops claiming,
//! lets deliveries finish and gives back any lease it still holds.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::StreamExt;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{Outcome, Wakeup};
use crate::config::WorkerSettings;
use crate::db::{Db, models::OutboxRow, repo};
use crate::domain::{new_id, now_ms};
use crate::error::Result;

/// After a wake-up whose claim found nothing, the next wake-up claims no sooner than
/// this after it. Enqueueing into a lane this worker is delivering (or one waiting for
/// its budget) wakes it for nothing; under a burst — a lane with a backlog takes one
/// message a second while visitors write ten — every commit would cost every worker a
/// claim and a due-time query that find nothing, and those crowd out the deliveries.
/// A delivery that ends, a due time or a first wake-up after anything else still
/// claims at once.
const WAKE_GAP: Duration = Duration::from_millis(10);

/// A delivery that ends well leases its lane's next item in the same transaction and
/// goes on with it (no claim round of its own: a lane scan and a commit fewer per
/// item), up to this many items in a row; then the permit goes back to the claim loop,
/// so lanes with a backlog take turns with the others.
pub const CHAIN: usize = 16;

/// The item a delivery task holds, in the worker's in-flight set (never claimed again
/// by this worker while there); taken out when the task ends, even by a panic.
struct Held {
    set: InFlight,
    id: String,
}

/// The ids of the items a worker's delivery tasks hold.
type InFlight = Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

impl Held {
    fn new(set: &InFlight, id: String) -> Self {
        set.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone());
        Held {
            set: set.clone(),
            id,
        }
    }

    /// Hold `id` instead (the lane's next item, leased by the finishing transaction).
    fn replace(&mut self, id: String) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.id);
        set.insert(id.clone());
        self.id = id;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// Something that can deliver an outbox item.
pub trait Deliver: Send + Sync + 'static {
    /// Attempt one delivery.
    fn deliver(&self, item: &OutboxRow) -> impl Future<Output = Outcome> + Send;

    /// How long until a delivery in `lane` fits the rate budgets, if it does not now
    /// (charging nothing: the delivery charges its calls itself). The worker leaves
    /// such a lane unclaimed and looks again after the wait.
    fn budget_wait(&self, lane: &str) -> Option<Duration> {
        let _ = lane;
        None
    }
}

/// One worker; run several (threads or processes) side by side.
pub struct Worker<D: Deliver> {
    id: String,
    db: Db,
    settings: WorkerSettings,
    delivery: Arc<D>,
    wake: Wakeup,
    panics: crate::tasks::Panics,
    listen_url: Option<String>,
    /// Items this worker is delivering right now (never re-claimed by itself).
    in_flight: InFlight,
    /// The lane of the last item the claim loop leased (the next scan starts after it).
    last_lane: std::sync::Mutex<Option<String>>,
}

impl<D: Deliver> Worker<D> {
    /// A worker over `db` delivering with `delivery`, woken by `wake`; on PostgreSQL also
    /// by NOTIFY on [`Db::listen_url`] (when there is none, every
    /// `settings.poll_interval_ms`).
    pub fn new(db: Db, settings: WorkerSettings, delivery: Arc<D>, wake: Wakeup) -> Self {
        let listen_url = db.listen_url();
        Worker {
            id: new_id("wk"),
            db,
            settings,
            delivery,
            wake,
            panics: crate::tasks::Panics::default(),
            listen_url,
            in_flight: InFlight::default(),
            last_lane: std::sync::Mutex::new(None),
        }
    }

    /// Count (and log) a panic of a delivery or of the notification listener in
    /// `panics` (the application's), instead of losing it with the task.
    pub fn with_panics(mut self, panics: crate::tasks::Panics) -> Self {
        self.panics = panics;
        self
    }

    /// This worker's id (recorded as `leased_by`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Claim up to `limit` due lane heads that the budgets allow. Returns the items
    /// and how long until a budget-blocked lane could go.
    async fn claim(&self, limit: usize) -> Result<(Vec<OutboxRow>, Option<Duration>)> {
        if limit == 0 {
            return Ok((Vec::new(), None));
        }
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        // Index seeks per lane: inline (the claim below is a write and hops as usual).
        let mut heads =
            crate::db::sqlite_inline_reads(repo::outbox::lane_heads(&mut conn, 512)).await?;
        // Lanes take turns when there are more than permits: the scan starts after the
        // lane claimed last.
        let last = self
            .last_lane
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(last) = last {
            // Bytewise (PostgreSQL's collation need not sort lanes so).
            heads.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let after = heads.partition_point(|(lane, _)| *lane <= last);
            heads.rotate_left(after);
        }
        let now = now_ms();
        let mut ids = Vec::new();
        let mut last_claimed = None;
        let mut budget_wait: Option<Duration> = None;
        let mine: std::collections::HashSet<String> = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (lane, head) in heads {
            let Some(id) = head else { continue };
            if mine.contains(&id) {
                continue;
            }
            if ids.len() >= limit {
                break;
            }
            // A lane whose budgets are used up waits unclaimed (holding no lease and no
            // permit); the delivery charges the budgets for each call it makes.
            match self.delivery.budget_wait(&lane) {
                None => {
                    ids.push(id);
                    last_claimed = Some(lane);
                }
                Some(wait) => budget_wait = Some(budget_wait.map_or(wait, |w| w.min(wait))),
            }
        }
        if last_claimed.is_some() {
            *self.last_lane.lock().unwrap_or_else(|p| p.into_inner()) = last_claimed;
        }
        let lease_until = now + self.lease_ms();
        let claimed = repo::outbox::claim(&mut conn, &ids, &self.id, now, lease_until).await?;
        Ok((claimed, budget_wait))
    }

    /// Forget webhook update ids older than two days (Telegram retries for one).
    async fn prune(&self) {
        if let Ok(mut pc) = self.db.conn().await {
            let before = now_ms() - 2 * 24 * 3600 * 1000;
            if let Err(e) = repo::telegram::prune_updates(&mut pc.as_conn(), before).await {
                tracing::warn!(error = %e, "could not prune webhook update ids");
            }
        }
    }

    /// Extend the item's lease every third of the lease time; never returns.
    async fn keep_leased(&self, id: &str) -> std::convert::Infallible {
        let lease_ms = self.lease_ms();
        let every = Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1000).max(100));
        loop {
            tokio::time::sleep(every).await;
            if let Ok(mut pc) = self.db.conn().await {
                let until = now_ms() + lease_ms;
                if let Err(e) =
                    repo::outbox::extend_lease(&mut pc.as_conn(), id, &self.id, until).await
                {
                    tracing::warn!(item = %id, error = %e, "could not extend lease");
                }
            }
        }
    }

    /// Record `outcome`. With `chain`, a delivered item's lane's next item is leased in
    /// the same transaction when it is due, and returned.
    async fn finish(
        &self,
        item: &OutboxRow,
        outcome: Outcome,
        chain: bool,
    ) -> Result<Option<OutboxRow>> {
        let mut pc = self.db.conn().await?;
        let mut conn = pc.as_conn();
        let now = now_ms();
        let label = match &outcome {
            Outcome::Delivered(_) => "delivered",
            Outcome::Retry { counts: false, .. } => "throttled",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
        };
        metrics::counter!("chatorical_outbox_attempts_total", "outcome" => label).increment(1);
        match outcome {
            Outcome::Delivered(carried) => {
                // The Telegram id on the messages it carried, the item (and the
                // followers sent with it: a coalesced send, see `telegram::coalesce`)
                // delivered only while this worker still holds it, and with `chain`
                // the lease on the lane's next item: atomically.
                let sent = match &carried {
                    Some(c) => repo::outbox::Sent {
                        message_ids: &c.message_ids,
                        telegram_message_id: c.telegram_message_id,
                        batch: c.batch,
                    },
                    // Only a message item can have followers, and it says whether it
                    // has; for any other item, look.
                    None => repo::outbox::Sent {
                        message_ids: &[],
                        telegram_message_id: 0,
                        batch: true,
                    },
                };
                let lease_until = chain.then(|| now + self.lease_ms());
                let next = repo::outbox::finish_delivered(
                    &mut conn,
                    item,
                    sent,
                    &self.id,
                    now,
                    lease_until,
                )
                .await?;
                return Ok(next);
            }
            Outcome::Retry {
                after,
                error,
                counts,
            } => {
                let max = i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX);
                if counts && item.attempts >= max {
                    let error = format!("gave up after {} attempts: {error}", item.attempts);
                    tracing::warn!(item = %item.id, %error, "outbox item dead-lettered");
                    let worker = self.id.as_str();
                    crate::transaction!(&mut conn, |tx| {
                        if repo::outbox::mark_dead(tx, &item.id, worker, &error, now).await? {
                            repo::outbox::forget_batch(tx, &item.id).await?;
                        }
                        Ok(())
                    })?;
                } else {
                    let at = now + i64::try_from(after.as_millis()).unwrap_or(i64::MAX / 4);
                    repo::outbox::mark_retry(
                        &mut conn, &item.id, &self.id, at, &error, !counts, now,
                    )
                    .await?;
                }
            }
            Outcome::Dead { error } => {
                tracing::warn!(item = %item.id, %error, "outbox item dead-lettered");
                // Followers recorded with it go on their own.
                let worker = self.id.as_str();
                crate::transaction!(&mut conn, |tx| {
                    if repo::outbox::mark_dead(tx, &item.id, worker, &error, now).await? {
                        repo::outbox::forget_batch(tx, &item.id).await?;
                    }
                    Ok(())
                })?;
            }
        }
        Ok(None)
    }

    /// The lease time in milliseconds.
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.lease_secs).unwrap_or(30) * 1000
    }

    /// Run until `shutdown` is cancelled.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if let Some(url) = self.listen_url.clone() {
            self.panics.spawn(
                "outbox notification listener",
                listen_for_notifications(url, self.wake.clone(), shutdown.clone()),
            );
        }
        let permits = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        // Without a URL to LISTEN on (PostgreSQL through a transaction pooler and no
        // `database.listen_url`) only this process's wake-ups and the poll remain.
        let wakeups = match (&self.listen_url, self.db.backend()) {
            (Some(_), _) => "notify",
            (None, crate::db::Backend::Postgres) => "poll",
            (None, crate::db::Backend::Sqlite) => "in-process",
        };
        tracing::info!(worker = %self.id, wakeups, poll_ms = poll.as_millis() as u64, "outbox worker started");
        let mut last_prune: Option<std::time::Instant> = None;
        // Whether this claim follows a wake-up (when it finds nothing, the next wake-up
        // waits out `WAKE_GAP`).
        let mut woken = false;
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                last_prune = Some(std::time::Instant::now());
                self.prune().await;
            }
            let (claimed, budget_wait) = match self.claim(permits.available_permits()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(worker = %self.id, error = %e, "outbox claim failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    continue;
                }
            };
            let got_any = !claimed.is_empty();
            let idle_wake_at = (woken && !got_any).then(std::time::Instant::now);
            woken = false;
            for item in claimed {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let me = self.clone();
                let watch = me.panics.clone();
                let shutdown = shutdown.clone();
                let mut held = Held::new(&me.in_flight, item.id.clone());
                tasks.spawn(watch.watch("outbox delivery", async move {
                    let mut item = item;
                    let mut delivered = 0;
                    loop {
                        // Keep the lease alive while the delivery runs (slow Bot API calls).
                        let outcome = tokio::select! {
                            o = me.delivery.deliver(&item) => o,
                            never = me.keep_leased(&item.id) => match never {},
                        };
                        delivered += 1;
                        // The lane's next item, when its budgets let it go now.
                        let chain = delivered < CHAIN
                            && !shutdown.is_cancelled()
                            && me.delivery.budget_wait(&item.lane).is_none();
                        let next = me.finish(&item, outcome, chain).await.unwrap_or_else(|e| {
                            // The lease runs out and another attempt follows.
                            tracing::warn!(item = %item.id, error = %e, "could not record outbox outcome");
                            None
                        });
                        // Stopping: a lease just taken is given back with the others.
                        let Some(next) = next.filter(|_| !shutdown.is_cancelled()) else {
                            break;
                        };
                        held.replace(next.id.clone());
                        item = next;
                    }
                    drop(held);
                    drop(permit);
                }));
            }
            if got_any {
                continue;
            }
            let mut wait = poll;
            if let Some(w) = budget_wait {
                wait = wait.min(w.max(Duration::from_millis(5)));
            }
            // With every permit taken nothing can be claimed before a delivery ends
            // (`join_next` below wakes the loop), so the next due time is not needed.
            if permits.available_permits() > 0
                && let Ok(mut pc) = self.db.conn().await
                && let Ok(Some(due)) =
                    crate::db::sqlite_inline_reads(repo::outbox::next_due(&mut pc.as_conn())).await
            {
                let ms = u64::try_from((due - now_ms()).max(1)).unwrap_or(1);
                wait = wait.min(Duration::from_millis(ms));
            }
            woken = tokio::select! {
                _ = self.wake.notified() => true,
                _ = tokio::time::sleep(wait) => false,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => false,
                _ = shutdown.cancelled() => false,
            };
            if woken && let Some(at) = idle_wake_at {
                let rest = WAKE_GAP.saturating_sub(at.elapsed());
                if !rest.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(rest) => {}
                        Some(_) = tasks.join_next(), if !tasks.is_empty() => woken = false,
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
        // Let deliveries in flight finish, within the lease; then give back leases.
        let drain = Duration::from_secs(self.settings.lease_secs.clamp(1, 10));
        let _ =
            tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
        tasks.abort_all();
        // An aborted delivery may be inside a transaction that cannot stop halfway
        // (it may lease its lane's next item): wait for it, then give back every lease.
        while tasks.join_next().await.is_some() {}
        if let Ok(mut pc) = self.db.conn().await {
            match repo::outbox::release_all(&mut pc.as_conn(), &self.id, now_ms()).await {
                Ok(n) if n > 0 => {
                    tracing::info!(worker = %self.id, released = n, "released leases")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(worker = %self.id, error = %e, "could not release leases"),
            }
        }
        tracing::info!(worker = %self.id, "outbox worker stopped");
    }
}

/// LISTEN on the outbox channel and turn notifications into wake-ups; reconnects.
async fn listen_for_notifications(url: String, wake: Wakeup, shutdown: CancellationToken) {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    while !shutdown.is_cancelled() {
        let conn = AsyncPgConnection::establish(&url).await;
        let Ok(mut conn) = conn else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = shutdown.cancelled() => return,
            }
        };
        if diesel::sql_query(format!("LISTEN {}", super::NOTIFY_CHANNEL))
            .execute(&mut conn)
            .await
            .is_err()
        {
            continue;
        }
        // Anything enqueued while we were not listening is picked up by this wake.
        wake.wake();
        let mut stream = Box::pin(conn.notifications_stream());
        loop {
            tokio::select! {
                n = stream.next() => match n {
                    Some(Ok(_)) => wake.wake(),
                    _ => break,
                },
                _ = shutdown.cancelled() => return,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
