UPDATE outbox SET status = 'dead' WHERE status = 'cancelled';
ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check
    CHECK (status IN ('queued', 'in_flight', 'delivered', 'dead'));
ALTER TABLE messages DROP COLUMN erased_at;
ALTER TABLE visitors DROP COLUMN erased_at;
