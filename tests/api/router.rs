//! The router's middleware without a socket: requests go straight into the axum
//! `Router` with `tower::ServiceExt::oneshot` (CORS preflight, NUL refusal, the error
//! envelope, body limits, panics caught).

use std::net::SocketAddr;

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{Method, Request, StatusCode, header},
};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{Backend, TestApp, spawn_app};
use crate::on_both_backends;

on_both_backends!(middleware_answers_without_a_socket);

fn router(app: &TestApp) -> Router {
    chatorical::http::router(app.state.clone())
}

/// One request through a fresh router; status, headers and the body as JSON (or text).
async fn send(app: &TestApp, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = req;
    // What the accept loop gives every request.
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 9], 40000))));
    let resp = router(app).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

fn envelope(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or("(no code)"),
        body["error"]["message"].as_str().unwrap_or("(no message)"),
    )
}

async fn middleware_answers_without_a_socket(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;

    // A preflight from the tenant's origin: allowed, with the methods and headers.
    let (status, h, _) = send(
        &app,
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/widget/session")
            .header(header::ORIGIN, &t.origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], t.origin.as_str());
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
    assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    // A call from an origin nobody allows: a readable 403, the handler never runs.
    let (status, h, body) = send(
        &app,
        Request::builder()
            .method(Method::POST)
            .uri("/v1/widget/session")
            .header(header::ORIGIN, "https://evil.example")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"widget_key": t.widget_key}).to_string()))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(envelope(&body).0, "origin_not_allowed");
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://evil.example"
    );
    assert!(body.get("visitor_token").is_none());

    // NUL in the path or query: 422 before any handler.
    for uri in [
        "/v1/admin/keys/key_%00",
        "/v1/admin/conversations?status=%00",
    ] {
        let (status, _, body) = send(
            &app,
            Request::builder()
                .uri(uri)
                .header(header::AUTHORIZATION, format!("Bearer {}", t.key))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(envelope(&body).0, "validation_failed", "{uri}: {body}");
    }

    // Unknown routes and methods, bad JSON, too large a body: the error envelope.
    let (status, _, body) = send(
        &app,
        Request::builder()
            .uri("/v1/nothing-here")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(
        (status, envelope(&body).0),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, _, body) = send(
        &app,
        Request::builder()
            .method(Method::DELETE)
            .uri("/v1/widget/session")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    let (status, _, body) = send(
        &app,
        Request::builder()
            .method(Method::POST)
            .uri("/v1/widget/session")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{\"widget_key\": "))
            .expect("request"),
    )
    .await;
    assert_eq!(
        (status, envelope(&body).0),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let limit = app.state.settings.server.max_body_bytes;
    let big = format!("{{\"widget_key\": \"{}\"}}", "x".repeat(limit + 1));
    let (status, _, body) = send(
        &app,
        Request::builder()
            .method(Method::POST)
            .uri("/v1/widget/session")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(big))
            .expect("request"),
    )
    .await;
    assert_eq!(
        (status, envelope(&body).0),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // And a well-formed call still works through the same router.
    let (status, _, body) = send(
        &app,
        Request::builder()
            .method(Method::POST)
            .uri("/v1/widget/session")
            .header(header::ORIGIN, &t.origin)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"widget_key": t.widget_key}).to_string()))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["visitor_token"].is_string());
}
