//! `chatorical tenants env list|show|put`: a tenant's environments (production,
//! staging), each with its own widget key and allowed origins.

use std::process::ExitCode;

use clap::{ArgGroup, Subcommand};

use chatorical::{
    db::Db,
    domain::Environment,
    environments::{self, EnvironmentChange, EnvironmentView},
    tenancy::{self, Caller},
};

use crate::cli::Global;
use crate::output;

/// Environment commands.
#[derive(Debug, Subcommand)]
pub(crate) enum EnvCommand {
    /// List a tenant's environments: production, and staging once created.
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
    /// Show one environment of a tenant.
    Show {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// production or staging.
        #[arg(long, default_value = "staging", value_parser = parse_env)]
        env: Environment,
    },
    /// Create (staging, on first use) or change an environment: rotate its widget key,
    /// replace its allowed origins, give staging a Telegram forum group of its own.
    #[command(group(ArgGroup::new("group").args(["telegram_group", "no_telegram_group"])))]
    Put {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// production or staging.
        #[arg(long, default_value = "staging", value_parser = parse_env)]
        env: Environment,
        /// Give the environment a new widget key (the old one stops working at once).
        #[arg(long)]
        rotate_key: bool,
        /// Origin allowed to embed the environment's widget (repeatable; replaces the
        /// environment's list).
        #[arg(long = "origin", value_name = "URL")]
        origins: Vec<String>,
        /// Staging only: the chat id of a forum group of its own (the tenant's bot must
        /// be an admin there that may manage topics).
        #[arg(long, value_name = "CHAT_ID", allow_negative_numbers = true)]
        telegram_group: Option<i64>,
        /// Staging only: back to the tenant's group, topics prefixed "[staging] ".
        #[arg(long)]
        no_telegram_group: bool,
    },
}

/// An environment name on the command line.
pub(crate) fn parse_env(s: &str) -> Result<Environment, String> {
    Environment::parse("env", s).map_err(|e| e.message)
}

fn print_views(g: &Global, tenant: &str, views: &[EnvironmentView]) -> anyhow::Result<()> {
    if g.json {
        return output::json(&serde_json::json!({ "tenant": tenant, "environments": views }));
    }
    let mut t = output::table(&[
        "environment",
        "widget key",
        "allowed origins",
        "telegram group",
        "flags",
        "updated",
    ]);
    for v in views {
        let origins: Vec<&str> = v
            .settings
            .allowed_origins
            .iter()
            .map(|o| o.as_str())
            .collect();
        let flags: Vec<String> = v
            .settings
            .flags
            .iter()
            .map(|(k, on)| format!("{}={on}", output::safe(k)))
            .collect();
        let group = match (v.environment, v.telegram_group_chat_id) {
            (_, Some(id)) => id.to_string(),
            (Environment::Production, None) => "the tenant's".to_string(),
            (_, None) => "the tenant's ([staging] topics)".to_string(),
        };
        t.add_row(vec![
            v.environment.to_string(),
            v.widget_key.clone(),
            if origins.is_empty() {
                "-".into()
            } else {
                origins.join("\n")
            },
            group,
            if flags.is_empty() {
                "-".into()
            } else {
                flags.join("\n")
            },
            v.updated_at.clone(),
        ]);
    }
    output::print_table(&t);
    Ok(())
}

/// Run an environment command on the database `tenants` opened.
pub(crate) async fn run(g: &Global, db: &Db, cmd: EnvCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EnvCommand::List { tenant } => {
            let tenant = tenancy::tenant_by_slug(db, &tenant).await?;
            let list = environments::list(db, &Caller::Operator, &tenant).await?;
            print_views(g, &list.tenant, &list.environments)?;
        }
        EnvCommand::Show { tenant, env } => {
            let tenant = tenancy::tenant_by_slug(db, &tenant).await?;
            let view = environments::get(db, &Caller::Operator, &tenant, env).await?;
            if g.json {
                output::json(&view)?;
            } else {
                print_views(g, &tenant.slug, std::slice::from_ref(&view))?;
            }
        }
        EnvCommand::Put {
            tenant,
            env,
            rotate_key,
            origins,
            telegram_group,
            no_telegram_group,
        } => {
            let tenant = tenancy::tenant_by_slug(db, &tenant).await?;
            let change = EnvironmentChange {
                rotate_widget_key: rotate_key,
                allowed_origins: (!origins.is_empty()).then_some(origins),
                telegram_group_chat_id: match (telegram_group, no_telegram_group) {
                    (Some(id), _) => Some(Some(id)),
                    (None, true) => Some(None),
                    (None, false) => None,
                },
            };
            let (view, created) =
                environments::put(db, &Caller::Operator, &tenant, env, change).await?;
            if g.json {
                output::json(&serde_json::json!({ "created": created, "environment": view }))?;
            } else {
                if created {
                    println!("created the {env} environment of {}", tenant.slug);
                }
                print_views(g, &tenant.slug, std::slice::from_ref(&view))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
