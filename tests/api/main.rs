//! API tests: a real server on port 0 per test, every test on SQLite and PostgreSQL.

mod helpers;

mod isolation;
mod keys;
mod ops;
mod websocket;
mod widget_chat;
