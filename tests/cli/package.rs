//! The Debian package (`scripts/package`): built from the debug binary the tests already
//! have (no release build), its files, conffiles and maintainer scripts, and lintian.
//! Skipped, with a message, where cargo-deb or lintian is missing.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The target dir of the binary under test (`<target>/debug/chatorical`).
fn target_dir() -> PathBuf {
    let bin = assert_cmd::cargo::cargo_bin("chatorical");
    let profile_dir = bin.parent().expect("the profile dir");
    assert_eq!(
        profile_dir.file_name().and_then(|n| n.to_str()),
        Some("debug"),
        "the tests run the dev profile's binary: {}",
        bin.display()
    );
    profile_dir.parent().expect("the target dir").to_path_buf()
}

#[test]
fn the_debian_package_holds_everything_and_lintian_finds_no_errors() {
    if !have("cargo", &["deb", "--version"]) {
        eprintln!(
            "SKIPPED the_debian_package…: cargo-deb is not installed (cargo install --locked cargo-deb)"
        );
        return;
    }
    if !have("lintian", &["--version"]) {
        eprintln!(
            "SKIPPED the_debian_package…: lintian is not installed (apt-get install lintian)"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::TempDir::new().expect("temp dir");
    let printed = run(Command::new(root.join("scripts/package"))
        .args(["--profile", "dev", "--out-dir"])
        .arg(out.path())
        .args(["--", "--fast"])
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(root));
    let deb = PathBuf::from(printed.trim());
    let name = deb
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name");
    assert!(
        name.starts_with(&format!("chatorical_{}-", env!("CARGO_PKG_VERSION")))
            && name.ends_with(".deb"),
        "scripts/package prints the .deb: {printed:?}"
    );
    assert_eq!(deb.parent(), Some(out.path()), "written into --out-dir");

    // The files, with their modes.
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let entry = |path: &str| -> Option<&str> {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" .{path}")) || l.ends_with(&format!(" ./{path}")))
    };
    for path in [
        "/usr/bin/chatorical",
        "/usr/share/man/man1/chatorical.1.gz",
        "/usr/share/man/man1/chatorical-backup.1.gz",
        "/usr/share/man/man1/chatorical-restore.1.gz",
        "/usr/share/man/man1/chatorical-serve.1.gz",
        "/usr/share/bash-completion/completions/chatorical",
        "/usr/share/zsh/vendor-completions/_chatorical",
        "/usr/share/fish/vendor_completions.d/chatorical.fish",
        "/usr/share/doc/chatorical/copyright",
    ] {
        assert!(
            entry(path).is_some(),
            "{path} is in the package:\n{listing}"
        );
    }
    let man_pages = std::fs::read_dir(root.join("man")).expect("man/").count();
    assert_eq!(
        listing
            .lines()
            .filter(|l| l.contains("/usr/share/man/man1/chatorical"))
            .count(),
        man_pages,
        "every page of man/ is packaged"
    );
    assert!(
        entry("/usr/bin/chatorical").is_some_and(|l| l.starts_with("-rwxr-xr-x")),
        "the binary is executable"
    );
    for unit in ["chatorical.service", "chatorical-worker.service"] {
        let found = entry(&format!("/lib/systemd/system/{unit}"))
            .or_else(|| entry(&format!("/usr/lib/systemd/system/{unit}")));
        assert!(
            found.is_some(),
            "{unit} in the systemd unit dir:\n{listing}"
        );
    }
    for conf in ["chatorical.toml", "chatorical.env"] {
        let line = entry(&format!("/etc/chatorical/{conf}"))
            .unwrap_or_else(|| panic!("/etc/chatorical/{conf} is packaged:\n{listing}"));
        assert!(line.starts_with("-rw-r-----"), "{conf} is 0640: {line}");
    }

    // Conffiles, dependencies, maintainer scripts.
    let control_dir = out.path().join("control");
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(&control_dir));
    let read =
        |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let conffiles = read(&control_dir.join("conffiles"));
    assert_eq!(
        {
            let mut c: Vec<&str> = conffiles.lines().collect();
            c.sort_unstable();
            c
        },
        [
            "/etc/chatorical/chatorical.env",
            "/etc/chatorical/chatorical.toml"
        ],
        "conffiles"
    );
    let control = read(&control_dir.join("control"));
    assert!(
        control
            .lines()
            .any(|l| l.starts_with("Depends:") && l.contains("adduser")),
        "Depends on adduser (the postinst uses it):\n{control}"
    );
    let postinst = read(&control_dir.join("postinst"));
    for needle in [
        "adduser --system",
        "/var/lib/chatorical",
        "chgrp chatorical",
        "chmod 0640",
    ] {
        assert!(postinst.contains(needle), "postinst: {needle}");
    }
    for script in ["postinst", "prerm", "postrm"] {
        let text = read(&control_dir.join(script));
        assert!(
            !text.contains("systemctl start") && !text.contains("systemctl enable"),
            "{script} starts or enables nothing"
        );
    }

    // The installed units run the installed binary as the user the postinst creates,
    // on the data dir the installed configuration names.
    let tree = out.path().join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
    let unit_dir = ["lib/systemd/system", "usr/lib/systemd/system"]
        .iter()
        .map(|d| tree.join(d))
        .find(|d| d.is_dir())
        .expect("the unit dir");
    for unit in ["chatorical.service", "chatorical-worker.service"] {
        let text = read(&unit_dir.join(unit));
        let exec = text
            .lines()
            .find(|l| l.starts_with("ExecStart="))
            .expect("ExecStart");
        let program = exec["ExecStart=".len()..].split(' ').next().unwrap_or("");
        assert!(
            tree.join(program.trim_start_matches('/')).is_file(),
            "{unit}: {program} is the packaged binary"
        );
        assert!(
            text.contains("\nUser=chatorical\n"),
            "{unit} runs as chatorical"
        );
        assert!(
            text.contains("EnvironmentFile=-/etc/chatorical/chatorical.env"),
            "{unit} reads the packaged env file"
        );
        assert!(
            text.contains("CHATORICAL_SERVER__DATA_DIR=/var/lib/chatorical"),
            "{unit} uses /var/lib/chatorical"
        );
    }
    let config = read(&tree.join("etc/chatorical/chatorical.toml"));
    assert!(
        config.contains("\ndata_dir = \"/var/lib/chatorical\"\n"),
        "the packaged configuration names the data dir (operator commands find the database)"
    );
    let env = read(&tree.join("etc/chatorical/chatorical.env"));
    assert!(
        env.lines().all(|l| l.is_empty() || l.starts_with('#')),
        "nothing is set by the packaged env file (no placeholder secret is ever used):\n{env}"
    );

    // lintian: no errors; warnings are listed.
    let out = Command::new("lintian")
        .arg(&deb)
        .output()
        .expect("run lintian");
    let report = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{report}");
    let warnings: Vec<&str> = report.lines().filter(|l| l.starts_with("W:")).collect();
    eprintln!(
        "lintian: {} warning(s)\n{}",
        warnings.len(),
        warnings.join("\n")
    );
}
