//! The real `chatorical` binary as separate processes: `serve` and `worker` against
//! PostgreSQL (or SQLite) and a fake Telegram, killed and stopped with signals.

#[path = "../support/fake_telegram.rs"]
mod fake_telegram;

mod crash;
mod regressions;
mod shutdown;
mod support;
