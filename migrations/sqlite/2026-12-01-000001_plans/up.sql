-- Plans as code: what a tenant may do (limits, channels, features) and what it costs.
-- The catalogue is kept in a file and applied with `chatorical plans sync`; every
-- tenant has exactly one plan (`free` until changed).
CREATE TABLE plans (
    code                        TEXT PRIMARY KEY,   -- slug: 2-40 of a-z, 0-9, '-'
    name                        TEXT NOT NULL,
    active                      BOOLEAN NOT NULL,   -- inactive: kept by its tenants, not assignable
    price_month_cents           INTEGER CHECK (price_month_cents >= 0),  -- EUR; NULL: not sold monthly
    price_year_cents            INTEGER CHECK (price_year_cents >= 0),   -- EUR; NULL: not sold yearly
    -- Limits; NULL = unlimited.
    conversation_starts_per_day INTEGER CHECK (conversation_starts_per_day >= 0),
    topic_renames_per_day       INTEGER CHECK (topic_renames_per_day >= 0),
    messages_per_day            INTEGER CHECK (messages_per_day >= 0),
    active_conversations        INTEGER CHECK (active_conversations >= 0),
    retention_days              INTEGER CHECK (retention_days >= 1),
    channel_widget              BOOLEAN NOT NULL,
    channel_telegram            BOOLEAN NOT NULL,
    features                    TEXT NOT NULL,      -- JSON object of booleans
    created_at                  INTEGER NOT NULL,   -- epoch ms
    updated_at                  INTEGER NOT NULL    -- epoch ms
);

INSERT INTO plans (code, name, active, price_month_cents, price_year_cents,
                   conversation_starts_per_day, topic_renames_per_day, messages_per_day,
                   active_conversations, retention_days, channel_widget, channel_telegram,
                   features, created_at, updated_at)
VALUES ('free', 'Free', 1, NULL, NULL, 20, 20, 500, 10, 30, 1, 1, '{}',
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));

-- SQLite refuses `ADD COLUMN … REFERENCES` with a non-NULL default on a table that has
-- rows while foreign keys are on (and they are on during migrations), so the reference
-- to plans(code) is kept by triggers instead: a tenant's plan must exist, and a plan
-- used by tenants cannot be deleted or renamed.
ALTER TABLE tenants ADD COLUMN plan_code TEXT NOT NULL DEFAULT 'free';
CREATE INDEX tenants_plan ON tenants (plan_code);

CREATE TRIGGER tenants_plan_exists_insert BEFORE INSERT ON tenants
WHEN NOT EXISTS (SELECT 1 FROM plans WHERE code = NEW.plan_code)
BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed');
END;

CREATE TRIGGER tenants_plan_exists_update BEFORE UPDATE OF plan_code ON tenants
WHEN NOT EXISTS (SELECT 1 FROM plans WHERE code = NEW.plan_code)
BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed');
END;

CREATE TRIGGER plans_in_use_delete BEFORE DELETE ON plans
WHEN EXISTS (SELECT 1 FROM tenants WHERE plan_code = OLD.code)
BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed');
END;

CREATE TRIGGER plans_in_use_rename BEFORE UPDATE OF code ON plans
WHEN NEW.code <> OLD.code AND EXISTS (SELECT 1 FROM tenants WHERE plan_code = OLD.code)
BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed');
END;
