//! The real `chatorical` binary as separate processes: `serve` and `worker` against
//! PostgreSQL (or SQLite) and a fake Telegram, killed and stopped with signals; two
//! `serve` nodes sharing PostgreSQL and Redis, and Redis killed under them; PostgreSQL
//! (a server of the test's own) restarted under load.

#[path = "../support/fake_telegram.rs"]
mod fake_telegram;
#[path = "../support/pg.rs"]
mod pg;
#[path = "../support/retention_seed.rs"]
mod retention_seed;
#[path = "../support/redis.rs"]
mod test_redis;

mod abuse;
mod backup;
mod cluster;
mod coalescing;
mod crash;
mod dashboards;
mod logs;
mod metrics;
mod pg_restart;
mod pgbouncer;
mod polling;
mod quotas;
mod regressions;
mod retention;
mod shutdown;
mod support;
