//! A throwaway PostgreSQL database per test, shared by the test binaries.
//!
//! Included with
//!
//! ```ignore
//! #[path = "../support/pg.rs"] // from tests/<dir>/main.rs
//! mod pg;
//! ```
//!
//! The server is `TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`,
//! trust auth). Every [`PgDatabase`] is a database of its own, dropped `WITH (FORCE)`
//! when the guard is dropped (also when the test panics).
//!
//! Creating and dropping run on a thread of their own with a runtime of their own, so
//! the guard works the same in plain `#[test]`s, inside a test's runtime and in `Drop`.
#![allow(dead_code)]

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// The maintenance database URL of the test server.
pub(crate) fn admin_url() -> String {
    std::env::var("TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Run one statement on the admin database, on a thread and runtime of its own.
fn admin_execute(sql: String) -> Result<(), String> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        rt.block_on(async move {
            let admin = admin_url();
            let mut conn = AsyncPgConnection::establish(&admin)
                .await
                .map_err(|e| format!("PostgreSQL at {admin} (TEST_PG_URL): {e}"))?;
            diesel::sql_query(&sql)
                .execute(&mut conn)
                .await
                .map(drop)
                .map_err(|e| format!("{sql}: {e}"))
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the database thread panicked".into()))
}

/// A database of its own on the test server, dropped with the guard.
pub(crate) struct PgDatabase {
    name: String,
    /// URL of the database itself.
    pub url: String,
}

impl PgDatabase {
    /// Create `<prefix>_<uuid>` (blocking). Panics when the server cannot be reached.
    pub(crate) fn create(prefix: &str) -> Self {
        let admin = admin_url();
        let (base, _) = admin
            .rsplit_once('/')
            .expect("TEST_PG_URL ends with /DATABASE");
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        admin_execute(format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("create a test database: {e}"));
        let url = format!("{base}/{name}");
        PgDatabase { name, url }
    }

    /// [`PgDatabase::create`] without blocking the caller's runtime.
    pub(crate) async fn create_async(prefix: &str) -> Self {
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || PgDatabase::create(&prefix))
            .await
            .expect("create a test database")
    }

    /// The database's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Best effort: a database left behind must not fail the test that used it.
        if let Err(e) = admin_execute(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )) {
            eprintln!("warning: test database {} not dropped: {e}", self.name);
        }
    }
}
