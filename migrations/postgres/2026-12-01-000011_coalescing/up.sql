-- Coalescing (issue 15): when a lane has a backlog, one Telegram message carries a
-- conversation's consecutive pending visitor messages.
--
-- The set a head item's Telegram message carries, recorded under the head's lease
-- before the call: each follower (a queued item of the same conversation, later in the
-- lane) with its head and its place in the message. A retried head sends the same set
-- again; delivering the head marks its followers delivered in the same transaction
-- and forgets the rows; a dead head forgets them (its followers go on their own).
-- No foreign keys: rows live only while their head is pending.
CREATE TABLE outbox_batches (
    item_id     TEXT PRIMARY KEY,
    head_id     TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    position    INTEGER NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX outbox_batches_head ON outbox_batches (head_id, position);

-- The visitor messages an agent's message answers (a Telegram reply): a JSON array of
-- message ids — the quoted line's message, or every message a combined Telegram
-- message carried. NULL when it answers nothing in particular.
ALTER TABLE messages ADD COLUMN reply_to TEXT;
