//! `chatorical plans sync|list|show|delete` and `tenants create --plan` / `set-plan`.

use serde_json::json;

use crate::on_both_backends;
use crate::support::{Backend, Cli, array, str_field};

on_both_backends!(
    sync_prints_what_changed_then_that_nothing_changed,
    a_bad_catalogue_exits_1_naming_file_line_and_field,
    delete_refuses_a_plan_in_use_until_reassigned,
);

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
price_year_cents = 19000

[plans.pro.limits]
messages_per_day = 20000

[plans.pro.features]
custom_branding = true
"#;

/// Write the catalogue into the installation's directory; returns its path.
fn write(cli: &Cli, name: &str, text: &str) -> String {
    let path = cli.data_dir().join(name);
    std::fs::write(&path, text).expect("write the catalogue");
    path.to_str().expect("UTF-8 path").to_string()
}

fn actions(report: &serde_json::Value) -> Vec<(String, String)> {
    array(&report["plans"])
        .iter()
        .map(|p| {
            (
                str_field(p, "code").to_string(),
                str_field(p, "action").to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn sync_prints_what_changed_then_that_nothing_changed(backend: Backend) {
    let cli = Cli::new(backend);
    let file = write(&cli, "plans.toml", CATALOGUE);

    // A dry run shows the plan and writes nothing.
    let dry = cli.ok(&["plans", "sync", "--file", &file, "--dry-run"]);
    assert!(dry.contains("Dry run, nothing written"), "{dry}");
    assert!(dry.contains("1 created"), "{dry}");
    assert_eq!(array(&cli.json(&["plans", "list"])).len(), 1);

    // The first run creates, as a table.
    let table = cli.ok(&["plans", "sync", "--file", &file]);
    for needle in [
        "plan",
        "action",
        "changes",
        "pro",
        "created",
        "free",
        "unchanged",
    ] {
        assert!(table.contains(needle), "{needle} in\n{table}");
    }
    assert!(
        table.contains("1 created, 0 updated, 0 deactivated, 1 unchanged"),
        "{table}"
    );
    let listed = cli.json(&["plans", "list"]);
    let pro = array(&listed)
        .iter()
        .find(|p| p["code"] == "pro")
        .expect("pro listed")
        .clone();
    assert_eq!(pro["limits"]["messages_per_day"], 20000);
    assert_eq!(pro["features"], json!({"custom_branding": true}));

    // The second run: nothing changed, nothing written.
    let table = cli.ok(&["plans", "sync", "--file", &file]);
    assert!(
        table.contains("Nothing changed: the database already matches"),
        "{table}"
    );
    let report = cli.json(&["plans", "sync", "--file", &file]);
    assert_eq!(report["changed"], false);
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["target"], "database");
    assert_eq!(
        actions(&report),
        pairs(&[("free", "unchanged"), ("pro", "unchanged")])
    );
    assert_eq!(
        cli.json(&["plans", "show", "pro"]),
        pro,
        "updated_at unchanged"
    );

    // A change shows each field, old → new.
    let changed = write(
        &cli,
        "plans.toml",
        &CATALOGUE.replace("messages_per_day = 20000", "messages_per_day = 30000"),
    );
    let table = cli.ok(&["plans", "sync", "--file", &changed]);
    assert!(table.contains("updated"), "{table}");
    assert!(
        table.contains("limits.messages_per_day: 20000 → 30000"),
        "{table}"
    );
    let report = cli.json(&["plans", "sync", "--file", &changed, "--prune"]);
    assert_eq!(report["changed"], false, "{report:#}");

    // list and show as tables.
    let table = cli.ok(&["plans", "list"]);
    for needle in [
        "code",
        "EUR/month",
        "pro",
        "19.00",
        "190.00",
        "custom_branding: true",
    ] {
        assert!(table.contains(needle), "{needle} in\n{table}");
    }
    let table = cli.ok(&["plans", "show", "pro"]);
    assert!(table.contains("limits.messages_per_day"), "{table}");
    assert!(table.contains("30000"), "{table}");
    let stderr = cli.fails(&["plans", "show", "nope"]);
    assert!(stderr.contains("plan not found"), "{stderr}");

    // Tenants: on free by default, or on a named plan; set-plan moves them.
    let acme = cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    assert_eq!(acme["plan"], "free");
    let beta = cli.json(&[
        "tenants", "create", "--slug", "beta", "--name", "Beta", "--plan", "pro",
    ]);
    assert_eq!(beta["plan"], "pro");
    let moved = cli.json(&["tenants", "set-plan", "--tenant", "acme", "--plan", "pro"]);
    assert_eq!(moved["plan"], "pro");
    let table = cli.ok(&["tenants", "list"]);
    assert!(table.contains("plan"), "{table}");
    let stderr = cli.fails(&["tenants", "set-plan", "--tenant", "acme", "--plan", "nope"]);
    assert!(stderr.contains("there is no plan `nope`"), "{stderr}");
}

fn a_bad_catalogue_exits_1_naming_file_line_and_field(backend: Backend) {
    let cli = Cli::new(backend);
    let bad = CATALOGUE.replace("messages_per_day = 20000", "messages_per_day = \"many\"");
    let file = write(&cli, "bad.toml", &bad);
    let stderr = cli.fails(&["plans", "sync", "--file", &file]);
    assert!(
        stderr.contains(&format!(
            "{file}:17: plans.pro.limits.messages_per_day: invalid type"
        )),
        "{stderr}"
    );
    let stderr = cli.fails(&["plans", "sync", "--file", &file, "--dry-run", "--json"]);
    assert!(stderr.contains(":17:"), "{stderr}");

    // A valid plan first and a bad one after: nothing applied at all.
    let bad = format!("{CATALOGUE}\n[plans.team]\nname = \"Team\"\nsupport = \"phone\"\n");
    let file = write(&cli, "bad.toml", &bad);
    let stderr = cli.fails(&["plans", "sync", "--file", &file]);
    assert!(
        stderr.contains(&format!("{file}:24: plans.team.support: unknown field")),
        "{stderr}"
    );
    let list = cli.json(&["plans", "list"]);
    assert_eq!(array(&list).len(), 1, "only free: {list:#}");
    assert_eq!(list[0]["code"], "free");

    let stderr = cli.fails(&["plans", "sync", "--file", "missing.toml"]);
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

fn delete_refuses_a_plan_in_use_until_reassigned(backend: Backend) {
    let cli = Cli::new(backend);
    let file = write(&cli, "plans.toml", CATALOGUE);
    cli.ok(&["plans", "sync", "--file", &file]);
    cli.json(&[
        "tenants", "create", "--slug", "acme", "--name", "Acme", "--plan", "pro",
    ]);

    let stderr = cli.fails(&["plans", "delete", "pro"]);
    assert!(stderr.contains("used by 1 tenant"), "{stderr}");
    let stderr = cli.fails(&["plans", "delete", "free", "--reassign", "pro"]);
    assert!(stderr.contains("free plan cannot be deleted"), "{stderr}");
    assert_eq!(array(&cli.json(&["plans", "list"])).len(), 2);

    let deleted = cli.json(&["plans", "delete", "pro", "--reassign", "free"]);
    assert_eq!(deleted["plan"]["code"], "pro");
    assert_eq!(deleted["reassigned"], 1);
    assert_eq!(deleted["reassigned_to"], "free");
    let tenants = cli.json(&["tenants", "list"]);
    assert_eq!(tenants[0]["plan"], "free");
    let stderr = cli.fails(&["plans", "show", "pro"]);
    assert!(stderr.contains("plan not found"), "{stderr}");

    // Synced again, pro is back; unused now, it is deleted without --reassign.
    cli.ok(&["plans", "sync", "--file", &file]);
    let out = cli.ok(&["plans", "delete", "pro"]);
    assert!(out.contains("Deleted plan `pro`."), "{out}");
}
