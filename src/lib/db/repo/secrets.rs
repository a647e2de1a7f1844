//! Every value sealed with the master key, column by column, for `secrets` rotation
//! and status. These read across tenants: they are operator maintenance, never called
//! on behalf of one tenant.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{
    Conn,
    schema::{telegram_configs, tenants},
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
}

impl SealedColumn {
    /// All of them.
    pub const ALL: [SealedColumn; 3] = [
        SealedColumn::BotToken,
        SealedColumn::WebhookSecret,
        SealedColumn::IdentitySecret,
    ];
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
    })
}

/// Up to `limit` `(tenant id, sealed value)` pairs of the column, by tenant id, after
/// `after` (keyset paging: start with `""`).
pub async fn page(
    conn: &mut Conn<'_>,
    column: SealedColumn,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    Ok(match column {
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

/// Replace a tenant's sealed value with `new`, but only while it still is `old` (a value
/// changed meanwhile, e.g. a new identity secret, is left alone). Returns whether it did.
pub async fn replace(
    conn: &mut Conn<'_>,
    column: SealedColumn,
    tenant_id: &str,
    old: &str,
    new: &str,
) -> Result<bool> {
    let n = match column {
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
