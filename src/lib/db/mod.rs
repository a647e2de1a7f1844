//! Data layer: one schema, two backends (PostgreSQL and SQLite), no query written twice.
//!
//! [`Db`] owns a pool of either backend. Repository functions take a [`Conn`] — a
//! borrowed connection of either backend — and write each query once inside
//! [`on_conn!`](crate::on_conn), which compiles the body once per backend. The same
//! function runs alone or inside [`transaction!`](crate::transaction).

pub mod models;
pub mod repo;
pub mod schema;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use diesel::SqliteConnection;
use diesel_async::SimpleAsyncConnection;
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
        deadpool::{Object, Pool},
    },
    sync_connection_wrapper::SyncConnectionWrapper,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use futures_util::FutureExt;

use crate::config::DatabaseUrl;
use crate::error::{Error, ErrorCode, Result};

/// The SQLite connection type used through diesel-async.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Which backend a [`Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

#[derive(Clone)]
enum Pools {
    Pg(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteConn>, SqliteWriteLock),
}

/// Serializes this process's SQLite write transactions ([`transaction!`](crate::transaction)):
/// writers queue on an async mutex, in order, instead of colliding on SQLite's write
/// lock and sleeping in its busy handler (1, 2, 5, 10 … 100 ms between retries) while
/// the lock sits free. Other processes on the same file still meet `busy_timeout`.
pub type SqliteWriteLock = Arc<tokio::sync::Mutex<()>>;

/// A pool of database connections on either backend.
#[derive(Clone)]
pub struct Db {
    pools: Pools,
    url: Arc<DatabaseUrl>,
    checkouts: Arc<AtomicU64>,
}

/// A borrowed connection of either backend; repository functions take `&mut Conn`.
pub enum Conn<'a> {
    /// PostgreSQL.
    Pg(&'a mut AsyncPgConnection),
    /// SQLite, with the pool's write lock (`None` inside a transaction, which holds it).
    Sqlite(&'a mut SqliteConn, Option<&'a SqliteWriteLock>),
}

/// A connection checked out of the pool.
// Lives on the stack of one request; boxing would cost an allocation per checkout.
#[allow(clippy::large_enum_variant)]
pub enum PooledConn {
    /// PostgreSQL.
    Pg(Object<AsyncPgConnection>),
    /// SQLite, and the pool's write lock.
    Sqlite(Object<SqliteConn>, SqliteWriteLock),
}

impl PooledConn {
    /// Borrow as a [`Conn`] for repository calls.
    pub fn as_conn(&mut self) -> Conn<'_> {
        match self {
            PooledConn::Pg(c) => Conn::Pg(c),
            PooledConn::Sqlite(c, lock) => Conn::Sqlite(c, Some(lock)),
        }
    }
}

/// Run `body` with `$c` bound to the concrete connection of whichever backend `$conn`
/// is. The body is compiled once per backend: write the query once.
#[macro_export]
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::Conn::Pg(inner) => {
                let $c = &mut **inner;
                $body
            }
            $crate::db::Conn::Sqlite(inner, _) => {
                let $c = &mut **inner;
                $body
            }
        }
    };
}

/// Run `body` in a transaction; `$c` is a `&mut Conn` usable with repository functions.
/// The body returns `Result<T, Error>`; an `Err` rolls back.
///
/// On SQLite a transaction waits for the process's write lock ([`SqliteWriteLock`]),
/// then starts with `BEGIN IMMEDIATE`: it takes SQLite's write lock up front, so a
/// writer in another process makes it wait (`busy_timeout`) instead of failing a lock
/// upgrade halfway. A transaction inside a transaction is a savepoint and takes no
/// lock (its outer transaction holds it).
#[macro_export]
macro_rules! transaction {
    ($conn:expr, |$c:ident| $body:expr) => {{
        use diesel_async::AsyncConnection as _;
        match $conn {
            $crate::db::Conn::Pg(inner) => {
                inner
                    .transaction::<_, $crate::error::Error, _>(async |tx| {
                        let mut wrapped = $crate::db::Conn::Pg(tx);
                        let $c = &mut wrapped;
                        $body
                    })
                    .await
            }
            $crate::db::Conn::Sqlite(inner, Some(lock)) => {
                let _writer = lock.lock().await;
                inner
                    .immediate_transaction::<_, $crate::error::Error, _>(async |tx| {
                        let mut wrapped = $crate::db::Conn::Sqlite(tx, None);
                        let $c = &mut wrapped;
                        $body
                    })
                    .await
            }
            $crate::db::Conn::Sqlite(inner, None) => {
                inner
                    .transaction::<_, $crate::error::Error, _>(async |tx| {
                        let mut wrapped = $crate::db::Conn::Sqlite(tx, None);
                        let $c = &mut wrapped;
                        $body
                    })
                    .await
            }
        }
    }};
}

/// SQLite pragmas set on every connection.
fn sqlite_pragmas(busy_timeout_ms: u64) -> String {
    format!(
        // busy_timeout first: the others may need to wait for a lock.
        "PRAGMA busy_timeout = {busy_timeout_ms}; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
         PRAGMA synchronous = FULL;"
    )
}

impl Db {
    /// Open a pool for `url`. SQLite creates the file (and its directory).
    pub async fn connect(
        url: &DatabaseUrl,
        max_connections: usize,
        busy_timeout_ms: u64,
    ) -> Result<Self> {
        let pools = match url {
            DatabaseUrl::Postgres(u) => {
                let mut config = ManagerConfig::<AsyncPgConnection>::default();
                // No `SELECT 1` round trip on every checkout: a connection the server
                // closed is noticed by the driver (`is_closed`) and replaced; one that
                // fails mid-use fails that request only.
                config.recycling_method = RecyclingMethod::Fast;
                let mgr = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
                    u.clone(),
                    config,
                );
                let pool = Pool::builder(mgr)
                    .max_size(max_connections)
                    .wait_timeout(Some(Duration::from_secs(10)))
                    .create_timeout(Some(Duration::from_secs(5)))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| {
                        Error::new(ErrorCode::InvalidConfig, format!("database pool: {e}"))
                    })?;
                Pools::Pg(pool)
            }
            DatabaseUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        Error::new(
                            ErrorCode::InvalidConfig,
                            format!("cannot create {}: {e}", dir.display()),
                        )
                    })?;
                }
                let mut config = ManagerConfig::<SqliteConn>::default();
                // A local file: nothing to verify with a query on every checkout.
                config.recycling_method = RecyclingMethod::Fast;
                let pragmas = sqlite_pragmas(busy_timeout_ms);
                config.custom_setup = Box::new(move |url| {
                    let pragmas = pragmas.clone();
                    let url = url.to_string();
                    async move {
                        let mut conn = SqliteConn::establish(&url).await?;
                        conn.batch_execute(&pragmas)
                            .await
                            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    }
                    .boxed()
                });
                let mgr = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(
                    path.display().to_string(),
                    config,
                );
                let pool = Pool::builder(mgr)
                    .max_size(max_connections)
                    .wait_timeout(Some(Duration::from_secs(10)))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| {
                        Error::new(ErrorCode::InvalidConfig, format!("database pool: {e}"))
                    })?;
                Pools::Sqlite(pool, Arc::new(tokio::sync::Mutex::new(())))
            }
        };
        Ok(Db {
            pools,
            url: Arc::new(url.clone()),
            checkouts: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Pg(_) => Backend::Postgres,
            Pools::Sqlite(..) => Backend::Sqlite,
        }
    }

    /// Check a connection out of the pool.
    pub async fn conn(&self) -> Result<PooledConn> {
        self.checkouts.fetch_add(1, Ordering::Relaxed);
        Ok(match &self.pools {
            Pools::Pg(p) => PooledConn::Pg(p.get().await?),
            Pools::Sqlite(p, lock) => PooledConn::Sqlite(p.get().await?, lock.clone()),
        })
    }

    /// How many connections have been checked out so far (lets tests prove that a
    /// request was answered without touching the database).
    pub fn checkouts(&self) -> u64 {
        AtomicU64::load(&self.checkouts, Ordering::Relaxed)
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        let mut pc = self.conn().await?;
        let mut conn = pc.as_conn();
        on_conn!(&mut conn, |c| diesel::sql_query("SELECT 1")
            .execute(c)
            .await)?;
        Ok(())
    }

    /// Names of migrations not yet applied.
    pub async fn pending_migrations(&self) -> Result<Vec<String>> {
        self.run_harness(false).await
    }

    /// Apply pending migrations; returns the names applied. On PostgreSQL an advisory
    /// lock keeps concurrent starters from racing.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        self.run_harness(true).await
    }

    async fn run_harness(&self, apply: bool) -> Result<Vec<String>> {
        // The harness blocks in place; it needs the multi-thread runtime.
        macro_rules! harness {
            ($conn:expr, $migrations:expr) => {{
                let mut harness = AsyncMigrationHarness::new($conn);
                let result = tokio::task::block_in_place(|| {
                    if apply {
                        // Report names (as the dry run does), not bare versions.
                        let names = harness.pending_migrations($migrations).map(|list| {
                            list.iter()
                                .map(|m| m.name().to_string())
                                .collect::<Vec<_>>()
                        });
                        names.and_then(|names| {
                            harness.run_pending_migrations($migrations).map(|_| names)
                        })
                    } else {
                        harness.pending_migrations($migrations).map(|list| {
                            list.iter()
                                .map(|m| m.name().to_string())
                                .collect::<Vec<_>>()
                        })
                    }
                });
                (result, harness.into_inner())
            }};
        }
        let result = match self.url.as_ref() {
            DatabaseUrl::Postgres(url) => {
                let mut conn = AsyncPgConnection::establish(url).await?;
                diesel::sql_query("SELECT pg_advisory_lock(727274)")
                    .execute(&mut conn)
                    .await?;
                let (result, mut conn) = harness!(conn, PG_MIGRATIONS);
                diesel::sql_query("SELECT pg_advisory_unlock(727274)")
                    .execute(&mut conn)
                    .await?;
                result
            }
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConn::establish(&path.display().to_string()).await?;
                conn.batch_execute(&sqlite_pragmas(5000)).await?;
                harness!(conn, SQLITE_MIGRATIONS).0
            }
        };
        result.map_err(|e| Error::new(ErrorCode::Internal, format!("migration failed: {e}")))
    }
}
