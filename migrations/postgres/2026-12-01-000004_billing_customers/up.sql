-- Billing through Stripe. A tenant's Stripe Customer, created once (on its first
-- checkout or portal session) and kept: every later session uses it.
CREATE TABLE billing_customers (
    tenant_id          TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    stripe_customer_id TEXT NOT NULL UNIQUE,   -- cus_...
    created_at         BIGINT NOT NULL           -- epoch ms
);

-- Checkout Sessions asked for with an Idempotency-Key header: a client's retry with
-- the same key (and the same request) gets the same session back.
CREATE TABLE billing_checkouts (
    tenant_id         TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    idempotency_key   TEXT NOT NULL,          -- the client's header, as sent
    request_hash      TEXT NOT NULL,          -- sha256 of plan, interval and URLs
    stripe_session_id TEXT NOT NULL,          -- cs_...
    url               TEXT NOT NULL,
    created_at        BIGINT NOT NULL,          -- epoch ms
    PRIMARY KEY (tenant_id, idempotency_key)
);
