-- Per-tenant daily usage counters. With Redis the counters live in Redis (one hash per
-- day) and the summarizer writes each day's running total here; without Redis every
-- count is added here directly, so nothing is lost when the process restarts.
CREATE TABLE usage_daily (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    day        TEXT NOT NULL,            -- YYYY-MM-DD (UTC)
    metric     TEXT NOT NULL,
    count      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, metric)
);
