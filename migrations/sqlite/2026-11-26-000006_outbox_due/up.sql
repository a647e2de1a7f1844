-- The worker's "when is the next queued item due" (min(next_attempt_at) of queued
-- items) as one index seek instead of a scan of the backlog. Lane heads are found by
-- seeks on outbox_pending (lane, id) (see repo::outbox::lane_heads).
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
