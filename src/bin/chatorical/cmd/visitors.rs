//! `chatorical visitors export|erase`: a visitor's personal data (GDPR).

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::Subcommand;

use chatorical::{
    cluster::Cluster,
    domain::VisitorId,
    outbox::Wakeup,
    realtime::{Hub, LocalHub, RedisHub},
    tenancy::{self, Caller},
    visitors,
};

use crate::cli::Global;
use crate::output;

/// Visitor commands.
#[derive(Debug, Subcommand)]
pub(crate) enum VisitorsCommand {
    /// Everything stored about a visitor, as JSON: profile, identity, device tokens
    /// (counts and times only), conversations and every message. Recorded in the audit
    /// log as visitor.exported.
    Export {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Visitor id (vis_...).
        #[arg(long)]
        visitor: String,
        /// Write the JSON to this file (created 0600; replaced only when complete)
        /// instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Erase a visitor: message texts (both directions), profile, identity and tokens;
    /// their conversations keep their shape. Open sockets are closed on every node
    /// reached through Redis (with redis.url set). Erasing again changes nothing.
    Erase {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Visitor id (vis_...).
        #[arg(long)]
        visitor: String,
    },
}

/// Run a visitors command.
pub(crate) async fn run(g: &Global, cmd: VisitorsCommand) -> anyhow::Result<ExitCode> {
    let (settings, db) = super::open(g).await?;
    match cmd {
        VisitorsCommand::Export {
            tenant,
            visitor,
            out,
        } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            let export = visitors::export(
                &db,
                &Caller::Operator,
                &tenant,
                &VisitorId::from(visitor.as_str()),
            )
            .await?;
            let text = serde_json::to_string_pretty(&export)?;
            match out {
                None => println!("{text}"),
                Some(path) => {
                    write_private(&path, &text)?;
                    let messages: usize =
                        export.conversations.iter().map(|c| c.messages.len()).sum();
                    if g.json {
                        output::json(&serde_json::json!({
                            "path": path.display().to_string(),
                            "conversations": export.conversations.len(),
                            "messages": messages,
                        }))?;
                    } else {
                        println!(
                            "{} conversations, {messages} messages written to {}",
                            export.conversations.len(),
                            output::safe(&path.display().to_string())
                        );
                    }
                }
            }
        }
        VisitorsCommand::Erase { tenant, visitor } => {
            let tenant = tenancy::tenant_by_slug(&db, &tenant).await?;
            // The serving nodes hear of the erasure through Redis; without it, sockets
            // open in a running server end on their own (they can do nothing more).
            let panics = chatorical::tasks::Panics::default();
            let hub: Arc<dyn Hub> = match Cluster::connect(&settings.redis)? {
                Some(c) => Arc::new(RedisHub::start(c, &panics)),
                None => Arc::new(LocalHub::new()),
            };
            let erasure = visitors::erase(
                &db,
                hub.as_ref(),
                &Wakeup::default(),
                &Caller::Operator,
                &tenant,
                &VisitorId::from(visitor.as_str()),
            )
            .await?;
            if g.json {
                output::json(&erasure)?;
            } else {
                let mut t = output::table(&["", ""]);
                let rows: [(&str, String); 11] = [
                    ("visitor", erasure.visitor_id.clone()),
                    ("erased at", erasure.erased_at.clone()),
                    ("already erased", erasure.already_erased.to_string()),
                    ("conversations", erasure.conversations.to_string()),
                    (
                        "conversations closed",
                        erasure.conversations_closed.to_string(),
                    ),
                    ("messages erased", erasure.messages_erased.to_string()),
                    (
                        "subjects/topic names cleared",
                        erasure.labels_cleared.to_string(),
                    ),
                    ("tokens revoked", erasure.tokens_revoked.to_string()),
                    (
                        "outbox items cancelled",
                        erasure.outbox_cancelled.to_string(),
                    ),
                    ("topics renamed", erasure.topics_renamed.to_string()),
                    ("topics closed", erasure.topics_closed.to_string()),
                ];
                for (k, v) in rows {
                    t.add_row(vec![k.to_string(), v]);
                }
                output::print_table(&t);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Write `text` to `path` through a temporary file in the same directory (mode 0600:
/// it holds personal data), renamed over `path` when complete.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("--out must name a file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = opts.open(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    });
    let done = written.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("cannot write {}: {e}", path.display());
    }
    Ok(())
}
