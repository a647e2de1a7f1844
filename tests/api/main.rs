//! API tests: a real server on port 0 per test, every test on SQLite and PostgreSQL.

#[path = "../support/fake_telegram.rs"]
mod fake_telegram;
mod helpers;

mod isolation;
mod keys;
mod ops;
mod telegram;
mod websocket;
mod widget_chat;
