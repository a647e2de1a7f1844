//! The audit log: every admin mutation records exactly one entry (over HTTP with the
//! key and the request id, at the CLI as the operator, on the webhooks as Telegram's
//! user or Stripe, in the worker as the service), never a secret or a message text;
//! `GET /v1/admin/audit` (tenancy, filters, pages, scope, bad input); the table
//! refuses UPDATE and DELETE, and only its own retention deletes.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use chatorical::{
    audit::Actor,
    config::{Secret, Settings},
    db::{
        models::OutboxRow,
        repo::{
            self,
            audit::{AuditRow, Filter, NewAuditRow},
        },
    },
    domain::now_ms,
    plans::catalogue::{self, Catalogue, SyncOptions},
    tenancy::{self, Caller},
};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::fake_stripe::{self, FakeStripe};
use crate::fake_telegram::topic_text_update;
use crate::helpers::{Backend, TestApp, code, spawn_app, spawn_with_telegram};
use crate::on_both_backends;
use crate::renames::visitor_with_topic;

on_both_backends!(
    every_admin_mutation_over_http_records_one_entry_and_no_secret,
    cli_mutations_record_the_operator,
    webhooks_and_the_worker_record_telegram_stripe_and_system,
    audit_api_isolates_tenants_filters_and_pages,
    audit_log_refuses_changes_and_purges_only_what_expired,
);

// ---------------------------------------------------------------------------
// Reading the log
// ---------------------------------------------------------------------------

/// Every row of `audit_log`, in id order.
async fn all_rows(app: &TestApp) -> Vec<AuditRow> {
    let mut pc = app.state.db.conn().await.expect("connection");
    repo::audit::page(&mut pc.as_conn(), &Filter::default(), 0, 1_000_000)
        .await
        .expect("audit rows")
}

/// The entries written since the last look.
struct Tail<'a> {
    app: &'a TestApp,
    last: i64,
}

impl<'a> Tail<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let last = all_rows(app).await.last().map_or(0, |r| r.id);
        Tail { app, last }
    }

    async fn take(&mut self) -> Vec<AuditRow> {
        let mut pc = self.app.state.db.conn().await.expect("connection");
        let rows = repo::audit::page(&mut pc.as_conn(), &Filter::default(), self.last, 10_000)
            .await
            .expect("audit rows");
        if let Some(r) = rows.last() {
            self.last = r.id;
        }
        rows
    }

    /// Exactly one new entry, of `action`.
    async fn one(&mut self, what: &str, action: &str) -> AuditRow {
        let rows = self.take().await;
        assert_eq!(rows.len(), 1, "{what}: one entry, got {rows:#?}");
        assert_eq!(rows[0].action, action, "{what}: {rows:#?}");
        rows[0].clone()
    }

    /// No new entry.
    async fn none(&mut self, what: &str) {
        let rows = self.take().await;
        assert!(rows.is_empty(), "{what}: no entry, got {rows:#?}");
    }
}

fn changes(row: &AuditRow) -> Value {
    serde_json::from_str(&row.changes).expect("changes are JSON")
}

/// `(key id, name)` of an API key.
async fn key_identity(app: &TestApp, key: &str) -> (String, String) {
    let p = tenancy::authenticate(&app.state.db, key)
        .await
        .expect("a valid key");
    (p.key_id.to_string(), p.name)
}

/// No audit row holds any of `secrets`, in any column.
fn assert_no_secret(rows: &[AuditRow], secrets: &[String]) {
    for row in rows {
        let all = format!("{row:?}");
        for s in secrets {
            assert!(
                !s.is_empty() && !all.contains(s.as_str()),
                "audit row {} holds a secret or a message text ({s:?}): {all}",
                row.id
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Every admin mutation over HTTP
// ---------------------------------------------------------------------------

/// Where a recorded entry's target comes from.
enum Target {
    Is(String),
    /// The string at this JSON pointer of the response.
    FromResponse(&'static str),
    /// Set, whatever it is (an id made by Stripe).
    Some,
}

struct Expect {
    action: &'static str,
    /// The tenant's id, or `None` for the platform.
    tenant: Option<String>,
    target: Target,
    /// Further entries the same call records (a deleted plan's reassigned tenants).
    also: &'static [&'static str],
}

struct Step {
    what: &'static str,
    method: Method,
    path: String,
    platform: bool,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    status: StatusCode,
    /// `None`: a repeat that changes nothing and records nothing.
    expect: Option<Expect>,
}

fn step(what: &'static str, method: Method, path: impl Into<String>, body: Option<Value>) -> Step {
    Step {
        what,
        method,
        path: path.into(),
        platform: false,
        body,
        headers: Vec::new(),
        status: StatusCode::OK,
        expect: None,
    }
}

impl Step {
    fn platform(mut self) -> Self {
        self.platform = true;
        self
    }
    fn status(mut self, s: StatusCode) -> Self {
        self.status = s;
        self
    }
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
    fn records(mut self, action: &'static str, tenant: Option<&str>, target: Target) -> Self {
        self.expect = Some(Expect {
            action,
            tenant: tenant.map(str::to_string),
            target,
            also: &[],
        });
        self
    }
    fn also(mut self, also: &'static [&'static str]) -> Self {
        if let Some(e) = self.expect.as_mut() {
            e.also = also;
        }
        self
    }
}

const CATALOGUE: &str = r#"
[plans.free]
name = "Free"

[plans.pro]
name = "Pro"
price_month_cents = 1900
"#;

fn no_progress(_: chatorical::billing::catalogue::Progress<'_>) {}

async fn every_admin_mutation_over_http_records_one_entry_and_no_secret(b: Backend) {
    let stripe = FakeStripe::start().await;
    let stripe_url = stripe.url();
    let tg = spawn_with_telegram(b, move |s: &mut Settings| {
        // Items stay where the test puts them (the dead one to retry).
        s.worker.embedded = false;
        s.billing.stripe.secret_key = Some(Secret::new(fake_stripe::SECRET_KEY));
        s.billing.stripe.webhook_secret = Some(Secret::new("whsec_fake"));
        s.billing.stripe.api_base = stripe_url;
        s.billing.stripe.request_timeout_secs = 3;
    })
    .await;
    let app = &tg.app;
    let acme = &tg.tenant;
    // Pro is sold at Stripe (Checkout needs its price there).
    let cat = Catalogue::parse("plans.toml", CATALOGUE).expect("catalogue");
    catalogue::sync(
        &Caller::Operator,
        &cat,
        &catalogue::Database::new(&app.state.db),
        SyncOptions::default(),
    )
    .await
    .expect("plans in the database");
    let billing = app.state.billing.as_ref().expect("Stripe configured");
    let to_stripe = chatorical::billing::catalogue::Stripe::new(billing, &no_progress);
    catalogue::sync(&Caller::Operator, &cat, &to_stripe, SyncOptions::default())
        .await
        .expect("plans at Stripe");

    // The key every tenant mutation is made with, and one to revoke.
    let (status, k) = app
        .json(
            Method::POST,
            "/v1/admin/keys",
            Some(&app.platform_key),
            Some(json!({"tenant": "acme", "name": "auditor", "scopes": [
                "audit:read", "billing:write", "conversations:write", "keys:write",
                "outbox:write", "settings:write", "telegram:write", "templates:write"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{k}");
    let key = k["key"].as_str().expect("key").to_string();
    let key_id = k["id"].as_str().expect("id").to_string();
    let (victim_id, victim_key) = app.key(acme, &["conversations:read"]).await;
    let (platform_id, platform_name) = key_identity(app, &app.platform_key).await;
    assert_eq!(platform_name, "test platform");

    // A conversation with a visitor's message, and a dead outbox item.
    let v = app.visitor(acme).await;
    let visitor_text = "my card number is 4242 4242 4242 4242";
    let (status, _) = app.send(&v, "m1", visitor_text).await;
    assert_eq!(status, StatusCode::CREATED);
    let reply_text = "we refunded order 7781 to Jane";
    let (status, _) = app.reply(acme, &v.conversation_id, reply_text).await;
    assert_eq!(status, StatusCode::CREATED);
    dead_item(app, &acme.id, "ob_dead_audit").await;

    let subject = "Refund for Jane Roe, jane@example.com";
    let template_body = "Hallo, hier ist der geheime Text";
    let outbox_text = "operator broadcast: secret plans for friday";
    let cid = &v.conversation_id;
    let tenant = Some(acme.id.as_str());
    let created = StatusCode::CREATED;
    let steps = vec![
        step("issue a key", Method::POST, "/v1/admin/keys",
            Some(json!({"scopes": ["conversations:read"], "name": "issued-here"})))
            .status(created).records("key.issued", tenant, Target::FromResponse("/id")),
        step("revoke a key", Method::DELETE, format!("/v1/admin/keys/{victim_id}"), None)
            .records("key.revoked", tenant, Target::Is(victim_id.clone())),
        step("revoke it again", Method::DELETE, format!("/v1/admin/keys/{victim_id}"), None),
        step("patch settings", Method::PATCH, "/v1/admin/settings",
            Some(json!({"accent_color": "#112233"})))
            .records("settings.updated", tenant, Target::Is(acme.id.clone())),
        step("the same patch", Method::PATCH, "/v1/admin/settings",
            Some(json!({"accent_color": "#112233"}))),
        step("identity secret", Method::POST, "/v1/admin/identity/secret", None)
            .status(created).records("identity.secret_rotated", tenant, Target::Is(acme.id.clone())),
        step("connect Telegram", Method::PUT, "/v1/admin/telegram",
            Some(json!({"bot_token": tg.token, "group_chat_id": tg.group})))
            .records("telegram.connected", tenant, Target::Is(acme.id.clone())),
        step("pause Telegram", Method::PATCH, "/v1/admin/telegram", Some(json!({"enabled": false})))
            .records("telegram.toggled", tenant, Target::Is(acme.id.clone())),
        step("pause it again", Method::PATCH, "/v1/admin/telegram", Some(json!({"enabled": false}))),
        step("resume Telegram", Method::PATCH, "/v1/admin/telegram", Some(json!({"enabled": true})))
            .records("telegram.toggled", tenant, Target::Is(acme.id.clone())),
        step("set a template", Method::PUT, "/v1/admin/templates/widget.title/de",
            Some(json!({"body": template_body})))
            .records("template.set", tenant, Target::Is("widget.title/de".into())),
        step("the same template", Method::PUT, "/v1/admin/templates/widget.title/de",
            Some(json!({"body": template_body}))),
        step("delete the template", Method::DELETE, "/v1/admin/templates/widget.title/de", None)
            .records("template.deleted", tenant, Target::Is("widget.title/de".into())),
        step("delete it again", Method::DELETE, "/v1/admin/templates/widget.title/de", None)
            .status(StatusCode::NOT_FOUND),
        step("give a subject", Method::PATCH, format!("/v1/admin/conversations/{cid}"),
            Some(json!({"subject": subject})))
            .records("conversation.updated", tenant, Target::Is(cid.clone())),
        step("the same subject", Method::PATCH, format!("/v1/admin/conversations/{cid}"),
            Some(json!({"subject": subject}))),
        step("close", Method::POST, format!("/v1/admin/conversations/{cid}/close"), None)
            .records("conversation.closed", tenant, Target::Is(cid.clone())),
        step("close again", Method::POST, format!("/v1/admin/conversations/{cid}/close"), None),
        step("enqueue a text", Method::POST, "/v1/admin/outbox",
            Some(json!({"text": outbox_text, "idempotency_key": "note-1"})))
            .status(created).records("outbox.enqueued", tenant, Target::Is("api_note-1".into())),
        step("enqueue it again", Method::POST, "/v1/admin/outbox",
            Some(json!({"text": outbox_text, "idempotency_key": "note-1"}))),
        step("retry a dead item", Method::POST, "/v1/admin/outbox/ob_dead_audit/retry", None)
            .records("outbox.retried", tenant, Target::Is("ob_dead_audit".into())),
        step("checkout", Method::POST, "/v1/billing/checkout", Some(json!({
                "plan": "pro", "interval": "month",
                "success_url": "https://acme.example/ok", "cancel_url": "https://acme.example/no"})))
            .header("idempotency-key", "co-1")
            .records("billing.checkout_started", tenant, Target::Some),
        step("the same checkout", Method::POST, "/v1/billing/checkout", Some(json!({
                "plan": "pro", "interval": "month",
                "success_url": "https://acme.example/ok", "cancel_url": "https://acme.example/no"})))
            .header("idempotency-key", "co-1"),
        step("portal", Method::POST, "/v1/billing/portal",
            Some(json!({"return_url": "https://acme.example/account"})))
            .header("idempotency-key", "po-1")
            .records("billing.portal_opened", tenant, Target::Some),
        step("the same portal", Method::POST, "/v1/billing/portal",
            Some(json!({"return_url": "https://acme.example/account"})))
            .header("idempotency-key", "po-1"),
        step("disconnect Telegram", Method::DELETE, "/v1/admin/telegram", None)
            .records("telegram.disconnected", tenant, Target::Is(acme.id.clone())),
        step("disconnect it again", Method::DELETE, "/v1/admin/telegram", None)
            .status(StatusCode::NOT_FOUND),
        // Platform keys.
        step("create a tenant", Method::POST, "/v1/admin/tenants",
            Some(json!({"slug": "beta", "name": "Beta"})))
            .platform().status(created).records("tenant.created", None, Target::FromResponse("/id")),
        step("put a plan", Method::PUT, "/v1/admin/plans/team",
            Some(json!({"name": "Team", "limits": {"messages_per_day": 100}})))
            .platform().status(created).records("plan.updated", None, Target::Is("team".into())),
        step("the same plan", Method::PUT, "/v1/admin/plans/team",
            Some(json!({"name": "Team", "limits": {"messages_per_day": 100}})))
            .platform(),
        step("change the plan", Method::PUT, "/v1/admin/plans/team",
            Some(json!({"name": "Team", "limits": {"messages_per_day": 200}})))
            .platform().records("plan.updated", None, Target::Is("team".into())),
        step("put a tenant on it", Method::PUT, "/v1/admin/tenants/beta/plan",
            Some(json!({"plan": "team"})))
            .platform().records("plan.changed", Some("beta"), Target::Is("beta".into())),
        step("the same plan again", Method::PUT, "/v1/admin/tenants/beta/plan",
            Some(json!({"plan": "team"})))
            .platform(),
        step("delete the plan, moving its tenant", Method::DELETE,
            "/v1/admin/plans/team?reassign=free", None)
            .platform().records("plan.deleted", None, Target::Is("team".into()))
            .also(&["plan.changed"]),
        step("issue a platform key", Method::POST, "/v1/admin/keys",
            Some(json!({"scopes": ["tenants:read"], "name": "platform-child"})))
            .platform().status(created).records("key.issued", None, Target::FromResponse("/id")),
    ];

    let mut tail = Tail::new(app).await;
    let mut beta_id = String::new();
    let mut identity_secret = String::new();
    let mut issued_keys = Vec::new();
    let mut webhook_secrets = Vec::new();
    for (i, s) in steps.into_iter().enumerate() {
        let (bearer, actor_id, actor_name) = if s.platform {
            (
                &app.platform_key,
                platform_id.as_str(),
                platform_name.as_str(),
            )
        } else {
            (&key, key_id.as_str(), "auditor")
        };
        let mut req = app
            .http
            .request(s.method.clone(), format!("{}{}", app.base, s.path))
            .bearer_auth(bearer);
        // Every other call names its own request id; the others get one made up.
        let sent_id = (i % 2 == 0).then(|| format!("audit-test:{i}"));
        if let Some(id) = &sent_id {
            req = req.header("x-request-id", id);
        }
        for (name, value) in &s.headers {
            req = req.header(*name, value);
        }
        if let Some(body) = &s.body {
            req = req.json(body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let echoed = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("every response carries X-Request-Id")
            .to_string();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, s.status, "{}: {body}", s.what);
        if let Some(id) = &sent_id {
            assert_eq!(&echoed, id, "{}: our request id is echoed", s.what);
        }
        if let Some(secret) = body["identity_secret"].as_str() {
            identity_secret = secret.to_string();
        }
        if s.path == "/v1/admin/keys"
            && let Some(k) = body["key"].as_str()
        {
            issued_keys.push(k.to_string());
        }
        if s.what == "create a tenant" {
            beta_id = body["id"].as_str().expect("tenant id").to_string();
        }
        if s.what == "connect Telegram"
            && let Some(secret) = tg.fake.webhook(&tg.token).and_then(|w| w.secret_token)
        {
            webhook_secrets.push(secret);
        }
        let Some(e) = s.expect else {
            tail.none(s.what).await;
            continue;
        };
        let rows = tail.take().await;
        assert_eq!(
            rows.len(),
            1 + e.also.len(),
            "{}: {} entries, got {rows:#?}",
            s.what,
            1 + e.also.len()
        );
        let row = &rows[0];
        assert_eq!(row.action, e.action, "{}: {rows:#?}", s.what);
        let want_tenant = match e.tenant.as_deref() {
            Some("beta") => Some(beta_id.clone()),
            other => other.map(str::to_string),
        };
        if e.action != "tenant.created" {
            assert_eq!(row.tenant_id, want_tenant, "{}: tenant", s.what);
        }
        match &e.target {
            Target::Is(t) if t == "beta" => {
                assert_eq!(row.target.as_deref(), Some(beta_id.as_str()), "{}", s.what)
            }
            Target::Is(t) => assert_eq!(row.target.as_deref(), Some(t.as_str()), "{}", s.what),
            Target::FromResponse(p) => {
                let want = body
                    .pointer(p)
                    .and_then(Value::as_str)
                    .expect("id in the response");
                assert_eq!(row.target.as_deref(), Some(want), "{}", s.what);
                if e.action == "tenant.created" {
                    assert_eq!(row.tenant_id.as_deref(), Some(want), "{}", s.what);
                }
            }
            Target::Some => assert!(row.target.is_some(), "{}: a target", s.what),
        }
        for (extra, action) in rows[1..].iter().zip(e.also) {
            assert_eq!(extra.action, *action, "{}", s.what);
        }
        for r in &rows {
            assert_eq!(r.actor, format!("key:{actor_id}"), "{}: actor", s.what);
            assert_eq!(r.actor_name.as_deref(), Some(actor_name), "{}", s.what);
            assert_eq!(
                r.request_id.as_deref(),
                Some(echoed.as_str()),
                "{}: the request id the response carried",
                s.what
            );
        }
    }

    // What a few entries say (and do not say).
    let rows = all_rows(app).await;
    let find = |action: &str| {
        rows.iter()
            .rev()
            .find(|r| r.action == action)
            .unwrap_or_else(|| panic!("{action} in the log"))
    };
    assert_eq!(
        changes(find("settings.updated"))["accent_color"]["to"],
        "#112233"
    );
    let connected = changes(find("telegram.connected"));
    assert_eq!(connected["bot_username"], "bot111");
    assert_eq!(connected["group_chat_id"], tg.group);
    assert_eq!(connected["reconnected"], true);
    assert_eq!(changes(find("telegram.toggled"))["enabled"], true);
    let template = changes(find("template.set"));
    assert_eq!(template["key"], "widget.title");
    assert_eq!(template["locale"], "de");
    assert_eq!(template["chars"], template_body.chars().count());
    let updated = changes(find("conversation.updated"));
    assert_eq!(updated["subject_changed"], true);
    assert_eq!(
        changes(find("outbox.enqueued"))["chars"],
        outbox_text.chars().count()
    );
    let checkout = changes(find("billing.checkout_started"));
    assert_eq!(
        (&checkout["plan"], &checkout["interval"]),
        (&json!("pro"), &json!("month"))
    );
    let sessions = stripe.checkout_sessions();
    assert_eq!(sessions.len(), 1, "one session for the repeated checkout");
    assert_eq!(
        find("billing.checkout_started").target.as_deref(),
        sessions[0]["id"].as_str()
    );
    let moved = changes(find("plan.changed"));
    assert_eq!(
        (&moved["from"], &moved["to"]),
        (&json!("team"), &json!("free"))
    );
    let plan = changes(find("plan.updated"));
    assert_eq!(plan["fields"]["limits.messages_per_day"]["to"], "200");

    // The scan: no secret, key or message text anywhere in the log.
    assert!(!identity_secret.is_empty() && !webhook_secrets.is_empty());
    let mut secrets = vec![
        tg.token.clone(),
        tg.token.split_once(':').expect("token").1.to_string(),
        identity_secret,
        app.platform_key.clone(),
        key.clone(),
        acme.key.clone(),
        victim_key,
        visitor_text.to_string(),
        reply_text.to_string(),
        template_body.to_string(),
        outbox_text.to_string(),
        subject.to_string(),
        "jane@example.com".to_string(),
        v.token.clone(),
    ];
    secrets.extend(webhook_secrets);
    secrets.extend(issued_keys);
    assert_no_secret(&rows, &secrets);
    // Chat traffic is not audited: no entry names the visitor's or the agent's message.
    assert!(rows.iter().all(|r| !r.action.starts_with("message")));
}

/// A dead outbox item written straight into the database.
async fn dead_item(app: &TestApp, tenant_id: &str, id: &str) {
    let now = now_ms();
    let row = OutboxRow {
        id: id.into(),
        tenant_id: tenant_id.into(),
        kind: "telegram.send_text".into(),
        idempotency_key: format!("test_{id}"),
        lane: format!("tg:{tenant_id}:-1"),
        payload: r#"{"text":"an old dead text","topic_id":null}"#.into(),
        status: "dead".into(),
        attempts: 5,
        next_attempt_at: now,
        lease_until: None,
        leased_by: None,
        last_error: Some("refused".into()),
        created_at: now,
        updated_at: now,
        delivered_at: None,
        conversation_id: None,
    };
    let mut pc = app.state.db.conn().await.expect("connection");
    assert!(
        repo::outbox::enqueue(&mut pc.as_conn(), &row)
            .await
            .expect("insert")
    );
}

// ---------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------

/// The operator name the CLI runs as in these tests.
const CLI_USER: &str = "audit-operator";

/// `chatorical <args>` against the app's installation, as [`CLI_USER`].
fn cli(app: &TestApp, telegram_api: &str, args: &[&str]) -> (i32, String, String) {
    let s = &app.state.settings;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatorical"));
    cmd.arg("--data-dir").arg(&s.server.data_dir);
    if let Some(url) = &s.database.url {
        cmd.args(["--database-url", Secret::expose(url)]);
    }
    if let Some(key) = &s.secrets.master_key_file {
        cmd.env("CHATORICAL_SECRETS__MASTER_KEY_FILE", key);
    }
    cmd.env(
        "CHATORICAL_SERVER__PUBLIC_URL",
        app.state.public_url.as_ref(),
    )
    .env("CHATORICAL_TELEGRAM__API_URL", telegram_api)
    .env("CHATORICAL_TELEGRAM__ALLOW_HTTP_WEBHOOK", "true")
    .env("USER", CLI_USER)
    .env("LOGNAME", CLI_USER);
    let out = cmd.args(args).output().expect("run chatorical");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn cli_mutations_record_the_operator(b: Backend) {
    let tg = spawn_with_telegram(b, |s| s.worker.embedded = false).await;
    let app = &tg.app;
    let api = tg.fake.api_url();
    // This machine's host name, as the CLI records it.
    let host = Actor::operator()
        .stored()
        .split_once('@')
        .expect("cli:<user>@<host>")
        .1
        .to_string();
    let operator = format!("cli:{CLI_USER}@{host}");
    dead_item(app, &tg.tenant.id, "ob_dead_cli").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plans_file = dir.path().join("plans.toml");
    std::fs::write(&plans_file, "[plans.starter]\nname = \"Starter\"\n").expect("write");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &tg.token).expect("write");
    let plans_path = plans_file.to_str().expect("path");
    let token_path = token_file.to_str().expect("path");
    let group = tg.group.to_string();

    let mut tail = Tail::new(app).await;
    let (exit, out, err) = cli(
        app,
        &api,
        &[
            "keys",
            "issue",
            "--tenant",
            "acme",
            "--scope",
            "conversations:read",
            "--name",
            "cli-key",
            "--json",
        ],
    );
    assert_eq!(exit, 0, "{err}");
    let issued: Value = serde_json::from_str(&out).expect("JSON");
    let issued_id = issued["id"].as_str().expect("id").to_string();
    let issued_key = issued["key"].as_str().expect("key").to_string();
    let mut rows = vec![tail.one("keys issue", "key.issued").await];
    assert_eq!(rows[0].target.as_deref(), Some(issued_id.as_str()));

    // (what, args, action or None for a repeat that records nothing)
    let table: Vec<(&str, Vec<&str>, Option<&str>)> = vec![
        (
            "keys revoke",
            vec!["keys", "revoke", &issued_id],
            Some("key.revoked"),
        ),
        (
            "tenants create",
            vec!["tenants", "create", "--slug", "gamma", "--name", "Gamma"],
            Some("tenant.created"),
        ),
        (
            "identity secret",
            vec!["tenants", "identity-secret", "--tenant", "acme", "--json"],
            Some("identity.secret_rotated"),
        ),
        (
            "templates set",
            vec![
                "templates",
                "set",
                "--tenant",
                "acme",
                "--key",
                "widget.title",
                "--locale",
                "de",
                "--body",
                "Hallo CLI",
            ],
            Some("template.set"),
        ),
        (
            "templates set again",
            vec![
                "templates",
                "set",
                "--tenant",
                "acme",
                "--key",
                "widget.title",
                "--locale",
                "de",
                "--body",
                "Hallo CLI",
            ],
            None,
        ),
        (
            "templates delete",
            vec![
                "templates",
                "delete",
                "--tenant",
                "acme",
                "--key",
                "widget.title",
                "--locale",
                "de",
            ],
            Some("template.deleted"),
        ),
        (
            "plans sync",
            vec!["plans", "sync", "--file", plans_path],
            Some("plan.updated"),
        ),
        (
            "plans sync again",
            vec!["plans", "sync", "--file", plans_path],
            None,
        ),
        (
            "tenants set-plan",
            vec![
                "tenants", "set-plan", "--tenant", "gamma", "--plan", "starter",
            ],
            Some("plan.changed"),
        ),
        (
            "tenants set-plan again",
            vec![
                "tenants", "set-plan", "--tenant", "gamma", "--plan", "starter",
            ],
            None,
        ),
        (
            "telegram disable",
            vec!["telegram", "disable", "--tenant", "acme"],
            Some("telegram.toggled"),
        ),
        (
            "telegram disable again",
            vec!["telegram", "disable", "--tenant", "acme"],
            None,
        ),
        (
            "telegram enable",
            vec!["telegram", "enable", "--tenant", "acme"],
            Some("telegram.toggled"),
        ),
        (
            "outbox retry",
            vec!["outbox", "retry", "--tenant", "acme", "ob_dead_cli"],
            Some("outbox.retried"),
        ),
        (
            "telegram disconnect",
            vec!["telegram", "disconnect", "--tenant", "acme"],
            Some("telegram.disconnected"),
        ),
        (
            "telegram setup",
            vec![
                "telegram",
                "setup",
                "--tenant",
                "acme",
                "--bot-token-file",
                token_path,
                "--group",
                &group,
            ],
            Some("telegram.connected"),
        ),
        (
            "secrets rotate",
            vec!["secrets", "rotate"],
            Some("secrets.rotated"),
        ),
    ];
    for (what, args, action) in table {
        let (exit, _, err) = cli(app, &api, &args);
        assert_eq!(exit, 0, "{what}: {err}");
        match action {
            Some(action) => rows.push(tail.one(what, action).await),
            None => tail.none(what).await,
        }
    }
    // Deleting a plan with a tenant on it: the deletion and the tenant's move.
    let (exit, _, err) = cli(
        app,
        &api,
        &["plans", "delete", "starter", "--reassign", "free"],
    );
    assert_eq!(exit, 0, "{err}");
    let deleted = tail.take().await;
    let actions: Vec<&str> = deleted.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["plan.deleted", "plan.changed"], "{deleted:#?}");
    rows.extend(deleted);

    for r in &rows {
        assert_eq!(r.actor, operator, "{r:?}");
        assert_eq!(r.actor_name, None, "{r:?}");
        assert_eq!(r.request_id, None, "{r:?}");
    }
    let rotated = rows
        .iter()
        .find(|r| r.action == "secrets.rotated")
        .expect("secrets.rotated");
    assert_eq!(rotated.tenant_id, None, "a platform entry");
    assert!(
        changes(rotated)["reencrypted"]
            .as_u64()
            .is_some_and(|n| n >= 2)
    );
    let webhook_secret = tg
        .fake
        .webhook(&tg.token)
        .and_then(|w| w.secret_token)
        .expect("webhook secret");
    assert_no_secret(
        &all_rows(app).await,
        &[
            tg.token.clone(),
            issued_key,
            webhook_secret,
            "Hallo CLI".to_string(),
        ],
    );
}

// ---------------------------------------------------------------------------
// Webhooks and the worker
// ---------------------------------------------------------------------------

const WHSEC: &str = "whsec_audit_test_0123456789abcdef";
const AGENT: u64 = 555;

/// Deliver a Stripe event signed as Stripe signs it; its outcome.
async fn stripe_event(app: &TestApp, id: &str, kind: &str, created: i64, object: Value) -> String {
    let event = json!({
        "id": id, "object": "event", "api_version": "2025-03-31.basil", "type": kind,
        "created": created, "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": object, "previous_attributes": {}}
    });
    let body = serde_json::to_vec(&event).expect("json");
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(WHSEC.as_bytes()).expect("any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(&body);
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let resp = app
        .http
        .post(format!("{}/v1/billing/stripe/webhook", app.base))
        .header("content-type", "application/json")
        .header("stripe-signature", format!("t={t},v1={sig}"))
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.expect("json");
    v["outcome"].as_str().expect("outcome").to_string()
}

fn subscription(tenant: &str, status: &str, period_end: i64) -> Value {
    json!({
        "id": "sub_audit", "object": "subscription", "customer": "cus_audit",
        "status": status, "cancel_at_period_end": false,
        "metadata": {"chatorical_tenant": tenant},
        "items": {"object": "list", "data": [{
            "id": "si_audit", "object": "subscription_item",
            "current_period_start": period_end - 30 * 86400,
            "current_period_end": period_end,
            "price": {"id": "price_pro", "object": "price", "lookup_key": "chatorical_pro_month",
                "product": "prod_pro", "recurring": {"interval": "month", "interval_count": 1}}
        }]}
    })
}

async fn webhooks_and_the_worker_record_telegram_stripe_and_system(b: Backend) {
    let tg = spawn_with_telegram(b, |s| {
        s.billing.stripe.secret_key = Some(Secret::new("sk_test_dummy_key"));
        s.billing.stripe.webhook_secret = Some(Secret::new(WHSEC));
        s.billing.stripe.api_base = "http://127.0.0.1:9".into();
    })
    .await;
    let app = &tg.app;
    let acme = &tg.tenant;
    let (status, body) = app
        .json(
            Method::PUT,
            "/v1/admin/plans/pro",
            Some(&app.platform_key),
            Some(json!({"name": "Pro", "limits": {}, "price_month_cents": 1900})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (v, thread) = visitor_with_topic(&tg).await;
    let mut tail = Tail::new(app).await;

    // `/subject` from Telegram: the agent's Telegram user id, no request id, no text.
    let subject = "Shipping delay for Jane Roe";
    let update = topic_text_update(
        70,
        tg.group,
        thread,
        9101,
        AGENT,
        "Ana",
        &format!("/subject {subject}"),
    );
    assert_eq!(
        tg.fake
            .deliver_update(&tg.token, &update)
            .await
            .expect("sent"),
        StatusCode::OK
    );
    let row = tail.one("/subject", "conversation.updated").await;
    assert_eq!(row.actor, format!("telegram:{AGENT}"));
    assert_eq!(
        (row.actor_name.as_deref(), row.request_id.as_deref()),
        (None, None)
    );
    assert_eq!(row.tenant_id.as_deref(), Some(acme.id.as_str()));
    assert_eq!(row.target.as_deref(), Some(v.conversation_id.as_str()));
    // The same subject again (a new message) and an ordinary answer: nothing recorded.
    let again = topic_text_update(
        71,
        tg.group,
        thread,
        9102,
        AGENT,
        "Ana",
        &format!("/subject {subject}"),
    );
    assert_eq!(
        tg.fake
            .deliver_update(&tg.token, &again)
            .await
            .expect("sent"),
        StatusCode::OK
    );
    let answer_text = "Your parcel left the warehouse, Jane";
    let answer = topic_text_update(72, tg.group, thread, 9103, AGENT, "Ana", answer_text);
    assert_eq!(
        tg.fake
            .deliver_update(&tg.token, &answer)
            .await
            .expect("sent"),
        StatusCode::OK
    );
    tail.none("a repeated subject and an agent's answer").await;

    // Stripe: the subscription (and the plan it entitles) as Stripe's.
    let now_s = now_ms() / 1000;
    let end = now_s + 30 * 86400;
    let outcome = stripe_event(
        app,
        "evt_a1",
        "customer.subscription.created",
        now_s - 10,
        subscription(&acme.id, "active", end),
    )
    .await;
    assert_eq!(outcome, "applied");
    let rows = tail.take().await;
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        ["billing.subscription_updated", "plan.changed"],
        "{rows:#?}"
    );
    for r in &rows {
        assert_eq!(r.actor, "stripe");
        assert_eq!(r.tenant_id.as_deref(), Some(acme.id.as_str()));
        assert_eq!(r.request_id, None);
    }
    let sub = changes(&rows[0]);
    assert_eq!(sub["status"]["to"], "active");
    assert_eq!(sub["plan"]["to"], "pro");
    assert_eq!(sub["interval"]["to"], "month");
    assert_eq!(sub["event"], "customer.subscription.created");
    assert_eq!(rows[0].target.as_deref(), Some("sub_audit"));
    let moved = changes(&rows[1]);
    assert_eq!(
        (&moved["from"], &moved["to"]),
        (&json!("free"), &json!("pro"))
    );
    // A redelivery is a duplicate: nothing.
    let outcome = stripe_event(
        app,
        "evt_a1",
        "customer.subscription.created",
        now_s - 10,
        subscription(&acme.id, "active", end),
    )
    .await;
    assert_eq!(outcome, "duplicate");
    tail.none("a redelivered event").await;
    // A payment fails: the grace period starts (the subscription's dunning changes).
    let invoice = json!({
        "id": "in_audit", "object": "invoice", "customer": "cus_audit", "status": "open",
        "parent": {"type": "subscription_details",
            "subscription_details": {"subscription": "sub_audit", "metadata": {"chatorical_tenant": acme.id}}}
    });
    let outcome = stripe_event(app, "evt_a2", "invoice.payment_failed", now_s - 5, invoice).await;
    assert_eq!(outcome, "applied");
    let row = tail
        .one("payment failed", "billing.subscription_updated")
        .await;
    assert_eq!(row.actor, "stripe");
    assert_eq!(changes(&row)["dunning"]["to"], "grace");

    // The grace period ends unpaid: the worker's dunning moves the tenant to free.
    let run = chatorical::billing::dunning::run_due(&app.state.db, now_ms() + 60 * 86_400_000)
        .await
        .expect("dunning");
    assert_eq!(run.downgraded.len(), 1);
    let row = tail.one("dunning", "plan.changed").await;
    assert_eq!(row.actor, "system");
    let moved = changes(&row);
    assert_eq!(
        (&moved["from"], &moved["to"], &moved["reason"]),
        (&json!("pro"), &json!("free"), &json!("dunning"))
    );
    // Run again: nothing more.
    chatorical::billing::dunning::run_due(&app.state.db, now_ms() + 60 * 86_400_000)
        .await
        .expect("dunning");
    tail.none("dunning again").await;

    // Telegram moved the group to a supergroup: the service followed it.
    let followed = chatorical::telegram::setup::follow_migration(
        &app.state.db,
        &acme.id.as_str().into(),
        tg.group,
        -100999,
    )
    .await
    .expect("migration");
    assert!(followed);
    let row = tail.one("group migration", "telegram.connected").await;
    assert_eq!(row.actor, "system");
    assert_eq!(changes(&row)["group_chat_id"]["to"], -100999);

    let webhook_secret = tg
        .fake
        .webhook(&tg.token)
        .and_then(|w| w.secret_token)
        .expect("webhook secret");
    assert_no_secret(
        &all_rows(app).await,
        &[
            tg.token.clone(),
            webhook_secret,
            subject.to_string(),
            answer_text.to_string(),
            "hello".to_string(),
        ],
    );
}

// ---------------------------------------------------------------------------
// GET /v1/admin/audit
// ---------------------------------------------------------------------------

/// Every entry a key sees for `query`, page by page (`limit` each); each page checked.
async fn walk(app: &TestApp, key: &str, query: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut path = format!("/v1/admin/audit?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = app.json(Method::GET, &path, Some(key), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        let entries = page["entries"].as_array().expect("entries");
        assert!(entries.len() <= limit as usize, "{page}");
        out.extend(entries.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
    panic!("pagination never ended");
}

fn ids(entries: &[Value]) -> Vec<i64> {
    entries
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect()
}

async fn insert_row(app: &TestApp, at: i64, tenant: Option<&str>, action: &str, actor: &str) {
    let mut pc = app.state.db.conn().await.expect("connection");
    repo::audit::insert(
        &mut pc.as_conn(),
        &NewAuditRow {
            at,
            tenant_id: tenant,
            actor,
            actor_name: None,
            action,
            target: None,
            request_id: None,
            changes: "{}",
        },
    )
    .await
    .expect("insert");
}

/// Epoch ms of a UTC date.
fn day(date: &str) -> i64 {
    chatorical::audit::parse_instant("date", date).expect("date")
}

async fn audit_api_isolates_tenants_filters_and_pages(b: Backend) {
    let app = spawn_app(b).await;
    let acme = app.tenant("acme").await;
    let beta = app.tenant("beta").await;
    let (acme_reader_id, acme_reader) = app.key(&acme, &["audit:read", "settings:write"]).await;
    let (_, beta_reader) = app.key(&beta, &["audit:read"]).await;
    for color in ["#000001", "#000002", "#000003"] {
        let (status, _) = app
            .json(
                Method::PATCH,
                "/v1/admin/settings",
                Some(&acme_reader),
                Some(json!({"accent_color": color})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&beta.key),
            Some(json!({"accent_color": "#0000ff"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .json(
            Method::PUT,
            "/v1/admin/plans/team",
            Some(&app.platform_key),
            Some(json!({"name": "Team"})),
        )
        .await;
    assert!(status.is_success());
    // Dated entries (as if written long ago) for the date filters.
    for date in ["2020-01-15", "2020-02-15", "2020-03-15"] {
        insert_row(
            &app,
            day(date),
            Some(&acme.id),
            "settings.updated",
            "system",
        )
        .await;
    }
    let rows = all_rows(&app).await;
    let of = |t: Option<&str>| -> Vec<i64> {
        rows.iter()
            .filter(|r| r.tenant_id.as_deref() == t)
            .map(|r| r.id)
            .collect()
    };
    assert!(!of(None).is_empty(), "platform entries exist");
    assert!(!of(Some(&beta.id)).is_empty());

    // A tenant key sees its own tenant's entries, all of them, and nothing else.
    let seen = walk(&app, &acme_reader, "", 3).await;
    assert_eq!(ids(&seen), of(Some(&acme.id)));
    assert!(seen.iter().all(|e| e["tenant_id"] == acme.id.as_str()));
    let seen = walk(&app, &beta_reader, "", 100).await;
    assert_eq!(ids(&seen), of(Some(&beta.id)));
    // Naming another tenant is not found, as if it did not exist.
    let (status, body) = app
        .json(
            Method::GET,
            "/v1/admin/audit?tenant=beta",
            Some(&acme_reader),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "not_found"),
        "{body}"
    );
    // A platform key sees everything, page by page, each entry once; or one tenant's.
    let all = walk(&app, &app.platform_key, "", 2).await;
    assert_eq!(ids(&all), rows.iter().map(|r| r.id).collect::<Vec<_>>());
    let beta_only = walk(&app, &app.platform_key, "&tenant=beta", 2).await;
    assert_eq!(ids(&beta_only), of(Some(&beta.id)));

    // Filters.
    let by_action = walk(&app, &acme_reader, "&action=settings.updated", 100).await;
    assert_eq!(by_action.len(), 6, "three patches and three dated rows");
    assert!(by_action.iter().all(|e| e["action"] == "settings.updated"));
    let actor = format!("key:{acme_reader_id}");
    let by_actor = walk(&app, &app.platform_key, &format!("&actor={actor}"), 100).await;
    assert_eq!(by_actor.len(), 3);
    assert!(
        by_actor
            .iter()
            .all(|e| e["actor"] == actor.as_str() && e["actor_name"].is_string())
    );
    let dated = walk(
        &app,
        &acme_reader,
        "&since=2020-02-01&until=2020-03-01",
        100,
    )
    .await;
    assert_eq!(dated.len(), 1, "{dated:?}");
    assert!(
        dated[0]["at"]
            .as_str()
            .is_some_and(|a| a.starts_with("2020-02-15"))
    );
    let dated = walk(
        &app,
        &acme_reader,
        "&since=2020-02-15T00:00:00Z&until=2021-01-01",
        100,
    )
    .await;
    assert_eq!(dated.len(), 2);
    let recent = walk(
        &app,
        &acme_reader,
        "&since=2021-01-01&action=settings.updated",
        100,
    )
    .await;
    assert_eq!(recent.len(), 3);

    // `audit:read` is needed.
    let (status, body) = app
        .json(Method::GET, "/v1/admin/audit", Some(&acme.key), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "forbidden"),
        "{body}"
    );
    // Bad input: 422 naming the field.
    for (query, field) in [
        ("action=no.such_action", "action"),
        ("cursor=xyz", "cursor"),
        ("cursor=au_-5", "cursor"),
        ("since=yesterday", "since"),
        ("until=2020-13-45", "until"),
        ("limit=0", "limit"),
    ] {
        let (status, body) = app
            .json(
                Method::GET,
                &format!("/v1/admin/audit?{query}"),
                Some(&acme_reader),
                None,
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{query}: {body}"
        );
        assert_eq!(body["error"]["details"]["field"], field, "{query}: {body}");
    }
}

// ---------------------------------------------------------------------------
// Append-only
// ---------------------------------------------------------------------------

/// Run one SQL statement on the app's database.
async fn sql(app: &TestApp, statement: &str) -> Result<usize, String> {
    use diesel_async::RunQueryDsl;
    let mut pc = app.state.db.conn().await.expect("connection");
    let mut conn = pc.as_conn();
    chatorical::on_conn!(&mut conn, |c| diesel::sql_query(statement).execute(c).await)
        .map_err(|e| e.to_string())
}

async fn audit_log_refuses_changes_and_purges_only_what_expired(b: Backend) {
    let app = spawn_app(b).await;
    let _acme = app.tenant("acme").await;
    let old = now_ms() - 500 * 86_400_000;
    for _ in 0..3 {
        insert_row(&app, old, None, "plan.updated", "system").await;
    }
    // Just inside the retention: kept.
    insert_row(
        &app,
        now_ms() - 399 * 86_400_000,
        None,
        "plan.updated",
        "system",
    )
    .await;
    let before = all_rows(&app).await;
    assert!(before.len() >= 7, "{before:#?}");

    for statement in [
        "UPDATE audit_log SET action = 'forged'",
        "UPDATE audit_log SET changes = '{}' WHERE id = (SELECT MIN(id) FROM audit_log)",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE action = 'plan.updated'",
    ] {
        let e = sql(&app, statement).await.expect_err(statement);
        assert!(e.contains("append-only"), "{statement}: {e}");
    }
    if b == Backend::Postgres {
        let e = sql(&app, "TRUNCATE audit_log").await.expect_err("TRUNCATE");
        assert!(e.contains("append-only"), "{e}");
    }
    assert_eq!(all_rows(&app).await, before, "nothing changed");

    // The log's own retention deletes what is older than it, and nothing newer.
    let purged = chatorical::audit::purge_expired(&app.state.db, 400)
        .await
        .expect("purge");
    assert_eq!(purged, 3);
    let after = all_rows(&app).await;
    let expected: Vec<AuditRow> = before.into_iter().filter(|r| r.at != old).collect();
    assert_eq!(after, expected);
    // The gate closed again: a plain DELETE is still refused.
    assert!(sql(&app, "DELETE FROM audit_log").await.is_err());
    assert_eq!(
        chatorical::audit::purge_expired(&app.state.db, 400)
            .await
            .expect("purge"),
        0
    );
}
