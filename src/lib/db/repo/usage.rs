//! Daily usage counters per tenant (`usage_daily`).

use diesel::dsl::case_when;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use crate::db::{Conn, models::UsageRow, schema::usage_daily};
use crate::error::Result;
use crate::on_conn;

/// Add `n` to a tenant's count of `metric` on `day` (creating the row at `n`).
pub async fn add(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    day: &str,
    metric: &str,
    n: i64,
) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(usage_daily::table)
        .values((
            usage_daily::tenant_id.eq(tenant_id),
            usage_daily::day.eq(day),
            usage_daily::metric.eq(metric),
            usage_daily::count.eq(n),
        ))
        .on_conflict((
            usage_daily::tenant_id,
            usage_daily::day,
            usage_daily::metric
        ))
        .do_update()
        .set(usage_daily::count.eq(usage_daily::count + excluded(usage_daily::count)))
        .execute(c)
        .await)?;
    Ok(())
}

/// Store a running total: the row becomes `row.count` unless it already holds more
/// (so an older total written by a slower summarizer never lowers a newer one).
pub async fn raise_to(conn: &mut Conn<'_>, row: &UsageRow) -> Result<()> {
    on_conn!(conn, |c| diesel::insert_into(usage_daily::table)
        .values(row)
        .on_conflict((
            usage_daily::tenant_id,
            usage_daily::day,
            usage_daily::metric
        ))
        .do_update()
        .set(
            usage_daily::count.eq(case_when(
                excluded(usage_daily::count).gt(usage_daily::count),
                excluded(usage_daily::count),
            )
            .otherwise(usage_daily::count)),
        )
        .execute(c)
        .await)?;
    Ok(())
}

/// A tenant's rows for the days `from..=to` (`YYYY-MM-DD`), by day and metric.
pub async fn range(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    from: &str,
    to: &str,
) -> Result<Vec<UsageRow>> {
    Ok(on_conn!(conn, |c| usage_daily::table
        .filter(usage_daily::tenant_id.eq(tenant_id))
        .filter(usage_daily::day.ge(from))
        .filter(usage_daily::day.le(to))
        .order((usage_daily::day.asc(), usage_daily::metric.asc()))
        .select(UsageRow::as_select())
        .load(c)
        .await)?)
}
