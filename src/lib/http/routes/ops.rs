//! Operations: health, readiness, the OpenAPI document, the widget script, the demo page.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::http::{
    AppState,
    extract::{Json, Query},
};

use crate::assets::{DEMO_HTML, WIDGET_JS, widget_version};

/// Documented ops routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// Health answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`, `ready` or `unavailable`.
    pub status: String,
    /// Per-dependency status.
    #[schema(value_type = Object)]
    pub checks: serde_json::Value,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        checks: serde_json::json!({}),
    })
}

/// The process can serve: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let db = tokio::time::timeout(std::time::Duration::from_secs(2), state.db.ping()).await;
    let db_ok = matches!(db, Ok(Ok(())));
    let mut checks = serde_json::json!({ "database": if db_ok { "ok" } else { "unavailable" } });
    let mut ok = db_ok;
    if let Some(cluster) = &state.cluster {
        let redis_ok = cluster.ping().await;
        checks["redis"] = serde_json::json!(if redis_ok { "ok" } else { "unavailable" });
        ok &= redis_ok;
    }
    if ok {
        (
            StatusCode::OK,
            Json(Health {
                status: "ready".into(),
                checks,
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable".into(),
                checks,
            }),
        )
    }
}

/// `?v=` of the widget script.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct WidgetParams {
    /// Content version; when it matches, the response is cacheable for a year.
    pub v: Option<String>,
}

/// `GET /widget.js`: long-lived cache headers when versioned, ETag always.
pub(crate) async fn widget_js(headers: HeaderMap, Query(p): Query<WidgetParams>) -> Response {
    let version = widget_version();
    let etag = format!("\"{version}\"");
    let cache = if p.v.as_deref() == Some(version.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            WIDGET_JS,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    resp
}

/// `GET /`: the demo page for the `demo` tenant (or a pointer to the docs).
pub(crate) async fn demo_page(State(state): State<AppState>) -> Response {
    let key = state
        .demo_widget_key
        .read()
        .map(|k| k.clone())
        .unwrap_or(None);
    match key {
        Some(key) => {
            let src = format!("{}/widget.js?v={}", state.public_url, widget_version());
            Html(
                DEMO_HTML
                    .replace("{{WIDGET_SRC}}", &src)
                    .replace("{{WIDGET_KEY}}", &key),
            )
            .into_response()
        }
        None => Html(
            "<!doctype html><title>chatorical</title><h1>chatorical</h1>\
             <p>The demo is off. See <a href=\"/openapi.json\">/openapi.json</a>.</p>",
        )
        .into_response(),
    }
}
