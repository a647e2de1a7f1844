//! Backups of the embedded default (SQLite): `backup` takes a consistent copy while
//! `serve` keeps running, `restore` puts one back while nothing serves the data.
//!
//! - **Backup**: `VACUUM INTO` a new file on a connection of its own. It reads inside
//!   one read transaction, so the copy is the database as of one commit — with the
//!   live database in WAL mode, writers carry on meanwhile (they append to the WAL;
//!   the reader keeps its snapshot). The copy is written 0600, fsync-ed and checked
//!   with `PRAGMA integrity_check`.
//! - **Who holds the data**: `serve` and `worker` on SQLite hold a shared `flock` on
//!   `<database>.lock` for their lifetime ([`DataLock::hold_shared`]); `restore` takes
//!   it exclusively without waiting and refuses when it cannot.
//! - **Restore**: the source is copied with `VACUUM INTO` (which also takes in a
//!   `-wal` beside the source) into a temp file in the database's directory, checked,
//!   fsync-ed, then renamed over the database. The old database is checkpointed
//!   first (its WAL folded in and emptied), its `-wal`/`-shm` removed — a stale WAL
//!   beside the new file would be replayed into it — and the old file kept as
//!   `<database>.replaced-<unix seconds>`.
//!
//! The master key is a separate file (`secrets.master_key_file`); it is in neither.
//! On PostgreSQL both are the job of `pg_dump` / `pg_restore`.

use std::{
    fs::File,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use diesel::{Connection, RunQueryDsl, SqliteConnection, sql_query};
use serde::Serialize;

use crate::{
    config::{DatabaseUrl, Settings},
    error::{Error, ErrorCode, Result},
};

/// What to tell an operator on PostgreSQL, where these commands do not apply.
pub const POSTGRES_HINT: &str = "the database is PostgreSQL: back it up with pg_dump \
     (e.g. `pg_dump --format=custom --file=chatorical.dump DBNAME`) and restore with pg_restore";

/// What to tell an operator about the master key after a backup or restore.
pub const MASTER_KEY_NOTE: &str = "the master key is not in the backup: keep a copy of the \
     master key file with it (without it the sealed secrets, e.g. bot tokens, cannot be read)";

/// A finished backup.
#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    /// The database that was copied.
    pub database: PathBuf,
    /// The file written.
    pub out: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Wall time of the copy and its check, in milliseconds.
    pub duration_ms: u64,
    /// `PRAGMA integrity_check` of the copy (always `ok`: anything else is an error).
    pub integrity: String,
    /// Messages in the copy.
    pub messages: i64,
    /// The master key file, which is not in the backup.
    pub master_key_file: PathBuf,
}

/// The database a restore replaced.
#[derive(Debug, Clone, Serialize)]
pub struct Replaced {
    /// Its size in bytes (after its WAL was folded in).
    pub bytes: u64,
    /// Messages it held.
    pub messages: Option<i64>,
    /// Where it is kept.
    pub kept_as: PathBuf,
}

/// A finished restore.
#[derive(Debug, Clone, Serialize)]
pub struct Restore {
    /// The database that now holds the restored data.
    pub database: PathBuf,
    /// The backup it came from.
    pub from: PathBuf,
    /// The restored database's size in bytes.
    pub bytes: u64,
    /// Messages in it.
    pub messages: i64,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// The database it replaced, if there was one.
    pub replaced: Option<Replaced>,
    /// The master key file, which the restored secrets need (not in the backup).
    pub master_key_file: PathBuf,
}

/// The embedded database's file, or an error with [`POSTGRES_HINT`] on PostgreSQL.
pub fn sqlite_path(settings: &Settings) -> Result<PathBuf> {
    match settings.database_url()? {
        DatabaseUrl::Sqlite(path) => Ok(path),
        DatabaseUrl::Postgres(_) => Err(Error::new(ErrorCode::InvalidConfig, POSTGRES_HINT)),
    }
}

/// Copy the embedded database to `out` (which must not exist, or be empty) while it
/// stays in use, check the copy and report on it.
pub fn backup(settings: &Settings, out: &Path) -> Result<Backup> {
    let started = Instant::now();
    let database = sqlite_path(settings)?;
    if !database.is_file() {
        return Err(Error::new(
            ErrorCode::NotFound,
            format!("no database at {}", database.display()),
        ));
    }
    if same_file(&database, out) {
        return Err(Error::validation(
            "out",
            "the backup cannot be the database itself",
        ));
    }
    create_empty_private(out)?;
    let copied = (|| {
        let mut conn = open(&database)?;
        vacuum_into(&mut conn, out)?;
        drop(conn);
        sync_file(out)?;
        if let Some(dir) = parent(out) {
            sync_dir(&dir)?;
        }
        let mut copy = open(out)?;
        check_integrity(&mut copy, out)?;
        count_messages(&mut copy)
    })();
    let messages = match copied {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(out);
            return Err(e);
        }
    };
    Ok(Backup {
        database,
        out: out.to_path_buf(),
        bytes: file_len(out)?,
        duration_ms: millis(started.elapsed()),
        integrity: "ok".into(),
        messages,
        master_key_file: settings.master_key_path(),
    })
}

/// Replace the embedded database with the backup `from`. Refuses (code `conflict`)
/// while a `serve` or `worker` holds the data; leaves the database untouched on any
/// error before the final rename.
pub fn restore(settings: &Settings, from: &Path) -> Result<Restore> {
    let started = Instant::now();
    let database = sqlite_path(settings)?;
    if !from.is_file() {
        return Err(Error::new(
            ErrorCode::NotFound,
            format!("no backup file at {}", from.display()),
        ));
    }
    if same_file(&database, from) {
        return Err(Error::validation(
            "from",
            "the backup to restore is the database itself",
        ));
    }
    let _lock = DataLock::hold_exclusive(&database)?;
    let dir = parent(&database).unwrap_or_else(|| PathBuf::from("."));
    crate::files::create_private_dir(&dir)?;
    let file_name = database
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "chatorical.db".into());
    let tmp = dir.join(format!(".{file_name}.restore-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    create_empty_private(&tmp)?;
    let prepared = (|| {
        let unusable = |e: Error| {
            Error::validation(
                "from",
                format!(
                    "{} is not a usable SQLite database: {}",
                    from.display(),
                    e.message
                ),
            )
        };
        let mut source = open(from).map_err(unusable)?;
        check_integrity(&mut source, from).map_err(unusable)?;
        vacuum_into(&mut source, &tmp)?;
        drop(source);
        let mut copy = open(&tmp)?;
        check_integrity(&mut copy, &tmp)?;
        let messages = count_messages(&mut copy).map_err(|_| {
            Error::validation(
                "from",
                format!("{} is not a chatorical database", from.display()),
            )
        })?;
        drop(copy);
        sync_file(&tmp)?;
        Ok(messages)
    })();
    let messages = match prepared {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let replaced = match retire_old(&database) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &database)
        .map_err(|e| io_error("rename the restored file to", &database, e))?;
    sync_dir(&dir)?;
    Ok(Restore {
        bytes: file_len(&database)?,
        database,
        from: from.to_path_buf(),
        messages,
        duration_ms: millis(started.elapsed()),
        replaced,
        master_key_file: settings.master_key_path(),
    })
}

/// Fold the old database's WAL in, remove its `-wal`/`-shm`, and keep the file under
/// another name (a hard link; the rename of the new file then replaces the path).
fn retire_old(database: &Path) -> Result<Option<Replaced>> {
    if !database.is_file() {
        for side in side_files(database) {
            remove_if_exists(&side)?;
        }
        return Ok(None);
    }
    let messages = {
        let mut conn = open(database)?;
        #[derive(diesel::QueryableByName)]
        struct Checkpoint {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            busy: i32,
        }
        let rows: Vec<Checkpoint> = sql_query("PRAGMA wal_checkpoint(TRUNCATE)")
            .load(&mut conn)
            .map_err(|e| db_error("checkpoint", database, e))?;
        if rows.iter().any(|r| r.busy != 0) {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "{} is in use by another process (its WAL cannot be checkpointed); stop it and retry",
                    database.display()
                ),
            ));
        }
        count_messages(&mut conn).ok()
    };
    for side in side_files(database) {
        if side.to_string_lossy().ends_with("-wal") {
            // Checkpointed and truncated: a non-empty WAL now means another writer.
            if file_len(&side).unwrap_or(0) > 0 {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "{} still has frames after a checkpoint: another process writes to the database; stop it and retry",
                        side.display()
                    ),
                ));
            }
        }
        remove_if_exists(&side)?;
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // A name no earlier restore took (two restores within one second).
    let mut n = 0u32;
    let kept = loop {
        let mut name = database.as_os_str().to_owned();
        name.push(format!(".replaced-{stamp}"));
        if n > 0 {
            name.push(format!("-{n}"));
        }
        let kept = PathBuf::from(name);
        match std::fs::hard_link(database, &kept) {
            Ok(()) => break kept,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(io_error("keep the old database as", &kept, e)),
        }
    };
    Ok(Some(Replaced {
        bytes: file_len(&kept)?,
        messages,
        kept_as: kept,
    }))
}

/// The advisory lock `serve` and `worker` hold on `<database>.lock` for as long as they
/// run on SQLite (shared: any number of them), and `restore` takes exclusively.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
    path: PathBuf,
}

impl DataLock {
    /// Hold the shared lock of the embedded database for this process's lifetime
    /// (`None` on PostgreSQL). Fails (code `conflict`) while a restore holds it.
    pub fn hold_shared(settings: &Settings) -> Result<Option<DataLock>> {
        match settings.database_url()? {
            DatabaseUrl::Sqlite(path) => Self::take(&path, false).map(Some),
            DatabaseUrl::Postgres(_) => Ok(None),
        }
    }

    fn hold_exclusive(database: &Path) -> Result<DataLock> {
        Self::take(database, true)
    }

    fn take(database: &Path, exclusive: bool) -> Result<DataLock> {
        use rustix::fs::{FlockOperation, flock};
        let path = lock_path(database);
        if let Some(dir) = parent(&path) {
            crate::files::create_private_dir(&dir)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(&path)
            .map_err(|e| io_error("open the lock file", &path, e))?;
        let op = if exclusive {
            FlockOperation::NonBlockingLockExclusive
        } else {
            FlockOperation::NonBlockingLockShared
        };
        match flock(&file, op) {
            Ok(()) => Ok(DataLock { _file: file, path }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(if exclusive {
                Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "a chatorical serve or worker is running on {} (it holds {}); stop it first \
                         (systemctl stop chatorical chatorical-worker) — nothing was changed",
                        database.display(),
                        path.display()
                    ),
                )
            } else {
                Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "a restore of {} is running (it holds {}); start again when it has finished",
                        database.display(),
                        path.display()
                    ),
                )
            }),
            Err(e) => Err(io_error("lock", &path, e.into())),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<database>.lock`.
fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn side_files(database: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect()
}

fn open(path: &Path) -> Result<SqliteConnection> {
    let text = path
        .to_str()
        .ok_or_else(|| Error::validation("path", format!("{} is not UTF-8", path.display())))?;
    let mut conn = SqliteConnection::establish(text).map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("cannot open {}: {e}", path.display()),
        )
    })?;
    sql_query("PRAGMA busy_timeout = 10000")
        .execute(&mut conn)
        .map_err(|e| db_error("set busy_timeout on", path, e))?;
    Ok(conn)
}

/// `VACUUM INTO 'out'`: the whole database as of one read transaction.
fn vacuum_into(conn: &mut SqliteConnection, out: &Path) -> Result<()> {
    let text = out
        .to_str()
        .ok_or_else(|| Error::validation("out", format!("{} is not UTF-8", out.display())))?;
    let quoted = text.replace('\'', "''");
    sql_query(format!("VACUUM INTO '{quoted}'"))
        .execute(conn)
        .map_err(|e| db_error("copy the database into", out, e))?;
    Ok(())
}

fn check_integrity(conn: &mut SqliteConnection, path: &Path) -> Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        integrity_check: String,
    }
    let rows: Vec<Row> = sql_query("PRAGMA integrity_check")
        .load(conn)
        .map_err(|e| db_error("check", path, e))?;
    let lines: Vec<String> = rows.into_iter().map(|r| r.integrity_check).collect();
    if lines == ["ok"] {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::ValidationFailed,
            format!(
                "{} fails PRAGMA integrity_check: {}",
                path.display(),
                lines.into_iter().take(5).collect::<Vec<_>>().join("; ")
            ),
        ))
    }
}

fn count_messages(conn: &mut SqliteConnection) -> Result<i64> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let row: Row = sql_query("SELECT count(*) AS n FROM messages")
        .get_result(conn)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot count messages: {e}")))?;
    Ok(row.n)
}

/// Create `path` empty with mode 0600; refuse a file with contents (never overwrite).
fn create_empty_private(path: &Path) -> Result<()> {
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.len() > 0 || !meta.is_file() {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("{} already exists; choose another file", path.display()),
            ));
        }
        std::fs::remove_file(path).map_err(|e| io_error("replace", path, e))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .map(drop)
        .map_err(|e| io_error("create", path, e))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn parent(path: &Path) -> Option<PathBuf> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(PathBuf::from(".")),
        Some(p) => Some(p.to_path_buf()),
        None => None,
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path, e)),
    }
}

fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("fsync", path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("fsync", dir, e))
}

fn file_len(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| io_error("stat", path, e))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(
        ErrorCode::Internal,
        format!("cannot {what} {}: {e}", path.display()),
    )
}

fn db_error(what: &str, path: &Path, e: diesel::result::Error) -> Error {
    Error::new(
        ErrorCode::Internal,
        format!("cannot {what} {}: {e}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_lock_blocks_the_exclusive_one_and_not_another_shared() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = tmp.path().join("chatorical.db");
        let a = DataLock::take(&db, false).expect("shared");
        let _b = DataLock::take(&db, false).expect("a second shared lock");
        let e = DataLock::hold_exclusive(&db).expect_err("exclusive while shared is held");
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(e.message.contains("serve or worker"), "{}", e.message);
        drop(a);
        drop(_b);
        let x = DataLock::hold_exclusive(&db).expect("exclusive once released");
        let e = DataLock::take(&db, false).expect_err("shared while a restore holds it");
        assert!(e.message.contains("a restore"), "{}", e.message);
        assert_eq!(x.path(), lock_path(&db));
    }
}
