//! Running the binary against a throwaway SQLite data dir or PostgreSQL database.

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

use crate::pg::PgDatabase;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The embedded default: `<data_dir>/chatorical.db`.
    Sqlite,
    /// A fresh database on the server at `TEST_PG_URL`.
    Postgres,
}

/// Run the same test body (`fn name(backend: Backend)`) on SQLite and on PostgreSQL, as
/// the tests `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::support::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$name($crate::support::Backend::Postgres)
            }
        }
    )*};
}

/// Run one SQL statement with `psql` on `url`; returns stdout (unaligned, tuples only).
pub(crate) fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .expect("psql runs (is the PostgreSQL client installed?)");
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("psql output is UTF-8")
}

/// What a finished command left behind.
#[derive(Debug)]
pub(crate) struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }
}

/// One isolated installation: a temp dir (data dir and working dir) and, on
/// PostgreSQL, a database of its own.
pub(crate) struct Cli {
    /// The backend this installation runs on.
    pub backend: Backend,
    dir: TempDir,
    pg: Option<PgDatabase>,
}

impl Cli {
    /// A ready installation: on PostgreSQL `chatorical migrate` has run (SQLite migrates
    /// by itself on every command).
    pub(crate) fn new(backend: Backend) -> Self {
        let cli = Cli::unmigrated(backend);
        if backend == Backend::Postgres {
            cli.ok(&["migrate"]);
        }
        cli
    }

    /// A fresh installation nothing has run against yet.
    pub(crate) fn unmigrated(backend: Backend) -> Self {
        Cli {
            backend,
            dir: TempDir::new().expect("create a temp dir"),
            pg: (backend == Backend::Postgres).then(|| PgDatabase::create("chatorical_cli")),
        }
    }

    /// The data directory (`--data-dir`).
    pub(crate) fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database URL the commands use (for tests that look inside through the library).
    pub(crate) fn database_url(&self) -> String {
        match &self.pg {
            Some(db) => db.url.clone(),
            None => format!(
                "sqlite://{}",
                self.data_dir().join("chatorical.db").display()
            ),
        }
    }

    /// `chatorical` with an empty environment, run from the data dir, with only
    /// `--data-dir` (and `--database-url` on PostgreSQL) given.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::cargo_bin("chatorical").expect("the chatorical binary is built");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path())
            .arg("--data-dir")
            .arg(self.dir.path());
        if let Some(db) = &self.pg {
            cmd.args(["--database-url", &db.url]);
        }
        cmd
    }

    /// The same invocation as [`Cli::command`] as a `std::process::Command`, for tests
    /// that watch or kill the process while it runs.
    pub(crate) fn process(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("chatorical"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path())
            .arg("--data-dir")
            .arg(self.dir.path());
        if let Some(db) = &self.pg {
            cmd.args(["--database-url", &db.url]);
        }
        cmd
    }

    /// Run with `args` and the given extra environment.
    pub(crate) fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command();
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run chatorical").into()
    }

    /// Run with `args`.
    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// Run with `args`, insist on success, return stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(0),
            "`chatorical {}` failed on {:?}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            self.backend,
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    /// Run with `args --json`, insist on success, parse stdout.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        let stdout = self.ok(&args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "`chatorical {}` printed no JSON ({e}):\n{stdout}",
                args.join(" ")
            )
        })
    }

    /// Run with `args` and `env`, insist on a runtime error: exit code 1, nothing on
    /// stdout, an `error: ` line on stderr. Returns stderr.
    pub(crate) fn fails_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let run = self.run_env(args, env);
        assert_eq!(
            run.code,
            Some(1),
            "`chatorical {}` should fail with exit code 1 on {:?}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            self.backend,
            run.stdout,
            run.stderr
        );
        assert_eq!(run.stdout, "", "an error prints nothing on stdout");
        assert!(
            run.stderr.starts_with("error: "),
            "stderr should start with `error: `: {}",
            run.stderr
        );
        run.stderr
    }

    /// Run with `args`, insist on a runtime error (see [`Cli::fails_env`]).
    pub(crate) fn fails(&self, args: &[&str]) -> String {
        self.fails_env(args, &[])
    }

    /// Run with `args`, insist on a usage error (exit code 2, as clap reports it).
    pub(crate) fn usage_error(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(2),
            "`chatorical {}` should be a usage error\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        assert_eq!(run.stdout, "", "a usage error prints nothing on stdout");
        run.stderr
    }

    /// Everything the database holds on disk (SQLite: the database file and its WAL,
    /// SHM and journal files) or in `api_keys` (PostgreSQL), as text.
    pub(crate) fn stored_data(&self) -> String {
        match &self.pg {
            Some(db) => psql(&db.url, "SELECT * FROM api_keys"),
            None => {
                let db = self.data_dir().join("chatorical.db");
                assert!(db.exists(), "{} exists", db.display());
                let mut bytes = Vec::new();
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut path = db.clone().into_os_string();
                    path.push(suffix);
                    if let Ok(b) = std::fs::read(PathBuf::from(path)) {
                        bytes.extend(b);
                    }
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }
}

/// A string field of a JSON object.
pub(crate) fn str_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is a string in {v:#}"))
}

/// The elements of a JSON array.
pub(crate) fn array(v: &Value) -> &[Value] {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v:#}"))
}

/// An RFC 3339 timestamp field as a system time.
pub(crate) fn time_field(v: &Value, field: &str) -> std::time::SystemTime {
    let s = str_field(v, field);
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("`{field}` = {s:?} is not RFC 3339: {e}"))
}
