-- Plans as code: what a tenant may do (limits, channels, features) and what it costs.
-- The catalogue is kept in a file and applied with `chatorical plans sync`; every
-- tenant has exactly one plan (`free` until changed).
CREATE TABLE plans (
    code                        TEXT PRIMARY KEY,   -- slug: 2-40 of a-z, 0-9, '-'
    name                        TEXT NOT NULL,
    active                      BOOLEAN NOT NULL,   -- inactive: kept by its tenants, not assignable
    price_month_cents           BIGINT CHECK (price_month_cents >= 0),  -- EUR; NULL: not sold monthly
    price_year_cents            BIGINT CHECK (price_year_cents >= 0),   -- EUR; NULL: not sold yearly
    -- Limits; NULL = unlimited.
    conversation_starts_per_day INTEGER CHECK (conversation_starts_per_day >= 0),
    topic_renames_per_day       INTEGER CHECK (topic_renames_per_day >= 0),
    messages_per_day            INTEGER CHECK (messages_per_day >= 0),
    active_conversations        INTEGER CHECK (active_conversations >= 0),
    retention_days              INTEGER CHECK (retention_days >= 1),
    channel_widget              BOOLEAN NOT NULL,
    channel_telegram            BOOLEAN NOT NULL,
    features                    TEXT NOT NULL,      -- JSON object of booleans
    created_at                  BIGINT NOT NULL,    -- epoch ms
    updated_at                  BIGINT NOT NULL     -- epoch ms
);

INSERT INTO plans (code, name, active, price_month_cents, price_year_cents,
                   conversation_starts_per_day, topic_renames_per_day, messages_per_day,
                   active_conversations, retention_days, channel_widget, channel_telegram,
                   features, created_at, updated_at)
VALUES ('free', 'Free', TRUE, NULL, NULL, 20, 20, 500, 10, 30, TRUE, TRUE, '{}',
        (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT);

-- A plan used by tenants cannot be deleted (reassign them first).
ALTER TABLE tenants ADD COLUMN plan_code TEXT NOT NULL DEFAULT 'free' REFERENCES plans(code);
CREATE INDEX tenants_plan ON tenants (plan_code);
