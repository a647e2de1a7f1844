//! API tests: a real server on port 0 per test, every test on SQLite and PostgreSQL.

mod cluster;
#[path = "../support/fake_stripe.rs"]
mod fake_stripe;
#[path = "../support/fake_telegram.rs"]
mod fake_telegram;
mod helpers;
#[path = "../support/pg.rs"]
mod pg;
#[path = "../support/retention_seed.rs"]
mod retention_seed;
#[path = "../support/redis.rs"]
mod test_redis;

mod audit;
mod backlog;
mod billing_out;
mod billing_webhook;
mod coalescing;
mod connections;
mod environments;
mod fuzz_regressions;
mod group_commit;
mod hardening;
mod identity;
mod isolation;
mod keys;
mod limits;
mod long_messages;
mod notify;
mod operations;
mod ops;
mod outbox_lease;
mod plans;
mod quotas;
mod renames;
mod retention;
mod router;
mod socket_caps;
mod telegram;
mod telegram_limits;
mod telegram_polling;
mod telegram_relays;
mod telegram_webhook;
mod templates;
mod topic_card;
mod usage;
mod visitors;
mod websocket;
mod widget_chat;
