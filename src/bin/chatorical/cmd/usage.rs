//! `chatorical usage summarize|show`.

use std::process::ExitCode;

use clap::Subcommand;

use chatorical::{cluster::Cluster, quota::Quotas, tenancy, usage};

use crate::cli::Global;
use crate::output;

/// Usage commands.
#[derive(Debug, Subcommand)]
pub(crate) enum UsageCommand {
    /// Fold the Redis counters into the database now (`serve` and `worker` do it every
    /// minute; without Redis the counts are in the database already).
    Summarize,
    /// A tenant's usage per UTC day: conversations started, messages in and out,
    /// Telegram topics created; staging's apart, below.
    Show {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// The last this many days, today included (1-366).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=366))]
        days: u32,
    },
}

/// Run a usage command.
pub(crate) async fn run(g: &Global, cmd: UsageCommand) -> anyhow::Result<ExitCode> {
    let (settings, db) = super::open(g).await?;
    match cmd {
        UsageCommand::Summarize => {
            let cluster = Cluster::connect(&settings.redis)?;
            let rows = usage::summarize(&db, cluster.as_ref()).await?;
            if g.json {
                output::json(&serde_json::json!({
                    "redis": cluster.is_some(),
                    "rows": rows,
                }))?;
            } else if cluster.is_some() {
                println!("{rows} row(s) written to usage_daily");
            } else {
                println!("no Redis configured: counts are in the database already");
            }
        }
        UsageCommand::Show { tenant, days } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            // Today's counts: Redis's when configured (every node's), else the day's
            // summary in the database.
            let quotas = Quotas::new(
                db.clone(),
                Cluster::connect(&settings.redis)?,
                settings.redis.limits_fail_open,
            );
            let report = usage::show(
                &db,
                &quotas,
                &chatorical::tenancy::Caller::Operator,
                &tenant,
                days,
            )
            .await?;
            if g.json {
                output::json(&report)?;
            } else {
                let mut t = output::table(&[
                    "day",
                    "conversations",
                    "messages in",
                    "messages out",
                    "topics",
                    "renames",
                ]);
                let row = |label: String, c: &usage::UsageCounts| {
                    vec![
                        label,
                        c.conversations_started.to_string(),
                        c.messages_inbound.to_string(),
                        c.messages_outbound.to_string(),
                        c.topics_created.to_string(),
                        c.topic_renames.to_string(),
                    ]
                };
                for d in &report.days {
                    t.add_row(row(d.day.clone(), &d.counts));
                }
                t.add_row(row("total".into(), &report.totals));
                output::print_table(&t);
                if report.staging.totals != usage::UsageCounts::default() {
                    println!("staging (counted apart, never against the plan):");
                    let mut st = output::table(&[
                        "day",
                        "conversations",
                        "messages in",
                        "messages out",
                        "topics",
                        "renames",
                    ]);
                    for d in &report.staging.days {
                        if d.counts != usage::UsageCounts::default() {
                            st.add_row(row(d.day.clone(), &d.counts));
                        }
                    }
                    st.add_row(row("total".into(), &report.staging.totals));
                    output::print_table(&st);
                }
                println!(
                    "plan: {} ({})",
                    output::safe(&report.plan.name),
                    report.plan.code
                );
                let mut q = output::table(&["quota", "limit", "used", "remaining", "resets at"]);
                let or_unlimited =
                    |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
                for u in &report.quotas {
                    q.add_row(vec![
                        u.quota.clone(),
                        or_unlimited(u.limit),
                        u.used.to_string(),
                        or_unlimited(u.remaining),
                        u.resets_at.clone().unwrap_or_else(|| "-".into()),
                    ]);
                }
                output::print_table(&q);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
