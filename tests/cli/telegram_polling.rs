//! `chatorical telegram setup` without a public URL connects in polling mode;
//! `telegram mode` switches (setWebhook / deleteWebhook) and records it in the audit
//! log; `telegram status` shows the mode and where polling stands.

use crate::fake_telegram::FakeTelegram;
use crate::on_both_backends;
use crate::support::{Backend, Cli, array, str_field};

on_both_backends!(setup_polls_without_a_public_url_and_mode_switches);

const TOKEN: &str = "333:CCCCCCCCCCCCCCCC";
const BOT: u64 = 333;
const GROUP: i64 = -1003;

fn setup_polls_without_a_public_url_and_mode_switches(backend: Backend) {
    let cli = Cli::new(backend);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let fake = rt.block_on(FakeTelegram::start_local());
    fake.add_bot(TOKEN, BOT, "poll_bot");
    fake.add_group(GROUP, "Support", true);
    fake.set_member(BOT, GROUP, "administrator", true);
    let key = cli.data_dir().join("master.key");
    // No server.public_url, telegram.default_mode left at `auto`.
    std::fs::write(
        cli.data_dir().join("chatorical.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:8099\"\n[telegram]\napi_url = {:?}\nallow_http_webhook = true\n\
             [secrets]\nmaster_key_file = {:?}\n",
            fake.api_url(),
            key.to_str().expect("UTF-8")
        ),
    )
    .expect("write chatorical.toml");
    cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    let token_file = cli.data_dir().join("bot.token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let group = GROUP.to_string();
    let setup = [
        "telegram",
        "setup",
        "--tenant",
        "acme",
        "--bot-token-file",
        token_file.to_str().expect("UTF-8 path"),
        "--group",
        group.as_str(),
    ];

    let status = cli.json(&setup);
    assert_eq!(str_field(&status, "mode"), "polling", "{status}");
    assert_eq!(status["polling"]["polled"], false, "{status}");
    assert_eq!(fake.calls_of("deletewebhook").len(), 1);
    assert!(fake.calls_of("setwebhook").is_empty());

    let table = cli.ok(&["telegram", "status", "--tenant", "acme"]);
    assert!(table.contains("polling"), "{table}");
    assert!(table.contains("is a worker running?"), "{table}");
    assert!(!table.contains("/v1/telegram/webhook/"), "{table}");

    // To webhook: registered at the configured address.
    let status = cli.json(&["telegram", "mode", "--tenant", "acme", "webhook"]);
    assert_eq!(str_field(&status, "mode"), "webhook", "{status}");
    let hook = fake.webhook(TOKEN).expect("webhook set");
    assert_eq!(hook.url, "http://127.0.0.1:8099/v1/telegram/webhook/acme");
    let table = cli.ok(&["telegram", "status", "--tenant", "acme"]);
    assert!(table.contains("/v1/telegram/webhook/acme"), "{table}");

    // Setup again keeps the tenant's mode unless told otherwise.
    let status = cli.json(&setup);
    assert_eq!(str_field(&status, "mode"), "webhook", "{status}");
    let mut explicit = setup.to_vec();
    explicit.extend(["--mode", "polling"]);
    let status = cli.json(&explicit);
    assert_eq!(str_field(&status, "mode"), "polling", "{status}");
    assert!(fake.webhook(TOKEN).is_none());

    let audit = cli.json(&["audit", "list", "--action", "telegram.mode_changed"]);
    let entries = array(&audit["entries"]);
    assert_eq!(entries.len(), 2, "{audit}");
    assert_eq!(
        entries[1]["changes"],
        serde_json::json!({"mode": {"from": "webhook", "to": "polling"}})
    );
    assert!(
        str_field(&entries[1], "actor").starts_with("cli:"),
        "{audit}"
    );

    cli.usage_error(&["telegram", "mode", "--tenant", "acme", "pigeon"]);
    let err = cli.fails(&["telegram", "mode", "--tenant", "nobody", "polling"]);
    assert!(err.contains("not found") || err.contains("nobody"), "{err}");
}
