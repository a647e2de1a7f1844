//! Retention: what a tenant's retention no longer keeps is deleted.
//!
//! A tenant's retention is its plan's `retention_days` (none: forever), shortened —
//! never lengthened — by the setting `retention_days` ([`effective_days`]) of each of
//! its environments (production, staging: each has its own settings).
//! [`run`] deletes, per tenant and environment, the closed conversations closed before the cutoff
//! (now minus the retention) with their messages and outbox items, then the visitors
//! no conversation refers to any more that were last seen before the cutoff, with
//! their device tokens. A tenant that opted in (`telegram.delete_topics_on_retention`)
//! also gets each deleted conversation's forum topic deleted, through the outbox
//! ([`Job::DeleteTopic`]).
//!
//! The work goes in batches of bounded size ([`Batches`]: conversations or visitors,
//! and messages, per transaction), each its own short transaction, with a pause in
//! between at least as long as the batch took, that lets other writers in (on SQLite
//! a write transaction holds up every writer) and keeps retention to about half of
//! the database's time at most; on SQLite retention also checkpoints the write-ahead
//! log after each batch, so that a chat write's commit does not pay for its pages. Nothing has to be resumed after a crash: a batch is all or nothing, and a
//! later run finds what is still due. Several runs at once (workers in several
//! processes) split the work: a batch picks its rows with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, and SQLite runs write transactions one at a time; counts are the rows
//! each run actually deleted. Each run records one `retention.purged` audit entry per
//! tenant it deleted something for, and counts deleted rows in
//! `chatorical_retention_purged_total{tenant,kind}`.
//!
//! The worker ([`spawn`], in `serve`'s embedded worker and `chatorical worker`) runs it
//! for every tenant every `retention.interval_secs`, with the audit log's own
//! retention ([`crate::audit::purge_expired`]); operators run it with
//! `chatorical retention run`.

use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::audit::{self, Action, Entry};
use crate::config::RetentionSettings;
use crate::db::{Conn, Db, repo};
use crate::domain::{Environment, Resource, Scope, ScopeAccess, TenantId, now_ms, rfc3339};
use crate::error::{Error, Result};
use crate::outbox::{self, Job, Wakeup};
use crate::tenancy::{self, Caller, Tenant};
use crate::transaction;

/// One day in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// A tenant's retention in days: the plan's, shortened (never lengthened) by the
/// tenant's own setting; `None` keeps everything. A zero counts as unset.
pub fn effective_days(plan: Option<u32>, setting: Option<u32>) -> Option<u32> {
    let plan = plan.filter(|d| *d > 0);
    let setting = setting.filter(|d| *d > 0);
    match (plan, setting) {
        (Some(p), Some(s)) => Some(p.min(s)),
        (p, s) => p.or(s),
    }
}

/// How much one transaction deletes at most, and the pause between two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batches {
    /// Conversations (or visitors) per transaction.
    pub conversations: i64,
    /// Messages per transaction (a conversation with more goes in parts).
    pub messages: i64,
    /// Least pause between two transactions; a batch that took longer is followed by
    /// a pause as long as it took. Zero: no pause at all.
    pub pause: Duration,
}

impl Batches {
    /// The batches the settings say (`retention.batch_size`, `retention.batch_messages`,
    /// `retention.pause_ms`).
    pub fn from_settings(s: &RetentionSettings) -> Self {
        Batches {
            conversations: i64::from(s.batch_size.max(1)),
            messages: i64::from(s.batch_messages.max(1)),
            pause: Duration::from_millis(s.pause_ms),
        }
    }
}

impl Default for Batches {
    fn default() -> Self {
        Batches::from_settings(&RetentionSettings::default())
    }
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// One tenant (slug); `None`: every tenant (a tenant key: its own).
    pub tenant: Option<String>,
    /// Count what would be deleted; change nothing.
    pub dry_run: bool,
    /// Batch sizes and the pause between batches.
    pub batches: Batches,
    /// Stop between two batches once cancelled (what was done stays done).
    pub stop: CancellationToken,
}

/// Rows deleted (or, in a dry run, that would be).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Closed conversations.
    pub conversations: u64,
    /// Their messages.
    pub messages: u64,
    /// Their outbox items.
    pub outbox: u64,
    /// Visitors no conversation referred to any more.
    pub visitors: u64,
    /// Those visitors' device tokens.
    pub visitor_tokens: u64,
    /// Forum topics queued for deletion (`deleteForumTopic`), for tenants that opted in.
    pub topics: u64,
}

impl Purged {
    /// Add `other` to these counts.
    pub fn add(&mut self, other: &Purged) {
        self.conversations += other.conversations;
        self.messages += other.messages;
        self.outbox += other.outbox;
        self.visitors += other.visitors;
        self.visitor_tokens += other.visitor_tokens;
        self.topics += other.topics;
    }

    /// Whether nothing was deleted.
    pub fn is_empty(&self) -> bool {
        *self == Purged::default()
    }

    /// The deleted rows by kind, as counted in `chatorical_retention_purged_total`.
    pub fn rows(&self) -> [(&'static str, u64); 5] {
        [
            ("conversations", self.conversations),
            ("messages", self.messages),
            ("outbox", self.outbox),
            ("visitors", self.visitors),
            ("visitor_tokens", self.visitor_tokens),
        ]
    }
}

/// One tenant environment's part of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TenantRun {
    /// The tenant's slug.
    pub tenant: String,
    /// The tenant's id.
    pub tenant_id: String,
    /// The environment (each has its own settings, so its own retention).
    pub environment: Environment,
    /// The effective retention; `null`: kept forever (nothing to do).
    pub retention_days: Option<u32>,
    /// RFC 3339: conversations closed and visitors last seen before this are due.
    pub cutoff: Option<String>,
    /// What was deleted (or would be, in a dry run).
    pub purged: Purged,
    /// Why this part of the run stopped early (what was deleted before stays deleted).
    pub error: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether this was a dry run (nothing deleted).
    pub dry_run: bool,
    /// Per tenant (in slug order) and environment (production first).
    pub tenants: Vec<TenantRun>,
    /// The sum over the tenants.
    pub total: Purged,
}

impl Report {
    /// Whether some tenant's run failed.
    pub fn failed(&self) -> bool {
        self.tenants.iter().any(|t| t.error.is_some())
    }
}

/// Where a run is, for a progress bar: conversations and visitors done, of those due
/// when it started (across the tenants of the run).
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The tenant being worked on (slug).
    pub tenant: &'a str,
    /// Conversations and visitors deleted (or counted) so far.
    pub done: u64,
    /// Conversations and visitors due when the run started.
    pub total: u64,
}

/// A tenant with the retention of each of its environments worked out.
struct TenantDue {
    tenant: Tenant,
    envs: Vec<Due>,
    /// Whether the tenant opted in to topic deletion (and has Telegram connected).
    topics: bool,
}

/// One environment of a tenant with its retention worked out.
struct Due {
    environment: Environment,
    days: Option<u32>,
    cutoff: Option<i64>,
    /// What is due now (all of it for a dry run, else conversations and visitors for
    /// progress), or the error reading it.
    counts: Result<repo::retention::DueCounts>,
}

/// Run retention (`conversations:write` and `visitors:write`): for one tenant (`slug`;
/// a tenant key only its own) or, for a platform caller, every tenant; in each of the
/// tenant's environments with that environment's retention. A dry run counts what
/// would be deleted and changes nothing. A tenant whose run fails is reported with its
/// error (what was deleted before stays deleted) and the others still run. `progress`
/// is called after every batch.
pub async fn run(
    db: &Db,
    caller: &Caller,
    opts: &Options,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Report> {
    caller.require(&Scope::new(Resource::Conversations, ScopeAccess::Write))?;
    caller.require(&Scope::new(Resource::Visitors, ScopeAccess::Write))?;
    let tenants = match caller.resolve_tenant(db, opts.tenant.as_deref()).await? {
        Some(t) => vec![t],
        None => {
            tenancy::platform_only(caller)?;
            let rows = {
                let mut pc = db.conn().await?;
                repo::tenants::list(&mut pc.as_conn()).await?
            };
            let mut tenants = Vec::with_capacity(rows.len());
            for row in rows {
                // A tenant whose settings cannot be read keeps everything.
                match Tenant::from_row(row) {
                    Ok(t) => tenants.push(t),
                    Err(e) => tracing::warn!(error = %e, "retention skips a tenant"),
                }
            }
            tenants.sort_by(|a, b| a.slug.cmp(&b.slug));
            tenants
        }
    };
    let now = now_ms();
    let mut due = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        due.push(work_out(db, tenant, now, opts.dry_run).await?);
    }
    let total: u64 = due
        .iter()
        .flat_map(|t| &t.envs)
        .filter_map(|d| d.counts.as_ref().ok())
        .map(|c| (c.conversations + c.visitors).max(0) as u64)
        .sum();
    let mut done = 0u64;
    let mut report = Report {
        dry_run: opts.dry_run,
        tenants: Vec::with_capacity(due.len()),
        total: Purged::default(),
    };
    for t in due {
        let mut summary = Vec::new();
        for d in t.envs {
            let mut tr = TenantRun {
                tenant: t.tenant.slug.clone(),
                tenant_id: t.tenant.id.to_string(),
                environment: d.environment,
                retention_days: d.days,
                cutoff: d.cutoff.map(rfc3339),
                purged: Purged::default(),
                error: None,
            };
            let (Some(cutoff), Some(days)) = (d.cutoff, d.days) else {
                report.tenants.push(tr);
                continue;
            };
            let counts = match d.counts {
                Ok(c) => c,
                Err(e) => {
                    tr.error = Some(e.message);
                    report.tenants.push(tr);
                    continue;
                }
            };
            if opts.dry_run {
                tr.purged = Purged {
                    conversations: counts.conversations.max(0) as u64,
                    messages: counts.messages.max(0) as u64,
                    outbox: counts.outbox.max(0) as u64,
                    visitors: counts.visitors.max(0) as u64,
                    visitor_tokens: counts.visitor_tokens.max(0) as u64,
                    topics: if t.topics {
                        counts.topics.max(0) as u64
                    } else {
                        0
                    },
                };
                done += tr.purged.conversations + tr.purged.visitors;
                progress(Progress {
                    tenant: &tr.tenant,
                    done,
                    total,
                });
            } else {
                let mut on_batch = |batch: &Purged| {
                    done += batch.conversations + batch.visitors;
                    progress(Progress {
                        tenant: &t.tenant.slug,
                        done,
                        // The due set only shrinks after the count (the cutoff is
                        // fixed): never past the end all the same.
                        total: total.max(done),
                    });
                };
                let target = Target {
                    tenant: &t.tenant,
                    environment: d.environment,
                    cutoff,
                };
                let purged = purge(db, &target, opts, &mut on_batch).await;
                tr.purged = purged.purged;
                tr.error = purged.error.map(|e| e.message);
                if !tr.purged.is_empty() {
                    summary.push((d.environment, days, cutoff, tr.purged));
                }
                if let Some(e) = &tr.error {
                    tracing::warn!(tenant = %t.tenant.slug, environment = d.environment.as_str(),
                        error = %e, "retention stopped early");
                }
            }
            report.total.add(&tr.purged);
            report.tenants.push(tr);
        }
        if summary.is_empty() {
            continue;
        }
        let mut sum = Purged::default();
        for (_, _, _, p) in &summary {
            sum.add(p);
        }
        tracing::info!(
            tenant = %t.tenant.slug,
            conversations = sum.conversations,
            messages = sum.messages,
            visitors = sum.visitors,
            topics = sum.topics,
            "retention purged"
        );
        if let Err(e) = summarize(db, caller, &t.tenant.id, &sum, &summary).await
            && let Some(tr) = report
                .tenants
                .iter_mut()
                .rev()
                .find(|tr| tr.tenant == t.tenant.slug)
        {
            tr.error.get_or_insert(e.message);
        }
    }
    Ok(report)
}

/// A tenant's environments (production first, then those it created) with their
/// retention, cutoff and what is due now (all of it for a dry run, else the
/// conversations and visitors a progress bar counts).
async fn work_out(db: &Db, tenant: Tenant, now: i64, full: bool) -> Result<TenantDue> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let plan = crate::plans::for_tenant(&mut conn, &tenant.id)
        .await?
        .limits
        .retention_days;
    let mut settings = vec![(Environment::Production, tenant.settings.retention_days)];
    for row in repo::environments::list(&mut conn, &tenant.id).await? {
        let environment = Environment::from_stored(&row.environment);
        match serde_json::from_str::<tenancy::TenantSettings>(&row.settings) {
            Ok(s) => settings.push((environment, s.retention_days)),
            // Unreadable settings: the environment keeps everything.
            Err(e) => tracing::warn!(tenant = %tenant.slug, environment = environment.as_str(),
                error = %e, "retention skips an environment"),
        }
    }
    let mut envs = Vec::with_capacity(settings.len());
    for (environment, setting) in settings {
        let days = effective_days(plan, setting);
        let cutoff = days.map(|d| now - i64::from(d) * DAY_MS);
        let counts = match cutoff {
            Some(cutoff) => {
                repo::retention::count_due(
                    &mut conn,
                    &tenant.id,
                    environment.as_str(),
                    cutoff,
                    full,
                )
                .await
            }
            None => Ok(Default::default()),
        };
        envs.push(Due {
            environment,
            days,
            cutoff,
            counts,
        });
    }
    let topics = repo::telegram::get(&mut conn, &tenant.id)
        .await?
        .is_some_and(|c| c.delete_topics_on_retention);
    Ok(TenantDue {
        tenant,
        envs,
        topics,
    })
}

/// What a purge works on: one environment of a tenant, up to a cutoff.
struct Target<'a> {
    tenant: &'a Tenant,
    environment: Environment,
    cutoff: i64,
}

/// What one purge deleted, and the error that stopped it early, if any.
struct Outcome {
    purged: Purged,
    error: Option<Error>,
}

/// Delete the due conversations of the target, then its unused visitors, a batch per
/// transaction, until nothing is due (or `opts.stop`).
async fn purge(
    db: &Db,
    target: &Target<'_>,
    opts: &Options,
    on_batch: &mut impl FnMut(&Purged),
) -> Outcome {
    let mut purged = Purged::default();
    let mut phase = Phase::Conversations;
    loop {
        if opts.stop.is_cancelled() {
            break;
        }
        let started = std::time::Instant::now();
        let batch = match phase {
            Phase::Conversations => conversations_batch(db, target, &opts.batches).await,
            Phase::Visitors => visitors_batch(db, target, &opts.batches).await,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                return Outcome {
                    purged,
                    error: Some(e),
                };
            }
        };
        let Some(batch) = batch else {
            match phase {
                Phase::Conversations => {
                    phase = Phase::Visitors;
                    continue;
                }
                Phase::Visitors => break,
            }
        };
        tracing::debug!(
            tenant = %target.tenant.slug,
            environment = target.environment.as_str(),
            ms = started.elapsed().as_millis() as u64,
            conversations = batch.conversations,
            messages = batch.messages,
            visitors = batch.visitors,
            "retention batch"
        );
        count_metrics(&target.tenant.slug, &batch);
        purged.add(&batch);
        on_batch(&batch);
        // SQLite: the batch's pages leave the log here, not in a chat write's commit.
        if let Err(e) = checkpoint(db).await {
            tracing::debug!(error = %e, "retention checkpoint");
        }
        if !opts.batches.pause.is_zero() {
            // At least as long as the batch took: retention holds the database (and on
            // SQLite the write lock) at most about half the time.
            let pause = opts.batches.pause.max(started.elapsed());
            tokio::select! {
                _ = opts.stop.cancelled() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        } else {
            // Still let queued writers of this process go first.
            tokio::task::yield_now().await;
        }
    }
    Outcome {
        purged,
        error: None,
    }
}

async fn checkpoint(db: &Db) -> Result<()> {
    let mut pc = db.conn().await?;
    repo::retention::checkpoint(&mut pc.as_conn()).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Conversations,
    Visitors,
}

fn count_metrics(slug: &str, batch: &Purged) {
    for (kind, n) in batch.rows() {
        if n > 0 {
            metrics::counter!(
                "chatorical_retention_purged_total",
                "tenant" => slug.to_string(),
                "kind" => kind
            )
            .increment(n);
        }
    }
}

/// One transaction of due conversations: up to `batches.conversations` of them with
/// at most about `batches.messages` messages between them, deleted with their
/// messages and outbox items (and their topics queued for deletion when the tenant
/// opted in); or, for a conversation longer than that, `batches.messages` of its
/// messages. `None` when nothing is due.
async fn conversations_batch(
    db: &Db,
    target: &Target<'_>,
    batches: &Batches,
) -> Result<Option<Purged>> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let now = now_ms();
    let tenant_id = &target.tenant.id;
    let environment = target.environment.as_str();
    let cutoff = target.cutoff;
    transaction!(&mut conn, |tx| {
        let due = repo::retention::lock_due_conversations(
            tx,
            tenant_id,
            environment,
            cutoff,
            batches.conversations,
        )
        .await?;
        let Some(first) = due.first() else {
            return Ok(None);
        };
        let mut purged = Purged::default();
        let take = if first.last_seq > batches.messages {
            // A long conversation: its messages in parts, the conversation after the last.
            let n =
                repo::retention::delete_some_messages(tx, tenant_id, &first.id, batches.messages)
                    .await? as u64;
            purged.messages += n;
            if n >= batches.messages as u64 {
                return Ok(Some(purged));
            }
            1
        } else {
            let mut budget = batches.messages;
            due.iter()
                .take_while(|c| {
                    let fits = c.last_seq <= budget;
                    budget -= c.last_seq.min(budget);
                    fits
                })
                .count()
                .max(1)
        };
        let ids: Vec<String> = due.iter().take(take).map(|c| c.id.clone()).collect();
        purged.outbox += repo::retention::delete_outbox(tx, tenant_id, &ids).await? as u64;
        purged.messages += repo::retention::delete_messages(tx, tenant_id, &ids).await? as u64;
        let deleted =
            repo::retention::delete_conversations(tx, tenant_id, environment, &ids, cutoff).await?;
        purged.conversations += deleted.len() as u64;
        purged.topics += queue_topic_deletions(tx, target, &deleted, now).await?;
        Ok(Some(purged))
    })
}

/// Queue `deleteForumTopic` for the topics of deleted conversations when the tenant
/// opted in (read in the deleting transaction), in the group the environment's topics
/// are in (staging's own group, or the tenant's); the number queued. The tenant
/// group's default topic is never deleted.
async fn queue_topic_deletions(
    tx: &mut Conn<'_>,
    target: &Target<'_>,
    deleted: &[(String, Option<i64>)],
    now: i64,
) -> Result<u64> {
    if deleted.iter().all(|(_, topic)| topic.is_none()) {
        return Ok(0);
    }
    let tenant_id = &target.tenant.id;
    let Some(cfg) = repo::telegram::get(tx, tenant_id)
        .await?
        .filter(|c| c.delete_topics_on_retention)
    else {
        return Ok(0);
    };
    let group =
        crate::telegram::group_for(tx, tenant_id, target.environment, cfg.group_chat_id).await?;
    let default_topic = cfg.default_topic_id.filter(|_| group == cfg.group_chat_id);
    let lane = outbox::telegram_lane(tenant_id, group);
    let mut queued = 0;
    for (conversation_id, topic) in deleted {
        let Some(topic_id) = *topic else { continue };
        if default_topic == Some(topic_id) {
            continue;
        }
        let job = Job::DeleteTopic {
            chat_id: group,
            topic_id,
        };
        let key = format!("retention_delete_topic_{conversation_id}");
        if outbox::enqueue(tx, tenant_id, &job, &key, &lane, now).await? {
            queued += 1;
        }
    }
    Ok(queued)
}

/// One transaction of unused visitors: up to `batches.conversations` of them, with
/// their device tokens. `None` when none is due.
async fn visitors_batch(db: &Db, target: &Target<'_>, batches: &Batches) -> Result<Option<Purged>> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    let tenant_id = &target.tenant.id;
    let environment = target.environment.as_str();
    let cutoff = target.cutoff;
    transaction!(&mut conn, |tx| {
        let ids = repo::retention::lock_unused_visitors(
            tx,
            tenant_id,
            environment,
            cutoff,
            batches.conversations,
        )
        .await?;
        if ids.is_empty() {
            return Ok(None);
        }
        let visitor_tokens =
            repo::retention::delete_visitor_tokens(tx, tenant_id, &ids).await? as u64;
        let visitors = repo::retention::delete_visitors(tx, tenant_id, environment, &ids, cutoff)
            .await? as u64;
        Ok(Some(Purged {
            visitors,
            visitor_tokens,
            ..Default::default()
        }))
    })
}

/// The run's one `retention.purged` entry for the tenant (its own transaction: the
/// batches were each theirs): the counts, and per environment its retention, cutoff
/// and counts.
async fn summarize(
    db: &Db,
    caller: &Caller,
    tenant_id: &TenantId,
    sum: &Purged,
    by_environment: &[(Environment, u32, i64, Purged)],
) -> Result<()> {
    let counts = |p: &Purged| {
        serde_json::json!({
            "conversations": p.conversations,
            "messages": p.messages,
            "outbox": p.outbox,
            "visitors": p.visitors,
            "visitor_tokens": p.visitor_tokens,
            "topics": p.topics,
        })
    };
    let mut changes = counts(sum);
    let environments: serde_json::Map<String, serde_json::Value> = by_environment
        .iter()
        .map(|(env, days, cutoff, p)| {
            let mut v = counts(p);
            v["retention_days"] = (*days).into();
            v["cutoff"] = rfc3339(*cutoff).into();
            (env.as_str().to_string(), v)
        })
        .collect();
    changes["environments"] = serde_json::Value::Object(environments);
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    transaction!(&mut conn, |tx| {
        audit::record(
            tx,
            caller,
            Entry::new(Action::RetentionPurged)
                .tenant(tenant_id)
                .target(tenant_id.to_string())
                .changes(changes.clone()),
        )
        .await
    })
}

/// The first run after the worker starts: a minute later (no database work racing
/// start-up), or one interval when that is shorter.
const FIRST_RUN_AFTER: Duration = Duration::from_secs(60);

/// Run retention for every tenant, then the audit log's retention, every
/// `settings.interval_secs` until `shutdown` (which also stops a run between two
/// batches). Started next to the outbox workers (`serve`'s embedded worker,
/// `chatorical worker`); workers in several processes share the work.
pub fn spawn(
    db: Db,
    wake: Wakeup,
    settings: RetentionSettings,
    audit_retention_days: u32,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs(settings.interval_secs.max(1));
        let mut wait = every.min(FIRST_RUN_AFTER);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = every;
            let opts = Options {
                tenant: None,
                dry_run: false,
                batches: Batches::from_settings(&settings),
                stop: shutdown.clone(),
            };
            match run(&db, &Caller::System, &opts, |_| {}).await {
                Ok(report) => {
                    if report.total.topics > 0 {
                        wake.wake();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "retention run failed"),
            }
            if shutdown.is_cancelled() {
                break;
            }
            if let Err(e) = audit::purge_expired(&db, audit_retention_days).await {
                tracing::warn!(error = %e, "audit log retention failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_setting_only_shortens_the_plans_retention() {
        assert_eq!(effective_days(Some(30), None), Some(30));
        assert_eq!(effective_days(Some(30), Some(7)), Some(7));
        assert_eq!(effective_days(Some(30), Some(365)), Some(30));
        // A plan that keeps everything: the tenant may still choose a retention.
        assert_eq!(effective_days(None, Some(90)), Some(90));
        assert_eq!(effective_days(None, None), None);
        // Zero is unset, never "delete everything at once".
        assert_eq!(effective_days(Some(0), Some(0)), None);
        assert_eq!(effective_days(Some(30), Some(0)), Some(30));
    }

    #[test]
    fn purged_counts_add_up_and_name_their_kinds() {
        let mut a = Purged {
            conversations: 1,
            messages: 10,
            ..Default::default()
        };
        assert!(!a.is_empty());
        a.add(&Purged {
            visitors: 2,
            visitor_tokens: 3,
            topics: 1,
            outbox: 4,
            ..Default::default()
        });
        assert_eq!(
            a.rows(),
            [
                ("conversations", 1),
                ("messages", 10),
                ("outbox", 4),
                ("visitors", 2),
                ("visitor_tokens", 3)
            ]
        );
        assert_eq!(a.topics, 1);
        assert!(Purged::default().is_empty());
    }
}
