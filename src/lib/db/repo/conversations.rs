//! Conversations.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::chat::ConversationStatus;
use crate::db::{
    Conn,
    models::ConversationRow,
    schema::{conversations, telegram_configs},
};
use crate::domain::new_id;
use crate::error::Result;
use crate::on_conn;

/// The visitor's open conversation, if any.
pub async fn open_for_visitor(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    visitor_id: &str,
) -> Result<Option<ConversationRow>> {
    Ok(on_conn!(conn, |c| conversations::table
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::visitor_id.eq(visitor_id))
        .filter(conversations::status.eq(ConversationStatus::Open.as_str()))
        .select(ConversationRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// The visitor's open conversation, created if there is none (in `environment`, the
/// visitor's). The unique partial index on open conversations makes concurrent starts
/// converge on one row. Returns the conversation and whether this call created it.
pub async fn open_or_create(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    visitor_id: &str,
    environment: &str,
    now: i64,
) -> Result<(ConversationRow, bool)> {
    if let Some(existing) = open_for_visitor(conn, tenant_id, visitor_id).await? {
        return Ok((existing, false));
    }
    let row = ConversationRow {
        id: new_id("cv"),
        tenant_id: tenant_id.to_string(),
        visitor_id: visitor_id.to_string(),
        status: ConversationStatus::Open.as_str().into(),
        last_seq: 0,
        created_at: now,
        updated_at: now,
        closed_at: None,
        telegram_topic_id: None,
        telegram_topic_closed: false,
        subject: None,
        telegram_topic_name: None,
        environment: environment.to_string(),
    };
    let inserted = on_conn!(conn, |c| diesel::insert_into(conversations::table)
        .values(&row)
        .on_conflict_do_nothing()
        .execute(c)
        .await)?;
    match open_for_visitor(conn, tenant_id, visitor_id).await? {
        Some(found) => Ok((found, inserted == 1)),
        None => Err(crate::error::Error::internal(
            "open conversation vanished after insert",
        )),
    }
}

/// One conversation of the tenant.
pub async fn get(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
) -> Result<Option<ConversationRow>> {
    Ok(on_conn!(conn, |c| conversations::table
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .select(ConversationRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// The environment of one conversation of the tenant (`None`: no such conversation).
pub async fn environment_of(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
) -> Result<Option<String>> {
    Ok(on_conn!(conn, |c| conversations::table
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .select(conversations::environment)
        .first(c)
        .await
        .optional())?)
}

/// The tenant's conversations (of one environment, when given), most recently active
/// first: in the order of the index on the second of `updated_at` (generated from it;
/// see the `conversations_recency` migration), ties within a second by `updated_at`.
pub async fn list(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    status: Option<&str>,
    environment: Option<&str>,
    limit: i64,
) -> Result<Vec<ConversationRow>> {
    Ok(on_conn!(conn, |c| {
        let mut q = conversations::table
            .filter(conversations::tenant_id.eq(tenant_id))
            .select(ConversationRow::as_select())
            .order((
                conversations::updated_second.desc(),
                conversations::updated_at.desc(),
                conversations::id.desc(),
            ))
            .limit(limit)
            .into_boxed();
        if let Some(s) = status {
            q = q.filter(conversations::status.eq(s));
        }
        if let Some(e) = environment {
            q = q.filter(conversations::environment.eq(e));
        }
        q.load(c).await
    })?)
}

/// Close an open conversation. Returns whether it was open.
pub async fn close(conn: &mut Conn<'_>, tenant_id: &str, id: &str, now: i64) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .filter(conversations::status.eq(ConversationStatus::Open.as_str()))
        .set((
            conversations::status.eq(ConversationStatus::Closed.as_str()),
            conversations::closed_at.eq(now),
            conversations::updated_at.eq(now),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Take the next seq of an open conversation (locks the row until commit).
/// `None` when the conversation is not open (or not the tenant's).
pub async fn next_seq(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
    now: i64,
) -> Result<Option<i64>> {
    Ok(on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .filter(conversations::status.eq(ConversationStatus::Open.as_str()))
        .set((
            conversations::last_seq.eq(conversations::last_seq + 1),
            conversations::updated_at.eq(now),
        ))
        .returning(conversations::last_seq)
        .get_result::<i64>(c)
        .await
        .optional())?)
}

/// Take the next seq of an open conversation for a new message (locks the row until
/// commit), checking ownership in the same statement: with `visitor_id`, only that
/// visitor's conversation matches. Also returns the tenant's Telegram group chat (a
/// subquery in `RETURNING`; `None` when Telegram is not connected) and the
/// conversation's environment, so storing a production message needs no other read.
/// `None` when the conversation is not open, not the tenant's or not the visitor's.
pub async fn next_seq_for_message(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
    visitor_id: Option<&str>,
    now: i64,
) -> Result<Option<(i64, Option<i64>, String)>> {
    let group = telegram_configs::table
        .find(tenant_id)
        .select(telegram_configs::group_chat_id)
        .single_value();
    // Two fixed statements (with and without the visitor), not one boxed query:
    // PostgreSQL then prepares each once per connection.
    let open = conversations::table
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .filter(conversations::status.eq(ConversationStatus::Open.as_str()));
    let set = (
        conversations::last_seq.eq(conversations::last_seq + 1),
        conversations::updated_at.eq(now),
    );
    let returned = (conversations::last_seq, group, conversations::environment);
    Ok(match visitor_id {
        Some(v) => on_conn!(conn, |c| diesel::update(
            open.filter(conversations::visitor_id.eq(v))
        )
        .set(set)
        .returning(returned)
        .get_result::<(i64, Option<i64>, String)>(c)
        .await
        .optional())?,
        None => on_conn!(conn, |c| diesel::update(open)
            .set(set)
            .returning(returned)
            .get_result::<(i64, Option<i64>, String)>(c)
            .await
            .optional())?,
    })
}

/// Record the conversation's forum topic, created with `name`, unless one is already
/// recorded. Returns whether this call recorded it.
pub async fn set_topic(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
    topic_id: i64,
    name: &str,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .filter(conversations::telegram_topic_id.is_null())
        .set((
            conversations::telegram_topic_id.eq(topic_id),
            conversations::telegram_topic_closed.eq(false),
            conversations::telegram_topic_name.eq(name),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Record the name Telegram now shows for the conversation's topic `topic_id` (after a
/// rename); nothing when the conversation has another topic by now.
pub async fn set_topic_name(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
    topic_id: i64,
    name: &str,
) -> Result<()> {
    on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .filter(conversations::telegram_topic_id.eq(topic_id))
        .set(conversations::telegram_topic_name.eq(name))
        .execute(c)
        .await)?;
    Ok(())
}

/// Set the conversation's subject. Returns whether the conversation exists.
pub async fn set_subject(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
    subject: &str,
) -> Result<bool> {
    let n = on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .set(conversations::subject.eq(subject))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Forget a topic Telegram says is gone, so the next delivery creates a new one.
pub async fn clear_topic(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
    topic_id: i64,
) -> Result<()> {
    on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .filter(conversations::telegram_topic_id.eq(topic_id))
        .set((
            conversations::telegram_topic_id.eq(None::<i64>),
            conversations::telegram_topic_name.eq(None::<String>),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Mark the topic closed or open.
pub async fn set_topic_closed(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    id: &str,
    closed: bool,
) -> Result<()> {
    on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::id.eq(id))
        .set(conversations::telegram_topic_closed.eq(closed))
        .execute(c)
        .await)?;
    Ok(())
}

/// The conversation that owns a forum topic; with `environment`, only a conversation
/// of that environment (topic ids are per group: an environment with a group of its own
/// numbers its topics apart).
pub async fn by_topic(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    topic_id: i64,
    environment: Option<&str>,
) -> Result<Option<ConversationRow>> {
    Ok(on_conn!(conn, |c| {
        let mut q = conversations::table
            .filter(conversations::tenant_id.eq(tenant_id))
            .filter(conversations::telegram_topic_id.eq(topic_id))
            .select(ConversationRow::as_select())
            .into_boxed();
        if let Some(e) = environment {
            q = q.filter(conversations::environment.eq(e));
        }
        q.first(c).await.optional()
    })?)
}

/// Forget the topics of the tenant's conversations of one environment (its group
/// changed; topics are re-created where they go now).
pub async fn clear_env_topics(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    environment: &str,
) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::environment.eq(environment))
        .filter(conversations::telegram_topic_id.is_not_null())
        .set((
            conversations::telegram_topic_id.eq(None::<i64>),
            conversations::telegram_topic_name.eq(None::<String>),
        ))
        .execute(c)
        .await)?)
}

/// Forget every topic of the tenant (the forum group changed; topics are re-created).
pub async fn clear_all_topics(conn: &mut Conn<'_>, tenant_id: &str) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::telegram_topic_id.is_not_null())
        .set((
            conversations::telegram_topic_id.eq(None::<i64>),
            conversations::telegram_topic_name.eq(None::<String>),
        ))
        .execute(c)
        .await)?)
}

/// How many production conversations of the tenant are open (the plan's cap counts
/// those; staging's never count against it).
pub async fn count_open(conn: &mut Conn<'_>, tenant_id: &str) -> Result<i64> {
    Ok(on_conn!(conn, |c| conversations::table
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::status.eq(ConversationStatus::Open.as_str()))
        .filter(conversations::environment.eq(crate::domain::Environment::Production.as_str()))
        .count()
        .get_result(c)
        .await)?)
}

/// Every conversation of the visitor, oldest first.
pub async fn of_visitor(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    visitor_id: &str,
) -> Result<Vec<ConversationRow>> {
    Ok(on_conn!(conn, |c| conversations::table
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::visitor_id.eq(visitor_id))
        .order((conversations::created_at.asc(), conversations::id.asc()))
        .select(ConversationRow::as_select())
        .load(c)
        .await)?)
}

/// Close the visitor's open conversations (their rows stay locked until commit, so a
/// message being stored into one either commits first or finds it closed). Returns
/// how many were open.
pub async fn close_all_of_visitor(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    visitor_id: &str,
    now: i64,
) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::visitor_id.eq(visitor_id))
        .filter(conversations::status.eq(ConversationStatus::Open.as_str()))
        .set((
            conversations::status.eq(ConversationStatus::Closed.as_str()),
            conversations::closed_at.eq(now),
            conversations::updated_at.eq(now),
        ))
        .execute(c)
        .await)?)
}

/// Clear the subject and the recorded topic name of the visitor's conversations (both
/// may name the visitor); the topic itself is renamed through the outbox. Returns how
/// many conversations had either.
pub async fn clear_labels_of_visitor(
    conn: &mut Conn<'_>,
    tenant_id: &str,
    visitor_id: &str,
) -> Result<usize> {
    Ok(on_conn!(conn, |c| diesel::update(conversations::table)
        .filter(conversations::tenant_id.eq(tenant_id))
        .filter(conversations::visitor_id.eq(visitor_id))
        .filter(
            conversations::subject
                .is_not_null()
                .or(conversations::telegram_topic_name.is_not_null()),
        )
        .set((
            conversations::subject.eq(None::<String>),
            conversations::telegram_topic_name.eq(None::<String>),
        ))
        .execute(c)
        .await)?)
}
