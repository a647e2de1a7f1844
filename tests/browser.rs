//! The widget in a real browser: runs the node test files in `tests/browser/`
//! (headless Debian Chromium driven by playwright-core, axe-core) against the
//! `chatorical` binary cargo just built. Needs `/usr/bin/chromium` (Debian's
//! `chromium` package; `CHROMIUM_PATH` overrides) and `npm ci` in `tests/browser`;
//! `scripts/test` (and CI) install both when missing. Screenshots of the widget
//! are written to `target/browser-screenshots/`.

use std::path::Path;
use std::process::Command;

#[test]
fn widget_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install Debian's `chromium` package (scripts/test does) or set CHROMIUM_PATH"
    );
    assert!(
        dir.join("node_modules/playwright-core").exists()
            && dir.join("node_modules/axe-core").exists(),
        "the browser tests' npm packages are missing: run `npm ci` in tests/browser (scripts/test does)"
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/browser")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no browser test files in {}",
        dir.display()
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    let out = Command::new("node")
        .arg("--test")
        .arg("--test-concurrency=2")
        .arg("--test-reporter=spec")
        .args(&files)
        .current_dir(&dir)
        .env("CHATORICAL_BIN", env!("CARGO_BIN_EXE_chatorical"))
        .env("CHROMIUM_PATH", &chromium)
        .env("CHATORICAL_SCREENSHOTS", &shots)
        .output()
        .expect("run node (Node.js 20+ is needed for the browser tests)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "browser tests failed ({}); the output is above",
        out.status
    );
    for shot in [
        "widget-closed.png",
        "widget-open.png",
        "widget-open-de-AT.png",
    ] {
        assert!(
            shots.join(shot).exists(),
            "screenshot {shot} was not written"
        );
    }
}
