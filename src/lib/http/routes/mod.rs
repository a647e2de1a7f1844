//! Routes by resource.

pub mod admin;
pub mod ops;
pub mod widget;
