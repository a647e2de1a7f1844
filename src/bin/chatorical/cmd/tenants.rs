//! `chatorical tenants create|list|show|set-plan|validate|identity-secret|env`.

use std::process::ExitCode;

use clap::Subcommand;

use chatorical::tenancy::{self, Tenant};

use crate::cli::Global;
use crate::output;

/// Tenant commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TenantsCommand {
    /// Create a tenant (prints its widget key).
    Create {
        /// URL-safe unique name: 2-40 of a-z, 0-9, '-'.
        #[arg(long)]
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Origin allowed to embed the widget, e.g. https://shop.example (repeatable).
        #[arg(long = "origin", value_name = "URL")]
        origins: Vec<String>,
        /// The tenant's plan (an active plan's code); default `free`.
        #[arg(long, value_name = "CODE")]
        plan: Option<String>,
    },
    /// List tenants.
    List,
    /// Show one tenant.
    Show {
        /// The tenant's slug.
        slug: String,
    },
    /// Put a tenant on another plan (it must be active); takes effect at once.
    SetPlan {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        /// The plan's code.
        #[arg(long, value_name = "CODE")]
        plan: String,
    },
    /// Check a tenant end to end: bot, forum group, webhook, widget isolation, a test
    /// message through the outbox (needs a running server or worker). Exit 1 on any failure.
    Validate {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        /// Seconds to wait for the test message to be delivered.
        #[arg(long, default_value_t = 20)]
        wait: u64,
    },
    /// Generate a new identity verification secret (printed once; replaces the previous
    /// one, whose user hashes stop verifying). The host site's server computes
    /// user_hash = hex(HMAC-SHA256(secret, user id)).
    IdentitySecret {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
    },
    /// A tenant's environments (production, staging): widget keys, origins, Telegram group.
    #[command(subcommand)]
    Env(super::environments::EnvCommand),
}

/// Run a tenant command.
pub(crate) async fn run(g: &Global, cmd: TenantsCommand) -> anyhow::Result<ExitCode> {
    let (settings, db) = super::open(g).await?;
    match cmd {
        TenantsCommand::Env(c) => return super::environments::run(g, &db, c).await,
        TenantsCommand::IdentitySecret { tenant } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let key = chatorical::app::load_master_key(&settings)?;
            let secret = chatorical::identity::generate_secret(
                &db,
                &key,
                &tenancy::Caller::Operator,
                &tenant,
            )
            .await?;
            if g.json {
                output::json(&serde_json::json!({
                    "tenant": tenant.slug,
                    "identity_secret": secret.identity_secret,
                }))?;
            } else {
                println!(
                    "Identity secret for {} (shown once, store it on the site's server now):\n{}",
                    tenant.slug, secret.identity_secret
                );
            }
        }
        TenantsCommand::Validate { tenant, wait } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let key = std::sync::Arc::new(chatorical::app::load_master_key(&settings)?);
            let bots = chatorical::telegram::Bots::new(&settings.telegram, key)?;
            let checks = chatorical::telegram::validate::validate(
                &db,
                &bots,
                &tenant,
                &settings.configured_public_url(),
                std::time::Duration::from_secs(wait),
            )
            .await;
            let all_ok = checks.iter().all(|c| c.ok);
            if g.json {
                output::json(
                    &serde_json::json!({ "tenant": tenant.slug, "ok": all_ok, "checks": checks }),
                )?;
            } else {
                let mut t = output::table(&["check", "result", "detail"]);
                for c in &checks {
                    t.add_row(vec![
                        c.check.clone(),
                        if c.ok { "pass".into() } else { "FAIL".into() },
                        c.detail.clone(),
                    ]);
                }
                output::print_table(&t);
            }
            return Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        TenantsCommand::Create {
            slug,
            name,
            origins,
            plan,
        } => {
            let new = tenancy::NewTenant {
                slug,
                name,
                allowed_origins: origins,
                plan,
            };
            let t = tenancy::create_tenant(&db, &tenancy::Caller::Operator, new).await?;
            if g.json {
                output::json(&t)?;
            } else {
                output::print_table(&detail(&t));
            }
        }
        TenantsCommand::SetPlan { tenant, plan } => {
            let t =
                chatorical::plans::set_tenant_plan(&db, &tenancy::Caller::Operator, &tenant, &plan)
                    .await?;
            if g.json {
                output::json(&t)?;
            } else {
                output::print_table(&detail(&t));
            }
        }
        TenantsCommand::List => {
            let list = tenancy::list_tenants(&db, &tenancy::Caller::Operator).await?;
            if g.json {
                output::json(&list)?;
            } else {
                let mut t = output::table(&[
                    "slug",
                    "name",
                    "plan",
                    "widget key",
                    "allowed origins",
                    "created",
                ]);
                for x in &list {
                    t.add_row(vec![
                        x.slug.clone(),
                        x.name.clone(),
                        x.plan.clone(),
                        x.widget_key.clone(),
                        origins(x),
                        x.created_at.clone(),
                    ]);
                }
                output::print_table(&t);
            }
        }
        TenantsCommand::Show { slug } => {
            let t = tenancy::tenant_by_slug(&db, &slug).await?;
            if g.json {
                output::json(&t)?;
            } else {
                output::print_table(&detail(&t));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn origins(t: &Tenant) -> String {
    let list: Vec<&str> = t
        .settings
        .allowed_origins
        .iter()
        .map(|o| o.as_str())
        .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join("\n")
    }
}

fn detail(t: &Tenant) -> comfy_table::Table {
    let mut table = output::table(&["field", "value"]);
    table.add_row(vec!["id".to_string(), t.id.to_string()]);
    table.add_row(vec!["slug".to_string(), t.slug.clone()]);
    table.add_row(vec!["name".to_string(), t.name.clone()]);
    table.add_row(vec!["plan".to_string(), t.plan.clone()]);
    table.add_row(vec!["environment".to_string(), t.environment.to_string()]);
    table.add_row(vec!["widget key".to_string(), t.widget_key.clone()]);
    table.add_row(vec!["allowed origins".to_string(), origins(t)]);
    table.add_row(vec![
        "default locale".to_string(),
        t.settings.default_locale.clone(),
    ]);
    table.add_row(vec!["created".to_string(), t.created_at.clone()]);
    table
}
