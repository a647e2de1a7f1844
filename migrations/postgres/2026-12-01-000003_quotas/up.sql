-- The active-conversation cap counts a tenant's open conversations on every new one.
CREATE INDEX conversations_open_per_tenant ON conversations (tenant_id) WHERE status = 'open';
