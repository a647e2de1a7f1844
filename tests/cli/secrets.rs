//! `chatorical secrets status|rotate|retire-old`: master key rotation end to end, with
//! tenants whose secrets were sealed by the real commands (`telegram setup` against the
//! fake Bot API, `tenants identity-secret`), and looked at through the library.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chatorical::{
    config::{DatabaseUrl, TelegramSettings},
    crypto::{MasterKey, Resealed},
    db::{Db, repo, repo::secrets::SealedColumn},
    secrets::field,
    telegram::Bots,
};
use serde_json::Value;

use crate::fake_telegram::{FakeTelegram, topic_text_update};
use crate::on_both_backends;
use crate::support::{Backend, Cli, array, str_field};

on_both_backends!(
    rotation_reencrypts_everything_and_the_old_key_stops_working,
    an_interrupted_rotation_finishes_on_rerun,
    a_running_server_keeps_serving_through_the_rotation,
    a_secret_copied_to_another_tenant_is_not_resealed_for_it,
);

/// (tenant id, field) → stored sealed value.
type Stored = BTreeMap<(String, &'static str), String>;

/// An installation with two tenants, each with Telegram connected and an identity
/// secret: six sealed values, and their plaintexts.
struct Fixture {
    cli: Cli,
    rt: tokio::runtime::Runtime,
    fake: FakeTelegram,
    db: Db,
    plain: BTreeMap<(String, &'static str), String>,
}

const TENANTS: [(&str, &str, u64, i64); 2] = [
    ("acme", "111:AAAAAAAAAAAAAAAA", 111, -1001),
    ("beta", "222:BBBBBBBBBBBBBBBB", 222, -1002),
];

impl Fixture {
    fn new(backend: Backend) -> Self {
        let cli = Cli::new(backend);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let fake = rt.block_on(FakeTelegram::start_local());
        let api_url = fake.api_url();
        // The webhook is registered at `server.listen`, where a test may start `serve`.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // PostgreSQL installations default to /etc/chatorical/master.key: keep the key
        // in the test's own directory (commands read ./chatorical.toml).
        let key = cli.data_dir().join("master.key");
        std::fs::write(
            cli.data_dir().join("chatorical.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n[telegram]\napi_url = {api_url:?}\nallow_http_webhook = true\ndefault_mode = \"webhook\"\n\
                 [secrets]\nmaster_key_file = {:?}\n",
                key.to_str().expect("UTF-8")
            ),
        )
        .expect("write chatorical.toml");
        let mut plain = BTreeMap::new();
        for (slug, token, bot_id, group) in TENANTS {
            fake.add_bot(token, bot_id, &format!("{slug}_bot"));
            fake.add_group(group, "Support", true);
            fake.set_member(bot_id, group, "administrator", true);
            let tenant = cli.json(&["tenants", "create", "--slug", slug, "--name", slug]);
            let id = str_field(&tenant, "id").to_string();
            let token_file = cli.data_dir().join(format!("{slug}.token"));
            std::fs::write(&token_file, token).expect("write the token file");
            let group = group.to_string();
            cli.ok(&[
                "telegram",
                "setup",
                "--tenant",
                slug,
                "--bot-token-file",
                token_file.to_str().expect("UTF-8 path"),
                "--group",
                &group,
            ]);
            let webhook = fake.webhook(token).expect("the webhook was registered");
            let identity = cli.json(&["tenants", "identity-secret", "--tenant", slug]);
            plain.insert((id.clone(), field(SealedColumn::BotToken)), token.into());
            plain.insert(
                (id.clone(), field(SealedColumn::WebhookSecret)),
                webhook.secret_token.expect("a webhook secret"),
            );
            plain.insert(
                (id, field(SealedColumn::IdentitySecret)),
                str_field(&identity, "identity_secret").into(),
            );
        }
        let url = DatabaseUrl::parse(&cli.database_url()).expect("database url");
        let db = rt
            .block_on(Db::connect(&url, 2, 5_000))
            .expect("open the database");
        Fixture {
            cli,
            rt,
            fake,
            db,
            plain,
        }
    }

    fn key_path(&self) -> PathBuf {
        self.cli.data_dir().join("master.key")
    }

    fn key_file(&self) -> MasterKey {
        MasterKey::parse(&std::fs::read_to_string(self.key_path()).expect("read the key file"))
            .expect("parse the key file")
    }

    /// Every sealed value in the database.
    fn stored(&self) -> Stored {
        self.rt.block_on(async {
            let mut pc = self.db.conn().await.expect("connection");
            let mut all = Stored::new();
            for column in SealedColumn::ALL {
                let page = repo::secrets::page(&mut pc.as_conn(), column, "", 1_000)
                    .await
                    .expect("read sealed values");
                for (tenant, value) in page {
                    all.insert((tenant, field(column)), value);
                }
            }
            all
        })
    }

    /// Which stored values `key` opens to the right plaintext (bound to their tenant and field).
    fn opened_by(&self, key: &MasterKey, stored: &Stored) -> usize {
        stored
            .iter()
            .filter(|((tenant, f), value)| {
                key.open(tenant, f, value).ok().as_ref() == Some(&self.plain[&(tenant.clone(), *f)])
            })
            .count()
    }

    fn status(&self) -> Value {
        self.cli.json(&["secrets", "status"])
    }
}

fn key_totals(status: &Value) -> Vec<u64> {
    array(&status["keys"])
        .iter()
        .map(|k| k["secrets"]["total"].as_u64().expect("a count"))
        .collect()
}

fn rotation_reencrypts_everything_and_the_old_key_stops_working(backend: Backend) {
    let fx = Fixture::new(backend);
    let old = fx.key_file();
    let old_fp = old.fingerprints()[0].clone();
    // A running server's key, loaded before the rotation.
    let running = MasterKey::load(&fx.key_path()).expect("load");
    let before = fx.stored();
    assert_eq!(before.len(), 6, "two tenants × three secrets");
    assert_eq!(fx.opened_by(&old, &before), 6);

    let status = fx.status();
    assert_eq!(status["total"], 6);
    assert_eq!(key_totals(&status), [6]);
    assert_eq!(status["keys"][0]["public_key"], old_fp.as_str());
    assert_eq!(
        status["keys"][0]["secrets"]["by_field"]["telegram.bot_token"],
        2
    );
    assert_eq!(
        status["keys"][0]["secrets"]["by_field"]["identity.secret"],
        2
    );

    let table = fx.cli.ok(&["secrets", "rotate"]);
    assert!(table.contains("started"), "{table}");
    assert!(
        !table.contains("AGE-SECRET-KEY"),
        "no secret key material is printed"
    );
    let file = fx.key_file();
    let new_fp = file.fingerprints()[0].clone();
    assert_eq!(
        file.fingerprints(),
        [new_fp.clone(), old_fp.clone()],
        "newest first, old kept"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(fx.key_path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let after = fx.stored();
    assert_eq!(after.len(), 6);
    for (k, v) in &after {
        assert_ne!(before[k], *v, "{k:?} was re-encrypted");
    }
    assert_eq!(
        fx.opened_by(&file.newest_only(), &after),
        6,
        "the new key alone opens all"
    );
    assert_eq!(
        fx.opened_by(&old, &after),
        0,
        "the old key alone opens nothing"
    );
    assert_eq!(
        fx.opened_by(&running, &after),
        6,
        "a running server follows the file"
    );

    let status = fx.status();
    assert_eq!(key_totals(&status), [6, 0]);
    assert_eq!(status["keys"][0]["public_key"], new_fp.as_str());
    assert_eq!(status["not_under_newest"], 0);

    let retired = fx.cli.json(&["secrets", "retire-old"]);
    assert_eq!(retired["key"], new_fp.as_str());
    assert_eq!(retired["retired"], serde_json::json!([old_fp]));
    assert_eq!(fx.key_file().fingerprints(), std::slice::from_ref(&new_fp));
    assert_eq!(fx.opened_by(&fx.key_file(), &after), 6);
    assert_eq!(fx.opened_by(&old, &fx.stored()), 0);
    assert!(
        running.reload_if_changed(),
        "the running server drops the old key"
    );
    assert_eq!(
        fx.opened_by(&running, &before),
        0,
        "old ciphertexts are dead"
    );
    let again = fx.cli.json(&["secrets", "retire-old"]);
    assert_eq!(again["retired"], serde_json::json!([]));

    // The served tenants still work with the new key alone.
    let status = fx.cli.json(&["telegram", "status", "--tenant", "acme"]);
    assert!(
        str_field(&status, "bot_token").starts_with("111:"),
        "the bot token decrypts (redacted): {status}"
    );
    let settings = TelegramSettings {
        api_url: fx.fake.api_url(),
        ..TelegramSettings::default()
    };
    let bots = Bots::new(&settings, Arc::new(fx.key_file())).expect("bots");
    fx.rt.block_on(async {
        let mut pc = fx.db.conn().await.expect("connection");
        for (tenant_id, _) in fx.plain.keys().filter(|(_, f)| *f == "telegram.bot_token") {
            let cfg = repo::telegram::get(&mut pc.as_conn(), tenant_id)
                .await
                .expect("read")
                .expect("connected");
            let bot = bots.for_tenant(&cfg).expect("the bot token decrypts");
            use teloxide::prelude::Requester;
            let me = bot.get_me().await.expect("getMe through the fake");
            assert_eq!(me.username.as_deref(), Some(cfg.bot_username.as_str()));
        }
    });
}

fn an_interrupted_rotation_finishes_on_rerun(backend: Backend) {
    let fx = Fixture::new(backend);
    let old_fp = fx.key_file().fingerprints()[0].clone();
    // A rotation that stopped midway: the key file already holds [new, old] and only
    // acme's bot token and identity secret were re-encrypted.
    let rotated = fx.key_file().rotated_to(MasterKey::generate());
    rotated
        .write_file(&fx.key_path())
        .expect("write the key file");
    let new_fp = rotated.fingerprints()[0].clone();
    let acme = fx.cli.json(&["tenants", "show", "acme"]);
    let acme = str_field(&acme, "id").to_string();
    let before = fx.stored();
    fx.rt.block_on(async {
        let mut pc = fx.db.conn().await.expect("connection");
        for column in [SealedColumn::BotToken, SealedColumn::IdentitySecret] {
            let old = &before[&(acme.clone(), field(column))];
            let Resealed::New(new) = rotated.reseal(&acme, field(column), old).expect("reseal")
            else {
                panic!("under the old key")
            };
            assert!(
                repo::secrets::replace(&mut pc.as_conn(), column, &acme, old, &new)
                    .await
                    .expect("replace")
            );
        }
    });
    let partly = fx.stored();

    let status = fx.status();
    assert_eq!(key_totals(&status), [2, 4]);
    assert_eq!(
        status["keys"][0]["secrets"]["by_field"]["telegram.bot_token"],
        1
    );
    assert_eq!(status["not_under_newest"], 4);

    let stderr = fx.cli.fails(&["secrets", "retire-old"]);
    assert!(stderr.contains("conflict"), "{stderr}");
    assert!(stderr.contains("4 secret(s)"), "{stderr}");
    assert_eq!(
        fx.key_file().fingerprints(),
        [new_fp.clone(), old_fp.clone()],
        "file untouched"
    );

    let report = fx.cli.json(&["secrets", "rotate", "--batch-size", "1"]);
    assert_eq!(
        report["started"], false,
        "the same rotation resumes: {report}"
    );
    assert_eq!(report["new_key"], new_fp.as_str());
    assert_eq!(report["total"], 6);
    assert_eq!(report["reencrypted"]["total"], 4);
    assert_eq!(report["already_current"], 2);
    assert_eq!(report["failed"], serde_json::json!([]));
    assert_eq!(report["not_under_newest"], 0);
    assert_eq!(
        fx.key_file().fingerprints(),
        [new_fp, old_fp],
        "no third key"
    );

    let done = fx.stored();
    for (k, v) in &done {
        if k.0 == acme && k.1 != "telegram.webhook_secret" {
            assert_eq!(partly[k], *v, "{k:?} was already new: skipped");
        } else {
            assert_ne!(partly[k], *v, "{k:?} re-encrypted");
        }
    }
    assert_eq!(fx.opened_by(&fx.key_file().newest_only(), &done), 6);
    assert_eq!(key_totals(&fx.status()), [6, 0]);
    fx.cli.ok(&["secrets", "retire-old"]);
    assert_eq!(fx.opened_by(&fx.key_file(), &done), 6);
}

#[test]
fn bad_key_files_are_refused_without_touching_anything() {
    let cli = Cli::new(Backend::Sqlite);
    cli.ok(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    let path = cli.data_dir().join("master.key");

    // Missing: never created by the secrets commands.
    let missing = cli.data_dir().join("nowhere.key");
    let env = [(
        "CHATORICAL_SECRETS__MASTER_KEY_FILE",
        missing.to_str().expect("UTF-8 path"),
    )];
    for cmd in ["status", "rotate", "retire-old"] {
        let stderr = cli.fails_env(&["secrets", cmd], &env);
        assert!(stderr.contains("invalid_config"), "{stderr}");
        assert!(stderr.contains("nowhere.key"), "{stderr}");
    }
    assert!(!missing.exists());

    cli.ok(&["tenants", "identity-secret", "--tenant", "acme"]);
    let text = std::fs::read_to_string(&path).expect("the key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let stderr = cli.fails(&["secrets", "rotate"]);
        assert!(stderr.contains("chmod 600"), "{stderr}");
        assert!(!stderr.contains("AGE-SECRET-KEY"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        text,
        "not rotated"
    );

    std::fs::write(&path, "AGE-SECRET-KEY-1NOTAKEY\n").expect("write");
    let stderr = cli.fails(&["secrets", "status"]);
    assert!(stderr.contains("invalid age identity"), "{stderr}");
    assert!(
        !stderr.contains("NOTAKEY"),
        "the line is not echoed: {stderr}"
    );

    std::fs::remove_file(&path).expect("rm");
    std::fs::create_dir(&path).expect("mkdir");
    let stderr = cli.fails(&["secrets", "status"]);
    assert!(stderr.contains("not a regular file"), "{stderr}");
}

/// `chatorical serve` of a fixture's installation, its stderr collected; killed on drop.
struct Server {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(fx: &Fixture) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatorical"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", fx.cli.data_dir())
            .current_dir(fx.cli.data_dir())
            .arg("--data-dir")
            .arg(fx.cli.data_dir())
            .args(["--database-url", &fx.cli.database_url(), "serve"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chatorical serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().expect("log").push(line);
            }
        });
        let server = Server { child, log };
        server.wait_for("chatorical is running");
        server
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "serve never logged {text:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn hang_up(&self) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "kill -HUP");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn a_running_server_keeps_serving_through_the_rotation(backend: Backend) {
    let fx = Fixture::new(backend);
    let server = Server::start(&fx);
    let (_, token, _, group) = TENANTS[0];
    let mut update_id = 0;
    // An agent's message reaches the webhook: 200 only if the server decrypted the
    // tenant's webhook secret (a secret it cannot decrypt is a 500).
    let mut webhook_call = |when: &str| {
        update_id += 1;
        let update = topic_text_update(
            update_id,
            group,
            77,
            9000 + update_id as i32,
            555,
            "Ana",
            "hi",
        );
        let status = fx
            .rt
            .block_on(fx.fake.deliver_update(token, &update))
            .expect("deliver the update");
        assert_eq!(status.as_u16(), 200, "{when}:\n{}", server.log());
    };
    webhook_call("before the rotation");

    fx.cli.ok(&["secrets", "rotate"]);
    // The server has never read the new key; the webhook secret is now sealed under it.
    webhook_call("after rotate");
    server.wait_for("master key file re-read");

    fx.cli.ok(&["secrets", "retire-old"]);
    server.hang_up();
    server.wait_for("SIGHUP: master key file re-read");
    webhook_call("after retire-old and SIGHUP");

    let log = server.log();
    assert!(!log.contains("AGE-SECRET-KEY"), "no secret key in the log");
    for plain in fx.plain.values() {
        assert!(!log.contains(plain.as_str()), "no secret in the log");
    }
}

fn a_secret_copied_to_another_tenant_is_not_resealed_for_it(backend: Backend) {
    let fx = Fixture::new(backend);
    let id = |slug: &str| str_field(&fx.cli.json(&["tenants", "show", slug]), "id").to_string();
    let (acme, beta) = (id("acme"), id("beta"));
    let bot_token = field(SealedColumn::BotToken);
    let before = fx.stored();
    let copied = before[&(acme.clone(), bot_token)].clone();
    fx.rt.block_on(async {
        let mut pc = fx.db.conn().await.expect("connection");
        let beta_own = &before[&(beta.clone(), bot_token)];
        assert!(
            repo::secrets::replace(
                &mut pc.as_conn(),
                SealedColumn::BotToken,
                &beta,
                beta_own,
                &copied
            )
            .await
            .expect("replace")
        );
    });

    let run = fx.cli.run(&["secrets", "rotate", "--json"]);
    assert_eq!(
        run.code,
        Some(1),
        "a value that cannot be resealed fails the run"
    );
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON report");
    assert_eq!(report["reencrypted"]["total"], 5, "{report}");
    let failed = array(&report["failed"]);
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["tenant_id"], beta.as_str());
    assert_eq!(failed[0]["field"], bot_token);
    assert!(!run.stdout.contains("111:"), "no plaintext in the report");
    assert_eq!(
        fx.stored()[&(beta.clone(), bot_token)],
        copied,
        "left as it was, never sealed for beta"
    );
    let stderr = fx.cli.fails(&["secrets", "retire-old"]);
    assert!(stderr.contains("1 secret(s)"), "{stderr}");
}
