//! `chatorical templates list|set|delete|preview`: a round trip in tables and JSON, and
//! errors that name the position.

use serde_json::json;

use crate::on_both_backends;
use crate::support::{Backend, Cli, array, str_field};

on_both_backends!(templates_round_trip, templates_errors_name_the_position);

fn templates_round_trip(backend: Backend) {
    let cli = Cli::new(backend);
    cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    cli.json(&["tenants", "create", "--slug", "other", "--name", "Other"]);

    let stored = cli.json(&[
        "templates",
        "set",
        "--tenant",
        "acme",
        "--key",
        "widget.title",
        "--locale",
        "DE-at",
        "--body",
        "Servus!",
    ]);
    assert_eq!(str_field(&stored, "key"), "widget.title");
    assert_eq!(str_field(&stored, "locale"), "de-AT");
    assert_eq!(str_field(&stored, "body"), "Servus!");

    // A body from a file.
    let file = cli.data_dir().join("rate.txt");
    std::fs::write(&file, "Langsam! Noch {{ retry_after }} s").expect("write body file");
    let file = file.to_str().expect("UTF-8 path");
    let table = cli.ok(&[
        "templates",
        "set",
        "--tenant",
        "acme",
        "--key",
        "widget.rate_limited",
        "--locale",
        "de",
        "--body-file",
        file,
    ]);
    assert!(table.contains("widget.rate_limited"), "{table}");

    // Listing, in JSON and as a table; filters; the other tenant has none.
    let all = cli.json(&["templates", "list", "--tenant", "acme"]);
    let pairs: Vec<(&str, &str)> = array(&all)
        .iter()
        .map(|t| (str_field(t, "key"), str_field(t, "locale")))
        .collect();
    assert_eq!(
        pairs,
        [("widget.rate_limited", "de"), ("widget.title", "de-AT")]
    );
    let only = cli.json(&["templates", "list", "--tenant", "acme", "--locale", "de-at"]);
    assert_eq!(array(&only).len(), 1, "{only:#}");
    assert_eq!(str_field(&array(&only)[0], "key"), "widget.title");
    let by_key = cli.json(&[
        "templates",
        "list",
        "--tenant",
        "acme",
        "--key",
        "widget.rate_limited",
    ]);
    assert_eq!(array(&by_key).len(), 1, "{by_key:#}");
    assert_eq!(
        array(&cli.json(&["templates", "list", "--tenant", "other"])).len(),
        0
    );
    let table = cli.ok(&["templates", "list", "--tenant", "acme"]);
    for needle in [
        "key",
        "locale",
        "widget.title",
        "de-AT",
        "Servus!",
        "Langsam!",
    ] {
        assert!(table.contains(needle), "{needle} in\n{table}");
    }

    // Preview: fallback and variables.
    let p = cli.json(&[
        "templates",
        "preview",
        "--tenant",
        "acme",
        "--key",
        "widget.rate_limited",
        "--locale",
        "de-AT",
        "--var",
        "retry_after=5",
        "--var",
        "unused=x",
    ]);
    assert_eq!(
        p,
        json!({"key": "widget.rate_limited", "locale_used": "de", "source": "override", "text": "Langsam! Noch 5 s"})
    );
    let p = cli.json(&[
        "templates",
        "preview",
        "--tenant",
        "other",
        "--key",
        "widget.title",
        "--locale",
        "de-AT",
    ]);
    assert_eq!(p["text"], "Schreiben Sie uns");
    assert_eq!(p["locale_used"], "de");
    assert_eq!(p["source"], "builtin");
    let p = cli.json(&[
        "templates",
        "preview",
        "--tenant",
        "acme",
        "--key",
        "widget.unread",
        "--locale",
        "fr",
        "--body",
        "{{count}} non lus",
        "--var",
        "count=3",
    ]);
    assert_eq!(p["text"], "3 non lus");
    assert_eq!(p["source"], "body");
    let table = cli.ok(&[
        "templates",
        "preview",
        "--tenant",
        "acme",
        "--key",
        "widget.title",
        "--locale",
        "de-AT",
    ]);
    assert!(
        table.contains("Servus!") && table.contains("override"),
        "{table}"
    );

    // Delete, then it is gone (and deleting again fails).
    let deleted = cli.json(&[
        "templates",
        "delete",
        "--tenant",
        "acme",
        "--key",
        "widget.title",
        "--locale",
        "de-AT",
    ]);
    assert_eq!(str_field(&deleted, "body"), "Servus!");
    let out = cli.ok(&[
        "templates",
        "delete",
        "--tenant",
        "acme",
        "--key",
        "widget.rate_limited",
        "--locale",
        "de",
    ]);
    assert!(out.contains("deleted widget.rate_limited (de)"), "{out}");
    assert_eq!(
        array(&cli.json(&["templates", "list", "--tenant", "acme"])).len(),
        0
    );
    let err = cli.fails(&[
        "templates",
        "delete",
        "--tenant",
        "acme",
        "--key",
        "widget.title",
        "--locale",
        "de-AT",
    ]);
    assert!(err.contains("not_found"), "{err}");
}

fn templates_errors_name_the_position(backend: Backend) {
    let cli = Cli::new(backend);
    cli.json(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    let set = |key: &str, locale: &str, body: &str| {
        cli.fails(&[
            "templates",
            "set",
            "--tenant",
            "acme",
            "--key",
            key,
            "--locale",
            locale,
            "--body",
            body,
        ])
    };

    let err = set("widget.title", "en", "Hello {{ name");
    assert!(err.contains("validation_failed"), "{err}");
    assert!(
        err.contains("not closed") && err.contains("at character 6"),
        "{err}"
    );
    let err = set(
        "widget.rate_limited",
        "de",
        "Warte {{retry_after}} {{ sekunden }}",
    );
    assert!(
        err.contains("unknown variable `sekunden`") && err.contains("at character 22"),
        "{err}"
    );
    assert!(err.contains("allowed: retry_after"), "{err}");
    let err = set("widget.nope", "en", "x");
    assert!(err.contains("unknown string key `widget.nope`"), "{err}");
    let err = set("widget.title", "english", "x");
    assert!(err.contains("locale `english`"), "{err}");
    let err = cli.fails(&[
        "templates",
        "preview",
        "--tenant",
        "acme",
        "--key",
        "widget.title",
        "--locale",
        "en",
        "--body",
        "{{}}",
    ]);
    assert!(err.contains("at character 0"), "{err}");
    let err = cli.fails(&["templates", "list", "--tenant", "nobody"]);
    assert!(err.contains("tenant not found"), "{err}");
    // Nothing was stored.
    assert_eq!(
        array(&cli.json(&["templates", "list", "--tenant", "acme"])).len(),
        0
    );

    // Usage errors: no body at all, both bodies, a malformed --var.
    cli.usage_error(&[
        "templates",
        "set",
        "--tenant",
        "acme",
        "--key",
        "widget.title",
        "--locale",
        "en",
    ]);
    cli.usage_error(&[
        "templates",
        "set",
        "--tenant",
        "acme",
        "--key",
        "widget.title",
        "--locale",
        "en",
        "--body",
        "a",
        "--body-file",
        "b",
    ]);
    cli.usage_error(&[
        "templates",
        "preview",
        "--tenant",
        "acme",
        "--key",
        "widget.title",
        "--locale",
        "en",
        "--var",
        "novalue",
    ]);
    // The help lists the keys and their variables.
    let help = cli.ok(&["templates", "--help"]);
    assert!(
        help.contains("widget.rate_limited ({{retry_after}})"),
        "{help}"
    );
}
