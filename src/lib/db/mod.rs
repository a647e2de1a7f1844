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

/// Where this thread runs SQLite statements right now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SqliteMode {
    /// One hop to tokio's blocking pool per statement.
    Hop,
    /// Inline, on an async worker thread: short reads ([`sqlite_inline_reads`]). A write
    /// transaction begun here still leaves the async workers ([`sqlite_write_section`]).
    Reads,
    /// Inline, on a thread that has left the async workers ([`sqlite_write_section`]).
    Section,
}

thread_local! {
    static SQLITE_MODE: std::cell::Cell<SqliteMode> = const { std::cell::Cell::new(SqliteMode::Hop) };
}

/// Where diesel-async runs the blocking SQLite calls: normally on tokio's blocking pool,
/// one thread hop per statement (as diesel-async's own `Tokio` runtime does); inside
/// [`sqlite_write_section`] inline on the current thread, which has left the async
/// workers for the whole transaction; inside [`sqlite_inline_reads`] inline on the async
/// worker itself.
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
        if SQLITE_MODE.get() != SqliteMode::Hop {
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

/// Puts back the thread's [`SqliteMode`] when a section or a poll ends, even by a panic.
struct RestoreMode(SqliteMode);

impl RestoreMode {
    /// Switch this thread to `mode` until the returned guard drops.
    fn set(mode: SqliteMode) -> Self {
        RestoreMode(SQLITE_MODE.replace(mode))
    }
}

impl Drop for RestoreMode {
    fn drop(&mut self) {
        SQLITE_MODE.set(self.0);
    }
}

pin_project_lite::pin_project! {
    /// A future polled with this thread's [`SqliteMode`] switched from `from` to `to`
    /// ([`sqlite_inline_reads`]; a write transaction on a current-thread runtime).
    pub struct SqliteModeFor<F> {
        #[pin]
        fut: F,
        from: SqliteMode,
        to: SqliteMode,
    }
}

impl<F: Future> Future for SqliteModeFor<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        // Set for this poll only: the task may move to another thread between polls.
        let this = self.project();
        let _mode = (SQLITE_MODE.get() == *this.from).then(|| RestoreMode::set(*this.to));
        this.fut.poll(cx)
    }
}

/// Run `fut`'s SQLite statements inline on the async worker that polls it, instead of a
/// hop to tokio's blocking pool and back for each (two thread wake-ups per statement:
/// most of the CPU a short indexed read costs). For short reads only — a point lookup,
/// a few rows by index: a statement that can take long (a scan, a statement that waits
/// on SQLite's write lock or syncs a commit) would stall every task on that worker.
/// Writes inside [`transaction!`](crate::transaction) are fine: the transaction leaves
/// the async workers as it always does ([`sqlite_write_section`]). PostgreSQL
/// statements are unaffected.
pub fn sqlite_inline_reads<F: Future>(fut: F) -> SqliteModeFor<F> {
    SqliteModeFor {
        fut,
        from: SqliteMode::Hop,
        to: SqliteMode::Reads,
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
    if SQLITE_MODE.get() == SqliteMode::Section {
        return fut.await;
    }
    if !multi_thread {
        // Not inline on the only thread, even inside `sqlite_inline_reads`.
        let hop = SqliteModeFor {
            fut,
            from: SqliteMode::Reads,
            to: SqliteMode::Hop,
        };
        return hop.await;
    }
    tokio::task::block_in_place(|| {
        let _section = RestoreMode::set(SqliteMode::Section);
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

/// Open a PostgreSQL connection through a transaction pooler: diesel-async's own set-up
/// (`SET TIME ZONE`, `SET CLIENT_ENCODING`, each a prepared statement in two rounds) runs
/// inside a transaction, so that it stays on one server connection, and the statement
/// cache is off (see [`Pooling`]). PgBouncer keeps both settings for the client and
/// applies them to whichever server connection it lends it.
async fn connect_through_pooler(url: String) -> diesel::ConnectionResult<AsyncPgConnection> {
    use diesel::ConnectionError;
    let bad = |e: tokio_postgres::Error| ConnectionError::BadConnection(e.to_string());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(bad)?;
    // Ends when the client is dropped (or the server goes away).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client.batch_execute("BEGIN").await.map_err(bad)?;
    let mut conn = AsyncPgConnection::try_from(client).await?;
    conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
    conn.batch_execute("COMMIT")
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
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
    options: Arc<PgOptions>,
    checkouts: Arc<AtomicU64>,
}

/// How PostgreSQL is reached beyond `database.url` (see
/// [`Settings::database_options`](crate::config::Settings::database_options)).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PgOptions {
    /// `database.url` goes through a pooler in transaction pooling mode (PgBouncer
    /// `pool_mode = transaction`): see [`Pooling`].
    pub transaction_pooling: bool,
    /// A direct URL for LISTEN and migrations (`database.listen_url`).
    pub listen_url: Option<String>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PgOptions")
            .field("transaction_pooling", &self.transaction_pooling)
            .field("listen_url", &self.listen_url.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Whether a PostgreSQL connection reaches the server through a transaction pooler.
///
/// Such a pooler (PgBouncer 1.18 with `pool_mode = transaction`) hands the server
/// connection back to its pool whenever the server reports no open transaction, that is
/// after every protocol round (`Sync`) outside a transaction. diesel-async prepares every
/// statement under a name in one round (Parse/Describe/Sync) and runs it in the next
/// (Bind/Execute/Sync), even with its statement cache disabled: outside a transaction the
/// two rounds may land on different server connections ("prepared statement does not
/// exist"). With [`Pooling::Transaction`] the statement cache is off (a statement is
/// closed right after it ran, inside its transaction) and a statement outside a
/// transaction runs in a short one of its own ([`on_conn!`](crate::on_conn)), which keeps
/// both rounds and the close on one server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// A direct connection (or a session pooler): statements as they come.
    Direct,
    /// Through a transaction pooler: see above.
    Transaction,
}

/// Whether `conn` must open a transaction around a statement: through a transaction
/// pooler and not already in one.
#[doc(hidden)]
pub fn pg_needs_pin(pooling: Pooling, conn: &mut AsyncPgConnection) -> bool {
    use diesel_async::TransactionManager;
    if pooling == Pooling::Direct {
        return false;
    }
    type Manager = diesel_async::AnsiTransactionManager;
    !matches!(
        Manager::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(Some(_))
    )
}

/// The outcome of a statement run in a transaction of its own (see
/// [`on_conn!`](crate::on_conn)): the statement's own result, or the transaction's
/// failure (`BEGIN`, `COMMIT`).
#[doc(hidden)]
pub enum Pinned<R> {
    /// The statement's result was an error: rolled back, returned as it is.
    Body(R),
    /// `BEGIN`, `COMMIT` or `ROLLBACK` failed.
    Db(diesel::result::Error),
}

impl<R> From<diesel::result::Error> for Pinned<R> {
    fn from(e: diesel::result::Error) -> Self {
        Pinned::Db(e)
    }
}

/// A statement's result that [`on_conn!`](crate::on_conn) can run in a transaction of
/// its own: any `Result` whose error a database error converts into.
#[doc(hidden)]
pub trait PinnedResult: Sized {
    /// `Ok` commits, `Err` rolls back and is returned as it is.
    fn into_pinned(self) -> std::result::Result<Self, Pinned<Self>>;
    /// The statement's result, or the transaction's error as one.
    fn from_pinned(outcome: std::result::Result<Self, Pinned<Self>>) -> Self;
}

impl<T, E: From<diesel::result::Error>> PinnedResult for std::result::Result<T, E> {
    fn into_pinned(self) -> std::result::Result<Self, Pinned<Self>> {
        match self {
            Ok(v) => Ok(Ok(v)),
            Err(e) => Err(Pinned::Body(Err(e))),
        }
    }

    fn from_pinned(outcome: std::result::Result<Self, Pinned<Self>>) -> Self {
        match outcome {
            Ok(r) | Err(Pinned::Body(r)) => r,
            Err(Pinned::Db(e)) => Err(e.into()),
        }
    }
}

/// A borrowed connection of either backend; repository functions take `&mut Conn`.
pub enum Conn<'a> {
    /// PostgreSQL, and whether it goes through a transaction pooler.
    Pg(&'a mut AsyncPgConnection, Pooling),
    /// SQLite, with the pool's write lock (`None` inside a transaction, which holds it).
    Sqlite(&'a mut SqliteConn, Option<&'a SqliteWriteLock>),
}

/// A connection checked out of the pool.
// Lives on the stack of one request; boxing would cost an allocation per checkout.
#[allow(clippy::large_enum_variant)]
pub enum PooledConn {
    /// PostgreSQL, and whether it goes through a transaction pooler.
    Pg(Object<AsyncPgConnection>, Pooling),
    /// SQLite, and the pool's write lock.
    Sqlite(Object<SqliteConn>, SqliteWriteLock),
}

impl PooledConn {
    /// Borrow as a [`Conn`] for repository calls.
    pub fn as_conn(&mut self) -> Conn<'_> {
        match self {
            PooledConn::Pg(c, pooling) => Conn::Pg(c, *pooling),
            PooledConn::Sqlite(c, lock) => Conn::Sqlite(c, Some(lock)),
        }
    }
}

/// Run `body` with `$c` bound to the concrete connection of whichever backend `$conn`
/// is. The body is compiled once per backend (twice on PostgreSQL): write the query once.
/// It evaluates to a `Result` (whose error a database error converts into): through a
/// transaction pooler ([`Pooling::Transaction`]) and outside a transaction the body runs
/// in a transaction of its own (an `Err` rolls it back).
#[macro_export]
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::Conn::Pg(inner, pooling) => {
                let pooling = *pooling;
                let pg: &mut diesel_async::AsyncPgConnection = &mut **inner;
                if $crate::db::pg_needs_pin(pooling, pg) {
                    use diesel_async::AsyncConnection as _;
                    let outcome = pg
                        .transaction(async |$c| $crate::db::PinnedResult::into_pinned($body))
                        .await;
                    $crate::db::PinnedResult::from_pinned(outcome)
                } else {
                    let $c = pg;
                    $body
                }
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
            $crate::db::Conn::Pg(inner, pooling) => {
                let pooling = *pooling;
                inner
                    .transaction::<_, $crate::error::Error, _>(async |tx| {
                        let mut wrapped = $crate::db::Conn::Pg(tx, pooling);
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
        Self::connect_with(url, max_connections, busy_timeout_ms, PgOptions::default()).await
    }

    /// Open a pool for `url` with PostgreSQL `options` (transaction pooling, the direct
    /// URL for LISTEN and migrations).
    pub async fn connect_with(
        url: &DatabaseUrl,
        max_connections: usize,
        busy_timeout_ms: u64,
        options: PgOptions,
    ) -> Result<Self> {
        let pools = match url {
            DatabaseUrl::Postgres(u) => {
                let mut config = ManagerConfig::<AsyncPgConnection>::default();
                // No `SELECT 1` round trip on every checkout: a connection the server
                // closed is noticed by the driver (`is_closed`) and replaced; one that
                // fails mid-use fails that request only.
                config.recycling_method = RecyclingMethod::Fast;
                if options.transaction_pooling {
                    config.custom_setup =
                        Box::new(|url| connect_through_pooler(url.to_string()).boxed());
                }
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
            options: Arc::new(options),
            checkouts: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Whether PostgreSQL is reached through a transaction pooler.
    pub fn pooling(&self) -> Pooling {
        if self.options.transaction_pooling {
            Pooling::Transaction
        } else {
            Pooling::Direct
        }
    }

    /// The PostgreSQL URL to LISTEN on: `database.listen_url`, else `database.url`
    /// unless that goes through a transaction pooler (then `None`: poll). `None` on SQLite.
    pub fn listen_url(&self) -> Option<String> {
        match self.url.as_ref() {
            DatabaseUrl::Sqlite(_) => None,
            DatabaseUrl::Postgres(url) => match &self.options.listen_url {
                Some(direct) => Some(direct.clone()),
                None if self.options.transaction_pooling => None,
                None => Some(url.clone()),
            },
        }
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
            Pools::Pg(p) => PooledConn::Pg(p.get().await?, self.pooling()),
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
            DatabaseUrl::Postgres(url) => match &self.options.listen_url {
                // Through a transaction pooler: one transaction (savepoints for each
                // migration) under a transaction-level lock, on one server connection.
                None if self.options.transaction_pooling => {
                    use diesel_async::TransactionManager;
                    type Manager = diesel_async::AnsiTransactionManager;
                    let mut conn = connect_through_pooler(url.clone()).await?;
                    Manager::begin_transaction(&mut conn).await?;
                    diesel::sql_query("SELECT pg_advisory_xact_lock(727274)")
                        .execute(&mut conn)
                        .await?;
                    let (result, mut conn) = harness!(conn, PG_MIGRATIONS);
                    if result.is_ok() {
                        Manager::commit_transaction(&mut conn).await?;
                    } else {
                        Manager::rollback_transaction(&mut conn).await?;
                    }
                    result
                }
                // A session of its own: a session-level lock.
                direct => {
                    let url = direct.as_ref().unwrap_or(url);
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
            },
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConn::establish(&path.display().to_string()).await?;
                conn.batch_execute(&sqlite_pragmas(5000)).await?;
                harness!(conn, SQLITE_MIGRATIONS).0
            }
        };
        result.map_err(|e| Error::new(ErrorCode::Internal, format!("migration failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use diesel::{Connection, RunQueryDsl, SqliteConnection};

    #[derive(diesel::QueryableByName)]
    struct Used {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        used: i32,
    }

    /// The bundled SQLite is built with `SQLITE_ENABLE_QPSG` (`.cargo/config.toml`):
    /// otherwise every cached statement with a bound `LIMIT` is planned again on every
    /// execution.
    #[test]
    fn bundled_sqlite_keeps_its_plans() {
        let mut conn = SqliteConnection::establish(":memory:").expect("an in-memory database");
        let row: Used =
            diesel::sql_query("SELECT sqlite_compileoption_used('ENABLE_QPSG') AS used")
                .get_result(&mut conn)
                .expect("compile options");
        assert_eq!(row.used, 1, "SQLite was built without SQLITE_ENABLE_QPSG");
    }
}
