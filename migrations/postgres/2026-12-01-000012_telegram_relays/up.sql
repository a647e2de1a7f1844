-- Relay bots: extra bots of a tenant in its forum group, each with its own budget of
-- messages a minute. The token and the webhook secret are sealed with the master key,
-- bound to the tenant and to the relay's bot id. Forgotten with the connection.
CREATE TABLE telegram_relays (
    tenant_id           TEXT NOT NULL REFERENCES telegram_configs(tenant_id) ON DELETE CASCADE,
    bot_id              BIGINT NOT NULL,
    bot_username        TEXT NOT NULL,
    bot_token_enc       TEXT NOT NULL,
    webhook_secret_enc  TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, bot_id)
);

-- Which bot a conversation's topic belongs to (its bot creates the topic and makes
-- every call about it, in its own outbox lane). Chosen when the conversation's first
-- item is queued, sticky afterwards; a conversation without a row is the main bot's.
CREATE TABLE telegram_topic_bots (
    conversation_id     TEXT PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
    tenant_id           TEXT NOT NULL,
    bot_id              BIGINT NOT NULL,
    assigned_at         BIGINT NOT NULL
);
CREATE INDEX telegram_topic_bots_by_bot ON telegram_topic_bots (tenant_id, bot_id);
