-- Per-tenant overrides of the widget's strings, per locale (`de`, `de-AT`). Keys and
-- their built-in defaults live in the binary (src/lib/i18n.rs); a row replaces one
-- string in one locale. Bodies are validated templates (`{{variable}}` placeholders).
CREATE TABLE templates (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,            -- e.g. widget.title
    locale     TEXT NOT NULL,            -- normalised: ll or ll-RR
    body       TEXT NOT NULL,
    updated_at BIGINT NOT NULL,          -- epoch ms
    PRIMARY KEY (tenant_id, key, locale)
);
