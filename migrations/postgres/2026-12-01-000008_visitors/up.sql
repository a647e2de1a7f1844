-- Visitors' data (GDPR): erasure keeps the shape of a visitor's conversations (ids, seqs,
-- times) and removes what they said and who they are.

-- When the visitor was erased: profile and identity removed, tokens revoked. NULL: not erased.
ALTER TABLE visitors ADD COLUMN erased_at BIGINT;

-- When the message's text was erased (the body is then empty).
ALTER TABLE messages ADD COLUMN erased_at BIGINT;

-- Outbox items of an erased visitor's conversations are cancelled: never delivered.
ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check
    CHECK (status IN ('queued', 'in_flight', 'delivered', 'dead', 'cancelled'));
