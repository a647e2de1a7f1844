//! Shared by the benchmark binaries (`benches/load.rs`, `benches/outbox.rs`):
//! starting the release binary as real server processes configured only by
//! environment variables, seeding through the CLI and the HTTP API, fresh
//! PostgreSQL databases, fd limits, process CPU/RSS readings, histograms and
//! the markdown table; [`ceiling`] measures this box's PostgreSQL ceiling.
//!
//! Included with `mod common;` from each bench; not every bench uses every item.
#![allow(dead_code)]

pub(crate) mod ceiling;

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use hdrhistogram::Histogram;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

/// The release binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_chatorical");

/// The binary the bench runs: `BENCH_BIN` when set (to compare two builds with the same
/// bench, e.g. `BENCH_BIN=/tmp/before/target/release/chatorical`), else [`BIN`].
pub(crate) fn bin() -> String {
    std::env::var("BENCH_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| BIN.to_string())
}

/// Origin every bench tenant allows (sockets send it).
pub(crate) const ORIGIN: &str = "http://bench.local";

/// ws tokens are verified on every node of a deployment with this secret.
pub(crate) const TOKEN_SECRET: &str = "bench-token-secret-0123456789abcdefghijklmnop";

// ---------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------

/// Which database a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// `sqlite,postgres` → backends.
    pub(crate) fn parse_list(s: &str) -> Result<Vec<Backend>> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| match p.trim().to_ascii_lowercase().as_str() {
                "sqlite" => Ok(Backend::Sqlite),
                "postgres" | "postgresql" | "pg" => Ok(Backend::Postgres),
                other => Err(anyhow!("unknown backend {other:?} (sqlite, postgres)")),
            })
            .collect()
    }
}

/// `TEST_PG_URL`, or the local default.
pub(crate) fn pg_admin_url() -> String {
    std::env::var("TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database `chatorical_bench_<uuid>`; [`PgDatabase::drop_now`] removes it.
pub(crate) struct PgDatabase {
    pub name: String,
    pub url: String,
    admin: String,
}

impl PgDatabase {
    pub(crate) async fn create(admin: &str) -> Result<Self> {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let name = format!("chatorical_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = AsyncPgConnection::establish(admin)
            .await
            .with_context(|| format!("PostgreSQL at {admin} (set TEST_PG_URL)"))?;
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .context("create database")?;
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .ok_or_else(|| anyhow!("TEST_PG_URL has no database part"))?;
        Ok(PgDatabase {
            url: format!("{base}/{name}"),
            name,
            admin: admin.to_string(),
        })
    }

    /// Drop the database (servers using it should be stopped first; FORCE ends the rest).
    pub(crate) async fn drop_now(self) {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        if let Ok(mut conn) = AsyncPgConnection::establish(&self.admin).await {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Delete every Redis key under `prefix` (best effort).
pub(crate) async fn redis_cleanup(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}

/// Whether Redis answers PING.
pub(crate) async fn redis_up(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(Ok(mut conn)) = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok()
}

// ---------------------------------------------------------------------------
// Deployment configuration (environment only)
// ---------------------------------------------------------------------------

/// The environment of every process of one deployment (servers, workers, CLI).
#[derive(Clone, Debug)]
pub(crate) struct Deployment {
    /// Shared directory: SQLite file and master key live here.
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Deployment {
    /// A deployment on `dir`, with the database URL when PostgreSQL, no limits in the way
    /// and warnings-only logs. `extra` adds or overrides keys.
    pub(crate) fn new(dir: &Path, database_url: Option<&str>, extra: &[(&str, String)]) -> Self {
        let mut env: Vec<(String, String)> = vec![
            ("CHATORICAL_LOG__FILTER".into(), "warn".into()),
            ("CHATORICAL_DEMO__ENABLED".into(), "false".into()),
            (
                "CHATORICAL_SERVER__DATA_DIR".into(),
                dir.display().to_string(),
            ),
            (
                "CHATORICAL_SERVER__TOKEN_SECRET".into(),
                TOKEN_SECRET.into(),
            ),
            ("CHATORICAL_SERVER__SHUTDOWN_GRACE_SECS".into(), "2".into()),
            (
                "CHATORICAL_SECRETS__MASTER_KEY_FILE".into(),
                dir.join("master.key").display().to_string(),
            ),
            ("CHATORICAL_WS__TOKEN_TTL_SECS".into(), "7200".into()),
            (
                "CHATORICAL_LIMITS__SESSIONS_PER_IP_PER_MIN".into(),
                "100000000".into(),
            ),
            (
                "CHATORICAL_LIMITS__SESSIONS_PER_TENANT_PER_MIN".into(),
                "100000000".into(),
            ),
            (
                "CHATORICAL_LIMITS__MESSAGES_PER_VISITOR_PER_MIN".into(),
                "100000000".into(),
            ),
            // The idle phase holds up to 100k sockets on a few visitors' tokens from a
            // few loopback addresses: no socket caps.
            (
                "CHATORICAL_WS__MAX_SOCKETS_PER_VISITOR".into(),
                "100000000".into(),
            ),
            ("CHATORICAL_WS__MAX_SOCKETS_PER_IP".into(), "0".into()),
            // The load client stands for many visitors on a few loopback addresses, and
            // may hold more than the default 100k sockets: no connection caps but the
            // open-files limit (the server still lowers the cap to fit it).
            (
                "CHATORICAL_SERVER__MAX_CONNECTIONS_PER_IP".into(),
                "100000000".into(),
            ),
            (
                "CHATORICAL_SERVER__MAX_CONNECTIONS".into(),
                "100000000".into(),
            ),
        ];
        if let Some(url) = database_url {
            env.push(("CHATORICAL_DATABASE__URL".into(), url.into()));
            env.push(("CHATORICAL_DATABASE__AUTO_MIGRATE".into(), "true".into()));
        }
        let mut d = Deployment {
            dir: dir.to_path_buf(),
            env,
        };
        for (k, v) in extra {
            d.set(k, v.clone());
        }
        d
    }

    /// Set (or replace) one variable.
    pub(crate) fn set(&mut self, key: &str, value: String) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value));
    }

    /// A command for the binary with exactly this environment (inherited
    /// `CHATORICAL_*` variables removed), run in the deployment directory.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(&self.dir);
        for (k, _) in std::env::vars() {
            if k.starts_with("CHATORICAL_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `chatorical keys issue --platform …` through the CLI; returns the key.
    pub(crate) async fn platform_key(&self) -> Result<String> {
        let mut cmd = self.command(
            &bin(),
            &[
                "keys",
                "issue",
                "--platform",
                "--scope",
                "tenants:write",
                "--scope",
                "keys:write",
                // A key grants only what it holds: the tenant keys issued with it.
                "--scope",
                "conversations:write",
                "--scope",
                "telegram:write",
                "--scope",
                "outbox:write",
                "--scope",
                "settings:write",
                "--scope",
                "templates:write",
                "--scope",
                "usage:write",
                "--scope",
                "plans:write",
                "--name",
                "bench",
                "--json",
            ],
        );
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await?
            .context("run chatorical keys issue")?;
        if !out.status.success() {
            bail!(
                "chatorical keys issue failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: Value = serde_json::from_slice(&out.stdout).context("keys issue --json output")?;
        v["key"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no key in {v}"))
    }

    /// `chatorical serve --listen 127.0.0.1:0`, started through
    /// `sh -c 'ulimit -n …; exec …'` so it may hold many sockets.
    pub(crate) async fn serve(&self, label: &str) -> Result<Proc> {
        self.spawn(label, &["serve", "--listen", "127.0.0.1:0"], true)
            .await
    }

    /// `chatorical worker`; returns once it says it is running.
    pub(crate) async fn worker(&self, label: &str) -> Result<Proc> {
        self.spawn(label, &["worker"], false).await
    }

    async fn spawn(&self, label: &str, args: &[&str], server: bool) -> Result<Proc> {
        // Raise the fd limit as far as allowed: 1048576, else the hard limit.
        // BENCH_WRAP (e.g. "heaptrack -o /tmp/ht" or "perf record -g -o /tmp/p.data")
        // runs the process under a profiler; RSS readings are then the wrapper's.
        let wrap = std::env::var("BENCH_WRAP").unwrap_or_default();
        let script = format!(
            "ulimit -n 1048576 2>/dev/null || ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec {wrap} \"$0\" \"$@\""
        );
        let bin = bin();
        let mut all = vec!["-c", script.as_str(), bin.as_str()];
        all.extend_from_slice(args);
        let mut cmd = self.command("sh", &all);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Its own process group, so a wrapper and the binary stop together.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().with_context(|| format!("spawn {label}"))?;
        let pid = child.id();
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let log = Arc::new(Mutex::new(VecDeque::<String>::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<Option<u16>>();
        let log2 = log.clone();
        // Drain stderr for the whole life of the process (a full pipe would block it).
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.is_some() {
                    let ready = if server {
                        line.contains("chatorical is running")
                            .then(|| parse_port(&line))
                    } else {
                        line.contains("worker running").then_some(Some(0))
                    };
                    if let Some(port) = ready
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(port);
                    }
                }
                let mut l = log2.lock().unwrap_or_else(|p| p.into_inner());
                if l.len() >= 200 {
                    l.pop_front();
                }
                l.push_back(line);
            }
        });
        let mut proc = Proc {
            label: label.to_string(),
            child,
            pid,
            port: 0,
            log,
        };
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(Some(port))) => {
                proc.port = port;
                Ok(proc)
            }
            Ok(Ok(None)) => {
                let tail = proc.log_tail();
                proc.stop().await;
                bail!("{label}: could not parse the port from its banner:\n{tail}")
            }
            _ => {
                let tail = proc.log_tail();
                proc.stop().await;
                bail!("{label} did not start:\n{tail}")
            }
        }
    }
}

/// `… http://127.0.0.1:PORT …` → PORT.
fn parse_port(line: &str) -> Option<u16> {
    let at = line.find("http://")? + "http://".len();
    let rest = &line[at..];
    let colon = rest.find(':')?;
    let digits: String = rest[colon + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A running server or worker process.
pub(crate) struct Proc {
    pub label: String,
    child: Child,
    pub pid: u32,
    pub port: u16,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Proc {
    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn log_tail(&self) -> String {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// Resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }

    /// The process's soft open-files limit.
    pub(crate) fn nofile(&self) -> Option<u64> {
        nofile_limit(&format!("/proc/{}/limits", self.pid))
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub(crate) async fn stop(&mut self) {
        // SAFETY: kill(2) on the process group our own child leads.
        unsafe {
            libc::kill(-(self.pid as libc::pid_t), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Still running?
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on the process group our own child leads.
            unsafe {
                libc::kill(-(self.pid as libc::pid_t), libc::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// /proc readings
// ---------------------------------------------------------------------------

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Soft "Max open files" from a /proc/*/limits file.
pub(crate) fn nofile_limit(path: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

/// Raise this process's soft fd limit to its hard limit; returns the soft limit now.
pub(crate) fn raise_own_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/setrlimit on our own process with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &want);
        }
    }
    nofile_limit("/proc/self/limits").unwrap_or(1024)
}

/// CPU time (user + system) of a process in ms, from /proc/PID/stat.
pub(crate) fn cpu_ms(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((utime + stime) * 1000 / tck)
}

/// Sum of CPU ms of every process whose `comm` is `name` (e.g. all PostgreSQL backends).
pub(crate) fn cpu_ms_by_name(name: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == name {
            total += cpu_ms(pid).unwrap_or(0);
        }
    }
    total
}

/// Busy jiffies of the whole machine (all CPUs: everything but idle and iowait).
fn machine_busy_ms() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    total.saturating_sub(idle) * 1000 / tck
}

/// Fraction of the machine's CPU time that was busy over `sample`.
pub(crate) async fn machine_busy(sample: Duration) -> f64 {
    let before = machine_busy_ms();
    let t = Instant::now();
    tokio::time::sleep(sample).await;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (machine_busy_ms().saturating_sub(before)) as f64
        / 1000.0
        / t.elapsed().as_secs_f64().max(0.001)
        / cpus
}

/// Before a measured run: report how busy the machine is with other work, and with
/// `max_wait_secs > 0` wait (up to that long) until it is below `below` for a second.
/// Returns a note for the results when it was busy.
pub(crate) async fn quiet_gate(max_wait_secs: u64, below: f64) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(max_wait_secs);
    loop {
        let busy = machine_busy(Duration::from_secs(1)).await;
        if busy <= below {
            return None;
        }
        if Instant::now() >= deadline {
            let msg = format!(
                "machine {:.0}% busy with other work before this run (load average {})",
                busy * 100.0,
                loadavg()
            );
            eprintln!("bench: warning: {msg}");
            return Some(msg);
        }
    }
}

/// The 1-minute load average.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// CPU used by the parts of the system during a run, in cores (CPU-seconds per second).
pub(crate) struct CpuWatch {
    machine: u64,
    start: Instant,
    pids: Vec<(String, u32, u64)>,
    pg: u64,
    redis: u64,
    me: u64,
}

impl CpuWatch {
    pub(crate) fn start(procs: &[&Proc]) -> Self {
        CpuWatch {
            machine: machine_busy_ms(),
            start: Instant::now(),
            pids: procs
                .iter()
                .map(|p| (p.label.clone(), p.pid, cpu_ms(p.pid).unwrap_or(0)))
                .collect(),
            pg: cpu_ms_by_name("postgres"),
            redis: cpu_ms_by_name("redis-server"),
            me: cpu_ms(std::process::id()).unwrap_or(0),
        }
    }

    /// CPU ms the watched processes used since [`CpuWatch::start`], together.
    pub(crate) fn procs_ms(&self) -> u64 {
        self.pids
            .iter()
            .map(|(_, pid, before)| cpu_ms(*pid).unwrap_or(*before).saturating_sub(*before))
            .sum()
    }

    /// CPU ms of every `postgres` process since [`CpuWatch::start`] (other users'
    /// databases on the same server included).
    pub(crate) fn postgres_ms(&self) -> u64 {
        cpu_ms_by_name("postgres").saturating_sub(self.pg)
    }

    /// e.g. `server 1.31, postgres 0.42, bench client 0.20 cores`.
    pub(crate) fn report(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let cores = |ms: u64| ms as f64 / 1000.0 / secs;
        let mut parts: Vec<String> = self
            .pids
            .iter()
            .map(|(l, pid, before)| {
                format!(
                    "{l} {:.2}",
                    cores(cpu_ms(*pid).unwrap_or(*before).saturating_sub(*before))
                )
            })
            .collect();
        let pg = cpu_ms_by_name("postgres").saturating_sub(self.pg);
        if pg > 0 {
            parts.push(format!("postgres {:.2}", cores(pg)));
        }
        let redis = cpu_ms_by_name("redis-server").saturating_sub(self.redis);
        if redis > 0 {
            parts.push(format!("redis {:.2}", cores(redis)));
        }
        let me = cpu_ms(std::process::id())
            .unwrap_or(self.me)
            .saturating_sub(self.me);
        parts.push(format!("bench client {:.2}", cores(me)));
        let machine = machine_busy_ms().saturating_sub(self.machine);
        format!(
            "CPU cores used: {} (whole machine {:.2} of {})",
            parts.join(", "),
            cores(machine),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        )
    }
}

// ---------------------------------------------------------------------------
// HTTP API
// ---------------------------------------------------------------------------

/// A reqwest client for the API.
pub(crate) fn http_client() -> Client {
    Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// POST/PUT JSON, return (status, body).
pub(crate) async fn call(
    http: &Client,
    method: reqwest::Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let mut req = http.request(method, url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok((status, v))
}

/// A tenant and a key for it.
#[derive(Clone, Debug)]
pub(crate) struct Tenant {
    pub slug: String,
    pub widget_key: String,
    pub key: String,
}

/// A visitor with an open conversation.
#[derive(Clone, Debug)]
pub(crate) struct Visitor {
    pub tenant: usize,
    pub token: String,
    pub ws_token: String,
    pub conversation_id: String,
}

/// Every limit of the plan the benchmarks' tenants are on (the largest a plan takes).
const BENCH_LIMIT: u32 = 2_000_000_000;

/// Create a tenant (allowed origin [`ORIGIN`]) on the `bench` plan and a key with `scopes`.
pub(crate) async fn create_tenant(
    http: &Client,
    base: &str,
    platform: &str,
    slug: &str,
    scopes: &[&str],
) -> Result<Tenant> {
    let (st, t) = call(
        http,
        reqwest::Method::POST,
        &format!("{base}/v1/admin/tenants"),
        Some(platform),
        Some(json!({"slug": slug, "name": slug, "allowed_origins": [ORIGIN]})),
    )
    .await?;
    if st != StatusCode::CREATED {
        bail!("create tenant {slug}: {st} {t}");
    }
    let (st, k) = call(
        http,
        reqwest::Method::POST,
        &format!("{base}/v1/admin/keys"),
        Some(platform),
        Some(json!({"tenant": slug, "scopes": scopes, "name": "bench"})),
    )
    .await?;
    if st != StatusCode::CREATED {
        bail!("create key for {slug}: {st} {k}");
    }
    // On a plan whose limits are checked on every write but never reached: the
    // measurements include the quota checks without being cut short by them.
    let (st, p) = call(
        http,
        reqwest::Method::PUT,
        &format!("{base}/v1/admin/plans/bench"),
        Some(platform),
        Some(json!({"name": "Bench", "limits": {
            "conversation_starts_per_day": BENCH_LIMIT,
            "messages_per_day": BENCH_LIMIT,
            "topic_renames_per_day": BENCH_LIMIT,
            "active_conversations": BENCH_LIMIT,
        }})),
    )
    .await?;
    if !st.is_success() {
        bail!("create the bench plan: {st} {p}");
    }
    let (st, p) = call(
        http,
        reqwest::Method::PUT,
        &format!("{base}/v1/admin/tenants/{slug}/plan"),
        Some(platform),
        Some(json!({"plan": "bench"})),
    )
    .await?;
    if !st.is_success() {
        bail!("put {slug} on the bench plan: {st} {p}");
    }
    Ok(Tenant {
        slug: slug.to_string(),
        widget_key: t["widget_key"]
            .as_str()
            .ok_or_else(|| anyhow!("no widget_key"))?
            .into(),
        key: k["key"].as_str().ok_or_else(|| anyhow!("no key"))?.into(),
    })
}

/// A widget session and an open conversation for tenant `ti`.
pub(crate) async fn create_visitor(
    http: &Client,
    base: &str,
    tenant: &Tenant,
    ti: usize,
) -> Result<Visitor> {
    let (st, s) = call(
        http,
        reqwest::Method::POST,
        &format!("{base}/v1/widget/session"),
        None,
        Some(json!({"widget_key": tenant.widget_key})),
    )
    .await?;
    if st != StatusCode::OK {
        bail!("widget session: {st} {s}");
    }
    let token = s["visitor_token"]
        .as_str()
        .ok_or_else(|| anyhow!("no visitor_token"))?
        .to_string();
    let (st, c) = call(
        http,
        reqwest::Method::POST,
        &format!("{base}/v1/conversations"),
        Some(&token),
        None,
    )
    .await?;
    if st != StatusCode::CREATED && st != StatusCode::OK {
        bail!("open conversation: {st} {c}");
    }
    Ok(Visitor {
        tenant: ti,
        token,
        ws_token: c["ws_token"]
            .as_str()
            .ok_or_else(|| anyhow!("no ws_token"))?
            .into(),
        conversation_id: c["id"].as_str().ok_or_else(|| anyhow!("no id"))?.into(),
    })
}

/// `n` visitors spread round-robin over `tenants`, made `parallel` at a time.
pub(crate) async fn create_visitors(
    http: &Client,
    base: &str,
    tenants: &[Tenant],
    n: usize,
    parallel: usize,
) -> Result<Vec<Visitor>> {
    use futures_util::StreamExt;
    let results: Vec<Result<Visitor>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let ti = i % tenants.len();
            let t = &tenants[ti];
            async move { create_visitor(http, base, t, ti).await }
        })
        .buffered(parallel.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// POST a visitor message; returns the status.
pub(crate) async fn post_message(
    http: &Client,
    base: &str,
    v: &Visitor,
    client_msg_id: &str,
    text: &str,
) -> Result<StatusCode> {
    let resp = http
        .post(format!(
            "{base}/v1/conversations/{}/messages",
            v.conversation_id
        ))
        .bearer_auth(&v.token)
        .json(&json!({"client_msg_id": client_msg_id, "text": text}))
        .send()
        .await?;
    let st = resp.status();
    // Read the body so the connection goes back to the pool.
    let _ = resp.bytes().await?;
    Ok(st)
}

// ---------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------

/// A latency histogram in microseconds (1 µs .. 100 s, 3 significant digits).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("histogram bounds")
}

/// Record a duration (clamped into range).
pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, 100_000_000);
    let _ = h.record(us);
}

/// Milliseconds with two decimals from microseconds.
pub(crate) fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// `p50 a / p90 b / p99 c / max d (n)`.
pub(crate) fn summary(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    format!(
        "p50 {} / p90 {} / p99 {} / max {} (n={})",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        h.len()
    )
}

/// One row of the results table.
pub(crate) struct Row {
    pub metric: String,
    pub target: String,
    pub measured: String,
    pub baseline: String,
    pub note: String,
}

impl Row {
    pub(crate) fn new(
        metric: impl Into<String>,
        target: impl Into<String>,
        measured: impl Into<String>,
        baseline: impl Into<String>,
        note: impl Into<String>,
    ) -> Self {
        Row {
            metric: metric.into(),
            target: target.into(),
            measured: measured.into(),
            baseline: baseline.into(),
            note: note.into(),
        }
    }
}

/// Print the rows as a markdown table.
pub(crate) fn print_table(title: &str, rows: &[Row]) {
    println!("\n### {title}\n");
    println!("| metric | target | measured | baseline / ratio | note |");
    println!("|---|---|---|---|---|");
    for r in rows {
        let esc = |s: &str| s.replace('|', "\\|");
        println!(
            "| {} | {} | {} | {} | {} |",
            esc(&r.metric),
            esc(&r.target),
            esc(&r.measured),
            esc(&r.baseline),
            esc(&r.note)
        );
    }
}

/// `ok` / `MISSED` against a bound (`le`: measured must be ≤ bound).
pub(crate) fn verdict(measured: f64, bound: f64, le: bool) -> &'static str {
    if (le && measured <= bound) || (!le && measured >= bound) {
        "met"
    } else {
        "MISSED"
    }
}

/// One line about the machine (cores, memory, CPU model, kernel).
pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or("?".into(), |k| format!("{:.1} GiB", k as f64 / 1048576.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    format!("{cpus} CPUs ({model}), {mem} RAM, Linux {kernel}")
}

/// Latency of `n` sequential `GET /healthz` through `http` (after a warm-up).
pub(crate) async fn healthz_rtt(http: &Client, base: &str, n: usize) -> Result<Histogram<u64>> {
    let url = format!("{base}/healthz");
    for _ in 0..50 {
        http.get(&url).send().await?.bytes().await?;
    }
    let mut h = histogram();
    for _ in 0..n {
        let t = Instant::now();
        let r = http.get(&url).send().await?;
        r.bytes().await?;
        record(&mut h, t.elapsed());
    }
    Ok(h)
}
