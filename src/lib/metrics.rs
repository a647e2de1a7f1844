//! Prometheus metrics: counters and histograms recorded where things happen, gauges
//! read from the database and the process when `/metrics` is scraped.
//!
//! Tenant ids never become labels (their number is unbounded); routes are the
//! matched templates, never raw paths. One exception, so that an operator sees which
//! tenant's widget is being flooded: `chatorical_session_refusals_total{tenant,reason}`
//! counts refused widget sessions by tenant slug (only tenants that had a refusal, so
//! at most one series per tenant and reason; widget keys that match no tenant share
//! the `(unknown)` label, so strangers cannot add series) and reason (`ip` or `tenant`).

use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::TelemetrySettings;
use crate::db::repo;
use crate::domain::now_ms;
use crate::error::{Error, ErrorCode, Result};
use crate::http::{AppState, error::ApiError};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process-wide recorder (once; later calls reuse it).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .ok()
                .and_then(|b| b.install_recorder().ok())
        })
        .clone()
}

/// Middleware: requests by route, method and status, with a latency histogram.
pub async fn track_http(req: Request, next: Next) -> Response {
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

/// Whether a scrape with these headers may read the metrics: always when
/// `telemetry.metrics_token` is unset, else only with `Authorization: Bearer <token>`
/// (compared in constant time, as SHA-256 digests so the length does not show either).
pub fn authorize_scrape(settings: &TelemetrySettings, headers: &HeaderMap) -> Result<()> {
    let Some(token) = &settings.metrics_token else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(presented) = presented else {
        return Err(Error::new(
            ErrorCode::Unauthorized,
            "metrics need Authorization: Bearer <telemetry.metrics_token>",
        ));
    };
    let want = Sha256::digest(token.expose().as_bytes());
    let got = Sha256::digest(presented.as_bytes());
    if bool::from(want.ct_eq(&got)) {
        Ok(())
    } else {
        Err(Error::new(ErrorCode::Unauthorized, "wrong metrics token"))
    }
}

/// `GET /metrics` in the Prometheus text format.
pub async fn render(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
    metrics::gauge!("chatorical_sockets_open").set(
        state
            .metrics
            .sockets_open
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    let c = state.metrics.connections.snapshot();
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
    if let Ok(mut pc) = state.db.conn().await {
        let mut conn = pc.as_conn();
        for status in crate::outbox::OutboxStatus::ALL.map(|s| s.as_str()) {
            if let Ok(n) = repo::outbox::count_by_status(&mut conn, status).await {
                metrics::gauge!("chatorical_outbox_items", "status" => status).set(n as f64);
            }
        }
        if let Ok(Some(oldest)) = repo::outbox::oldest_pending(&mut conn).await {
            metrics::gauge!("chatorical_outbox_oldest_pending_seconds")
                .set(((now_ms() - oldest).max(0) as f64) / 1000.0);
        } else {
            metrics::gauge!("chatorical_outbox_oldest_pending_seconds").set(0.0);
        }
    }
}
