//! A tenant's environments: `production` (the tenant's own widget key and settings) and
//! `staging` (a second widget key with its own origins and settings, beside it).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};

/// Which of a tenant's environments something belongs to. Stored and shown as its
/// lowercase name; everything stored before environments existed is `production`.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// The live site: counted against the plan's quotas.
    #[default]
    Production,
    /// A test site beside it: its own widget key, origins and settings; marked, counted
    /// apart and never against the plan's quotas.
    Staging,
}

impl Environment {
    /// Every environment.
    pub const ALL: [Environment; 2] = [Environment::Production, Environment::Staging];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Staging => "staging",
        }
    }

    /// An environment a caller names (`production` or `staging`); `validation_failed`
    /// naming `field` otherwise.
    pub fn parse(field: &str, s: &str) -> Result<Self> {
        match s {
            "production" => Ok(Environment::Production),
            "staging" => Ok(Environment::Staging),
            _ => Err(Error::validation(
                field,
                format!("{field} must be production or staging"),
            )),
        }
    }

    /// A stored environment. Only the two names are ever written; anything else is
    /// logged as the corruption it is and read as staging (never counted against a
    /// plan by mistake, never mixed into production).
    pub fn from_stored(s: &str) -> Environment {
        match s {
            "production" => Environment::Production,
            "staging" => Environment::Staging,
            other => {
                tracing::error!(environment = %other, "a stored row has an unknown environment");
                Environment::Staging
            }
        }
    }

    /// Whether this is production (for `skip_serializing_if`).
    pub fn is_production(&self) -> bool {
        *self == Environment::Production
    }

    /// Whether what happens here counts against the plan's quotas (production only).
    pub fn counts_against_quotas(self) -> bool {
        self == Environment::Production
    }
}

impl std::fmt::Display for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in Environment::ALL {
            assert_eq!(Environment::parse("env", e.as_str()).expect("parses"), e);
            assert_eq!(Environment::from_stored(e.as_str()), e);
            assert_eq!(
                serde_json::to_string(&e).expect("json"),
                format!("\"{}\"", e.as_str())
            );
        }
        let err = Environment::parse("env", "Staging").expect_err("case matters");
        assert_eq!(err.code, crate::error::ErrorCode::ValidationFailed);
        assert_eq!(Environment::default(), Environment::Production);
        assert!(!Environment::Staging.counts_against_quotas());
    }
}
