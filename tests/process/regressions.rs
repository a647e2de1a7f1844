//! Regression tests for bugs the process tests found (both fixed).
//!

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::Duration,
};

use crate::fake_telegram::{Failure, FakeTelegram};
use crate::support::{Backend, Install, eventually};

/// A supervisor may stop the service as soon as it says it is running: `serve`
/// prints its readiness line before the SIGTERM handler is installed (the signal
/// future is only polled by a task spawned in `run_until_stopped`), so a SIGTERM
/// right after the line kills it with the default action instead of a graceful stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_handles_sigterm_right_after_readiness() {
    let fake = FakeTelegram::start_local().await;
    let install = Install::new(Backend::Sqlite, &fake.api_url()).await;
    let mut cmd = install.command(&["serve", "--listen", "127.0.0.1:0"], &[]);
    let status = tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut ready = false;
        for line in lines.by_ref() {
            if line
                .expect("stderr line")
                .starts_with("chatorical is running")
            {
                ready = true;
                break;
            }
        }
        // SIGTERM at once, as a supervisor would.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        lines.for_each(drop);
        let status = child.wait().expect("wait");
        assert!(ready, "serve never said it was running");
        status
    })
    .await
    .expect("join");
    assert!(
        status.success(),
        "serve stopped by SIGTERM right after readiness must exit 0, got {status}"
    );
}

/// A delivery that takes longer than `worker.lease_secs` (a slow Bot API; a new
/// topic costs three requests of up to `telegram.request_timeout_secs` each) is
/// claimed again when its lease runs out, even by the worker still running it:
/// leases are never extended while a delivery is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_send_longer_than_the_lease_is_not_sent_twice() {
    let fake = FakeTelegram::start_local().await;
    let group = -100_555;
    let install = Install::new(Backend::Postgres, &fake.api_url()).await;
    let server = install
        .serve(&[("CHATORICAL_WORKER__EMBEDDED", "false")])
        .await;
    let api = &server.api;
    let platform = install.platform_key().await;
    let tenant = api.tenant(&platform, "slowco").await;
    api.connect_telegram(&fake, &tenant, 555, group).await;
    let v = api.visitor(&tenant).await;
    api.send(&v, "warm", "warm-up").await;
    let mut worker = install.worker("worker");
    eventually(Duration::from_secs(15), "the warm-up is delivered", || {
        fake.sent_messages(group)
            .iter()
            .any(|m| m.text == "warm-up")
    })
    .await;
    // The lease is 2 s; this sendMessage takes 3.5 s.
    fake.fail_always(
        "sendmessage",
        None,
        Failure::Delay(Duration::from_millis(3500)),
    );
    api.send(&v, "slow", "a slow one").await;
    api.outbox_drained(&tenant, Duration::from_secs(20)).await;
    // Nothing more can be sent once the only worker has exited: stop it (it finishes
    // what it has in flight first) instead of waiting a while and hoping.
    worker.terminate();
    let status = worker
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the worker exits after SIGTERM");
    assert!(status.success(), "worker: {status}");
    let calls = fake
        .calls_of("sendmessage")
        .iter()
        .filter(|c| c.text() == Some("a slow one"))
        .count();
    assert_eq!(
        calls, 1,
        "one worker, one message, {calls} sendMessage calls"
    );
}
