//! `chatorical outbox list|retry|status`.

use std::process::ExitCode;

use clap::Subcommand;

use chatorical::{
    outbox::{
        OutboxStatus,
        admin::{self, ItemFilter},
        backlog,
    },
    tenancy::{self, Caller},
};

use crate::cli::Global;
use crate::output::{self, or_dash};

/// Outbox commands.
#[derive(Debug, Subcommand)]
pub(crate) enum OutboxCommand {
    /// List a tenant's outbox items, newest first (payload texts redacted).
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// queued, in_flight, delivered, dead or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Show payload texts.
        #[arg(long)]
        reveal: bool,
    },
    /// Put a dead item back in the queue.
    Retry {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// The item id (ob_…).
        id: String,
    },
    /// The backlog per tenant and lane (Telegram group): items waiting, how long the
    /// oldest has waited, and the estimated drain time at the lane's budget (items ÷
    /// calls a minute its budgets allow; a lower bound).
    Status {
        /// Only this tenant (slug); every tenant when absent.
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// Run an outbox command.
pub(crate) async fn run(g: &Global, cmd: OutboxCommand) -> anyhow::Result<ExitCode> {
    let (settings, db) = super::open(g).await?;
    match cmd {
        OutboxCommand::List {
            tenant,
            status,
            limit,
            reveal,
        } => {
            let status = status
                .as_deref()
                .map(|s| OutboxStatus::parse("--status", s))
                .transpose()?;
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let filter = ItemFilter {
                status,
                limit,
                reveal,
            };
            let items = admin::list_items(&db, &Caller::Operator, &tenant, filter, 1000).await?;
            if g.json {
                output::json(&items)?;
            } else {
                let mut t = output::table(&[
                    "id",
                    "kind",
                    "status",
                    "attempts",
                    "next attempt",
                    "last error",
                    "payload",
                ]);
                for i in &items {
                    t.add_row(vec![
                        i.id.clone(),
                        i.kind.clone(),
                        i.status.clone(),
                        i.attempts.to_string(),
                        i.next_attempt_at.clone(),
                        or_dash(i.last_error.as_deref()),
                        i.payload.to_string(),
                    ]);
                }
                output::print_table(&t);
            }
        }
        OutboxCommand::Status { tenant } => {
            let tenant = match tenant {
                Some(slug) => Some(tenancy::tenant_by_slug(&db, &slug).await?),
                None => None,
            };
            let summary =
                backlog::summary(&db, &Caller::Operator, &settings.worker, tenant.as_ref()).await?;
            if g.json {
                output::json(&summary)?;
            } else if summary.lanes.is_empty() {
                println!("no backlog: nothing waits to be delivered");
            } else {
                let mut t = output::table(&[
                    "tenant",
                    "lane",
                    "items",
                    "in flight",
                    "oldest waited",
                    "budget/min",
                    "drains in",
                    "notice",
                ]);
                for l in &summary.lanes {
                    t.add_row(vec![
                        output::safe(&l.tenant),
                        l.lane.clone(),
                        l.items.to_string(),
                        l.in_flight.to_string(),
                        format!("{:.1} s", l.oldest_age_secs),
                        format!("{:.0}", l.budget_per_min),
                        format!("~{:.0} s", l.drain_secs),
                        if l.notice_posted { "posted" } else { "-" }.to_string(),
                    ]);
                }
                output::print_table(&t);
            }
        }
        OutboxCommand::Retry { tenant, id } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            admin::retry_item(&db, &Caller::Operator, &tenant, &id).await?;
            if g.json {
                output::json(&serde_json::json!({ "id": id, "status": "queued" }))?;
            } else {
                println!("{id} queued again");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
