//! `chatorical migrate [--dry-run]`, and what commands do before migrating.

use serde_json::json;

use crate::on_both_backends;
use crate::support::{Backend, Cli, array};

on_both_backends!(dry_run_lists_pending_migrations_until_migrated);

fn dry_run_lists_pending_migrations_until_migrated(backend: Backend) {
    let cli = Cli::unmigrated(backend);

    let pending = cli.json(&["migrate", "--dry-run"]);
    assert_eq!(
        array(&pending["pending"]).len(),
        migration_count(),
        "{pending:#}"
    );
    // A dry run changes nothing.
    assert_eq!(cli.json(&["migrate", "--dry-run"]), pending);

    let applied = cli.json(&["migrate"]);
    assert_eq!(
        applied["applied"], pending["pending"],
        "applied exactly what was pending, by name"
    );

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
        migration_count(),
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

/// How many migrations the repository holds (the same for both backends).
fn migration_count() -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let n = std::fs::read_dir(&dir)
        .expect("migrations dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
        .count();
    let sqlite = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let m = std::fs::read_dir(&sqlite)
        .expect("migrations dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
        .count();
    assert_eq!(n, m, "both backends have the same migrations");
    n
}
