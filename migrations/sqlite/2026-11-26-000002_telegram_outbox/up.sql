-- Telegram bridge: per-tenant bot config, topic per conversation, webhook update
-- dedup, and the durable outbox.

CREATE TABLE telegram_configs (
    tenant_id           TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    bot_token_enc       TEXT NOT NULL,
    webhook_secret_enc  TEXT NOT NULL,
    bot_id              INTEGER NOT NULL,
    bot_username        TEXT NOT NULL,
    group_chat_id       INTEGER NOT NULL,
    default_topic_id    INTEGER,
    can_manage_topics   BOOLEAN NOT NULL,
    enabled             BOOLEAN NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

ALTER TABLE conversations ADD COLUMN telegram_topic_id INTEGER;
ALTER TABLE conversations ADD COLUMN telegram_topic_closed BOOLEAN NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX conversations_telegram_topic ON conversations (tenant_id, telegram_topic_id)
    WHERE telegram_topic_id IS NOT NULL;

ALTER TABLE messages ADD COLUMN telegram_message_id INTEGER;
ALTER TABLE visitors ADD COLUMN page_url TEXT;
CREATE INDEX messages_telegram ON messages (tenant_id, telegram_message_id)
    WHERE telegram_message_id IS NOT NULL;

-- Deduplicates webhook deliveries by (tenant, bot, update_id) — update ids are
-- counted per bot — never by "greater than last seen". Pruned after Telegram's
-- 24-hour retry horizon.
CREATE TABLE telegram_updates (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    bot_id       INTEGER NOT NULL,
    update_id    INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, bot_id, update_id)
);
CREATE INDEX telegram_updates_received ON telegram_updates (received_at);

CREATE TABLE outbox (
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
    UNIQUE (tenant_id, idempotency_key)
);
-- Pending items per lane in order (the head of each lane is what gets claimed).
CREATE INDEX outbox_pending ON outbox (lane, id) WHERE status IN ('queued', 'in_flight');
CREATE INDEX outbox_tenant_status ON outbox (tenant_id, status, id);
