//! Messages.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{
    Conn,
    models::MessageRow,
    schema::{conversations, messages},
};
use crate::error::Result;
use crate::on_conn;

/// Insert a message whose seq was taken with `conversations::next_seq` in the same
/// transaction.
pub async fn insert(conn: &mut Conn<'_>, row: &MessageRow) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(messages::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Insert `rows` in the caller's transaction (on PostgreSQL in one statement; nothing
/// when there are none).
pub async fn insert_many(conn: &mut Conn<'_>, rows: &[MessageRow]) -> Result<()> {
    match rows {
        [] => Ok(()),
        [row] => insert(conn, row).await,
        rows => match conn {
            // One multi-row INSERT.
            Conn::Pg(pg, _) => {
                let pg: &mut diesel_async::AsyncPgConnection = pg;
                diesel::insert_into(messages::table)
                    .values(rows)
                    .execute(pg)
                    .await?;
                Ok(())
            }
            // diesel has no multi-row INSERT for SQLite here; the statements run
            // in-process, in the caller's transaction.
            Conn::Sqlite(..) => {
                for row in rows {
                    insert(conn, row).await?;
                }
                Ok(())
            }
        },
    }
}

/// The message a client already sent with this `client_msg_id`.
pub async fn by_client_msg_id(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    conversation_id: &str,
    client_msg_id: &str,
) -> Result<Option<MessageRow>> {
    Ok(on_conn!(conn, |c| messages::table
        .filter(messages::tenant_id.eq(tenant_id))
        .filter(messages::conversation_id.eq(conversation_id))
        .filter(messages::client_msg_id.eq(client_msg_id))
        .select(MessageRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Messages with `seq > since`, in seq order, at most `limit`.
pub async fn since(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    conversation_id: &str,
    since: i64,
    limit: i64,
) -> Result<Vec<MessageRow>> {
    Ok(on_conn!(conn, |c| messages::table
        .filter(messages::tenant_id.eq(tenant_id))
        .filter(messages::conversation_id.eq(conversation_id))
        .filter(messages::seq.gt(since))
        .order(messages::seq.asc())
        .limit(limit)
        .select(MessageRow::as_select())
        .load(c)
        .await)?)
}

/// One message of the tenant.
pub async fn get(conn: &mut Conn<'_>, tenant_id: &str, id: &str) -> Result<Option<MessageRow>> {
    Ok(on_conn!(conn, |c| messages::table
        .filter(messages::tenant_id.eq(tenant_id))
        .filter(messages::id.eq(id))
        .select(MessageRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Messages of the tenant by id (any order; ids not found are left out).
pub async fn by_ids(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    ids: &[String],
) -> Result<Vec<MessageRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(on_conn!(conn, |c| messages::table
        .filter(messages::tenant_id.eq(tenant_id))
        .filter(messages::id.eq_any(ids))
        .select(MessageRow::as_select())
        .load(c)
        .await)?)
}

/// Remember which Telegram message carries ours (several: a combined message).
pub async fn set_telegram_id(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    ids: &[String],
    telegram_message_id: i64,
) -> Result<()> {
    on_conn!(conn, |c| diesel::update(messages::table)
        .filter(messages::tenant_id.eq(tenant_id))
        .filter(messages::id.eq_any(ids))
        .set(messages::telegram_message_id.eq(telegram_message_id))
        .execute(c)
        .await)?;
    Ok(())
}

/// The visitor messages of the conversation a Telegram message carried (one, or the
/// set of a combined message), in seq order.
pub async fn inbound_by_telegram_id(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    conversation_id: &str,
    telegram_message_id: i64,
) -> Result<Vec<MessageRow>> {
    Ok(on_conn!(conn, |c| messages::table
        .filter(messages::tenant_id.eq(tenant_id))
        .filter(messages::conversation_id.eq(conversation_id))
        .filter(messages::telegram_message_id.eq(telegram_message_id))
        .filter(messages::direction.eq("inbound"))
        .order(messages::seq.asc())
        .select(MessageRow::as_select())
        .load(c)
        .await)?)
}

/// Change the text of the agent's message a Telegram message carries (an agent's
/// edit); the updated row. Only agents' messages: a visitor message's Telegram message
/// is the bot's, which agents cannot edit (and a combined one carries several). An
/// erased message keeps its erased text (`None`).
pub async fn edit_by_telegram_id(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    conversation_id: &str,
    telegram_message_id: i64,
    body: &str,
    now: i64,
) -> Result<Option<MessageRow>> {
    Ok(on_conn!(conn, |c| diesel::update(messages::table)
        .filter(messages::tenant_id.eq(tenant_id))
        .filter(messages::conversation_id.eq(conversation_id))
        .filter(messages::telegram_message_id.eq(telegram_message_id))
        .filter(messages::direction.eq("outbound"))
        .filter(messages::erased_at.is_null())
        .set((messages::body.eq(body), messages::edited_at.eq(now)))
        .returning(MessageRow::as_returning())
        .get_result(c)
        .await
        .optional())?)
}

/// How many messages the visitor's conversations hold.
pub async fn count_of_visitor(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    visitor_id: &str,
) -> Result<i64> {
    let theirs = conversations::table
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::visitor_id.eq(visitor_id))
        .select(conversations::id);
    Ok(on_conn!(conn, |c| messages::table
        .filter(messages::tenant_id.eq(tenant_id))
        .filter(messages::conversation_id.eq_any(theirs))
        .count()
        .get_result(c)
        .await)?)
}

/// Erase the text of every message in the visitor's conversations, both directions
/// (agents' replies quote the visitor): the body becomes empty and `erased_at` is set;
/// seq, direction, author and times stay. Returns how many were not erased before.
pub async fn erase_of_visitor(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    visitor_id: &str,
    now: i64,
) -> Result<usize> {
    let theirs = conversations::table
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::visitor_id.eq(visitor_id))
        .select(conversations::id);
    Ok(on_conn!(conn, |c| diesel::update(messages::table)
        .filter(messages::tenant_id.eq(tenant_id))
        .filter(messages::conversation_id.eq_any(theirs))
        .filter(messages::erased_at.is_null().or(messages::body.ne("")))
        .set((messages::body.eq(""), messages::erased_at.eq(now)))
        .execute(c)
        .await)?)
}
