//! Telegram connection per tenant, webhook update dedup, and the state of long
//! polling (mode, offset, the poller's lease).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{
    Conn,
    models::{ConversationRow, MessageRow, TelegramConfigRow, TelegramPollRow},
    schema::{
        conversations, messages, outbox_batches, plans, telegram_configs, telegram_polls,
        telegram_updates, tenants,
    },
};
use crate::error::Result;
use crate::on_conn;

/// Insert or replace the tenant's Telegram connection. Update ids are counted per
/// bot: another bot's stored polling offset is forgotten.
pub async fn upsert(conn: &mut Conn<'_>, row: &TelegramConfigRow) -> Result<()> {
    on_conn!(conn, |c| diesel::delete(
        telegram_polls::table
            .filter(telegram_polls::tenant_id.eq(&row.tenant_id))
            .filter(telegram_polls::bot_id.ne(row.bot_id))
    )
    .execute(c)
    .await)?;
    on_conn!(conn, |c| diesel::insert_into(telegram_configs::table)
        .values(row)
        .on_conflict(telegram_configs::tenant_id)
        .do_update()
        .set((
            telegram_configs::bot_token_enc.eq(&row.bot_token_enc),
            telegram_configs::webhook_secret_enc.eq(&row.webhook_secret_enc),
            telegram_configs::bot_id.eq(row.bot_id),
            telegram_configs::bot_username.eq(&row.bot_username),
            telegram_configs::group_chat_id.eq(row.group_chat_id),
            telegram_configs::default_topic_id.eq(row.default_topic_id),
            telegram_configs::can_manage_topics.eq(row.can_manage_topics),
            telegram_configs::enabled.eq(row.enabled),
            telegram_configs::updated_at.eq(row.updated_at),
            telegram_configs::mode.eq(&row.mode),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// The tenant's Telegram connection, if any.
pub async fn get(conn: &mut Conn<'_>, tenant_id: &str) -> Result<Option<TelegramConfigRow>> {
    Ok(on_conn!(conn, |c| telegram_configs::table
        .find(tenant_id)
        .select(TelegramConfigRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Whether the plan of tenant `$tenant_id` includes Telegram, as a scalar subquery
/// (`NULL` without a plan) for the reads below.
macro_rules! plan_channel {
    ($tenant_id:expr) => {
        tenants::table
            .inner_join(plans::table)
            .filter(tenants::id.eq($tenant_id))
            .select(plans::channel_telegram)
            .single_value()
    };
}

/// The tenant's Telegram connection and whether its plan includes Telegram, in one
/// statement (each outbox delivery reads both).
pub async fn get_with_plan_channel(
    conn: &mut Conn<'_>,
    tenant_id: &str,
) -> Result<Option<(TelegramConfigRow, bool)>> {
    let channel = plan_channel!(tenant_id);
    let row = on_conn!(conn, |c| telegram_configs::table
        .find(tenant_id)
        .select((TelegramConfigRow::as_select(), channel))
        .first::<(TelegramConfigRow, Option<bool>)>(c)
        .await
        .optional())?;
    Ok(row.map(|(cfg, channel)| (cfg, channel.unwrap_or(false))))
}

/// What the outbox delivery of a visitor's message reads, in one statement: the
/// tenant's Telegram connection and whether its plan includes Telegram (as
/// [`get_with_plan_channel`]), and — `None` when either no longer exists — the
/// tenant's message `message_id`, its conversation `conversation_id` (a message of
/// another one is not found) and whether a set of followers was recorded for the
/// delivering outbox item `head_id` by an earlier attempt.
#[allow(clippy::type_complexity)]
pub async fn get_for_message(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    message_id: &str,
    conversation_id: &str,
    head_id: &str,
) -> Result<
    Option<(
        TelegramConfigRow,
        bool,
        Option<(MessageRow, ConversationRow, bool)>,
    )>,
> {
    let channel = plan_channel!(tenant_id);
    // A join's `ON` clause owns its binds (the pooled path wants them `'static`).
    let (message_id, conversation_id) = (message_id.to_owned(), conversation_id.to_owned());
    let row = on_conn!(conn, |c| telegram_configs::table
        .left_join(
            messages::table.on(messages::tenant_id
                .eq(telegram_configs::tenant_id)
                .and(messages::id.eq(message_id.clone()))),
        )
        .left_join(
            conversations::table.on(conversations::tenant_id
                .eq(telegram_configs::tenant_id)
                .and(conversations::id.eq(messages::conversation_id))
                .and(conversations::id.eq(conversation_id.clone()))),
        )
        .filter(telegram_configs::tenant_id.eq(tenant_id))
        .select((
            TelegramConfigRow::as_select(),
            channel,
            Option::<MessageRow>::as_select(),
            Option::<ConversationRow>::as_select(),
            diesel::dsl::exists(outbox_batches::table.filter(outbox_batches::head_id.eq(head_id))),
        ))
        .first::<(
            TelegramConfigRow,
            Option<bool>,
            Option<MessageRow>,
            Option<ConversationRow>,
            bool,
        )>(c)
        .await
        .optional())?;
    Ok(row.map(|(cfg, channel, message, conv, recorded)| {
        let read = message.zip(conv).map(|(m, c)| (m, c, recorded));
        (cfg, channel.unwrap_or(false), read)
    }))
}

/// Remove the tenant's Telegram connection. Returns whether there was one.
pub async fn delete(conn: &mut Conn<'_>, tenant_id: &str) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::delete(
        telegram_configs::table.find(tenant_id)
    )
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Switch delivery and the webhook on or off.
pub async fn set_enabled(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    enabled: bool,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(
        telegram_configs::table.find(tenant_id)
    )
    .set((
        telegram_configs::enabled.eq(enabled),
        telegram_configs::updated_at.eq(now)
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Opt in to or out of deleting purged conversations' topics. Returns whether the
/// tenant has a connection.
pub async fn set_delete_topics_on_retention(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    on: bool,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(
        telegram_configs::table.find(tenant_id)
    )
    .set((
        telegram_configs::delete_topics_on_retention.eq(on),
        telegram_configs::updated_at.eq(now)
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Record an update id of a bot; `false` when it was seen before (a duplicate delivery).
pub async fn record_update(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    bot_id: i64,
    update_id: i64,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::insert_into(telegram_updates::table)
        .values((
            telegram_updates::tenant_id.eq(tenant_id),
            telegram_updates::bot_id.eq(bot_id),
            telegram_updates::update_id.eq(update_id),
            telegram_updates::received_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Forget update ids received before `before` (Telegram retries for 24 hours at most).
pub async fn prune_updates(conn: &mut Conn<'_>, before: i64) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::delete(
        telegram_updates::table.filter(telegram_updates::received_at.lt(before))
    )
    .execute(c)
    .await)?)
}

/// Move the tenant's connection from group `from` to supergroup `to` (Telegram
/// migrated the group). Thread ids are per chat, so the default topic is forgotten.
/// `false` when the connection does not name `from` (any more).
pub async fn move_group(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    from: i64,
    to: i64,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(
        telegram_configs::table
            .filter(telegram_configs::tenant_id.eq(tenant_id))
            .filter(telegram_configs::group_chat_id.eq(from))
    )
    .set((
        telegram_configs::group_chat_id.eq(to),
        telegram_configs::default_topic_id.eq(None::<i64>),
        telegram_configs::updated_at.eq(now),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Set how the tenant's updates arrive (`webhook` or `polling`); the last poll error is
/// forgotten (it was about the time before). `false` when the tenant has no connection.
pub async fn set_mode(conn: &mut Conn<'_>, tenant_id: &str, mode: &str, now: i64) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(
        telegram_configs::table.find(tenant_id)
    )
    .set((
        telegram_configs::mode.eq(mode),
        telegram_configs::updated_at.eq(now),
    ))
    .execute(c)
    .await)?;
    on_conn!(conn, |c| diesel::update(
        telegram_polls::table.find(tenant_id)
    )
    .set((
        telegram_polls::last_error.eq(None::<String>),
        telegram_polls::last_error_at.eq(None::<i64>),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Where polling of the tenant's bot stands, once a worker polled it.
pub async fn poll_state(conn: &mut Conn<'_>, tenant_id: &str) -> Result<Option<TelegramPollRow>> {
    Ok(on_conn!(conn, |c| telegram_polls::table
        .find(tenant_id)
        .select(TelegramPollRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Tenants in polling mode whose bot `poller` may poll now: nobody holds the lease, it
/// ran out, or it is `poller`'s.
pub async fn pollable(conn: &mut Conn<'_>, poller: &str, now: i64) -> Result<Vec<String>> {
    let polling: Vec<String> = on_conn!(conn, |c| telegram_configs::table
        .filter(telegram_configs::mode.eq("polling"))
        .order(telegram_configs::tenant_id)
        .select(telegram_configs::tenant_id)
        .load::<String>(c)
        .await)?;
    if polling.is_empty() {
        return Ok(polling);
    }
    let busy: Vec<String> = on_conn!(conn, |c| telegram_polls::table
        .filter(telegram_polls::leased_by.ne(poller))
        .filter(telegram_polls::lease_until.ge(now))
        .select(telegram_polls::tenant_id)
        .load::<String>(c)
        .await)?;
    Ok(polling.into_iter().filter(|t| !busy.contains(t)).collect())
}

/// Take or extend the lease on polling the tenant's bot until `until` (one
/// transaction): only while the connection is in polling mode and the lease is free,
/// ran out, or is `poller`'s already. The connection and the poll's state when
/// `poller` holds the lease now, else `None`. A stored offset of another bot is
/// forgotten.
pub async fn lease_poll(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    poller: &str,
    now: i64,
    until: i64,
) -> Result<Option<(TelegramConfigRow, TelegramPollRow)>> {
    crate::transaction!(conn, |tx| {
        let Some(cfg) = get(tx, tenant_id).await? else {
            return Ok(None);
        };
        if cfg.mode != "polling" {
            return Ok(None);
        }
        on_conn!(tx, |c| diesel::insert_into(telegram_polls::table)
            .values((
                telegram_polls::tenant_id.eq(tenant_id),
                telegram_polls::bot_id.eq(cfg.bot_id),
            ))
            .on_conflict_do_nothing()
            .execute(c)
            .await)?;
        let n = on_conn!(tx, |c| diesel::update(
            telegram_polls::table
                .filter(telegram_polls::tenant_id.eq(tenant_id))
                .filter(
                    telegram_polls::leased_by
                        .is_null()
                        .or(telegram_polls::lease_until.lt(now))
                        .or(telegram_polls::leased_by.eq(poller)),
                )
        )
        .set((
            telegram_polls::leased_by.eq(poller),
            telegram_polls::lease_until.eq(until),
        ))
        .execute(c)
        .await)?;
        if n == 0 {
            return Ok(None);
        }
        on_conn!(tx, |c| diesel::update(
            telegram_polls::table
                .filter(telegram_polls::tenant_id.eq(tenant_id))
                .filter(telegram_polls::bot_id.ne(cfg.bot_id))
        )
        .set((
            telegram_polls::bot_id.eq(cfg.bot_id),
            telegram_polls::poll_offset.eq(None::<i64>),
            telegram_polls::poll_offset_at.eq(None::<i64>),
        ))
        .execute(c)
        .await)?;
        let poll = poll_state(tx, tenant_id).await?;
        Ok(poll.map(|p| (cfg, p)))
    })
}

/// Give the lease back (if `poller` still holds it).
pub async fn release_poll(conn: &mut Conn<'_>, tenant_id: &str, poller: &str) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(
        telegram_polls::table
            .filter(telegram_polls::tenant_id.eq(tenant_id))
            .filter(telegram_polls::leased_by.eq(poller))
    )
    .set((
        telegram_polls::leased_by.eq(None::<String>),
        telegram_polls::lease_until.eq(None::<i64>),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Store the next update id to ask bot `bot_id` for, in the transaction that handled
/// the update before it. `false` (the caller rolls back) when `poller` no longer holds
/// the lease or the stored state is another bot's: another poller owns the stream now.
pub async fn advance_offset(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    bot_id: i64,
    poller: &str,
    offset: i64,
    now: i64,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(
        telegram_polls::table
            .filter(telegram_polls::tenant_id.eq(tenant_id))
            .filter(telegram_polls::bot_id.eq(bot_id))
            .filter(telegram_polls::leased_by.eq(poller))
    )
    .set((
        telegram_polls::poll_offset.eq(offset),
        telegram_polls::poll_offset_at.eq(now),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Record what a getUpdates of `poller` said: answered (`error` `None`: the last poll
/// time, and the last error is forgotten) or failed (the error and its time).
pub async fn record_poll(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    poller: &str,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    let target = telegram_polls::table
        .filter(telegram_polls::tenant_id.eq(tenant_id))
        .filter(telegram_polls::leased_by.eq(poller));
    match error {
        None => on_conn!(conn, |c| diesel::update(target)
            .set((
                telegram_polls::last_poll_at.eq(now),
                telegram_polls::last_error.eq(None::<String>),
                telegram_polls::last_error_at.eq(None::<i64>),
            ))
            .execute(c)
            .await)?,
        Some(error) => on_conn!(conn, |c| diesel::update(target)
            .set((
                telegram_polls::last_error.eq(error),
                telegram_polls::last_error_at.eq(now),
            ))
            .execute(c)
            .await)?,
    };
    Ok(())
}

/// Every tenant's Telegram connection with the tenant's slug, by slug.
pub async fn all_with_slugs(conn: &mut Conn<'_>) -> Result<Vec<(String, TelegramConfigRow)>> {
    use crate::db::schema::tenants;
    Ok(on_conn!(conn, |c| telegram_configs::table
        .inner_join(tenants::table.on(tenants::id.eq(telegram_configs::tenant_id)))
        .order(tenants::slug.asc())
        .select((tenants::slug, TelegramConfigRow::as_select()))
        .load(c)
        .await)?)
}
