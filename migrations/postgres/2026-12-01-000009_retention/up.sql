-- Retention: closed conversations older than a tenant environment's retention are
-- found by this index in closed_at order, a batch at a time.
CREATE INDEX conversations_retention ON conversations (tenant_id, environment, status, closed_at);
-- Visitors no conversation refers to any more: "does any conversation name this
-- visitor?" (also what deleting a visitor checks through the foreign key).
CREATE INDEX conversations_visitor ON conversations (visitor_id);
-- Visitors not seen since the cutoff, per tenant and environment.
CREATE INDEX visitors_last_seen ON visitors (tenant_id, environment, last_seen_at);

-- Opt-in per tenant: retention also deletes a purged conversation's forum topic
-- (deleteForumTopic through the outbox).
ALTER TABLE telegram_configs ADD COLUMN delete_topics_on_retention BOOLEAN NOT NULL DEFAULT false;
