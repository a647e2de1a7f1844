//! Routes by resource.

pub mod admin;
pub mod identity;
pub mod ops;
pub mod outbox;
pub mod telegram;
pub mod templates;
pub mod usage;
pub mod widget;
