//! Plans: the admin API with its scopes and validation, a tenant's plan, deleting a plan
//! in use, and `plans sync` from a catalogue file (through the library operation).

use chatorical::{
    error::ErrorCode,
    plans::{
        self,
        catalogue::{self, Action, Catalogue, SyncOptions},
    },
    tenancy::{self, Caller},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, code, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    plans_crud_through_the_api_needs_platform_keys_and_scopes,
    plan_validation_names_the_field_and_writes_nothing,
    a_tenants_plan_is_set_and_takes_effect_at_once,
    deleting_a_plan_in_use_is_refused_unless_its_tenants_are_reassigned,
    sync_creates_then_changes_nothing_and_writes_nothing,
    an_invalid_catalogue_changes_nothing_and_names_the_line,
    prune_deactivates_plans_missing_from_the_file,
);

fn pro() -> Value {
    json!({
        "name": "Pro",
        "price_month_cents": 1900,
        "price_year_cents": 19000,
        "limits": {"messages_per_day": 10000, "active_conversations": 100},
        "channels": ["widget", "telegram"],
        "features": {"custom_branding": true}
    })
}

/// A platform key (no tenant) with exactly these scopes.
async fn platform_key(app: &TestApp, scopes: &[&str]) -> String {
    let (status, k) = app
        .json(
            Method::POST,
            "/v1/admin/keys",
            Some(&app.platform_key),
            Some(json!({"scopes": scopes})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{k}");
    assert!(k["tenant"].is_null(), "{k}");
    k["key"].as_str().expect("key").to_string()
}

async fn put_plan(app: &TestApp, key: &str, code: &str, body: Value) -> (StatusCode, Value) {
    app.json(
        Method::PUT,
        &format!("/v1/admin/plans/{code}"),
        Some(key),
        Some(body),
    )
    .await
}

async fn plan_codes(app: &TestApp) -> Vec<String> {
    let (status, list) = app
        .json(
            Method::GET,
            "/v1/admin/plans",
            Some(&app.platform_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .map(|p| p["code"].as_str().expect("code").to_string())
        .collect()
}

async fn plans_crud_through_the_api_needs_platform_keys_and_scopes(b: Backend) {
    let app = spawn_app(b).await;

    // The free plan exists from the migration, with modest limits and both channels.
    let (status, free) = app
        .json(
            Method::GET,
            "/v1/admin/plans/free",
            Some(&app.platform_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{free}");
    assert_eq!(free["active"], true);
    assert_eq!(
        free["limits"],
        json!({
            "conversation_starts_per_day": 20,
            "topic_renames_per_day": 20,
            "messages_per_day": 500,
            "active_conversations": 10,
            "retention_days": 30
        })
    );
    assert_eq!(free["channels"], json!({"widget": true, "telegram": true}));
    assert_eq!(free["features"], json!({}));

    // Created (201), read back, listed.
    let (status, created) = put_plan(&app, &app.platform_key, "pro", pro()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["code"], "pro");
    assert_eq!(created["price_month_cents"], 1900);
    assert_eq!(created["limits"]["messages_per_day"], 10000);
    assert!(
        created["limits"]["conversation_starts_per_day"].is_null(),
        "an absent limit is unlimited: {created}"
    );
    assert_eq!(created["features"], json!({"custom_branding": true}));
    let (status, got) = app
        .json(
            Method::GET,
            "/v1/admin/plans/pro",
            Some(&app.platform_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, created);
    assert_eq!(plan_codes(&app).await, ["free", "pro"]);

    // The same again is 200 and writes nothing; a change is 200 with the new value.
    let (status, same) = put_plan(&app, &app.platform_key, "pro", pro()).await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same, created, "unchanged: updated_at stays");
    let mut cheaper = pro();
    cheaper["price_month_cents"] = json!(900);
    cheaper["active"] = json!(false);
    let (status, replaced) = put_plan(&app, &app.platform_key, "pro", cheaper).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["price_month_cents"], 900);
    assert_eq!(replaced["active"], false);
    assert_eq!(replaced["created_at"], created["created_at"]);

    // plans:read reads but cannot write.
    let reader = platform_key(&app, &["plans:read"]).await;
    let (status, _) = app
        .json(Method::GET, "/v1/admin/plans", Some(&reader), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = put_plan(&app, &reader, "pro", pro()).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(body["error"]["details"]["required_scope"], "plans:write");
    let (status, body) = app
        .json(Method::DELETE, "/v1/admin/plans/pro", Some(&reader), None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    // Without any plans scope, not even reading.
    let other = platform_key(&app, &["tenants:read"]).await;
    let (status, body) = app
        .json(Method::GET, "/v1/admin/plans", Some(&other), None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));

    // A tenant key is refused even when it holds the scopes.
    let t = app.tenant("acme").await;
    let (_, tenant_key) = app.key(&t, &["plans:write"]).await;
    for (method, path, body) in [
        (Method::GET, "/v1/admin/plans", None),
        (Method::GET, "/v1/admin/plans/free", None),
        (Method::PUT, "/v1/admin/plans/mine", Some(pro())),
        (Method::DELETE, "/v1/admin/plans/pro", None),
        (
            Method::PUT,
            "/v1/admin/tenants/acme/plan",
            Some(json!({"plan": "free"})),
        ),
    ] {
        let (status, body) = app.json(method, path, Some(&tenant_key), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["error"]["message"], "this call needs a platform key");
    }
    assert_eq!(plan_codes(&app).await, ["free", "pro"]);

    // Unknown plans are not found.
    let (status, body) = app
        .json(
            Method::GET,
            "/v1/admin/plans/nope",
            Some(&app.platform_key),
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}

async fn plan_validation_names_the_field_and_writes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let with = |path: &str, value: Value| {
        let mut body = pro();
        let mut slot = &mut body;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            slot = &mut slot[*part];
        }
        slot[parts[parts.len() - 1]] = value;
        body
    };
    for (body, field) in [
        (with("name", json!("   ")), "name"),
        (with("name", json!("x".repeat(101))), "name"),
        (with("price_month_cents", json!(-1)), "price_month_cents"),
        (with("price_year_cents", json!(-100)), "price_year_cents"),
        (
            with("limits.messages_per_day", json!(3_000_000_000u64)),
            "limits.messages_per_day",
        ),
        (
            with("limits.retention_days", json!(0)),
            "limits.retention_days",
        ),
        (with("features", json!({"Not A Flag": true})), "features"),
    ] {
        let (status, err) = put_plan(&app, &app.platform_key, "pro", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {err}");
        assert_eq!(code(&err), "validation_failed");
        assert_eq!(err["error"]["details"]["field"], field, "{err}");
    }
    // A bad code in the path.
    let (status, err) = put_plan(&app, &app.platform_key, "Pro_Plan", pro()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["details"]["field"], "code");
    // Unknown fields and wrong types are refused, naming them.
    let (status, err) = put_plan(
        &app,
        &app.platform_key,
        "pro",
        with("limits.messages_per_dai", json!(5)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("messages_per_dai")),
        "{err}"
    );
    let (status, err) = put_plan(
        &app,
        &app.platform_key,
        "pro",
        with("channels", json!(["widget", "email"])),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("channels") && m.contains("email")),
        "{err}"
    );
    assert_eq!(plan_codes(&app).await, ["free"], "nothing was written");
}

async fn a_tenants_plan_is_set_and_takes_effect_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let (status, _) = put_plan(&app, &app.platform_key, "pro", pro()).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut retired = pro();
    retired["active"] = json!(false);
    let (status, _) = put_plan(&app, &app.platform_key, "retired", retired).await;
    assert_eq!(status, StatusCode::CREATED);

    // New tenants are on free; tenant views show the plan.
    let (_, list) = app
        .json(
            Method::GET,
            "/v1/admin/tenants",
            Some(&app.platform_key),
            None,
        )
        .await;
    assert_eq!(list["tenants"][0]["plan"], "free", "{list}");
    let mut pc = app.state.db.conn().await.expect("connection");
    let plan = plans::for_tenant(&mut pc.as_conn(), &t.id)
        .await
        .expect("plan");
    assert_eq!(plan.code.as_str(), "free");
    assert_eq!(plan.limits.messages_per_day, Some(500));

    // Put on pro: seen at once by the enforcement's read.
    let (status, tenant) = app
        .json(
            Method::PUT,
            "/v1/admin/tenants/acme/plan",
            Some(&app.platform_key),
            Some(json!({"plan": "pro"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!(tenant["plan"], "pro");
    assert_eq!(tenant["slug"], "acme");
    let plan = plans::for_tenant(&mut pc.as_conn(), &t.id)
        .await
        .expect("plan");
    assert_eq!(plan.code.as_str(), "pro");
    assert_eq!(plan.limits.messages_per_day, Some(10000));
    assert!(plan.feature("custom_branding"));
    // A change of the plan itself too.
    let mut more = pro();
    more["limits"]["messages_per_day"] = json!(20000);
    let (status, _) = put_plan(&app, &app.platform_key, "pro", more).await;
    assert_eq!(status, StatusCode::OK);
    let plan = plans::for_tenant(&mut pc.as_conn(), &t.id)
        .await
        .expect("plan");
    assert_eq!(plan.limits.messages_per_day, Some(20000));

    // An unknown or inactive plan, a bad code, an unknown tenant.
    for (plan, wanted) in [("nope", "there is no plan"), ("retired", "not active")] {
        let (status, err) = app
            .json(
                Method::PUT,
                "/v1/admin/tenants/acme/plan",
                Some(&app.platform_key),
                Some(json!({ "plan": plan })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["error"]["details"]["field"], "plan");
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(wanted)),
            "{err}"
        );
    }
    let (status, err) = app
        .json(
            Method::PUT,
            "/v1/admin/tenants/acme/plan",
            Some(&app.platform_key),
            Some(json!({"plan": "Bad Code"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    let (status, err) = app
        .json(
            Method::PUT,
            "/v1/admin/tenants/nobody/plan",
            Some(&app.platform_key),
            Some(json!({"plan": "pro"})),
        )
        .await;
    assert_eq!((status, code(&err)), (StatusCode::NOT_FOUND, "not_found"));
    let plan = plans::for_tenant(&mut pc.as_conn(), &t.id)
        .await
        .expect("plan");
    assert_eq!(
        plan.code.as_str(),
        "pro",
        "the refused changes changed nothing"
    );

    // Creating a tenant on a plan: an active one only, and it needs plans:write.
    let (status, created) = app
        .json(
            Method::POST,
            "/v1/admin/tenants",
            Some(&app.platform_key),
            Some(json!({"slug": "beta", "name": "Beta", "plan": "pro"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["plan"], "pro");
    let (status, err) = app
        .json(
            Method::POST,
            "/v1/admin/tenants",
            Some(&app.platform_key),
            Some(json!({"slug": "gamma", "name": "Gamma", "plan": "retired"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["details"]["field"], "plan");
    let tenants_only = platform_key(&app, &["tenants:write"]).await;
    let (status, err) = app
        .json(
            Method::POST,
            "/v1/admin/tenants",
            Some(&tenants_only),
            Some(json!({"slug": "gamma", "name": "Gamma", "plan": "pro"})),
        )
        .await;
    assert_eq!((status, code(&err)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, created) = app
        .json(
            Method::POST,
            "/v1/admin/tenants",
            Some(&tenants_only),
            Some(json!({"slug": "gamma", "name": "Gamma"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["plan"], "free");
}

async fn deleting_a_plan_in_use_is_refused_unless_its_tenants_are_reassigned(b: Backend) {
    let app = spawn_app(b).await;
    for code in ["pro", "business", "unused"] {
        let (status, _) = put_plan(&app, &app.platform_key, code, pro()).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let mut closed = pro();
    closed["active"] = json!(false);
    let (status, _) = put_plan(&app, &app.platform_key, "closed", closed).await;
    assert_eq!(status, StatusCode::CREATED);
    app.tenant("acme").await;
    app.tenant("beta").await;
    app.tenant("gamma").await;
    for slug in ["acme", "beta"] {
        let (status, body) = app
            .json(
                Method::PUT,
                &format!("/v1/admin/tenants/{slug}/plan"),
                Some(&app.platform_key),
                Some(json!({"plan": "pro"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let delete = async |path: &str| {
        app.json(Method::DELETE, path, Some(&app.platform_key), None)
            .await
    };

    // In use: refused, naming how many.
    let (status, err) = delete("/v1/admin/plans/pro").await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::CONFLICT, "conflict"),
        "{err}"
    );
    assert_eq!(err["error"]["details"]["tenants"], 2);
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("2 tenants")),
        "{err}"
    );
    // Never free; not to itself, an unknown or an inactive plan.
    let (status, err) = delete("/v1/admin/plans/free?reassign=pro").await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::CONFLICT, "conflict"),
        "{err}"
    );
    for reassign in ["pro", "nope", "closed"] {
        let (status, err) = delete(&format!("/v1/admin/plans/pro?reassign={reassign}")).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{reassign}: {err}"
        );
        assert_eq!(err["error"]["details"]["field"], "reassign");
    }
    let (status, err) = delete("/v1/admin/plans/nope").await;
    assert_eq!((status, code(&err)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(
        plan_codes(&app).await,
        ["business", "closed", "free", "pro", "unused"],
        "nothing was deleted"
    );

    // With reassign: tenants moved and the plan gone, in one go.
    let (status, deleted) = delete("/v1/admin/plans/pro?reassign=business").await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["plan"]["code"], "pro");
    assert_eq!(deleted["reassigned"], 2);
    assert_eq!(deleted["reassigned_to"], "business");
    let (_, list) = app
        .json(
            Method::GET,
            "/v1/admin/tenants",
            Some(&app.platform_key),
            None,
        )
        .await;
    let on: Vec<(&str, &str)> = list["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| {
            (
                t["slug"].as_str().expect("slug"),
                t["plan"].as_str().expect("plan"),
            )
        })
        .collect();
    assert_eq!(
        on,
        [
            ("acme", "business"),
            ("beta", "business"),
            ("gamma", "free")
        ]
    );
    // An unused plan goes without reassign.
    let (status, deleted) = delete("/v1/admin/plans/unused").await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["reassigned"], 0);
    assert!(deleted["reassigned_to"].is_null());
    assert_eq!(plan_codes(&app).await, ["business", "closed", "free"]);
}

const CATALOGUE: &str = r#"[plans.free]
name = "Free"

[plans.free.limits]
conversation_starts_per_day = 20
topic_renames_per_day = 20
messages_per_day = 500
active_conversations = 10
retention_days = 30

[plans.pro]
name = "Pro"
price_month_cents = 1900
channels = ["widget", "telegram"]

[plans.pro.limits]
messages_per_day = 10000

[plans.pro.features]
custom_branding = true

[plans.team]
name = "Team"
channels = { widget = true, telegram = false }
"#;

async fn sync(app: &TestApp, text: &str, options: SyncOptions) -> catalogue::SyncReport {
    let c = Catalogue::parse("plans.toml", text).expect("a valid catalogue");
    let target = catalogue::Database::new(&app.state.db);
    catalogue::sync(&Caller::Operator, &c, &target, options)
        .await
        .expect("sync")
}

fn actions(report: &catalogue::SyncReport) -> Vec<(String, String)> {
    report
        .plans
        .iter()
        .map(|p| (p.code.to_string(), p.action.as_str().to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn stored(app: &TestApp) -> Vec<plans::Plan> {
    plans::list(&app.state.db, &Caller::Operator)
        .await
        .expect("plans")
}

async fn sync_creates_then_changes_nothing_and_writes_nothing(b: Backend) {
    let app = spawn_app(b).await;

    // A dry run reports and writes nothing.
    let dry = sync(
        &app,
        CATALOGUE,
        SyncOptions {
            dry_run: true,
            prune: false,
        },
    )
    .await;
    assert!(dry.dry_run && dry.changed);
    assert_eq!(
        actions(&dry),
        pairs(&[
            ("free", "unchanged"),
            ("pro", "created"),
            ("team", "created")
        ])
    );
    assert_eq!(stored(&app).await.len(), 1);

    let first = sync(&app, CATALOGUE, SyncOptions::default()).await;
    assert_eq!(first.target, "database");
    assert!(first.changed && !first.dry_run);
    assert_eq!(actions(&first), actions(&dry));
    let after_first = stored(&app).await;
    assert_eq!(after_first.len(), 3);
    let team = &after_first[2];
    assert_eq!(team.code.as_str(), "team");
    assert!(team.channels.widget && !team.channels.telegram);
    assert_eq!(team.limits, plans::Limits::default(), "unlimited");

    // Again: nothing changed, nothing written (updated_at of every plan as it was).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = sync(&app, CATALOGUE, SyncOptions::default()).await;
    assert!(!second.changed);
    assert!(second.plans.iter().all(|p| p.action == Action::Unchanged));
    assert_eq!(second.plans.len(), 3);
    assert_eq!(stored(&app).await, after_first, "no row was written");

    // A change: reported field by field, and only that plan is written.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let changed = CATALOGUE.replace("messages_per_day = 10000", "messages_per_day = 20000");
    let dry = sync(
        &app,
        &changed,
        SyncOptions {
            dry_run: true,
            prune: false,
        },
    )
    .await;
    assert_eq!(stored(&app).await, after_first, "a dry run writes nothing");
    assert_eq!(
        dry.plans[1].action,
        Action::Updated {
            changes: vec![plans::FieldChange {
                field: "limits.messages_per_day".into(),
                old: "10000".into(),
                new: "20000".into(),
            }]
        }
    );
    let third = sync(&app, &changed, SyncOptions::default()).await;
    assert_eq!(third.plans, dry.plans);
    let after_third = stored(&app).await;
    assert_eq!(after_third[0], after_first[0], "free untouched");
    assert_eq!(after_third[2], after_first[2], "team untouched");
    assert_eq!(after_third[1].limits.messages_per_day, Some(20000));
    assert_eq!(after_third[1].created_at, after_first[1].created_at);
    assert_ne!(after_third[1].updated_at, after_first[1].updated_at);

    // The rules of the operation: plans:read may only dry-run; tenant keys may not.
    let c = Catalogue::parse("plans.toml", CATALOGUE).expect("valid");
    let target = catalogue::Database::new(&app.state.db);
    let reader = platform_key(&app, &["plans:read"]).await;
    let reader = Caller::Key(
        tenancy::authenticate(&app.state.db, &reader)
            .await
            .expect("key"),
    );
    let e = catalogue::sync(&reader, &c, &target, SyncOptions::default())
        .await
        .expect_err("plans:read cannot sync");
    assert_eq!(e.code, ErrorCode::Forbidden);
    let dry = catalogue::sync(
        &reader,
        &c,
        &target,
        SyncOptions {
            dry_run: true,
            prune: false,
        },
    )
    .await
    .expect("plans:read may dry-run");
    assert!(dry.changed, "the file is behind the database now");
    let t = app.tenant("acme").await;
    let (_, tenant_key) = app.key(&t, &["plans:write"]).await;
    let tenant_caller = Caller::Key(
        tenancy::authenticate(&app.state.db, &tenant_key)
            .await
            .expect("key"),
    );
    let e = catalogue::sync(&tenant_caller, &c, &target, SyncOptions::default())
        .await
        .expect_err("a tenant key cannot sync");
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert_eq!(stored(&app).await, after_third);
}

async fn an_invalid_catalogue_changes_nothing_and_names_the_line(b: Backend) {
    let app = spawn_app(b).await;
    let before = stored(&app).await;
    // Line 17 holds a negative limit; the plans before it are fine.
    let bad = CATALOGUE.replace("messages_per_day = 10000", "messages_per_day = -5");
    assert_eq!(
        bad.lines().nth(16),
        Some("messages_per_day = -5"),
        "the test's line numbers"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plans.toml");
    std::fs::write(&path, &bad).expect("write");
    let e = Catalogue::load(&path).expect_err("invalid");
    assert_eq!(e.code, ErrorCode::ValidationFailed);
    let shown = path.display().to_string();
    assert!(
        e.message
            .starts_with(&format!("{shown}:17: plans.pro.limits.messages_per_day: ")),
        "{}",
        e.message
    );
    let details = e.details.expect("details");
    assert_eq!(details["line"], 17);
    assert_eq!(details["field"], "plans.pro.limits.messages_per_day");

    // A rule broken after parsing is found the same way, and so is an unknown key.
    let bad = CATALOGUE.replace("price_month_cents = 1900", "price_month_cents = -1900");
    let e = Catalogue::parse("plans.toml", &bad).expect_err("negative price");
    assert!(
        e.message
            .starts_with("plans.toml:13: plans.pro.price_month_cents: "),
        "{}",
        e.message
    );
    let bad = CATALOGUE.replace("[plans.team]\n", "[plans.team]\ncolour = \"red\"\n");
    let e = Catalogue::parse("plans.toml", &bad).expect_err("unknown key");
    assert!(
        e.message.starts_with("plans.toml:23: plans.team.colour: ")
            && e.message.contains("unknown field `colour`"),
        "{}",
        e.message
    );
    // A file that is not there.
    let e = Catalogue::load(&dir.path().join("missing.toml")).expect_err("missing");
    assert!(e.message.contains("missing.toml"), "{}", e.message);
    assert_eq!(stored(&app).await, before, "nothing was applied");
}

async fn prune_deactivates_plans_missing_from_the_file(b: Backend) {
    let app = spawn_app(b).await;
    sync(&app, CATALOGUE, SyncOptions::default()).await;
    let t = app.tenant("acme").await;
    plans::set_tenant_plan(&app.state.db, &Caller::Operator, "acme", "team")
        .await
        .expect("onto team");
    let without_team = &CATALOGUE[..CATALOGUE.find("[plans.team]").expect("team")];

    // Without --prune a plan missing from the file is left alone.
    let report = sync(&app, without_team, SyncOptions::default()).await;
    assert!(!report.changed);
    assert_eq!(
        actions(&report),
        pairs(&[("free", "unchanged"), ("pro", "unchanged")])
    );
    // With it, deactivated (never deleted); its tenant keeps it.
    let report = sync(
        &app,
        without_team,
        SyncOptions {
            dry_run: false,
            prune: true,
        },
    )
    .await;
    assert_eq!(
        actions(&report),
        pairs(&[
            ("free", "unchanged"),
            ("pro", "unchanged"),
            ("team", "deactivated")
        ])
    );
    let team = plans::get(&app.state.db, &Caller::Operator, "team")
        .await
        .expect("still there");
    assert!(!team.active);
    let mut pc = app.state.db.conn().await.expect("connection");
    let plan = plans::for_tenant(&mut pc.as_conn(), &t.id)
        .await
        .expect("plan");
    assert_eq!(plan.code.as_str(), "team");
    // Pruning again: already inactive, nothing to do.
    let report = sync(
        &app,
        without_team,
        SyncOptions {
            dry_run: false,
            prune: true,
        },
    )
    .await;
    assert!(!report.changed, "{:?}", report.plans);
    // Listed again in the file: active again.
    let report = sync(
        &app,
        CATALOGUE,
        SyncOptions {
            dry_run: false,
            prune: true,
        },
    )
    .await;
    assert_eq!(
        report.plans[2].action,
        Action::Updated {
            changes: vec![plans::FieldChange {
                field: "active".into(),
                old: "false".into(),
                new: "true".into(),
            }]
        }
    );
    // A sync never deletes, not even with an empty file: free included, all deactivated.
    let report = sync(
        &app,
        "",
        SyncOptions {
            dry_run: false,
            prune: true,
        },
    )
    .await;
    assert_eq!(
        actions(&report),
        pairs(&[
            ("free", "deactivated"),
            ("pro", "deactivated"),
            ("team", "deactivated")
        ])
    );
    assert_eq!(stored(&app).await.len(), 3);
}
