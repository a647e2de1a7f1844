-- Identity verification: the host page vouches for a signed-in user with
-- HMAC-SHA256(user id, tenant identity secret).

-- The tenant's identity secret, sealed with the master key for (tenant, "identity.secret").
ALTER TABLE tenants ADD COLUMN identity_secret_enc TEXT;

-- The verified user id a visitor belongs to: one visitor per user per tenant, so every
-- device of the user finds the same visitor (and its open conversation).
ALTER TABLE visitors ADD COLUMN external_user_id TEXT;
CREATE UNIQUE INDEX visitors_external_user ON visitors (tenant_id, external_user_id)
    WHERE external_user_id IS NOT NULL;

-- Further device tokens of a visitor (the first device's token stays in
-- visitors.token_hash), so a new device does not sign the others out.
CREATE TABLE visitor_tokens (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    visitor_id  TEXT NOT NULL REFERENCES visitors(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL
);
CREATE INDEX visitor_tokens_visitor ON visitor_tokens (visitor_id, created_at);
