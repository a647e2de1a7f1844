//! Billing through Stripe: the plan catalogue synced to Stripe products and prices,
//! Checkout and the customer portal for tenants, and (webhooks) the subscription state
//! that moves tenants between plans.
//!
//! [`Billing`] exists only when `[billing.stripe] secret_key` is set; every billing
//! operation without it answers [`not_configured`] (503 `billing_not_configured`).
//!
//! What chatorical puts in Stripe, for whoever reads it back (webhooks, the dashboard):
//! - one Product per plan, `metadata.chatorical_plan = <code>`;
//! - one active Price per plan and interval, EUR, found by its lookup key
//!   `chatorical_<code>_<month|year>` ([`lookup_key`]), `metadata.chatorical_plan` and
//!   `metadata.chatorical_interval`;
//! - one Customer per tenant, `metadata.chatorical_tenant = <tenant id>`;
//! - Checkout Sessions in `subscription` mode with `client_reference_id = <tenant id>`
//!   and `metadata` (also on the subscription, `subscription_data.metadata`)
//!   `chatorical_tenant`, `chatorical_plan`, `chatorical_interval`.
//!
//! Every write carries an `Idempotency-Key` derived from what it is meant to achieve
//! (`idempotency_key`), so a repeated attempt is answered with the first result.
//!
//! The webhook half: [`signature`] (the `Stripe-Signature` header), [`events`] (the
//! webhook's events, deduplicated and applied in one transaction), [`subscription`]
//! (each tenant's subscription state, ordered by Stripe's own timestamps, and
//! `GET /v1/billing/subscription`) and [`dunning`] (grace periods after failed
//! payments, and the downgrade when they end).

pub mod catalogue;
pub mod checkout;
pub mod dunning;
pub mod events;
pub mod signature;
pub mod subscription;

use std::{fmt, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::config::{Secret, StripeSettings};
use crate::error::{Error, ErrorCode, Result};

/// A configured Stripe connection: the API client (pointed at `api_base`) and the
/// billing settings. Cheap to clone, and one pointer wide (it sits in `AppState`, which
/// every socket's future holds).
#[derive(Clone)]
pub struct Billing(Arc<Inner>);

struct Inner {
    client: stripe::Client,
    settings: StripeSettings,
}

impl fmt::Debug for Billing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The settings' secrets print as `***`; the client is left out altogether.
        f.debug_struct("Billing")
            .field("settings", &self.0.settings)
            .finish_non_exhaustive()
    }
}

impl Billing {
    /// The Stripe connection the settings describe, or `None` when no secret key is set
    /// (billing off). A key that cannot be sent as a header is a configuration error.
    pub fn from_settings(settings: &StripeSettings) -> Result<Option<Billing>> {
        let Some(secret) = &settings.secret_key else {
            return Ok(None);
        };
        Self::connect(secret, settings).map(Some)
    }

    fn connect(secret: &Secret, settings: &StripeSettings) -> Result<Billing> {
        let client = stripe::ClientBuilder::new(secret.expose())
            .url(api_base_url(&settings.api_base))
            .timeout(Duration::from_secs(settings.request_timeout_secs))
            .app_info("chatorical", Some(env!("CARGO_PKG_VERSION").into()), None)
            .build()
            // The builder's messages name the setting, never the key's value.
            .map_err(|e| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!("invalid setting `billing.stripe`: {e}"),
                )
                .with_details(serde_json::json!({ "key": "billing.stripe" }))
            })?;
        Ok(Billing(Arc::new(Inner {
            client,
            settings: settings.clone(),
        })))
    }

    /// The Stripe API client.
    pub fn client(&self) -> &stripe::Client {
        &self.0.client
    }

    /// The `[billing.stripe]` settings this connection was built from.
    pub fn settings(&self) -> &StripeSettings {
        &self.0.settings
    }

    /// Days a tenant whose payment failed keeps its plan (`grace_days`).
    pub fn grace_days(&self) -> u32 {
        self.0.settings.grace_days
    }

    /// The webhook endpoint's signing secret, when set.
    pub fn webhook_secret(&self) -> Option<&Secret> {
        self.0.settings.webhook_secret.as_ref()
    }
}

/// `api_base` as the client wants it: the client appends `v1/<path>` to it, so it must
/// end with a slash (`https://api.stripe.com/`).
fn api_base_url(api_base: &str) -> String {
    if api_base.ends_with('/') {
        api_base.to_string()
    } else {
        format!("{api_base}/")
    }
}

/// A billing interval: how often a subscription is paid.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// Paid every month (`price_month_cents`).
    Month,
    /// Paid every year (`price_year_cents`).
    Year,
}

impl Interval {
    /// Both intervals.
    pub const ALL: [Interval; 2] = [Interval::Month, Interval::Year];

    /// `month` or `year`.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Month => "month",
            Interval::Year => "year",
        }
    }

    /// Parse `month` or `year`.
    pub fn parse(s: &str) -> Option<Self> {
        Interval::ALL.into_iter().find(|i| i.as_str() == s)
    }

    /// The plan's price for this interval, in EUR cents (`None`: not sold so).
    pub fn price_of(self, spec: &crate::plans::PlanSpec) -> Option<i64> {
        match self {
            Interval::Month => spec.price_month_cents,
            Interval::Year => spec.price_year_cents,
        }
    }

    /// The plan field holding this interval's price.
    pub fn price_field(self) -> &'static str {
        match self {
            Interval::Month => "price_month_cents",
            Interval::Year => "price_year_cents",
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lookup key of a plan's price for an interval: `chatorical_<code>_<interval>`.
pub fn lookup_key(plan: &crate::plans::PlanCode, interval: Interval) -> String {
    format!("chatorical_{plan}_{interval}")
}

/// Metadata key naming the plan of a Product or Price.
pub const META_PLAN: &str = "chatorical_plan";
/// Metadata key naming the interval of a Price.
pub const META_INTERVAL: &str = "chatorical_interval";
/// Metadata key naming the tenant of a Customer, Checkout Session or subscription.
pub const META_TENANT: &str = "chatorical_tenant";

/// How to send a Stripe write: once, with an `Idempotency-Key` derived from `parts` (what the write is
/// meant to achieve, and from which state): the same parts give the same key, so
/// Stripe answers a repeated write with the first one's result instead of doing it
/// twice.
pub(crate) fn idempotency_key(parts: &[&str]) -> stripe::RequestStrategy {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    // 64 hex characters plus the prefix: never empty, well under Stripe's 255.
    match stripe::IdempotencyKey::new(format!("chatorical-{hex}")) {
        Ok(key) => stripe::RequestStrategy::Idempotent(key),
        Err(_) => stripe::RequestStrategy::Once,
    }
}

/// The shape of a Stripe failure as our error, naming what was being done (`what`):
/// Stripe's refusals are `stripe_error` with Stripe's error code and type in `details`
/// (its message is kept as the cause: logged, shown by the CLI, never in an HTTP
/// response); no answer in time or no connection is `unavailable` (retry).
pub(crate) fn stripe_failure(what: &str, e: stripe::StripeError) -> Error {
    match e {
        stripe::StripeError::Stripe(api, status) => {
            let code = api.code.as_ref().map(|c| c.as_str().to_string());
            let kind = api.type_.as_str().to_string();
            let shown = code.clone().unwrap_or_else(|| kind.clone());
            let err = Error::new(
                ErrorCode::StripeError,
                format!("Stripe refused {what}: {shown} (HTTP {status})"),
            )
            .with_details(serde_json::json!({
                "stripe_code": code,
                "stripe_type": kind,
                "status": status,
            }));
            match api.message {
                Some(message) => err.with_source(StripeCause(message)),
                None => err,
            }
        }
        stripe::StripeError::Timeout => Error::new(
            ErrorCode::Unavailable,
            format!("Stripe did not answer {what} in time; try again"),
        )
        .with_details(serde_json::json!({ "stripe_code": "timeout" })),
        stripe::StripeError::ClientError(message) => Error::new(
            ErrorCode::Unavailable,
            format!("cannot reach Stripe for {what}; try again"),
        )
        .with_details(serde_json::json!({ "stripe_code": "connection" }))
        .with_source(StripeCause(message)),
        stripe::StripeError::JSONDeserialize(message) => Error::new(
            ErrorCode::StripeError,
            format!("Stripe's answer to {what} could not be read"),
        )
        .with_details(serde_json::json!({ "stripe_code": "unreadable_response" }))
        .with_source(StripeCause(message)),
        stripe::StripeError::ConfigError(message) => Error::new(
            ErrorCode::InvalidConfig,
            format!("invalid setting `billing.stripe`: {message}"),
        ),
    }
}

/// Stripe's own words about a failure: the cause of an [`Error`], never sent to API
/// clients.
#[derive(Debug)]
struct StripeCause(String);

impl fmt::Display for StripeCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::domain::text::escape_controls(&self.0))
    }
}

impl std::error::Error for StripeCause {}

/// 503 `billing_not_configured`: this server has no Stripe secret key.
pub fn not_configured() -> Error {
    Error::new(
        ErrorCode::BillingNotConfigured,
        "billing is not configured on this server (set billing.stripe.secret_key)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_is_off_without_a_secret_key() {
        let settings = StripeSettings::default();
        assert!(Billing::from_settings(&settings).expect("valid").is_none());
        assert_eq!(not_configured().code, ErrorCode::BillingNotConfigured);
    }

    #[test]
    fn a_configured_client_keeps_its_key_out_of_debug() {
        let settings = StripeSettings {
            secret_key: Some(Secret::new("sk_test_hunter2")),
            api_base: "http://127.0.0.1:9".into(),
            ..StripeSettings::default()
        };
        let billing = Billing::from_settings(&settings)
            .expect("valid")
            .expect("configured");
        assert!(!format!("{billing:?}").contains("hunter2"));
        assert_eq!(billing.grace_days(), 7);
        assert_eq!(
            std::mem::size_of::<Option<Billing>>(),
            std::mem::size_of::<usize>()
        );
        assert_eq!(api_base_url("http://127.0.0.1:9"), "http://127.0.0.1:9/");
        assert_eq!(
            api_base_url("https://api.stripe.com/"),
            "https://api.stripe.com/"
        );

        let bad = StripeSettings {
            secret_key: Some(Secret::new("sk_test_\nhunter2")),
            ..StripeSettings::default()
        };
        let err = Billing::from_settings(&bad).expect_err("not a header value");
        assert_eq!(err.code, ErrorCode::InvalidConfig);
        assert!(!err.message.contains("hunter2"), "{}", err.message);
    }
}
