//! Repository functions, one file per aggregate. Each takes the tenant it acts for
//! (except lookups by a secret that identifies the tenant) and a [`Conn`](super::Conn).

pub mod api_keys;
pub mod audit;
pub mod backlog;
pub mod billing;
pub mod billing_subscriptions;
pub mod conversations;
pub mod environments;
pub mod messages;
pub mod outbox;
pub mod plans;
pub mod retention;
pub mod secrets;
pub mod telegram;
pub mod templates;
pub mod tenants;
pub mod usage;
pub mod visitors;
