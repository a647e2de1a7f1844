//! Billing through Stripe: the plan catalogue synced to Stripe products and prices,
//! Checkout and the customer portal for tenants, and (webhooks) the subscription state
//! that moves tenants between plans.
//!
//! [`Billing`] exists only when `[billing.stripe] secret_key` is set; every billing
//! operation without it answers [`not_configured`] (503 `billing_not_configured`).
//!
//! The webhook half: [`signature`] (the `Stripe-Signature` header), [`events`] (the
//! webhook's events, deduplicated and applied in one transaction), [`subscription`]
//! (each tenant's subscription state, ordered by Stripe's own timestamps, and
//! `GET /v1/billing/subscription`) and [`dunning`] (grace periods after failed
//! payments, and the downgrade when they end).

pub mod dunning;
pub mod events;
pub mod signature;
pub mod subscription;

use std::{fmt, sync::Arc, time::Duration};

use crate::config::{Secret, StripeSettings};
use crate::error::{Error, ErrorCode, Result};

/// A configured Stripe connection: the API client (pointed at `api_base`) and the
/// billing settings. Cheap to clone.
#[derive(Clone)]
pub struct Billing {
    client: stripe::Client,
    settings: Arc<StripeSettings>,
}

impl fmt::Debug for Billing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The settings' secrets print as `***`; the client is left out altogether.
        f.debug_struct("Billing")
            .field("settings", &self.settings)
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
        Ok(Billing {
            client,
            settings: Arc::new(settings.clone()),
        })
    }

    /// The Stripe API client.
    pub fn client(&self) -> &stripe::Client {
        &self.client
    }

    /// The `[billing.stripe]` settings this connection was built from.
    pub fn settings(&self) -> &StripeSettings {
        &self.settings
    }

    /// Days a tenant whose payment failed keeps its plan (`grace_days`).
    pub fn grace_days(&self) -> u32 {
        self.settings.grace_days
    }

    /// The webhook endpoint's signing secret, when set.
    pub fn webhook_secret(&self) -> Option<&Secret> {
        self.settings.webhook_secret.as_ref()
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
