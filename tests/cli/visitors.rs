//! `chatorical visitors export|erase`: everything about a visitor as JSON (to stdout or a
//! private file), erasure with a table or `--json`, idempotent, audited as the operator.

use std::time::Duration;

use chatorical::{app::Application, config::Secret, config::Settings};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, Cli, array, str_field};

on_both_backends!(visitors_export_and_erase);

const NAME: &str = "Ola Nordmann-Needle";
const EMAIL: &str = "ola@needle.example";
const TEXT: &str = "my order 4711 never came";

/// A visitor who gave a name and an email and wrote one message, through a server on
/// the installation's database. Returns the visitor's id.
fn visitor_with_a_message(cli: &Cli, widget_key: &str) -> String {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.data_dir = cli.data_dir().to_path_buf();
    settings.demo.enabled = false;
    settings.log.filter = "off".into();
    settings.worker.embedded = false;
    if cli.backend == Backend::Postgres {
        settings.database.url = Some(Secret::new(cli.database_url()));
    }
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
        post(
            "/v1/widget/identify".into(),
            Some(token.clone()),
            json!({ "name": NAME, "email": EMAIL }),
        )
        .await;
        let conv = post("/v1/conversations".into(), Some(token.clone()), json!({})).await;
        let id = str_field(&conv, "id").to_string();
        post(
            format!("/v1/conversations/{id}/messages"),
            Some(token),
            json!({ "client_msg_id": "m1", "text": TEXT }),
        )
        .await;
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server stops")
            .expect("server task")
            .expect("server ran");
        str_field(&conv, "visitor_id").to_string()
    })
}

fn visitors_export_and_erase(backend: Backend) {
    let cli = Cli::new(backend);
    let tenant = cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    cli.json(&["tenants", "create", "--slug", "other", "--name", "Other"]);
    let visitor = visitor_with_a_message(&cli, str_field(&tenant, "widget_key"));
    let v = visitor.as_str();

    // Export to standard output: everything, as JSON.
    let export: Value = {
        let out = cli.ok(&["visitors", "export", "--tenant", "acme", "--visitor", v]);
        serde_json::from_str(&out).expect("JSON on stdout")
    };
    assert_eq!(export["visitor"]["id"], v);
    assert_eq!(export["visitor"]["name"], NAME);
    assert_eq!(export["visitor"]["email"], EMAIL);
    assert_eq!(export["visitor"]["erased"], false);
    assert_eq!(export["device_tokens"]["active"], 1);
    let messages = array(&export["conversations"][0]["messages"]);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["text"], TEXT);
    assert_eq!(messages[0]["direction"], "inbound");

    // To a file: the same document, readable by the owner only.
    let file = cli.data_dir().join("export.json");
    let path = file.to_str().expect("UTF-8 path");
    let summary = cli.json(&[
        "visitors",
        "export",
        "--tenant",
        "acme",
        "--visitor",
        v,
        "--out",
        path,
    ]);
    assert_eq!(
        summary,
        json!({"path": path, "conversations": 1, "messages": 1})
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("file")).expect("JSON");
    assert_eq!(written["visitor"], export["visitor"]);
    assert_eq!(written["conversations"], export["conversations"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(cli.data_dir())
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Bad input: named, non-zero, nothing printed on stdout.
    let err = cli.fails(&[
        "visitors",
        "export",
        "--tenant",
        "acme",
        "--visitor",
        "vis_nope",
    ]);
    assert!(err.contains("visitor"), "{err}");
    let err = cli.fails(&["visitors", "erase", "--tenant", "other", "--visitor", v]);
    assert!(err.contains("not found"), "{err}");
    let err = cli.fails(&["visitors", "erase", "--tenant", "nope", "--visitor", v]);
    assert!(err.contains("tenant"), "{err}");
    cli.usage_error(&["visitors", "erase", "--tenant", "acme"]);

    // Erase: the counts as JSON; again: a table saying it was erased already.
    let erased = cli.json(&["visitors", "erase", "--tenant", "acme", "--visitor", v]);
    assert_eq!(erased["visitor_id"], v);
    assert_eq!(erased["already_erased"], false);
    assert_eq!(erased["messages_erased"], 1);
    assert_eq!(erased["tokens_revoked"], 1);
    assert_eq!(erased["conversations_closed"], 1);
    let table = cli.ok(&["visitors", "erase", "--tenant", "acme", "--visitor", v]);
    assert!(table.contains("already erased"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("already erased") && l.contains("true")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("messages erased") && l.contains(" 0 ")),
        "{table}"
    );

    // The export shows the erased state and nothing of what was there.
    let after = cli.ok(&["visitors", "export", "--tenant", "acme", "--visitor", v]);
    let after: Value = serde_json::from_str(&after).expect("JSON");
    assert_eq!(after["visitor"]["erased"], true);
    assert_eq!(after["conversations"][0]["messages"][0]["erased"], true);
    for needle in [NAME, EMAIL, TEXT] {
        assert!(!after.to_string().contains(needle), "{needle}: {after}");
    }

    // Audited once, as the operator, with counts only.
    let page = cli.json(&[
        "audit",
        "list",
        "--tenant",
        "acme",
        "--action",
        "visitor.erased",
    ]);
    let entries = array(&page["entries"]);
    assert_eq!(entries.len(), 1, "{page:#}");
    assert!(
        str_field(&entries[0], "actor").starts_with("cli:"),
        "{page:#}"
    );
    assert_eq!(entries[0]["target"], v);
    let exported = cli.json(&[
        "audit",
        "list",
        "--tenant",
        "acme",
        "--action",
        "visitor.exported",
    ]);
    assert_eq!(array(&exported["entries"]).len(), 3, "{exported:#}");
    let all = cli.json(&["audit", "list", "--tenant", "acme", "--limit", "500"]);
    for needle in [NAME, EMAIL, TEXT] {
        assert!(
            !all.to_string().contains(needle),
            "{needle} in the audit log"
        );
    }
}
