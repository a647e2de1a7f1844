//! The Redis server the tests share: `TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379/0`). `scripts/test` starts a private one and sets the variable
//! when nothing answers on the default port. Tests keep apart by key prefix.
#![allow(dead_code)]

/// URL of the shared test Redis.
pub(crate) fn url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}
