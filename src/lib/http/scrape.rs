//! `/metrics`: the scrape handler (gauges refreshed from the database and this
//! process first) and the middleware that counts requests by route.
//!
//! `config/prometheus/chatorical.rules.yml` (alerts) and `config/grafana/chatorical.json`
//! (dashboard) query these names; `tests/process/dashboards.rs` checks each one is here.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::domain::now_ms;
use crate::metrics::{authorize_scrape, install};

use super::{AppState, error::ApiError};

/// Middleware: requests by route, method and status, with a latency histogram.
pub(crate) async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("chatorical_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("chatorical_http_request_duration_seconds", "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    resp
}

/// `GET /metrics` in the Prometheus text format.
pub(crate) async fn render(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize_scrape(&state.settings.telemetry, &headers) {
        let mut resp = ApiError(e).into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"metrics\""),
        );
        return resp;
    }
    let Some(handle) = install() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response();
    };
    refresh_gauges(&state).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    )
        .into_response()
}

async fn refresh_gauges(state: &AppState) {
    // What /readyz answers, as gauges: alerts see a node that cannot serve even when
    // nothing probes /readyz.
    let db_up = matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), state.db.ping()).await,
        Ok(Ok(()))
    );
    metrics::gauge!("chatorical_dependency_up", "dependency" => "database")
        .set(f64::from(u8::from(db_up)));
    let mut ready = db_up;
    if let Some(cluster) = &state.cluster {
        let redis_up = cluster.ping().await;
        metrics::gauge!("chatorical_dependency_up", "dependency" => "redis")
            .set(f64::from(u8::from(redis_up)));
        ready &= redis_up;
    }
    metrics::gauge!("chatorical_ready").set(f64::from(u8::from(ready)));
    // Whether rate limits let calls through while Redis is unreachable (the alert on a
    // Redis outage says which).
    let fail_open = state.cluster.is_some() && state.settings.redis.limits_fail_open;
    metrics::gauge!("chatorical_rate_limit_fail_open").set(f64::from(u8::from(fail_open)));
    // Counters without labels start at zero, so rate() and the dashboard read 0, not
    // "no data", before the first event.
    for name in [
        "chatorical_panics_total",
        "chatorical_heap_trims_total",
        "chatorical_outbox_coalesced_sends_total",
        "chatorical_outbox_coalesced_messages_total",
        "chatorical_message_write_batches_total",
        "chatorical_message_write_batched_total",
        "chatorical_message_write_batch_retries_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("chatorical_sockets_open").set(
        state
            .metrics
            .sockets_open
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    let c = state.metrics.connections.snapshot();
    metrics::counter!("chatorical_connections_accepted_total").absolute(c.accepted);
    metrics::gauge!("chatorical_connections_open").set(c.open as f64);
    metrics::gauge!("chatorical_connections_limit").set(c.limit as f64);
    for (reason, n) in [
        ("max_connections", c.rejected_max),
        ("max_connections_per_ip", c.rejected_per_ip),
    ] {
        metrics::counter!("chatorical_connections_rejected_total", "reason" => reason).absolute(n);
    }
    for (phase, n) in [("headers", c.timed_out_head), ("idle", c.timed_out_idle)] {
        metrics::counter!("chatorical_connections_timed_out_total", "phase" => phase).absolute(n);
    }
    for (error, n) in [
        ("out_of_file_descriptors", c.accept_out_of_fds),
        ("other", c.accept_other),
    ] {
        metrics::counter!("chatorical_accept_errors_total", "error" => error).absolute(n);
    }
    metrics::gauge!("chatorical_hub_subscribers").set(state.chat.hub().subscriber_count() as f64);
    for (outcome, n) in state.webhook.snapshot() {
        metrics::counter!("chatorical_webhook_updates_total", "outcome" => outcome).absolute(n);
    }
    for (limit, n) in state.limiter.snapshot() {
        metrics::counter!("chatorical_rate_limit_rejections_total", "limit" => limit).absolute(n);
    }
    for (tenant, reason, n) in state.limiter.session_refusals() {
        metrics::counter!("chatorical_session_refusals_total", "tenant" => tenant, "reason" => reason.as_str())
            .absolute(n);
    }
    metrics::counter!("chatorical_rate_limit_redis_errors_total")
        .absolute(state.limiter.redis_errors());
    metrics::counter!("chatorical_ws_sockets_closed_total", "reason" => "visitor_cap")
        .absolute(state.sockets.evicted());
    metrics::counter!("chatorical_ws_upgrades_refused_total", "reason" => "ip_cap")
        .absolute(state.sockets.refused());
    for outcome in crate::telegram::typing::TypingOutcome::ALL {
        metrics::counter!("chatorical_typing_actions_total", "outcome" => outcome.as_str())
            .absolute(state.typing.count(outcome));
    }
    if let Ok(g) = crate::outbox::admin::gauges(&state.db).await {
        for (status, n) in g.counts {
            metrics::gauge!("chatorical_outbox_items", "status" => status.as_str()).set(n as f64);
        }
        let oldest = g
            .oldest_pending_at
            .map_or(0.0, |at| ((now_ms() - at).max(0) as f64) / 1000.0);
        metrics::gauge!("chatorical_outbox_oldest_pending_seconds").set(oldest);
    }
    // The backlog per tenant and lane: one grouped query over the pending items.
    if let Ok((_, lanes)) =
        crate::outbox::backlog::snapshot(&state.db, &state.settings.worker, None).await
    {
        crate::outbox::backlog::publish_gauges(&state.metrics.backlog, &lanes);
    }
}
