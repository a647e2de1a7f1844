//! Telegram connection per tenant, and webhook update dedup.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{
    Conn,
    models::TelegramConfigRow,
    schema::{telegram_configs, telegram_updates},
};
use crate::error::Result;
use crate::on_conn;

/// Insert or replace the tenant's Telegram connection.
pub async fn upsert(conn: &mut Conn<'_>, row: &TelegramConfigRow) -> Result<()> {
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
