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

mod issued_and_escaped {
    //! Keys issued by keys are revoked with them by `keys revoke` (unless
    //! `--cascade=false`), `keys list` shows the issuer, and names that could act on a
    //! terminal are refused on the way in and escaped on the way out.

    use chatorical::{
        config::DatabaseUrl,
        db::{Db, models::ApiKeyRow, repo},
        tenancy::{self, Caller, KeyRequest},
    };
    use serde_json::Value;

    use crate::on_both_backends;
    use crate::support::{Backend, Cli, array, str_field};

    on_both_backends!(
        revoke_cascades_to_issued_keys_unless_told_not_to,
        names_with_escape_sequences_are_refused_and_escaped,
    );

    fn db(cli: &Cli, rt: &tokio::runtime::Runtime) -> Db {
        let url = DatabaseUrl::parse(&cli.database_url()).expect("database url");
        rt.block_on(Db::connect(&url, 2, 5_000))
            .expect("open the database")
    }

    /// A key issued by the key `parent` (as the API would), through the library.
    fn child_of(rt: &tokio::runtime::Runtime, db: &Db, parent: &str) -> String {
        rt.block_on(async {
            let principal = tenancy::authenticate(db, parent).await.expect("parent key");
            tenancy::issue_key(
                db,
                &Caller::Key(principal),
                KeyRequest {
                    scopes: vec!["keys:write".into()],
                    ..Default::default()
                },
            )
            .await
            .expect("child issued")
            .key
        })
    }

    fn revoked(cli: &Cli) -> Vec<(String, bool)> {
        let list = cli.json(&["keys", "list"]);
        array(&list)
            .iter()
            .map(|k| (str_field(k, "id").to_string(), !k["revoked_at"].is_null()))
            .collect()
    }

    fn revoke_cascades_to_issued_keys_unless_told_not_to(backend: Backend) {
        let cli = Cli::new(backend);
        cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let db = db(&cli, &rt);
        let root = cli.json(&["keys", "issue", "--tenant", "acme", "--scope", "keys:write"]);
        assert_eq!(
            root["issued_by"],
            Value::Null,
            "operators issue as nobody's child"
        );
        let child = child_of(&rt, &db, str_field(&root, "key"));
        let grandchild = child_of(&rt, &db, &child);
        let _ = grandchild;

        // The table names the issuer of each key.
        let table = cli.ok(&["keys", "list", "--tenant", "acme"]);
        assert!(table.contains("issued by"), "{table}");
        assert!(table.contains("(operator)"), "{table}");
        assert!(table.contains(str_field(&root, "id")), "{table}");

        let out = cli.ok(&["keys", "revoke", str_field(&root, "id")]);
        // The child, and the grandchild through it.
        assert!(out.contains("and 2 keys issued through it"), "{out}");
        let states = revoked(&cli);
        assert_eq!(states.len(), 3);
        assert!(states.iter().all(|(_, r)| *r), "{states:?}");

        let lone = cli.json(&["keys", "issue", "--tenant", "acme", "--scope", "keys:write"]);
        let kept = child_of(&rt, &db, str_field(&lone, "key"));
        let r = cli.json(&["keys", "revoke", "--cascade=false", str_field(&lone, "id")]);
        assert_eq!(r["cascaded"], 0, "{r}");
        rt.block_on(async {
            tenancy::authenticate(&db, &kept)
                .await
                .expect("the child of a key revoked without cascade still works");
        });
        let r = cli.json(&["keys", "revoke", str_field(&lone, "id")]);
        assert_eq!(r["cascaded"], 1, "{r}");
        rt.block_on(async {
            let e = tenancy::authenticate(&db, &kept)
                .await
                .expect_err("revoked");
            assert_eq!(e.message, "API key revoked");
        });
    }

    fn names_with_escape_sequences_are_refused_and_escaped(backend: Backend) {
        let cli = Cli::new(backend);
        let err = cli.fails(&[
            "keys",
            "issue",
            "--platform",
            "--scope",
            "keys:read",
            "--name",
            "x\u{1b}[2J\u{1b}[8m",
        ]);
        assert!(err.contains("name"), "{err}");
        assert!(
            !err.contains('\u{1b}'),
            "the error shows no raw ESC: {err:?}"
        );
        let err = cli.fails(&[
            "tenants",
            "create",
            "--slug",
            "evil",
            "--name",
            "E\u{202e}vil",
        ]);
        assert!(err.contains("control characters"), "{err}");

        // A row written before names were checked is printed with its ESC escaped, and the
        // rows after it stay visible.
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let db = db(&cli, &rt);
        rt.block_on(async {
            let mut pc = db.conn().await.expect("connection");
            let row = ApiKeyRow {
                id: "key_legacy".into(),
                tenant_id: None,
                name: "hide\u{1b}[2J\u{1b}[8m".into(),
                key_hash: "0".repeat(64),
                prefix: "chk_legacy".into(),
                last4: "abcd".into(),
                scopes: "keys:read".into(),
                created_at: 1,
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
                issued_by: None,
            };
            repo::api_keys::insert(&mut pc.as_conn(), &row)
                .await
                .expect("insert");
        });
        cli.json(&[
            "keys",
            "issue",
            "--platform",
            "--scope",
            "keys:read",
            "--name",
            "visible",
        ]);
        let table = cli.ok(&["keys", "list"]);
        assert!(!table.contains('\u{1b}'), "raw ESC printed: {table:?}");
        assert!(table.contains("hide\\u{1b}[2J\\u{1b}[8m"), "{table}");
        assert!(table.contains("visible"), "{table}");
    }
}
