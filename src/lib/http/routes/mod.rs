//! Routes by resource.

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod billing;
pub(crate) mod billing_subscription;
pub(crate) mod billing_webhook;
pub(crate) mod environments;
pub(crate) mod identity;
pub(crate) mod ops;
pub(crate) mod outbox;
pub(crate) mod plans;
pub(crate) mod telegram;
pub(crate) mod templates;
pub(crate) mod usage;
pub(crate) mod widget;
