CREATE TABLE outbox_old (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    lane             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'in_flight', 'delivered', 'dead')),
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
INSERT INTO outbox_old (id, tenant_id, kind, idempotency_key, lane, payload, status, attempts,
                        next_attempt_at, lease_until, leased_by, last_error, created_at,
                        updated_at, delivered_at, conversation_id)
    SELECT id, tenant_id, kind, idempotency_key, lane, payload,
           CASE status WHEN 'cancelled' THEN 'dead' ELSE status END, attempts,
           next_attempt_at, lease_until, leased_by, last_error, created_at,
           updated_at, delivered_at, conversation_id
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_old RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox (lane, id) WHERE status IN ('queued', 'in_flight');
CREATE INDEX outbox_tenant_status ON outbox (tenant_id, status, id);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_conversation ON outbox (tenant_id, conversation_id) WHERE conversation_id IS NOT NULL;
ALTER TABLE messages DROP COLUMN erased_at;
ALTER TABLE visitors DROP COLUMN erased_at;
