//! `chatorical backup` while `serve` takes messages from 20 concurrent writers, and
//! `chatorical restore`, refused while `serve` (or a `worker`) holds the data.

use std::{
    collections::HashSet,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use diesel::{Connection, RunQueryDsl, SqliteConnection, sql_query};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fake_telegram::FakeTelegram;
use crate::support::{Backend, Install};

const WRITERS: usize = 20;

#[derive(diesel::QueryableByName)]
struct Check {
    #[diesel(sql_type = diesel::sql_types::Text)]
    integrity_check: String,
}

#[derive(diesel::QueryableByName)]
struct ClientId {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    client_msg_id: Option<String>,
}

/// `PRAGMA integrity_check` of the SQLite file at `path` and the `client_msg_id`s of its
/// messages.
fn inspect(path: &Path) -> (String, HashSet<String>) {
    let mut conn = SqliteConnection::establish(path.to_str().expect("UTF-8 path"))
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let check: Vec<Check> = sql_query("PRAGMA integrity_check")
        .load(&mut conn)
        .expect("integrity_check");
    let ids: Vec<ClientId> = sql_query("SELECT client_msg_id FROM messages")
        .load(&mut conn)
        .expect("messages");
    (
        check
            .into_iter()
            .map(|c| c.integrity_check)
            .collect::<Vec<_>>()
            .join("; "),
        ids.into_iter().filter_map(|r| r.client_msg_id).collect(),
    )
}

/// Run a short command; its exit code, stdout and stderr.
async fn run(install: &Install, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = install.command(args, &[]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run chatorical");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the data dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_20_writers_holds_every_acknowledged_message_and_restore_waits_for_serve() {
    tokio::time::timeout(Duration::from_secs(240), backup_and_restore())
        .await
        .expect("finished within 240 s");
}

async fn backup_and_restore() {
    let fake = FakeTelegram::start_local().await;
    let install = Install::new(Backend::Sqlite, &fake.api_url()).await;
    let tenant = install.tenant("backup").await;
    let mut server = install.serve(&[]).await;
    let database = install.dir().join("chatorical.db");

    // 20 visitors write as fast as they are answered.
    let mut visitors = Vec::new();
    for _ in 0..WRITERS {
        visitors.push(server.api.visitor(&tenant).await);
    }
    let started = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let before = Arc::new(Mutex::new(HashSet::<String>::new()));
    let all = Arc::new(Mutex::new(HashSet::<String>::new()));
    let during = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for (w, v) in visitors.into_iter().enumerate() {
        let api = server.api.clone();
        let (started, finished, stop) = (started.clone(), finished.clone(), stop.clone());
        let (before, all, during) = (before.clone(), all.clone(), during.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let id = format!("w{w}-{n}");
                let (status, body) = api
                    .json(
                        Method::POST,
                        &format!("/v1/conversations/{}/messages", v.conversation_id),
                        Some(&v.token),
                        Some(json!({"client_msg_id": id, "text": format!("message {id}")})),
                    )
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{id}: {body}");
                // Answered before the backup was started: committed before it began.
                if !started.load(Ordering::SeqCst) {
                    before.lock().expect("lock").insert(id.clone());
                } else if !finished.load(Ordering::SeqCst) {
                    during.fetch_add(1, Ordering::SeqCst);
                }
                all.lock().expect("lock").insert(id);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let out = install.dir().join("backup.db");
    let out_s = out.to_str().expect("UTF-8").to_string();
    started.store(true, Ordering::SeqCst);
    let (code, stdout, stderr) = run(&install, &["backup", "--out", &out_s, "--json"]).await;
    finished.store(true, Ordering::SeqCst);
    assert_eq!(code, Some(0), "backup: {stdout}{stderr}");
    // The writers go on a little after the backup, then stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    let before = before.lock().expect("lock").clone();
    let all = all.lock().expect("lock").clone();
    let during = during.load(Ordering::SeqCst);
    eprintln!(
        "acknowledged: {} before the backup, {during} while it ran, {} in all",
        before.len(),
        all.len()
    );
    assert!(
        before.len() >= WRITERS,
        "every writer was answered before the backup"
    );
    assert!(during > 0, "messages were stored while the backup ran");

    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["integrity"], "ok", "{report}");
    assert_eq!(report["out"], out_s.as_str());
    assert_eq!(
        report["bytes"].as_u64(),
        Some(std::fs::metadata(&out).expect("the backup").len())
    );
    assert!(report["duration_ms"].is_u64(), "{report}");
    assert!(
        report["master_key_note"]
            .as_str()
            .is_some_and(|n| n.contains("master key is not in the backup")),
        "{report}"
    );
    assert_eq!(
        report["master_key_file"],
        install.dir().join("master.key").to_str().expect("UTF-8")
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).expect("stat").permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "the backup holds every conversation: owner only"
        );
    }
    let (check, in_backup) = inspect(&out);
    assert_eq!(check, "ok");
    let missing: Vec<&String> = before.difference(&in_backup).collect();
    assert!(
        missing.is_empty(),
        "{} message(s) acknowledged before the backup are not in it, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(
        report["messages"].as_u64(),
        Some(in_backup.len() as u64),
        "the reported count is the backup's"
    );
    assert!(
        in_backup.len() < all.len(),
        "the messages written after the backup are not in it"
    );

    // Restore is refused while serve runs: a clear error, exit 1, nothing changed.
    let files = file_names(install.dir());
    let (code, stdout, stderr) = run(&install, &["restore", "--from", &out_s]).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("conflict")
            && stderr.contains("serve or worker is running")
            && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert_eq!(file_names(install.dir()), files, "no file added or removed");
    // Still the live database, with every message.
    let (status, _) = server.api.json(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);

    server.proc.terminate();
    assert!(
        server
            .proc
            .wait_exit(Duration::from_secs(30))
            .await
            .is_some(),
        "serve stops on SIGTERM"
    );
    let (_, live) = inspect(&database);
    assert!(all.is_subset(&live), "the refused restore replaced nothing");

    // A worker holds the data too.
    let mut worker = install.worker("worker");
    worker
        .wait_for_line(Duration::from_secs(30), |l| {
            l.starts_with("chatorical worker running")
        })
        .await;
    let (code, _, stderr) = run(&install, &["restore", "--from", &out_s]).await;
    assert_eq!(
        code,
        Some(1),
        "restore refused while a worker runs: {stderr}"
    );
    worker.terminate();
    assert!(worker.wait_exit(Duration::from_secs(30)).await.is_some());

    // Stopped: the restore replaces the database and says what it replaced.
    let (code, stdout, stderr) = run(&install, &["restore", "--from", &out_s, "--json"]).await;
    assert_eq!(code, Some(0), "restore: {stdout}{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(r["messages"].as_u64(), Some(in_backup.len() as u64), "{r}");
    assert_eq!(
        r["replaced"]["messages"].as_u64(),
        Some(live.len() as u64),
        "{r}"
    );
    let kept = r["replaced"]["kept_as"].as_str().expect("kept_as");
    let (kept_check, kept_ids) = inspect(Path::new(kept));
    assert_eq!((kept_check.as_str(), kept_ids.len()), ("ok", live.len()));
    assert!(r["master_key_note"].is_string(), "{r}");
    let (check, restored) = inspect(&database);
    assert_eq!(check, "ok");
    assert_eq!(restored, in_backup, "the database is the backup");
    assert!(
        !file_names(install.dir())
            .iter()
            .any(|n| n.contains(".restore-")),
        "no temp file left"
    );

    // And serve runs on it.
    let server = install.serve(&[]).await;
    let (status, body) = server.api.json(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
