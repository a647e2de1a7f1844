//! `chatorical migrate [--dry-run]`, and what commands do before migrating.

use serde_json::json;

use crate::on_both_backends;
use crate::support::{Backend, Cli, array};

on_both_backends!(dry_run_lists_pending_migrations_until_migrated);

fn dry_run_lists_pending_migrations_until_migrated(backend: Backend) {
    let cli = Cli::unmigrated(backend);

    let pending = cli.json(&["migrate", "--dry-run"]);
    assert_eq!(array(&pending["pending"]).len(), 1, "{pending:#}");
    // A dry run changes nothing.
    assert_eq!(cli.json(&["migrate", "--dry-run"]), pending);

    let applied = cli.json(&["migrate"]);
    assert_eq!(array(&applied["applied"]).len(), 1, "{applied:#}");

    assert_eq!(
        cli.json(&["migrate", "--dry-run"]),
        json!({ "pending": [] })
    );
    assert_eq!(cli.json(&["migrate"]), json!({ "applied": [] }));
    assert_eq!(cli.json(&["tenants", "list"]), json!([]));
}

#[test]
fn postgres_commands_ask_to_run_migrate_first() {
    let cli = Cli::unmigrated(Backend::Postgres);
    let stderr = cli.fails(&["tenants", "list"]);
    assert!(stderr.contains("run `chatorical migrate`"), "{stderr}");
    let pending = cli.json(&["migrate", "--dry-run"]);
    assert_eq!(
        array(&pending["pending"]).len(),
        1,
        "nothing was migrated: {pending:#}"
    );
}

#[test]
fn sqlite_commands_migrate_by_themselves() {
    let cli = Cli::unmigrated(Backend::Sqlite);
    assert_eq!(cli.json(&["tenants", "list"]), json!([]));
    assert_eq!(
        cli.json(&["migrate", "--dry-run"]),
        json!({ "pending": [] })
    );
}
