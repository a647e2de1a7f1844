//! Logging, and trace export. Logs are human-readable on a terminal or JSON lines for
//! machines, on stderr so that command output on stdout stays clean for scripts.
//!
//! With the `otlp` cargo feature and `telemetry.otlp_endpoint` set, [`start`] also
//! exports spans over OTLP/HTTP (protobuf) to a collector: batched in a tokio task,
//! flushed by [`Telemetry::shutdown`]. The spans are the ones the logs show — one per
//! HTTP request, named `METHOD /route/{template}` with the tenant and the API key's id;
//! never a raw URI (query strings carry ws tokens) and never a secret, since events
//! inside a span are exported with exactly the fields that they log.

use std::{
    io::IsTerminal,
    sync::atomic::{AtomicBool, Ordering},
};

use tracing_subscriber::{EnvFilter, Layer, Registry, fmt, layer::Layered, prelude::*};

use crate::config::{LogFormat, TelemetrySettings};
use crate::error::Result;

/// Whether spans are being exported (set once by [`start`]).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans; callers add OpenTelemetry-only span fields
/// (`otel.name`, `otel.kind`) only then, to keep the logs unchanged otherwise.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The subscriber below the output layers: the registry and the level filter.
type Filtered = Layered<EnvFilter, Registry>;

/// An output of the subscriber: the log writer, or the span exporter.
type Output = Box<dyn Layer<Filtered> + Send + Sync>;

/// Install the global subscriber (logs only). `RUST_LOG` overrides `filter` when set.
/// Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat, filter: &str) {
    install(format, filter, None);
}

/// Install the global subscriber with logs and, when `telemetry.otlp_endpoint` is set,
/// span export. Call inside the tokio runtime; call [`Telemetry::shutdown`] before
/// exiting so that the last spans reach the collector. The filter applies to both.
pub fn start(format: LogFormat, filter: &str, settings: &TelemetrySettings) -> Result<Telemetry> {
    match settings.otlp_endpoint.as_deref() {
        None => {
            init(format, filter);
            Ok(Telemetry::default())
        }
        Some(endpoint) => start_export(format, filter, endpoint, settings),
    }
}

#[cfg(feature = "otlp")]
fn start_export(
    format: LogFormat,
    filter: &str,
    endpoint: &str,
    settings: &TelemetrySettings,
) -> Result<Telemetry> {
    let provider = otlp::provider(endpoint, settings)?;
    if install(format, filter, Some(otlp::layer(&provider))) {
        EXPORTING.store(true, Ordering::Relaxed);
        tracing::info!(endpoint = %endpoint, service = %settings.service_name, "exporting traces over OTLP/HTTP");
    }
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// Settings validation refuses the endpoint first; this is the last line.
#[cfg(not(feature = "otlp"))]
fn start_export(
    _format: LogFormat,
    _filter: &str,
    _endpoint: &str,
    _settings: &TelemetrySettings,
) -> Result<Telemetry> {
    Err(crate::error::Error::new(
        crate::error::ErrorCode::InvalidConfig,
        "telemetry.otlp_endpoint is set, but this binary was built without the `otlp` feature",
    ))
}

/// Log targets held at `info` whatever the filter says: at `debug` they log data.
/// `tokio_postgres::query` prints every statement's parameters (message texts, ids) as
/// byte lists. More specific than any crate-wide directive, so `debug` or
/// `tokio_postgres=trace` cannot turn it back on (tests/process/logs.rs checks).
pub const QUIET_TARGETS: &[&str] = &["tokio_postgres::query=info"];

/// The level filter: `RUST_LOG` when set, else `filter`, with [`QUIET_TARGETS`].
fn level_filter(filter: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    for quiet in QUIET_TARGETS {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Returns whether this call installed the global subscriber.
fn install(format: LogFormat, filter: &str, export: Option<Output>) -> bool {
    let filter = level_filter(filter);
    let logs: Output = match format {
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Pretty => fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut outputs = vec![logs];
    outputs.extend(export);
    tracing_subscriber::registry()
        .with(filter)
        .with(outputs)
        .try_init()
        .is_ok()
}

/// Span export of this process, if any; [`Telemetry::shutdown`] flushes it.
#[derive(Default)]
#[must_use = "call shutdown() before exiting, or the last spans are lost"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Export the spans still queued and stop exporting (waits at most a few seconds
    /// for the collector). Nothing to do without export.
    pub async fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider {
            otlp::shutdown(provider).await;
        }
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use std::time::Duration;

    use opentelemetry::{KeyValue, trace::TracerProvider as _};
    use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
    use opentelemetry_sdk::{
        Resource, runtime,
        trace::{
            Sampler, SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor,
        },
    };

    use super::Output;
    use crate::config::TelemetrySettings;
    use crate::error::{Error, ErrorCode, Result};

    /// How long one export request may take.
    const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long shutdown waits for the last export.
    const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

    /// `<endpoint>/v1/traces`, as OTLP/HTTP collectors expect.
    pub(super) fn traces_url(endpoint: &str) -> String {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    }

    /// A tracer provider exporting in batches from a tokio task, with reqwest (async).
    pub(super) fn provider(
        endpoint: &str,
        settings: &TelemetrySettings,
    ) -> Result<SdkTracerProvider> {
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint))
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!("invalid setting `telemetry.otlp_endpoint`: {e}"),
                )
                .with_details(serde_json::json!({ "key": "telemetry.otlp_endpoint" }))
            })?;
        let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio).build();
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(resource)
            .build())
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans.
    pub(super) fn layer(provider: &SdkTracerProvider) -> Output {
        Box::new(tracing_opentelemetry::layer().with_tracer(provider.tracer("chatorical")))
    }

    /// Flush and stop. The SDK blocks the calling thread until the batch task has
    /// exported, so this runs on a blocking thread, not on a runtime worker.
    pub(super) async fn shutdown(provider: SdkTracerProvider) {
        let done = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(SHUTDOWN_WAIT, done).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "trace export shutdown failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "trace export shutdown task failed"),
            Err(_) => tracing::warn!("trace export shutdown timed out; the last spans may be lost"),
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn traces_go_to_the_signal_path_of_the_base_url() {
            assert_eq!(
                super::traces_url("http://127.0.0.1:4318"),
                "http://127.0.0.1:4318/v1/traces"
            );
            assert_eq!(
                super::traces_url("https://otel.example.com/"),
                "https://otel.example.com/v1/traces"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::prelude::*;

    /// Whether `filter` lets a debug event of the PostgreSQL driver's query logging,
    /// and one of another crate, through.
    fn debug_enabled(filter: &str) -> (bool, bool) {
        let subscriber = tracing_subscriber::registry().with(super::level_filter(filter));
        tracing::subscriber::with_default(subscriber, || {
            (
                tracing::enabled!(target: "tokio_postgres::query", Level::DEBUG),
                tracing::enabled!(target: "hyper_util::client", Level::DEBUG),
            )
        })
    }

    #[test]
    fn statement_parameters_are_never_logged() {
        if std::env::var_os("RUST_LOG").is_some() {
            return; // RUST_LOG replaces the filter under test.
        }
        assert_eq!(debug_enabled("debug"), (false, true));
        assert_eq!(debug_enabled("info,tokio_postgres=trace"), (false, false));
        assert_eq!(debug_enabled("info"), (false, false));
    }
}
