//! Messages.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::chat::ConversationStatus;
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

/// Where [`insert_taking_seqs`] stored a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The seq it took.
    pub seq: i64,
    /// The tenant's Telegram group, if it has one.
    pub group_chat_id: Option<i64>,
    /// Its conversation's environment (as stored).
    pub environment: String,
}

#[derive(QueryableByName)]
struct PlacedRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    group_chat_id: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    environment: String,
}

/// Seqs and rows of a batch of new messages in ONE statement: each conversation's
/// messages are numbered from its `last_seq` in the order given, the conversations are
/// updated (`last_seq`, `updated_at`), the rows inserted, and every stored message's
/// seq answered with its conversation's environment and the tenant's Telegram group.
/// The update takes the row lock of each conversation until the caller commits.
///
/// A query type of its own rather than `sql_query`, which diesel never prepares (it
/// would be parsed and planned on every call): its text is fixed, so it is prepared
/// once per connection. `walk_ast` numbers the binds in the order pushed, so each
/// array appears once in the text, in that order.
struct InsertTakingSeqs<'a> {
    ids: Vec<&'a str>,
    tenants: Vec<&'a str>,
    conversations: Vec<&'a str>,
    visitors: Vec<Option<&'a str>>,
    directions: Vec<&'a str>,
    authors: Vec<Option<&'a str>>,
    bodies: Vec<&'a str>,
    client_msg_ids: Vec<Option<&'a str>>,
    created: Vec<i64>,
    edited: Vec<Option<i64>>,
    telegram_ids: Vec<Option<i64>>,
    erased: Vec<Option<i64>>,
    reply_to: Vec<Option<&'a str>>,
    now: i64,
    open: &'static str,
}

impl<'a> InsertTakingSeqs<'a> {
    fn new(rows: &[(&'a MessageRow, Option<&'a str>)], now: i64) -> Self {
        fn col<'a, T>(
            rows: &[(&'a MessageRow, Option<&'a str>)],
            f: impl Fn(&'a MessageRow) -> T,
        ) -> Vec<T> {
            rows.iter().map(|(r, _)| f(r)).collect()
        }
        InsertTakingSeqs {
            ids: col(rows, |r| r.id.as_str()),
            tenants: col(rows, |r| r.tenant_id.as_str()),
            conversations: col(rows, |r| r.conversation_id.as_str()),
            visitors: rows.iter().map(|(_, v)| *v).collect(),
            directions: col(rows, |r| r.direction.as_str()),
            authors: col(rows, |r| r.author.as_deref()),
            bodies: col(rows, |r| r.body.as_str()),
            client_msg_ids: col(rows, |r| r.client_msg_id.as_deref()),
            created: col(rows, |r| r.created_at),
            edited: col(rows, |r| r.edited_at),
            telegram_ids: col(rows, |r| r.telegram_message_id),
            erased: col(rows, |r| r.erased_at),
            reply_to: col(rows, |r| r.reply_to.as_deref()),
            now,
            open: ConversationStatus::Open.as_str(),
        }
    }
}

impl diesel::query_builder::QueryId for InsertTakingSeqs<'_> {
    type QueryId = InsertTakingSeqs<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for InsertTakingSeqs<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

/// The next bind of `out`, then `sql` (its cast and separator).
fn arg<'b, T, U>(
    out: &mut diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    value: &'b U,
    sql: &str,
) -> QueryResult<()>
where
    diesel::pg::Pg: diesel::sql_types::HasSqlType<T>,
    U: diesel::serialize::ToSql<T, diesel::pg::Pg> + ?Sized,
{
    out.push_bind_param::<T, U>(value)?;
    out.push_sql(sql);
    Ok(())
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for InsertTakingSeqs<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Nullable, Text};
        out.push_sql("WITH m AS MATERIALIZED (SELECT u.*, row_number() OVER (PARTITION BY u.tenant_id, u.conversation_id ORDER BY u.ord) AS k FROM unnest(");
        arg::<Array<Text>, _>(&mut out, &self.ids, "::text[], ")?;
        arg::<Array<Text>, _>(&mut out, &self.tenants, "::text[], ")?;
        arg::<Array<Text>, _>(&mut out, &self.conversations, "::text[], ")?;
        arg::<Array<Nullable<Text>>, _>(&mut out, &self.visitors, "::text[], ")?;
        arg::<Array<Text>, _>(&mut out, &self.directions, "::text[], ")?;
        arg::<Array<Nullable<Text>>, _>(&mut out, &self.authors, "::text[], ")?;
        arg::<Array<Text>, _>(&mut out, &self.bodies, "::text[], ")?;
        arg::<Array<Nullable<Text>>, _>(&mut out, &self.client_msg_ids, "::text[], ")?;
        arg::<Array<BigInt>, _>(&mut out, &self.created, "::bigint[], ")?;
        arg::<Array<Nullable<BigInt>>, _>(&mut out, &self.edited, "::bigint[], ")?;
        arg::<Array<Nullable<BigInt>>, _>(&mut out, &self.telegram_ids, "::bigint[], ")?;
        arg::<Array<Nullable<BigInt>>, _>(&mut out, &self.erased, "::bigint[], ")?;
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.reply_to)?;
        out.push_sql(
            "::text[]) WITH ORDINALITY AS u(id, tenant_id, conversation_id, visitor_id, direction, \
             author, body, client_msg_id, created_at, edited_at, telegram_message_id, erased_at, \
             reply_to, ord)), \
             x AS (SELECT tenant_id, conversation_id, visitor_id, count(*) AS n FROM m \
                   GROUP BY tenant_id, conversation_id, visitor_id), \
             taken AS (UPDATE conversations AS c SET last_seq = c.last_seq + x.n, updated_at = ",
        );
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(
            " FROM x WHERE c.tenant_id = x.tenant_id AND c.id = x.conversation_id AND c.status = ",
        );
        out.push_bind_param::<Text, _>(&self.open)?;
        out.push_sql(
            " AND (x.visitor_id IS NULL OR c.visitor_id = x.visitor_id) \
             RETURNING c.tenant_id, c.id, c.last_seq - x.n AS first_seq, c.environment, \
               (SELECT g.group_chat_id FROM telegram_configs g WHERE g.tenant_id = c.tenant_id) \
               AS group_chat_id), \
             ins AS (INSERT INTO messages (id, tenant_id, conversation_id, seq, direction, author, \
                       body, client_msg_id, created_at, edited_at, telegram_message_id, erased_at, \
                       reply_to) \
               SELECT m.id, m.tenant_id, m.conversation_id, t.first_seq + m.k, m.direction, \
                      m.author, m.body, m.client_msg_id, m.created_at, m.edited_at, \
                      m.telegram_message_id, m.erased_at, m.reply_to \
               FROM m JOIN taken AS t ON t.tenant_id = m.tenant_id AND t.id = m.conversation_id \
               ORDER BY m.ord \
               RETURNING id, tenant_id, conversation_id, seq) \
             SELECT i.id, i.seq, t.group_chat_id, t.environment \
             FROM ins AS i JOIN taken AS t ON t.tenant_id = i.tenant_id AND t.id = i.conversation_id",
        );
        Ok(())
    }
}

/// [`InsertTakingSeqs`] for one message, with plain binds instead of arrays: the
/// conversation is found by its primary key (the batch's join is planned for any
/// number of rows and, on a small or freshly analyzed table, scans the open
/// conversations instead), and nothing is sorted, numbered or grouped. A lone message
/// is the usual batch below saturation. Same answers: no row when the conversation is
/// not open, not the tenant's or not the visitor's.
struct InsertOneTakingSeq<'a> {
    row: &'a MessageRow,
    visitor: Option<&'a str>,
    now: i64,
    open: &'static str,
}

impl diesel::query_builder::QueryId for InsertOneTakingSeq<'_> {
    type QueryId = InsertOneTakingSeq<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for InsertOneTakingSeq<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for InsertOneTakingSeq<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Nullable, Text};
        let r = self.row;
        out.push_sql(
            "WITH taken AS (UPDATE conversations AS c SET last_seq = c.last_seq + 1, updated_at = ",
        );
        arg::<BigInt, _>(&mut out, &self.now, " WHERE c.id = ")?;
        arg::<Text, _>(&mut out, &r.conversation_id, " AND c.tenant_id = ")?;
        arg::<Text, _>(&mut out, &r.tenant_id, " AND c.status = ")?;
        arg::<Text, _>(&mut out, self.open, " AND c.visitor_id = COALESCE(")?;
        arg::<Nullable<Text>, _>(
            &mut out,
            &self.visitor,
            "::text, c.visitor_id) \
             RETURNING c.tenant_id, c.id, c.last_seq, c.environment, \
               (SELECT g.group_chat_id FROM telegram_configs g WHERE g.tenant_id = c.tenant_id) \
               AS group_chat_id), \
             ins AS (INSERT INTO messages (id, tenant_id, conversation_id, seq, direction, author, \
                       body, client_msg_id, created_at, edited_at, telegram_message_id, erased_at, \
                       reply_to) \
               SELECT ",
        )?;
        arg::<Text, _>(&mut out, &r.id, ", t.tenant_id, t.id, t.last_seq, ")?;
        arg::<Text, _>(&mut out, &r.direction, ", ")?;
        arg::<Nullable<Text>, _>(&mut out, &r.author, ", ")?;
        arg::<Text, _>(&mut out, &r.body, ", ")?;
        arg::<Nullable<Text>, _>(&mut out, &r.client_msg_id, ", ")?;
        arg::<BigInt, _>(&mut out, &r.created_at, ", ")?;
        arg::<Nullable<BigInt>, _>(&mut out, &r.edited_at, ", ")?;
        arg::<Nullable<BigInt>, _>(&mut out, &r.telegram_message_id, ", ")?;
        arg::<Nullable<BigInt>, _>(&mut out, &r.erased_at, ", ")?;
        arg::<Nullable<Text>, _>(
            &mut out,
            &r.reply_to,
            " FROM taken AS t RETURNING id, seq) \
             SELECT i.id, i.seq, t.group_chat_id, t.environment FROM ins AS i, taken AS t",
        )?;
        Ok(())
    }
}

/// Store new messages in the caller's transaction, each taking the next seq of its
/// open conversation (checking tenant and, with a visitor, that it is the visitor's),
/// in the order given: a conversation's messages here get consecutive seqs. `rows`'
/// seqs are ignored. Answers per row where it went, `None` when its conversation is
/// not open, not the tenant's or not the visitor's (nothing stored, no seq taken). A
/// conversation appears with one visitor (or `None`) only — the caller checks. A
/// duplicate `client_msg_id` fails on its unique index (and the transaction), as a
/// single insert does.
///
/// PostgreSQL: ONE statement whatever the number of messages (`InsertTakingSeqs`,
/// prepared once per connection; `InsertOneTakingSeq` for a lone message). SQLite: per
/// message [`super::conversations::next_seq_for_message`]
/// and [`insert`] (in-process calls; the batch's transaction is what saves there).
pub async fn insert_taking_seqs<'a>(
    conn: &mut Conn<'_>,
    rows: &[(&'a MessageRow, Option<&'a str>)],
    now: i64,
) -> Result<Vec<Option<Placed>>> {
    match conn {
        Conn::Pg(pg, _) => {
            let pg: &mut diesel_async::AsyncPgConnection = pg;
            let placed = match rows {
                [(row, visitor)] => {
                    InsertOneTakingSeq {
                        row,
                        visitor: *visitor,
                        now,
                        open: ConversationStatus::Open.as_str(),
                    }
                    .load::<PlacedRow>(pg)
                    .await?
                }
                _ => {
                    InsertTakingSeqs::new(rows, now)
                        .load::<PlacedRow>(pg)
                        .await?
                }
            };
            let mut placed: std::collections::HashMap<String, Placed> = placed
                .into_iter()
                .map(|p| {
                    (
                        p.id,
                        Placed {
                            seq: p.seq,
                            group_chat_id: p.group_chat_id,
                            environment: p.environment,
                        },
                    )
                })
                .collect();
            Ok(rows.iter().map(|(r, _)| placed.remove(&r.id)).collect())
        }
        Conn::Sqlite(..) => {
            let mut out = Vec::with_capacity(rows.len());
            for (row, visitor_id) in rows {
                let Some((seq, group_chat_id, environment)) =
                    super::conversations::next_seq_for_message(
                        conn,
                        &row.tenant_id,
                        &row.conversation_id,
                        *visitor_id,
                        now,
                    )
                    .await?
                else {
                    out.push(None);
                    continue;
                };
                let stored = MessageRow {
                    seq,
                    ..(*row).clone()
                };
                insert(conn, &stored).await?;
                out.push(Some(Placed {
                    seq,
                    group_chat_id,
                    environment,
                }));
            }
            Ok(out)
        }
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
