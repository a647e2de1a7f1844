ALTER TABLE messages DROP COLUMN reply_to;
DROP TABLE outbox_batches;
