use rand::Rng;
use sha2::{Digest, Sha256};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` random base62 characters from the OS-seeded CSPRNG.
pub fn random_base62(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect()
}

/// Encode a number in base62, left-padded with `0` to `width`.
pub(crate) fn base62_fixed(mut n: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Lower-case hex SHA-256 of a string: how tokens and keys are stored.
pub fn sha256_hex(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A visitor's long-lived bearer token (`vt_…`); stored only as its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct VisitorToken(String);

impl VisitorToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        VisitorToken(format!("vt_{}", random_base62(40)))
    }
    /// Accept a presented token if it has the right shape.
    pub fn parse(s: &str) -> Option<Self> {
        let body = s.strip_prefix("vt_")?;
        (body.len() == 40 && body.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| VisitorToken(s.to_string()))
    }
    /// The token, to hand to the visitor once.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The stored form.
    pub fn hash(&self) -> String {
        sha256_hex(&self.0)
    }
}

impl std::fmt::Debug for VisitorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VisitorToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_token_round_trips_and_rejects_garbage() {
        let t = VisitorToken::generate();
        assert_eq!(VisitorToken::parse(t.expose()), Some(t.clone()));
        assert!(VisitorToken::parse("vt_short").is_none());
        assert!(VisitorToken::parse("chk_whatever").is_none());
        assert_ne!(t.hash(), t.expose());
    }

    #[test]
    fn base62_fixed_pads_and_encodes() {
        assert_eq!(base62_fixed(0, 6), "000000");
        assert_eq!(base62_fixed(61, 2), "0z");
        assert_eq!(base62_fixed(62, 2), "10");
    }
}
