//! `chatorical retention run` killed (SIGKILL) partway through a big purge: every
//! batch it committed is whole, and the next run finishes the rest — nothing to
//! resume, nothing left behind (issue 14).

use std::time::Duration;

use serde_json::Value;

use crate::fake_telegram::FakeTelegram;
use crate::retention_seed::{Group, left, seed};
use crate::support::{Backend, Install};

const OLD: usize = 3_000;
const PER: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_finished_by_the_next_on_sqlite() {
    tokio::time::timeout(Duration::from_secs(240), killed_run(Backend::Sqlite))
        .await
        .expect("finished within 240 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_finished_by_the_next_on_postgres() {
    tokio::time::timeout(Duration::from_secs(240), killed_run(Backend::Postgres))
        .await
        .expect("finished within 240 s");
}

async fn killed_run(backend: Backend) {
    let fake = FakeTelegram::start_local().await;
    let install = Install::new(backend, &fake.api_url()).await;
    // On the free plan: 30 days.
    let out = install
        .run_ok(&[
            "tenants", "create", "--slug", "killret", "--name", "Kill", "--json",
        ])
        .await;
    let tenant: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let tenant_id = tenant["id"].as_str().expect("id").to_string();
    let db = chatorical::db::Db::connect(&install.database(), 4, 5_000)
        .await
        .expect("the installation's database");
    let old = Group::closed("kold", &tenant_id, OLD, PER, 45.0);
    let kept = Group::closed("kkeep", &tenant_id, 50, PER, 5.0);
    seed(&db, &old).await;
    seed(&db, &kept).await;

    // A dry run says what is due, in a table, and deletes nothing.
    let table = install
        .run_ok(&["retention", "run", "--dry-run", "--tenant", "killret"])
        .await;
    assert!(table.contains("killret"), "{table}");
    assert!(
        table.contains(&format!(
            "Would delete {OLD} conversation(s), {} message(s)",
            OLD * PER
        )),
        "{table}"
    );
    assert_eq!(left(&db, "conversations", "kold").await, OLD as i64);

    // Bad input: non-zero exits, nothing deleted.
    for args in [
        &["retention", "run", "--tenant", "nobody"][..],
        &["retention", "run", "--batch-size", "0"][..],
    ] {
        let out = install.command(args, &[]).output().expect("run chatorical");
        assert!(!out.status.success(), "{args:?} should fail");
    }

    // Small batches, so that the run takes a while; killed a third of the way.
    let mut run = install.spawn(
        "retention run",
        &[
            "retention",
            "run",
            "--json",
            "--batch-size",
            "20",
            "--batch-messages",
            "200",
            "--pause-ms",
            "10",
        ],
        &[],
    );
    let mut remaining = OLD as i64;
    for _ in 0..3_000 {
        remaining = left(&db, "conversations", "kold").await;
        if remaining <= (OLD as i64) * 2 / 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        run.wait_exit(Duration::ZERO).await.is_none(),
        "the run ended before it was killed (remaining {remaining}): {}",
        run.stderr()
    );
    run.kill();
    let remaining = left(&db, "conversations", "kold").await;
    eprintln!("{backend:?}: killed with {remaining} of {OLD} due conversations left");
    assert!(
        remaining > 0 && remaining < OLD as i64,
        "killed partway: {remaining} left"
    );
    // Every batch is all or nothing: what is left is whole.
    assert_eq!(
        left(&db, "messages", "kold").await,
        remaining * PER as i64,
        "messages of the conversations left"
    );
    assert_eq!(left(&db, "outbox", "kold").await, remaining);
    assert_eq!(left(&db, "visitors", "kold").await, OLD as i64);

    // The next run finishes: exactly what was left, then the visitors.
    let out = install
        .run_ok(&["retention", "run", "--json", "--tenant", "killret"])
        .await;
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let purged = &report["tenants"][0]["purged"];
    assert_eq!(purged["conversations"], remaining, "{report}");
    assert_eq!(purged["messages"], remaining * PER as i64, "{report}");
    assert_eq!(purged["visitors"], OLD, "{report}");
    assert_eq!(purged["visitor_tokens"], OLD, "{report}");
    assert!(report["tenants"][0]["error"].is_null(), "{report}");
    for table in [
        "conversations",
        "messages",
        "outbox",
        "visitors",
        "visitor_tokens",
    ] {
        assert_eq!(left(&db, table, "kold").await, 0, "{table}");
    }
    assert_eq!(left(&db, "conversations", "kkeep").await, 50);
    assert_eq!(left(&db, "messages", "kkeep").await, (50 * PER) as i64);
    assert_eq!(left(&db, "visitors", "kkeep").await, 50);

    // And then there is nothing to do.
    let out = install.run_ok(&["retention", "run", "--json"]).await;
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["total"]["conversations"], 0, "{report}");
    assert_eq!(report["total"]["visitors"], 0, "{report}");
}
