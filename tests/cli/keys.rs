//! `chatorical keys issue|list|revoke`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, Cli, array, str_field, time_field};

on_both_backends!(
    issued_key_is_shown_once_and_never_listed,
    plaintext_key_is_not_stored,
    revoking_a_key_sets_revoked_at,
    revoking_an_unknown_key_fails,
    unknown_scope_is_refused_naming_it,
    key_belongs_to_a_tenant_or_the_platform_never_both,
    platform_key_lists_without_a_tenant,
    expires_in_sets_expires_at,
);

/// A tenant `acme` on a ready installation.
fn with_tenant(backend: Backend) -> Cli {
    let cli = Cli::new(backend);
    cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    cli
}

fn issue_for_acme(cli: &Cli, scopes: &[&str], extra: &[&str]) -> Value {
    let mut args = vec!["keys", "issue", "--tenant", "acme"];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    args.extend(extra);
    cli.json(&args)
}

fn issued_key_is_shown_once_and_never_listed(backend: Backend) {
    let cli = with_tenant(backend);

    let issued = issue_for_acme(
        &cli,
        &["conversations:write", "settings:read"],
        &["--name", "agents"],
    );
    let id = str_field(&issued, "id");
    let key = str_field(&issued, "key");
    assert!(id.starts_with("key_"), "{issued:#}");
    assert!(key.starts_with("chk_") && key.len() > 20, "{issued:#}");
    assert_eq!(issued["tenant"], "acme");
    assert_eq!(issued["name"], "agents");
    assert_eq!(
        issued["scopes"],
        json!(["conversations:write", "settings:read"])
    );
    assert!(key.starts_with(str_field(&issued, "prefix")), "{issued:#}");
    assert!(key.ends_with(str_field(&issued, "last4")), "{issued:#}");
    assert_eq!(issued["expires_at"], Value::Null);
    assert_eq!(issued["revoked_at"], Value::Null);
    assert_eq!(issued["last_used_at"], Value::Null);

    let mut listed_as = issued.clone();
    listed_as.as_object_mut().expect("an object").remove("key");
    for args in [
        &["keys", "list", "--tenant", "acme", "--json"][..],
        &["keys", "list", "--json"],
    ] {
        let stdout = cli.ok(args);
        assert!(
            !stdout.contains(key),
            "`{}` shows the key:\n{stdout}",
            args.join(" ")
        );
        let list: Value = serde_json::from_str(&stdout).expect("JSON");
        assert_eq!(list, json!([listed_as.clone()]), "{}", args.join(" "));
    }

    let table = cli.ok(&["keys", "list", "--tenant", "acme"]);
    assert!(table.contains(id), "{table}");
    assert!(!table.contains(key), "the table shows the key:\n{table}");

    // Without --json the key is printed too, once, after the table.
    let stdout = cli.ok(&["keys", "issue", "--tenant", "acme", "--scope", "keys:read"]);
    let shown: Vec<&str> = stdout
        .split_whitespace()
        .filter(|w| w.starts_with("chk_") && w.len() == key.len())
        .collect();
    assert_eq!(shown.len(), 1, "the new key is printed once:\n{stdout}");
    assert!(stdout.contains("shown once"), "{stdout}");
}

fn plaintext_key_is_not_stored(backend: Backend) {
    let cli = with_tenant(backend);
    let tenant_key = issue_for_acme(&cli, &["conversations:write"], &[]);
    let platform_key = cli.json(&["keys", "issue", "--platform", "--scope", "tenants:write"]);

    let stored = cli.stored_data();
    for issued in [&tenant_key, &platform_key] {
        let key = str_field(issued, "key");
        let prefix = str_field(issued, "prefix");
        // The prefix is stored on purpose: it proves we are looking at the right data.
        assert!(
            stored.contains(prefix),
            "{prefix} not found in the stored data"
        );
        assert!(!stored.contains(key), "the plaintext key {key} is stored");
        let secret_part = &key[prefix.len()..key.len() - 4];
        assert!(
            !stored.contains(secret_part),
            "the secret part of {key} is stored"
        );
    }
}

fn revoking_a_key_sets_revoked_at(backend: Backend) {
    let cli = with_tenant(backend);
    let issued = issue_for_acme(&cli, &["conversations:read"], &[]);
    let id = str_field(&issued, "id");
    assert_eq!(issued["revoked_at"], Value::Null);

    let revoked = cli.json(&["keys", "revoke", id]);
    assert_eq!(revoked["id"], id);
    assert_eq!(revoked["tenant"], "acme");
    assert!(revoked.get("key").is_none(), "{revoked:#}");
    assert!(time_field(&revoked, "revoked_at") >= time_field(&issued, "created_at"));

    let list = cli.json(&["keys", "list", "--tenant", "acme"]);
    assert_eq!(array(&list).len(), 1, "{list:#}");
    assert_eq!(list[0]["revoked_at"], revoked["revoked_at"]);

    let stdout = cli.ok(&["keys", "revoke", id]);
    assert!(stdout.contains(&format!("revoked {id}")), "{stdout}");
}

fn revoking_an_unknown_key_fails(backend: Backend) {
    let cli = with_tenant(backend);
    issue_for_acme(&cli, &["conversations:read"], &[]);
    let stderr = cli.fails(&[
        "keys",
        "revoke",
        "key_00000000000000000000000000000000",
        "--json",
    ]);
    assert!(stderr.contains("not found"), "{stderr}");
    let list = cli.json(&["keys", "list"]);
    assert_eq!(list[0]["revoked_at"], Value::Null, "{list:#}");
}

fn unknown_scope_is_refused_naming_it(backend: Backend) {
    let cli = with_tenant(backend);
    let stderr = cli.fails(&[
        "keys",
        "issue",
        "--tenant",
        "acme",
        "--scope",
        "conversations:read",
        "--scope",
        "kees:read",
        "--json",
    ]);
    assert!(stderr.contains("kees"), "{stderr}");
    assert_eq!(cli.json(&["keys", "list"]), json!([]));
}

fn key_belongs_to_a_tenant_or_the_platform_never_both(backend: Backend) {
    let cli = with_tenant(backend);
    let both = cli.usage_error(&[
        "keys",
        "issue",
        "--tenant",
        "acme",
        "--platform",
        "--scope",
        "conversations:read",
    ]);
    assert!(
        both.contains("--platform") && both.contains("--tenant"),
        "{both}"
    );
    let neither = cli.usage_error(&["keys", "issue", "--scope", "conversations:read"]);
    assert!(
        neither.contains("--tenant") && neither.contains("--platform"),
        "{neither}"
    );
    assert_eq!(cli.json(&["keys", "list"]), json!([]));
}

fn platform_key_lists_without_a_tenant(backend: Backend) {
    let cli = with_tenant(backend);
    let tenant_key = issue_for_acme(&cli, &["conversations:read"], &[]);
    let platform_key = cli.json(&["keys", "issue", "--platform", "--scope", "tenants:write"]);
    assert_eq!(platform_key["tenant"], Value::Null);
    assert_eq!(platform_key["scopes"], json!(["tenants:write"]));

    let all = cli.json(&["keys", "list"]);
    let by_id = |id: &Value| {
        array(&all)
            .iter()
            .find(|k| k["id"] == *id)
            .unwrap_or_else(|| panic!("{id} is listed in {all:#}"))
    };
    assert_eq!(array(&all).len(), 2, "{all:#}");
    assert_eq!(by_id(&platform_key["id"])["tenant"], Value::Null);
    assert_eq!(by_id(&tenant_key["id"])["tenant"], "acme");

    let acme = cli.json(&["keys", "list", "--tenant", "acme"]);
    assert_eq!(array(&acme).len(), 1, "{acme:#}");
    assert_eq!(acme[0]["id"], tenant_key["id"]);
}

fn expires_in_sets_expires_at(backend: Backend) {
    let cli = with_tenant(backend);
    let issued = issue_for_acme(&cli, &["conversations:read"], &["--expires-in", "30d"]);
    let lifetime = time_field(&issued, "expires_at")
        .duration_since(time_field(&issued, "created_at"))
        .expect("expires after it was created");
    assert_eq!(lifetime, Duration::from_secs(30 * 24 * 3600));

    let list = cli.json(&["keys", "list"]);
    assert_eq!(list[0]["expires_at"], issued["expires_at"]);
}
