//! `chatorical doctor`: a healthy installation passes every check; a master key others
//! can read, an unreachable Redis, a webhook that is gone, pending migrations, a missing
//! database and an invalid configuration each fail by name, with a hint, exit 1.

use std::{net::TcpListener, os::unix::fs::PermissionsExt, path::PathBuf};

use serde_json::Value;
use teloxide::prelude::Requester;

use crate::fake_telegram::FakeTelegram;
use crate::on_both_backends;
use crate::support::{Backend, Cli, Run};

on_both_backends!(
    a_healthy_installation_passes_every_check,
    a_readable_master_key_and_an_unreachable_redis_fail_by_name,
    a_webhook_that_is_gone_or_elsewhere_fails_for_its_tenant,
);

/// An installation with one tenant connected to the fake Telegram in webhook mode,
/// `server.public_url` at a small HTTP server answering `/healthz`.
struct Fixture {
    cli: Cli,
    rt: tokio::runtime::Runtime,
    fake: FakeTelegram,
    public_url: String,
}

const TOKEN: &str = "314:DDDDDDDDDDDDDDDDDDDD";

impl Fixture {
    fn new(backend: Backend) -> Self {
        let cli = Cli::new(backend);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let fake = rt.block_on(FakeTelegram::start_local());
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).expect("nonblocking");
        let public_url = format!("http://{}", listener.local_addr().expect("address"));
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
            let _ = axum::serve(listener, app).await;
        });
        let fixture = Fixture {
            cli,
            rt,
            fake,
            public_url,
        };
        fixture.write_config("");
        fixture.fake.add_bot(TOKEN, 314, "doc_bot");
        fixture.fake.add_group(-1314, "Support", true);
        fixture.fake.set_member(314, -1314, "administrator", true);
        fixture
            .cli
            .json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
        let token_file = fixture.cli.data_dir().join("acme.token");
        std::fs::write(&token_file, TOKEN).expect("write the token file");
        fixture.cli.ok(&[
            "telegram",
            "setup",
            "--tenant",
            "acme",
            "--bot-token-file",
            token_file.to_str().expect("UTF-8 path"),
            "--group",
            "-1314",
        ]);
        fixture
    }

    fn key_path(&self) -> PathBuf {
        self.cli.data_dir().join("master.key")
    }

    /// `chatorical.toml` pointing at the fake and the health server, plus `extra`.
    fn write_config(&self, extra: &str) {
        std::fs::write(
            self.cli.data_dir().join("chatorical.toml"),
            format!(
                "[server]\npublic_url = {:?}\n[telegram]\napi_url = {:?}\nallow_http_webhook = true\n\
                 default_mode = \"webhook\"\n[secrets]\nmaster_key_file = {:?}\n{extra}",
                self.public_url,
                self.fake.api_url(),
                self.key_path().to_str().expect("UTF-8"),
            ),
        )
        .expect("write chatorical.toml");
    }

    fn doctor(&self) -> (Run, Value) {
        let run = self.cli.run(&["doctor", "--json"]);
        let report: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}):\n{}", run.stdout));
        (run, report)
    }
}

/// The check named `name` of a JSON report.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["outcome"] == "failed")
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect()
}

fn a_healthy_installation_passes_every_check(backend: Backend) {
    let f = Fixture::new(backend);
    let (run, report) = f.doctor();
    assert_eq!(run.code, Some(0), "{report:#}\n{}", run.stderr);
    assert_eq!(report["healthy"], true);
    for name in [
        "config",
        "database",
        "migrations",
        "master_key",
        "secrets",
        "public_url",
        "telegram_webhook:acme",
    ] {
        assert_eq!(check(&report, name)["outcome"], "ok", "{name}: {report:#}");
    }
    assert_eq!(check(&report, "redis")["outcome"], "skipped");
    // Two sealed values (bot token, webhook secret) open with the key.
    assert_eq!(
        check(&report, "secrets")["detail"],
        "all 2 stored secret(s) open"
    );
    // The table for people: a mark per check, and the verdict.
    let table = f.cli.ok(&["doctor"]);
    assert!(table.contains("✔"), "{table}");
    assert!(!table.contains("✘"), "{table}");
    assert!(table.contains("All checks passed."), "{table}");
    // Nothing secret in the report.
    let all = run.stdout + &table;
    assert!(
        !all.contains(TOKEN) && !all.contains("AGE-SECRET-KEY"),
        "{all}"
    );
}

fn a_readable_master_key_and_an_unreachable_redis_fail_by_name(backend: Backend) {
    let f = Fixture::new(backend);
    std::fs::set_permissions(f.key_path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    f.write_config(&format!("[redis]\nurl = \"redis://127.0.0.1:{closed}\"\n"));
    let (run, report) = f.doctor();
    assert_eq!(run.code, Some(1), "{report:#}");
    assert_eq!(report["healthy"], false);
    assert_eq!(failed(&report), ["redis", "master_key"], "{report:#}");
    let key = check(&report, "master_key");
    assert!(
        key["detail"].as_str().expect("detail").contains("mode 644"),
        "{key}"
    );
    assert_eq!(
        key["hint"],
        format!(
            "chmod 600 {} (and chown it to the service user)",
            f.key_path().display()
        )
    );
    let redis = check(&report, "redis");
    assert!(
        redis["detail"]
            .as_str()
            .expect("detail")
            .starts_with("no answer to PING"),
        "{redis}"
    );
    // The key still opens every secret: that check passes on its own line.
    assert_eq!(check(&report, "secrets")["outcome"], "ok");
    // The table names both, and says how many failed.
    let run = f.cli.run(&["doctor"]);
    assert_eq!(run.code, Some(1));
    for want in ["✘", "redis", "master_key", "2 check(s) failed."] {
        assert!(run.stdout.contains(want), "no {want:?} in:\n{}", run.stdout);
    }
    // Fixed: healthy again.
    std::fs::set_permissions(f.key_path(), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    f.write_config("");
    assert_eq!(f.doctor().0.code, Some(0));
}

fn a_webhook_that_is_gone_or_elsewhere_fails_for_its_tenant(backend: Backend) {
    let f = Fixture::new(backend);
    let bot = f.fake.bot(TOKEN);
    f.rt.block_on(async { bot.delete_webhook().await })
        .expect("deleteWebhook");
    let (run, report) = f.doctor();
    assert_eq!(run.code, Some(1));
    assert_eq!(failed(&report), ["telegram_webhook:acme"], "{report:#}");
    let expected = format!("{}/v1/telegram/webhook/acme", f.public_url);
    assert_eq!(
        check(&report, "telegram_webhook:acme")["detail"],
        format!("no webhook registered, expected {expected}")
    );
    // Registered somewhere else.
    let elsewhere: reqwest::Url = "http://127.0.0.1:9/elsewhere".parse().expect("url");
    f.rt.block_on(async { bot.set_webhook(elsewhere).await })
        .expect("setWebhook");
    let (_, report) = f.doctor();
    assert_eq!(
        check(&report, "telegram_webhook:acme")["detail"],
        format!("registered at http://127.0.0.1:9/elsewhere, expected {expected}")
    );
    // The public URL moved (nothing answers there): that check fails, and the
    // webhook registered at the old URL is now elsewhere too.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    std::fs::write(
        f.cli.data_dir().join("chatorical.toml"),
        std::fs::read_to_string(f.cli.data_dir().join("chatorical.toml"))
            .expect("read")
            .replace(&f.public_url, &format!("http://127.0.0.1:{closed}")),
    )
    .expect("write");
    let (_, report) = f.doctor();
    assert_eq!(
        failed(&report),
        ["public_url", "telegram_webhook:acme"],
        "{report:#}"
    );
    assert!(
        check(&report, "public_url")["detail"]
            .as_str()
            .expect("detail")
            .ends_with("/healthz: connection failed"),
        "{report:#}"
    );
}

#[test]
fn pending_migrations_fail_with_the_command_that_applies_them() {
    let cli = Cli::unmigrated(Backend::Postgres);
    // A key of the test's own (PostgreSQL installations default to /etc/chatorical).
    let key = cli.data_dir().join("master.key");
    std::fs::write(
        cli.data_dir().join("chatorical.toml"),
        format!(
            "[secrets]\nmaster_key_file = {:?}\n",
            key.to_str().expect("UTF-8")
        ),
    )
    .expect("write chatorical.toml");
    let run = cli.run(&["doctor", "--json"]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(failed(&report), ["migrations"], "{report:#}");
    // What needs the migrated tables waits for them.
    assert_eq!(
        check(&report, "secrets")["outcome"],
        "skipped",
        "{report:#}"
    );
    assert_eq!(
        check(&report, "migrations")["hint"],
        "run `chatorical migrate` (or set database.auto_migrate = true)"
    );
    cli.ok(&["migrate"]);
    let run = cli.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(check(&report, "migrations")["outcome"], "ok", "{report:#}");
}

#[test]
fn a_missing_database_file_is_not_created() {
    let cli = Cli::unmigrated(Backend::Sqlite);
    let run = cli.run(&["doctor", "--json"]);
    assert_eq!(run.code, Some(1));
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(failed(&report), ["database"], "{report:#}");
    assert_eq!(check(&report, "migrations")["outcome"], "skipped");
    assert!(!cli.data_dir().join("chatorical.db").exists());
    // No key was created either (nothing sealed, nothing to open).
    assert!(!cli.data_dir().join("master.key").exists());
}

#[test]
fn an_invalid_configuration_fails_the_config_check_and_skips_the_rest() {
    let cli = Cli::unmigrated(Backend::Sqlite);
    std::fs::write(
        cli.data_dir().join("chatorical.toml"),
        "[server]\nlisten = \"127.0.0.1:8080\"\nno_such_setting = 1\n",
    )
    .expect("write");
    let run = cli.run(&["doctor", "--json"]);
    assert_eq!(run.code, Some(1));
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(failed(&report), ["config"], "{report:#}");
    assert!(
        check(&report, "config")["detail"]
            .as_str()
            .expect("detail")
            .contains("no_such_setting"),
        "{report:#}"
    );
    assert_eq!(check(&report, "database")["outcome"], "skipped");
}
