//! `chatorical backup` / `restore`: what they print, what they refuse, and PostgreSQL
//! (exit 2, pg_dump). Backups under load and the refusal while `serve` runs are in
//! tests/process/backup.rs.

use crate::support::{Backend, Cli};

fn tenant(cli: &Cli, slug: &str) {
    cli.ok(&["tenants", "create", "--slug", slug, "--name", slug]);
}

#[test]
fn backup_prints_a_report_and_where_the_master_key_is() {
    let cli = Cli::new(Backend::Sqlite);
    tenant(&cli, "acme");
    let out = cli.data_dir().join("copy.db");
    let out_s = out.to_str().expect("UTF-8");
    let table = cli.ok(&["backup", "--out", out_s]);
    for needle in ["integrity_check", "ok", "bytes", " ms", out_s] {
        assert!(table.contains(needle), "{needle}: {table}");
    }
    let key = cli.data_dir().join("master.key");
    assert!(
        table.contains("the master key is not in the backup")
            && table.contains(&format!("The master key file is {}.", key.display())),
        "{table}"
    );
    // Never over an existing file.
    let before = std::fs::read(&out).expect("the backup");
    let err = cli.fails(&["backup", "--out", out_s]);
    assert!(
        err.contains("conflict") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&out).expect("the backup"),
        before,
        "left as it was"
    );
    // Not the database itself.
    let db = cli.data_dir().join("chatorical.db");
    let err = cli.fails(&["backup", "--out", db.to_str().expect("UTF-8")]);
    assert!(
        err.contains("validation_failed") || err.contains("conflict"),
        "{err}"
    );
}

#[test]
fn restore_refuses_a_file_that_is_no_database_and_changes_nothing() {
    let cli = Cli::new(Backend::Sqlite);
    tenant(&cli, "keep");
    let junk = cli.data_dir().join("junk.db");
    std::fs::write(
        &junk,
        b"this is not a database, just some bytes ".repeat(200),
    )
    .expect("write");
    let db = cli.data_dir().join("chatorical.db");
    let before = std::fs::read(&db).expect("the database");
    let err = cli.fails(&["restore", "--from", junk.to_str().expect("UTF-8")]);
    assert!(
        err.contains("validation_failed")
            && err.contains("junk.db is not a usable SQLite database"),
        "{err}"
    );
    let err = cli.fails(&["restore", "--from", "missing.db"]);
    assert!(
        err.contains("not_found") && err.contains("missing.db"),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).expect("the database"), before);
    let names: Vec<String> = std::fs::read_dir(cli.data_dir())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains(".restore-") || n.contains(".replaced-")),
        "{names:?}"
    );
    let tenants = cli.json(&["tenants", "list"]);
    assert!(tenants.to_string().contains("\"keep\""), "{tenants}");
}

#[test]
fn a_restore_brings_back_the_data_of_the_backup() {
    let cli = Cli::new(Backend::Sqlite);
    tenant(&cli, "before");
    let out = cli.data_dir().join("b.db");
    let out_s = out.to_str().expect("UTF-8");
    cli.ok(&["backup", "--out", out_s]);
    tenant(&cli, "after");
    let table = cli.ok(&["restore", "--from", out_s]);
    assert!(
        table.contains("kept as") && table.contains(".replaced-"),
        "{table}"
    );
    assert!(
        table.contains("the master key is not in the backup"),
        "{table}"
    );
    let tenants = cli.json(&["tenants", "list"]).to_string();
    assert!(
        tenants.contains("\"before\"") && !tenants.contains("\"after\""),
        "{tenants}"
    );
    // Twice within a second: the second replaced database gets a name of its own.
    cli.ok(&["restore", "--from", out_s]);
    let kept = std::fs::read_dir(cli.data_dir())
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .contains(".replaced-")
        })
        .count();
    assert_eq!(kept, 2);
}

#[test]
fn on_postgres_backup_and_restore_point_to_pg_dump_and_exit_2() {
    let cli = Cli::new(Backend::Postgres);
    for args in [["backup", "--out", "x.db"], ["restore", "--from", "x.db"]] {
        let run = cli.run(&args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("pg_dump") && run.stderr.contains("pg_restore"),
            "{}",
            run.stderr
        );
        assert_eq!(run.stdout, "");
        assert!(!cli.data_dir().join("x.db").exists());
    }
}
