-- Visitors' data (GDPR): erasure keeps the shape of a visitor's conversations (ids, seqs,
-- times) and removes what they said and who they are.

-- When the visitor was erased: profile and identity removed, tokens revoked. NULL: not erased.
ALTER TABLE visitors ADD COLUMN erased_at INTEGER;

-- When the message's text was erased (the body is then empty).
ALTER TABLE messages ADD COLUMN erased_at INTEGER;

-- Outbox items of an erased visitor's conversations are cancelled: never delivered.
-- SQLite cannot change a CHECK constraint: the table is rebuilt with the new status
-- (same columns, constraints and indexes; nothing references it).
CREATE TABLE outbox_new (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    lane             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'in_flight', 'delivered', 'dead', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,
    leased_by        TEXT,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    conversation_id  TEXT,
    UNIQUE (tenant_id, idempotency_key)
);
INSERT INTO outbox_new (id, tenant_id, kind, idempotency_key, lane, payload, status, attempts,
                        next_attempt_at, lease_until, leased_by, last_error, created_at,
                        updated_at, delivered_at, conversation_id)
    SELECT id, tenant_id, kind, idempotency_key, lane, payload, status, attempts,
           next_attempt_at, lease_until, leased_by, last_error, created_at,
           updated_at, delivered_at, conversation_id
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox (lane, id) WHERE status IN ('queued', 'in_flight');
CREATE INDEX outbox_tenant_status ON outbox (tenant_id, status, id);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_conversation ON outbox (tenant_id, conversation_id) WHERE conversation_id IS NOT NULL;
