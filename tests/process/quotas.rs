//! Plan quotas hold across nodes: two `serve` processes on one PostgreSQL and Redis
//! together never admit more than the tenant's plan allows (issue 12).

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cluster::deployment;
use crate::fake_telegram::FakeTelegram;
use crate::support::{Api, Tenant};

const STARTS: usize = 50;
const MESSAGES: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_together_admit_exactly_the_plans_limits() {
    tokio::time::timeout(Duration::from_secs(240), body())
        .await
        .expect("finished within 240 s");
}

/// A new visitor's token (`POST /v1/widget/session`).
async fn session(node: &Api, t: &Tenant) -> String {
    let s = node
        .expect(
            StatusCode::OK,
            Method::POST,
            "/v1/widget/session",
            None,
            Some(json!({"widget_key": t.widget_key})),
        )
        .await;
    s["visitor_token"].as_str().expect("visitor_token").into()
}

async fn body() {
    let fake = FakeTelegram::start_local().await;
    let plenty = "100000";
    let d = deployment(
        &fake.api_url(),
        &crate::test_redis::url(),
        &[
            // Only the plan limits here: rate limits out of the way.
            ("CHATORICAL_LIMITS__SESSIONS_PER_IP_PER_MIN", plenty),
            ("CHATORICAL_LIMITS__SESSIONS_PER_TENANT_PER_MIN", plenty),
            ("CHATORICAL_LIMITS__MESSAGES_PER_VISITOR_PER_MIN", plenty),
        ],
    )
    .await;
    let (a, b) = (&d.a.api, &d.b.api);
    let t = d.install.tenant("acme").await;
    let dir = tempfile::TempDir::new().expect("dir");
    let file = dir.path().join("plans.toml");
    std::fs::write(
        &file,
        format!(
            "[plans.burst]\nname = \"Burst\"\n\n[plans.burst.limits]\n\
             conversation_starts_per_day = {STARTS}\nmessages_per_day = {MESSAGES}\n"
        ),
    )
    .expect("plans file");
    let file = file.to_str().expect("utf-8 path");
    d.install.run_ok(&["plans", "sync", "--file", file]).await;
    d.install
        .run_ok(&["tenants", "set-plan", "--tenant", "acme", "--plan", "burst"])
        .await;

    // 200 new visitors, then 200 conversation starts at once, half on each node.
    let tokens = join_all((0..200).map(|i| session(if i % 2 == 0 { a } else { b }, &t))).await;
    let starts = join_all(tokens.iter().enumerate().map(|(i, token)| {
        let node = if i % 2 == 0 { a } else { b };
        node.json(Method::POST, "/v1/conversations", Some(token), None)
    }))
    .await;
    let mut opened = Vec::new();
    for (i, (status, v)) in starts.iter().enumerate() {
        match *status {
            StatusCode::CREATED => opened.push((i, v["id"].as_str().expect("id").to_string())),
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(v["error"]["code"], "quota_exceeded", "{v}");
                assert_eq!(
                    v["error"]["details"]["quota"],
                    "conversation_starts_per_day"
                );
                assert_eq!(v["error"]["details"]["limit"], STARTS);
            }
            other => panic!("start {i}: {other} {v}"),
        }
    }
    assert_eq!(
        opened.len(),
        STARTS,
        "exactly the plan's starts, across both nodes"
    );
    let (_, list) = a
        .json(
            Method::GET,
            "/v1/admin/conversations?limit=500",
            Some(&t.key),
            None,
        )
        .await;
    let stored = list["conversations"].as_array().map_or(0, |c| c.len());
    assert_eq!(stored, STARTS, "{list}");

    // 200 messages at once into those conversations (four each), half on each node.
    let sends = join_all((0..200).map(|n| {
        let (i, conv) = &opened[n % opened.len()];
        let node = if n % 2 == 0 { a } else { b };
        let token = &tokens[*i];
        async move {
            node.json(
                Method::POST,
                &format!("/v1/conversations/{conv}/messages"),
                Some(token),
                Some(json!({"client_msg_id": format!("m{n}"), "text": format!("hello {n}")})),
            )
            .await
        }
    }))
    .await;
    let mut accepted = 0;
    for (status, v) in &sends {
        match *status {
            StatusCode::CREATED => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(v["error"]["code"], "quota_exceeded", "{v}");
                assert_eq!(v["error"]["details"]["quota"], "messages_per_day");
            }
            other => panic!("send: {other} {v}"),
        }
    }
    assert_eq!(
        accepted, MESSAGES,
        "exactly the plan's messages, across both nodes"
    );

    // What the tenant sees: the same numbers from either node.
    for node in [a, b] {
        let (status, report) = node
            .json(Method::GET, "/v1/admin/usage?days=1", Some(&t.key), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["plan"]["code"], "burst");
        let quota = |name: &str| -> Value {
            report["quotas"]
                .as_array()
                .and_then(|q| q.iter().find(|q| q["quota"] == name).cloned())
                .unwrap_or_else(|| panic!("{name} in {report}"))
        };
        let starts = quota("conversation_starts_per_day");
        assert_eq!(starts["used"], STARTS);
        assert_eq!(starts["remaining"], 0);
        let messages = quota("messages_per_day");
        assert_eq!(messages["used"], MESSAGES);
        assert_eq!(messages["remaining"], 0);
        assert!(
            messages["resets_at"]
                .as_str()
                .is_some_and(|r| r.ends_with("T00:00:00.000Z"))
        );
        assert_eq!(quota("active_conversations")["limit"], Value::Null);
    }
}
