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
//! trust auth). Every [`PgDatabase`] is a database of its own, named after the test
//! process (`<prefix>_p<pid>_<uuid>`) and dropped `WITH (FORCE)` after the guard is
//! dropped (also when the test panics).
//!
//! Dropping a database makes PostgreSQL take a checkpoint (about a second on this box),
//! so the guard does not wait for it: a thread of the process drops the databases one
//! after another while the tests go on. What a process could not drop before it exited
//! (the test harness exits without waiting) is dropped by the next test process: its
//! first database sweeps those of processes that no longer run.
//!
//! Creating and dropping run on a thread of their own with a runtime of their own, so
//! the guard works the same in plain `#[test]`s, inside a test's runtime and in `Drop`.
#![allow(dead_code)]

use std::sync::{Mutex, OnceLock, mpsc};

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

/// The queue of databases to drop, served by one thread of this process (started, and
/// fed the leftovers of test processes that are gone, with the first database created).
fn dropper() -> &'static Mutex<mpsc::Sender<String>> {
    static DROPPER: OnceLock<Mutex<mpsc::Sender<String>>> = OnceLock::new();
    DROPPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for name in leftovers() {
                drop_now(&name);
            }
            for name in rx {
                drop_now(&name);
            }
        });
        Mutex::new(tx)
    })
}

/// Drop `name`, waiting for it (best effort: a database left behind fails nothing).
fn drop_now(name: &str) {
    if let Err(e) = admin_execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")) {
        eprintln!("warning: test database {name} not dropped: {e}");
    }
}

/// Test databases of processes that no longer run.
fn leftovers() -> Vec<String> {
    let rows = std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            #[derive(diesel::QueryableByName)]
            struct Name {
                #[diesel(sql_type = diesel::sql_types::Text)]
                datname: String,
            }
            let mut conn = AsyncPgConnection::establish(&admin_url()).await.ok()?;
            diesel::sql_query(
                "SELECT datname FROM pg_database WHERE datname ~ '^chatorical_[a-z]+_p[0-9]+_[0-9a-f]{32}$'",
            )
            .load::<Name>(&mut conn)
            .await
            .ok()
        })
    })
    .join()
    .ok()
    .flatten()
    .unwrap_or_default();
    rows.into_iter()
        .map(|r| r.datname)
        .filter(|name| {
            let pid = name
                .rsplit('_')
                .nth(1)
                .and_then(|p| p.strip_prefix('p'))
                .and_then(|p| p.parse::<u32>().ok());
            pid.is_some_and(|pid| {
                pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            })
        })
        .collect()
}

/// A database of its own on the test server, dropped after the guard.
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
        let name = format!(
            "{prefix}_p{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        // Starts the dropper (and its sweep of leftovers) with the first database.
        let _ = dropper();
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
        // Queued, not awaited: see the module's documentation.
        let queued = dropper()
            .lock()
            .map(|tx| tx.send(self.name.clone()).is_ok())
            .unwrap_or(false);
        if !queued {
            drop_now(&self.name);
        }
    }
}
