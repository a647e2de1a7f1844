//! `chatorical templates list|set|delete|preview`.

use std::{collections::BTreeMap, io::Read, path::PathBuf, process::ExitCode};

use clap::{ArgGroup, Subcommand};

use chatorical::{
    i18n::{self, Template},
    tenancy::{self, Caller},
};

use crate::cli::Global;
use crate::output;

/// The keys and their variables, for `templates --help` (from the catalogue).
fn keys_help() -> String {
    let keys: Vec<String> = i18n::CATALOGUE
        .iter()
        .map(|d| {
            let vars: Vec<String> = d.variables.iter().map(|v| format!("{{{{{v}}}}}")).collect();
            if vars.is_empty() {
                d.key.to_string()
            } else {
                format!("{} ({})", d.key, vars.join(", "))
            }
        })
        .collect();
    format!(
        "Keys: {}.\n\nA template is text with {{{{variable}}}} placeholders (only the variables \
         the key names). Lookup falls back from the exact locale (de-AT) to its language (de), \
         the tenant's default_locale, then en; built-in texts exist in en and de.",
        keys.join(", ")
    )
}

/// Template commands: a tenant's own texts for the widget's strings, per locale.
#[derive(Debug, Subcommand)]
#[command(after_long_help = keys_help())]
pub(crate) enum TemplatesCommand {
    /// List a tenant's templates.
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Only this key, e.g. widget.title.
        #[arg(long)]
        key: Option<String>,
        /// Only this exact locale, e.g. de-AT.
        #[arg(long)]
        locale: Option<String>,
    },
    /// Store (create or replace) a tenant's text for a key in a locale. A syntax error
    /// or a variable the key does not allow fails, naming the character position.
    #[command(group(ArgGroup::new("text").required(true).args(["body", "body_file"])))]
    Set {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// String key, e.g. widget.title.
        #[arg(long)]
        key: String,
        /// Locale: ll or ll-RR, e.g. de or de-AT.
        #[arg(long)]
        locale: String,
        /// The template text.
        #[arg(long)]
        body: Option<String>,
        /// Read the template text from a file (`-` for standard input).
        #[arg(long, value_name = "PATH")]
        body_file: Option<PathBuf>,
    },
    /// Delete a tenant's text for a key in a locale (the widget falls back again).
    Delete {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// String key.
        #[arg(long)]
        key: String,
        /// Locale.
        #[arg(long)]
        locale: String,
    },
    /// Render a key for a locale as the widget would show it (after fallback), or a
    /// given body. Variables the text uses but were not given render as empty.
    Preview {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// String key.
        #[arg(long)]
        key: String,
        /// Locale, e.g. de-AT.
        #[arg(long)]
        locale: String,
        /// A variable's value (repeatable), e.g. --var retry_after=5.
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Try this template instead of the stored or built-in text.
        #[arg(long)]
        body: Option<String>,
    },
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}` must look like name=value"))
}

fn read_body(body: Option<String>, file: Option<PathBuf>) -> anyhow::Result<String> {
    match (body, file) {
        (Some(b), _) => Ok(b),
        (None, Some(p)) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            Ok(s)
        }
        (None, Some(p)) => std::fs::read_to_string(&p)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display())),
        (None, None) => anyhow::bail!("give --body or --body-file"),
    }
}

fn print_templates(g: &Global, templates: &[Template]) -> anyhow::Result<()> {
    if g.json {
        return output::json(&templates);
    }
    let mut t = output::table(&["key", "locale", "body", "updated"]);
    for tpl in templates {
        t.add_row(vec![
            tpl.key.clone(),
            tpl.locale.clone(),
            tpl.body.clone(),
            tpl.updated_at.clone(),
        ]);
    }
    output::print_table(&t);
    Ok(())
}

/// Run a templates command.
pub(crate) async fn run(g: &Global, cmd: TemplatesCommand) -> anyhow::Result<ExitCode> {
    let (_settings, db) = super::open(g).await?;
    match cmd {
        TemplatesCommand::List {
            tenant,
            key,
            locale,
        } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let list = i18n::list(
                &db,
                &Caller::Operator,
                &tenant,
                key.as_deref(),
                locale.as_deref(),
            )
            .await?;
            print_templates(g, &list)?;
        }
        TemplatesCommand::Set {
            tenant,
            key,
            locale,
            body,
            body_file,
        } => {
            let body = read_body(body, body_file)?;
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let stored = i18n::set(&db, &Caller::Operator, &tenant, &key, &locale, &body).await?;
            if g.json {
                output::json(&stored)?;
            } else {
                print_templates(g, std::slice::from_ref(&stored))?;
            }
        }
        TemplatesCommand::Delete {
            tenant,
            key,
            locale,
        } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let deleted = i18n::delete(&db, &Caller::Operator, &tenant, &key, &locale).await?;
            if g.json {
                output::json(&deleted)?;
            } else {
                println!("deleted {} ({})", deleted.key, deleted.locale);
            }
        }
        TemplatesCommand::Preview {
            tenant,
            key,
            locale,
            vars,
            body,
        } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let vars: BTreeMap<String, String> = vars.into_iter().collect();
            let p = i18n::preview(
                &db,
                &Caller::Operator,
                &tenant,
                &key,
                &locale,
                &vars,
                body.as_deref(),
            )
            .await?;
            if g.json {
                output::json(&p)?;
            } else {
                let source = serde_json::to_value(p.source)?;
                let mut t = output::table(&["key", "locale used", "source", "text"]);
                t.add_row(vec![
                    p.key.clone(),
                    p.locale_used.clone(),
                    source.as_str().unwrap_or_default().to_string(),
                    p.text.clone(),
                ]);
                output::print_table(&t);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
