//! `chatorical tenants env list|show|put` and `chatorical flags list|set|unset`: a
//! tenant's environments and feature flags from the command line, in tables and JSON,
//! audited as the operator; bad input exits non-zero and changes nothing.

use serde_json::json;

use crate::on_both_backends;
use crate::support::{Backend, Cli, array, str_field};

on_both_backends!(environments_round_trip, flags_round_trip);

const STAGING: &str = "https://staging.acme.example";

fn environments_round_trip(backend: Backend) {
    let cli = Cli::new(backend);
    let tenant = cli.json(&[
        "tenants",
        "create",
        "--slug",
        "acme",
        "--name",
        "Acme",
        "--origin",
        "https://acme.example",
    ]);
    assert_eq!(str_field(&tenant, "environment"), "production");
    let production_key = str_field(&tenant, "widget_key").to_string();

    // An existing tenant has production only, with its key and origins.
    let list = cli.json(&["tenants", "env", "list", "--tenant", "acme"]);
    let envs = array(&list["environments"]);
    assert_eq!(envs.len(), 1, "{list:#}");
    assert_eq!(str_field(&envs[0], "widget_key"), production_key);
    assert_eq!(
        envs[0]["settings"]["allowed_origins"],
        json!(["https://acme.example"])
    );
    let err = cli.fails(&["tenants", "env", "show", "--tenant", "acme"]);
    assert!(err.contains("no staging environment"), "{err}");

    // Staging: created on first use, then changed.
    let put = cli.json(&[
        "tenants", "env", "put", "--tenant", "acme", "--origin", STAGING,
    ]);
    assert_eq!(put["created"], true, "{put:#}");
    let staging_key = str_field(&put["environment"], "widget_key").to_string();
    assert_ne!(staging_key, production_key);
    assert_eq!(
        put["environment"]["settings"]["allowed_origins"],
        json!([STAGING])
    );
    let rotated = cli.json(&[
        "tenants",
        "env",
        "put",
        "--tenant",
        "acme",
        "--env",
        "staging",
        "--rotate-key",
    ]);
    assert_eq!(rotated["created"], false);
    let new_key = str_field(&rotated["environment"], "widget_key").to_string();
    assert_ne!(new_key, staging_key);
    let shown = cli.json(&[
        "tenants", "env", "show", "--tenant", "acme", "--env", "staging",
    ]);
    assert_eq!(str_field(&shown, "widget_key"), new_key);
    let table = cli.ok(&["tenants", "env", "list", "--tenant", "acme"]);
    for needle in ["production", "staging", STAGING, &new_key, &production_key] {
        assert!(table.contains(needle), "{needle} in\n{table}");
    }

    // Refused: a group for production, a group without Telegram, an unknown
    // environment, a bad origin; nothing changes.
    let err = cli.fails(&[
        "tenants",
        "env",
        "put",
        "--tenant",
        "acme",
        "--env",
        "production",
        "--telegram-group",
        "-100123",
    ]);
    assert!(err.contains("validation_failed"), "{err}");
    let err = cli.fails(&[
        "tenants",
        "env",
        "put",
        "--tenant",
        "acme",
        "--telegram-group",
        "-100123",
    ]);
    assert!(err.contains("connect Telegram first"), "{err}");
    cli.usage_error(&[
        "tenants", "env", "put", "--tenant", "acme", "--env", "preview",
    ]);
    let err = cli.fails(&[
        "tenants",
        "env",
        "put",
        "--tenant",
        "acme",
        "--rotate-key",
        "--origin",
        "not an origin",
    ]);
    assert!(err.contains("validation_failed"), "{err}");
    let after = cli.json(&["tenants", "env", "show", "--tenant", "acme"]);
    assert_eq!(
        str_field(&after, "widget_key"),
        new_key,
        "nothing half-written"
    );

    // Audited as the operator: the creation and the rotation, never a key.
    let audit = cli.json(&[
        "audit",
        "list",
        "--tenant",
        "acme",
        "--action",
        "environment.updated",
    ]);
    let entries = array(&audit["entries"]);
    assert_eq!(entries.len(), 2, "{audit:#}");
    for e in entries {
        assert!(str_field(e, "actor").starts_with("cli:"), "{e}");
        let text = e.to_string();
        assert!(
            !text.contains(&staging_key) && !text.contains(&new_key),
            "{text}"
        );
    }
}

fn flags_round_trip(backend: Backend) {
    let cli = Cli::new(backend);
    cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);

    let set = cli.json(&["flags", "set", "--tenant", "acme", "beta", "on"]);
    assert_eq!(
        set,
        json!({"name": "beta", "environment": "production", "value": true,
            "source": "tenant", "tenant": true, "plan": null})
    );
    // Staging's flags need staging.
    let err = cli.fails(&[
        "flags", "set", "--tenant", "acme", "--env", "staging", "beta", "off",
    ]);
    assert!(err.contains("not_found"), "{err}");
    cli.json(&["tenants", "env", "put", "--tenant", "acme"]);
    let set = cli.json(&[
        "flags", "set", "--tenant", "acme", "--env", "staging", "beta", "off",
    ]);
    assert_eq!(set["environment"], "staging");
    assert_eq!(set["value"], false);

    let production = cli.json(&["flags", "list", "--tenant", "acme"]);
    assert_eq!(production["effective"], json!({"beta": true}));
    let staging = cli.json(&["flags", "list", "--tenant", "acme", "--env", "staging"]);
    assert_eq!(staging["effective"], json!({"beta": false}));
    let table = cli.ok(&["flags", "list", "--tenant", "acme", "--env", "staging"]);
    assert!(
        table.contains("beta") && table.contains("off") && table.contains("staging"),
        "{table}"
    );

    // Unset (twice is harmless); the flag is gone.
    for _ in 0..2 {
        let unset = cli.json(&["flags", "unset", "--tenant", "acme", "beta"]);
        assert_eq!(unset["source"], "default", "{unset}");
        assert_eq!(unset["value"], false);
    }
    let production = cli.json(&["flags", "list", "--tenant", "acme"]);
    assert_eq!(production["flags"], json!({}));

    // Bad names and values are refused.
    let err = cli.fails(&["flags", "set", "--tenant", "acme", "bad name", "on"]);
    assert!(err.contains("validation_failed"), "{err}");
    cli.usage_error(&["flags", "set", "--tenant", "acme", "beta", "maybe"]);
    cli.usage_error(&["flags", "list", "--tenant", "acme", "--env", "preview"]);

    // Audited as the operator.
    let audit = cli.json(&["audit", "list", "--tenant", "acme", "--action", "flag.set"]);
    assert_eq!(array(&audit["entries"]).len(), 2, "{audit:#}");
    let audit = cli.json(&[
        "audit",
        "list",
        "--tenant",
        "acme",
        "--action",
        "flag.unset",
    ]);
    let entries = array(&audit["entries"]);
    assert_eq!(entries.len(), 1, "{audit:#}");
    assert!(str_field(&entries[0], "actor").starts_with("cli:"));
}
