-- The recency index keys on the second of `updated_at` (see the PostgreSQL migration
-- of the same name: there it keeps per-message updates in place). SQLite has no such
-- distinction; the column (computed, not stored) and the index are the same here so
-- that both backends run the same listing query.
ALTER TABLE conversations
    ADD COLUMN updated_second INTEGER GENERATED ALWAYS AS (updated_at / 1000) VIRTUAL;
DROP INDEX conversations_tenant_updated;
CREATE INDEX conversations_tenant_updated ON conversations (tenant_id, updated_second DESC);
