DROP INDEX conversations_tenant_updated;
ALTER TABLE conversations DROP COLUMN updated_second;
CREATE INDEX conversations_tenant_updated ON conversations (tenant_id, updated_at DESC);
