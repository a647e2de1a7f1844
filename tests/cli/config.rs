//! `chatorical config check`. It needs no database, so it runs on the SQLite default only.

use crate::support::{Backend, Cli};

fn cli() -> Cli {
    Cli::unmigrated(Backend::Sqlite)
}

#[test]
fn valid_configuration_is_printed_and_accepted() {
    let cli = cli();
    let stdout = cli.ok(&["config", "check"]);
    assert!(stdout.ends_with("# configuration is valid\n"), "{stdout}");
    assert!(stdout.contains("# no configuration file"), "{stdout}");
    assert!(stdout.contains("sqlite (embedded default)"), "{stdout}");
    let data_dir = cli.data_dir().display().to_string();
    assert!(
        stdout.contains(&format!("data_dir = \"{data_dir}\"")),
        "{stdout}"
    );

    let json = cli.json(&["config", "check"]);
    assert_eq!(json["valid"], true);
    assert_eq!(json["settings"]["server"]["data_dir"], data_dir.as_str());
}

#[test]
fn unknown_environment_key_is_named() {
    let stderr = cli().fails_env(&["config", "check"], &[("CHATORICAL_DATABASE__URLL", "x")]);
    assert!(stderr.contains("urll"), "{stderr}");
}

#[test]
fn bad_environment_value_names_the_key() {
    let stderr = cli().fails_env(
        &["config", "check"],
        &[("CHATORICAL_WS__SEND_QUEUE", "many")],
    );
    assert!(stderr.contains("ws.send_queue"), "{stderr}");
}

#[test]
fn bad_file_value_names_the_key() {
    let cli = cli();
    let file = cli.data_dir().join("bad.toml");
    std::fs::write(&file, "[server]\nlisten = \"nonsense\"\n").expect("write config file");
    let file = file.to_str().expect("UTF-8 path");
    let stderr = cli.fails(&["--config", file, "config", "check"]);
    assert!(stderr.contains("server.listen"), "{stderr}");
}

#[test]
fn configuration_file_is_read_and_named() {
    let cli = cli();
    let file = cli.data_dir().join("good.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:9999\"\n").expect("write config file");
    let path = file.to_str().expect("UTF-8 path");
    let stdout = cli.ok(&["--config", path, "config", "check"]);
    assert!(
        stdout.contains(&format!("# configuration file: {path}")),
        "{stdout}"
    );
    assert!(stdout.contains("listen = \"127.0.0.1:9999\""), "{stdout}");
}

#[test]
fn missing_named_configuration_file_is_an_error() {
    let stderr = cli().fails(&["--config", "does-not-exist.toml", "config", "check"]);
    assert!(stderr.contains("does-not-exist.toml"), "{stderr}");
}

#[test]
fn database_password_is_never_printed() {
    let cli = cli();
    let env = [("CHATORICAL_DATABASE__URL", "postgres://u:hunter2@h/db")];
    for args in [&["config", "check"][..], &["config", "check", "--json"]] {
        let run = cli.run_env(args, &env);
        assert_eq!(run.code, Some(0), "{run:?}");
        assert!(!run.stdout.contains("hunter2"), "{}", run.stdout);
        assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
        assert!(
            run.stdout.contains("***"),
            "the URL is shown redacted: {}",
            run.stdout
        );
    }
    let stdout = cli.run_env(&["config", "check"], &env).stdout;
    assert!(stdout.contains("# database backend: postgres"), "{stdout}");
}

#[test]
fn unknown_database_scheme_is_refused() {
    let stderr = cli().fails(&["--database-url", "mysql://x", "config", "check"]);
    assert!(stderr.contains("mysql"), "{stderr}");
}

/// Without the `otlp` cargo feature, asking for trace export is refused at start, not
/// silently ignored.
#[cfg(not(feature = "otlp"))]
#[test]
fn otlp_endpoint_without_the_feature_stops_serve() {
    let stderr = cli().fails_env(
        &["serve", "--listen", "127.0.0.1:0"],
        &[(
            "CHATORICAL_TELEMETRY__OTLP_ENDPOINT",
            "http://127.0.0.1:4318",
        )],
    );
    assert!(
        stderr.contains("telemetry.otlp_endpoint") && stderr.contains("--features otlp"),
        "{stderr}"
    );
}
