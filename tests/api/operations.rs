//! Operations written once in the library answer the same through every entry point:
//! the HTTP route and the CLI command are thin over one function that checks the caller.

use std::process::Command;

use chatorical::{
    config::Secret,
    db::{models::OutboxRow, repo},
    domain::now_ms,
    outbox::admin,
    tenancy::{self, Caller},
};
use reqwest::{Method, StatusCode};

use crate::helpers::{Backend, TestApp, code, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(outbox_retry_answers_the_same_over_http_and_the_cli);

/// An outbox item written straight into the database, in `status`.
async fn item(app: &TestApp, tenant_id: &str, id: &str, status: &str) {
    let now = now_ms();
    let row = OutboxRow {
        id: id.into(),
        tenant_id: tenant_id.into(),
        kind: "telegram.send_text".into(),
        idempotency_key: format!("test_{id}"),
        lane: format!("tg:{tenant_id}:-1"),
        payload: r#"{"text":"hello","topic_id":null}"#.into(),
        status: status.into(),
        attempts: 3,
        next_attempt_at: now,
        lease_until: None,
        leased_by: None,
        last_error: (status == "dead").then(|| "refused".to_string()),
        created_at: now,
        updated_at: now,
        delivered_at: (status == "delivered").then_some(now),
        conversation_id: None,
    };
    let mut pc = app.state.db.conn().await.expect("connection");
    assert!(
        repo::outbox::enqueue(&mut pc.as_conn(), &row)
            .await
            .expect("insert")
    );
}

/// `chatorical <args>` against the app's database; (exit code, stdout, stderr).
fn cli(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let s = &app.state.settings;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatorical"));
    cmd.arg("--data-dir").arg(&s.server.data_dir);
    if let Some(url) = &s.database.url {
        cmd.args(["--database-url", Secret::expose(url)]);
    }
    // The same installation as the app: its master key and public URL.
    if let Some(key) = &s.secrets.master_key_file {
        cmd.env("CHATORICAL_SECRETS__MASTER_KEY_FILE", key);
    }
    cmd.env(
        "CHATORICAL_SERVER__PUBLIC_URL",
        app.state.public_url.as_ref(),
    );
    let out = cmd.args(args).output().expect("run chatorical");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn outbox_retry_answers_the_same_over_http_and_the_cli(b: Backend) {
    // No worker: retried items stay queued for the test to see.
    let app = spawn_app_with(b, |s| s.worker.embedded = false).await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    item(&app, &t.id, "ob_delivered", "delivered").await;
    item(&app, &t.id, "ob_dead_http", "dead").await;
    item(&app, &t.id, "ob_dead_cli", "dead").await;

    // Not dead: refused the same way by both, and left as it was.
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/admin/outbox/ob_delivered/retry",
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let message = body["error"]["message"]
        .as_str()
        .expect("message")
        .to_string();
    assert_eq!(
        message,
        "only dead items can be retried; this one is delivered"
    );
    let (exit, _, stderr) = cli(
        &app,
        &["outbox", "retry", "--tenant", "acme", "ob_delivered"],
    );
    assert_eq!(exit, 1, "{stderr}");
    assert!(
        stderr.contains(&message),
        "the CLI says what the API says: {stderr}"
    );
    // Another tenant's item is not found through either.
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/admin/outbox/ob_dead_http/retry",
            Some(&other.key),
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (exit, _, stderr) = cli(
        &app,
        &["outbox", "retry", "--tenant", "other", "ob_dead_cli"],
    );
    assert_eq!(exit, 1);
    assert!(stderr.contains("outbox item not found"), "{stderr}");

    // Dead: queued again by both.
    let (status, body) = app
        .json(
            Method::POST,
            "/v1/admin/outbox/ob_dead_http/retry",
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "queued");
    let (exit, stdout, stderr) = cli(
        &app,
        &[
            "outbox",
            "retry",
            "--tenant",
            "acme",
            "ob_dead_cli",
            "--json",
        ],
    );
    assert_eq!(exit, 0, "{stderr}");
    assert!(stdout.contains("\"queued\""), "{stdout}");
    let (_, list) = app
        .json(
            Method::GET,
            "/v1/admin/outbox?status=queued",
            Some(&t.key),
            None,
        )
        .await;
    let mut queued: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    queued.sort();
    assert_eq!(queued, ["ob_dead_cli", "ob_dead_http"]);

    // The rules live in the operation itself: scopes and tenancy for any caller.
    let tenant = tenancy::tenant_by_slug(&app.state.db, "acme")
        .await
        .expect("tenant");
    let (_, read_only) = app.key(&t, &["outbox:read"]).await;
    let reader = tenancy::authenticate(&app.state.db, &read_only)
        .await
        .expect("key");
    let e = admin::retry_item(&app.state.db, &Caller::Key(reader), &tenant, "ob_delivered")
        .await
        .expect_err("outbox:read cannot retry");
    assert_eq!(e.code, chatorical::error::ErrorCode::Forbidden);
    let outsider = tenancy::authenticate(&app.state.db, &other.key)
        .await
        .expect("key");
    let e = admin::retry_item(
        &app.state.db,
        &Caller::Key(outsider),
        &tenant,
        "ob_delivered",
    )
    .await
    .expect_err("another tenant's key");
    assert_eq!(e.code, chatorical::error::ErrorCode::NotFound);
}

on_both_backends!(telegram_pause_and_resume_are_one_operation);

async fn telegram_pause_and_resume_are_one_operation(b: Backend) {
    let tg = crate::helpers::spawn_with_telegram(b, |s| s.worker.embedded = false).await;
    let app = &tg.app;
    let status = |enabled: bool| serde_json::json!(enabled);
    // Paused from the CLI, seen paused over HTTP.
    let (exit, stdout, stderr) = cli(app, &["telegram", "disable", "--tenant", "acme", "--json"]);
    assert_eq!(exit, 0, "{stderr}");
    let cli_view: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(cli_view["enabled"], status(false));
    let (code_, http_view) = app
        .json(
            Method::GET,
            "/v1/admin/telegram",
            Some(&tg.tenant.key),
            None,
        )
        .await;
    assert_eq!(code_, StatusCode::OK);
    assert_eq!(http_view, cli_view, "the same status through both");
    // Resumed over HTTP, seen resumed from the CLI.
    let (code_, resumed) = app
        .json(
            Method::PATCH,
            "/v1/admin/telegram",
            Some(&tg.tenant.key),
            Some(serde_json::json!({"enabled": true})),
        )
        .await;
    assert_eq!(code_, StatusCode::OK, "{resumed}");
    let (exit, stdout, _) = cli(app, &["telegram", "status", "--tenant", "acme", "--json"]);
    assert_eq!(exit, 0);
    let cli_view: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(cli_view, resumed);
    assert_eq!(cli_view["enabled"], status(true));
    // The operation checks the caller: a read key cannot pause.
    let tenant = tenancy::tenant_by_slug(&app.state.db, "acme")
        .await
        .expect("tenant");
    let (_, read_key) = app.key(&tg.tenant, &["telegram:read"]).await;
    let reader = tenancy::authenticate(&app.state.db, &read_key)
        .await
        .expect("key");
    let e = chatorical::telegram::setup::set_enabled(
        &app.state.db,
        &app.state.bots,
        &Caller::Key(reader),
        &tenant,
        &app.state.public_url,
        false,
    )
    .await
    .expect_err("telegram:read cannot pause");
    assert_eq!(e.code, chatorical::error::ErrorCode::Forbidden);
}

on_both_backends!(usage_and_identity_operations_check_the_caller);

async fn usage_and_identity_operations_check_the_caller(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let db = &app.state.db;
    let acme = tenancy::tenant_by_slug(db, "acme").await.expect("tenant");
    let key_with = |scopes: &'static [&'static str]| {
        let app = &app;
        let t = &t;
        async move {
            let (_, key) = app.key(t, scopes).await;
            Caller::Key(
                tenancy::authenticate(&app.state.db, &key)
                    .await
                    .expect("key"),
            )
        }
    };
    let outsider = Caller::Key(tenancy::authenticate(db, &other.key).await.expect("key"));
    let forbidden = chatorical::error::ErrorCode::Forbidden;
    let not_found = chatorical::error::ErrorCode::NotFound;

    let reader = key_with(&["usage:read"]).await;
    assert!(
        chatorical::usage::show(db, &app.state.quotas, &reader, &acme, 7)
            .await
            .is_ok()
    );
    let no_usage = key_with(&["settings:read"]).await;
    let e = chatorical::usage::show(db, &app.state.quotas, &no_usage, &acme, 7)
        .await
        .expect_err("no scope");
    assert_eq!(e.code, forbidden);
    let e = chatorical::usage::show(db, &app.state.quotas, &outsider, &acme, 7)
        .await
        .expect_err("other tenant");
    assert_eq!(e.code, forbidden, "other's key lacks usage:read first");

    let key = &app.state.master_key;
    let e = chatorical::identity::generate_secret(db, key, &no_usage, &acme)
        .await
        .expect_err("settings:read cannot write");
    assert_eq!(e.code, forbidden);
    let e = chatorical::identity::generate_secret(db, key, &outsider, &acme)
        .await
        .expect_err("another tenant's key");
    assert_eq!(e.code, not_found);
    assert!(
        chatorical::identity::status(db, &no_usage, &acme)
            .await
            .is_ok()
    );
    // Nothing was generated by the refused calls.
    let status = chatorical::identity::status(db, &Caller::Operator, &acme)
        .await
        .expect("status");
    assert!(!status.configured);
}

on_both_backends!(template_operations_check_the_caller);

async fn template_operations_check_the_caller(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let db = &app.state.db;
    let acme = tenancy::tenant_by_slug(db, "acme").await.expect("tenant");
    let caller = |key: String| async move {
        Caller::Key(tenancy::authenticate(db, &key).await.expect("key"))
    };
    let reader = caller(app.key(&t, &["templates:read"]).await.1).await;
    let writer = caller(app.key(&t, &["templates:write"]).await.1).await;
    let outsider = caller(
        app.key(&other, &["templates:read", "templates:write"])
            .await
            .1,
    )
    .await;
    let (key, locale) = ("widget.title", "de");

    let e = chatorical::i18n::set(db, &reader, &acme, key, locale, "Hallo")
        .await
        .expect_err("templates:read cannot write");
    assert_eq!(e.code, chatorical::error::ErrorCode::Forbidden);
    let e = chatorical::i18n::set(db, &outsider, &acme, key, locale, "Hallo")
        .await
        .expect_err("another tenant's key");
    assert_eq!(e.code, chatorical::error::ErrorCode::NotFound);
    // Nothing was stored by the refused calls.
    let listed = chatorical::i18n::list(db, &Caller::Operator, &acme, None, None)
        .await
        .expect("list");
    assert!(listed.is_empty(), "{listed:?}");

    let stored = chatorical::i18n::set(db, &writer, &acme, key, locale, "Hallo")
        .await
        .expect("write");
    assert_eq!(stored.body, "Hallo");
    let read = chatorical::i18n::get(db, &reader, &acme, key, locale)
        .await
        .expect("read");
    assert_eq!(read.body, "Hallo");
    let e = chatorical::i18n::get(db, &outsider, &acme, key, locale)
        .await
        .expect_err("another tenant's key reads nothing");
    assert_eq!(e.code, chatorical::error::ErrorCode::NotFound);
}

on_both_backends!(telegram_connect_and_disconnect_check_the_caller);

async fn telegram_connect_and_disconnect_check_the_caller(b: Backend) {
    use chatorical::telegram::setup;
    let app = spawn_app_with(b, |_| {}).await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let db = &app.state.db;
    let bots = &app.state.bots;
    let acme = tenancy::tenant_by_slug(db, "acme").await.expect("tenant");
    let caller = |key: String| async move {
        Caller::Key(tenancy::authenticate(db, &key).await.expect("key"))
    };
    let reader = caller(app.key(&t, &["telegram:read"]).await.1).await;
    let outsider = caller(app.key(&other, &["telegram:write"]).await.1).await;
    let req = setup::Connect {
        bot_token: "123456:ABCDEFGHIJKLMNOP",
        group_chat_id: -1_001,
        default_topic_id: None,
        mode: None,
        default_mode: chatorical::telegram::TelegramMode::Polling,
    };
    // Refused before Telegram is asked anything (the bot API URL is not even reachable).
    let e = setup::connect(db, bots, &reader, &acme, "https://x.example", req)
        .await
        .expect_err("telegram:read cannot connect");
    assert_eq!(e.code, chatorical::error::ErrorCode::Forbidden);
    let e = setup::connect(db, bots, &outsider, &acme, "https://x.example", req)
        .await
        .expect_err("another tenant's key");
    assert_eq!(e.code, chatorical::error::ErrorCode::NotFound);
    let e = setup::disconnect(db, bots, &reader, &acme)
        .await
        .expect_err("telegram:read cannot disconnect");
    assert_eq!(e.code, chatorical::error::ErrorCode::Forbidden);
    let e = setup::disconnect(db, bots, &outsider, &acme)
        .await
        .expect_err("another tenant's key");
    assert_eq!(e.code, chatorical::error::ErrorCode::NotFound);
    // Switching modes: the same checks.
    use chatorical::telegram::{TelegramMode, mode};
    let e = mode::set_mode(
        db,
        bots,
        &reader,
        &acme,
        "https://x.example",
        TelegramMode::Polling,
    )
    .await
    .expect_err("telegram:read cannot switch modes");
    assert_eq!(e.code, chatorical::error::ErrorCode::Forbidden);
    let e = mode::set_mode(
        db,
        bots,
        &outsider,
        &acme,
        "https://x.example",
        TelegramMode::Polling,
    )
    .await
    .expect_err("another tenant's key");
    assert_eq!(e.code, chatorical::error::ErrorCode::NotFound);
    // The operator passes the checks and meets the real state: nothing connected.
    let e = mode::set_mode(
        db,
        bots,
        &Caller::Operator,
        &acme,
        "https://x.example",
        TelegramMode::Polling,
    )
    .await
    .expect_err("not connected");
    assert_eq!(e.code, chatorical::error::ErrorCode::NotFound);
    let e = setup::disconnect(db, bots, &Caller::Operator, &acme)
        .await
        .expect_err("not connected");
    assert_eq!(e.code, chatorical::error::ErrorCode::NotFound);
    assert!(e.message.contains("telegram"), "{}", e.message);
}
