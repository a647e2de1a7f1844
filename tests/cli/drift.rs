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
