//! `serve` and `worker` through PgBouncer (Debian's 1.18) in transaction pooling mode,
//! started by the test in front of its own database with 3 server connections for every
//! client: concurrent widget sessions, conversations and messages, history read back,
//! and outbox deliveries to the fake Telegram, with the worker woken by NOTIFY on
//! `database.listen_url` or, without it, polling.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::Method;
use tempfile::TempDir;

use crate::fake_telegram::FakeTelegram;
use crate::support::{Backend, Install, Proc, eventually};

/// Server connections PgBouncer opens to the database, for all its clients together.
const POOL_SIZE: usize = 3;

/// The pgbouncer binary, if installed.
fn pgbouncer_bin() -> Option<PathBuf> {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A private pgbouncer on a free port (killed on drop).
struct Bouncer {
    _dir: TempDir,
    _proc: Proc,
    port: u16,
}

impl Bouncer {
    /// Start `bin` in front of the PostgreSQL server of `direct` (any database on it).
    async fn start(bin: &Path, direct: &str) -> Self {
        let (host, port) = host_port(direct);
        let listen = {
            let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("addr").port()
        };
        let dir = TempDir::new().expect("temp dir");
        let ini = dir.path().join("pgbouncer.ini");
        let userlist = dir.path().join("userlist.txt");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 * = host={host} port={port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {listen}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {}\n\
                 pool_mode = transaction\n\
                 default_pool_size = {POOL_SIZE}\n\
                 min_pool_size = 0\n\
                 reserve_pool_size = 0\n\
                 max_client_conn = 500\n\
                 log_connections = 0\n\
                 log_disconnections = 0\n",
                userlist.display()
            ),
        )
        .expect("write pgbouncer.ini");
        std::fs::write(&userlist, "\"postgres\" \"\"\n").expect("write userlist.txt");
        let mut cmd = Command::new(bin);
        // pgbouncer refuses to run as root: as the `postgres` user, who must read the files.
        if unsafe { libc::geteuid() } == 0 {
            use std::os::unix::fs::PermissionsExt;
            for p in [dir.path(), ini.as_path(), userlist.as_path()] {
                let mode = if p.is_dir() { 0o755 } else { 0o644 };
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
            }
            cmd.args(["-u", "postgres"]);
        }
        cmd.arg(&ini);
        let proc = Proc::spawn("pgbouncer", cmd);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", listen))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen within 10 s:\n{}",
                proc.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Bouncer {
            _dir: dir,
            _proc: proc,
            port: listen,
        }
    }

    /// `direct` with pgbouncer's address instead of the server's.
    fn url_for(&self, direct: &str) -> String {
        let (host, port) = host_port(direct);
        direct.replacen(
            &format!("@{host}:{port}/"),
            &format!("@127.0.0.1:{}/", self.port),
            1,
        )
    }
}

/// Host and port of `postgres://USER@HOST:PORT/DB`.
fn host_port(url: &str) -> (String, u16) {
    let after = url.split_once('@').expect("URL with USER@").1;
    let hostport = after.split('/').next().expect("HOST:PORT");
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    (host.to_string(), port.parse().expect("port"))
}

/// Backends connected to the database `name` (other than the asking one).
async fn backends(direct: &str, name: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(direct)
        .await
        .expect("direct connection");
    let rows: Vec<N> = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .load(&mut conn)
    .await
    .expect("pg_stat_activity");
    rows[0].n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_pgbouncer_with_listen_url() {
    tokio::time::timeout(Duration::from_secs(150), body(true))
        .await
        .expect("finished within 150 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_pgbouncer_polling() {
    tokio::time::timeout(Duration::from_secs(150), body(false))
        .await
        .expect("finished within 150 s");
}

/// Visitors started at once, and messages each posts at once.
const VISITORS: usize = 10;
const PER_VISITOR: usize = 4;

async fn body(listen: bool) {
    let Some(bin) = pgbouncer_bin() else {
        eprintln!(
            "SKIPPED: pgbouncer is not installed (apt-get install pgbouncer; scripts/test does)"
        );
        return;
    };
    let started = Instant::now();
    let fake = FakeTelegram::start_local().await;
    let group = if listen { -100_881 } else { -100_882 };
    let install = Install::new(Backend::Postgres, &fake.api_url()).await;
    let chatorical::config::DatabaseUrl::Postgres(direct) = install.database() else {
        panic!("a PostgreSQL installation");
    };
    let db_name = direct
        .rsplit('/')
        .next()
        .expect("database name")
        .to_string();
    let bouncer = Bouncer::start(&bin, &direct).await;
    let pooled = bouncer.url_for(&direct);
    let mut install = install
        .with_database_url(&pooled)
        .with_env("CHATORICAL_DATABASE__TRANSACTION_POOLING", "true");
    // With a direct URL the worker is woken by NOTIFY and otherwise would not look for
    // a minute; without one it polls twice a second.
    install = if listen {
        install
            .with_env("CHATORICAL_DATABASE__LISTEN_URL", &direct)
            .with_env("CHATORICAL_WORKER__POLL_INTERVAL_MS", "60000")
    } else {
        install.with_env("CHATORICAL_WORKER__POLL_INTERVAL_MS", "500")
    };

    // `serve` migrates (through pgbouncer without listen_url) and serves; the worker
    // is a process of its own, so only NOTIFY or its poll tells it about new items.
    let server = install
        .serve(&[("CHATORICAL_WORKER__EMBEDDED", "false")])
        .await;
    let api = &server.api;
    let platform = install.platform_key().await;
    let tenant = api.tenant(&platform, "bouncer").await;
    api.connect_telegram(&fake, &tenant, 881, group).await;
    let mut worker = install.worker("worker");
    let line = worker
        .wait_for_line(Duration::from_secs(20), |l| {
            l.contains("outbox worker started")
        })
        .await;
    let expected = if listen { "\"notify\"" } else { "\"poll\"" };
    assert!(
        line.contains(expected),
        "the worker's wake-ups are {expected}: {line}"
    );

    // Sessions, conversations and messages, all at once.
    let visitors =
        futures_util::future::join_all((0..VISITORS).map(|_| api.visitor(&tenant))).await;
    let text = |v: usize, m: usize| format!("v{v} m{m} through the pooler");
    let posts = visitors.iter().enumerate().flat_map(|(i, v)| {
        (0..PER_VISITOR).map(move |m| {
            let t = text(i, m);
            async move { api.send(v, &format!("c{i}-{m}"), &t).await }
        })
    });
    let posted = futures_util::future::join_all(posts).await;
    assert_eq!(posted.len(), VISITORS * PER_VISITOR);

    // Each history holds exactly its own messages, seq 1..=PER_VISITOR: read 3 times
    // over, every visitor's at once.
    let reads = (0..3)
        .flat_map(|_| visitors.iter().enumerate())
        .map(|(i, v)| async move {
            let (status, history) = api
                .json(
                    Method::GET,
                    &format!("/v1/conversations/{}/messages?since=0", v.conversation_id),
                    Some(&v.token),
                    None,
                )
                .await;
            (i, status, history)
        });
    for (i, status, history) in futures_util::future::join_all(reads).await {
        assert!(status.is_success(), "history: {status} {history}");
        let items = history["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("messages in {history}"));
        let seqs: Vec<i64> = items.iter().filter_map(|m| m["seq"].as_i64()).collect();
        assert_eq!(
            seqs,
            (1..=PER_VISITOR as i64).collect::<Vec<_>>(),
            "{history}"
        );
        let mut texts: Vec<String> = items
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_string))
            .collect();
        texts.sort();
        let mut want: Vec<String> = (0..PER_VISITOR).map(|m| text(i, m)).collect();
        want.sort();
        assert_eq!(texts, want, "visitor {i}'s history");
    }

    // Every message reaches Telegram (one topic per conversation).
    let all: Vec<String> = (0..VISITORS)
        .flat_map(|i| (0..PER_VISITOR).map(move |m| text(i, m)))
        .collect();
    let delivered = |wanted: &[String]| {
        let sent: Vec<String> = fake
            .sent_messages(group)
            .into_iter()
            .map(|m| m.text)
            .collect();
        wanted.iter().all(|t| sent.contains(t))
    };
    eventually(
        Duration::from_secs(30),
        "every message reaches Telegram",
        || delivered(&all),
    )
    .await;
    api.outbox_drained(&tenant, Duration::from_secs(10)).await;
    let topics: std::collections::HashSet<Option<i32>> = fake
        .sent_messages(group)
        .into_iter()
        .filter(|m| all.contains(&m.text))
        .map(|m| m.thread_id)
        .collect();
    assert_eq!(topics.len(), VISITORS, "one topic per conversation");

    // An idle worker hears of a new message: by NOTIFY (its poll is a minute away) or
    // by its poll.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let late = "a message to an idle worker".to_string();
    let t = Instant::now();
    api.send(&visitors[0], "late", &late).await;
    eventually(
        Duration::from_secs(10),
        "the late message reaches Telegram",
        || delivered(std::slice::from_ref(&late)),
    )
    .await;
    let wake_after = t.elapsed();

    // All of that on at most POOL_SIZE server connections (+ the LISTEN session).
    let connected = backends(&direct, &db_name).await;
    let most = POOL_SIZE as i64 + i64::from(listen);
    assert!(
        connected <= most,
        "{connected} backends on the database, at most {most} expected"
    );

    for (label, log) in [("serve", server.proc.stderr()), ("worker", worker.stderr())] {
        assert!(
            !log.contains("prepared statement"),
            "{label} logged a prepared statement error:\n{log}"
        );
        assert!(
            !log.contains(&direct) && !log.contains(&pooled),
            "{label} logged a database URL"
        );
    }
    worker.terminate();
    let _ = worker.wait_exit(Duration::from_secs(15)).await;
    drop(bouncer);
    eprintln!(
        "pgbouncer ({}): {} sessions and conversations, {} concurrent messages, history \
         and delivery checked; late message delivered after {wake_after:?}; {connected} \
         backend(s); total {:?}",
        if listen { "listen_url" } else { "polling" },
        VISITORS,
        VISITORS * PER_VISITOR,
        started.elapsed()
    );
}
