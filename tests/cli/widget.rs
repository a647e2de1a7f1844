//! `chatorical widget release`: versioned asset, snippet with SRI, reproducible.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use sha2::{Digest, Sha384};

use crate::on_both_backends;
use crate::support::{Backend, Cli, str_field};

on_both_backends!(
    release_for_a_tenant_carries_its_widget_key,
    release_for_an_unknown_tenant_fails_and_writes_nothing,
);

const ORIGIN: &str = "https://chat.example.com";

fn sri(bytes: &[u8]) -> String {
    format!("sha384-{}", B64.encode(Sha384::digest(bytes)))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("UTF-8 name")
                .to_string();
            (name, read(&path))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn releasing_twice_gives_identical_output_and_files() {
    let cli = Cli::unmigrated(Backend::Sqlite);
    let first = cli.run(&["widget", "release", "--origin", ORIGIN, "--out", "rel"]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let dir = cli.data_dir().join("rel");
    let files_first = files(&dir);
    let second = cli.run(&["widget", "release", "--origin", ORIGIN, "--out", "rel"]);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert_eq!(first.stdout, second.stdout, "same stdout");
    assert_eq!(files_first, files(&dir), "same files, same bytes");

    // stdout is the snippet alone, pointing at the versioned script with its SRI hash.
    let snippet = first.stdout.trim_end();
    assert_eq!(first.stdout.lines().count(), 1, "{}", first.stdout);
    let names: Vec<&str> = files_first.iter().map(|(n, _)| n.as_str()).collect();
    let asset = names
        .iter()
        .find(|n| n.starts_with("widget.") && n.ends_with(".js"))
        .unwrap_or_else(|| panic!("a versioned asset in {names:?}"));
    let version = &asset["widget.".len()..asset.len() - ".js".len()];
    assert_eq!(version.len(), 16, "{version}");
    assert_eq!(
        names,
        vec!["release.json", "snippet.html", *asset],
        "exactly these files"
    );
    let asset_bytes = read(&dir.join(asset));
    assert_eq!(
        snippet,
        format!(
            "<script src=\"{ORIGIN}/widget.js?v={version}\" integrity=\"{}\" \
             crossorigin=\"anonymous\" data-widget-key=\"YOUR_WIDGET_KEY\" async></script>",
            sri(&asset_bytes)
        )
    );
    assert_eq!(
        String::from_utf8(read(&dir.join("snippet.html"))).expect("UTF-8"),
        first.stdout
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(&dir.join("release.json"))).expect("release.json is JSON");
    assert_eq!(manifest["version"], version);
    assert_eq!(manifest["integrity"], sri(&asset_bytes));
    assert_eq!(manifest["bytes"], asset_bytes.len());
    assert_eq!(manifest["snippet"], snippet);
}

#[test]
fn json_output_has_version_integrity_and_snippet() {
    let cli = Cli::unmigrated(Backend::Sqlite);
    let out = cli.json(&["widget", "release", "--origin", "http://127.0.0.1:8080/"]);
    let version = str_field(&out, "version");
    let integrity = str_field(&out, "integrity");
    let snippet = str_field(&out, "snippet");
    assert!(integrity.starts_with("sha384-"), "{integrity}");
    assert!(
        snippet.contains(&format!(
            "src=\"http://127.0.0.1:8080/widget.js?v={version}\""
        )),
        "{snippet}"
    );
    assert!(snippet.contains(&format!("integrity=\"{integrity}\"")));
    assert!(snippet.contains("crossorigin=\"anonymous\""));
    // The default output directory.
    let asset = cli
        .data_dir()
        .join("widget-release")
        .join(format!("widget.{version}.js"));
    assert_eq!(sri(&read(&asset)), integrity);
    assert_eq!(
        out,
        cli.json(&["widget", "release", "--origin", "http://127.0.0.1:8080/"])
    );
}

#[test]
fn an_origin_that_is_not_http_or_https_is_refused() {
    let cli = Cli::unmigrated(Backend::Sqlite);
    for bad in [
        "ftp://chat.example.com",
        "chat.example.com",
        "javascript:alert(1)",
        "https://chat.example.com/?x=1",
    ] {
        let stderr = cli.fails(&["widget", "release", "--origin", bad, "--out", "rel"]);
        assert!(stderr.contains("--origin"), "{stderr}");
    }
    assert!(
        !cli.data_dir().join("rel").exists(),
        "nothing is written for a bad origin"
    );
    cli.usage_error(&["widget", "release"]);
}

/// `chatorical serve` on a free port; killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(cli: &Cli) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatorical"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", cli.data_dir())
            .current_dir(cli.data_dir())
            .arg("--data-dir")
            .arg(cli.data_dir())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chatorical serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // "chatorical is running on URL (…)" or "… running: open URL/ for the demo …"
                if line.starts_with("chatorical is running")
                    && let Some(at) = line.find("http://")
                {
                    let url = line[at..].split_whitespace().next().unwrap_or("");
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(e) => {
                let _ = child.kill();
                panic!("serve did not say where it runs: {e}");
            }
        };
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn integrity_is_that_of_the_script_the_server_serves() {
    let cli = Cli::unmigrated(Backend::Sqlite);
    let out = cli.json(&["widget", "release", "--origin", ORIGIN, "--out", "rel"]);
    let version = str_field(&out, "version").to_string();
    let integrity = str_field(&out, "integrity").to_string();
    let server = Server::start(&cli);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (cache, served) = rt.block_on(async {
        let resp = reqwest::get(format!("{}/widget.js?v={version}", server.url))
            .await
            .expect("GET /widget.js");
        assert!(resp.status().is_success(), "{}", resp.status());
        let cache = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (cache, resp.bytes().await.expect("body").to_vec())
    });
    assert!(
        cache.contains("immutable"),
        "the released version is the server's: {cache}"
    );
    assert_eq!(sri(&served), integrity, "SRI of the served bytes");
    let asset = cli
        .data_dir()
        .join("rel")
        .join(format!("widget.{version}.js"));
    assert!(read(&asset) == served, "the asset is the served script");
}

/// Issue 9 item 9: the snippet said YOUR_WIDGET_KEY; `--tenant SLUG` fills in the
/// tenant's real widget key (in stdout, snippet.html and release.json), and is
/// otherwise the same release.
fn release_for_a_tenant_carries_its_widget_key(backend: Backend) {
    let cli = Cli::new(backend);
    let tenant = cli.json(&[
        "tenants",
        "create",
        "--slug",
        "acme",
        "--name",
        "Acme",
        "--origin",
        "https://shop.acme.example",
    ]);
    let key = str_field(&tenant, "widget_key");
    assert!(key.starts_with("wk_"), "{key}");
    let plain = cli.json(&["widget", "release", "--origin", ORIGIN, "--out", "plain"]);
    let out = cli.json(&[
        "widget", "release", "--origin", ORIGIN, "--tenant", "acme", "--out", "rel",
    ]);
    let snippet = str_field(&out, "snippet");
    assert_eq!(
        snippet,
        str_field(&plain, "snippet").replace("YOUR_WIDGET_KEY", key),
        "the placeholder release with the key filled in"
    );
    assert!(
        snippet.contains(&format!("data-widget-key=\"{key}\"")),
        "{snippet}"
    );
    assert!(!snippet.contains("YOUR_WIDGET_KEY"), "{snippet}");
    assert_eq!(out["version"], plain["version"]);
    assert_eq!(out["integrity"], plain["integrity"]);
    let dir = cli.data_dir().join("rel");
    assert_eq!(
        String::from_utf8(read(&dir.join("snippet.html"))).expect("UTF-8"),
        format!("{snippet}\n")
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(&dir.join("release.json"))).expect("release.json is JSON");
    assert_eq!(manifest["snippet"], snippet);
    // Text output: the snippet alone on stdout; stderr names the tenant.
    let run = cli.run(&[
        "widget", "release", "--origin", ORIGIN, "--tenant", "acme", "--out", "rel",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, format!("{snippet}\n"));
    assert!(run.stderr.contains("widget key of acme"), "{}", run.stderr);
}

fn release_for_an_unknown_tenant_fails_and_writes_nothing(backend: Backend) {
    let cli = Cli::new(backend);
    let stderr = cli.fails(&[
        "widget", "release", "--origin", ORIGIN, "--tenant", "nobody", "--out", "rel",
    ]);
    assert!(
        stderr.contains("no tenant with slug `nobody`"),
        "a clear error: {stderr}"
    );
    assert!(
        !cli.data_dir().join("rel").exists(),
        "nothing is written for an unknown tenant"
    );
    // A bad origin is reported as such, with or without a tenant.
    let stderr = cli.fails(&[
        "widget", "release", "--origin", "ftp://x", "--tenant", "nobody", "--out", "rel",
    ]);
    assert!(stderr.contains("--origin"), "{stderr}");
}
