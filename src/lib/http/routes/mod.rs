//! Routes by resource.

pub mod admin;
pub mod ops;
pub mod outbox;
pub mod telegram;
pub mod usage;
pub mod widget;
