//! Templates: a tenant's overrides of widget strings, one row per (key, locale).

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use crate::db::{Conn, models::TemplateRow, schema::templates};
use crate::error::Result;
use crate::on_conn;

/// Insert or replace the tenant's template for `(row.key, row.locale)`.
pub async fn upsert(conn: &mut Conn<'_>, row: &TemplateRow) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(templates::table)
        .values(row)
        .on_conflict((templates::tenant_id, templates::key, templates::locale))
        .do_update()
        .set((
            templates::body.eq(excluded(templates::body)),
            templates::updated_at.eq(excluded(templates::updated_at)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// The tenant's template for `key` in exactly `locale`.
pub async fn get(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    key: &str,
    locale: &str,
) -> Result<Option<TemplateRow>> {
    Ok(on_conn!(conn, |c| templates::table
        .filter(templates::tenant_id.eq(tenant_id))
        .filter(templates::key.eq(key))
        .filter(templates::locale.eq(locale))
        .select(TemplateRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Delete the tenant's template for `key` in `locale`; the deleted row, if there was one.
pub async fn delete(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    key: &str,
    locale: &str,
) -> Result<Option<TemplateRow>> {
    Ok(on_conn!(conn, |c| diesel::delete(
        templates::table
            .filter(templates::tenant_id.eq(tenant_id))
            .filter(templates::key.eq(key))
            .filter(templates::locale.eq(locale))
    )
    .returning(TemplateRow::as_returning())
    .get_result(c)
    .await
    .optional())?)
}

/// The tenant's templates, optionally only one key and/or one locale, by key and locale.
pub async fn list(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    key: Option<&str>,
    locale: Option<&str>,
) -> Result<Vec<TemplateRow>> {
    Ok(on_conn!(conn, |c| {
        let mut q = templates::table
            .filter(templates::tenant_id.eq(tenant_id))
            .select(TemplateRow::as_select())
            .order((templates::key.asc(), templates::locale.asc()))
            .into_boxed();
        if let Some(k) = key {
            q = q.filter(templates::key.eq(k));
        }
        if let Some(l) = locale {
            q = q.filter(templates::locale.eq(l));
        }
        q.load(c).await
    })?)
}

/// The tenant's templates in any of `locales` (every key): what a fallback chain reads.
pub async fn in_locales(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    locales: &[String],
) -> Result<Vec<TemplateRow>> {
    Ok(on_conn!(conn, |c| templates::table
        .filter(templates::tenant_id.eq(tenant_id))
        .filter(templates::locale.eq_any(locales))
        .select(TemplateRow::as_select())
        .load(c)
        .await)?)
}
