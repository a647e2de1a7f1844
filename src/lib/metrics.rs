//! Prometheus metrics: the process-wide recorder, and who may scrape it. Counters and
//! histograms are recorded where things happen; `http::scrape` serves `/metrics` and
//! refreshes the gauges read from the database and the process.
//!
//! Tenant ids never become labels (their number is unbounded); routes are the
//! matched templates, never raw paths. One exception, so that an operator sees which
//! tenant's widget is being flooded: `chatorical_session_refusals_total{tenant,reason}`
//! counts refused widget sessions by tenant slug (only tenants that had a refusal, so
//! at most one series per tenant and reason; widget keys that match no tenant share
//! the `(unknown)` label, so strangers cannot add series) and reason (`ip` or `tenant`).
//! Likewise `chatorical_retention_purged_total{tenant,kind}` counts the rows retention
//! deleted by tenant slug (only tenants it deleted something for) and kind
//! (`conversations`, `messages`, `outbox`, `visitors`, `visitor_tokens`).

use std::sync::OnceLock;

use axum::http::{HeaderMap, header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::TelemetrySettings;
use crate::error::{Error, ErrorCode, Result};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process-wide recorder (once; later calls reuse it).
pub(crate) fn install() -> Option<PrometheusHandle> {
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

/// Whether a scrape with these headers may read the metrics: always when
/// `telemetry.metrics_token` is unset, else only with `Authorization: Bearer <token>`
/// (compared in constant time, as SHA-256 digests so the length does not show either).
pub(crate) fn authorize_scrape(settings: &TelemetrySettings, headers: &HeaderMap) -> Result<()> {
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
