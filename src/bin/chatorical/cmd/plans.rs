//! `chatorical plans sync|list|show|delete`.

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;

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
    Sync {
        /// The catalogue file.
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// Show what would change; write nothing.
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
            let (_, db) = super::open(g).await?;
            let target = catalogue::Database::new(&db);
            let options = SyncOptions { dry_run, prune };
            let report = catalogue::sync(&caller, &catalogue, &target, options).await?;
            if g.json {
                output::json(&report)?;
            } else {
                print_report(&report);
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

fn print_report(report: &SyncReport) {
    let mut t = output::table(&["plan", "action", "changes"]);
    for p in &report.plans {
        let changes = match &p.action {
            Action::Updated { changes } => changes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        };
        t.add_row(vec![
            p.code.to_string(),
            p.action.as_str().to_string(),
            changes,
        ]);
    }
    output::print_table(&t);
    let file = output::safe(&report.file);
    if !report.changed {
        println!(
            "Nothing changed: the {} already matches {file}.",
            report.target
        );
        return;
    }
    let counts = ["created", "updated", "deactivated", "unchanged"]
        .map(|a| format!("{} {a}", report.count(a)))
        .join(", ");
    if report.dry_run {
        println!(
            "Dry run, nothing written: {counts} in the {} from {file}.",
            report.target
        );
    } else {
        println!("{counts} in the {} from {file}.", report.target);
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
