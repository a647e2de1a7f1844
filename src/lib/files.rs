//! Private files and directories: the data directory is created 0700, the SQLite
//! database (conversation texts) 0600 before SQLite opens it — its `-wal` and `-shm`
//! files then get the same mode — whatever the umask. An existing database file that
//! group or others may read is chmod-ed 0600 with a warning.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorCode, Result};

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(
        ErrorCode::InvalidConfig,
        format!("cannot {what} {}: {e}", path.display()),
    )
}

/// Create `dir` (and missing parents) with mode 0700 when it does not exist. An
/// existing directory keeps its mode (the files in it are private either way).
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| io_error("create", dir, e))?;
    // The umask may have taken bits away; set exactly 0700.
    set_mode(dir, 0o700)
}

/// Prepare the SQLite database at `path`: its directory private, the file created
/// 0600 when new, and an existing file (with its `-wal`, `-shm`, `-journal`) that
/// group or others can read chmod-ed 0600, with a warning.
pub(crate) fn prepare_sqlite_file(path: &Path) -> Result<()> {
    let name = path.to_string_lossy();
    if name == ":memory:" || name.starts_with("file:") {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    if !path.exists() {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(path) {
            Ok(_) => return set_mode(path, 0o600),
            // Another process created it meanwhile: check it like any existing file.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("create", path, e)),
        }
    }
    #[cfg(unix)]
    for file in sqlite_files(path) {
        if let Some(mode) = loose_mode(&file) {
            set_mode(&file, 0o600)?;
            tracing::warn!(
                path = %file.display(),
                was = format!("{mode:o}"),
                "the database file was readable by group or others; changed to 0600"
            );
        }
    }
    Ok(())
}

/// The database file and the files SQLite keeps beside it.
fn sqlite_files(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files
}

/// The permission bits of `path` when group or others have any (None otherwise, or
/// when it does not exist).
#[cfg(unix)]
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_error("chmod", path, e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn new_dir_and_database_are_private_and_loose_files_are_fixed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/data");
        let db = dir.join("chatorical.db");
        prepare_sqlite_file(&db).expect("prepared");
        assert_eq!((mode(&dir), mode(&db)), (0o700, 0o600));

        let wal = dir.join("chatorical.db-wal");
        std::fs::write(&wal, b"").expect("wal");
        for p in [&db, &wal] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        prepare_sqlite_file(&db).expect("prepared again");
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));
    }
}
