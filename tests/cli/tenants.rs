//! `chatorical tenants create|list|show`.

use serde_json::json;

use crate::on_both_backends;
use crate::support::{Backend, Cli, array, str_field};

on_both_backends!(
    created_tenant_is_listed_and_shown_with_normalised_origins,
    duplicate_slug_is_refused_naming_the_slug,
    invalid_slug_or_origin_is_refused_and_nothing_is_created,
    unknown_tenant_is_not_found,
    identity_secret_is_printed_once_and_replaced_on_each_run,
);

fn created_tenant_is_listed_and_shown_with_normalised_origins(backend: Backend) {
    let cli = Cli::new(backend);

    let created = cli.json(&[
        "tenants",
        "create",
        "--slug",
        "acme",
        "--name",
        "Acme Inc",
        "--origin",
        "HTTPS://Shop.Acme.Example/",
        "--origin",
        "https://shop.acme.example",
        "--origin",
        "http://localhost:3000",
    ]);

    assert!(str_field(&created, "id").starts_with("tn_"), "{created:#}");
    assert_eq!(created["slug"], "acme");
    assert_eq!(created["name"], "Acme Inc");
    let widget_key = str_field(&created, "widget_key");
    assert!(
        widget_key.starts_with("wk_") && widget_key.len() > 3,
        "{widget_key}"
    );
    assert_eq!(
        created["settings"]["allowed_origins"],
        json!(["https://shop.acme.example", "http://localhost:3000"]),
        "origins are lower-cased, lose the trailing slash and are deduplicated"
    );
    crate::support::time_field(&created, "created_at");

    assert_eq!(cli.json(&["tenants", "list"]), json!([created.clone()]));
    assert_eq!(cli.json(&["tenants", "show", "acme"]), created);

    let table = cli.ok(&["tenants", "show", "acme"]);
    assert!(table.contains(widget_key), "{table}");
    assert!(table.contains("https://shop.acme.example"), "{table}");
}

fn duplicate_slug_is_refused_naming_the_slug(backend: Backend) {
    let cli = Cli::new(backend);
    let first = cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);

    let stderr = cli.fails(&[
        "tenants", "create", "--slug", "acme", "--name", "Other", "--json",
    ]);
    assert!(stderr.contains("`acme`"), "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");

    let list = cli.json(&["tenants", "list"]);
    assert_eq!(array(&list).len(), 1, "{list:#}");
    assert_eq!(list[0]["id"], first["id"]);
    assert_eq!(list[0]["name"], "Acme");
}

fn invalid_slug_or_origin_is_refused_and_nothing_is_created(backend: Backend) {
    let cli = Cli::new(backend);

    let stderr = cli.fails(&[
        "tenants", "create", "--slug", "Bad Slug", "--name", "Bad", "--json",
    ]);
    assert!(stderr.contains("slug"), "{stderr}");

    let stderr = cli.fails(&[
        "tenants",
        "create",
        "--slug",
        "acme",
        "--name",
        "Acme",
        "--origin",
        "ftp://acme.example",
        "--json",
    ]);
    assert!(stderr.contains("ftp://acme.example"), "{stderr}");

    let stderr = cli.fails(&[
        "tenants",
        "create",
        "--slug",
        "acme",
        "--name",
        "Acme",
        "--origin",
        "https://acme.example/path",
    ]);
    assert!(stderr.contains("https://acme.example/path"), "{stderr}");

    assert_eq!(cli.json(&["tenants", "list"]), json!([]));
}

fn unknown_tenant_is_not_found(backend: Backend) {
    let cli = Cli::new(backend);
    let stderr = cli.fails(&["tenants", "show", "nobody", "--json"]);
    assert!(stderr.contains("tenant not found"), "{stderr}");
}

fn identity_secret_is_printed_once_and_replaced_on_each_run(backend: Backend) {
    let cli = Cli::new(backend);
    cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);

    let first = cli.json(&["tenants", "identity-secret", "--tenant", "acme"]);
    assert_eq!(first["tenant"], "acme");
    let secret = str_field(&first, "identity_secret").to_string();
    assert!(secret.len() >= 32, "{secret}");

    let table = cli.ok(&["tenants", "identity-secret", "--tenant", "acme"]);
    assert!(table.contains("shown once"), "{table}");
    assert!(
        !table.contains(&secret),
        "a new secret replaces the old one"
    );

    let shown = cli.ok(&["tenants", "show", "acme", "--json"]);
    assert!(!shown.contains(&secret), "{shown}");
    assert!(
        !cli.stored_data().contains(&secret),
        "the secret is stored sealed, never in plain text"
    );

    let stderr = cli.fails(&["tenants", "identity-secret", "--tenant", "nobody"]);
    assert!(stderr.contains("tenant not found"), "{stderr}");
}
