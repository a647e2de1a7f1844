//! Backlog episodes of outbox lanes (`outbox_backlog`): whether the notice about a
//! lane's backlog was posted, so that it is posted once per episode across workers
//! and processes. Every change is conditional on a look at the outbox taken after the
//! last change (`seen_at`), so that a worker acting on an older look undoes nothing.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::{Conn, schema::outbox_backlog};
use crate::error::Result;
use crate::on_conn;

/// Start an episode of `lane` unless one is running, or one ended after `seen_at`
/// (the look that found the backlog). Returns the episode's number when this call
/// started it; `None` when another worker did, or the look is older than the end.
pub async fn start_episode(
    conn: &mut Conn<'_>,
    lane: &str,
    tenant_id: &str,
    seen_at: i64,
    now: i64,
) -> Result<Option<i32>> {
    let inserted = on_conn!(conn, |c| diesel::insert_into(outbox_backlog::table)
        .values((
            outbox_backlog::lane.eq(lane),
            outbox_backlog::tenant_id.eq(tenant_id),
            outbox_backlog::warned_at.eq(Some(now)),
            outbox_backlog::cleared_at.eq(None::<i64>),
            outbox_backlog::episodes.eq(1),
            outbox_backlog::updated_at.eq(now),
        ))
        .on_conflict(outbox_backlog::lane)
        .do_nothing()
        .execute(c)
        .await)?;
    if inserted == 1 {
        return Ok(Some(1));
    }
    let started: Vec<i32> = on_conn!(conn, |c| diesel::update(outbox_backlog::table)
        .filter(outbox_backlog::lane.eq(lane))
        .filter(outbox_backlog::warned_at.is_null())
        .filter(
            outbox_backlog::cleared_at
                .is_null()
                .or(outbox_backlog::cleared_at.lt(seen_at)),
        )
        .set((
            outbox_backlog::warned_at.eq(Some(now)),
            outbox_backlog::episodes.eq(outbox_backlog::episodes + 1),
            outbox_backlog::updated_at.eq(now),
        ))
        .returning(outbox_backlog::episodes)
        .get_results(c)
        .await)?;
    Ok(started.into_iter().next())
}

/// End the running episode of `lane` if it started before `seen_at` (the look that
/// found the backlog cleared). Returns whether this call ended it.
pub async fn end_episode(conn: &mut Conn<'_>, lane: &str, seen_at: i64, now: i64) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(outbox_backlog::table)
        .filter(outbox_backlog::lane.eq(lane))
        .filter(outbox_backlog::warned_at.le(seen_at))
        .set((
            outbox_backlog::warned_at.eq(None::<i64>),
            outbox_backlog::cleared_at.eq(Some(now)),
            outbox_backlog::updated_at.eq(now),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// The lanes with a running episode (of one tenant, or all) and when each started.
pub async fn running(conn: &mut Conn<'_>, tenant_id: Option<&str>) -> Result<Vec<(String, i64)>> {
    let rows: Vec<(String, Option<i64>)> = on_conn!(conn, |c| {
        let mut q = outbox_backlog::table
            .filter(outbox_backlog::warned_at.is_not_null())
            .select((outbox_backlog::lane, outbox_backlog::warned_at))
            .into_boxed();
        if let Some(t) = tenant_id {
            q = q.filter(outbox_backlog::tenant_id.eq(t));
        }
        q.load(c).await
    })?;
    Ok(rows
        .into_iter()
        .filter_map(|(lane, at)| Some((lane, at?)))
        .collect())
}
