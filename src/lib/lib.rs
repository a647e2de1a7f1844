//! chatorical: multi-tenant support chat.
//!
//! Companies (tenants) embed a small script on their website; visitors chat from that
//! widget; answers come back live over a WebSocket. One binary is the server and the
//! operators' toolkit; this library is everything but the command-line parsing.
//!
//! # Layout
//! - [`config`]: [`config::Settings`], layered defaults < TOML file < `CHATORICAL_*` env < flags.
//! - [`error`]: one [`error::Error`] with stable [`error::ErrorCode`]s.
//! - [`domain`]: newtypes parsed at the edge (API keys, scopes, slugs, origins, tokens).
//! - [`db`]: one schema over PostgreSQL and SQLite; repository functions in `db::repo`
//!   written once and compiled per backend by [`on_conn!`] and [`transaction!`].
//! - [`tenancy`]: tenants, their settings, API keys and who is calling.
//! - [`environments`]: a tenant's production and staging environments, feature flags.
//! - [`plans`]: plans as code: limits, channels, features and prices; the catalogue file and its sync.
//! - [`billing`]: Stripe: catalogue sync, Checkout, the customer portal, subscriptions.
//! - [`chat`]: sessions, conversations and messages (the use cases behind HTTP and the socket).
//! - [`realtime`]: the [`realtime::Hub`] fan-out, socket frames, ws tokens and socket caps.
//! - [`http`]: the axum router, extractors, the error envelope and the widget socket.
//! - [`app`]: [`app::Application`] — bind, connect, migrate, serve until a shutdown signal.
//! - [`limits`]: rate limits (GCRA in Redis, or in this process).
//! - [`usage`]: per-tenant daily usage counters and their summary.
//! - [`quota`]: plan quotas (daily counters in Redis or this process, the open-conversation cap).
//! - [`i18n`]: widget strings, their built-in defaults, tenants' templates and locale fallback.
//! - [`telemetry`]: logging setup, and OTLP trace export with the `otlp` cargo feature.
//! - [`retention`]: deleting closed conversations past their tenant's retention, and unused visitors.
//! - [`secrets`]: master key rotation: status, re-encryption, retiring old keys.
//! - [`identity`]: identity verification (HMAC of the host site's user id), the tenant secret.
//! - [`visitors`]: visitors' personal data (GDPR): export everything about a visitor, erase it.
//! - [`tasks`]: every spawned task and request handler under a watch that logs and counts panics.
//! - [`assets`]: the embedded widget script and demo page.
//! - [`widget_release`]: the versioned widget asset and its embed snippet with SRI.
//! - [`files`]: the private data directory (0700) and SQLite files (0600).
//! - [`backup`]: backups of the embedded SQLite database (`VACUUM INTO`), restore, the data lock.
//!
//! A message from the widget: `http::routes::widget` (or `http::ws`) →
//! [`chat::Chat::post_message`] stores it with the next `seq` in one transaction →
//! publishes a `message` frame on the hub → every socket subscribed to the
//! conversation receives it. Agent replies take the same path from the admin API.

pub mod app;
pub(crate) mod assets;
pub mod audit;
pub mod backup;
pub mod billing;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod db;
pub mod doctor;
pub mod domain;
pub mod environments;
pub mod error;
pub(crate) mod files;
pub(crate) mod heap;
pub mod http;
pub mod i18n;
pub mod identity;
pub mod limits;
pub(crate) mod metrics;
pub mod outbox;
pub mod plans;
pub(crate) mod presence;
pub mod quota;
pub mod realtime;
pub mod retention;
pub mod secrets;
pub mod tasks;
pub mod telegram;
pub mod telemetry;
pub mod tenancy;
pub mod usage;
pub mod visitors;
pub mod widget_release;
