//! `chatorical billing status`.

use std::process::ExitCode;

use clap::Subcommand;

use chatorical::{billing::subscription, tenancy};

use crate::cli::Global;
use crate::output;

/// Billing commands.
#[derive(Debug, Subcommand)]
pub(crate) enum BillingCommand {
    /// Where a tenant stands with billing: its plan, its Stripe subscription (status,
    /// interval, end of the paid period, cancelled at period end) and, after a failed
    /// payment, the grace period's end or the downgrade to free.
    Status {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
}

/// Run a billing command.
pub(crate) async fn run(g: &Global, cmd: BillingCommand) -> anyhow::Result<ExitCode> {
    let (_settings, db) = super::open(g).await?;
    match cmd {
        BillingCommand::Status { tenant } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let status = subscription::status(&db, &tenancy::Caller::Operator, &tenant).await?;
            if g.json {
                output::json(&status)?;
            } else {
                let mut t = output::table(&["field", "value"]);
                let rows = [
                    ("tenant", status.tenant.clone()),
                    ("plan", status.plan.clone()),
                    (
                        "subscription plan",
                        output::or_dash(status.subscription_plan.as_deref()),
                    ),
                    ("status", status.status.as_str().to_string()),
                    (
                        "interval",
                        output::or_dash(status.interval.map(|i| i.as_str())),
                    ),
                    (
                        "current period end",
                        output::or_dash(status.current_period_end.as_deref()),
                    ),
                    (
                        "cancel at period end",
                        status.cancel_at_period_end.to_string(),
                    ),
                    ("dunning", status.dunning.as_str().to_string()),
                    (
                        "grace until",
                        output::or_dash(status.grace_until.as_deref()),
                    ),
                    (
                        "stripe customer",
                        output::or_dash(status.stripe_customer_id.as_deref()),
                    ),
                    (
                        "stripe subscription",
                        output::or_dash(status.stripe_subscription_id.as_deref()),
                    ),
                ];
                for (field, value) in rows {
                    t.add_row(vec![field.to_string(), value]);
                }
                output::print_table(&t);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
