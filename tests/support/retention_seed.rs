//! Seeding old data fast for the retention tests: visitors, conversations, messages,
//! outbox items and device tokens written with one `INSERT … SELECT` each over a
//! recursive counter (the same SQL on PostgreSQL and SQLite), straight into the
//! database — a hundred thousand messages take a second, not the minutes the API would.
//!
//! Every row of a group is named after its prefix (`<prefix>_c3`, `<prefix>_v3`,
//! `<prefix>_c3_m7`), so a test counts what is left of a group with [`count`].

#![allow(dead_code)]

use chatorical::db::Db;
use chatorical::domain::now_ms;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;

/// One day in milliseconds.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// A group of conversations alike: each with a visitor of its own (or of another
/// group's, `visitors_of`), `messages` messages, and optionally one delivered outbox
/// item and a forum topic.
#[derive(Debug, Clone)]
pub(crate) struct Group<'a> {
    /// Names every row of the group; unique in the database.
    pub prefix: &'a str,
    /// The tenant's id.
    pub tenant_id: &'a str,
    /// How many conversations.
    pub conversations: usize,
    /// Messages per conversation.
    pub messages: usize,
    /// Closed this many days ago; `None`: open.
    pub closed_days_ago: Option<f64>,
    /// The visitors were last seen this many days ago.
    pub seen_days_ago: f64,
    /// Device tokens per visitor (`visitor_tokens`).
    pub tokens: usize,
    /// One delivered outbox item per conversation.
    pub outbox: bool,
    /// Conversation `i` (from 1) has forum topic `topics_from + i`.
    pub topics_from: Option<i64>,
    /// Use the visitors of that group (conversation `i` → its visitor `i`) instead of
    /// creating new ones.
    pub visitors_of: Option<&'a str>,
    /// `production` or `staging`.
    pub environment: &'a str,
}

impl<'a> Group<'a> {
    /// `n` closed conversations of `tenant_id` with `messages` messages each, closed
    /// and last seen `days_ago` days ago, one device token per visitor and an outbox item.
    pub(crate) fn closed(
        prefix: &'a str,
        tenant_id: &'a str,
        n: usize,
        messages: usize,
        days_ago: f64,
    ) -> Self {
        Group {
            prefix,
            tenant_id,
            conversations: n,
            messages,
            closed_days_ago: Some(days_ago),
            seen_days_ago: days_ago,
            tokens: 1,
            outbox: true,
            topics_from: None,
            visitors_of: None,
            environment: "production",
        }
    }

    /// Like [`Group::closed`], but open (the visitors last seen `days_ago` days ago).
    pub(crate) fn open(
        prefix: &'a str,
        tenant_id: &'a str,
        n: usize,
        messages: usize,
        days_ago: f64,
    ) -> Self {
        Group {
            closed_days_ago: None,
            ..Group::closed(prefix, tenant_id, n, messages, days_ago)
        }
    }
}

fn days_ago(now: i64, days: f64) -> i64 {
    now - (days * DAY_MS as f64) as i64
}

fn counter(n: usize) -> String {
    format!("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) ")
}

/// Run one statement.
pub(crate) async fn exec(db: &Db, sql: &str) {
    let mut pc = db.conn().await.expect("connection");
    let mut conn = pc.as_conn();
    chatorical::on_conn!(&mut conn, |c| diesel::sql_query(sql).execute(c).await)
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The number a `SELECT count(*) AS n …` answers.
pub(crate) async fn count(db: &Db, sql: &str) -> i64 {
    let mut pc = db.conn().await.expect("connection");
    let mut conn = pc.as_conn();
    let rows: Vec<Count> =
        chatorical::on_conn!(&mut conn, |c| diesel::sql_query(sql).load(c).await)
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    rows.into_iter().next().map_or(0, |r| r.n)
}

/// `n` production visitors of the tenant named `<prefix>_v1…`, last seen
/// `seen_days_ago` days ago, with `tokens` device tokens each.
pub(crate) async fn seed_visitors(
    db: &Db,
    prefix: &str,
    tenant_id: &str,
    n: usize,
    seen_days_ago: f64,
    tokens: usize,
) {
    seed_visitors_in(
        db,
        prefix,
        tenant_id,
        "production",
        n,
        seen_days_ago,
        tokens,
    )
    .await;
}

/// Like [`seed_visitors`], in `environment`.
pub(crate) async fn seed_visitors_in(
    db: &Db,
    prefix: &str,
    tenant_id: &str,
    environment: &str,
    n: usize,
    seen_days_ago: f64,
    tokens: usize,
) {
    if n == 0 {
        return;
    }
    let now = now_ms();
    let seen = days_ago(now, seen_days_ago);
    let created = seen.min(now - 400 * DAY_MS);
    exec(
        db,
        &format!(
            "{}INSERT INTO visitors (id, tenant_id, token_hash, created_at, last_seen_at, environment) \
             SELECT '{prefix}_v' || i, '{tenant_id}', '{prefix}_th' || i, {created}, {seen}, \
             '{environment}' FROM n",
            counter(n)
        ),
    )
    .await;
    if tokens > 0 {
        let len = prefix.len() + 2;
        exec(
            db,
            &format!(
                "{}INSERT INTO visitor_tokens (token_hash, tenant_id, visitor_id, created_at) \
                 SELECT v.id || '_t' || n.i, v.tenant_id, v.id, v.created_at \
                 FROM visitors v CROSS JOIN n \
                 WHERE v.tenant_id = '{tenant_id}' AND substr(v.id, 1, {len}) = '{prefix}_v'",
                counter(tokens)
            ),
        )
        .await;
    }
}

/// Write a group.
pub(crate) async fn seed(db: &Db, g: &Group<'_>) {
    let now = now_ms();
    let p = g.prefix;
    let t = g.tenant_id;
    let visitors = match g.visitors_of {
        Some(other) => other.to_string(),
        None => {
            seed_visitors_in(
                db,
                p,
                t,
                g.environment,
                g.conversations,
                g.seen_days_ago,
                g.tokens,
            )
            .await;
            p.to_string()
        }
    };
    let created = days_ago(now, g.closed_days_ago.unwrap_or(g.seen_days_ago) + 1.0);
    let (status, closed_at, updated) = match g.closed_days_ago {
        Some(d) => {
            let at = days_ago(now, d);
            ("closed", at.to_string(), at)
        }
        None => ("open", "NULL".to_string(), created),
    };
    let topic = g
        .topics_from
        .map_or_else(|| "NULL".to_string(), |base| format!("{base} + i"));
    exec(
        db,
        &format!(
            "{}INSERT INTO conversations (id, tenant_id, visitor_id, status, last_seq, created_at, \
             updated_at, closed_at, telegram_topic_id, telegram_topic_closed, environment) \
             SELECT '{p}_c' || i, '{t}', '{visitors}_v' || i, '{status}', {m}, {created}, {updated}, \
             {closed_at}, {topic}, FALSE, '{e}' FROM n",
            counter(g.conversations),
            m = g.messages,
            e = g.environment,
        ),
    )
    .await;
    let len = p.len() + 2;
    let mine = format!("c.tenant_id = '{t}' AND substr(c.id, 1, {len}) = '{p}_c'");
    if g.messages > 0 {
        exec(
            db,
            &format!(
                "{}INSERT INTO messages (id, tenant_id, conversation_id, seq, direction, body, created_at) \
                 SELECT c.id || '_m' || n.i, c.tenant_id, c.id, n.i, 'inbound', \
                 'seeded text ' || n.i, c.created_at \
                 FROM conversations c CROSS JOIN n WHERE {mine}",
                counter(g.messages)
            ),
        )
        .await;
    }
    if g.outbox {
        exec(
            db,
            &format!(
                "INSERT INTO outbox (id, tenant_id, kind, idempotency_key, lane, payload, status, \
                 attempts, next_attempt_at, created_at, updated_at, delivered_at, conversation_id) \
                 SELECT 'ob_' || c.id, c.tenant_id, 'telegram.close_topic', 'seed_' || c.id, \
                 'tg:' || c.tenant_id || ':-1', '{{\"conversation_id\":\"' || c.id || '\"}}', \
                 'delivered', 1, c.created_at, c.created_at, c.created_at, c.created_at, c.id \
                 FROM conversations c WHERE {mine}"
            ),
        )
        .await;
    }
}

/// How many rows of `table` belong to a group: ids (for `messages` and `outbox`, the
/// conversation ids; for `visitor_tokens`, the visitor ids) starting with `<prefix>_`.
pub(crate) async fn left(db: &Db, table: &str, prefix: &str) -> i64 {
    let column = match table {
        "messages" | "outbox" => "conversation_id",
        "visitor_tokens" => "visitor_id",
        _ => "id",
    };
    let len = prefix.len() + 1;
    count(
        db,
        &format!(
            "SELECT count(*) AS n FROM {table} WHERE substr({column}, 1, {len}) = '{prefix}_'"
        ),
    )
    .await
}
