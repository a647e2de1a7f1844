//! Short-lived WebSocket tokens: `base64url(claims).base64url(HMAC-SHA256)`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::{Environment, TenantId, VisitorId};
use crate::error::{Error, Result};

/// What a ws_token grants: one visitor's socket on one conversation of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsClaims {
    /// Tenant id.
    pub t: TenantId,
    /// The visitor's environment (absent: production, as in tokens signed before
    /// environments existed): whose allowed origins the socket's `Origin` must be in.
    #[serde(default, skip_serializing_if = "Environment::is_production")]
    pub e: Environment,
    /// Visitor id.
    pub v: VisitorId,
    /// Conversation id.
    pub c: String,
    /// Expiry, epoch ms.
    pub exp: i64,
}

/// Signs and verifies ws tokens with a server-wide secret.
#[derive(Clone)]
pub struct WsTokenSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for WsTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsTokenSigner(***)")
    }
}

impl WsTokenSigner {
    /// A signer keyed by `secret`.
    pub fn new(secret: &[u8]) -> Self {
        WsTokenSigner {
            key: secret.to_vec(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("hmac takes any key length"))
    }

    /// Sign claims into a token.
    pub fn sign(&self, claims: &WsClaims) -> String {
        let body = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// Verify signature (constant time) and expiry.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<WsClaims> {
        let bad = || Error::unauthorized("invalid or expired ws token");
        let (body, sig) = token.split_once('.').ok_or_else(bad)?;
        let sig = B64.decode(sig).map_err(|_| bad())?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).map_err(|_| bad())?;
        let claims: WsClaims =
            serde_json::from_slice(&B64.decode(body).map_err(|_| bad())?).map_err(|_| bad())?;
        if claims.exp <= now_ms {
            return Err(bad());
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> WsClaims {
        WsClaims {
            t: "tn_1".into(),
            e: Environment::Production,
            v: "vis_1".into(),
            c: "cv_1".into(),
            exp,
        }
    }

    #[test]
    fn round_trip() {
        let s = WsTokenSigner::new(b"secret-secret-secret-secret-secret");
        let t = s.sign(&claims(2_000));
        assert_eq!(s.verify(&t, 1_000).expect("valid"), claims(2_000));
    }

    #[test]
    fn expired_forged_and_foreign_tokens_fail() {
        let s = WsTokenSigner::new(b"one");
        let other = WsTokenSigner::new(b"two");
        let t = s.sign(&claims(2_000));
        assert!(s.verify(&t, 2_000).is_err(), "expired");
        assert!(other.verify(&t, 1_000).is_err(), "other key");
        let (body, sig) = t.split_once('.').expect("dot");
        let forged_body = B64.encode(
            serde_json::to_vec(&WsClaims {
                c: "cv_2".into(),
                ..claims(2_000)
            })
            .expect("json"),
        );
        assert!(
            s.verify(&format!("{forged_body}.{sig}"), 1_000).is_err(),
            "body swapped"
        );
        assert!(s.verify(body, 1_000).is_err(), "no signature");
    }
}
