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
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection, SqliteRuntime>;

thread_local! {
    /// Set while this thread runs a SQLite write transaction (see [`sqlite_write_section`]).
    static SQLITE_INLINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Where diesel-async runs the blocking SQLite calls: normally on tokio's blocking pool,
/// one thread hop per statement (as diesel-async's own `Tokio` runtime does); inside
/// [`sqlite_write_section`] inline on the current thread, which has left the async
/// workers for the whole transaction.
pub enum SqliteRuntime {
    /// The runtime the connection was opened in.
    Handle(tokio::runtime::Handle),
    /// A runtime of its own (opened outside any runtime).
    Runtime(tokio::runtime::Runtime),
}

impl diesel_async::sync_connection_wrapper::SpawnBlocking for SqliteRuntime {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> futures_util::future::BoxFuture<
        'a,
        std::result::Result<R, Box<dyn std::error::Error + Send + Sync + 'static>>,
    >
    where
        R: Send + 'static,
    {
        if SQLITE_INLINE.get() {
            return std::future::ready(Ok(task())).boxed();
        }
        let handle = match self {
            SqliteRuntime::Handle(h) => h.clone(),
            SqliteRuntime::Runtime(r) => r.handle().clone(),
        };
        FinishOnDrop {
            task: Some(handle.spawn_blocking(task)),
            handle,
        }
        .map(|r| r.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>))
        .boxed()
    }

    fn get_runtime() -> Self {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => SqliteRuntime::Handle(h),
            Err(_) => SqliteRuntime::Runtime(
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a runtime for SQLite"),
            ),
        }
    }
}

/// A blocking SQLite call that is waited for when dropped early: the connection must not
/// go back to the pool while a statement still runs on it (as in diesel-async).
struct FinishOnDrop<R> {
    handle: tokio::runtime::Handle,
    task: Option<tokio::task::JoinHandle<R>>,
}

impl<R> Future for FinishOnDrop<R> {
    type Output = std::result::Result<R, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.task.as_mut() {
            Some(task) => {
                let out = std::pin::Pin::new(task).poll(cx);
                if out.is_ready() {
                    self.task = None;
                }
                out
            }
            None => std::task::Poll::Pending,
        }
    }
}

impl<R> Drop for FinishOnDrop<R> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take()
            && !task.is_finished()
        {
            tokio::task::block_in_place(|| {
                let _ = self.handle.block_on(task);
            });
        }
    }
}

/// Resets [`SQLITE_INLINE`] when the section ends, even by a panic.
struct InlineSection;

impl Drop for InlineSection {
    fn drop(&mut self) {
        SQLITE_INLINE.set(false);
    }
}

/// Run a SQLite write transaction (`fut`, which holds the process's write lock) with
/// every statement inline on this thread: the thread leaves the async workers once
/// (`block_in_place`) instead of hopping to the blocking pool and back for each of
/// `BEGIN`, the statements and `COMMIT` while the lock is held. On a current-thread
/// runtime (where `block_in_place` is not allowed) the statements hop as usual.
#[doc(hidden)]
pub async fn sqlite_write_section<F: Future>(fut: F) -> F::Output {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if !multi_thread || SQLITE_INLINE.get() {
        return fut.await;
    }
    tokio::task::block_in_place(|| {
        SQLITE_INLINE.set(true);
        let _section = InlineSection;
        tokio::runtime::Handle::current().block_on(fut)
    })
}

/// `BEGIN IMMEDIATE` (see [`transaction!`](crate::transaction)).
#[doc(hidden)]
pub async fn sqlite_begin_immediate(conn: &mut SqliteConn) -> Result<()> {
    conn.spawn_blocking(|c| {
        diesel::connection::AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
    })
    .await?;
    Ok(())
}

/// Commit after `Ok`, roll back after `Err` (as diesel-async's transactions do).
#[doc(hidden)]
pub async fn sqlite_finish<T>(conn: &mut SqliteConn, result: Result<T>) -> Result<T> {
    use diesel_async::TransactionManager;
    type Manager = diesel_async::sync_connection_wrapper::SyncTransactionManagerWrapper<
        diesel::connection::AnsiTransactionManager,
    >;
    match result {
        Ok(value) => {
            Manager::commit_transaction(conn).await?;
            Ok(value)
        }
        Err(e) => {
            Manager::rollback_transaction(conn).await?;
            Err(e)
        }
    }
}

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
/// upgrade halfway. Its statements run inline on one thread ([`sqlite_write_section`]),
/// not one blocking-pool hop each. A transaction inside a transaction is a savepoint and takes no
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
                let tx: &mut $crate::db::SqliteConn = &mut **inner;
                $crate::db::sqlite_write_section(async {
                    $crate::db::sqlite_begin_immediate(&mut *tx).await?;
                    let result: ::std::result::Result<_, $crate::error::Error> = async {
                        let mut wrapped = $crate::db::Conn::Sqlite(&mut *tx, None);
                        let $c = &mut wrapped;
                        $body
                    }
                    .await;
                    $crate::db::sqlite_finish(&mut *tx, result).await
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

/// SQLite pragmas set on every connection. `secure_delete` overwrites what a write
/// frees (an updated row's old cell, deleted rows, freed pages) with zeros: an erased
/// visitor's texts do not linger in the file's free space.
fn sqlite_pragmas(busy_timeout_ms: u64) -> String {
    format!(
        // busy_timeout first: the others may need to wait for a lock.
        "PRAGMA busy_timeout = {busy_timeout_ms}; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
         PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;"
    )
}

/// One row of `PRAGMA wal_checkpoint`.
#[derive(diesel::QueryableByName)]
struct CheckpointRow {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
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
                // Directory 0700, file 0600 (SQLite gives -wal/-shm the file's mode).
                crate::files::prepare_sqlite_file(path)?;
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

    /// SQLite: copy the write-ahead log into the database file and truncate the log to
    /// zero bytes (`PRAGMA wal_checkpoint(TRUNCATE)`), so older versions of pages — an
    /// erased visitor's texts — are no longer in the log. Waits for this process's
    /// writers; `Ok(false)` when readers kept it from finishing within `busy_timeout`
    /// (the next checkpoint completes it). PostgreSQL: nothing to do, `Ok(true)`.
    pub async fn truncate_wal(&self) -> Result<bool> {
        let Pools::Sqlite(pool, lock) = &self.pools else {
            return Ok(true);
        };
        let _writer = lock.lock().await;
        let mut conn = pool.get().await?;
        let rows: Vec<CheckpointRow> = diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)")
            .load(&mut *conn)
            .await?;
        Ok(rows.as_slice().first().is_some_and(|r| r.busy == 0))
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
