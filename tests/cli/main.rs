//! Integration tests of the `chatorical` binary, run the way operators run it.
//!
//! Every test gets its own data directory (and, on PostgreSQL, its own database), runs
//! with an empty environment and from inside that directory, so tests run in parallel and
//! never pick up a `./chatorical.toml` or `CHATORICAL_*` variables of the caller.

#[path = "../support/fake_stripe.rs"]
mod fake_stripe;
#[path = "../support/fake_telegram.rs"]
mod fake_telegram;
#[path = "../support/pg.rs"]
mod pg;
mod support;

mod audit;
mod backup;
mod billing;
mod config;
mod doctor;
mod drift;
mod environments;
mod keys;
mod migrate;
mod package;
mod plans;
mod plans_stripe;
mod secrets;
mod telegram_polling;
mod templates;
mod tenants;
mod usage;
mod visitors;
mod widget;
