-- The audit log: who changed what, append-only. Written in the transaction of the change
-- it records. `changes` is a small JSON object of what changed: never a secret, token,
-- key or message text.
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,   -- the cursor of listings and exports
    at          BIGINT NOT NULL,         -- epoch ms
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
-- gate inside its transaction (a row inserted and deleted again before commit, so no
-- other transaction ever sees it open).
CREATE TABLE audit_purge_gate (
    one INTEGER PRIMARY KEY CHECK (one = 1)
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM audit_purge_gate) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Outbox items name the conversation they are about (retention deletes and erasure
-- cancels a conversation's items by it); existing items get it from their payload.
ALTER TABLE outbox ADD COLUMN conversation_id TEXT;
UPDATE outbox SET conversation_id = payload::jsonb ->> 'conversation_id'
    WHERE kind <> 'telegram.send_text';
CREATE INDEX outbox_conversation ON outbox (tenant_id, conversation_id) WHERE conversation_id IS NOT NULL;
