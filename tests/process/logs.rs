//! The README's promise that logs hold no secrets, at `debug` and on error paths: a
//! real `serve` (PostgreSQL, JSON logs, `log.filter = "debug"` — every crate, the
//! database driver and the HTTP clients included) driven through the happy path and
//! the ways things go wrong; afterwards no key, token, secret or message text may
//! appear in its stdout or stderr.

use std::time::{Duration, Instant};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chatorical::realtime::{WsClaims, WsTokenSigner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http::HeaderValue};

use crate::fake_telegram::{Failure, FakeTelegram, topic_text_update};
use crate::support::{Api, Backend, Install, Server, eventually, next_frame, topic_of_sent};

const TOKEN_SECRET: &str = "ws-token-secret-for-the-log-test-0123456789abcdef";

fn unique(what: &str) -> String {
    format!("{what} {}", uuid::Uuid::new_v4().simple())
}

/// A bot token as @BotFather makes them, with a random secret part.
fn bot_token(bot_id: u64) -> String {
    let secret = uuid::Uuid::new_v4().simple().to_string();
    format!("{bot_id}:AA{}", &secret[..32])
}

/// The ways a secret can show up in a log line: as it is, and as the bytes a `Debug`
/// of a byte buffer prints (`[116, 110, 95, …]` — how the PostgreSQL driver logs the
/// parameters of every statement at debug) or their hex.
fn encodings(secret: &str) -> Vec<(&'static str, String)> {
    let bytes = secret.as_bytes();
    vec![
        ("as is", secret.to_string()),
        (
            "as decimal bytes",
            bytes
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "as hex",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        ),
    ]
}

/// Open the widget socket; `Err(status)` when the upgrade is refused.
async fn socket(server: &Server, token: &str, origin: &str) -> Result<crate::support::Ws, u16> {
    let mut req = format!("ws://127.0.0.1:{}/v1/ws?token={token}", server.port)
        .into_client_request()
        .expect("ws request");
    req.headers_mut()
        .insert("origin", HeaderValue::from_str(origin).expect("origin"));
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("socket: {e}"),
    }
}

/// A validly signed ws token for the same visitor and conversation, expired a minute ago.
fn expired_copy(token: &str) -> String {
    let body = token.split_once('.').expect("body.signature").0;
    let mut claims: WsClaims =
        serde_json::from_slice(&B64.decode(body).expect("base64url")).expect("claims");
    claims.exp = chatorical::domain::now_ms() - 60_000;
    WsTokenSigner::new(TOKEN_SECRET.as_bytes()).sign(&claims)
}

async fn status_of(
    api: &Api,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> StatusCode {
    api.json(method, path, bearer, body).await.0
}

/// POST a webhook update with a secret header; the status.
async fn webhook(api: &Api, slug: &str, secret: &str, update: &Value) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{}/v1/telegram/webhook/{slug}", api.base))
        .header("X-Telegram-Bot-Api-Secret-Token", secret)
        .json(update)
        .send()
        .await
        .expect("webhook call")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn debug_logs_hold_no_secret_on_happy_and_error_paths() {
    tokio::time::timeout(Duration::from_secs(120), debug_logs_body())
        .await
        .expect("finished within 120 s");
}

async fn debug_logs_body() {
    let started = Instant::now();
    let fake = FakeTelegram::start_local().await;
    let group = -100_444;
    let install = Install::new(Backend::Postgres, &fake.api_url()).await;
    let mut server = install
        .serve(&[
            ("CHATORICAL_LOG__FILTER", "debug"),
            ("CHATORICAL_SERVER__TOKEN_SECRET", TOKEN_SECRET),
            // A Bot API call that hangs costs 1 s (the timeout path below).
            ("CHATORICAL_TELEGRAM__REQUEST_TIMEOUT_SECS", "1"),
        ])
        .await;
    let api = server.api.clone();
    let platform = install.platform_key().await;
    let tenant = api.tenant(&platform, "quietco").await;
    let other = api.tenant(&platform, "otherco").await;
    let mut secrets: Vec<(&str, String)> = vec![
        ("platform API key", platform.clone()),
        ("tenant API key", tenant.key.clone()),
        ("other tenant's API key", other.key.clone()),
        ("ws token secret", TOKEN_SECRET.to_string()),
    ];
    let master_key = std::fs::read_to_string(install.dir().join("master.key")).expect("master key");
    for line in master_key
        .lines()
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
    {
        secrets.push(("master key identity", line.to_string()));
    }

    // Telegram: a token the Bot API refuses (401 on getMe), then the real one.
    let refused = bot_token(999);
    let (status, body) = api
        .json(
            Method::PUT,
            "/v1/admin/telegram",
            Some(&tenant.key),
            Some(json!({"bot_token": refused, "group_chat_id": group})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let token = bot_token(444);
    fake.add_bot(&token, 444, "quiet_support_bot");
    fake.add_group(group, "Support", true);
    fake.set_member(444, group, "administrator", true);
    api.expect(
        StatusCode::OK,
        Method::PUT,
        "/v1/admin/telegram",
        Some(&tenant.key),
        Some(json!({"bot_token": token, "group_chat_id": group})),
    )
    .await;
    let hook_secret = fake
        .webhook(&token)
        .and_then(|h| h.secret_token)
        .expect("webhook secret");
    let other_token = bot_token(445);
    fake.add_bot(&other_token, 445, "other_support_bot");
    fake.add_group(-100_445, "Other", true);
    fake.set_member(445, -100_445, "administrator", true);
    api.expect(
        StatusCode::OK,
        Method::PUT,
        "/v1/admin/telegram",
        Some(&other.key),
        Some(json!({"bot_token": other_token, "group_chat_id": -100_445})),
    )
    .await;
    let other_hook_secret = fake
        .webhook(&other_token)
        .and_then(|h| h.secret_token)
        .expect("other webhook secret");
    for (what, t) in [
        ("refused bot token", &refused),
        ("bot token", &token),
        ("other bot token", &other_token),
    ] {
        secrets.push((what, t.clone()));
        secrets.push((what, t.split_once(':').expect("id:secret").1.to_string()));
    }
    secrets.push(("webhook secret", hook_secret.clone()));
    secrets.push(("other webhook secret", other_hook_secret.clone()));

    // The happy path: a visitor writes over the socket's conversation, an agent answers
    // in the topic and through the admin API.
    let v = api.visitor(&tenant).await;
    let mut ws = socket(&server, &v.ws_token, &tenant.origin)
        .await
        .expect("socket opens");
    let hello = next_frame(&mut ws, Duration::from_secs(5))
        .await
        .expect("hello");
    assert_eq!(hello["type"], "hello");
    let first = unique("my card number is 4111");
    api.send(&v, "m1", &first).await;
    let thread = topic_of_sent(&fake, group, &first, Duration::from_secs(15)).await;
    let answer = unique("the agent answers");
    let update = topic_text_update(1, group, thread, 9001, 555, "Ana", &answer);
    assert_eq!(
        webhook(&api, "quietco", &hook_secret, &update).await,
        StatusCode::OK
    );
    let reply = unique("the admin API answers");
    api.expect(
        StatusCode::CREATED,
        Method::POST,
        &format!("/v1/admin/conversations/{}/messages", v.conversation_id),
        Some(&tenant.key),
        Some(json!({"text": reply, "author": "Ana"})),
    )
    .await;
    secrets.extend([
        ("visitor token", v.token.clone()),
        ("ws token", v.ws_token.clone()),
        ("visitor message", first.clone()),
        ("Telegram answer", answer.clone()),
        ("admin reply", reply.clone()),
    ]);

    // Bad keys: a broken checksum, a revoked key, another tenant's key on our data.
    let mut broken = tenant.key.clone();
    let last = broken.pop().expect("a key");
    broken.push(if last == 'x' { 'y' } else { 'x' });
    let conversations = "/v1/admin/conversations";
    assert_eq!(
        status_of(&api, Method::GET, conversations, Some(&broken), None).await,
        StatusCode::UNAUTHORIZED
    );
    let issued = api
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/v1/admin/keys",
            Some(&tenant.key),
            Some(json!({"scopes": ["conversations:read"], "name": "short-lived"})),
        )
        .await;
    let revoked = issued["key"].as_str().expect("key").to_string();
    let id = issued["id"].as_str().expect("id");
    api.expect(
        StatusCode::OK,
        Method::DELETE,
        &format!("/v1/admin/keys/{id}"),
        Some(&tenant.key),
        None,
    )
    .await;
    assert_eq!(
        status_of(&api, Method::GET, conversations, Some(&revoked), None).await,
        StatusCode::UNAUTHORIZED
    );
    let theirs = format!("/v1/admin/conversations/{}", v.conversation_id);
    assert_eq!(
        status_of(&api, Method::GET, &theirs, Some(&other.key), None).await,
        StatusCode::NOT_FOUND
    );
    secrets.push(("revoked API key", revoked));

    // Bad webhook secrets: none of ours, and the other tenant's on our path.
    let stranger = topic_text_update(2, group, thread, 9002, 555, "Ana", &unique("forged answer"));
    assert_eq!(
        webhook(&api, "quietco", "not-the-secret", &stranger).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        webhook(&api, "quietco", &other_hook_secret, &stranger).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        webhook(&api, "quietco", &hook_secret, &json!({"update": "not one"})).await,
        StatusCode::BAD_REQUEST
    );

    // Bad visitor tokens: a broken one, and another visitor's on this conversation.
    let mut broken_visitor = v.token.clone();
    broken_visitor.insert(4, 'x');
    let history = format!("/v1/conversations/{}/messages", v.conversation_id);
    let refused_status = status_of(&api, Method::GET, &history, Some(&broken_visitor), None).await;
    assert_eq!(refused_status, StatusCode::UNAUTHORIZED);
    let w = api.visitor(&tenant).await;
    let cross = status_of(&api, Method::GET, &history, Some(&w.token), None).await;
    assert!(cross.is_client_error(), "{cross}");
    secrets.push(("second visitor token", w.token.clone()));
    secrets.push(("second ws token", w.ws_token.clone()));

    // Sockets: an expired (validly signed) ws token, a forged one.
    let expired = expired_copy(&v.ws_token);
    assert_eq!(
        socket(&server, &expired, &tenant.origin).await.err(),
        Some(401)
    );
    let forged = format!(
        "{}.{}",
        v.ws_token.split_once('.').expect("token").0,
        B64.encode([7u8; 32])
    );
    assert_eq!(
        socket(&server, &forged, &tenant.origin).await.err(),
        Some(401)
    );
    secrets.push(("expired ws token", expired));

    // A message over the length limit (422), and one over the socket.
    let too_long = format!("{} {}", unique("overlong"), "x".repeat(8_001));
    let (status, _) = api
        .json(
            Method::POST,
            &history,
            Some(&v.token),
            Some(json!({"client_msg_id": "long", "text": too_long})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    secrets.push(("refused message", too_long[..40].to_string()));

    // Telegram failing: 401, 400, 500 and a request that times out.
    let failures = [
        Failure::Status(401, "Unauthorized".into()),
        Failure::Status(400, "Bad Request: can't parse entities".into()),
        Failure::ServerError,
        Failure::Delay(Duration::from_secs(2)),
    ];
    let calls_before = fake.calls_of("sendmessage").len();
    for (i, failure) in failures.iter().enumerate() {
        fake.fail_next("sendmessage", Some(group), failure.clone());
        let text = unique(&format!("while Telegram fails ({i})"));
        api.send(&v, &format!("f{i}"), &text).await;
        secrets.push(("message while Telegram fails", text));
    }
    eventually(
        Duration::from_secs(60),
        "every scripted failure was met",
        || fake.calls_of("sendmessage").len() >= calls_before + failures.len(),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut left = api.outbox(&tenant, "queued").await;
        left.extend(api.outbox(&tenant, "in_flight").await);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "outbox not settled: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Stop, then read everything it wrote.
    server.proc.terminate();
    let status = server
        .proc
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("serve exits after SIGTERM");
    assert!(status.success(), "serve: {status}");
    let stderr = server.proc.stderr();
    let stdout = server.proc.stdout();
    for (what, secret) in &secrets {
        assert!(
            secret.len() >= 16,
            "{what} is long enough to be searched for"
        );
        for (form, needle) in encodings(secret) {
            for (stream, text) in [("stderr", &stderr), ("stdout", &stdout)] {
                if let Some(at) = text.find(needle.as_str()) {
                    let line = text[..at].rsplit('\n').next().unwrap_or("");
                    panic!(
                        "{stream} shows the {what} ({form}): …{}",
                        &line[line.len().saturating_sub(300)..]
                    );
                }
            }
        }
    }

    // The run really logged at debug, and logged the failures it went through.
    let lines: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let level = |l: &Value, want: &str| l["level"].as_str() == Some(want);
    let debug = lines.iter().filter(|l| level(l, "DEBUG")).count();
    let warnings = lines.iter().filter(|l| level(l, "WARN")).count();
    assert!(debug >= 50, "{debug} debug lines: the filter was not debug");
    let crates: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter(|l| level(l, "DEBUG"))
        .filter_map(|l| l["target"].as_str())
        .map(|t| t.split("::").next().unwrap_or(t))
        .collect();
    assert!(
        crates.len() >= 3,
        "debug lines of several crates: {crates:?}"
    );
    assert!(
        warnings >= 2,
        "the failures were logged: {warnings} warnings"
    );
    eprintln!(
        "debug logs: {} JSON lines ({debug} debug, {warnings} warnings, from {crates:?}), \
         {} secrets checked, total {:?}",
        lines.len(),
        secrets.len(),
        started.elapsed()
    );
}
