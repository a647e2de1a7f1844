//! Long polling: for tenants in `polling` mode a worker calls getUpdates instead of
//! Telegram calling our webhook — a laptop, a staging box or a server behind NAT needs
//! no public URL.
//!
//! One [`Poller`] runs per worker process (inside `serve` with the embedded worker, and
//! in `chatorical worker`). Every `worker.poll_interval_ms` it looks for polling
//! tenants whose bot nobody polls and runs one long poll per such bot, under a lease
//! in `telegram_configs` (`poll_leased_by`, `poll_lease_until`, renewed before every
//! getUpdates): with several workers exactly one polls a bot, and a crashed worker's
//! bots are taken over when its leases run out.
//!
//! Every update goes through [`webhook::handle_update`], as the webhook's do (dedup by
//! update id, edits, `/subject`, quotas, metrics), and its transaction also stores the
//! next offset (its id + 1) — only while this worker still holds the lease — so a kill
//! at any point neither loses nor repeats an update: the next poll (here or in another
//! worker) asks Telegram from exactly there, and the update-id dedup catches anything
//! Telegram sends twice. An offset stored more than a day ago is not used (Telegram
//! keeps updates for 24 hours and may restart its numbering after a quiet week).
//!
//! A 409 Conflict (a webhook is set, or another program polls the same bot) is logged
//! once, shown by `telegram status` and retried every `telegram.poll_backoff_secs`;
//! other errors back off from one second up to that.

use std::{collections::HashMap, sync::Arc, time::Duration};

use teloxide::{
    Bot, RequestError,
    payloads::GetUpdatesSetters,
    prelude::{Request, Requester},
    types::Update,
};
use tokio_util::sync::CancellationToken;

use super::setup::{ALLOWED_UPDATES, short};
use super::webhook::{self, UpdateHandler};
use super::{Bots, description};
use crate::config::Settings;
use crate::db::{
    models::{TelegramConfigRow, TelegramPollRow},
    repo,
};
use crate::domain::{TenantId, new_id, now_ms};
use crate::error::Result;

/// An offset stored longer ago than this is not used: Telegram keeps updates for a day.
const OFFSET_FRESH_MS: i64 = 24 * 3600 * 1000;

/// Failures of one update (with the database reachable) before the poll moves past it,
/// as Telegram stops retrying a webhook that keeps failing.
const MAX_UPDATE_ATTEMPTS: u32 = 5;

/// The long poll of every polling tenant's bot that this process holds the lease for.
pub struct Poller {
    id: String,
    bots: Arc<Bots>,
    handler: UpdateHandler,
    timeout_secs: u32,
    backoff: Duration,
    lease_ms: i64,
    scan_every: Duration,
    panics: crate::tasks::Panics,
}

/// How one getUpdates round ended.
enum Round {
    /// Poll again at once.
    Again,
    /// Wait this long first.
    Wait(Duration),
    /// Another worker polls this bot now, or the tenant left polling mode: stop.
    Stop,
}

impl Poller {
    /// A poller handling updates with `handler`, its timings from `settings`
    /// (`telegram.poll_timeout_secs`, `telegram.poll_backoff_secs`,
    /// `worker.poll_interval_ms`; the lease lasts the long poll plus `worker.lease_secs`).
    pub fn new(settings: &Settings, bots: Arc<Bots>, handler: UpdateHandler) -> Self {
        let timeout_secs = settings.telegram.poll_timeout_secs.clamp(1, 50);
        let lease_secs = timeout_secs + settings.worker.lease_secs.max(1);
        Poller {
            id: new_id("poll"),
            bots,
            handler,
            timeout_secs: u32::try_from(timeout_secs).unwrap_or(25),
            backoff: Duration::from_secs(settings.telegram.poll_backoff_secs.max(1)),
            lease_ms: i64::try_from(lease_secs).unwrap_or(60) * 1000,
            scan_every: Duration::from_millis(settings.worker.poll_interval_ms.max(10)),
            panics: crate::tasks::Panics::default(),
        }
    }

    /// Count (and log) a panic of a tenant's poll in `panics` (the application's).
    pub fn with_panics(mut self, panics: crate::tasks::Panics) -> Self {
        self.panics = panics;
        self
    }

    /// This poller's id (recorded as `poll_leased_by`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Poll until `shutdown` is cancelled; then give back every lease.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        tracing::info!(poller = %self.id, "telegram poller started");
        while !shutdown.is_cancelled() {
            running.retain(|_, task| !task.is_finished());
            match self.pollable().await {
                Ok(tenants) => {
                    for tenant in tenants {
                        if running.contains_key(&tenant) {
                            continue;
                        }
                        let me = self.clone();
                        let stop = shutdown.clone();
                        let id = tenant.clone();
                        let task = self
                            .panics
                            .spawn("telegram poll", async move { me.poll(id, stop).await });
                        running.insert(tenant, task);
                    }
                }
                Err(e) => {
                    tracing::warn!(poller = %self.id, error = %e, "could not look for bots to poll")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.scan_every) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        for (_, task) in running {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        tracing::info!(poller = %self.id, "telegram poller stopped");
    }

    async fn pollable(&self) -> Result<Vec<String>> {
        let mut pc = self.handler.db().conn().await?;
        repo::telegram::pollable(&mut pc.as_conn(), &self.id, now_ms()).await
    }

    /// Take (or renew) the lease on the tenant's updates; its connection and the
    /// poll's state if held.
    async fn lease(&self, tenant_id: &str) -> Result<Option<(TelegramConfigRow, TelegramPollRow)>> {
        let mut pc = self.handler.db().conn().await?;
        let now = now_ms();
        repo::telegram::lease_poll(
            &mut pc.as_conn(),
            tenant_id,
            &self.id,
            now,
            now + self.lease_ms,
        )
        .await
    }

    /// Record what getUpdates said (best effort); whether the database took it.
    async fn record(&self, tenant_id: &str, error: Option<&str>) -> bool {
        let recorded = match self.handler.db().conn().await {
            Ok(mut pc) => {
                repo::telegram::record_poll(&mut pc.as_conn(), tenant_id, &self.id, error, now_ms())
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &recorded {
            tracing::warn!(tenant = %tenant_id, error = %e, "could not record the poll's outcome");
        }
        recorded.is_ok()
    }

    /// One tenant's long poll, while this poller holds the lease.
    async fn poll(self: Arc<Self>, tenant_id: String, shutdown: CancellationToken) {
        let mut bot: Option<(String, Bot)> = None;
        let mut state = PollState::default();
        let mut leased = false;
        while !shutdown.is_cancelled() {
            let (cfg, poll) = match self.lease(&tenant_id).await {
                Ok(Some(held)) => held,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(tenant = %tenant_id, error = %e, "could not renew the poll lease");
                    if pause(self.backoff.min(Duration::from_secs(5)), &shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            if !leased {
                leased = true;
                tracing::info!(tenant = %tenant_id, poller = %self.id, "polling the tenant's bot");
            }
            let current = match &bot {
                Some((enc, b)) if *enc == cfg.bot_token_enc => b.clone(),
                _ => match self.bots.poller_for_tenant(&cfg) {
                    Ok(b) => {
                        bot = Some((cfg.bot_token_enc.clone(), b.clone()));
                        b
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %tenant_id, error = %e, "cannot open the bot token");
                        self.record(&tenant_id, Some("the bot token cannot be decrypted"))
                            .await;
                        if pause(self.backoff, &shutdown).await {
                            break;
                        }
                        continue;
                    }
                },
            };
            match self
                .round(&current, &cfg, &poll, &mut state, &shutdown)
                .await
            {
                Round::Again => {}
                Round::Wait(wait) => {
                    if pause(wait, &shutdown).await {
                        break;
                    }
                }
                Round::Stop => break,
            }
        }
        if let Ok(mut pc) = self.handler.db().conn().await
            && let Ok(true) =
                repo::telegram::release_poll(&mut pc.as_conn(), &tenant_id, &self.id).await
        {
            tracing::info!(tenant = %tenant_id, poller = %self.id, "stopped polling the tenant's bot");
        }
    }

    /// One getUpdates and the updates it brought.
    /// Only the long poll itself is cut short by `shutdown`: updates it brought are
    /// handled to the end (each in its own transaction).
    async fn round(
        &self,
        bot: &Bot,
        cfg: &TelegramConfigRow,
        poll: &TelegramPollRow,
        state: &mut PollState,
        shutdown: &CancellationToken,
    ) -> Round {
        let tenant_id = cfg.tenant_id.as_str();
        let now = now_ms();
        let offset = poll
            .poll_offset
            .filter(|_| {
                poll.poll_offset_at
                    .is_some_and(|at| now - at < OFFSET_FRESH_MS)
            })
            .and_then(|o| i32::try_from(o).ok());
        let mut request = bot
            .get_updates()
            .timeout(self.timeout_secs)
            .allowed_updates(ALLOWED_UPDATES.to_vec());
        if let Some(offset) = offset {
            request = request.offset(offset);
        }
        let answer = tokio::select! {
            answer = request.send() => answer,
            _ = shutdown.cancelled() => return Round::Stop,
        };
        let updates: Vec<Update> = match answer {
            Ok(updates) => updates,
            Err(e) if is_conflict(&e) => return self.conflict(cfg, &e, state).await,
            Err(e) => {
                metrics::counter!("chatorical_telegram_polls_total", "outcome" => "error")
                    .increment(1);
                state.failures = state.failures.saturating_add(1);
                let error = short(&e);
                tracing::warn!(tenant = %tenant_id, error = %error, "getUpdates failed; backing off");
                self.record(tenant_id, Some(&error)).await;
                return Round::Wait(self.error_wait(state.failures));
            }
        };
        metrics::counter!("chatorical_telegram_polls_total", "outcome" => "ok").increment(1);
        state.failures = 0;
        state.conflict_logged = false;
        self.record(tenant_id, None).await;
        if updates.is_empty() {
            return Round::Again;
        }
        // The connection as it is now (the long poll may have waited a while): paused,
        // another group… exactly what the webhook would see.
        let fresh = match self.handler.db().conn().await {
            Ok(mut pc) => repo::telegram::get(&mut pc.as_conn(), tenant_id).await,
            Err(e) => Err(e),
        };
        let cfg = match fresh {
            Ok(Some(fresh)) if fresh.bot_id == cfg.bot_id => fresh,
            Ok(_) => return Round::Stop,
            Err(e) => {
                tracing::warn!(tenant = %tenant_id, error = %e, "could not read the connection; asking again");
                state.failures = state.failures.saturating_add(1);
                return Round::Wait(self.error_wait(state.failures));
            }
        };
        let cfg = &cfg;
        let tenant = TenantId::from(tenant_id);
        for update in &updates {
            let update_id = i64::from(update.id.0);
            match webhook::handle_update(&self.handler, &tenant, cfg, update, Some(&self.id)).await
            {
                Ok(_) => state.update_failures = None,
                Err(e) if webhook::is_lease_lost(&e) => return Round::Stop,
                Err(e) => return self.update_failed(cfg, update_id, &e, state).await,
            }
        }
        Round::Again
    }

    /// getUpdates answered 409: a webhook is set, or another program polls the bot.
    async fn conflict(
        &self,
        cfg: &TelegramConfigRow,
        e: &RequestError,
        state: &mut PollState,
    ) -> Round {
        let tenant_id = cfg.tenant_id.as_str();
        // Switched to webhook meanwhile, or another worker took over: not an error.
        match self.lease(tenant_id).await {
            Ok(Some(_)) => {}
            Ok(None) => return Round::Stop,
            Err(_) => return Round::Wait(self.backoff),
        }
        metrics::counter!("chatorical_telegram_polls_total", "outcome" => "conflict").increment(1);
        let text = match e {
            RequestError::Api(api) => description(api),
            other => other.to_string(),
        };
        let error = if text.starts_with("Conflict") {
            format!("409 {text}")
        } else {
            format!("409 Conflict: {text}")
        };
        if !state.conflict_logged {
            state.conflict_logged = true;
            tracing::warn!(
                tenant = %tenant_id,
                bot = %cfg.bot_username,
                error = %error,
                retry_secs = self.backoff.as_secs(),
                "Telegram refuses getUpdates for this bot: a webhook is set, or another \
                 program polls it. Delete the webhook or stop the other program \
                 (`chatorical telegram status` shows this); polling retries every \
                 retry_secs seconds"
            );
        }
        self.record(tenant_id, Some(&error)).await;
        Round::Wait(self.backoff)
    }

    /// Handling `update_id` failed (the database, most likely): ask again from the
    /// stored offset after a wait. An update that keeps failing while the database
    /// answers is skipped after [`MAX_UPDATE_ATTEMPTS`].
    async fn update_failed(
        &self,
        cfg: &TelegramConfigRow,
        update_id: i64,
        e: &crate::error::Error,
        state: &mut PollState,
    ) -> Round {
        let tenant_id = cfg.tenant_id.as_str();
        tracing::warn!(tenant = %tenant_id, update_id, error = %e, "could not handle a polled update; asking again");
        let error = format!("update {update_id} could not be handled: {}", e.code);
        let attempts = match state.update_failures {
            Some((id, n)) if id == update_id => n + 1,
            _ => 1,
        };
        state.failures = state.failures.saturating_add(1);
        // Counted only while the database answers: an outage is waited out.
        if !self.record(tenant_id, Some(&error)).await {
            return Round::Wait(self.error_wait(state.failures));
        }
        state.update_failures = Some((update_id, attempts));
        if attempts >= MAX_UPDATE_ATTEMPTS {
            tracing::error!(tenant = %tenant_id, update_id, attempts, "skipping an update that keeps failing");
            if let Ok(mut pc) = self.handler.db().conn().await {
                let mut conn = pc.as_conn();
                let skipped = repo::telegram::advance_offset(
                    &mut conn,
                    tenant_id,
                    cfg.bot_id,
                    &self.id,
                    update_id + 1,
                    now_ms(),
                )
                .await;
                if matches!(skipped, Ok(true)) {
                    state.update_failures = None;
                }
            }
        }
        Round::Wait(self.error_wait(state.failures))
    }

    /// 1 s, 2 s, 4 s … up to `telegram.poll_backoff_secs`.
    fn error_wait(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(16);
        Duration::from_secs(1u64 << exp).min(self.backoff)
    }
}

/// A tenant's poll's memory between rounds.
#[derive(Debug, Default)]
struct PollState {
    /// Failed rounds in a row.
    failures: u32,
    /// The 409 of this streak was logged.
    conflict_logged: bool,
    /// The update that failed last, and how often in a row.
    update_failures: Option<(i64, u32)>,
}

/// Wait `wait` unless shut down first; `true` when shut down.
async fn pause(wait: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = shutdown.cancelled() => true,
    }
}

/// Whether getUpdates was refused with 409 Conflict: a webhook is set, or another
/// getUpdates for the same bot is running.
pub fn is_conflict(e: &RequestError) -> bool {
    match e {
        RequestError::Api(
            teloxide::ApiError::TerminatedByOtherGetUpdates | teloxide::ApiError::CantGetUpdates,
        ) => true,
        RequestError::Api(api) => {
            let d = description(api).to_ascii_lowercase();
            d.starts_with("conflict") || d.contains("webhook is active")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(description: &str) -> RequestError {
        #[derive(serde::Deserialize)]
        struct Wrapped {
            data: teloxide::ApiError,
        }
        let body = serde_json::json!({ "data": description }).to_string();
        let wrapped: Wrapped = serde_json::from_str(&body).expect("an ApiError");
        RequestError::Api(wrapped.data)
    }

    #[test]
    fn conflicts_are_recognised_as_telegram_words_them() {
        for text in [
            "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            "can't use getUpdates method while webhook is active",
        ] {
            assert!(is_conflict(&api(text)), "{text}");
        }
        assert!(!is_conflict(&api("Bad Request: chat not found")));
        assert!(!is_conflict(&api("Unauthorized")));
    }
}
