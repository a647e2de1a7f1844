//! This box's PostgreSQL ceiling for the message path, measured by the bench itself:
//! scratch tables shaped like `conversations` and `messages` in a fresh database, and
//! the transactions a message costs driven from plain connections the way pgbench
//! drives a custom script (one statement per round trip, each client in a closed loop,
//! each transaction on a conversation picked at random):
//!
//! - message-shaped: `BEGIN; UPDATE … SET last_seq = last_seq + 1 … RETURNING last_seq;
//!   INSERT …; COMMIT` (what one stored message costs with one commit per message);
//! - one `INSERT` per transaction (autocommit);
//! - a batch: `BATCH` messages in one transaction (`UPDATE … FROM unnest(…)` taking every
//!   conversation's seqs at once, one multi-row `INSERT … SELECT … FROM unnest(…)`), from
//!   one connection and from all of them: what committing many messages at once reaches;
//! - the commit floor ([`commit_floor`]): the message-shaped transaction from one
//!   connection, for its latency: no stored message is acknowledged faster on this box.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio_postgres::{Client, NoTls, Statement};

use super::{CpuWatch, histogram, record};

/// Scratch table like `conversations` (only what the message path touches).
const CONVERSATIONS: &str = "ceiling_conversations";
/// Scratch table like `messages`.
const MESSAGES: &str = "ceiling_messages";

/// What to run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Connections of the per-message variants and of the many-connection batch.
    pub connections: usize,
    /// Rows in the conversations table.
    pub conversations: usize,
    /// Messages per transaction of the batch variants.
    pub batch: usize,
    /// Length of each variant.
    pub seconds: u64,
}

/// One variant's result.
pub(crate) struct Variant {
    pub connections: usize,
    /// Committed transactions.
    pub tx: u64,
    /// Messages stored by them.
    pub messages: u64,
    /// Transactions that failed (rolled back).
    pub errors: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
    pub secs: f64,
    /// Per committed transaction, `BEGIN` to `COMMIT` answered.
    pub latency: Histogram<u64>,
    /// CPU of PostgreSQL, the bench and the machine during the variant.
    pub cpu: String,
}

impl Variant {
    pub(crate) fn tps(&self) -> f64 {
        self.tx as f64 / self.secs.max(0.001)
    }

    pub(crate) fn msg_per_sec(&self) -> f64 {
        self.messages as f64 / self.secs.max(0.001)
    }
}

/// The ceiling: the server's settings and every variant.
pub(crate) struct Ceiling {
    /// e.g. `PostgreSQL 16.4; fsync on, synchronous_commit on, …`.
    pub settings: String,
    pub plan: Plan,
    pub message_shaped: Variant,
    pub single_insert: Variant,
    pub batch_one: Variant,
    pub batch_many: Variant,
}

impl Ceiling {
    /// `message-shaped transaction, 16 connections: 5150 tps`.
    pub(crate) fn reference(&self) -> String {
        format!(
            "message-shaped transaction, {} connections: {:.0} tps",
            self.message_shaped.connections,
            self.message_shaped.tps()
        )
    }

    /// `rate` (stored messages per second) as a percentage of the message-shaped tps.
    pub(crate) fn percent(&self, rate: f64) -> f64 {
        rate / self.message_shaped.tps().max(0.001) * 100.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    MessageShaped,
    SingleInsert,
    Batch,
}

/// One connection with its prepared statements.
struct Conn {
    client: Client,
    update_one: Statement,
    insert_one: Statement,
    update_many: Statement,
    insert_many: Statement,
}

/// What every transaction needs besides its connection.
struct Shared {
    conversations: Vec<(String, String)>,
    /// Seqs of the autocommit inserts (no conversation row is updated there): one
    /// counter for all, so (conversation_id, seq) stays unique.
    free_seq: AtomicI64,
    batch: usize,
}

/// Create the scratch tables in the database at `url` and run every variant.
pub(crate) async fn measure(url: &str, plan: Plan) -> Result<Ceiling> {
    if plan.connections == 0 || plan.conversations == 0 || plan.batch == 0 {
        bail!("the ceiling needs at least one connection, conversation and message per batch");
    }
    let (admin, settings, conversations) = scratch(url, plan.conversations).await?;

    let mut conns = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        conns.push(Arc::new(prepare(connect(url).await?).await?));
    }
    let shared = Arc::new(Shared {
        conversations,
        free_seq: AtomicI64::new(1_000_000_000),
        batch: plan.batch,
    });
    let secs = plan.seconds.max(1);
    let message_shaped = run(Kind::MessageShaped, &conns, &shared, secs).await;
    let single_insert = run(Kind::SingleInsert, &conns, &shared, secs).await;
    let batch_one = run(Kind::Batch, &conns[..1], &shared, secs).await;
    let batch_many = run(Kind::Batch, &conns, &shared, secs).await;
    drop(conns);
    drop_scratch(&admin).await;
    Ok(Ceiling {
        settings,
        plan,
        message_shaped,
        single_insert,
        batch_one,
        batch_many,
    })
}

/// The latency floor of one stored message on this box: the message-shaped transaction
/// from ONE connection in a closed loop for `secs` (nothing else waits on the commit,
/// so each transaction pays its own WAL flush). A one-node server cannot answer a
/// message faster than this; the returned variant's `latency` is the distribution.
pub(crate) async fn commit_floor(url: &str, secs: u64) -> Result<(String, Variant)> {
    let (admin, settings, conversations) = scratch(url, 100).await?;
    let conn = Arc::new(prepare(connect(url).await?).await?);
    let shared = Arc::new(Shared {
        conversations,
        free_seq: AtomicI64::new(1_000_000_000),
        batch: 1,
    });
    let v = run(Kind::MessageShaped, &[conn], &shared, secs.max(1)).await;
    drop_scratch(&admin).await;
    Ok((settings, v))
}

async fn drop_scratch(admin: &Client) {
    let _ = admin
        .batch_execute(&format!(
            "DROP TABLE {MESSAGES}; DROP TABLE {CONVERSATIONS}"
        ))
        .await;
}

/// The scratch tables with `n` conversations: the admin connection, the server's
/// settings and the conversations (id, tenant).
async fn scratch(url: &str, n: usize) -> Result<(Client, String, Vec<(String, String)>)> {
    let admin = connect(url).await?;
    let settings = settings(&admin).await?;
    admin
        .batch_execute(&format!(
            "CREATE TABLE {CONVERSATIONS} (
                id        TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                last_seq  BIGINT NOT NULL DEFAULT 0
            );
            CREATE TABLE {MESSAGES} (
                id                  TEXT PRIMARY KEY,
                tenant_id           TEXT NOT NULL,
                conversation_id     TEXT NOT NULL,
                seq                 BIGINT NOT NULL,
                direction           TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
                author              TEXT,
                body                TEXT NOT NULL,
                client_msg_id       TEXT,
                created_at          BIGINT NOT NULL,
                edited_at           BIGINT,
                telegram_message_id BIGINT,
                erased_at           BIGINT,
                reply_to            TEXT,
                UNIQUE (conversation_id, seq),
                UNIQUE (conversation_id, client_msg_id)
            );
            CREATE INDEX {MESSAGES}_telegram ON {MESSAGES} (tenant_id, telegram_message_id)
                WHERE telegram_message_id IS NOT NULL;"
        ))
        .await
        .context("create the scratch tables")?;
    let conversations: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                uuid::Uuid::now_v7().to_string(),
                format!("ceiling-tenant-{}", i % 10),
            )
        })
        .collect();
    let (ids, tenants): (Vec<String>, Vec<String>) = conversations.iter().cloned().unzip();
    admin
        .execute(
            &format!(
                "INSERT INTO {CONVERSATIONS} (id, tenant_id)
                 SELECT * FROM unnest($1::text[], $2::text[])"
            ),
            &[&ids, &tenants],
        )
        .await
        .context("seed the scratch conversations")?;
    admin
        .batch_execute(&format!("ANALYZE {CONVERSATIONS}; ANALYZE {MESSAGES}"))
        .await?;
    Ok((admin, settings, conversations))
}

/// A connection whose connection task runs on the runtime.
async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connect to {url}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Version and the settings that bound commits per second.
async fn settings(client: &Client) -> Result<String> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('fsync'),
                    current_setting('synchronous_commit'), current_setting('wal_sync_method'),
                    current_setting('commit_delay'), current_setting('shared_buffers')",
            &[],
        )
        .await
        .context("read the server's settings")?;
    let get = |i: usize| row.get::<_, String>(i);
    Ok(format!(
        "PostgreSQL {}; fsync {}, synchronous_commit {}, wal_sync_method {}, commit_delay {}, shared_buffers {}",
        get(0),
        get(1),
        get(2),
        get(3),
        get(4),
        get(5)
    ))
}

async fn prepare(client: Client) -> Result<Conn> {
    let update_one = client
        .prepare(&format!(
            "UPDATE {CONVERSATIONS} SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq"
        ))
        .await?;
    let insert_one = client
        .prepare(&format!(
            "INSERT INTO {MESSAGES} (id, tenant_id, conversation_id, seq, direction, author, body,
                                     client_msg_id, created_at, reply_to)
             VALUES ($1, $2, $3, $4, 'inbound', NULL, $5, $6, $7, NULL)"
        ))
        .await?;
    // The rows are locked in id order whatever the plan (`FOR UPDATE` under `ORDER BY`
    // locks as the sorted rows come out), so concurrent batches wait for each other
    // instead of deadlocking.
    let update_many = client
        .prepare(&format!(
            "WITH locked AS MATERIALIZED (
                 SELECT id FROM {CONVERSATIONS} WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
             )
             UPDATE {CONVERSATIONS} AS c SET last_seq = c.last_seq + u.n
             FROM unnest($1::text[], $2::bigint[]) AS u(id, n)
             JOIN locked AS l ON l.id = u.id
             WHERE c.id = u.id
             RETURNING c.id, c.last_seq"
        ))
        .await?;
    let insert_many = client
        .prepare(&format!(
            "INSERT INTO {MESSAGES} (id, tenant_id, conversation_id, seq, direction, author, body,
                                     client_msg_id, created_at, reply_to)
             SELECT id, tenant_id, conversation_id, seq, 'inbound', NULL, body, client_msg_id,
                    created_at, NULL
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                         $6::text[], $7::bigint[])
                  AS m(id, tenant_id, conversation_id, seq, body, client_msg_id, created_at)"
        ))
        .await?;
    Ok(Conn {
        client,
        update_one,
        insert_one,
        update_many,
        insert_many,
    })
}

/// Every connection in `conns` in a closed loop of `kind` for `secs`.
async fn run(kind: Kind, conns: &[Arc<Conn>], shared: &Arc<Shared>, secs: u64) -> Variant {
    let watch = CpuWatch::start(&[]);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let tasks: Vec<_> = conns
        .iter()
        .map(|conn| {
            let (conn, shared) = (conn.clone(), shared.clone());
            tokio::spawn(async move { client_loop(kind, &conn, &shared, deadline).await })
        })
        .collect();
    let mut v = Variant {
        connections: conns.len(),
        tx: 0,
        messages: 0,
        errors: 0,
        first_error: None,
        secs: 0.0,
        latency: histogram(),
        cpu: String::new(),
    };
    for t in tasks {
        if let Ok(r) = t.await {
            v.tx += r.tx;
            v.messages += r.messages;
            v.errors += r.errors;
            if v.first_error.is_none() {
                v.first_error = r.first_error;
            }
            let _ = v.latency.add(&r.latency);
        }
    }
    v.secs = start.elapsed().as_secs_f64();
    v.cpu = watch.report();
    v
}

struct LoopResult {
    tx: u64,
    messages: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

async fn client_loop(kind: Kind, conn: &Conn, shared: &Shared, deadline: Instant) -> LoopResult {
    let mut rng = StdRng::from_os_rng();
    let mut r = LoopResult {
        tx: 0,
        messages: 0,
        errors: 0,
        first_error: None,
        latency: histogram(),
    };
    while Instant::now() < deadline && !conn.client.is_closed() {
        let t = Instant::now();
        let outcome = match kind {
            Kind::MessageShaped => message_shaped(conn, shared, &mut rng).await,
            Kind::SingleInsert => single_insert(conn, shared, &mut rng).await,
            Kind::Batch => batch(conn, shared, &mut rng).await,
        };
        match outcome {
            Ok(n) => {
                record(&mut r.latency, t.elapsed());
                r.tx += 1;
                r.messages += n;
            }
            Err(e) => {
                r.errors += 1;
                if r.first_error.is_none() {
                    r.first_error = Some(format!("{e:#}"));
                }
                let _ = conn.client.batch_execute("ROLLBACK").await;
            }
        }
    }
    r
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `BEGIN; UPDATE … RETURNING last_seq; INSERT …; COMMIT` on a random conversation.
async fn message_shaped(conn: &Conn, shared: &Shared, rng: &mut StdRng) -> Result<u64> {
    let (conv, tenant) = &shared.conversations[rng.random_range(0..shared.conversations.len())];
    conn.client.batch_execute("BEGIN").await?;
    let seq: i64 = conn
        .client
        .query_one(&conn.update_one, &[conv])
        .await?
        .get(0);
    conn.client
        .execute(
            &conn.insert_one,
            &[
                &uuid::Uuid::now_v7().to_string(),
                tenant,
                conv,
                &seq,
                &"stored message",
                &uuid::Uuid::now_v7().to_string(),
                &now_ms(),
            ],
        )
        .await?;
    conn.client.batch_execute("COMMIT").await?;
    Ok(1)
}

/// One `INSERT` in its own transaction.
async fn single_insert(conn: &Conn, shared: &Shared, rng: &mut StdRng) -> Result<u64> {
    let (conv, tenant) = &shared.conversations[rng.random_range(0..shared.conversations.len())];
    let seq = shared.free_seq.fetch_add(1, Ordering::Relaxed);
    conn.client
        .execute(
            &conn.insert_one,
            &[
                &uuid::Uuid::now_v7().to_string(),
                tenant,
                conv,
                &seq,
                &"stored message",
                &uuid::Uuid::now_v7().to_string(),
                &now_ms(),
            ],
        )
        .await?;
    Ok(1)
}

/// `BEGIN; UPDATE … FROM unnest … RETURNING; INSERT … SELECT … FROM unnest; COMMIT`:
/// `shared.batch` messages on random conversations (a conversation drawn twice gets
/// consecutive seqs).
async fn batch(conn: &Conn, shared: &Shared, rng: &mut StdRng) -> Result<u64> {
    // Conversation index → messages in this batch.
    let mut per_conv: BTreeMap<usize, i64> = BTreeMap::new();
    for _ in 0..shared.batch {
        *per_conv
            .entry(rng.random_range(0..shared.conversations.len()))
            .or_default() += 1;
    }
    let ids: Vec<String> = per_conv
        .keys()
        .map(|&c| shared.conversations[c].0.clone())
        .collect();
    let counts: Vec<i64> = per_conv.values().copied().collect();
    conn.client.batch_execute("BEGIN").await?;
    let rows = conn
        .client
        .query(&conn.update_many, &[&ids, &counts])
        .await?;
    let last: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    let n = shared.batch;
    let (mut m_id, mut m_tenant, mut m_conv, mut m_seq, mut m_body, mut m_client, mut m_at) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let now = now_ms();
    let mut k = 0u64;
    for (&c, &count) in &per_conv {
        let (conv, tenant) = &shared.conversations[c];
        let Some(&top) = last.get(conv) else {
            bail!("conversation {conv} was not updated");
        };
        for s in top - count + 1..=top {
            m_id.push(uuid::Uuid::now_v7().to_string());
            m_tenant.push(tenant.clone());
            m_conv.push(conv.clone());
            m_seq.push(s);
            m_body.push("stored message".to_string());
            m_client.push(uuid::Uuid::now_v7().to_string());
            m_at.push(now);
            k += 1;
        }
    }
    conn.client
        .execute(
            &conn.insert_many,
            &[&m_id, &m_tenant, &m_conv, &m_seq, &m_body, &m_client, &m_at],
        )
        .await?;
    conn.client.batch_execute("COMMIT").await?;
    Ok(k)
}
