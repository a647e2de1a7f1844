//! The `Stripe-Signature` header of webhook calls, checked as Stripe documents it
//! (<https://docs.stripe.com/webhooks#verify-manually>):
//!
//! - the header is a comma-separated list of `scheme=value` elements: one `t=<unix
//!   seconds>`, one or more `v1=<hex>` (several while the endpoint's secret is being
//!   rolled), possibly `v0=…` (test-mode legacy) and schemes we do not know;
//! - the signed payload is `"{t}.{raw body}"`, the signature its HMAC-SHA256 under the
//!   endpoint's signing secret (`whsec_…`, used as is), in hex;
//! - any one `v1` that matches is enough; `v0` and unknown schemes are ignored;
//! - a timestamp further than the tolerance (300 s) from now, in either direction, is
//!   refused, so a captured call cannot be replayed later.
//!
//! It runs on the raw bytes before anything parses them: a body re-serialised by a
//! proxy no longer matches. Signatures are compared in constant time.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::{Error, ErrorCode};

/// How far (in seconds) the header's timestamp may be from now, as Stripe's libraries
/// default to.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused. Each answers 400 `invalid_signature`; the reason is
/// logged and shown in the message (it says nothing about the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    Missing,
    /// No `t=` element, more than one, or one that is not a number.
    BadTimestamp,
    /// No `v1=` element (only `v0` or unknown schemes).
    NoV1,
    /// No `v1` value is the HMAC of the timestamp and body under the secret.
    NoMatch,
    /// The timestamp is further from now than the tolerance.
    OutsideTolerance,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::Missing => "the Stripe-Signature header is missing",
            SignatureError::BadTimestamp => {
                "the Stripe-Signature header needs exactly one numeric t= element"
            }
            SignatureError::NoV1 => "the Stripe-Signature header has no v1 signature",
            SignatureError::NoMatch => "no v1 signature matches the body",
            SignatureError::OutsideTolerance => {
                "the Stripe-Signature timestamp is outside the tolerance (300 s)"
            }
        })
    }
}

impl std::error::Error for SignatureError {}

impl From<SignatureError> for Error {
    fn from(e: SignatureError) -> Self {
        Error::new(ErrorCode::InvalidSignature, e.to_string())
    }
}

/// Check `header` (the `Stripe-Signature` value) against the raw request body, the
/// endpoint's signing secret and `now` (unix seconds), allowing `tolerance` seconds
/// between the header's timestamp and now ([`TOLERANCE_SECS`] for webhooks).
pub fn verify(
    header: &str,
    raw_body: &[u8],
    secret: &str,
    now: i64,
    tolerance: i64,
) -> Result<(), SignatureError> {
    if header.trim().is_empty() {
        return Err(SignatureError::Missing);
    }
    let mut timestamp: Option<&str> = None;
    let mut candidates: Vec<&str> = Vec::new();
    for element in header.split(',') {
        let Some((scheme, value)) = element.trim().split_once('=') else {
            continue;
        };
        match scheme.trim() {
            "t" if timestamp.is_some() => return Err(SignatureError::BadTimestamp),
            "t" => timestamp = Some(value.trim()),
            "v1" => candidates.push(value.trim()),
            // v0 (legacy test-mode signatures) and schemes we do not know.
            _ => {}
        }
    }
    let t_text = timestamp.ok_or(SignatureError::BadTimestamp)?;
    let t: i64 = t_text.parse().map_err(|_| SignatureError::BadTimestamp)?;
    if candidates.is_empty() {
        return Err(SignatureError::NoV1);
    }
    let expected = mac(secret, t_text, raw_body);
    let matched = candidates
        .iter()
        .filter_map(|c| decode_hex(c))
        .any(|presented| bool::from(expected.as_slice().ct_eq(&presented)));
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    if now.abs_diff(t) > tolerance.unsigned_abs() {
        return Err(SignatureError::OutsideTolerance);
    }
    Ok(())
}

/// A `Stripe-Signature` value for `raw_body` at time `t`, as Stripe writes it
/// (`t=…,v1=…`): what a sender holding the secret would send.
pub fn sign(secret: &str, t: i64, raw_body: &[u8]) -> String {
    let hex: String = mac(secret, &t.to_string(), raw_body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// HMAC-SHA256 of `"{t}.{raw body}"` under `secret`. The timestamp is used exactly as
/// the header wrote it.
fn mac(secret: &str, t: &str, raw_body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(raw_body);
    mac.finalize().into_bytes().to_vec()
}

/// Lower- or upper-case hex to bytes; `None` for anything else.
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
    const T: i64 = 1_700_000_000;
    /// `printf '%s' '1700000000.{"id":"evt_1","object":"event"}' | openssl dgst -sha256 -hmac whsec_test_secret`
    const KNOWN: &str = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd";

    fn check(header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
        verify(header, body, SECRET, now, TOLERANCE_SECS)
    }

    #[test]
    fn a_valid_signature_matches_an_independent_hmac() {
        assert_eq!(sign(SECRET, T, BODY), format!("t={T},v1={KNOWN}"));
        assert_eq!(check(&format!("t={T},v1={KNOWN}"), BODY, T), Ok(()));
        // Upper-case hex and spaces around elements are still the same signature.
        let upper = KNOWN.to_uppercase();
        assert_eq!(check(&format!("t={T}, v1={upper}"), BODY, T + 1), Ok(()));
    }

    #[test]
    fn one_flipped_byte_in_the_body_does_not_match() {
        let header = sign(SECRET, T, BODY);
        for i in 0..BODY.len() {
            let mut body = BODY.to_vec();
            body[i] ^= 0x01;
            assert_eq!(
                check(&header, &body, T),
                Err(SignatureError::NoMatch),
                "byte {i}"
            );
        }
    }

    #[test]
    fn re_serialised_json_does_not_match() {
        let header = sign(SECRET, T, BODY);
        let value: serde_json::Value = serde_json::from_slice(BODY).expect("JSON");
        let pretty = serde_json::to_vec_pretty(&value).expect("JSON");
        assert_ne!(pretty, BODY);
        assert_eq!(check(&header, &pretty, T), Err(SignatureError::NoMatch));
        let spaced = br#"{"id": "evt_1", "object": "event"}"#;
        assert_eq!(check(&header, spaced, T), Err(SignatureError::NoMatch));
    }

    #[test]
    fn the_timestamp_must_be_within_300_seconds_either_way() {
        let header = sign(SECRET, T, BODY);
        assert_eq!(check(&header, BODY, T + 300), Ok(()));
        assert_eq!(check(&header, BODY, T - 300), Ok(()));
        assert_eq!(
            check(&header, BODY, T + 301),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            check(&header, BODY, T - 301),
            Err(SignatureError::OutsideTolerance)
        );
        // Signed 301 s ago with the right secret: still refused.
        let old = sign(SECRET, T - 301, BODY);
        assert_eq!(check(&old, BODY, T), Err(SignatureError::OutsideTolerance));
    }

    #[test]
    fn the_timestamp_is_part_of_what_is_signed() {
        // A valid v1 moved to another timestamp no longer matches.
        let moved = format!("t={},v1={KNOWN}", T + 10);
        assert_eq!(check(&moved, BODY, T), Err(SignatureError::NoMatch));
    }

    #[test]
    fn v0_and_unknown_schemes_are_ignored() {
        // A correct HMAC presented as v0 only: not accepted.
        let only_v0 = format!("t={T},v0={KNOWN}");
        assert_eq!(check(&only_v0, BODY, T), Err(SignatureError::NoV1));
        let unknown = format!("t={T},v2={KNOWN},x=1,garbage");
        assert_eq!(check(&unknown, BODY, T), Err(SignatureError::NoV1));
        // Beside a valid v1 they change nothing.
        let mixed = format!("t={T},v0=00ff,v9=zz,v1={KNOWN}");
        assert_eq!(check(&mixed, BODY, T), Ok(()));
    }

    #[test]
    fn any_one_of_several_v1_may_match() {
        let wrong = sign("whsec_old_secret", T, BODY);
        let wrong_v1 = wrong.split_once("v1=").expect("v1").1;
        assert_eq!(
            check(&format!("t={T},v1={wrong_v1},v1={KNOWN}"), BODY, T),
            Ok(())
        );
        assert_eq!(
            check(&format!("t={T},v1={KNOWN},v1={wrong_v1}"), BODY, T),
            Ok(())
        );
        assert_eq!(
            check(&format!("t={T},v1={wrong_v1},v1=nothex"), BODY, T),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn another_secret_does_not_match() {
        let header = sign("whsec_someone_else", T, BODY);
        assert_eq!(check(&header, BODY, T), Err(SignatureError::NoMatch));
    }

    #[test]
    fn a_missing_or_malformed_header_is_refused() {
        assert_eq!(check("", BODY, T), Err(SignatureError::Missing));
        assert_eq!(check("   ", BODY, T), Err(SignatureError::Missing));
        assert_eq!(
            check(&format!("v1={KNOWN}"), BODY, T),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            check(&format!("t=soon,v1={KNOWN}"), BODY, T),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            check(&format!("t={T},t={T},v1={KNOWN}"), BODY, T),
            Err(SignatureError::BadTimestamp)
        );
        // A truncated or odd-length signature is not a match (and no panic).
        assert_eq!(
            check(&format!("t={T},v1={}", &KNOWN[..63]), BODY, T),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            check(&format!("t={T},v1={}", &KNOWN[..62]), BODY, T),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            check(&format!("t={T},v1="), BODY, T),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn errors_are_invalid_signature() {
        let e: Error = SignatureError::NoMatch.into();
        assert_eq!(e.code, ErrorCode::InvalidSignature);
    }
}
