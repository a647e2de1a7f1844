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
//! PostgreSQL gets [`PG_WRITERS`] writers sharing one queue: a writer that is free takes
//! everything waiting, so a message waits only while every writer is busy (while one
//! commits, the next batch is being written). A conversation with messages in a
//! writer's batch is that writer's until the batch is answered — its later messages stay
//! queued, in order, for the next batch — so a conversation's messages keep their order
//! and never wait on another writer's row lock. SQLite gets one writer: SQLite has one
//! writer anyway, and the batch takes the process's write lock once instead of once per
//! message.

use std::collections::{HashMap, VecDeque};
use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

use crate::db::{Backend, Db, models::MessageRow};
use crate::domain::Environment;
use crate::error::Result;
use crate::transaction;

/// Most messages one transaction takes.
pub const MAX_BATCH: usize = 256;

/// Writers on PostgreSQL. Fewer writers make bigger batches (fewer statements and
/// commits per message: PostgreSQL's CPU per stored message 0.24 ms with four, 0.17 with
/// two) but a message more often waits for a writer's commit; two is where throughput
/// at 50 visitors passes 4,600 msg/s (docs/PERFORMANCE.md, stop 29). Since stop 36 they
/// share one queue, so a message waits only while both are busy.
pub const PG_WRITERS: usize = 2;

/// Messages waiting (not yet taken by a writer), per writer, before senders wait.
const QUEUE: usize = 4 * MAX_BATCH;

/// What [`super::store_message`] answers for one message.
pub type Stored = Result<Option<(MessageRow, Environment)>>;

struct Pending {
    row: MessageRow,
    visitor_id: Option<String>,
    now: i64,
    done: oneshot::Sender<Stored>,
    /// Its place in the queue, free again once a writer takes it.
    _room: OwnedSemaphorePermit,
}

/// The writer tasks of one process (see the module's documentation).
pub struct Writers {
    db: Db,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
}

/// What the writers of one process share.
struct Shared {
    queue: Mutex<Queue>,
    /// A writer may have something to take (a message came, or the writers stop).
    work: Notify,
    /// Places in the queue: a sender waits for one while all are taken.
    room: Arc<Semaphore>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct Queue {
    /// Messages no writer has taken yet, in the order they came.
    waiting: VecDeque<Pending>,
    /// The conversations in a batch being written, each with its writer.
    writing: HashMap<String, usize>,
    /// The writers stop (their [`Writers`] was dropped).
    stopped: bool,
}

impl Queue {
    /// What writer `me` takes now: in order, up to [`MAX_BATCH`] messages of
    /// conversations no other writer is writing. The rest stay in order; the
    /// conversations taken are `me`'s until [`Queue::release`].
    fn take(&mut self, me: usize) -> Vec<Pending> {
        let mut batch = Vec::new();
        let mut left = Vec::new();
        while batch.len() < MAX_BATCH
            && let Some(p) = self.waiting.pop_front()
        {
            let writer = self
                .writing
                .entry(p.row.conversation_id.clone())
                .or_insert(me);
            if *writer == me {
                batch.push(p);
            } else {
                left.push(p);
            }
        }
        for p in left.into_iter().rev() {
            self.waiting.push_front(p);
        }
        batch
    }

    /// Writer `me` answered its batch: its conversations are free again.
    fn release(&mut self, me: usize) {
        self.writing.retain(|_, writer| *writer != me);
    }
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
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Notify::new(),
            room: Arc::new(Semaphore::new(n * QUEUE)),
        });
        for me in 0..n {
            tokio::spawn(run(db.clone(), shared.clone(), counters.clone(), me));
        }
        Writers {
            db: db.clone(),
            shared,
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
        let Ok(room) = self.shared.room.clone().acquire_owned().await else {
            return Err(stopped());
        };
        let (done, answer) = oneshot::channel();
        let wake = {
            let mut queue = self.shared.queue();
            if queue.stopped {
                return Err(stopped());
            }
            // A conversation being written waits for its writer, which takes it next.
            let wake = !queue.writing.contains_key(&row.conversation_id);
            queue.waiting.push_back(Pending {
                row,
                visitor_id: visitor_id.map(str::to_string),
                now,
                done,
                _room: room,
            });
            wake
        };
        if wake {
            self.shared.work.notify_one();
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        // What is still waiting is answered "stopped" (its sender is dropped).
        let waiting = {
            let mut queue = self.shared.queue();
            queue.stopped = true;
            std::mem::take(&mut queue.waiting)
        };
        drop(waiting);
        self.shared.room.close();
        self.shared.work.notify_waiters();
    }
}

fn stopped() -> crate::error::Error {
    crate::error::Error::internal("the message writer stopped")
}

/// Writer `me`: take what it may, write it, answer, free its conversations; wait when
/// there is nothing to take.
async fn run(db: Db, shared: Arc<Shared>, counters: Arc<Counters>, me: usize) {
    loop {
        let batch = {
            // Listening before looking: a message queued after the look wakes us.
            let work = shared.work.notified();
            tokio::pin!(work);
            work.as_mut().enable();
            let batch = {
                let mut queue = shared.queue();
                if queue.stopped {
                    return;
                }
                queue.take(me)
            };
            if batch.is_empty() {
                work.await;
                continue;
            }
            batch
        };
        write(&db, &counters, batch).await;
        shared.queue().release(me);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(room: &Arc<Semaphore>, conversation: &str, body: &str) -> Pending {
        let (done, _) = oneshot::channel();
        Pending {
            row: MessageRow {
                id: format!("msg_{body}"),
                tenant_id: "ten_a".into(),
                conversation_id: conversation.into(),
                seq: 0,
                direction: "inbound".into(),
                author: None,
                body: body.into(),
                client_msg_id: None,
                created_at: 0,
                edited_at: None,
                telegram_message_id: None,
                erased_at: None,
                reply_to: None,
            },
            visitor_id: None,
            now: 0,
            done,
            _room: room.clone().try_acquire_owned().expect("room"),
        }
    }

    fn bodies(batch: &[Pending]) -> Vec<&str> {
        batch.iter().map(|p| p.row.body.as_str()).collect()
    }

    fn queued(q: &Queue) -> Vec<&str> {
        q.waiting.iter().map(|p| p.row.body.as_str()).collect()
    }

    #[test]
    fn a_free_writer_takes_everything_waiting_in_order() {
        let room = Arc::new(Semaphore::new(1000));
        let mut q = Queue::default();
        for (c, b) in [("c1", "a"), ("c2", "b"), ("c1", "c")] {
            q.waiting.push_back(pending(&room, c, b));
        }
        let batch = q.take(0);
        assert_eq!(bodies(&batch), ["a", "b", "c"]);
        assert!(q.waiting.is_empty());
        assert_eq!(q.writing.get("c1"), Some(&0));
        assert_eq!(q.writing.get("c2"), Some(&0));
        q.release(0);
        assert!(q.writing.is_empty());
    }

    #[test]
    fn a_conversation_being_written_waits_for_its_writer_in_order() {
        let room = Arc::new(Semaphore::new(1000));
        let mut q = Queue::default();
        q.waiting.push_back(pending(&room, "c1", "a1"));
        assert_eq!(bodies(&q.take(0)), ["a1"]);
        // Writer 0 is writing c1; more arrive for c1 and c2.
        for (c, b) in [("c1", "a2"), ("c2", "b1"), ("c1", "a3"), ("c2", "b2")] {
            q.waiting.push_back(pending(&room, c, b));
        }
        // Writer 1 takes only c2's, and c1's stay queued in their order.
        assert_eq!(bodies(&q.take(1)), ["b1", "b2"]);
        assert_eq!(queued(&q), ["a2", "a3"]);
        // While writer 1 writes c2, nothing is left for it...
        assert!(q.take(1).is_empty());
        // ...and writer 0, once answered, takes c1's next messages itself.
        q.release(0);
        assert_eq!(q.writing.get("c2"), Some(&1), "c2 is still writer 1's");
        assert_eq!(bodies(&q.take(0)), ["a2", "a3"]);
        q.waiting.push_back(pending(&room, "c2", "b3"));
        assert!(q.take(0).is_empty(), "c2 stays writer 1's until it answers");
        q.release(1);
        assert_eq!(bodies(&q.take(1)), ["b3"]);
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_and_the_rest_stays_in_order() {
        let room = Arc::new(Semaphore::new(1000));
        let mut q = Queue::default();
        for i in 0..MAX_BATCH + 3 {
            let c = if i % 2 == 0 { "c1" } else { "c2" };
            q.waiting.push_back(pending(&room, c, &i.to_string()));
        }
        let batch = q.take(0);
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(batch[0].row.body, "0");
        assert_eq!(batch[MAX_BATCH - 1].row.body, (MAX_BATCH - 1).to_string());
        let rest: Vec<String> = (MAX_BATCH..MAX_BATCH + 3).map(|i| i.to_string()).collect();
        assert_eq!(queued(&q), rest);
        // The conversations of the full batch are not another writer's to take.
        assert!(q.take(1).is_empty());
        q.release(0);
        assert_eq!(q.take(1).len(), 3);
    }
}
