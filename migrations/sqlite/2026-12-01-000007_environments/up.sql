-- Tenant environments. Production stays where it always was (tenants.widget_key and
-- tenants.settings: every existing tenant is production, unchanged); a tenant's other
-- environments (staging) live here, each with its own widget key and settings, created
-- on demand.
CREATE TABLE tenant_environments (
    tenant_id               TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    environment             TEXT NOT NULL CHECK (environment IN ('staging')),
    widget_key              TEXT NOT NULL UNIQUE,
    settings                TEXT NOT NULL,
    -- A forum group of its own for the environment's conversations (the tenant's bot);
    -- NULL: the tenant's group, topics prefixed "[staging] ".
    telegram_group_chat_id  INTEGER,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, environment)
);

-- Which environment a visitor came from (by the widget key of their session) and so
-- their conversations: existing rows are production.
ALTER TABLE visitors ADD COLUMN environment TEXT NOT NULL DEFAULT 'production'
    CHECK (environment IN ('production', 'staging'));
ALTER TABLE conversations ADD COLUMN environment TEXT NOT NULL DEFAULT 'production'
    CHECK (environment IN ('production', 'staging'));

-- A verified user is one visitor per tenant and environment.
DROP INDEX visitors_external_user;
CREATE UNIQUE INDEX visitors_external_user ON visitors (tenant_id, environment, external_user_id)
    WHERE external_user_id IS NOT NULL;
