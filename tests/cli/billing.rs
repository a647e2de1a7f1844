//! `chatorical billing status`, after Stripe events applied through the library (as the
//! webhook applies them) to the installation's database.

use chatorical::{
    billing::events::{Event, process},
    config::DatabaseUrl,
    db::Db,
};
use serde_json::json;

use crate::on_both_backends;
use crate::support::{Backend, Cli, str_field};

on_both_backends!(status_shows_the_plan_subscription_and_grace_period);

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
"#;

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn status_shows_the_plan_subscription_and_grace_period(backend: Backend) {
    let cli = Cli::new(backend);
    let path = cli.data_dir().join("plans.toml");
    std::fs::write(&path, CATALOGUE).expect("write the catalogue");
    cli.ok(&[
        "plans",
        "sync",
        "--file",
        path.to_str().expect("UTF-8 path"),
    ]);
    let tenant = cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    let tenant_id = str_field(&tenant, "id").to_string();

    let before = cli.json(&["billing", "status", "--tenant", "acme"]);
    assert_eq!(
        (
            before["plan"].as_str(),
            before["status"].as_str(),
            before["dunning"].as_str()
        ),
        (Some("free"), Some("none"), Some("none")),
        "{before}"
    );

    // A subscription to pro, then a failed renewal.
    let t0 = now_s() - 100;
    let subscription = json!({
        "id": "sub_cli", "object": "subscription", "customer": "cus_cli",
        "status": "active", "cancel_at_period_end": false,
        "metadata": {"chatorical_tenant": tenant_id},
        "items": {"data": [{"current_period_end": t0 + 30 * 86400,
            "price": {"lookup_key": "chatorical_pro_month", "recurring": {"interval": "month"}}}]}
    });
    let invoice = json!({
        "id": "in_cli", "object": "invoice", "customer": "cus_cli", "subscription": "sub_cli"
    });
    let events = [
        json!({"id": "evt_cli_1", "type": "customer.subscription.created", "created": t0,
            "data": {"object": subscription}}),
        json!({"id": "evt_cli_2", "type": "invoice.payment_failed", "created": t0 + 10,
            "data": {"object": invoice}}),
    ];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let url = DatabaseUrl::parse(&cli.database_url()).expect("database url");
        let db = Db::connect(&url, 2, 5_000)
            .await
            .expect("open the database");
        for e in &events {
            let event = Event::parse(e.to_string().as_bytes()).expect("event");
            let received = process(&db, 3, &event, now_s() * 1000)
                .await
                .expect("processed");
            assert_eq!(received.outcome.as_str(), "applied", "{e}");
        }
    });

    let after = cli.json(&["billing", "status", "--tenant", "acme"]);
    assert_eq!(after["tenant"], "acme", "{after}");
    assert_eq!(after["plan"], "pro");
    assert_eq!(after["subscription_plan"], "pro");
    assert_eq!(after["status"], "active");
    assert_eq!(after["interval"], "month");
    assert_eq!(after["dunning"], "grace");
    assert_eq!(after["stripe_subscription_id"], "sub_cli");
    assert_eq!(after["stripe_customer_id"], "cus_cli");
    let grace_until = humantime::parse_rfc3339(str_field(&after, "grace_until")).expect("RFC 3339");
    let grace_s = grace_until
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    assert_eq!(
        grace_s,
        t0 + 10 + 3 * 86400,
        "3 grace days from the failure"
    );

    let table = cli.ok(&["billing", "status", "--tenant", "acme"]);
    for expected in ["grace", "sub_cli", "cus_cli", "pro", "month", "active"] {
        assert!(table.contains(expected), "{expected} missing:\n{table}");
    }
    let stderr = cli.fails(&["billing", "status", "--tenant", "nope"]);
    assert!(stderr.contains("not found"), "{stderr}");
}
