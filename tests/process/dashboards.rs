//! The shipped monitoring files against a real `serve`: every metric name the Grafana
//! dashboard (`config/grafana/chatorical.json`) and the alert rules
//! (`config/prometheus/chatorical.rules.yml`) query is in a scrape of a running server
//! that did what those metrics count; the rules pass `promtool check rules` and their
//! unit tests (`promtool test rules`) when promtool (Debian's `prometheus`) is installed.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use futures_util::SinkExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::fake_telegram::{FakeTelegram, topic_text_update};
use crate::support::{Api, Backend, Install, next_frame, topic_of_sent};

fn config_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(rel)
}

/// The `chatorical_…` metric names in a text (PromQL or a rule file).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("chatorical_") {
        let before_ok = at == 0
            || !rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if before_ok {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// Every `expr` (panel targets) and `definition` (template variables) of the dashboard.
fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| dashboard_queries(i, out)),
        _ => {}
    }
}

/// The metric names of a Prometheus text page.
async fn scraped_names(api: &Api) -> BTreeSet<String> {
    let (status, body) = api.json(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().expect("text page").to_string();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED: promtool is not installed (Debian package `prometheus`; scripts/test installs it)"
        );
        return;
    }
    let dir = config_file("prometheus");
    let check = Command::new("promtool")
        .args(["check", "rules", "chatorical.rules.yml"])
        .current_dir(&dir)
        .output()
        .expect("run promtool");
    let said = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "promtool check rules:\n{said}");
    assert!(said.contains("SUCCESS: 9 rules found"), "{said}");
    let test = Command::new("promtool")
        .args(["test", "rules", "chatorical.rules.test.yml"])
        .current_dir(&dir)
        .output()
        .expect("run promtool");
    let said =
        String::from_utf8_lossy(&test.stdout).to_string() + &String::from_utf8_lossy(&test.stderr);
    assert!(test.status.success(), "promtool test rules:\n{said}");
    // Every alert of the rule file has a unit test that expects it to fire.
    let rules = std::fs::read_to_string(dir.join("chatorical.rules.yml")).expect("rules");
    let tests = std::fs::read_to_string(dir.join("chatorical.rules.test.yml")).expect("tests");
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(
                tests.contains(&format!(
                    "alertname: {name}\n        exp_alerts:\n          - exp_labels"
                )),
                "no unit test expects {name} to fire"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_query_is_scraped() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(config_file("grafana/chatorical.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "chatorical-overview");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 30, "{} queries", queries.len());
    let mut wanted: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    let dashboard_names = wanted.len();
    let rules =
        std::fs::read_to_string(config_file("prometheus/chatorical.rules.yml")).expect("rule file");
    wanted.extend(metric_names(&rules));

    // A server with Redis that does what each of those metrics counts.
    let fake = FakeTelegram::start_local().await;
    let install = Install::new(Backend::Sqlite, &fake.api_url())
        .await
        .with_env("CHATORICAL_REDIS__URL", &crate::test_redis::url())
        .with_env(
            "CHATORICAL_REDIS__KEY_PREFIX",
            &format!("chatorical_dash_{}", uuid::Uuid::new_v4().simple()),
        )
        .with_env("CHATORICAL_LIMITS__SESSIONS_PER_IP_PER_MIN", "4");
    let server = install.serve(&[]).await;
    let api = &server.api;
    let platform = install.platform_key().await;
    let tenant = api.tenant(&platform, "dash").await;
    let group = -100_555;
    let token = api.connect_telegram(&fake, &tenant, 555, group).await;
    let v = api.visitor(&tenant).await;
    let mut ws = server.ws(&v.ws_token, &tenant.origin).await;
    ws.send(Message::text(json!({"type": "typing"}).to_string()))
        .await
        .expect("typing frame");
    api.send(&v, "d1", "to the dashboard").await;
    let thread = topic_of_sent(&fake, group, "to the dashboard", Duration::from_secs(20)).await;
    let answered = fake
        .deliver_update(
            &token,
            &topic_text_update(7001, group, thread, 601, 42, "Ana", "an answer"),
        )
        .await
        .expect("webhook call");
    assert!(answered.is_success());
    // The answer reaches the socket (an outgoing frame).
    loop {
        let frame = next_frame(&mut ws, Duration::from_secs(10))
            .await
            .expect("a frame");
        if frame["type"] == "message" && frame["message"]["text"] == "an answer" {
            break;
        }
    }
    // A webhook call without the secret.
    let refused = reqwest::Client::new()
        .post(format!("{}/v1/telegram/webhook/{}", api.base, tenant.slug))
        .json(&json!({"update_id": 1}))
        .send()
        .await
        .expect("webhook call")
        .status();
    assert_eq!(refused, StatusCode::UNAUTHORIZED);
    // Sessions past the per-IP limit are refused (counted by tenant).
    let mut refusals = 0;
    for _ in 0..6 {
        let (status, _) = api
            .json(
                Method::POST,
                "/v1/widget/session",
                None,
                Some(json!({"widget_key": tenant.widget_key})),
            )
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refusals += 1;
        }
    }
    assert!(refusals > 0, "the per-IP session limit refused none");
    // Telegram paused: the next message waits in the outbox (a backlog lane).
    api.expect(
        StatusCode::OK,
        Method::PATCH,
        "/v1/admin/telegram",
        Some(&tenant.key),
        Some(json!({"enabled": false})),
    )
    .await;
    api.send(&v, "d2", "waits").await;

    let mut scraped = BTreeSet::new();
    let mut missing = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        scraped = scraped_names(api).await;
        missing = wanted
            .iter()
            .filter(|n| {
                !scraped.contains(*n)
                    && !["_bucket", "_count", "_sum"].iter().any(|s| {
                        n.strip_suffix(s)
                            .is_some_and(|b| scraped.contains(&format!("{b}{s}")))
                    })
            })
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        missing.is_empty(),
        "queried by the dashboard or the alerts but not in /metrics: {missing:?}\nscraped: {scraped:?}"
    );
    assert!(dashboard_names >= 25, "{dashboard_names} metric names");
    // And the readiness gauges say what /readyz says.
    let (status, body) = api.json(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let page = body.as_str().expect("text").to_string();
    for line in [
        "chatorical_ready 1",
        "chatorical_dependency_up{dependency=\"database\"} 1",
        "chatorical_dependency_up{dependency=\"redis\"} 1",
        "chatorical_rate_limit_fail_open 1",
    ] {
        assert!(page.lines().any(|l| l == line), "no `{line}` in:\n{page}");
    }
}
