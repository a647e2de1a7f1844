//! Tenant environments and feature flags (issue 14): a staging widget key works only
//! from staging origins (and a production key only from production's), staging
//! conversations are marked, counted apart and never against the plan's quotas, their
//! Telegram topics are prefixed `[staging] ` (or go to a group of their own), flags
//! per environment merge with the plan's features into the widget session, and a
//! tenant from before environments keeps working as production.

use std::time::Duration;

use chatorical::domain::VisitorToken;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fake_telegram::topic_text_update;
use crate::helpers::{
    Backend, TenantFixture, TestApp, VisitorFixture, code, eventually, next_of, refused_status,
    spawn_app, spawn_with_telegram,
};
use crate::on_both_backends;
use crate::renames::settled;

on_both_backends!(
    a_staging_key_works_only_from_staging_origins_end_to_end,
    staging_never_counts_against_quotas_and_is_counted_apart,
    staging_topics_are_prefixed_in_the_tenants_group,
    staging_with_a_group_of_its_own_takes_its_topics_and_replies,
    flags_per_environment_merge_with_the_plan_and_reach_the_session,
    a_tenant_from_before_environments_works_unchanged_as_production,
);

const STAGING_ORIGIN: &str = "https://staging.acme.example";

/// A human agent's Telegram user id in these tests.
const AGENT: u64 = 555;

/// `PUT /v1/admin/environments/{env}` with the tenant's key.
async fn put_env(app: &TestApp, t: &TenantFixture, env: &str, body: Value) -> (StatusCode, Value) {
    app.json(
        Method::PUT,
        &format!("/v1/admin/environments/{env}"),
        Some(&t.key),
        Some(body),
    )
    .await
}

/// Create the tenant's staging environment with `STAGING_ORIGIN`; its widget key.
async fn staging(app: &TestApp, t: &TenantFixture) -> String {
    let (status, env) = put_env(
        app,
        t,
        "staging",
        json!({"allowed_origins": [STAGING_ORIGIN]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{env}");
    assert_eq!(env["environment"], "staging", "{env}");
    env["widget_key"].as_str().expect("widget_key").to_string()
}

/// `POST /v1/widget/session` as a browser on `origin` would send it.
async fn session(
    app: &TestApp,
    widget_key: &str,
    origin: Option<&str>,
    extra: Value,
) -> (StatusCode, Value) {
    let mut body = json!({ "widget_key": widget_key });
    if let (Some(b), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(extra.clone());
    }
    let mut req = app
        .http
        .post(format!("{}/v1/widget/session", app.base))
        .json(&body);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A widget call with the visitor's token, from `origin`.
async fn visitor_call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    origin: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("origin", origin);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A new visitor of the widget key `widget_key` from `origin`, with an open
/// conversation.
async fn visitor_from(app: &TestApp, widget_key: &str, origin: &str) -> VisitorFixture {
    let (status, s) = session(app, widget_key, Some(origin), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let token = s["visitor_token"].as_str().expect("token").to_string();
    let (status, c) =
        visitor_call(app, Method::POST, "/v1/conversations", &token, origin, None).await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    VisitorFixture {
        token,
        ws_token: c["ws_token"].as_str().expect("ws_token").into(),
        conversation_id: c["id"].as_str().expect("id").into(),
    }
}

/// The visitor's message from `origin`.
async fn send_from(
    app: &TestApp,
    v: &VisitorFixture,
    origin: &str,
    id: &str,
    text: &str,
) -> (StatusCode, Value) {
    visitor_call(
        app,
        Method::POST,
        &format!("/v1/conversations/{}/messages", v.conversation_id),
        &v.token,
        origin,
        Some(json!({"client_msg_id": id, "text": text})),
    )
    .await
}

/// Create plan `code` (both channels, these limits and features) and put the tenant on it.
async fn on_plan(app: &TestApp, t: &TenantFixture, code: &str, limits: Value, features: Value) {
    let (status, p) = app
        .json(
            Method::PUT,
            &format!("/v1/admin/plans/{code}"),
            Some(&app.platform_key),
            Some(json!({"name": code, "active": true, "limits": limits,
                "channels": ["widget", "telegram"], "features": features})),
        )
        .await;
    assert!(status.is_success(), "{status}: {p}");
    let (status, r) = app
        .json(
            Method::PUT,
            &format!("/v1/admin/tenants/{}/plan", t.slug),
            Some(&app.platform_key),
            Some(json!({"plan": code})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
}

async fn conversation(app: &TestApp, t: &TenantFixture, id: &str) -> Value {
    let (status, c) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{id}"),
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    c
}

/// The tenant's audit entries of `action`, oldest first.
async fn audit(app: &TestApp, t: &TenantFixture, action: &str) -> Vec<Value> {
    let (_, key) = app.key(t, &["audit:read"]).await;
    let (status, page) = app
        .json(
            Method::GET,
            &format!("/v1/admin/audit?action={action}&limit=500"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["entries"].as_array().expect("entries").clone()
}

/// The ids of the tenant's conversations listed with `query`.
async fn listed(app: &TestApp, t: &TenantFixture, query: &str) -> Vec<String> {
    let (status, l) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations?{query}"),
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{l}");
    let mut ids: Vec<String> = l["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

async fn a_staging_key_works_only_from_staging_origins_end_to_end(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let staging_key = staging(&app, &t).await;
    assert_ne!(staging_key, t.widget_key);
    // Asking again creates nothing and keeps the key.
    let (status, again) = put_env(&app, &t, "staging", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["widget_key"], staging_key.as_str());
    assert_eq!(
        again["settings"]["allowed_origins"],
        json!([STAGING_ORIGIN])
    );

    // Each key from the other environment's origin is refused; from its own it works.
    let (status, body) = session(&app, &staging_key, Some(&t.origin), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "origin_not_allowed");
    let (status, body) = session(&app, &t.widget_key, Some(STAGING_ORIGIN), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "origin_not_allowed");
    let (status, s) = session(&app, &staging_key, Some(STAGING_ORIGIN), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["environment"], "staging");
    let (status, p) = session(&app, &t.widget_key, Some(&t.origin), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["environment"], "production");

    // The staging visitor's token: its calls from a production origin are refused.
    let token = s["visitor_token"].as_str().expect("token");
    let (status, body) = visitor_call(
        &app,
        Method::POST,
        "/v1/conversations",
        token,
        &t.origin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "origin_not_allowed");
    // A production token resumes nothing with the staging key: a new visitor starts.
    let prod_token = p["visitor_token"].as_str().expect("token");
    let (status, fresh) = session(
        &app,
        &staging_key,
        Some(STAGING_ORIGIN),
        json!({"visitor_token": prod_token}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    assert_ne!(fresh["visitor_token"], prod_token);
    // The staging token resumes with the staging key.
    let (status, resumed) = session(
        &app,
        &staging_key,
        Some(STAGING_ORIGIN),
        json!({"visitor_token": token}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["visitor_token"], token);

    // End to end from the staging origin: conversation, socket, message.
    let (status, c) = visitor_call(
        &app,
        Method::POST,
        "/v1/conversations",
        token,
        STAGING_ORIGIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    assert_eq!(c["environment"], "staging", "{c}");
    let v = VisitorFixture {
        token: token.to_string(),
        ws_token: c["ws_token"].as_str().expect("ws_token").into(),
        conversation_id: c["id"].as_str().expect("id").into(),
    };
    // The socket opens only from the staging origin.
    let err = app
        .ws(&v.ws_token, Some(&t.origin))
        .await
        .expect_err("a production origin is refused");
    assert_eq!(refused_status(&err), Some(403), "{err:?}");
    let mut ws = app
        .ws(&v.ws_token, Some(STAGING_ORIGIN))
        .await
        .expect("socket from the staging origin");
    next_of(&mut ws, "hello").await;
    let (status, m) = send_from(&app, &v, STAGING_ORIGIN, "s1", "from staging").await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let frame = next_of(&mut ws, "message").await;
    assert_eq!(frame["message"]["text"], "from staging");
    // And a production visitor's socket only from production's.
    let pv = app.visitor(&t).await;
    let err = app
        .ws(&pv.ws_token, Some(STAGING_ORIGIN))
        .await
        .expect_err("a staging origin is refused");
    assert_eq!(refused_status(&err), Some(403), "{err:?}");
    app.ws(&pv.ws_token, Some(&t.origin))
        .await
        .expect("socket from the production origin");

    // Stored and marked; the list filters by environment.
    let conv = conversation(&app, &t, &v.conversation_id).await;
    assert_eq!(conv["environment"], "staging", "{conv}");
    assert_eq!(conv["last_seq"], 1);
    assert_eq!(
        conversation(&app, &t, &pv.conversation_id).await["environment"],
        "production"
    );
    assert_eq!(
        listed(&app, &t, "env=staging").await,
        vec![v.conversation_id.clone()]
    );
    assert_eq!(
        listed(&app, &t, "env=production").await,
        vec![pv.conversation_id.clone()]
    );
    assert_eq!(listed(&app, &t, "").await.len(), 2);
    let (status, body) = app
        .json(
            Method::GET,
            "/v1/admin/conversations?env=preview",
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(code(&body), "validation_failed");

    // Settings per environment: staging's are its own.
    let (status, st) = app
        .json(
            Method::GET,
            "/v1/admin/settings?env=staging",
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{st}");
    assert_eq!(st["environment"], "staging");
    assert_eq!(st["widget_key"], staging_key.as_str());
    let (status, patched) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings?env=staging",
            Some(&t.key),
            Some(json!({"accent_color": "#ff0000"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let (_, s) = session(&app, &staging_key, Some(STAGING_ORIGIN), json!({})).await;
    assert_eq!(s["theme"]["accent_color"], "#ff0000");
    let (_, p) = session(&app, &t.widget_key, Some(&t.origin), json!({})).await;
    assert_eq!(
        p["theme"]["accent_color"], "#2f6feb",
        "production unchanged"
    );

    // Both environments listed; rotating staging's key retires the old one at once.
    let (status, list) = app
        .json(Method::GET, "/v1/admin/environments", Some(&t.key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let envs: Vec<(&str, &str)> = list["environments"]
        .as_array()
        .expect("environments")
        .iter()
        .map(|e| {
            (
                e["environment"].as_str().expect("name"),
                e["widget_key"].as_str().expect("key"),
            )
        })
        .collect();
    assert_eq!(
        envs,
        [
            ("production", t.widget_key.as_str()),
            ("staging", staging_key.as_str())
        ]
    );
    let (status, rotated) = put_env(&app, &t, "staging", json!({"rotate_widget_key": true})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_key = rotated["widget_key"].as_str().expect("key");
    assert_ne!(new_key, staging_key);
    let (status, body) = session(&app, &staging_key, Some(STAGING_ORIGIN), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = session(&app, new_key, Some(STAGING_ORIGIN), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The staging visitor keeps their conversation (their token, not the key, is who they are).
    let (status, m) = send_from(&app, &v, STAGING_ORIGIN, "s2", "after rotation").await;
    assert_eq!(status, StatusCode::CREATED, "{m}");

    // Bad input is refused and changes nothing.
    let (status, body) = put_env(&app, &t, "preview", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = put_env(
        &app,
        &t,
        "staging",
        json!({"rotate_widget_key": true, "allowed_origins": ["not an origin"]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "allowed_origins");
    let (_, after) = app
        .json(
            Method::GET,
            "/v1/admin/environments/staging",
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(after["widget_key"], new_key, "nothing half-written");

    // Audited: the creation and the rotation (one entry each, by the tenant's key; the
    // call that changed nothing and the refused ones none), never a key itself; the
    // staging settings change as settings.updated of staging.
    let entries = audit(&app, &t, "environment.updated").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(
        entries[0]["changes"],
        json!({"created": true, "environment": "staging",
            "allowed_origins": {"from": [], "to": [STAGING_ORIGIN]}})
    );
    assert_eq!(
        entries[1]["changes"],
        json!({"widget_key_rotated": true, "environment": "staging"})
    );
    for e in &entries {
        assert!(
            e["actor"].as_str().expect("actor").starts_with("key:"),
            "{e}"
        );
        assert_eq!(e["actor_name"], "all", "{e}");
        let text = e.to_string();
        assert!(
            !text.contains(&staging_key) && !text.contains(new_key),
            "{text}"
        );
    }
    let settings = audit(&app, &t, "settings.updated").await;
    assert_eq!(settings.len(), 1, "{settings:?}");
    assert_eq!(
        settings[0]["changes"],
        json!({"environment": "staging", "accent_color": {"from": "#2f6feb", "to": "#ff0000"}})
    );
    // Another tenant's key never sees or changes acme's staging.
    let other = app.tenant("other").await;
    let (status, body) = app
        .json(
            Method::GET,
            "/v1/admin/environments/staging",
            Some(&other.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.to_string().contains(new_key));
    // A key with settings:read only reads.
    let (_, read_only) = app.key(&t, &["settings:read"]).await;
    let (status, _) = app
        .json(
            Method::GET,
            "/v1/admin/environments",
            Some(&read_only),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .json(
            Method::PUT,
            "/v1/admin/environments/staging",
            Some(&read_only),
            Some(json!({"rotate_widget_key": true})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

/// The line of `/metrics` for `series` (name and labels as rendered), as a number.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(app: &TestApp) -> String {
    let resp = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.expect("metrics")
}

async fn staging_never_counts_against_quotas_and_is_counted_apart(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    on_plan(
        &app,
        &t,
        "tiny",
        json!({"messages_per_day": 2, "conversation_starts_per_day": 1, "active_conversations": 1}),
        json!({}),
    )
    .await;
    let staging_key = staging(&app, &t).await;
    let before = scrape(&app).await;

    // Production uses up its day.
    let pv = app.visitor(&t).await;
    for (i, text) in ["one", "two"].into_iter().enumerate() {
        let (status, body) = app.send(&pv, &format!("p{i}"), text).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = app.send(&pv, "p3", "three").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(code(&body), "quota_exceeded");
    let (status, s) = session(&app, &t.widget_key, Some(&t.origin), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let token = s["visitor_token"].as_str().expect("token");
    let (status, body) = visitor_call(
        &app,
        Method::POST,
        "/v1/conversations",
        token,
        &t.origin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(code(&body), "quota_exceeded");

    // Staging keeps working: two conversations (over the start and open caps), five
    // messages each (over the message quota), an agent's reply, a subject.
    let mut staged = Vec::new();
    for n in 0..2 {
        let v = visitor_from(&app, &staging_key, STAGING_ORIGIN).await;
        for i in 0..5 {
            let (status, body) = send_from(
                &app,
                &v,
                STAGING_ORIGIN,
                &format!("s{n}{i}"),
                "staging text",
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        staged.push(v);
    }
    let (status, body) = app
        .reply(&t, &staged[0].conversation_id, "agent answer")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .json(
            Method::PATCH,
            &format!("/v1/admin/conversations/{}", staged[1].conversation_id),
            Some(&t.key),
            Some(json!({"subject": "Staging subject"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Production is still refused: staging took nothing from it, nor gave anything.
    let (status, body) = app
        .reply(&t, &pv.conversation_id, "agent to production")
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    // Usage shows staging apart; the plan's quotas count production only.
    app.state.usage.flush().await;
    let (_, usage_key) = app.key(&t, &["usage:read"]).await;
    let (status, u) = app
        .json(
            Method::GET,
            "/v1/admin/usage?days=1",
            Some(&usage_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(u["totals"]["messages_inbound"], 2, "{u}");
    assert_eq!(u["totals"]["conversations_started"], 1, "{u}");
    assert_eq!(u["totals"]["messages_outbound"], 0, "{u}");
    assert_eq!(u["staging"]["totals"]["messages_inbound"], 10, "{u}");
    assert_eq!(u["staging"]["totals"]["messages_outbound"], 1, "{u}");
    assert_eq!(u["staging"]["totals"]["conversations_started"], 2, "{u}");
    assert_eq!(u["staging"]["days"][0]["messages_inbound"], 10, "{u}");
    let quota = |name: &str| {
        u["quotas"]
            .as_array()
            .expect("quotas")
            .iter()
            .find(|q| q["quota"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {u}"))
    };
    assert_eq!(quota("messages_per_day")["used"], 2);
    assert_eq!(quota("conversation_starts_per_day")["used"], 1);
    assert_eq!(quota("active_conversations")["used"], 1);

    // Prometheus: the staging series grew by staging's messages and conversations.
    let after = scrape(&app).await;
    let grew =
        |name: &str, labels: &[&str]| metric(&after, name, labels) - metric(&before, name, labels);
    assert!(
        grew(
            "chatorical_messages_stored_total",
            &["direction=\"inbound\"", "environment=\"staging\""]
        ) >= 10.0,
        "{after}"
    );
    assert!(
        grew(
            "chatorical_conversations_started_total",
            &["environment=\"staging\""]
        ) >= 2.0,
        "{after}"
    );
}

async fn staging_topics_are_prefixed_in_the_tenants_group(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let app = &t.app;
    on_plan(
        app,
        &t.tenant,
        "two",
        json!({"messages_per_day": 2}),
        json!({}),
    )
    .await;
    let staging_key = staging(app, &t.tenant).await;
    let pv = app.visitor(&t.tenant).await;
    let (status, _) = app.send(&pv, "p1", "production hello").await;
    assert_eq!(status, StatusCode::CREATED);
    let sv = visitor_from(app, &staging_key, STAGING_ORIGIN).await;
    let (status, _) = send_from(app, &sv, STAGING_ORIGIN, "s1", "staging hello").await;
    assert_eq!(status, StatusCode::CREATED);
    settled(&t).await;
    let thread_of = |text: &str| {
        t.fake
            .sent_messages(t.group)
            .iter()
            .find(|m| m.text == text)
            .and_then(|m| m.thread_id)
            .unwrap_or_else(|| panic!("{text} went into a topic"))
    };
    let staging_thread = thread_of("staging hello");
    let production_thread = thread_of("production hello");
    let staging_name = t.fake.topic(t.group, staging_thread).expect("topic").name;
    let production_name = t
        .fake
        .topic(t.group, production_thread)
        .expect("topic")
        .name;
    assert!(staging_name.starts_with("[staging] "), "{staging_name}");
    assert!(!production_name.starts_with('['), "{production_name}");

    // A subject keeps the prefix (the rename takes nothing from the plan either).
    let (status, body) = app
        .json(
            Method::PATCH,
            &format!("/v1/admin/conversations/{}", sv.conversation_id),
            Some(&t.tenant.key),
            Some(json!({"subject": "Checkout test"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(15, "the staging topic is renamed", || async {
        t.fake.topic(t.group, staging_thread).expect("topic").name == "[staging] Checkout test"
    })
    .await;

    // Production's day is used up ("production hello" and one more); an agent's answer
    // in the staging topic still reaches the staging visitor.
    let (status, _) = app.send(&pv, "p2", "production again").await;
    assert_eq!(status, StatusCode::CREATED);
    let mut ws = app
        .ws(&sv.ws_token, Some(STAGING_ORIGIN))
        .await
        .expect("staging socket");
    next_of(&mut ws, "hello").await;
    let update = topic_text_update(
        70,
        t.group,
        staging_thread,
        9700,
        AGENT,
        "Ana",
        "staging answer",
    );
    assert_eq!(
        t.fake
            .deliver_update(&t.token, &update)
            .await
            .expect("webhook"),
        StatusCode::OK
    );
    let frame = next_of(&mut ws, "message").await;
    assert_eq!(frame["message"]["text"], "staging answer");
    // The same in production's topic is over its quota: not stored.
    let update = topic_text_update(
        71,
        t.group,
        production_thread,
        9701,
        AGENT,
        "Ana",
        "production answer",
    );
    assert_eq!(
        t.fake
            .deliver_update(&t.token, &update)
            .await
            .expect("webhook"),
        StatusCode::OK
    );
    let (_, h) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}/messages", pv.conversation_id),
            Some(&t.tenant.key),
            None,
        )
        .await;
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["production hello", "production again"]);
}

async fn staging_with_a_group_of_its_own_takes_its_topics_and_replies(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let app = &t.app;
    let own_group = -100_222;
    t.fake.add_group(own_group, "Staging support", true);
    t.fake
        .set_member(t.bot_id, own_group, "administrator", true);
    let staging_key = staging(app, &t.tenant).await;

    // Refused: the tenant's own group, a chat id that cannot be a supergroup.
    for bad in [json!(t.group), json!(42)] {
        let (status, body) = put_env(
            app,
            &t.tenant,
            "staging",
            json!({"telegram_group_chat_id": bad}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["details"]["field"], "telegram_group_chat_id");
    }
    let (status, body) = put_env(
        app,
        &t.tenant,
        "production",
        json!({"telegram_group_chat_id": own_group}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, env) = put_env(
        app,
        &t.tenant,
        "staging",
        json!({"telegram_group_chat_id": own_group}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{env}");
    assert_eq!(env["telegram_group_chat_id"], own_group);

    let pv = app.visitor(&t.tenant).await;
    app.send(&pv, "p1", "production hello").await;
    let sv = visitor_from(app, &staging_key, STAGING_ORIGIN).await;
    send_from(app, &sv, STAGING_ORIGIN, "s1", "staging hello").await;
    settled(&t).await;
    let staging_msg = t
        .fake
        .sent_messages(own_group)
        .into_iter()
        .find(|m| m.text == "staging hello")
        .expect("the staging message went to staging's group");
    let staging_thread = staging_msg.thread_id.expect("in a topic");
    assert!(
        t.fake
            .topic(own_group, staging_thread)
            .expect("topic")
            .name
            .starts_with("[staging] ")
    );
    assert!(
        t.fake
            .sent_messages(t.group)
            .iter()
            .any(|m| m.text == "production hello"),
        "production stays in the tenant's group"
    );
    assert!(
        !t.fake
            .sent_messages(t.group)
            .iter()
            .any(|m| m.text == "staging hello"),
        "staging never reaches the tenant's group"
    );

    // Agents answer in staging's group; the same thread id in the tenant's group is
    // no staging conversation's.
    let mut ws = app
        .ws(&sv.ws_token, Some(STAGING_ORIGIN))
        .await
        .expect("staging socket");
    next_of(&mut ws, "hello").await;
    let wrong_group = topic_text_update(
        80,
        t.group,
        staging_thread,
        9800,
        AGENT,
        "Ana",
        "wrong group",
    );
    assert_eq!(
        t.fake
            .deliver_update(&t.token, &wrong_group)
            .await
            .expect("webhook"),
        StatusCode::OK
    );
    let right = topic_text_update(
        81,
        own_group,
        staging_thread,
        9801,
        AGENT,
        "Ana",
        "staging answer",
    );
    assert_eq!(
        t.fake
            .deliver_update(&t.token, &right)
            .await
            .expect("webhook"),
        StatusCode::OK
    );
    let frame = next_of(&mut ws, "message").await;
    assert_eq!(frame["message"]["text"], "staging answer");
    let (_, h) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}/messages", sv.conversation_id),
            Some(&t.tenant.key),
            None,
        )
        .await;
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["staging hello", "staging answer"]);

    // Closing the staging conversation closes its topic in staging's group.
    let (status, body) = app
        .json(
            Method::POST,
            &format!("/v1/admin/conversations/{}/close", sv.conversation_id),
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(15, "the staging topic is closed", || async {
        t.fake
            .topic(own_group, staging_thread)
            .is_some_and(|topic| topic.closed)
    })
    .await;

    // Back to the tenant's group: the next staging conversation's topic is there.
    let (status, env) = put_env(
        app,
        &t.tenant,
        "staging",
        json!({"telegram_group_chat_id": null}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{env}");
    assert_eq!(env["telegram_group_chat_id"], Value::Null);
    let sv2 = visitor_from(app, &staging_key, STAGING_ORIGIN).await;
    send_from(app, &sv2, STAGING_ORIGIN, "s2", "staging again").await;
    settled(&t).await;
    let again = t
        .fake
        .sent_messages(t.group)
        .into_iter()
        .find(|m| m.text == "staging again")
        .expect("in the tenant's group now");
    let name = t
        .fake
        .topic(t.group, again.thread_id.expect("topic"))
        .expect("topic")
        .name;
    assert!(name.starts_with("[staging] "), "{name}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn flags_per_environment_merge_with_the_plan_and_reach_the_session(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    on_plan(
        &app,
        &t,
        "featured",
        json!({}),
        json!({"custom_branding": true, "beta": false}),
    )
    .await;
    let flag = async |method: Method, path: &str, body: Option<Value>| {
        app.json(method, path, Some(&t.key), body).await
    };

    // Production: a flag overrides the plan's feature of that name.
    let (status, f) = flag(
        Method::PUT,
        "/v1/admin/flags/beta",
        Some(json!({"value": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert_eq!(
        f,
        json!({"name": "beta", "environment": "production", "value": true, "source": "tenant", "tenant": true, "plan": false})
    );
    let (status, f) = flag(
        Method::PUT,
        "/v1/admin/flags/new-widget",
        Some(json!({"value": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{f}");
    let (status, list) = flag(Method::GET, "/v1/admin/flags", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list["effective"],
        json!({"beta": true, "custom_branding": true, "new-widget": true})
    );
    assert_eq!(
        list["plan"],
        json!({"beta": false, "custom_branding": true})
    );

    // Staging: not there before it is created, then flags of its own.
    let (status, body) = flag(
        Method::PUT,
        "/v1/admin/flags/custom_branding?env=staging",
        Some(json!({"value": false})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let staging_key = staging(&app, &t).await;
    let (status, f) = flag(
        Method::PUT,
        "/v1/admin/flags/custom_branding?env=staging",
        Some(json!({"value": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert_eq!(f["environment"], "staging");
    let (_, f) = flag(Method::GET, "/v1/admin/flags/beta?env=staging", None).await;
    assert_eq!(
        (f["value"].clone(), f["source"].clone()),
        (json!(false), json!("plan"))
    );

    // The widget session carries each environment's effective flags.
    let (status, p) = session(&app, &t.widget_key, Some(&t.origin), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(
        p["features"],
        json!({"beta": true, "custom_branding": true, "new-widget": true})
    );
    let (status, s) = session(&app, &staging_key, Some(STAGING_ORIGIN), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(
        s["features"],
        json!({"beta": false, "custom_branding": false})
    );

    // Unset: the plan's feature applies again (twice is harmless).
    for _ in 0..2 {
        let (status, f) = flag(Method::DELETE, "/v1/admin/flags/beta", None).await;
        assert_eq!(status, StatusCode::OK, "{f}");
        assert_eq!(f["source"], "plan");
        assert_eq!(f["value"], false);
    }
    let (_, p) = session(&app, &t.widget_key, Some(&t.origin), json!({})).await;
    assert_eq!(p["features"]["beta"], false);
    let (status, body) = flag(Method::GET, "/v1/admin/flags/beta", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = flag(Method::GET, "/v1/admin/flags/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Bad names, values and environments are refused, changing nothing.
    for (method, path, body) in [
        (
            Method::PUT,
            "/v1/admin/flags/bad%20name",
            Some(json!({"value": true})),
        ),
        (
            Method::PUT,
            &format!("/v1/admin/flags/{}", "x".repeat(65)),
            Some(json!({"value": true})),
        ),
        (Method::DELETE, "/v1/admin/flags/bad!", None),
        (Method::GET, "/v1/admin/flags?env=preview", None),
    ] {
        let (status, err) = flag(method.clone(), path, body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path}: {err}"
        );
        assert_eq!(code(&err), "validation_failed", "{err}");
    }
    let (status, err) = flag(
        Method::PUT,
        "/v1/admin/flags/beta",
        Some(json!({"value": "yes"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(code(&err), "invalid_json", "{err}");
    let (_, after) = flag(Method::GET, "/v1/admin/flags", None).await;
    assert_eq!(after["flags"], json!({"new-widget": true}));

    // One audit entry per change, in the environment it was made in; none for the
    // unset that changed nothing or the refused calls.
    let set = audit(&app, &t, "flag.set").await;
    let summary: Vec<(Value, Value, Value)> = set
        .iter()
        .map(|e| {
            (
                e["target"].clone(),
                e["changes"]["environment"].clone(),
                e["changes"]["to"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (json!("beta"), json!("production"), json!(true)),
            (json!("new-widget"), json!("production"), json!(true)),
            (json!("custom_branding"), json!("staging"), json!(false)),
        ]
    );
    let unset = audit(&app, &t, "flag.unset").await;
    assert_eq!(unset.len(), 1, "{unset:?}");
    assert_eq!(
        unset[0]["changes"],
        json!({"environment": "production", "from": true, "to": null})
    );
    assert!(set.iter().chain(&unset).all(|e| e["actor_name"] == "all"));

    // Scopes: settings:read lists, only settings:write sets.
    let (_, read_only) = app.key(&t, &["settings:read"]).await;
    let (status, _) = app
        .json(Method::GET, "/v1/admin/flags", Some(&read_only), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .json(
            Method::PUT,
            "/v1/admin/flags/beta",
            Some(&read_only),
            Some(json!({"value": true})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

async fn a_tenant_from_before_environments_works_unchanged_as_production(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    // A visitor and conversation written without an environment, as rows from before
    // the migration are: the column's default makes them production.
    let token = VisitorToken::generate();
    {
        use diesel_async::RunQueryDsl;
        let mut pc = app.state.db.conn().await.expect("conn");
        let mut conn = pc.as_conn();
        let visitor = format!(
            "INSERT INTO visitors (id, tenant_id, token_hash, created_at, last_seen_at) \
             VALUES ('vis_old', '{}', '{}', 1, 1)",
            t.id,
            token.hash()
        );
        let conv = format!(
            "INSERT INTO conversations (id, tenant_id, visitor_id, status, last_seq, created_at, updated_at) \
             VALUES ('cv_old', '{}', 'vis_old', 'open', 0, 1, 1)",
            t.id
        );
        for sql in [visitor, conv] {
            chatorical::on_conn!(&mut conn, |c| diesel::sql_query(&sql).execute(c).await)
                .expect("insert an old row");
        }
    }
    let old = VisitorFixture {
        token: token.expose().to_string(),
        ws_token: String::new(),
        conversation_id: "cv_old".into(),
    };
    let (status, body) = send_from(&app, &old, &t.origin, "o1", "still here").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        conversation(&app, &t, "cv_old").await["environment"],
        "production"
    );
    let (status, body) = send_from(&app, &old, STAGING_ORIGIN, "o2", "not from staging").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Resumed with the tenant's key, from its origin, as production.
    let (status, s) = session(
        &app,
        &t.widget_key,
        Some(&t.origin),
        json!({"visitor_token": old.token}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["visitor_token"], old.token.as_str());
    assert_eq!(s["conversation_id"], "cv_old");
    assert_eq!(s["environment"], "production");
    // The tenant is production with its key and origins, and has nothing else.
    let (status, list) = app
        .json(Method::GET, "/v1/admin/environments", Some(&t.key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let envs = list["environments"].as_array().expect("environments");
    assert_eq!(envs.len(), 1, "{list}");
    assert_eq!(envs[0]["environment"], "production");
    assert_eq!(envs[0]["widget_key"], t.widget_key.as_str());
    assert_eq!(envs[0]["settings"]["allowed_origins"], json!([t.origin]));
    let (_, settings) = app
        .json(Method::GET, "/v1/admin/settings", Some(&t.key), None)
        .await;
    assert_eq!(settings["environment"], "production");
    assert_eq!(settings["widget_key"], t.widget_key.as_str());
    let (status, body) = app
        .json(
            Method::GET,
            "/v1/admin/settings?env=staging",
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The usual fixture still works end to end.
    let v = app.visitor(&t).await;
    let (status, _) = app.send(&v, "m1", "hello").await;
    assert_eq!(status, StatusCode::CREATED);
}
