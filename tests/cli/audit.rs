//! `chatorical audit export|list`: a million entries in flat memory, nothing left behind
//! by a killed export, files that hold exactly the entries asked for.

use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use diesel::{Connection, RunQueryDsl, SqliteConnection};

use crate::on_both_backends;
use crate::support::{Backend, Cli, psql};

on_both_backends!(
    a_million_entries_export_in_flat_memory,
    a_killed_export_leaves_no_file_and_keeps_the_old_one,
    export_and_list_select_by_tenant_and_time,
);

/// 2026-11-01T00:00:00Z: the first bulk entry; entry `g` is `g` ms later.
const BASE_MS: i64 = 1_793_491_200_000;

/// Insert `n` entries straight into the database: entry `g` (1-based) at `BASE_MS + g`,
/// for `tenant` on even `g` and the platform on odd ones.
fn bulk_insert(cli: &Cli, n: u64, tenant: &str) {
    let select = format!(
        "SELECT {BASE_MS} + g, CASE WHEN g % 2 = 0 THEN '{tenant}' ELSE NULL END, 'system', NULL, \
         'retention.purged', 'cv_' || g, NULL, '{{\"conversations\":' || g || '}}'"
    );
    let columns = "(at, tenant_id, actor, actor_name, action, target, request_id, changes)";
    match cli.backend {
        Backend::Postgres => {
            psql(
                &cli.database_url(),
                &format!(
                    "INSERT INTO audit_log {columns} {select} FROM generate_series(1, {n}) AS s(g)"
                ),
            );
        }
        Backend::Sqlite => {
            let path = cli.data_dir().join("chatorical.db");
            let mut conn =
                SqliteConnection::establish(path.to_str().expect("utf-8 path")).expect("open");
            diesel::sql_query(format!(
                "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) \
                 INSERT INTO audit_log {columns} {select} FROM s"
            ))
            .execute(&mut conn)
            .expect("bulk insert");
        }
    }
}

/// A fresh installation with one tenant; its id.
fn installation(backend: Backend) -> (Cli, String) {
    let cli = Cli::new(backend);
    let t = cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    let id = t["id"].as_str().expect("tenant id").to_string();
    (cli, id)
}

/// Run `chatorical args` to the end, sampling its peak resident memory (VmHWM); returns
/// (exit code, peak RSS in KiB, stderr).
fn run_measured(cli: &Cli, args: &[&str]) -> (Option<i32>, u64, String) {
    let mut cmd = cli.process();
    let mut child = cmd
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chatorical");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr).expect("stderr");
    }
    (status.code(), peak, stderr)
}

const MILLION: u64 = 1_000_000;

fn a_million_entries_export_in_flat_memory(backend: Backend) {
    let (cli, tenant) = installation(backend);
    bulk_insert(&cli, MILLION, &tenant);
    let dir = cli.data_dir().to_path_buf();

    // The same binary exporting 10,000 entries: its footprint without the volume.
    let small = dir.join("small.jsonl");
    let (code, small_peak, err) = run_measured(
        &cli,
        &[
            "audit",
            "export",
            "--platform",
            "--since",
            "2026-11-01",
            "--until",
            "2026-11-01T00:00:10.001Z",
            "--out",
            small.to_str().expect("path"),
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "small export failed: {err}");
    let small_lines = std::io::BufReader::new(std::fs::File::open(&small).expect("small file"))
        .lines()
        .count();
    assert_eq!(
        small_lines, 10_000,
        "entries at or after since, before until"
    );

    let big = dir.join("all.jsonl");
    let started = Instant::now();
    let (code, big_peak, err) = run_measured(
        &cli,
        &[
            "audit",
            "export",
            "--platform",
            "--since",
            "2026-11-01",
            "--out",
            big.to_str().expect("path"),
            "--json",
        ],
    );
    let took = started.elapsed();
    assert_eq!(code, Some(0), "export failed: {err}");
    eprintln!(
        "{backend:?}: 1M entries exported in {took:?}; peak RSS {big_peak} KiB (10k entries: {small_peak} KiB)"
    );
    // Flat memory: a million entries cost the process what ten thousand do, give or take
    // a page cache and a write buffer. (The absolute figure is the debug build's baseline,
    // about 42-45 MiB here, most of it the binary's own pages and the runtime.)
    assert!(
        big_peak < small_peak + 8 * 1024,
        "RSS grows with the export: {big_peak} KiB for 1M entries vs {small_peak} KiB for 10k"
    );
    assert!(
        big_peak < 64 * 1024,
        "exporting 1M entries peaked at {big_peak} KiB RSS"
    );

    // The file holds every entry once, in order, each line a whole entry. The installation's
    // own `tenant.created` entry comes first.
    let file = std::io::BufReader::new(std::fs::File::open(&big).expect("export file"));
    let mut count = 0u64;
    let mut last_id = 0i64;
    for (i, line) in file.lines().enumerate() {
        let line = line.expect("line");
        let id: i64 = line
            .strip_prefix("{\"id\":")
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("line {i} does not start with an id: {line}"));
        assert!(id > last_id, "ids in order: {id} after {last_id}");
        last_id = id;
        if i % 99_991 == 1 || i == MILLION as usize {
            let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            let g = v["target"]
                .as_str()
                .and_then(|t| t.strip_prefix("cv_"))
                .and_then(|n| n.parse::<u64>().ok())
                .expect("bulk target");
            assert_eq!(v["changes"]["conversations"], g);
            assert_eq!(v["tenant_id"].is_null(), g % 2 == 1);
            assert_eq!(v["action"], "retention.purged");
        }
        count += 1;
    }
    assert_eq!(count, MILLION + 1, "every entry once");
}

fn a_killed_export_leaves_no_file_and_keeps_the_old_one(backend: Backend) {
    let (cli, tenant) = installation(backend);
    bulk_insert(&cli, 300_000, &tenant);
    let dir = cli.data_dir().to_path_buf();
    let out = dir.join("audit.csv");
    std::fs::write(&out, "the previous export\n").expect("write");
    let before: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();

    let mut cmd = cli.process();
    let mut child = cmd
        .args([
            "audit",
            "export",
            "--platform",
            "--since",
            "2020-01-01",
            "--format",
            "csv",
            "--out",
            out.to_str().expect("path"),
            "--json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Kill it once it has written a good part of the file (its write counter).
    let io_path = format!("/proc/{}/io", child.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let written = std::fs::read_to_string(&io_path)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("wchar:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        if written > 4 << 20 {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the export ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "the export wrote nothing");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    assert_eq!(
        std::fs::read_to_string(&out).expect("old export"),
        "the previous export\n",
        "a killed export leaves the previous file as it was"
    );
    let after: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let mut new: Vec<_> = after.iter().filter(|f| !before.contains(f)).collect();
    // SQLite may add its journal files next to the database.
    new.retain(|f| !f.to_string_lossy().starts_with("chatorical.db"));
    assert!(new.is_empty(), "a killed export left files behind: {new:?}");

    // A complete export replaces it.
    let report = cli.json(&[
        "audit",
        "export",
        "--tenant",
        "acme",
        "--since",
        "2020-01-01",
        "--format",
        "csv",
        "--out",
        out.to_str().expect("path"),
    ]);
    assert_eq!(
        report["rows"], 150_001,
        "the tenant's half plus tenant.created"
    );
    let text = std::fs::read_to_string(&out).expect("new export");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("id,at,tenant_id,actor,actor_name,action,target,request_id,changes")
    );
    assert_eq!(lines.count(), 150_001);
}

fn export_and_list_select_by_tenant_and_time(backend: Backend) {
    let (cli, tenant) = installation(backend);
    bulk_insert(&cli, 1_000, &tenant);
    let dir = cli.data_dir().to_path_buf();

    // Bad input: exit 1 with a clear error, no file.
    let out = dir.join("x.jsonl");
    let out_s = out.to_str().expect("path");
    let err = cli.fails(&[
        "audit",
        "export",
        "--platform",
        "--since",
        "yesterday",
        "--out",
        out_s,
    ]);
    assert!(
        err.contains("validation_failed") && err.contains("yesterday"),
        "{err}"
    );
    let err = cli.fails(&[
        "audit",
        "export",
        "--tenant",
        "nope",
        "--since",
        "2020-01-01",
        "--out",
        out_s,
    ]);
    assert!(err.contains("not_found"), "{err}");
    let missing = dir.join("no/such/dir/x.jsonl");
    let err = cli.fails(&[
        "audit",
        "export",
        "--platform",
        "--since",
        "2020-01-01",
        "--out",
        missing.to_str().expect("path"),
    ]);
    assert!(err.contains("cannot write"), "{err}");
    assert!(!out.exists());
    cli.usage_error(&["audit", "export", "--since", "2020-01-01", "--out", out_s]);

    // A window of one tenant's entries: at >= since and at < until.
    let report = cli.json(&[
        "audit",
        "export",
        "--tenant",
        "acme",
        "--since",
        "2026-11-01T00:00:00.101Z",
        "--until",
        "2026-11-01T00:00:00.201Z",
        "--out",
        out_s,
    ]);
    assert_eq!(report["rows"], 50);
    let text = std::fs::read_to_string(&out).expect("file");
    let targets: Vec<u64> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            assert_eq!(v["tenant_id"], tenant.as_str());
            v["target"].as_str().expect("target")[3..]
                .parse()
                .expect("number")
        })
        .collect();
    assert_eq!(
        targets,
        (101..=200).filter(|g| g % 2 == 0).collect::<Vec<_>>()
    );
    let meta = std::fs::metadata(&out).expect("meta");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600,
        "an export is private to its owner"
    );

    // `audit list` pages through the same entries with its cursor.
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let mut args = vec![
            "audit",
            "list",
            "--tenant",
            "acme",
            "--action",
            "retention.purged",
            "--limit",
            "200",
        ];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let page = cli.json(&args);
        for e in page["entries"].as_array().expect("entries") {
            seen.push(e["id"].as_i64().expect("id"));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 500, "the tenant's half of the bulk entries");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, each once");
    let first = cli.json(&["audit", "list", "--action", "tenant.created"]);
    let entries = first["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("cli:") && a.contains('@')),
        "an operator is recorded as cli:<user>@<host>: {}",
        entries[0]["actor"]
    );
    let err = cli.fails(&["audit", "list", "--action", "no.such"]);
    assert!(err.contains("validation_failed"), "{err}");
}
