//! `chatorical usage summarize|show`, after real traffic through a server on the same
//! embedded database.

use std::time::Duration;

use chatorical::{app::Application, config::Settings};
use serde_json::{Value, json};

use crate::support::{Backend, Cli, array, str_field};

/// A visitor's conversation with two messages and one agent reply, through a server
/// running on the installation's data dir.
fn traffic(cli: &Cli, widget_key: &str, api_key: &str) {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.data_dir = cli.data_dir().to_path_buf();
    settings.demo.enabled = false;
    settings.log.filter = "off".into();
    settings.worker.embedded = false;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let app = Application::build(settings).await.expect("server builds");
        let base = format!("http://{}", app.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::new();
        let post = |path: String, bearer: Option<String>, body: Value| {
            let mut req = http.post(format!("{base}{path}")).json(&body);
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            async move {
                let resp = req.send().await.expect("request sent");
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.expect("JSON");
                assert!((200..300).contains(&status), "{path}: {status} {body}");
                body
            }
        };
        let session = post(
            "/v1/widget/session".into(),
            None,
            json!({ "widget_key": widget_key }),
        )
        .await;
        let token = str_field(&session, "visitor_token").to_string();
        let conv = post("/v1/conversations".into(), Some(token.clone()), json!({})).await;
        let id = str_field(&conv, "id").to_string();
        for (n, text) in ["hello", "anyone?"].iter().enumerate() {
            post(
                format!("/v1/conversations/{id}/messages"),
                Some(token.clone()),
                json!({ "client_msg_id": format!("m{n}"), "text": text }),
            )
            .await;
        }
        post(
            format!("/v1/admin/conversations/{id}/messages"),
            Some(api_key.to_string()),
            json!({ "text": "hi!", "author": "Ana" }),
        )
        .await;
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server stops")
            .expect("server task")
            .expect("server ran");
    });
}

#[test]
fn usage_show_reports_what_a_server_counted() {
    let cli = Cli::new(Backend::Sqlite);
    let tenant = cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    let issued = cli.json(&[
        "keys",
        "issue",
        "--tenant",
        "acme",
        "--scope",
        "conversations:write",
    ]);
    traffic(
        &cli,
        str_field(&tenant, "widget_key"),
        str_field(&issued, "key"),
    );

    let summary = cli.json(&["usage", "summarize"]);
    assert_eq!(
        summary,
        json!({ "redis": false, "rows": 0 }),
        "nothing to fold without Redis"
    );

    let report = cli.json(&["usage", "show", "--tenant", "acme", "--days", "2"]);
    assert_eq!(report["tenant_id"], tenant["id"]);
    let days = array(&report["days"]);
    assert_eq!(days.len(), 2, "{report:#}");
    let expected = json!({
        "conversations_started": 1,
        "messages_inbound": 2,
        "messages_outbound": 1,
        "topics_created": 0,
        "topic_renames": 0,
    });
    let today = &days[1];
    assert_eq!(today["day"], report["to"]);
    for (k, v) in expected.as_object().expect("object") {
        assert_eq!(&today[k], v, "{k} in {report:#}");
        assert_eq!(&days[0][k], &json!(0), "{k} yesterday in {report:#}");
    }
    assert_eq!(report["totals"], expected);

    let table = cli.ok(&["usage", "show", "--tenant", "acme"]);
    assert!(table.contains(str_field(&report, "to")), "{table}");
    assert!(table.contains("total"), "{table}");

    cli.usage_error(&["usage", "show", "--tenant", "acme", "--days", "0"]);
    let stderr = cli.fails(&["usage", "show", "--tenant", "nope"]);
    assert!(stderr.contains("not found"), "{stderr}");
}

/// The first 00:00 UTC from now, as the report writes it.
fn next_midnight() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    let day = now.as_secs() / 86_400 + 1;
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_secs(day * 86_400))
        .to_string()
}

/// The cells of the table row that starts with `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|line| {
            line.split(['│', '┆', '|'])
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells.first() == Some(&first))
        .collect();
    assert_eq!(rows.len(), 1, "one row for {first} in:\n{table}");
    rows.into_iter().next().unwrap_or_default()
}

#[test]
fn usage_show_prints_the_plan_and_the_quota_table() {
    let cli = Cli::new(Backend::Sqlite);
    let catalogue = cli.data_dir().join("plans.toml");
    std::fs::write(
        &catalogue,
        r#"[plans.small]
name = "Small"

[plans.small.limits]
conversation_starts_per_day = 5
messages_per_day = 10
active_conversations = 3
retention_days = 7
"#,
    )
    .expect("write the catalogue");
    cli.ok(&[
        "plans",
        "sync",
        "--file",
        catalogue.to_str().expect("UTF-8 path"),
    ]);
    let tenant = cli.json(&[
        "tenants", "create", "--slug", "acme", "--name", "Acme", "--plan", "small",
    ]);
    assert_eq!(tenant["plan"], "small", "{tenant}");
    let issued = cli.json(&[
        "keys",
        "issue",
        "--tenant",
        "acme",
        "--scope",
        "conversations:write",
    ]);
    // One conversation (still open), two visitor messages, one agent answer.
    traffic(
        &cli,
        str_field(&tenant, "widget_key"),
        str_field(&issued, "key"),
    );

    let midnight = next_midnight();
    let table = cli.ok(&["usage", "show", "--tenant", "acme", "--days", "1"]);
    assert!(table.contains("plan: Small (small)"), "{table}");
    assert_eq!(
        row(&table, "quota"),
        ["quota", "limit", "used", "remaining", "resets at"]
    );
    assert_eq!(
        row(&table, "conversation_starts_per_day"),
        [
            "conversation_starts_per_day",
            "5",
            "1",
            "4",
            midnight.as_str()
        ]
    );
    assert_eq!(
        row(&table, "messages_per_day"),
        ["messages_per_day", "10", "3", "7", midnight.as_str()]
    );
    assert_eq!(
        row(&table, "topic_renames_per_day"),
        [
            "topic_renames_per_day",
            "unlimited",
            "0",
            "unlimited",
            midnight.as_str()
        ]
    );
    assert_eq!(
        row(&table, "active_conversations"),
        ["active_conversations", "3", "1", "2", "-"]
    );

    let report = cli.json(&["usage", "show", "--tenant", "acme", "--days", "1"]);
    assert_eq!(
        report["plan"],
        json!({"code": "small", "name": "Small", "retention_days": 7}),
        "{report:#}"
    );
    assert_eq!(
        report["quotas"],
        json!([
            {"quota": "conversation_starts_per_day", "limit": 5, "used": 1, "remaining": 4, "resets_at": midnight},
            {"quota": "messages_per_day", "limit": 10, "used": 3, "remaining": 7, "resets_at": midnight},
            {"quota": "topic_renames_per_day", "limit": null, "used": 0, "remaining": null, "resets_at": midnight},
            {"quota": "active_conversations", "limit": 3, "used": 1, "remaining": 2, "resets_at": null},
        ]),
        "{report:#}"
    );
}
