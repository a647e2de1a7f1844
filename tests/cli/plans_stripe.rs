//! `chatorical plans sync` with Stripe configured (the fake Stripe of
//! tests/support/fake_stripe.rs), and without.

use crate::fake_stripe::{self, FakeStripe};
use crate::on_both_backends;
use crate::support::{Backend, Cli, array};

on_both_backends!(
    without_stripe_sync_does_the_database_and_says_so,
    sync_to_stripe_then_nothing_to_do,
    a_stripe_error_exits_1_naming_the_plan_and_a_rerun_finishes,
);

const CATALOGUE: &str = r#"[plans.free]
name = "Free"

[plans.pro]
name = "Pro"
price_month_cents = 1900
price_year_cents = 19000
"#;

fn write(cli: &Cli, text: &str) -> String {
    let path = cli.data_dir().join("plans.toml");
    std::fs::write(&path, text).expect("write the catalogue");
    path.to_str().expect("UTF-8 path").to_string()
}

/// The fake on a runtime of its own (the CLI runs as a child process).
fn start_fake() -> (tokio::runtime::Runtime, FakeStripe) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let fake = rt.block_on(FakeStripe::start());
    (rt, fake)
}

fn stripe_env(fake: &FakeStripe) -> Vec<(&'static str, String)> {
    vec![
        (
            "CHATORICAL_BILLING__STRIPE__SECRET_KEY",
            fake_stripe::SECRET_KEY.to_string(),
        ),
        ("CHATORICAL_BILLING__STRIPE__API_BASE", fake.url()),
        (
            "CHATORICAL_BILLING__STRIPE__REQUEST_TIMEOUT_SECS",
            "5".into(),
        ),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn without_stripe_sync_does_the_database_and_says_so(backend: Backend) {
    let cli = Cli::new(backend);
    let file = write(&cli, CATALOGUE);
    let out = cli.ok(&["plans", "sync", "--file", &file]);
    assert!(out.contains("1 created"), "{out}");
    assert!(
        out.contains("Stripe is not configured (billing.stripe.secret_key is unset): synced the database only."),
        "{out}"
    );
    let report = cli.json(&["plans", "sync", "--file", &file]);
    assert_eq!(report["target"], "database");
    assert_eq!(report["stripe"], serde_json::Value::Null);
}

fn sync_to_stripe_then_nothing_to_do(backend: Backend) {
    let (_rt, fake) = start_fake();
    let cli = Cli::new(backend);
    let env = stripe_env(&fake);
    let env = env_refs(&env);
    let file = write(&cli, CATALOGUE);

    // A dry run: the calls it would make, none made.
    let run = cli.run_env(&["plans", "sync", "--file", &file, "--dry-run"], &env);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("Dry run, nothing written: 2 created"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("in Stripe from"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("POST /v1/prices (1900 EUR cents every month"),
        "{}",
        run.stdout
    );
    assert_eq!(fake.write_count(), 0);

    // The first run writes the catalogue; progress as plain lines (not a terminal).
    let run = cli.run_env(&["plans", "sync", "--file", &file], &env);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .contains("2 created, 0 updated, 0 deactivated, 0 unchanged in Stripe from"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("(4 write call(s))"), "{}", run.stdout);
    assert!(
        run.stderr.contains("stripe: syncing 2 plan(s)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("stripe: pro: POST /v1/prices (19000 EUR cents every year"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("stripe: pro: created"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(fake_stripe::SECRET_KEY),
        "{}",
        run.stderr
    );
    assert_eq!(fake.write_count(), 4);
    assert_eq!(fake.products().len(), 2);

    // The second: no write call, and it says so; --json for CI.
    let run = cli.run_env(&["plans", "sync", "--file", &file], &env);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .contains("Nothing changed: Stripe already matches")
            && run.stdout.contains("no changes, no write calls"),
        "{}",
        run.stdout
    );
    let run = cli.run_env(&["plans", "sync", "--file", &file, "--json"], &env);
    assert_eq!(run.code, Some(0), "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(report["target"], "database");
    assert_eq!(report["changed"], false);
    assert_eq!(report["stripe"]["target"], "stripe");
    assert_eq!(report["stripe"]["changed"], false);
    assert_eq!(array(&report["stripe"]["plans"]).len(), 2);
    assert_eq!(
        fake.write_count(),
        4,
        "no write call on the second and third runs"
    );

    // A changed price: the dry run lists the new price and the archived one.
    let file = write(&cli, &CATALOGUE.replace("= 1900\n", "= 2900\n"));
    let run = cli.run_env(
        &["plans", "sync", "--file", &file, "--dry-run", "--json"],
        &env,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let pro = array(&report["stripe"]["plans"])
        .iter()
        .find(|p| p["code"] == "pro")
        .expect("pro")
        .clone();
    assert_eq!(pro["action"], "updated");
    let calls: Vec<&str> = array(&pro["calls"])
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].contains("2900 EUR cents every month") && calls[0].contains("transferred from"),
        "{calls:?}"
    );
    assert!(calls[1].ends_with("(active=false)"), "{calls:?}");
    assert_eq!(fake.write_count(), 4);
}

fn a_stripe_error_exits_1_naming_the_plan_and_a_rerun_finishes(backend: Backend) {
    let (_rt, fake) = start_fake();
    let cli = Cli::new(backend);
    let env = stripe_env(&fake);
    let env = env_refs(&env);
    let file = write(&cli, CATALOGUE);

    // free's product, pro's product, then pro's monthly price fails.
    fake.fail_writes(2, 1);
    let run = cli.run_env(&["plans", "sync", "--file", &file], &env);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("error: "), "{}", run.stderr);
    assert!(run.stderr.contains("plan `pro`"), "{}", run.stderr);
    assert!(run.stderr.contains("api_error"), "{}", run.stderr);
    // The database part was done and reported.
    assert!(
        run.stdout.contains("in the database from"),
        "{}",
        run.stdout
    );

    // --json: the report with Stripe's error, exit 1.
    fake.fail_writes(0, 1);
    let run = cli.run_env(&["plans", "sync", "--file", &file, "--json"], &env);
    assert_eq!(run.code, Some(1), "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(report["stripe"]["error"]["code"], "stripe_error");
    assert_eq!(report["stripe"]["error"]["details"]["plan"], "pro");

    // A re-run finishes the job.
    let run = cli.run_env(&["plans", "sync", "--file", &file], &env);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("1 updated"), "{}", run.stdout);
    let active: Vec<_> = fake
        .prices()
        .into_iter()
        .filter(|p| p["active"] == true)
        .collect();
    assert_eq!(active.len(), 2, "{active:?}");
    assert!(fake.price_by_lookup_key("chatorical_pro_month").is_some());
    assert!(fake.price_by_lookup_key("chatorical_pro_year").is_some());
    let before = fake.write_count();
    let run = cli.run_env(&["plans", "sync", "--file", &file], &env);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(fake.write_count(), before);
}
