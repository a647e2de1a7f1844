//! Trace export over OTLP/HTTP (`cargo test --test otlp`: the tests build the crate
//! with the `otlp` feature): the real `chatorical serve` sends its request spans to a
//! fake collector, flushes the last ones on SIGTERM, and never exports a credential.
#![cfg(feature = "otlp")]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    routing::post,
};
use futures_util::StreamExt;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::{Span, span::SpanKind},
};
use prost::Message as _;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

const BIN: &str = env!("CARGO_BIN_EXE_chatorical");
const SERVICE: &str = "chatorical-otlp-test";
const ORIGIN: &str = "https://acme.example";

/// One export request the fake collector received.
#[derive(Clone)]
struct Received {
    content_type: String,
    body: Vec<u8>,
}

/// What the fake collector received, in order.
#[derive(Clone, Default)]
struct Collector {
    requests: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    fn requests(&self) -> Vec<Received> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn receive_traces(
    State(c): State<Collector>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    c.requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Received {
            content_type,
            body: body.to_vec(),
        });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

/// A fake OTLP/HTTP collector on 127.0.0.1 (only `POST /v1/traces`).
async fn start_collector() -> (SocketAddr, Collector) {
    let collector = Collector::default();
    let app = Router::new()
        .route("/v1/traces", post(receive_traces))
        .with_state(collector.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let addr = listener.local_addr().expect("collector address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, collector)
}

/// `chatorical ARGS` in `dir` with a clean environment exporting to `collector`.
fn chatorical(dir: &std::path::Path, collector: SocketAddr, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .current_dir(dir)
        .env(
            "CHATORICAL_TELEMETRY__OTLP_ENDPOINT",
            format!("http://{collector}"),
        )
        .env("CHATORICAL_TELEMETRY__SERVICE_NAME", SERVICE)
        .env("CHATORICAL_LOG__FORMAT", "json")
        .args(args)
        .arg("--data-dir")
        .arg(dir);
    cmd
}

/// A running `serve`: killed on drop; its stderr kept for failure messages.
struct Server {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    base: String,
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chatorical serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<String>();
        let pipe = child.stderr.take().expect("stderr pipe");
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.starts_with("chatorical is running") {
                    let _ = ready_tx.send(line.clone());
                }
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let line = match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "serve did not start; stderr:\n{}",
                    stderr.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
                );
            }
        };
        // "chatorical is running: open http://127.0.0.1:PORT/ …" or "… running on http://…"
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Server {
            child,
            stderr,
            base: url,
        }
    }

    fn log(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// SIGTERM, then wait for the exit (which flushes the spans).
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit after SIGTERM; stderr:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn string_value(v: &Option<AnyValue>) -> Option<&str> {
    match v.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| string_value(&kv.value))
}

/// Send a request; insist on `expect`; return the JSON body.
async fn call(
    http: &reqwest::Client,
    method: Method,
    url: String,
    bearer: Option<&str>,
    body: Option<Value>,
    expect: u16,
) -> Value {
    let mut req = http.request(method, &url).header("origin", ORIGIN);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    assert_eq!(status, expect, "{url}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_the_collector_without_credentials() {
    let (collector_addr, collector) = start_collector().await;
    let dir = tempfile::tempdir().expect("temp dir");

    // A platform key, issued before the server starts (shown once, on stdout).
    let out = chatorical(
        dir.path(),
        collector_addr,
        &[
            "keys",
            "issue",
            "--platform",
            "--scope",
            "tenants:write",
            "--scope",
            "keys:write",
            // A key grants only what it holds: the tenant key issued below.
            "--scope",
            "conversations:write",
            "--json",
        ],
    )
    .output()
    .expect("run keys issue");
    assert!(
        out.status.success(),
        "keys issue: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let issued: Value = serde_json::from_slice(&out.stdout).expect("keys issue --json");
    let platform_key = issued["key"].as_str().expect("key").to_string();

    let mut server = Server::start(chatorical(
        dir.path(),
        collector_addr,
        &["serve", "--listen", "127.0.0.1:0"],
    ));
    let base = server.base.clone();
    let http = reqwest::Client::new();

    call(
        &http,
        Method::GET,
        format!("{base}/healthz"),
        None,
        None,
        200,
    )
    .await;
    let tenant = call(
        &http,
        Method::POST,
        format!("{base}/v1/admin/tenants"),
        Some(&platform_key),
        Some(json!({"slug": "acme", "name": "Acme", "allowed_origins": [ORIGIN]})),
        201,
    )
    .await;
    let tenant_id = tenant["id"].as_str().expect("tenant id").to_string();
    let widget_key = tenant["widget_key"].as_str().expect("widget key");
    let issued = call(
        &http,
        Method::POST,
        format!("{base}/v1/admin/keys"),
        Some(&platform_key),
        Some(json!({"tenant": "acme", "scopes": ["conversations:write"], "name": "agents"})),
        201,
    )
    .await;
    let tenant_key = issued["key"].as_str().expect("tenant key").to_string();
    let session = call(
        &http,
        Method::POST,
        format!("{base}/v1/widget/session"),
        None,
        Some(json!({"widget_key": widget_key})),
        200,
    )
    .await;
    let visitor_token = session["visitor_token"]
        .as_str()
        .expect("visitor token")
        .to_string();
    let conversation = call(
        &http,
        Method::POST,
        format!("{base}/v1/conversations"),
        Some(&visitor_token),
        None,
        201,
    )
    .await;
    let ws_token = conversation["ws_token"]
        .as_str()
        .expect("ws token")
        .to_string();
    call(
        &http,
        Method::GET,
        format!("{base}/v1/admin/conversations"),
        Some(&tenant_key),
        None,
        200,
    )
    .await;

    // The socket: the token travels in the query string.
    let ws_url = format!("{}/v1/ws?token={ws_token}", base.replacen("http", "ws", 1));
    let mut req = ws_url.into_client_request().expect("ws request");
    req.headers_mut().insert(
        "origin",
        tungstenite::http::HeaderValue::from_static(ORIGIN),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("socket opens");
    let hello = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("hello in time")
        .expect("a frame")
        .expect("a good frame");
    assert!(hello.to_string().contains("hello"), "{hello}");
    ws.close(None).await.expect("close the socket");
    drop(ws);

    // The last request right before SIGTERM: only the flush on exit can deliver it
    // (the batch interval is seconds).
    call(
        &http,
        Method::GET,
        format!("{base}/readyz"),
        None,
        None,
        200,
    )
    .await;
    let status = server.terminate().await;
    assert!(
        status.success(),
        "serve exited with {status}:\n{}",
        server.log()
    );

    let requests = collector.requests();
    assert!(
        !requests.is_empty(),
        "the collector received nothing; serve's stderr:\n{}",
        server.log()
    );
    let mut spans: Vec<Span> = Vec::new();
    for Received { content_type, body } in &requests {
        assert_eq!(content_type, "application/x-protobuf");
        for secret in [&platform_key, &tenant_key, &visitor_token, &ws_token] {
            assert!(
                !body.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a credential was exported: {}…",
                &secret[..8]
            );
        }
        let export = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for resource_spans in export.resource_spans {
            let resource = resource_spans.resource.expect("resource");
            assert_eq!(
                attr(&resource.attributes, "service.name"),
                Some(SERVICE),
                "service.name from telemetry.service_name"
            );
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let span = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name:?} among {names:?}"))
    };
    for (name, route) in [
        ("GET /healthz", "/healthz"),
        ("POST /v1/admin/tenants", "/v1/admin/tenants"),
        ("POST /v1/widget/session", "/v1/widget/session"),
        ("GET /v1/ws", "/v1/ws"),
        ("GET /readyz", "/readyz"),
    ] {
        let s = span(name);
        assert_eq!(attr(&s.attributes, "route"), Some(route), "{name}");
        assert_eq!(s.kind, SpanKind::Server as i32, "{name}");
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano, "{name}");
    }
    // The tenant and the key's id (never the key) are attributes.
    assert_eq!(
        attr(&span("POST /v1/widget/session").attributes, "tenant"),
        Some(tenant_id.as_str())
    );
    let listed = span("GET /v1/admin/conversations");
    assert_eq!(attr(&listed.attributes, "tenant"), Some(tenant_id.as_str()));
    let key_id = attr(&listed.attributes, "key").expect("key id attribute");
    assert!(key_id.starts_with("key_"), "{key_id}");
    // Route templates only: no span carries a query string.
    for s in &spans {
        for kv in &s.attributes {
            let v = string_value(&kv.value).unwrap_or_default();
            assert!(!v.contains("token="), "{}: {v}", s.name);
        }
    }
}
