use super::token::{base62_fixed, random_base62, sha256_hex};

const PREFIX: &str = "chk_";
const BODY_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;

/// Why a presented API key was rejected before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// Not `chk_` + base62 of the right length.
    #[error("malformed API key")]
    Malformed,
    /// The CRC32 checksum does not match: a typo or a forgery.
    #[error("API key checksum mismatch")]
    BadChecksum,
}

/// A plaintext API key: `chk_` + 32 random base62 + 6 base62 of the body's CRC32.
///
/// Shown once at issue; only [`ApiKeySecret::hash`], [`ApiKeySecret::prefix`] and
/// [`ApiKeySecret::last4`] are stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// Generate a new key.
    pub fn generate() -> Self {
        let body = random_base62(BODY_LEN);
        let sum = base62_fixed(u64::from(crc32fast::hash(body.as_bytes())), CHECKSUM_LEN);
        ApiKeySecret(format!("{PREFIX}{body}{sum}"))
    }

    /// Parse and verify the checksum; no database needed.
    pub fn parse(s: &str) -> Result<Self, KeyParseError> {
        let rest = s.strip_prefix(PREFIX).ok_or(KeyParseError::Malformed)?;
        if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(KeyParseError::Malformed);
        }
        let (body, sum) = rest.split_at(BODY_LEN);
        let expected = base62_fixed(u64::from(crc32fast::hash(body.as_bytes())), CHECKSUM_LEN);
        if expected != sum {
            return Err(KeyParseError::BadChecksum);
        }
        Ok(ApiKeySecret(s.to_string()))
    }

    /// The key itself (shown once).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// SHA-256 hex, the stored lookup value.
    pub fn hash(&self) -> String {
        sha256_hex(&self.0)
    }
    /// First 12 characters, stored to help people recognise a key.
    pub fn prefix(&self) -> String {
        self.0.chars().take(12).collect()
    }
    /// Last four characters, stored to help people recognise a key.
    pub fn last4(&self) -> String {
        let n = self.0.len();
        self.0[n - 4..].to_string()
    }
}

impl std::fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeySecret({}…)", self.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse() {
        for _ in 0..100 {
            let k = ApiKeySecret::generate();
            assert_eq!(ApiKeySecret::parse(k.expose()), Ok(k.clone()));
            assert_eq!(k.expose().len(), 4 + 32 + 6);
        }
    }

    #[test]
    fn one_changed_character_fails_the_checksum() {
        let k = ApiKeySecret::generate();
        let mut chars: Vec<char> = k.expose().chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(
            ApiKeySecret::parse(&tampered),
            Err(KeyParseError::BadChecksum)
        );
    }

    #[test]
    fn wrong_shapes_are_malformed() {
        assert_eq!(
            ApiKeySecret::parse("chk_abc"),
            Err(KeyParseError::Malformed)
        );
        assert_eq!(
            ApiKeySecret::parse("sk_live_x"),
            Err(KeyParseError::Malformed)
        );
        assert_eq!(
            ApiKeySecret::parse(&format!("chk_{}", "!".repeat(38))),
            Err(KeyParseError::Malformed)
        );
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let k = ApiKeySecret::generate();
        assert!(!format!("{k:?}").contains(k.expose()));
    }
}
