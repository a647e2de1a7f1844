//! HTTP: the router, its state, extractors, errors, CORS and the socket.

pub(crate) mod client_ip;
pub mod error;
pub(crate) mod extract;
pub(crate) mod routes;
pub(crate) mod scrape;
pub(crate) mod server;
pub mod ws;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, RwLock, atomic::AtomicI64},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::chat::Chat;
use crate::config::Settings;
use crate::db::Db;
use crate::error::{Error, ErrorCode};

use self::error::ApiError;

/// Counters read by `/metrics` and tests.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sockets open on this node.
    pub sockets_open: AtomicI64,
    /// Connections: open, rejected over the caps, timed out, accept errors.
    pub connections: Arc<server::ConnStats>,
    /// The outbox backlog series shown so far (a cleared lane shows 0).
    pub backlog: crate::outbox::backlog::BacklogSeries,
}

/// Everything a handler needs: one shared [`AppStateInner`], so the clone every request
/// and extractor makes is one reference count, not two dozen (fields read through
/// `Deref`).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    /// Share `inner` as the state of the router and its tasks.
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct AppStateInner {
    /// The database.
    pub db: Db,
    /// Chat use cases (with the hub).
    pub chat: Chat,
    /// Telegram bots per tenant.
    pub bots: Arc<crate::telegram::Bots>,
    /// The master key sealing tenants' secrets (the same one the bots use).
    pub master_key: Arc<crate::crypto::MasterKey>,
    /// Wakes outbox workers in this process.
    pub wake: crate::outbox::Wakeup,
    /// Telegram webhook outcomes.
    pub webhook: Arc<crate::telegram::webhook::WebhookCounters>,
    /// Whether agents are online, per tenant.
    pub presence: Arc<crate::presence::Presence>,
    /// The deployment's Redis, when configured.
    pub cluster: Option<crate::cluster::Cluster>,
    /// Rate limits (sessions, visitor messages, webhook calls).
    pub limiter: Arc<crate::limits::Limiter>,
    /// Open sockets per visitor and per client address (caps), in this process.
    pub sockets: Arc<crate::realtime::SocketCaps>,
    /// Telegram rate budgets of this process (the embedded worker's, shared with typing).
    pub budgets: Arc<crate::outbox::budget::Budgets>,
    /// Visitors' typing on its way to Telegram (throttled, budgeted).
    pub typing: Arc<crate::telegram::typing::Typing>,
    /// Per-tenant daily usage counters.
    pub usage: crate::usage::Usage,
    /// Plan quotas (the same counters `chat` takes from).
    pub quotas: Arc<crate::quota::Quotas>,
    /// Stripe, when `billing.stripe.secret_key` is set.
    pub billing: Option<crate::billing::Billing>,
    /// Effective settings.
    pub settings: Arc<Settings>,
    /// Cancelled when the server shuts down; sockets close with 1001.
    pub shutdown: CancellationToken,
    /// All tenants' allowed origins, for CORS preflights.
    pub origins: OriginCache,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Public base URL, no trailing slash.
    pub public_url: Arc<str>,
    /// Widget key of the demo tenant, when the demo is on.
    pub demo_widget_key: Arc<RwLock<Option<String>>>,
    /// Panics caught in handlers and spawned tasks (logged; must stay 0).
    pub panics: crate::tasks::Panics,
    /// The part of this state open sockets use, shared by all of them (made of the
    /// same values as the fields above).
    pub socket: Arc<ws::SocketContext>,
}

/// A short-lived cache of the union of all tenants' allowed origins.
#[derive(Clone, Default)]
pub struct OriginCache {
    inner: Arc<Mutex<Option<CachedOrigins>>>,
}

/// When the set was loaded, and the set.
type CachedOrigins = (Instant, Arc<HashSet<String>>);

impl OriginCache {
    const TTL: Duration = Duration::from_secs(5);

    /// Forget the cached set (after a settings change on this node).
    pub fn invalidate(&self) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether any tenant allows `origin`; `None` when the tenants cannot be read.
    pub async fn any_allows(&self, db: &Db, origin: &str) -> Option<bool> {
        let cached = self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let set = match cached {
            Some((at, set)) if at.elapsed() < Self::TTL => set,
            _ => {
                // Every environment's origins (production's and staging's).
                let set: Arc<HashSet<String>> =
                    Arc::new(crate::environments::all_allowed_origins(db).await.ok()?);
                *self.inner.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), set.clone()));
                set
            }
        };
        Some(set.contains(origin))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "chatorical", description = "Multi-tenant support chat: website widget ↔ Telegram forum topics."),
    modifiers(&SecuritySchemes),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("chk_…")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "visitor_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("vt_…")
                    .build(),
            ),
        );
    }
}

/// The documented routes and the OpenAPI document generated from them.
pub fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::widget::router())
        .merge(routes::admin::router())
        .merge(routes::telegram::router())
        .merge(routes::outbox::router())
        .merge(routes::plans::router())
        .merge(routes::usage::router())
        .merge(routes::templates::router())
        .merge(routes::ops::router())
        .merge(routes::identity::router())
        .merge(routes::billing::router())
        .merge(routes::billing_webhook::router())
        .merge(routes::billing_subscription::router())
        .merge(routes::environments::router())
        .merge(routes::audit::router())
        .merge(routes::visitors::router())
        .routes(routes!(ws::ws_upgrade))
        .split_for_parts()
}

/// A whole-body deadline: once the headers are in, the body must arrive within
/// `server.body_read_timeout_secs` in all (the header-read timeout does not cover it, and
/// a per-chunk timeout would let a client trickle a byte at a time forever). A body cut
/// off answers 408 `request_timeout` and closes the connection. Requests without a body
/// pass untouched.
async fn body_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    use axum::body::{Body, HttpBody};
    use futures_util::StreamExt;
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let deadline = tokio::time::Instant::now() + limit;
    let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = timed_out.clone();
    let (parts, body) = req.into_parts();
    let chunks = futures_util::stream::unfold(Some(body.into_data_stream()), move |state| {
        let flag = flag.clone();
        async move {
            let mut stream = state?;
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(stream))),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    Some((Err(axum::Error::new("request body timed out")), None))
                }
            }
        }
    });
    let resp = next
        .run(Request::from_parts(parts, Body::from_stream(chunks)))
        .await;
    if !timed_out.load(std::sync::atomic::Ordering::Relaxed) {
        return resp;
    }
    let mut resp = ApiError(Error::new(
        ErrorCode::RequestTimeout,
        "the request body did not arrive in time",
    ))
    .into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A handler that panics answers 500 `internal` (the connection and the process go on)
/// and the panic is logged and counted.
fn catch_panics(
    panics: crate::tasks::Panics,
) -> tower_http::catch_panic::CatchPanicLayer<
    impl Fn(Box<dyn std::any::Any + Send + 'static>) -> Response + Clone,
> {
    tower_http::catch_panic::CatchPanicLayer::custom(
        move |payload: Box<dyn std::any::Any + Send + 'static>| {
            panics.record("http handler", payload.as_ref());
            ApiError(Error::internal("request handler panicked")).into_response()
        },
    )
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = documented();
    let openapi = Arc::new(openapi);
    let max_body = state.settings.server.max_body_bytes;
    let api = api
        .route(
            "/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .route("/widget.js", get(routes::ops::widget_js));
    // With `telemetry.metrics_listen` set, /metrics lives on that listener only.
    let api = if state.settings.telemetry.metrics_listen.is_none() {
        api.route("/metrics", get(scrape::render))
    } else {
        api
    };
    api.route("/", get(routes::ops::demo_page))
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    .layer(catch_panics(state.panics.clone()))
    .layer(middleware::from_fn(scrape::track_http))
    .layer(middleware::from_fn(refuse_nul_in_uri))
    .layer(DefaultBodyLimit::max(max_body))
    .layer(middleware::from_fn_with_state(
        Duration::from_secs(state.settings.server.body_read_timeout_secs),
        body_deadline,
    ))
    .layer(middleware::from_fn_with_state(state.clone(), widget_cors))
    .layer(middleware::from_fn(request_id))
    .layer(
        TraceLayer::new_for_http()
            .make_span_with(|req: &Request| {
                // The route template, never the raw URI: query strings carry tokens.
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "unmatched".into());
                let span = tracing::info_span!("request", method = %req.method(), route = %route, tenant = tracing::field::Empty, key = tracing::field::Empty, request_id = tracing::field::Empty, otel.name = tracing::field::Empty, otel.kind = tracing::field::Empty, otel.status_code = tracing::field::Empty);
                if crate::telemetry::exporting() {
                    // Exported spans are named after the route template too.
                    span.record("otel.name", format!("{} {route}", req.method()));
                    span.record("otel.kind", "server");
                }
                span
            })
            .on_request(())
            .on_response(|resp: &Response, latency: Duration, span: &tracing::Span| {
                if resp.status().is_server_error() && crate::telemetry::exporting() {
                    span.record("otel.status_code", "error");
                }
                tracing::info!(status = resp.status().as_u16(), latency_ms = latency.as_millis() as u64, "response");
            }),
    )
    .with_state(state)
}

/// The router of the `telemetry.metrics_listen` address: `/metrics` and nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(scrape::render))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(scrape::track_http))
        .with_state(state)
}

/// The request's id: the client's `X-Request-Id` when it is 1-64 characters of
/// `A-Z a-z 0-9 . _ : -`, else a fresh UUID (v7). Handlers (and audit entries) read it
/// from the request's header, the request span records it, and the response carries it.
async fn request_id(mut req: Request, next: Next) -> Response {
    const HEADER: &str = "x-request-id";
    let valid = |v: &str| {
        (1..=64).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    };
    let id = match req.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
        Some(v) if valid(v) => v.to_string(),
        _ => uuid::Uuid::now_v7().simple().to_string(),
    };
    let value = axum::http::HeaderValue::from_str(&id)
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static("invalid"));
    req.headers_mut().insert(HEADER, value.clone());
    tracing::Span::current().record("request_id", id.as_str());
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(HEADER, value);
    resp
}

/// 422 for a path or query string holding an encoded NUL (`%00`): PostgreSQL cannot
/// compare text with a NUL in it, and no identifier or parameter of the API has one.
async fn refuse_nul_in_uri(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let has_nul = |s: &str| s.contains("%00");
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return ApiError(Error::validation(
            "path",
            "path and query must not contain NUL (%00)",
        ))
        .into_response();
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError(Error::new(ErrorCode::NotFound, "no such route"))
}

async fn method_not_allowed() -> Response {
    let mut r = ApiError(Error::new(
        ErrorCode::ValidationFailed,
        "method not allowed",
    ))
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// Paths the widget calls from other origins.
const WIDGET_PATHS: &[&str] = &["/v1/widget/", "/v1/conversations", "/v1/i18n/"];

/// CORS for widget routes. Runs before routing, so that preflights are answered for
/// every widget route.
///
/// - An origin some tenant allows gets CORS headers; the handlers then check the exact
///   tenant (403 `origin_not_allowed` for another tenant's origin, readable by the page).
/// - An origin no tenant allows gets its preflight answered too, and then, for the
///   request itself, a fixed 403 `origin_not_allowed` made here: the handler never runs,
///   so nothing is charged, read or written for it. Without CORS headers on that 403 the
///   browser would hide it behind a network error and the widget could not tell a
///   misconfiguration from an outage (it would retry forever).
///
/// Why `Access-Control-Allow-Origin: <any origin>` on that 403 is safe: widget calls
/// never use credentials (no cookies; `Access-Control-Allow-Credentials` is never sent;
/// the visitor token is a bearer header the page itself must hold), and the only
/// response such an origin can ever read is the constant error body below — no tenant
/// data, no widget key, nothing that depends on the request. Letting the preflight
/// through only lets the browser send a request any non-browser client could send
/// anyway. When the tenants cannot be read, no CORS headers are added and the request
/// goes to its handler (which reports the real error).
async fn widget_cors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !WIDGET_PATHS.iter().any(|p| req.uri().path().starts_with(p)) {
        return next.run(req).await;
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|o| HeaderValue::from_str(o).ok().map(|v| (o.to_string(), v)));
    let Some((origin, origin_value)) = origin else {
        // Not a cross-origin browser request: nothing to add.
        let mut resp = next.run(req).await;
        resp.headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
        return resp;
    };
    let allowed = state.origins.any_allows(&state.db, &origin).await;
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = match (preflight, allowed) {
        (true, _) => StatusCode::NO_CONTENT.into_response(),
        (false, Some(false)) => ApiError(Error::new(
            ErrorCode::OriginNotAllowed,
            "this origin is not allowed for the tenant",
        ))
        .into_response(),
        (false, _) => next.run(req).await,
    };
    let h = resp.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if preflight || allowed.is_some() {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin_value);
    }
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    resp
}
