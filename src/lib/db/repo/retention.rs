//! Retention's queries: closed conversations past a cutoff with their messages and
//! outbox items, and visitors no conversation refers to any more.
//!
//! The selections that start a batch lock what they pick on PostgreSQL
//! (`FOR UPDATE SKIP LOCKED`), so that retention running in several processes at once
//! splits the work instead of doing it twice; on SQLite write transactions run one at
//! a time anyway. Every delete re-checks that its rows are still due and counts the
//! rows it actually deleted.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::chat::ConversationStatus;
use crate::db::{
    Conn,
    schema::{conversations, messages, outbox, visitor_tokens, visitors},
};
use crate::error::Result;
use crate::on_conn;

/// A closed conversation past the cutoff, as a batch picks it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct DueConversation {
    /// Its id.
    pub id: String,
    /// Its last seq: how many messages it holds.
    pub last_seq: i64,
    /// Its forum topic, if it has one.
    pub telegram_topic_id: Option<i64>,
}

/// The closed conversations of the tenant's environment closed before `cutoff`
/// (epoch ms).
macro_rules! due_conversations {
    ($tenant:expr, $env:expr, $cutoff:expr) => {
        conversations::table
            .filter(conversations::tenant_id.eq($tenant))
            .filter(conversations::environment.eq($env))
            .filter(conversations::status.eq(ConversationStatus::Closed.as_str()))
            .filter(conversations::closed_at.lt($cutoff))
    };
}

/// The visitors of the tenant's environment last seen before `cutoff` that no
/// conversation refers to.
macro_rules! unused_visitors {
    ($tenant:expr, $env:expr, $cutoff:expr) => {
        visitors::table
            .filter(visitors::tenant_id.eq($tenant))
            .filter(visitors::environment.eq($env))
            .filter(visitors::last_seen_at.lt($cutoff))
            .filter(diesel::dsl::not(diesel::dsl::exists(
                conversations::table.filter(conversations::visitor_id.eq(visitors::id)),
            )))
    };
}

/// Up to `limit` due conversations of the tenant's `environment`, oldest closed
/// first. Inside a transaction: on PostgreSQL they stay locked until it ends, and rows
/// another transaction holds are skipped.
pub async fn lock_due_conversations(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    environment: &str,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<DueConversation>> {
    macro_rules! pick {
        () => {
            due_conversations!(tenant_id, environment, cutoff)
                .order((conversations::closed_at.asc(), conversations::id.asc()))
                .select((
                    conversations::id,
                    conversations::last_seq,
                    conversations::telegram_topic_id,
                ))
                .limit(limit)
        };
    }
    Ok(match conn {
        Conn::Pg(c, _) => {
            pick!()
                .for_update()
                .skip_locked()
                .load::<DueConversation>(&mut **c)
                .await?
        }
        Conn::Sqlite(c, _) => pick!().load::<DueConversation>(&mut **c).await?,
    })
}

/// Delete up to `limit` messages of one conversation (lowest seqs first); the number
/// deleted. For a conversation too long to go in one batch.
pub async fn delete_some_messages(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    conversation_id: &str,
    limit: i64,
) -> Result<usize> {
    let ids: Vec<String> = on_conn!(conn, |c| messages::table
        .filter(messages::tenant_id.eq(tenant_id))
        .filter(messages::conversation_id.eq(conversation_id))
        .select(messages::id)
        .order(messages::seq.asc())
        .limit(limit)
        .load(c)
        .await)?;
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(on_conn!(conn, |c| diesel::delete(
        messages::table
            .filter(messages::tenant_id.eq(tenant_id))
            .filter(messages::id.eq_any(&ids)),
    )
    .execute(c)
    .await)?)
}

/// Delete every message of these conversations; the number deleted.
pub async fn delete_messages(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    conversation_ids: &[String],
) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::delete(
        messages::table
            .filter(messages::tenant_id.eq(tenant_id))
            .filter(messages::conversation_id.eq_any(conversation_ids)),
    )
    .execute(c)
    .await)?)
}

/// Delete every outbox item of these conversations, whatever its status; the number
/// deleted.
pub async fn delete_outbox(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    conversation_ids: &[String],
) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::delete(
        outbox::table
            .filter(outbox::tenant_id.eq(tenant_id))
            .filter(outbox::conversation_id.eq_any(conversation_ids)),
    )
    .execute(c)
    .await)?)
}

/// Delete these conversations if they are still due; the ids and topics of those
/// deleted.
pub async fn delete_conversations(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    environment: &str,
    ids: &[String],
    cutoff: i64,
) -> Result<Vec<(String, Option<i64>)>> {
    Ok(on_conn!(conn, |c| diesel::delete(
        due_conversations!(tenant_id, environment, cutoff).filter(conversations::id.eq_any(ids))
    )
    .returning((conversations::id, conversations::telegram_topic_id))
    .get_results(c)
    .await)?)
}

/// Up to `limit` visitors of the tenant's `environment` last seen before `cutoff` that
/// no conversation refers to, least recently seen first; locked as
/// [`lock_due_conversations`] locks.
pub async fn lock_unused_visitors(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    environment: &str,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<String>> {
    macro_rules! pick {
        () => {
            unused_visitors!(tenant_id, environment, cutoff)
                .order((visitors::last_seen_at.asc(), visitors::id.asc()))
                .select(visitors::id)
                .limit(limit)
        };
    }
    Ok(match conn {
        Conn::Pg(c, _) => {
            pick!()
                .for_update()
                .skip_locked()
                .load::<String>(&mut **c)
                .await?
        }
        Conn::Sqlite(c, _) => pick!().load::<String>(&mut **c).await?,
    })
}

/// Delete the device tokens of these visitors; the number deleted.
pub async fn delete_visitor_tokens(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    visitor_ids: &[String],
) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::delete(
        visitor_tokens::table
            .filter(visitor_tokens::tenant_id.eq(tenant_id))
            .filter(visitor_tokens::visitor_id.eq_any(visitor_ids)),
    )
    .execute(c)
    .await)?)
}

/// Delete these visitors if they are still unused and unseen since `cutoff`; the
/// number deleted.
pub async fn delete_visitors(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    environment: &str,
    ids: &[String],
    cutoff: i64,
) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::delete(
        unused_visitors!(tenant_id, environment, cutoff).filter(visitors::id.eq_any(ids))
    )
    .execute(c)
    .await)?)
}

/// SQLite: copy what the write-ahead log holds back into the database file now
/// (`PRAGMA wal_checkpoint(PASSIVE)`: no lock that holds up writers), on this
/// connection, outside any transaction — so that the pages a batch dirtied are not
/// checkpointed by whichever chat write next pushes the log past SQLite's
/// auto-checkpoint size, inside its commit. PostgreSQL: nothing.
pub async fn checkpoint(conn: &mut Conn<'_>) -> Result<()> {
    if let Conn::Sqlite(c, _) = conn {
        use diesel_async::SimpleAsyncConnection;
        c.batch_execute("PRAGMA wal_checkpoint(PASSIVE)").await?;
    }
    Ok(())
}

/// What retention would delete for a tenant's environment at `cutoff` (a dry run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DueCounts {
    /// Due conversations.
    pub conversations: i64,
    /// Their messages.
    pub messages: i64,
    /// Their outbox items.
    pub outbox: i64,
    /// Those of them with a forum topic.
    pub topics: i64,
    /// Visitors unseen since the cutoff whose conversations are all due (none left
    /// once they are deleted).
    pub visitors: i64,
    /// Those visitors' device tokens.
    pub visitor_tokens: i64,
}

/// Count what retention would delete for the tenant's `environment` at `cutoff`:
/// everything, or with `full` false only the conversations and visitors (what a
/// progress bar needs; the other counts are zero).
pub async fn count_due(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    environment: &str,
    cutoff: i64,
    full: bool,
) -> Result<DueCounts> {
    let closed = ConversationStatus::Closed.as_str();
    // A conversation that keeps its visitor: not closed, or closed since the cutoff.
    macro_rules! doomed_visitors {
        () => {
            visitors::table
                .filter(visitors::tenant_id.eq(tenant_id))
                .filter(visitors::environment.eq(environment))
                .filter(visitors::last_seen_at.lt(cutoff))
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    conversations::table
                        .filter(conversations::visitor_id.eq(visitors::id))
                        .filter(
                            conversations::status
                                .ne(closed)
                                .or(conversations::closed_at.is_null())
                                .or(conversations::closed_at.assume_not_null().ge(cutoff)),
                        ),
                )))
        };
    }
    Ok(on_conn!(conn, |c| {
        let conversations: i64 = due_conversations!(tenant_id, environment, cutoff)
            .count()
            .get_result(c)
            .await?;
        let visitors: i64 = doomed_visitors!().count().get_result(c).await?;
        let mut counts = DueCounts {
            conversations,
            visitors,
            ..Default::default()
        };
        if full {
            counts.topics = due_conversations!(tenant_id, environment, cutoff)
                .filter(conversations::telegram_topic_id.is_not_null())
                .count()
                .get_result(c)
                .await?;
            counts.messages = messages::table
                .filter(messages::tenant_id.eq(tenant_id))
                .filter(messages::conversation_id.eq_any(
                    due_conversations!(tenant_id, environment, cutoff).select(conversations::id),
                ))
                .count()
                .get_result(c)
                .await?;
            counts.outbox = outbox::table
                .filter(outbox::tenant_id.eq(tenant_id))
                .filter(
                    outbox::conversation_id.eq_any(
                        due_conversations!(tenant_id, environment, cutoff)
                            .select(conversations::id.nullable()),
                    ),
                )
                .count()
                .get_result(c)
                .await?;
            counts.visitor_tokens = visitor_tokens::table
                .filter(visitor_tokens::tenant_id.eq(tenant_id))
                .filter(visitor_tokens::visitor_id.eq_any(doomed_visitors!().select(visitors::id)))
                .count()
                .get_result(c)
                .await?;
        }
        diesel::QueryResult::Ok(counts)
    })?)
}
