//! Every value sealed with the master key, column by column, for `secrets` rotation
//! and status. These read across tenants: they are operator maintenance, never called
//! on behalf of one tenant.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{
    Conn,
    schema::{telegram_configs, telegram_relays, tenants},
};
use crate::error::Result;
use crate::on_conn;

/// A column holding sealed values (the `*_enc` columns of the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealedColumn {
    /// `telegram_configs.bot_token_enc`.
    BotToken,
    /// `telegram_configs.webhook_secret_enc`.
    WebhookSecret,
    /// `tenants.identity_secret_enc` (absent until generated).
    IdentitySecret,
    /// `telegram_relays.bot_token_enc` (rows keyed `<tenant id>/<bot id>`).
    RelayBotToken,
    /// `telegram_relays.webhook_secret_enc` (rows keyed `<tenant id>/<bot id>`).
    RelayWebhookSecret,
}

impl SealedColumn {
    /// All of them.
    pub const ALL: [SealedColumn; 5] = [
        SealedColumn::BotToken,
        SealedColumn::WebhookSecret,
        SealedColumn::IdentitySecret,
        SealedColumn::RelayBotToken,
        SealedColumn::RelayWebhookSecret,
    ];
}

/// The key of a relay's row in [`page`]: `<tenant id>/<bot id>`.
pub fn relay_row_key(tenant_id: &str, bot_id: i64) -> String {
    format!("{tenant_id}/{bot_id}")
}

/// The tenant and bot id of a relay's row key (see [`relay_row_key`]).
pub fn parse_relay_row_key(key: &str) -> Option<(&str, i64)> {
    let (tenant, bot) = key.rsplit_once('/')?;
    Some((tenant, bot.parse().ok()?))
}

/// How many values the column holds.
pub async fn count(conn: &mut Conn<'_>, column: SealedColumn) -> Result<i64> {
    Ok(match column {
        SealedColumn::BotToken | SealedColumn::WebhookSecret => on_conn!(conn, |c| {
            telegram_configs::table.count().get_result::<i64>(c).await
        })?,
        SealedColumn::IdentitySecret => on_conn!(conn, |c| {
            tenants::table
                .filter(tenants::identity_secret_enc.is_not_null())
                .count()
                .get_result::<i64>(c)
                .await
        })?,
        SealedColumn::RelayBotToken | SealedColumn::RelayWebhookSecret => on_conn!(conn, |c| {
            telegram_relays::table.count().get_result::<i64>(c).await
        })?,
    })
}

/// Up to `limit` `(row key, sealed value)` pairs of the column, by row key, after
/// `after` (keyset paging: start with `""`). The row key is the tenant id; a relay's is
/// [`relay_row_key`].
pub async fn page(
    conn: &mut Conn<'_>,
    column: SealedColumn,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    if matches!(
        column,
        SealedColumn::RelayBotToken | SealedColumn::RelayWebhookSecret
    ) {
        let (after_tenant, after_bot) = parse_relay_row_key(after).unwrap_or(("", i64::MIN));
        let rows: Vec<(String, i64, String, String)> = on_conn!(conn, |c| {
            telegram_relays::table
                .filter(
                    telegram_relays::tenant_id
                        .gt(after_tenant)
                        .or(telegram_relays::tenant_id
                            .eq(after_tenant)
                            .and(telegram_relays::bot_id.gt(after_bot))),
                )
                .order((telegram_relays::tenant_id, telegram_relays::bot_id))
                .limit(limit)
                .select((
                    telegram_relays::tenant_id,
                    telegram_relays::bot_id,
                    telegram_relays::bot_token_enc,
                    telegram_relays::webhook_secret_enc,
                ))
                .load::<(String, i64, String, String)>(c)
                .await
        })?;
        return Ok(rows
            .into_iter()
            .map(|(tenant, bot, token, secret)| {
                let value = if column == SealedColumn::RelayBotToken {
                    token
                } else {
                    secret
                };
                (relay_row_key(&tenant, bot), value)
            })
            .collect());
    }
    Ok(match column {
        SealedColumn::RelayBotToken | SealedColumn::RelayWebhookSecret => Vec::new(),
        SealedColumn::BotToken => on_conn!(conn, |c| {
            telegram_configs::table
                .filter(telegram_configs::tenant_id.gt(after))
                .order(telegram_configs::tenant_id)
                .limit(limit)
                .select((telegram_configs::tenant_id, telegram_configs::bot_token_enc))
                .load::<(String, String)>(c)
                .await
        })?,
        SealedColumn::WebhookSecret => on_conn!(conn, |c| {
            telegram_configs::table
                .filter(telegram_configs::tenant_id.gt(after))
                .order(telegram_configs::tenant_id)
                .limit(limit)
                .select((
                    telegram_configs::tenant_id,
                    telegram_configs::webhook_secret_enc,
                ))
                .load::<(String, String)>(c)
                .await
        })?,
        SealedColumn::IdentitySecret => on_conn!(conn, |c| {
            tenants::table
                .filter(tenants::id.gt(after))
                .filter(tenants::identity_secret_enc.is_not_null())
                .order(tenants::id)
                .limit(limit)
                .select((tenants::id, tenants::identity_secret_enc.assume_not_null()))
                .load::<(String, String)>(c)
                .await
        })?,
    })
}

/// Replace a row's sealed value with `new`, but only while it still is `old` (a value
/// changed meanwhile, e.g. a new identity secret, is left alone). `tenant_id` is the
/// row key of [`page`]. Returns whether it did.
pub async fn replace(
    conn: &mut Conn<'_>,
    column: SealedColumn,
    tenant_id: &str,
    old: &str,
    new: &str,
) -> Result<bool> {
    let relay = parse_relay_row_key(tenant_id).unwrap_or(("", 0));
    let n = match column {
        SealedColumn::RelayBotToken => on_conn!(conn, |c| {
            diesel::update(
                telegram_relays::table
                    .filter(telegram_relays::tenant_id.eq(relay.0))
                    .filter(telegram_relays::bot_id.eq(relay.1))
                    .filter(telegram_relays::bot_token_enc.eq(old)),
            )
            .set(telegram_relays::bot_token_enc.eq(new))
            .execute(c)
            .await
        })?,
        SealedColumn::RelayWebhookSecret => on_conn!(conn, |c| {
            diesel::update(
                telegram_relays::table
                    .filter(telegram_relays::tenant_id.eq(relay.0))
                    .filter(telegram_relays::bot_id.eq(relay.1))
                    .filter(telegram_relays::webhook_secret_enc.eq(old)),
            )
            .set(telegram_relays::webhook_secret_enc.eq(new))
            .execute(c)
            .await
        })?,
        SealedColumn::BotToken => on_conn!(conn, |c| {
            diesel::update(
                telegram_configs::table
                    .filter(telegram_configs::tenant_id.eq(tenant_id))
                    .filter(telegram_configs::bot_token_enc.eq(old)),
            )
            .set(telegram_configs::bot_token_enc.eq(new))
            .execute(c)
            .await
        })?,
        SealedColumn::WebhookSecret => on_conn!(conn, |c| {
            diesel::update(
                telegram_configs::table
                    .filter(telegram_configs::tenant_id.eq(tenant_id))
                    .filter(telegram_configs::webhook_secret_enc.eq(old)),
            )
            .set(telegram_configs::webhook_secret_enc.eq(new))
            .execute(c)
            .await
        })?,
        SealedColumn::IdentitySecret => on_conn!(conn, |c| {
            diesel::update(
                tenants::table
                    .filter(tenants::id.eq(tenant_id))
                    .filter(tenants::identity_secret_enc.eq(old)),
            )
            .set(tenants::identity_secret_enc.eq(new))
            .execute(c)
            .await
        })?,
    };
    Ok(n == 1)
}
