//! Generated files committed to the repository must match what the binary generates.

use std::{collections::BTreeMap, path::Path};

use crate::support::{Backend, Cli};

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("UTF-8 file name")
                .to_string();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            (name, text)
        })
        .collect()
}

#[test]
fn committed_man_pages_match_the_cli() {
    let cli = Cli::unmigrated(Backend::Sqlite);
    let out = tempfile::TempDir::new().expect("temp dir");
    let out_dir = out.path().to_str().expect("UTF-8 path");
    cli.ok(&["man", "--out-dir", out_dir]);

    let generated = read_dir(out.path());
    let committed = read_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("man"));
    const FIX: &str = "man/ drifted from the CLI: run `cargo run -- man --out-dir man`";
    assert!(
        generated.contains_key("chatorical.1"),
        "no chatorical.1 generated"
    );
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        committed.keys().collect::<Vec<_>>(),
        "{FIX}"
    );
    for (name, text) in &generated {
        assert!(committed[name] == *text, "man/{name} differs. {FIX}");
    }
}

#[test]
fn committed_example_config_matches_the_cli() {
    let cli = Cli::unmigrated(Backend::Sqlite);
    let generated = cli.ok(&["config", "example"]);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/chatorical.example.toml");
    let committed = std::fs::read_to_string(&path).expect("read the example config");
    assert!(
        generated == committed,
        "config/chatorical.example.toml drifted from the CLI: run \
         `cargo run -- config example > config/chatorical.example.toml`\n\
         generated:\n{generated}"
    );
}

#[test]
fn committed_shell_completions_match_the_cli() {
    let cli = Cli::unmigrated(Backend::Sqlite);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    let committed = read_dir(&dir);
    let expected = [
        ("bash", "chatorical.bash"),
        ("zsh", "_chatorical"),
        ("fish", "chatorical.fish"),
    ];
    assert_eq!(
        committed.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut names: Vec<&str> = expected.iter().map(|(_, f)| *f).collect();
            names.sort_unstable();
            names
        },
        "completions/ holds exactly the three generated files"
    );
    for (shell, file) in expected {
        let generated = cli.ok(&["completions", shell]);
        assert!(
            generated.contains("backup") && generated.contains("restore"),
            "{shell} completions name the commands"
        );
        assert!(
            committed[file] == generated,
            "completions/{file} drifted from the CLI: run \
             `cargo run -- completions {shell} > completions/{file}`"
        );
    }
}

#[test]
fn completions_refuse_an_unknown_shell() {
    let cli = Cli::unmigrated(Backend::Sqlite);
    let run = cli.run(&["completions", "tcsh"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("tcsh"), "{}", run.stderr);
}

/// The Debian package's `/etc/chatorical/chatorical.toml`: the generated example with
/// the data dir the units use, the master key in it on every backend (the service user
/// creates it there on first start; it cannot write /etc/chatorical), and a header
/// saying what the file is.
fn packaged_config(example: &str) -> String {
    let mut lines: Vec<&str> = example.split('\n').collect();
    lines[1] = "# Installed by the Debian package as /etc/chatorical/chatorical.toml (a conffile: edit it, upgrades keep your changes).";
    lines
        .join("\n")
        .replacen(
            "data_dir = \"chatorical-data\"",
            "data_dir = \"/var/lib/chatorical\"",
            1,
        )
        .replacen(
            "# master_key_file = \"/etc/chatorical/master.key\"",
            "master_key_file = \"/var/lib/chatorical/master.key\"",
            1,
        )
}

/// The Debian package's `/etc/chatorical/chatorical.env`: the example with every
/// setting commented out (the embedded default until the operator sets them).
fn packaged_env(example: &str) -> String {
    let mut out = vec![
        "# /etc/chatorical/chatorical.env: secrets and per-host overrides, read by the systemd units (0640, root:chatorical).".to_string(),
        "# Installed with every setting commented out: the embedded SQLite default in /var/lib/chatorical.".to_string(),
    ];
    for line in example.split('\n').skip(1) {
        if line.starts_with("CHATORICAL_") {
            out.push(format!("# {line}"));
        } else {
            out.push(line.to_string());
        }
    }
    out.join("\n")
}

#[test]
fn the_packaged_configuration_follows_the_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("read {p}: {e}"));
    let example = read("config/chatorical.example.toml");
    assert!(example.contains("\ndata_dir = \"chatorical-data\"\n"));
    assert!(example.contains("\n# master_key_file = \"/etc/chatorical/master.key\"\n"));
    assert!(
        read("debian/chatorical.toml") == packaged_config(&example),
        "debian/chatorical.toml drifted from config/chatorical.example.toml: it is the example \
         with line 2, data_dir and master_key_file replaced (see packaged_config in tests/cli/drift.rs)"
    );
    let env_example = read("config/chatorical.env.example");
    assert!(env_example.contains("\nCHATORICAL_"));
    assert!(
        read("debian/chatorical.env") == packaged_env(&env_example),
        "debian/chatorical.env drifted from config/chatorical.env.example: it is the example \
         with every setting commented out (see packaged_env in tests/cli/drift.rs)"
    );
}
