//! Relay bots of a tenant's forum group, and which bot each conversation's topic
//! belongs to.

use diesel::dsl::{count_star, exists, not};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{
    Conn,
    models::TelegramRelayRow,
    schema::{conversations, outbox, telegram_relays, telegram_topic_bots},
};
use crate::error::Result;
use crate::on_conn;

/// Insert a relay, or replace the token, secret and username of the tenant's relay
/// with the same bot id (adding a bot again re-registers it). Returns whether it was new.
pub async fn upsert(conn: &mut Conn<'_>, row: &TelegramRelayRow) -> Result<bool> {
    let existed = get(conn, &row.tenant_id, row.bot_id).await?.is_some();
    on_conn!(conn, |c| diesel::insert_into(telegram_relays::table)
        .values(row)
        .on_conflict((telegram_relays::tenant_id, telegram_relays::bot_id))
        .do_update()
        .set((
            telegram_relays::bot_username.eq(&row.bot_username),
            telegram_relays::bot_token_enc.eq(&row.bot_token_enc),
            telegram_relays::webhook_secret_enc.eq(&row.webhook_secret_enc),
        ))
        .execute(c)
        .await)?;
    Ok(!existed)
}

/// The tenant's relays, oldest first.
pub async fn list(conn: &mut Conn<'_>, tenant_id: &str) -> Result<Vec<TelegramRelayRow>> {
    Ok(on_conn!(conn, |c| telegram_relays::table
        .filter(telegram_relays::tenant_id.eq(tenant_id))
        .order((telegram_relays::created_at, telegram_relays::bot_id))
        .select(TelegramRelayRow::as_select())
        .load(c)
        .await)?)
}

/// One relay of the tenant.
pub async fn get(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    bot_id: i64,
) -> Result<Option<TelegramRelayRow>> {
    Ok(on_conn!(conn, |c| telegram_relays::table
        .find((tenant_id, bot_id))
        .select(TelegramRelayRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Remove a relay. Returns whether there was one.
pub async fn delete(conn: &mut Conn<'_>, tenant_id: &str, bot_id: i64) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::delete(
        telegram_relays::table.find((tenant_id, bot_id))
    )
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// The bot a conversation's topic belongs to, once assigned.
pub async fn assigned_bot(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    conversation_id: &str,
) -> Result<Option<i64>> {
    Ok(on_conn!(conn, |c| telegram_topic_bots::table
        .filter(telegram_topic_bots::tenant_id.eq(tenant_id))
        .filter(telegram_topic_bots::conversation_id.eq(conversation_id))
        .select(telegram_topic_bots::bot_id)
        .first::<i64>(c)
        .await
        .optional())?)
}

/// Assign the conversation's topic to `bot_id` (or move it there).
pub async fn assign(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    conversation_id: &str,
    bot_id: i64,
    now: i64,
) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(telegram_topic_bots::table)
        .values((
            telegram_topic_bots::conversation_id.eq(conversation_id),
            telegram_topic_bots::tenant_id.eq(tenant_id),
            telegram_topic_bots::bot_id.eq(bot_id),
            telegram_topic_bots::assigned_at.eq(now),
        ))
        .on_conflict(telegram_topic_bots::conversation_id)
        .do_update()
        .set((
            telegram_topic_bots::bot_id.eq(bot_id),
            telegram_topic_bots::assigned_at.eq(now),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Forget which bot every conversation's topic of the tenant belongs to.
pub async fn forget_assignments(conn: &mut Conn<'_>, tenant_id: &str) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::delete(
        telegram_topic_bots::table.filter(telegram_topic_bots::tenant_id.eq(tenant_id))
    )
    .execute(c)
    .await)?)
}

/// Open conversations per assigned bot id; `None` counts the open conversations with
/// a topic that were never assigned (the main bot's, from before relays).
pub async fn open_loads(conn: &mut Conn<'_>, tenant_id: &str) -> Result<Vec<(Option<i64>, i64)>> {
    let assigned: Vec<(i64, i64)> = on_conn!(conn, |c| telegram_topic_bots::table
        .inner_join(
            conversations::table.on(conversations::id.eq(telegram_topic_bots::conversation_id)),
        )
        .filter(telegram_topic_bots::tenant_id.eq(tenant_id))
        .filter(conversations::status.eq("open"))
        .group_by(telegram_topic_bots::bot_id)
        .select((telegram_topic_bots::bot_id, count_star()))
        .load::<(i64, i64)>(c)
        .await)?;
    let unassigned: i64 = on_conn!(conn, |c| conversations::table
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::status.eq("open"))
        .filter(conversations::telegram_topic_id.is_not_null())
        .filter(not(exists(telegram_topic_bots::table.filter(
            telegram_topic_bots::conversation_id.eq(conversations::id)
        ))))
        .select(count_star())
        .first::<i64>(c)
        .await)?;
    let mut loads: Vec<(Option<i64>, i64)> =
        assigned.into_iter().map(|(b, n)| (Some(b), n)).collect();
    loads.push((None, unassigned));
    Ok(loads)
}

/// The conversations (of any status) whose topics belong to `bot_id`, oldest
/// assignment first.
pub async fn conversations_of(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    bot_id: i64,
) -> Result<Vec<String>> {
    Ok(on_conn!(conn, |c| telegram_topic_bots::table
        .filter(telegram_topic_bots::tenant_id.eq(tenant_id))
        .filter(telegram_topic_bots::bot_id.eq(bot_id))
        .order((
            telegram_topic_bots::assigned_at,
            telegram_topic_bots::conversation_id,
        ))
        .select(telegram_topic_bots::conversation_id)
        .load::<String>(c)
        .await)?)
}

/// Move the conversation's pending items (queued or in flight) from lane `from` to
/// lane `to`, keeping their ids (a lane is ordered by id). Returns how many moved.
pub async fn move_conversation_items(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    conversation_id: &str,
    from: &str,
    to: &str,
    now: i64,
) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::update(outbox::table)
        .filter(outbox::tenant_id.eq(tenant_id))
        .filter(outbox::lane.eq(from))
        .filter(outbox::conversation_id.eq(conversation_id))
        .filter(outbox::status.eq_any(["queued", "in_flight"]))
        .set((outbox::lane.eq(to), outbox::updated_at.eq(now)))
        .execute(c)
        .await)?)
}

/// Pending items (queued or in flight) per lane of the tenant whose key starts with
/// `prefix`.
pub async fn pending_by_lane(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    prefix: &str,
) -> Result<Vec<(String, i64)>> {
    Ok(on_conn!(conn, |c| outbox::table
        .filter(outbox::tenant_id.eq(tenant_id))
        .filter(outbox::status.eq_any(["queued", "in_flight"]))
        .filter(outbox::lane.like(format!("{prefix}%")))
        .group_by(outbox::lane)
        .select((outbox::lane, count_star()))
        .load::<(String, i64)>(c)
        .await)?)
}
