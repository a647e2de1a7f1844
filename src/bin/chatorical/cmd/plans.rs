//! `chatorical plans sync|list|show|delete`.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, sync::OnceLock};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use chatorical::billing::{
    Billing,
    catalogue::{Progress, Stripe},
};
use chatorical::plans::{
    self, Plan,
    catalogue::{self, Action, Catalogue, SyncOptions, SyncReport},
};
use chatorical::tenancy::Caller;

use crate::cli::Global;
use crate::output;

/// Plan commands.
#[derive(Debug, Subcommand)]
pub(crate) enum PlansCommand {
    /// Make the database match a catalogue file (TOML, see config/plans.example.toml):
    /// create and update plans, and with --prune deactivate the ones the file lacks.
    /// All or nothing: an invalid file changes nothing. Plans are never deleted.
    ///
    /// With Stripe configured (billing.stripe.secret_key), then Stripe too: a Product per
    /// plan, a Price per plan and interval (found by lookup key chatorical_<code>_<month|year>;
    /// a changed amount gets a new Price and the old one is archived), an inactive plan's
    /// Product deactivated. Nothing is written when Stripe already matches. A Stripe error
    /// stops the sync (exit 1, naming the plan and Stripe's error code); run it again to
    /// finish. Progress goes to stderr: a bar on a terminal, plain lines otherwise.
    Sync {
        /// The catalogue file.
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// Show what would change (and the Stripe calls that would be made); write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Deactivate plans that are not in the file (their tenants keep them).
        #[arg(long)]
        prune: bool,
    },
    /// List plans.
    List,
    /// Show one plan.
    Show {
        /// The plan's code.
        code: String,
    },
    /// Delete a plan. A plan still used by tenants is refused unless --reassign moves
    /// them to another plan (in the same transaction). `free` is never deleted.
    Delete {
        /// The plan's code.
        code: String,
        /// Move the plan's tenants to this active plan first.
        #[arg(long, value_name = "CODE")]
        reassign: Option<String>,
    },
}

/// Run a plan command.
pub(crate) async fn run(g: &Global, cmd: PlansCommand) -> anyhow::Result<ExitCode> {
    let caller = Caller::Operator;
    match cmd {
        PlansCommand::Sync {
            file,
            dry_run,
            prune,
        } => {
            // A bad file fails before the database is even opened.
            let catalogue = Catalogue::load(&file)?;
            let (settings, db) = super::open(g).await?;
            let billing = Billing::from_settings(&settings.billing.stripe)?;
            let target = catalogue::Database::new(&db);
            let options = SyncOptions { dry_run, prune };
            let report = catalogue::sync(&caller, &catalogue, &target, options).await?;
            if !g.json {
                print_report(&report);
            }
            let Some(billing) = billing else {
                if g.json {
                    output::json(&with_stripe(&report, serde_json::Value::Null)?)?;
                } else {
                    println!(
                        "Stripe is not configured (billing.stripe.secret_key is unset): synced the database only."
                    );
                }
                return Ok(ExitCode::SUCCESS);
            };
            let display = SyncProgress::default();
            let progress = |p: Progress<'_>| display.show(p);
            let stripe = Stripe::new(&billing, &progress);
            let result = catalogue::sync(&caller, &catalogue, &stripe, options).await;
            display.finish();
            match result {
                Ok(stripe) => {
                    if g.json {
                        output::json(&with_stripe(&report, serde_json::to_value(&stripe)?)?)?;
                    } else {
                        println!();
                        print_report(&stripe);
                    }
                }
                Err(e) => {
                    if g.json {
                        let error = serde_json::json!({ "error": {
                            "code": e.code, "message": e.message, "details": e.details,
                        }});
                        output::json(&with_stripe(&report, error)?)?;
                    }
                    return Err(e.into());
                }
            }
        }
        PlansCommand::List => {
            let (_, db) = super::open(g).await?;
            let list = plans::list(&db, &caller).await?;
            if g.json {
                output::json(&list)?;
            } else {
                let mut t = output::table(&[
                    "code",
                    "name",
                    "active",
                    "EUR/month",
                    "EUR/year",
                    "limits",
                    "channels",
                    "features",
                ]);
                for p in &list {
                    t.add_row(vec![
                        p.code.to_string(),
                        p.name.clone(),
                        yes_no(p.active),
                        euros(p.price_month_cents),
                        euros(p.price_year_cents),
                        limits(p),
                        channels(p),
                        features(p),
                    ]);
                }
                output::print_table(&t);
            }
        }
        PlansCommand::Show { code } => {
            let (_, db) = super::open(g).await?;
            let p = plans::get(&db, &caller, &code).await?;
            if g.json {
                output::json(&p)?;
            } else {
                output::print_table(&detail(&p));
            }
        }
        PlansCommand::Delete { code, reassign } => {
            let (_, db) = super::open(g).await?;
            let deleted = plans::delete(&db, &caller, &code, reassign.as_deref()).await?;
            if g.json {
                output::json(&deleted)?;
            } else {
                println!("Deleted plan `{}`.", deleted.plan.code);
                if let Some(to) = &deleted.reassigned_to {
                    println!("Moved {} tenant(s) to `{to}`.", deleted.reassigned);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The database's report (as before Stripe existed) with `stripe`: Stripe's report,
/// `{"error": …}` when it stopped, or `null` when Stripe is not configured.
fn with_stripe(
    report: &SyncReport,
    stripe: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(report)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("stripe".into(), stripe);
    }
    Ok(value)
}

/// Progress of a Stripe sync on stderr: a bar on a terminal, plain lines otherwise.
#[derive(Default)]
struct SyncProgress {
    bar: OnceLock<ProgressBar>,
}

impl SyncProgress {
    fn show(&self, p: Progress<'_>) {
        let terminal = std::io::stderr().is_terminal();
        match p {
            Progress::Started { plans } => {
                if terminal {
                    let bar = ProgressBar::new(plans as u64).with_style(
                        ProgressStyle::with_template("stripe {bar:30} {pos}/{len} plans {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    let _ = self.bar.set(bar);
                } else {
                    eprintln!("stripe: syncing {plans} plan(s)");
                }
            }
            Progress::Call { code, call } => match self.bar.get() {
                Some(bar) => bar.set_message(format!("{code}: {}", output::safe(call))),
                None => eprintln!("stripe: {code}: {}", output::safe(call)),
            },
            Progress::PlanDone { code, action } => match self.bar.get() {
                Some(bar) => bar.inc(1),
                None => eprintln!("stripe: {code}: {}", action.as_str()),
            },
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

fn print_report(report: &SyncReport) {
    let with_calls = report.plans.iter().any(|p| !p.calls.is_empty());
    let mut header = vec!["plan", "action", "changes"];
    if with_calls {
        header.push("calls");
    }
    let mut t = output::table(&header);
    for p in &report.plans {
        let changes = match &p.action {
            Action::Updated { changes } => changes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        };
        let mut row = vec![p.code.to_string(), p.action.as_str().to_string(), changes];
        if with_calls {
            row.push(p.calls.join("\n"));
        }
        t.add_row(row);
    }
    output::print_table(&t);
    let file = output::safe(&report.file);
    let target = match report.target.as_str() {
        "stripe" => "Stripe".to_string(),
        other => format!("the {other}"),
    };
    if !report.changed {
        if report.target == "stripe" {
            println!(
                "Nothing changed: {target} already matches {file} (no changes, no write calls)."
            );
        } else {
            println!("Nothing changed: {target} already matches {file}.");
        }
        return;
    }
    let counts = ["created", "updated", "deactivated", "unchanged"]
        .map(|a| format!("{} {a}", report.count(a)))
        .join(", ");
    let calls: usize = report.plans.iter().map(|p| p.calls.len()).sum();
    let calls = if calls > 0 {
        format!(" ({calls} write call(s))")
    } else {
        String::new()
    };
    if report.dry_run {
        println!("Dry run, nothing written: {counts} in {target} from {file}{calls}.");
    } else {
        println!("{counts} in {target} from {file}{calls}.");
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// Cents as euros (`19.00`), `-` when not sold.
fn euros(cents: Option<i64>) -> String {
    cents.map_or_else(
        || "-".to_string(),
        |c| format!("{}.{:02}", c / 100, c % 100),
    )
}

fn limits(p: &Plan) -> String {
    p.limits
        .entries()
        .iter()
        .map(|(name, v)| format!("{name}: {}", limit(*v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn limit(v: Option<u32>) -> String {
    v.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

fn channels(p: &Plan) -> String {
    let on: Vec<&str> = [
        ("widget", p.channels.widget),
        ("telegram", p.channels.telegram),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    if on.is_empty() {
        "-".into()
    } else {
        on.join("\n")
    }
}

fn features(p: &Plan) -> String {
    if p.features.is_empty() {
        return "-".into();
    }
    p.features
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn detail(p: &Plan) -> comfy_table::Table {
    let mut t = output::table(&["field", "value"]);
    let mut row = |field: &str, value: String| {
        t.add_row(vec![field.to_string(), value]);
    };
    row("code", p.code.to_string());
    row("name", p.name.clone());
    row("active", yes_no(p.active));
    row("EUR/month", euros(p.price_month_cents));
    row("EUR/year", euros(p.price_year_cents));
    for (name, v) in p.limits.entries() {
        row(&format!("limits.{name}"), limit(v));
    }
    row("channels", channels(p));
    row("features", features(p));
    row("created", p.created_at.clone());
    row("updated", p.updated_at.clone());
    t
}
