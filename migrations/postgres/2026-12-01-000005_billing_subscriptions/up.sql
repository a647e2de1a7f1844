-- Stripe webhooks: each tenant's subscription as Stripe last described it, and the
-- events already received (Stripe delivers at least once, in any order).
CREATE TABLE billing_subscriptions (
    tenant_id               TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    stripe_customer_id      TEXT,               -- cus_…
    stripe_subscription_id  TEXT,               -- sub_…: the tenant's current subscription
    plan_code               TEXT,               -- the subscription's plan (its price's lookup key)
    interval                TEXT CHECK (interval IN ('month', 'year')),
    -- Stripe's subscription status, or 'none' before a subscription object was seen.
    status                  TEXT NOT NULL CHECK (status IN ('none', 'incomplete', 'incomplete_expired',
                                'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'paused')),
    current_period_end      BIGINT,             -- epoch ms
    cancel_at_period_end    BOOLEAN NOT NULL,
    -- Failed payments: 'grace' keeps the plan until grace_until, then the dunning job
    -- puts the tenant on free ('downgraded') until the subscription is paid again.
    dunning                 TEXT NOT NULL CHECK (dunning IN ('none', 'grace', 'downgraded')),
    grace_until             BIGINT,             -- epoch ms, while dunning is not 'none'
    -- Ordering, so that older deliveries never undo newer state: the Stripe `created`
    -- (epoch s) of the newest subscription event and of the newest invoice event applied.
    last_event_created      BIGINT,
    last_payment_created    BIGINT,
    last_payment_failed     BOOLEAN NOT NULL,   -- the newest invoice event was payment_failed
    updated_at              BIGINT NOT NULL     -- epoch ms
);
CREATE INDEX billing_subscriptions_subscription ON billing_subscriptions (stripe_subscription_id);
CREATE INDEX billing_subscriptions_customer ON billing_subscriptions (stripe_customer_id);
CREATE INDEX billing_subscriptions_grace ON billing_subscriptions (grace_until) WHERE dunning = 'grace';

-- Every verified Stripe event once (event ids deduplicate replays), with what it did:
-- recorded first, in the transaction that applies it, and its outcome set at the end.
CREATE TABLE billing_events (
    event_id     TEXT PRIMARY KEY,              -- evt_…
    type         TEXT NOT NULL,                 -- e.g. customer.subscription.updated
    tenant_id    TEXT,                          -- the tenant it was for, when one was found
    received_at  BIGINT NOT NULL,               -- epoch ms
    outcome      TEXT NOT NULL                  -- applied | stale | unmatched | unknown_plan | ignored
);
CREATE INDEX billing_events_received ON billing_events (received_at);
