//! `chatorical keys issue|list|revoke`.

use std::process::ExitCode;

use clap::{ArgGroup, Subcommand};

use chatorical::tenancy::{self, ApiKeyInfo, Caller};

use crate::cli::Global;
use crate::output::{self, or_dash};

/// API key commands.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Issue a key. The key is printed once and cannot be shown again.
    #[command(group(ArgGroup::new("owner").required(true).args(["tenant", "platform"])))]
    Issue {
        /// The tenant (slug) the key acts for.
        #[arg(long)]
        tenant: Option<String>,
        /// A platform key (manages tenants; acts for any tenant via the Chatorical-Tenant header).
        #[arg(long)]
        platform: bool,
        /// Scope such as conversations:read or keys:write (repeatable).
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
        /// Label.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime such as 30d or 12h.
        #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List keys (never the keys themselves).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id, and (by default) every key it issued.
    Revoke {
        /// The key id (key_…).
        id: String,
        /// Also revoke the keys this key issued, and the keys those issued (default true;
        /// `--cascade=false` revokes this key alone).
        #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
              default_missing_value = "true", action = clap::ArgAction::Set)]
        cascade: bool,
    },
}

/// Run a keys command.
pub(crate) async fn run(g: &Global, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let (_, db) = super::open(g).await?;
    match cmd {
        KeysCommand::Issue {
            tenant,
            platform: _,
            scopes,
            name,
            expires_in,
        } => {
            let request = tenancy::KeyRequest {
                tenant,
                scopes,
                name,
                expires_in,
            };
            let issued = tenancy::issue_key(&db, &Caller::Operator, request).await?;
            if g.json {
                output::json(&issued)?;
            } else {
                output::print_table(&list(std::slice::from_ref(&issued.info)));
                println!("\nKey (shown once, store it now):\n{}", issued.key);
            }
        }
        KeysCommand::List { tenant } => {
            let keys = tenancy::list_keys(&db, &Caller::Operator, tenant.as_deref()).await?;
            if g.json {
                output::json(&keys)?;
            } else {
                output::print_table(&list(&keys));
            }
        }
        KeysCommand::Revoke { id, cascade } => {
            let revoked = tenancy::revoke_key(&db, &Caller::Operator, &id.into(), cascade).await?;
            if g.json {
                output::json(&revoked)?;
            } else {
                let info = &revoked.info;
                println!(
                    "revoked {} ({}…{}){}",
                    info.id,
                    output::safe(&info.prefix),
                    output::safe(&info.last4),
                    match revoked.cascaded {
                        0 => String::new(),
                        1 => " and 1 key issued through it".into(),
                        n => format!(" and {n} keys issued through it"),
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(keys: &[ApiKeyInfo]) -> comfy_table::Table {
    let mut t = output::table(&[
        "id",
        "tenant",
        "name",
        "key",
        "scopes",
        "expires",
        "revoked",
        "last used",
        "issued by",
    ]);
    for k in keys {
        t.add_row(vec![
            k.id.clone(),
            k.tenant
                .as_deref()
                .map_or_else(|| "(platform)".into(), output::safe),
            if k.name.is_empty() {
                "-".into()
            } else {
                output::safe(&k.name)
            },
            format!("{}…{}", k.prefix, k.last4),
            k.scopes.join("\n"),
            or_dash(k.expires_at.as_deref()),
            or_dash(k.revoked_at.as_deref()),
            or_dash(k.last_used_at.as_deref()),
            k.issued_by.as_deref().unwrap_or("(operator)").to_string(),
        ]);
    }
    t
}
