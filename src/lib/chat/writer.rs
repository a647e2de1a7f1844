//! Group commit for new messages. Every message posted through [`super::Chat::post_message`]
//! (widget HTTP, widget socket, admin API) goes to a writer task that takes whatever
//! is waiting — up to [`MAX_BATCH`] messages, with no added wait when only one is —
//! stores them with [`super::store_messages`] (on PostgreSQL every conversation's next
//! seqs and all the rows in ONE statement, then the outbox items) in ONE transaction,
//! commits once and only then answers every waiting request: acknowledged still means
//! committed. A lone message takes the same path. Messages stored again one by one
//! (the fallback below) go through [`super::store_message`].
//!
//! One message's failure fails only that message. A message whose conversation is not
//! open (or not the visitor's) changes nothing in the batch and is answered `None`, as
//! alone. Any error inside the batch (a duplicate `client_msg_id` — a retry — fails
//! on its unique index and aborts the transaction; or the commit fails) rolls the
//! whole batch back and stores its messages again one transaction each, exactly as
//! without a writer, so every message gets the answer it would have got alone.
//!
//! PostgreSQL gets [`PG_WRITERS`] writers, a conversation always on the same one (its
//! messages keep their order and never wait on another writer's row lock): while one
//! commits, the next batch is being written. SQLite gets one: SQLite has one writer
//! anyway, and the batch takes the process's write lock once instead of once per
//! message.

use std::hash::{Hash, Hasher};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::{mpsc, oneshot};

use crate::db::{Backend, Db, models::MessageRow};
use crate::domain::Environment;
use crate::error::Result;
use crate::transaction;

/// Most messages one transaction takes.
pub const MAX_BATCH: usize = 256;

/// Writers on PostgreSQL. Fewer writers make bigger batches (fewer statements and
/// commits per message: PostgreSQL's CPU per stored message 0.24 ms with four, 0.17 with
/// two) but a message more often waits for its writer's commit (send → other socket
/// at 1,000 msg/s, p50 2.5 ms with four, 2.8–3.2 with two, 3.8–4.0 with one); two is
/// where throughput at 50 visitors passes 4,600 msg/s (docs/PERFORMANCE.md, stop 29).
pub const PG_WRITERS: usize = 2;

/// Requests waiting for one writer before senders wait.
const QUEUE: usize = 4 * MAX_BATCH;

/// What [`super::store_message`] answers for one message.
pub type Stored = Result<Option<(MessageRow, Environment)>>;

struct Pending {
    row: MessageRow,
    visitor_id: Option<String>,
    now: i64,
    done: oneshot::Sender<Stored>,
}

/// The writer tasks of one process (see the module's documentation).
pub struct Writers {
    db: Db,
    shards: Vec<mpsc::Sender<Pending>>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    messages: AtomicU64,
    retries: AtomicU64,
}

/// What the writers of one process did since they started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions attempted (a single message is a batch of one).
    pub batches: u64,
    /// Messages written.
    pub messages: u64,
    /// Batches that failed and were stored message by message.
    pub retries: u64,
}

impl Writers {
    /// Start the writers for `db` (on the current tokio runtime). They end when this
    /// is dropped.
    pub fn start(db: &Db) -> Writers {
        let n = match db.backend() {
            Backend::Postgres => PG_WRITERS,
            Backend::Sqlite => 1,
        };
        let counters = Arc::new(Counters::default());
        let shards = (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(db.clone(), counters.clone(), rx));
                tx
            })
            .collect();
        Writers {
            db: db.clone(),
            shards,
            counters,
        }
    }

    /// What these writers did so far.
    pub fn stats(&self) -> WriteStats {
        WriteStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            messages: self.counters.messages.load(Ordering::Relaxed),
            retries: self.counters.retries.load(Ordering::Relaxed),
        }
    }

    /// Store `messages` as one batch (see [`store_batch`]), counted in [`Self::stats`].
    pub async fn store_batch(&self, messages: &[NewMessage]) -> Vec<Stored> {
        store_batch(&self.db, &self.counters, messages).await
    }

    /// Store `row` (its seq is taken in the write) and wait for the commit.
    pub async fn store(&self, row: MessageRow, visitor_id: Option<&str>, now: i64) -> Stored {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        row.conversation_id.hash(&mut h);
        let shard = &self.shards[(h.finish() % self.shards.len() as u64) as usize];
        let (done, answer) = oneshot::channel();
        let pending = Pending {
            row,
            visitor_id: visitor_id.map(str::to_string),
            now,
            done,
        };
        if shard.send(pending).await.is_err() {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> crate::error::Error {
    crate::error::Error::internal("the message writer stopped")
}

async fn run(db: Db, counters: Arc<Counters>, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write(&db, &counters, std::mem::take(&mut batch)).await;
        batch.reserve(MAX_BATCH);
    }
}

/// A message for [`store_batch`]: its row (the seq is taken in the write), the visitor
/// it must belong to (if a visitor writes it) and the time of the write.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The row; its `seq` is ignored.
    pub row: MessageRow,
    /// Only into this visitor's conversation.
    pub visitor_id: Option<String>,
    /// When (ms).
    pub now: i64,
}

async fn write(db: &Db, counters: &Counters, batch: Vec<Pending>) {
    let (messages, answers): (Vec<NewMessage>, Vec<oneshot::Sender<Stored>>) = batch
        .into_iter()
        .map(|p| {
            (
                NewMessage {
                    row: p.row,
                    visitor_id: p.visitor_id,
                    now: p.now,
                },
                p.done,
            )
        })
        .unzip();
    for (answer, stored) in answers
        .into_iter()
        .zip(store_batch(db, counters, &messages).await)
    {
        let _ = answer.send(stored);
    }
}

/// Store `messages` in one transaction, in order; when anything in it fails, store
/// each alone (one transaction each). One answer per message, as
/// [`super::store_message`] gives it.
async fn store_batch(db: &Db, counters: &Counters, messages: &[NewMessage]) -> Vec<Stored> {
    counters.batches.fetch_add(1, Ordering::Relaxed);
    counters
        .messages
        .fetch_add(messages.len() as u64, Ordering::Relaxed);
    metrics::counter!("chatorical_message_write_batches_total").increment(1);
    metrics::counter!("chatorical_message_write_batched_total").increment(messages.len() as u64);
    match write_together(db, messages).await {
        Ok(rows) => return rows.into_iter().map(Ok).collect(),
        // Alone, it failed as it would have alone.
        Err(e) if messages.len() == 1 => return vec![Err(e)],
        Err(e) => {
            tracing::debug!(error = %e, size = messages.len(), "a message batch failed; storing its messages one by one");
            counters.retries.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("chatorical_message_write_batch_retries_total").increment(1);
        }
    }
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        out.push(write_alone(db, m).await);
    }
    out
}

type Row = Option<(MessageRow, Environment)>;

async fn write_together(db: &Db, batch: &[NewMessage]) -> Result<Vec<Row>> {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    transaction!(&mut conn, |tx| super::store_messages(tx, batch).await)
}

async fn write_alone(db: &Db, m: &NewMessage) -> Stored {
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    transaction!(&mut conn, |tx| super::store_message(
        tx,
        m.row.clone(),
        m.visitor_id.as_deref(),
        m.now
    )
    .await)
}
