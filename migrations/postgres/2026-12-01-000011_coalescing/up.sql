-- Coalescing (issue 15): when a lane has a backlog, one Telegram message carries a
-- conversation's consecutive pending visitor messages.
--
-- The set a head item's Telegram message carries, recorded under the head's lease
-- before the call: the followers (queued items of the same conversation, later in the
-- lane) as a JSON array of outbox item ids, in their order in the message. A retried
-- head sends the same set again; delivering the head marks its followers delivered in
-- the same transaction and forgets the row; a dead head forgets it (its followers go
-- on their own). No foreign key: the row lives only while its head is pending.
CREATE TABLE outbox_batches (
    head_id     TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    items       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- The visitor messages an agent's message answers (a Telegram reply): a JSON array of
-- message ids — the quoted line's message, or every message a combined Telegram
-- message carried. NULL when it answers nothing in particular.
ALTER TABLE messages ADD COLUMN reply_to TEXT;
