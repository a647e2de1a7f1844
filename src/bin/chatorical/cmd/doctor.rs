//! `chatorical doctor`: the checks an operator runs first, as a table (or `--json`);
//! exit 1 when any check fails.

use std::process::ExitCode;

use clap::Args;

use chatorical::doctor::{self, Report};

use crate::cli::Global;
use crate::output;

/// Arguments of `doctor`.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {}

/// Run every check and print the report.
pub(crate) async fn run(g: &Global, _args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = match super::load(g, None) {
        Ok(loaded) => {
            chatorical::telemetry::init(loaded.settings.log.format, "error");
            doctor::run(&loaded.settings, loaded.file.as_deref()).await
        }
        Err(e) => Report::invalid_config(&format!("{e:#}")),
    };
    if g.json {
        output::json(&report)?;
    } else {
        let mut t = output::table(&["", "check", "detail", "hint"]);
        for c in &report.checks {
            t.add_row(vec![
                c.outcome.mark().to_string(),
                c.name.clone(),
                c.detail.clone(),
                output::or_dash(c.hint.as_deref()),
            ]);
        }
        output::print_table(&t);
        let failed = report
            .checks
            .iter()
            .filter(|c| c.outcome == doctor::Outcome::Failed)
            .count();
        if failed == 0 {
            println!("All checks passed.");
        } else {
            println!("{failed} check(s) failed.");
        }
    }
    Ok(if report.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
