-- Backlog episodes of outbox lanes, so that the notice about a backlog is posted once
-- per episode however many workers and processes see it. A lane's row is created the
-- first time its backlog grows old enough to warn about (`warned_at` set, `episodes`
-- counts them); the episode ends when the backlog has cleared (`warned_at` back to
-- NULL, `cleared_at` set). A worker starts or ends an episode only from a look at the
-- outbox taken after the last change here, so an older look cannot undo a newer one.
CREATE TABLE outbox_backlog (
    lane        TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    warned_at   INTEGER,
    cleared_at  INTEGER,
    episodes    INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX outbox_backlog_tenant ON outbox_backlog (tenant_id);
