//! Identity verification (optional per tenant).
//!
//! The host site knows who is signed in; the widget does not. The site's server
//! computes `user_hash = hex(HMAC-SHA256(key = identity secret, message = user id))`
//! and puts `data-user-id` and `data-user-hash` on the widget's script tag. A session
//! with a valid pair belongs to the visitor of that user (found or created), so the
//! user finds the same conversation on every device. A forged pair is always refused;
//! with `identity_required` in the tenant's settings, so is a session without one.
//!
//! The secret is generated here (never chosen by people), stored sealed with the master
//! key for (tenant, [`FIELD_SECRET`]), and shown once.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::audit::{Action, Entry};
use crate::crypto::MasterKey;
use crate::db::{Db, repo};
use crate::domain::{now_ms, random_base62};
use crate::error::{Error, Result};
use crate::tenancy::Tenant;

/// Field name the sealed secret is bound to.
pub const FIELD_SECRET: &str = "identity.secret";
/// Longest user id, in characters.
pub const MAX_USER_ID_CHARS: usize = 128;
/// Length of a generated secret (base62 characters, ~286 bits).
pub const SECRET_CHARS: usize = 48;

/// Whether identity verification is set up, and enforced (`GET /v1/admin/identity`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IdentityStatus {
    /// A secret has been generated.
    pub configured: bool,
    /// Sessions without a verified identity are refused.
    pub required: bool,
}

/// A freshly generated secret: the only time it is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IdentitySecret {
    /// Keep it on the host site's server; compute `user_hash` with it. Shown once.
    pub identity_secret: String,
}

/// `hex(HMAC-SHA256(secret, user_id))`, lower case: what the host site's server computes.
pub fn user_hash(secret: &str, user_id: &str) -> String {
    mac(secret, user_id)
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mac(secret: &str, user_id: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(user_id.as_bytes());
    mac
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// Whether `hash` is the HMAC of `user_id` under `secret`, compared in constant time.
pub fn hash_matches(secret: &str, user_id: &str, hash: &str) -> bool {
    let Some(presented) = decode_hex(hash) else {
        return false;
    };
    let expected = mac(secret, user_id).finalize().into_bytes();
    // Different lengths compare unequal (and only the length leaks, which is public).
    bool::from(expected.as_slice().ct_eq(&presented))
}

fn check_user_id(user_id: &str) -> Result<()> {
    let chars = user_id.chars().count();
    if chars == 0 || chars > MAX_USER_ID_CHARS || user_id.chars().any(char::is_control) {
        return Err(Error::validation(
            "user_id",
            format!("user_id must be 1-{MAX_USER_ID_CHARS} characters without control characters"),
        ));
    }
    Ok(())
}

/// Check the identity a widget session presents. `sealed` is the tenant's stored
/// secret. Returns the verified user id, or `None` for an anonymous session.
///
/// - neither `user_id` nor `user_hash`: anonymous, unless the tenant requires an
///   identity (`unauthorized`);
/// - only one of them, a malformed `user_id`, or a tenant without a secret:
///   `validation_failed`;
/// - a hash that does not match: `unauthorized`, whatever the settings.
pub fn verify(
    key: &MasterKey,
    tenant: &Tenant,
    sealed: Option<&str>,
    user_id: Option<&str>,
    user_hash: Option<&str>,
) -> Result<Option<String>> {
    match (user_id, user_hash) {
        (None, None) if tenant.settings.identity_required => Err(Error::unauthorized(
            "this site requires a verified identity: the page must pass user_id and user_hash",
        )),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::validation(
            "user_hash",
            "user_hash is required with user_id",
        )),
        (None, Some(_)) => Err(Error::validation(
            "user_id",
            "user_id is required with user_hash",
        )),
        (Some(id), Some(hash)) => {
            check_user_id(id)?;
            let Some(sealed) = sealed else {
                return Err(Error::validation(
                    "user_id",
                    "identity verification is not set up for this tenant (no identity secret)",
                ));
            };
            let secret = key.open(&tenant.id, FIELD_SECRET, sealed)?;
            if hash_matches(&secret, id, hash) {
                Ok(Some(id.to_string()))
            } else {
                Err(Error::unauthorized("user_hash does not match user_id"))
            }
        }
    }
}

/// Generate a new secret for `tenant` and store it sealed, replacing any previous one
/// (hashes made with the old secret stop verifying), recording `identity.secret_rotated`
/// (never the secret) in the same transaction. Returns it: show it once.
pub async fn generate_secret(
    db: &Db,
    key: &MasterKey,
    caller: &crate::tenancy::Caller,
    tenant: &Tenant,
) -> Result<IdentitySecret> {
    caller.require(&crate::domain::Scope::new(
        crate::domain::Resource::Settings,
        crate::domain::ScopeAccess::Write,
    ))?;
    caller.check_tenant(tenant)?;
    let secret = random_base62(SECRET_CHARS);
    let sealed = key.seal(&tenant.id, FIELD_SECRET, &secret)?;
    let mut pc = db.conn().await?;
    let mut conn = pc.as_conn();
    crate::transaction!(&mut conn, |tx| {
        let replaced = repo::tenants::identity_secret(tx, &tenant.id)
            .await?
            .is_some();
        if !repo::tenants::set_identity_secret(tx, &tenant.id, &sealed, now_ms()).await? {
            return Err(Error::not_found("tenant"));
        }
        // Never the secret: only that there is a new one, and whether it replaced one.
        crate::audit::record(
            tx,
            caller,
            Entry::new(Action::IdentitySecretRotated)
                .tenant(&tenant.id)
                .target(tenant.id.to_string())
                .changes(serde_json::json!({ "replaced": replaced })),
        )
        .await
    })?;
    Ok(IdentitySecret {
        identity_secret: secret,
    })
}

/// Whether `tenant` has a secret, and whether it requires identities.
pub async fn status(
    db: &Db,
    caller: &crate::tenancy::Caller,
    tenant: &Tenant,
) -> Result<IdentityStatus> {
    caller.require(&crate::domain::Scope::new(
        crate::domain::Resource::Settings,
        crate::domain::ScopeAccess::Read,
    ))?;
    caller.check_tenant(tenant)?;
    let mut pc = db.conn().await?;
    let sealed = repo::tenants::identity_secret(&mut pc.as_conn(), &tenant.id).await?;
    Ok(IdentityStatus {
        configured: sealed.is_some(),
        required: tenant.settings.identity_required,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_rfc4231_hmac_sha256_in_lower_case_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            user_hash("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_the_right_hash_matches() {
        let h = user_hash("s3cret", "user-42");
        assert!(hash_matches("s3cret", "user-42", &h));
        assert!(hash_matches("s3cret", "user-42", &h.to_uppercase()));
        assert!(!hash_matches("s3cret", "user-43", &h));
        assert!(!hash_matches("other", "user-42", &h));
        assert!(!hash_matches("s3cret", "user-42", &h[..62]));
        assert!(!hash_matches("s3cret", "user-42", ""));
        assert!(!hash_matches(
            "s3cret",
            "user-42",
            &format!("{}zz", &h[..62])
        ));
    }

    fn tenant(required: bool) -> Tenant {
        let settings = crate::tenancy::TenantSettings {
            identity_required: required,
            ..Default::default()
        };
        Tenant {
            id: "tn_a".into(),
            slug: "a".into(),
            name: "A".into(),
            environment: crate::domain::Environment::Production,
            widget_key: "wk_a".into(),
            plan: "free".into(),
            settings,
            created_at: String::new(),
        }
    }

    #[test]
    fn verify_covers_every_case() {
        let key = MasterKey::generate();
        let sealed = key.seal("tn_a", FIELD_SECRET, "s3cret").expect("seal");
        let good = user_hash("s3cret", "u1");
        let t = tenant(false);
        let code = |r: Result<Option<String>>| r.expect_err("refused").code;
        use crate::error::ErrorCode::*;
        assert_eq!(
            verify(&key, &t, Some(&sealed), None, None).expect("ok"),
            None
        );
        assert_eq!(
            verify(&key, &t, Some(&sealed), Some("u1"), Some(&good)).expect("ok"),
            Some("u1".into())
        );
        assert_eq!(
            code(verify(&key, &t, Some(&sealed), Some("u2"), Some(&good))),
            Unauthorized
        );
        assert_eq!(
            code(verify(&key, &t, None, Some("u1"), Some(&good))),
            ValidationFailed
        );
        assert_eq!(
            code(verify(&key, &t, Some(&sealed), Some("u1"), None)),
            ValidationFailed
        );
        assert_eq!(
            code(verify(&key, &t, Some(&sealed), Some(""), Some(&good))),
            ValidationFailed
        );
        let long = "x".repeat(MAX_USER_ID_CHARS + 1);
        assert_eq!(
            code(verify(&key, &t, Some(&sealed), Some(&long), Some(&good))),
            ValidationFailed
        );
        let required = tenant(true);
        assert_eq!(
            code(verify(&key, &required, Some(&sealed), None, None)),
            Unauthorized
        );
        // Sealed for another tenant: not usable here.
        let other = key.seal("tn_b", FIELD_SECRET, "s3cret").expect("seal");
        assert_eq!(
            code(verify(&key, &t, Some(&other), Some("u1"), Some(&good))),
            Internal
        );
    }
}
