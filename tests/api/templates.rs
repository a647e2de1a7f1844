//! Templates and i18n: a tenant's texts for the widget's strings (CRUD, validation with
//! positions, tenant isolation), the fallback chain de-AT → de → tenant default → en,
//! and the public merged strings with ETag/304.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TenantFixture, TestApp, code, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    templates_round_trip_and_scopes,
    bad_templates_name_the_position,
    fallback_goes_exact_language_tenant_default_english,
    templates_are_tenant_isolated,
    i18n_serves_merged_strings_with_an_etag,
);

fn tpl(key: &str, locale: &str) -> String {
    format!("/v1/admin/templates/{key}/{locale}")
}

async fn put(app: &TestApp, key: &str, path: &str, body: &str) -> (StatusCode, Value) {
    app.json(Method::PUT, path, Some(key), Some(json!({ "body": body })))
        .await
}

async fn preview(app: &TestApp, key: &str, req: Value) -> Value {
    let (status, p) = app
        .json(
            Method::POST,
            "/v1/admin/templates/preview",
            Some(key),
            Some(req),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    p
}

/// `(text, locale_used, source)` of a preview without variables.
async fn resolved(
    app: &TestApp,
    key: &str,
    string: &str,
    locale: &str,
) -> (String, String, String) {
    let p = preview(app, key, json!({ "key": string, "locale": locale })).await;
    (
        p["text"].as_str().expect("text").into(),
        p["locale_used"].as_str().expect("locale_used").into(),
        p["source"].as_str().expect("source").into(),
    )
}

fn listed(v: &Value) -> Vec<(String, String, String)> {
    v["templates"]
        .as_array()
        .unwrap_or_else(|| panic!("templates in {v}"))
        .iter()
        .map(|t| {
            (
                t["key"].as_str().expect("key").into(),
                t["locale"].as_str().expect("locale").into(),
                t["body"].as_str().expect("body").into(),
            )
        })
        .collect()
}

fn owned(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    items
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

async fn templates_round_trip_and_scopes(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let (_, w) = app.key(&t, &["templates:write"]).await;
    let (_, r) = app.key(&t, &["templates:read"]).await;

    // PUT normalises the locale and answers with what it stored.
    let (status, stored) = put(&app, &w, &tpl("widget.title", "DE-at"), "Servus!").await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["key"], "widget.title");
    assert_eq!(stored["locale"], "de-AT");
    assert_eq!(stored["body"], "Servus!");
    assert!(stored["updated_at"].is_string(), "{stored}");
    let (status, got) = app
        .json(Method::GET, &tpl("widget.title", "de-at"), Some(&r), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got, stored);

    // PUT again replaces.
    let (status, _) = put(&app, &w, &tpl("widget.title", "de-AT"), "Grüß Gott!").await;
    assert_eq!(status, StatusCode::OK);
    let (_, got) = app
        .json(Method::GET, &tpl("widget.title", "de-AT"), Some(&r), None)
        .await;
    assert_eq!(got["body"], "Grüß Gott!");

    for (k, l, body) in [
        ("widget.title", "de", "Hallo"),
        ("widget.rate_limited", "de", "Langsam! {{ retry_after }} s"),
    ] {
        let (status, v) = put(&app, &w, &tpl(k, l), body).await;
        assert_eq!(status, StatusCode::OK, "{k} {l}: {v}");
    }

    // Listing, by key and locale, with filters.
    let (status, all) = app
        .json(Method::GET, "/v1/admin/templates", Some(&r), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(
        listed(&all),
        owned(&[
            ("widget.rate_limited", "de", "Langsam! {{ retry_after }} s"),
            ("widget.title", "de", "Hallo"),
            ("widget.title", "de-AT", "Grüß Gott!"),
        ])
    );
    for (query, expected) in [
        ("?key=widget.title", 2),
        ("?locale=de", 2),
        ("?locale=DE-AT", 1),
        ("?key=widget.title&locale=de", 1),
        ("?key=widget.send", 0),
    ] {
        let (status, v) = app
            .json(
                Method::GET,
                &format!("/v1/admin/templates{query}"),
                Some(&r),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {v}");
        assert_eq!(listed(&v).len(), expected, "{query}: {v}");
    }
    let (status, v) = app
        .json(
            Method::GET,
            "/v1/admin/templates?locale=german",
            Some(&r),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    assert_eq!(v["error"]["details"]["field"], "locale");
    let (status, v) = app
        .json(
            Method::GET,
            "/v1/admin/templates?key=widget.nope",
            Some(&r),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::NOT_FOUND, "not_found"),
        "{v}"
    );

    // Unknown key: 404 naming it; bad locale: 422.
    let (status, v) = put(&app, &w, &tpl("widget.nope", "de"), "x").await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::NOT_FOUND, "not_found"),
        "{v}"
    );
    assert_eq!(v["error"]["details"]["key"], "widget.nope");
    for bad in ["deu", "de-", "de_AT", "de-AT-1996"] {
        let (status, v) = put(&app, &w, &tpl("widget.title", bad), "x").await;
        assert_eq!(
            (status, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{bad}: {v}"
        );
        assert_eq!(v["error"]["details"]["field"], "locale");
    }

    // Scopes: read cannot write; no templates scope cannot read.
    let (status, v) = put(&app, &r, &tpl("widget.title", "fr"), "Salut").await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::FORBIDDEN, "forbidden"),
        "{v}"
    );
    let (status, v) = app
        .json(Method::DELETE, &tpl("widget.title", "de"), Some(&r), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = app
        .json(Method::GET, "/v1/admin/templates", Some(&t.key), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, _) = app
        .json(Method::GET, "/v1/admin/templates", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // DELETE answers with what it deleted; then it is gone.
    let (status, deleted) = app
        .json(
            Method::DELETE,
            &tpl("widget.title", "de-AT"),
            Some(&w),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["body"], "Grüß Gott!");
    for m in [Method::GET, Method::DELETE] {
        let (status, v) = app
            .json(m.clone(), &tpl("widget.title", "de-AT"), Some(&w), None)
            .await;
        assert_eq!(
            (status, code(&v)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{m}: {v}"
        );
    }
    let (_, all) = app
        .json(Method::GET, "/v1/admin/templates", Some(&r), None)
        .await;
    assert_eq!(listed(&all).len(), 2, "{all}");

    // Documented.
    let (_, doc) = app.json(Method::GET, "/openapi.json", None, None).await;
    for path in [
        "/v1/admin/templates",
        "/v1/admin/templates/{key}/{locale}",
        "/v1/admin/templates/preview",
        "/v1/i18n/{locale}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    for m in ["get", "put", "delete"] {
        assert!(
            doc["paths"]["/v1/admin/templates/{key}/{locale}"][m].is_object(),
            "{m} documented"
        );
    }
}

async fn bad_templates_name_the_position(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let (_, w) = app.key(&t, &["templates:write"]).await;

    // (key, body, position, variable)
    let cases: &[(&str, &str, u64, Option<&str>)] = &[
        ("widget.title", "Hello {{ name", 6, None),
        ("widget.title", "Hi {{}} there", 3, None),
        ("widget.title", "Hi {{   }}", 3, None),
        ("widget.title", "Hi {{ 9lives }}", 3, None),
        ("widget.title", "Hi {{ first name }}", 3, None),
        ("widget.title", "Hi {{ name }}", 3, Some("name")),
        // Characters, not bytes: ü and ß are two bytes each.
        ("widget.title", "Grüße {{x}}", 6, Some("x")),
        (
            "widget.rate_limited",
            "Wait {{retry_after}}s, {{ name }}",
            23,
            Some("name"),
        ),
        (
            "widget.unread",
            "{{count}} new {{count}} {{ unread",
            24,
            None,
        ),
    ];
    for (key, body, position, variable) in cases {
        let (status, v) = put(&app, &w, &tpl(key, "en"), body).await;
        assert_eq!(
            (status, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{body}: {v}"
        );
        let d = &v["error"]["details"];
        assert_eq!(d["field"], "body", "{body}: {v}");
        assert_eq!(d["position"], *position, "{body}: {v}");
        assert_eq!(d["variable"].as_str(), *variable, "{body}: {v}");
        let message = v["error"]["message"].as_str().expect("message");
        assert!(
            message.contains(&format!("character {position}")),
            "{body}: {message}"
        );
        // The preview validates a given body the same way.
        let (status, p) = app
            .json(
                Method::POST,
                "/v1/admin/templates/preview",
                Some(&w),
                Some(json!({"key": key, "locale": "en", "body": body})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
        assert_eq!(p["error"]["details"], *d);
    }
    // Plain braces are text; allowed variables are fine.
    for (key, body) in [
        ("widget.title", "{ curly } }} {"),
        ("widget.rate_limited", "{{retry_after}}{{ retry_after }}"),
        ("widget.greeting", ""),
    ] {
        let (status, v) = put(&app, &w, &tpl(key, "en"), body).await;
        assert_eq!(status, StatusCode::OK, "{body}: {v}");
    }
    let long = "x".repeat(2001);
    let (status, v) = put(&app, &w, &tpl("widget.title", "en"), &long).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Nothing invalid was stored.
    let (_, all) = app
        .json(Method::GET, "/v1/admin/templates", Some(&w), None)
        .await;
    assert_eq!(listed(&all).len(), 3, "{all}");
}

async fn fallback_goes_exact_language_tenant_default_english(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let (_, w) = app.key(&t, &["templates:write"]).await;
    let title = |locale: &'static str| resolved(&app, &w, "widget.title", locale);
    let r = |text: &str, used: &str, source: &str| {
        (text.to_string(), used.to_string(), source.to_string())
    };

    // Built-ins only: German for de-AT via de, English for anything else.
    assert_eq!(
        title("de-AT").await,
        r("Schreiben Sie uns", "de", "builtin")
    );
    assert_eq!(title("es").await, r("Chat with us", "en", "builtin"));

    // An English override is the last step of every chain.
    put(&app, &w, &tpl("widget.title", "en"), "Talk to us").await;
    assert_eq!(title("es").await, r("Talk to us", "en", "override"));
    assert_eq!(
        title("de-AT").await,
        r("Schreiben Sie uns", "de", "builtin")
    );

    // The tenant's default locale comes before English.
    put(&app, &w, &tpl("widget.title", "fr"), "Écrivez-nous").await;
    assert_eq!(title("es").await, r("Talk to us", "en", "override"));
    let (status, s) = app
        .json(
            Method::PATCH,
            "/v1/admin/settings",
            Some(&t.key),
            Some(json!({"default_locale": "fr-CA"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(title("es").await, r("Écrivez-nous", "fr", "override"));
    assert_eq!(title("es-MX").await, r("Écrivez-nous", "fr", "override"));
    // ...but after the visitor's own language.
    assert_eq!(
        title("de-AT").await,
        r("Schreiben Sie uns", "de", "builtin")
    );

    // A language override beats the built-in; the exact locale beats the language.
    put(&app, &w, &tpl("widget.title", "de"), "Hallo Team").await;
    assert_eq!(title("de-AT").await, r("Hallo Team", "de", "override"));
    put(&app, &w, &tpl("widget.title", "de-AT"), "Servus").await;
    assert_eq!(title("de-AT").await, r("Servus", "de-AT", "override"));
    assert_eq!(title("de-CH").await, r("Hallo Team", "de", "override"));
    assert_eq!(title("de").await, r("Hallo Team", "de", "override"));
    app.json(
        Method::DELETE,
        &tpl("widget.title", "de-AT"),
        Some(&w),
        None,
    )
    .await;
    assert_eq!(title("de-AT").await, r("Hallo Team", "de", "override"));
    // Other keys are untouched by widget.title's overrides.
    assert_eq!(
        resolved(&app, &w, "widget.send", "de-AT").await,
        r("Senden", "de", "builtin")
    );

    // Variables: numbers as text, unknown ones ignored, missing ones empty.
    let p = preview(
        &app,
        &w,
        json!({"key": "widget.rate_limited", "locale": "de-AT", "variables": {"retry_after": 7, "nope": "x"}}),
    )
    .await;
    assert_eq!(
        p["text"],
        "Sie senden zu schnell – bitte in 7 s erneut versuchen"
    );
    let p = preview(
        &app,
        &w,
        json!({"key": "widget.rate_limited", "locale": "en"}),
    )
    .await;
    assert_eq!(p["text"], "You're sending too fast – try again in  s");
    // A given body is rendered for the requested locale.
    let p = preview(
        &app,
        &w,
        json!({"key": "widget.rate_limited", "locale": "DE-at", "body": "Noch {{ retry_after }}s", "variables": {"retry_after": "3"}}),
    )
    .await;
    assert_eq!(
        (&p["text"], &p["locale_used"], &p["source"]),
        (&json!("Noch 3s"), &json!("de-AT"), &json!("body"))
    );
    // Unknown key and bad locale.
    let (status, v) = app
        .json(
            Method::POST,
            "/v1/admin/templates/preview",
            Some(&w),
            Some(json!({"key": "widget.nope", "locale": "en"})),
        )
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::NOT_FOUND, "not_found"),
        "{v}"
    );
    let (status, v) = app
        .json(
            Method::POST,
            "/v1/admin/templates/preview",
            Some(&w),
            Some(json!({"key": "widget.title", "locale": "klingon"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // The widget's strings follow the same chain.
    let (_, de_ch) = strings(&app, &t, "de-CH").await;
    assert_eq!(de_ch["strings"]["widget.title"], "Hallo Team");
    assert_eq!(de_ch["strings"]["widget.send"], "Senden");
    let (_, it) = strings(&app, &t, "it").await;
    assert_eq!(it["strings"]["widget.title"], "Écrivez-nous");
    assert_eq!(it["strings"]["widget.send"], "Send");
}

async fn templates_are_tenant_isolated(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.tenant("alpha").await;
    let tb = app.tenant("bravo").await;
    let (_, ka) = app.key(&a, &["templates:write"]).await;
    let (_, kb) = app.key(&tb, &["templates:write"]).await;
    put(&app, &ka, &tpl("widget.title", "de"), "Alpha spricht").await;

    // B cannot see, read or delete A's template.
    let (status, v) = app
        .json(Method::GET, &tpl("widget.title", "de"), Some(&kb), None)
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::NOT_FOUND, "not_found"),
        "{v}"
    );
    let (status, v) = app
        .json(Method::DELETE, &tpl("widget.title", "de"), Some(&kb), None)
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::NOT_FOUND, "not_found"),
        "{v}"
    );
    for query in ["", "?key=widget.title", "?locale=de"] {
        let (_, list) = app
            .json(
                Method::GET,
                &format!("/v1/admin/templates{query}"),
                Some(&kb),
                None,
            )
            .await;
        assert_eq!(listed(&list), vec![], "{query}: {list}");
    }
    assert_eq!(
        resolved(&app, &kb, "widget.title", "de").await.0,
        "Schreiben Sie uns"
    );
    let (_, sb) = strings(&app, &tb, "de").await;
    assert_eq!(sb["strings"]["widget.title"], "Schreiben Sie uns");

    // B's own template of the same key and locale leaves A's alone, and back.
    put(&app, &kb, &tpl("widget.title", "de"), "Bravo spricht").await;
    let (_, got) = app
        .json(Method::GET, &tpl("widget.title", "de"), Some(&ka), None)
        .await;
    assert_eq!(got["body"], "Alpha spricht");
    let (status, _) = app
        .json(Method::DELETE, &tpl("widget.title", "de"), Some(&kb), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, sa) = strings(&app, &a, "de-AT").await;
    assert_eq!(sa["strings"]["widget.title"], "Alpha spricht");
    let (_, la) = app
        .json(Method::GET, "/v1/admin/templates", Some(&ka), None)
        .await;
    assert_eq!(
        listed(&la),
        owned(&[("widget.title", "de", "Alpha spricht")])
    );

    // A platform key acts only for the tenant it names.
    let (status, pk) = app
        .json(
            Method::POST,
            "/v1/admin/keys",
            Some(&app.platform_key),
            Some(json!({"scopes": ["templates:write"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pk}");
    let pk = pk["key"].as_str().expect("key");
    let (status, _) = app
        .json(Method::GET, "/v1/admin/templates", Some(pk), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for (slug, expected) in [("alpha", 1), ("bravo", 0)] {
        let resp = app
            .http
            .get(format!("{}/v1/admin/templates", app.base))
            .bearer_auth(pk)
            .header("chatorical-tenant", slug)
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.expect("json");
        assert_eq!(listed(&v).len(), expected, "{slug}: {v}");
    }
}

/// `GET /v1/i18n/{locale}` for a tenant: status and JSON body.
async fn strings(app: &TestApp, t: &TenantFixture, locale: &str) -> (StatusCode, Value) {
    app.json(
        Method::GET,
        &format!("/v1/i18n/{locale}?widget_key={}", t.widget_key),
        None,
        None,
    )
    .await
}

async fn i18n_serves_merged_strings_with_an_etag(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let (_, w) = app.key(&t, &["templates:write"]).await;
    let url = format!("{}/v1/i18n/DE-at?widget_key={}", app.base, t.widget_key);

    let resp = app.http.get(&url).send().await.expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let etag = resp.headers()["etag"].to_str().expect("etag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(resp.headers()["cache-control"], "public, max-age=60");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["locale"], "de-AT");
    let merged = body["strings"].as_object().expect("strings");
    let keys: Vec<&str> = merged.keys().map(String::as_str).collect();
    let mut catalogue: Vec<&str> = chatorical::i18n::CATALOGUE.iter().map(|d| d.key).collect();
    catalogue.sort_unstable();
    assert_eq!(keys, catalogue, "every key, merged");
    assert_eq!(merged["widget.title"], "Schreiben Sie uns");
    assert_eq!(
        merged["widget.rate_limited"],
        "Sie senden zu schnell – bitte in {{retry_after}} s erneut versuchen",
        "templates, filled in by the widget"
    );

    // The same ETag is not modified; a stale one is.
    let resp = app
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(resp.headers()["etag"].to_str().expect("etag"), etag);
    assert_eq!(resp.text().await.expect("body"), "");
    let resp = app
        .http
        .get(&url)
        .header("if-none-match", "\"stale\"")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);

    // An override changes the strings and the ETag.
    put(&app, &w, &tpl("widget.send", "de-AT"), "Abschicken").await;
    let resp = app
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_ne!(resp.headers()["etag"].to_str().expect("etag"), etag);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["strings"]["widget.send"], "Abschicken");
    // Not for another tenant.
    let (_, o) = strings(&app, &other, "de-AT").await;
    assert_eq!(o["strings"]["widget.send"], "Senden");
    // English is the default.
    let (status, en) = strings(&app, &t, "en").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(en["strings"]["widget.send"], "Send");
    assert_eq!(en["strings"]["widget.title"], "Chat with us");

    // Unknown widget key: 401, like the session; bad locale: 422.
    let (status, v) = app
        .json(Method::GET, "/v1/i18n/de?widget_key=wk_nope", None, None)
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized"),
        "{v}"
    );
    for bad in ["german", "d", "de-AUT", "de_AT"] {
        let (status, v) = strings(&app, &t, bad).await;
        assert_eq!(
            (status, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{bad}: {v}"
        );
        assert_eq!(v["error"]["details"]["field"], "locale");
    }

    // A browser on an allowed origin gets CORS headers; another origin is refused.
    let resp = app
        .http
        .get(&url)
        .header("origin", &t.origin)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["access-control-allow-origin"]
            .to_str()
            .expect("acao"),
        t.origin
    );
    let resp = app
        .http
        .get(&url)
        .header("origin", &other.origin)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}
