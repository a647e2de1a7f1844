//! `chatorical keys issue|list|revoke`.

use std::process::ExitCode;

use clap::{ArgGroup, Subcommand};

use chatorical::tenancy::{self, ApiKeyInfo};

use crate::cli::Global;
use crate::output::{self, or_dash};

/// API key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
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
    /// Revoke a key by id.
    Revoke {
        /// The key id (key_…).
        id: String,
    },
}

/// Run a keys command.
pub async fn run(g: &Global, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let (_, db) = super::open(g).await?;
    match cmd {
        KeysCommand::Issue {
            tenant,
            platform: _,
            scopes,
            name,
            expires_in,
        } => {
            let tenant = match tenant {
                Some(slug) => Some(tenancy::tenant_by_slug(&db, &slug).await?),
                None => None,
            };
            let issued =
                tenancy::issue_key(&db, tenant.as_ref(), &scopes, name.as_deref(), expires_in)
                    .await?;
            if g.json {
                output::json(&issued)?;
            } else {
                println!("{}", list(std::slice::from_ref(&issued.info)));
                println!("\nKey (shown once, store it now):\n{}", issued.key);
            }
        }
        KeysCommand::List { tenant } => {
            let tenant = match tenant {
                Some(slug) => Some(tenancy::tenant_by_slug(&db, &slug).await?),
                None => None,
            };
            let keys = tenancy::list_keys(&db, tenant.as_ref()).await?;
            if g.json {
                output::json(&keys)?;
            } else {
                println!("{}", list(&keys));
            }
        }
        KeysCommand::Revoke { id } => {
            let info = tenancy::revoke_key(&db, None, &id).await?;
            if g.json {
                output::json(&info)?;
            } else {
                println!("revoked {} ({}…{})", info.id, info.prefix, info.last4);
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
    ]);
    for k in keys {
        t.add_row(vec![
            k.id.clone(),
            k.tenant.clone().unwrap_or_else(|| "(platform)".into()),
            if k.name.is_empty() {
                "-".into()
            } else {
                k.name.clone()
            },
            format!("{}…{}", k.prefix, k.last4),
            k.scopes.join("\n"),
            or_dash(k.expires_at.as_deref()),
            or_dash(k.revoked_at.as_deref()),
            or_dash(k.last_used_at.as_deref()),
        ]);
    }
    t
}
