//! `chatorical flags list|set|unset`: a tenant's feature flags per environment, over
//! the plan's features.

use std::process::ExitCode;

use clap::Subcommand;

use chatorical::{
    domain::Environment,
    environments::{self, Flag},
    tenancy::{self, Caller},
};

use super::environments::parse_env;
use crate::cli::Global;
use crate::output;

/// Feature flag commands.
#[derive(Debug, Subcommand)]
pub(crate) enum FlagsCommand {
    /// List an environment's flags, the plan's features and the effective set the
    /// widget session carries.
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// production or staging.
        #[arg(long, default_value = "production", value_parser = parse_env)]
        env: Environment,
    },
    /// Set a flag in an environment (overrides the plan's feature of that name).
    Set {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// production or staging.
        #[arg(long, default_value = "production", value_parser = parse_env)]
        env: Environment,
        /// Flag name: 1-64 of A-Z, a-z, 0-9, '_', '-', '.', ':'.
        name: String,
        /// on or off (true/false, yes/no, 1/0).
        #[arg(action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
        value: bool,
    },
    /// Unset a flag in an environment (the plan's feature of that name applies again).
    Unset {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// production or staging.
        #[arg(long, default_value = "production", value_parser = parse_env)]
        env: Environment,
        /// Flag name.
        name: String,
    },
}

fn on_off(v: Option<bool>) -> String {
    v.map_or("-".into(), |v| if v { "on".into() } else { "off".into() })
}

fn print_flag(g: &Global, flag: &Flag) -> anyhow::Result<()> {
    if g.json {
        return output::json(flag);
    }
    let source = serde_json::to_value(flag.source)?;
    let mut t = output::table(&["flag", "environment", "value", "source", "tenant", "plan"]);
    t.add_row(vec![
        output::safe(&flag.name),
        flag.environment.to_string(),
        on_off(Some(flag.value)),
        source.as_str().unwrap_or_default().to_string(),
        on_off(flag.tenant),
        on_off(flag.plan),
    ]);
    output::print_table(&t);
    Ok(())
}

/// Run a flags command.
pub(crate) async fn run(g: &Global, cmd: FlagsCommand) -> anyhow::Result<ExitCode> {
    let (_settings, db) = super::open(g).await?;
    match cmd {
        FlagsCommand::List { tenant, env } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let list = environments::flags(&db, &Caller::Operator, &tenant, env).await?;
            if g.json {
                output::json(&list)?;
            } else {
                let mut t = output::table(&["flag", "value", "tenant", "plan"]);
                for (name, value) in &list.effective {
                    t.add_row(vec![
                        output::safe(name),
                        on_off(Some(*value)),
                        on_off(list.flags.get(name).copied()),
                        on_off(list.plan.get(name).copied()),
                    ]);
                }
                output::print_table(&t);
                println!("environment: {}", list.environment);
            }
        }
        FlagsCommand::Set {
            tenant,
            env,
            name,
            value,
        } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let flag =
                environments::set_flag(&db, &Caller::Operator, &tenant, env, &name, Some(value))
                    .await?;
            print_flag(g, &flag)?;
        }
        FlagsCommand::Unset { tenant, env, name } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let flag =
                environments::set_flag(&db, &Caller::Operator, &tenant, env, &name, None).await?;
            print_flag(g, &flag)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
