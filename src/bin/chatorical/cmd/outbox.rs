//! `chatorical outbox list|retry`.

use std::process::ExitCode;

use clap::Subcommand;

use chatorical::{db::repo, domain::now_ms, error::Error, outbox::OutboxItemView, tenancy};

use crate::cli::Global;
use crate::output::{self, or_dash};

/// Outbox commands.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List a tenant's outbox items, newest first (payload texts redacted).
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// queued, in_flight, delivered or dead.
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
}

/// Run an outbox command.
pub async fn run(g: &Global, cmd: OutboxCommand) -> anyhow::Result<ExitCode> {
    let (_, db) = super::open(g).await?;
    match cmd {
        OutboxCommand::List {
            tenant,
            status,
            limit,
            reveal,
        } => {
            if let Some(s) = &status {
                anyhow::ensure!(
                    ["queued", "in_flight", "delivered", "dead"].contains(&s.as_str()),
                    "--status must be queued, in_flight, delivered or dead"
                );
            }
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let mut pc = db.conn().await?;
            let rows = repo::outbox::list(
                &mut pc.as_conn(),
                &tenant.id,
                status.as_deref(),
                limit.clamp(1, 1000),
            )
            .await?;
            let items: Vec<OutboxItemView> = rows
                .into_iter()
                .map(|r| OutboxItemView::from_row(r, reveal))
                .collect();
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
        OutboxCommand::Retry { tenant, id } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let mut pc = db.conn().await?;
            let mut conn = pc.as_conn();
            if !repo::outbox::retry_dead(&mut conn, &tenant.id, &id, now_ms()).await? {
                return Err(match repo::outbox::get(&mut conn, &tenant.id, &id).await? {
                    Some(row) => {
                        anyhow::anyhow!("only dead items can be retried; {id} is {}", row.status)
                    }
                    None => Error::not_found("outbox item").into(),
                });
            }
            if g.json {
                output::json(&serde_json::json!({ "id": id, "status": "queued" }))?;
            } else {
                println!("{id} queued again");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
