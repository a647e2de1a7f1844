//! Tenant secrets at rest, encrypted with age under the master key.
//!
//! age has no associated data, so the binding lives inside the plaintext: every
//! sealed value carries the tenant id and field name it belongs to, and
//! [`MasterKey::open`] refuses a ciphertext whose binding does not match. A bot token
//! copied from tenant A's row into tenant B's therefore fails to decrypt for B.

use std::{path::Path, str::FromStr};

use age::secrecy::ExposeSecret;
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};

/// The master key: one or more age X25519 identities (the first encrypts; all decrypt,
/// so a rotation can read values sealed under the previous key).
pub struct MasterKey {
    identities: Vec<age::x25519::Identity>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({} identities, ***)", self.identities.len())
    }
}

#[derive(Serialize, Deserialize)]
struct Sealed<'a> {
    tenant: &'a str,
    field: &'a str,
    value: &'a str,
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        MasterKey {
            identities: vec![age::x25519::Identity::generate()],
        }
    }

    /// Parse an identity file: `AGE-SECRET-KEY-1…` lines; `#` comments and blanks ignored.
    pub fn parse(text: &str) -> Result<Self> {
        let mut identities = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let id = age::x25519::Identity::from_str(line).map_err(|_| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    "master key file holds an invalid age identity",
                )
            })?;
            identities.push(id);
        }
        if identities.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                "master key file holds no age identity",
            ));
        }
        Ok(MasterKey { identities })
    }

    /// Read the key file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorCode::InvalidConfig,
                format!("cannot read master key file {}: {e}", path.display()),
            )
        })?;
        Self::parse(&text)
    }

    /// Read the key file, creating it (mode 0600) with a new key when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if path.exists() {
            return Self::load(path);
        }
        let key = Self::generate();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!("cannot create {}: {e}", dir.display()),
                )
            })?;
        }
        crate::app::write_private(path, &key.to_file_text())?;
        Ok(key)
    }

    /// The identity file text (secret!).
    pub fn to_file_text(&self) -> String {
        let mut out = String::from(
            "# chatorical master key (age X25519 identity). Keep it secret, keep a backup.\n",
        );
        for id in &self.identities {
            out.push_str(&format!(
                "# public key: {}\n{}\n",
                id.to_public(),
                id.to_string().expose_secret()
            ));
        }
        out
    }

    /// Encrypt `value` for `tenant`'s `field`; returns base64 text for storage.
    pub fn seal(&self, tenant: &str, field: &str, value: &str) -> Result<String> {
        let plain = serde_json::to_vec(&Sealed {
            tenant,
            field,
            value,
        })
        .map_err(|e| Error::internal(e.to_string()))?;
        let recipient = self.identities[0].to_public();
        let cipher = age::encrypt(&recipient, &plain)
            .map_err(|e| Error::internal(format!("encrypt: {e}")))?;
        Ok(B64.encode(cipher))
    }

    /// Decrypt a stored value, refusing one sealed for another tenant or field.
    pub fn open(&self, tenant: &str, field: &str, stored: &str) -> Result<String> {
        let refused = || {
            Error::new(
                ErrorCode::Internal,
                "stored secret cannot be decrypted for this tenant",
            )
        };
        let cipher = B64.decode(stored).map_err(|_| refused())?;
        let plain = self
            .identities
            .iter()
            .find_map(|id| age::decrypt(id, &cipher).ok())
            .ok_or_else(refused)?;
        let sealed: Sealed<'_> = serde_json::from_slice(&plain).map_err(|_| refused())?;
        if sealed.tenant != tenant || sealed.field != field {
            tracing::error!(
                tenant,
                field,
                "secret bound to another tenant or field was refused"
            );
            return Err(refused());
        }
        Ok(sealed.value.to_string())
    }

    /// A key that encrypts with `new` and still decrypts values sealed under `self`.
    pub fn rotated_to(&self, new: MasterKey) -> MasterKey {
        let mut identities = new.identities;
        identities.extend(self.identities.iter().cloned());
        MasterKey { identities }
    }

    /// Only the newest identity (after a rotation re-encrypted everything).
    pub fn newest_only(&self) -> MasterKey {
        MasterKey {
            identities: vec![self.identities[0].clone()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_for_the_same_tenant_and_field() {
        let k = MasterKey::generate();
        let sealed = k.seal("tn_a", "bot_token", "123:ABC").expect("seal");
        assert!(!sealed.contains("123:ABC"));
        assert_eq!(
            k.open("tn_a", "bot_token", &sealed).expect("open"),
            "123:ABC"
        );
    }

    #[test]
    fn ciphertext_moved_to_another_tenant_or_field_is_refused() {
        let k = MasterKey::generate();
        let sealed = k.seal("tn_a", "bot_token", "123:ABC").expect("seal");
        assert!(k.open("tn_b", "bot_token", &sealed).is_err());
        assert!(k.open("tn_a", "webhook_secret", &sealed).is_err());
    }

    #[test]
    fn another_key_cannot_open_and_rotation_reads_old_values() {
        let old = MasterKey::generate();
        let sealed = old.seal("tn_a", "f", "v").expect("seal");
        let new = MasterKey::generate();
        assert!(new.open("tn_a", "f", &sealed).is_err());
        let both = old.rotated_to(new);
        assert_eq!(both.open("tn_a", "f", &sealed).expect("open"), "v");
        let resealed = both.seal("tn_a", "f", "v").expect("seal");
        let only_new = both.newest_only();
        assert_eq!(only_new.open("tn_a", "f", &resealed).expect("open"), "v");
        assert!(
            only_new.open("tn_a", "f", &sealed).is_err(),
            "old key stops working"
        );
    }

    #[test]
    fn key_file_round_trips() {
        let k = MasterKey::generate();
        let text = k.to_file_text();
        let again = MasterKey::parse(&text).expect("parse");
        let sealed = k.seal("t", "f", "v").expect("seal");
        assert_eq!(again.open("t", "f", &sealed).expect("open"), "v");
        assert!(MasterKey::parse("# nothing\n").is_err());
        assert!(!format!("{k:?}").contains("AGE-SECRET"));
    }
}
