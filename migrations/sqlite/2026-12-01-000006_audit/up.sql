-- The audit log: who changed what, append-only. Written in the transaction of the change
-- it records. `changes` is a small JSON object of what changed: never a secret, token,
-- key or message text.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- the cursor of listings and exports
    at          INTEGER NOT NULL,        -- epoch ms
    tenant_id   TEXT,                    -- NULL: the platform (no foreign key: entries outlive what they name)
    actor       TEXT NOT NULL,           -- key:<id> | cli:<user>@<host> | telegram:<user id> | stripe | system
    actor_name  TEXT,                    -- the API key's name, when the actor is a key
    action      TEXT NOT NULL,           -- stable names: key.issued, settings.updated, visitor.erased…
    target      TEXT,                    -- the id of what was changed
    request_id  TEXT,                    -- the HTTP request's X-Request-Id
    changes     TEXT NOT NULL            -- JSON object
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
CREATE INDEX audit_log_at ON audit_log (at);

-- Deleting entries is allowed only to the audit log's own retention, which opens this
-- gate inside its transaction (inserted and deleted again before commit).
CREATE TABLE audit_purge_gate (
    one INTEGER PRIMARY KEY CHECK (one = 1)
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only (UPDATE refused)');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    WHEN NOT EXISTS (SELECT 1 FROM audit_purge_gate)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only (DELETE refused)');
END;

-- Outbox items name the conversation they are about (retention deletes and erasure
-- cancels a conversation's items by it); existing items get it from their payload.
ALTER TABLE outbox ADD COLUMN conversation_id TEXT;
UPDATE outbox SET conversation_id = json_extract(payload, '$.conversation_id')
    WHERE kind <> 'telegram.send_text';
CREATE INDEX outbox_conversation ON outbox (tenant_id, conversation_id) WHERE conversation_id IS NOT NULL;
