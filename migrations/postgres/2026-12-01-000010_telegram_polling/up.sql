-- Telegram long polling (getUpdates) for servers Telegram cannot reach.
--
-- The mode of each tenant's connection: `webhook` (Telegram calls us; what every
-- connection was before) or `polling` (a worker calls getUpdates).
ALTER TABLE telegram_configs ADD COLUMN mode TEXT NOT NULL DEFAULT 'webhook'
    CHECK (mode IN ('webhook', 'polling'));

-- Where polling of a tenant's bot stands: the next update id to ask for (stored in the
-- transaction of the update before it, so a restart neither loses nor repeats one; it
-- belongs to `bot_id`), the lease of the one worker that polls the bot, and what the
-- last getUpdates said. Created when a worker first polls the bot; forgotten with the
-- connection, or when the connection names another bot.
CREATE TABLE telegram_polls (
    tenant_id           TEXT PRIMARY KEY REFERENCES telegram_configs(tenant_id) ON DELETE CASCADE,
    bot_id              BIGINT NOT NULL,
    poll_offset         BIGINT,
    poll_offset_at      BIGINT,
    leased_by           TEXT,
    lease_until         BIGINT,
    last_poll_at        BIGINT,
    last_error          TEXT,
    last_error_at       BIGINT
);
