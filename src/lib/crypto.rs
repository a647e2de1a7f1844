//! Tenant secrets at rest, encrypted with age under the master key.
//!
//! age has no associated data, so the binding lives inside the plaintext: every
//! sealed value carries the tenant id and field name it belongs to, and
//! [`MasterKey::open`] refuses a ciphertext whose binding does not match. A bot token
//! copied from tenant A's row into tenant B's therefore fails to decrypt for B.

use std::{
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex, RwLock},
};

use age::secrecy::ExposeSecret;
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};

/// The master key: one or more age X25519 identities, newest first. The first encrypts;
/// all decrypt, so values sealed under an older key stay readable during a rotation
/// (`chatorical secrets rotate` puts a new identity first and keeps the old ones until
/// `secrets retire-old`).
///
/// A key loaded from a file ([`MasterKey::load`]) follows that file: it re-reads it when
/// the file changed (checked before sealing, when no identity can open a value, and by
/// [`MasterKey::reload_if_changed`], which servers call every 30 s and on SIGHUP).
pub struct MasterKey {
    identities: RwLock<Arc<Vec<age::x25519::Identity>>>,
    source: Option<KeySource>,
}

/// The file a key was loaded from and what it looked like then.
struct KeySource {
    path: PathBuf,
    seen: Mutex<Option<FileStamp>>,
}

/// Enough of a file's metadata to notice a rewrite (a rename changes the inode).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        })
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({} identities, ***)", self.current().len())
    }
}

#[derive(Serialize, Deserialize)]
struct Sealed<'a> {
    tenant: &'a str,
    field: &'a str,
    value: &'a str,
}

/// What [`MasterKey::reseal`] did with a stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resealed {
    /// Already sealed under the newest identity: nothing to do.
    Current,
    /// Re-encrypted under the newest identity: store this instead.
    New(String),
}

fn key_file_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::InvalidConfig,
        format!("master key file {}: {what}", path.display()),
    )
}

impl MasterKey {
    fn from_identities(identities: Vec<age::x25519::Identity>) -> Self {
        MasterKey {
            identities: RwLock::new(Arc::new(identities)),
            source: None,
        }
    }

    fn current(&self) -> Arc<Vec<age::x25519::Identity>> {
        self.identities
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        Self::from_identities(vec![age::x25519::Identity::generate()])
    }

    /// Parse an identity file: `AGE-SECRET-KEY-1…` lines, newest first; `#` comments and
    /// blanks ignored.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(Self::from_identities(parse_identities(text)?))
    }

    /// Read the key file; the key follows later changes of the file (see the type's docs).
    pub fn load(path: &Path) -> Result<Self> {
        let seen = FileStamp::of(path);
        let identities = read_identities(path)?;
        Ok(MasterKey {
            identities: RwLock::new(Arc::new(identities)),
            source: Some(KeySource {
                path: path.to_path_buf(),
                seen: Mutex::new(seen),
            }),
        })
    }

    /// Read a key file an operator's command is about to change: it must exist, be a
    /// regular file readable by its owner only (no group or other permissions), and hold
    /// at least one identity. Never creates a key.
    pub fn load_private(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| key_file_error(path, e))?;
        if !meta.is_file() {
            return Err(key_file_error(path, "not a regular file"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(key_file_error(
                    path,
                    format!(
                        "permissions {mode:o} let group or others read it; run `chmod 600 {}`",
                        path.display()
                    ),
                ));
            }
        }
        Self::load(path)
    }

    /// Read the key file, creating it (mode 0600) with a new key when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if path.exists() {
            return Self::load(path);
        }
        let key = Self::generate();
        if let Some(dir) = path.parent() {
            crate::files::create_private_dir(dir)?;
        }
        key.write_file(path)?;
        Self::load(path)
    }

    /// The identity file text (secret!).
    pub fn to_file_text(&self) -> String {
        let mut out = String::from(
            "# chatorical master key (age X25519 identities, newest first: the first encrypts,\n\
             # all decrypt). Keep it secret, keep a backup.\n",
        );
        for id in self.current().iter() {
            out.push_str(&format!(
                "# public key: {}\n{}\n",
                id.to_public(),
                id.to_string().expose_secret()
            ));
        }
        out
    }

    /// Write the key to `path` atomically: a 0600 temporary file beside it (owned like the
    /// file it replaces), fsync, rename over `path`, fsync the directory. A crash leaves
    /// the old file or the new one.
    pub fn write_file(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| key_file_error(path, "not a file path"))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let written = (|| -> std::io::Result<()> {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            // An operator running as root must not leave a file the service user cannot
            // read: the new file keeps the old one's owner and group.
            #[cfg(unix)]
            if let Ok(old) = std::fs::metadata(path) {
                use std::os::unix::fs::MetadataExt;
                let new = f.metadata()?;
                if (old.uid(), old.gid()) != (new.uid(), new.gid()) {
                    std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()))?;
                }
            }
            f.write_all(self.to_file_text().as_bytes())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            key_file_error(path, format!("cannot write: {e}"))
        })
    }

    /// The identities' public keys (age recipients, `age1…`), newest first. Safe to show:
    /// they identify a key without revealing it.
    pub fn fingerprints(&self) -> Vec<String> {
        self.current()
            .iter()
            .map(|id| id.to_public().to_string())
            .collect()
    }

    /// How many identities the key holds.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Never true: a key holds at least one identity.
    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }

    /// Re-read the key file this key was loaded from. Returns whether the identities
    /// changed. A key not loaded from a file does nothing.
    pub fn reload(&self) -> Result<bool> {
        let Some(source) = &self.source else {
            return Ok(false);
        };
        let stamp = FileStamp::of(&source.path);
        let fresh = read_identities(&source.path)?;
        *source.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
        let old = self.current();
        let same = old.len() == fresh.len()
            && old
                .iter()
                .zip(fresh.iter())
                .all(|(a, b)| a.to_public().to_string() == b.to_public().to_string());
        if same {
            return Ok(false);
        }
        let fingerprints: Vec<String> = fresh.iter().map(|i| i.to_public().to_string()).collect();
        *self.identities.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        tracing::info!(
            path = %source.path.display(),
            keys = ?fingerprints,
            "master key file re-read: newest key first"
        );
        Ok(true)
    }

    /// [`MasterKey::reload`] when the file looks changed (mtime, size or inode). A file
    /// that cannot be read now is logged and the key in memory kept.
    pub fn reload_if_changed(&self) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        let stamp = FileStamp::of(&source.path);
        let changed = *source.seen.lock().unwrap_or_else(|p| p.into_inner()) != stamp;
        if !changed {
            return false;
        }
        match self.reload() {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!(error = %e, "master key file changed but cannot be used; keeping the key in memory");
                false
            }
        }
    }

    /// Encrypt `value` for `tenant`'s `field` under the newest identity; returns base64
    /// text for storage.
    pub fn seal(&self, tenant: &str, field: &str, value: &str) -> Result<String> {
        // A rotation may have put a newer key in the file: seal under that one.
        self.reload_if_changed();
        seal_with(&self.current()[0], tenant, field, value)
    }

    /// Decrypt a stored value, refusing one sealed for another tenant or field.
    pub fn open(&self, tenant: &str, field: &str, stored: &str) -> Result<String> {
        let cipher = B64.decode(stored).map_err(|_| refused())?;
        let plain = match decrypt_any(&self.current(), &cipher) {
            Some((_, plain)) => plain,
            // Sealed under a key this process has not read yet (a rotation started).
            None if self.reload_if_changed() => decrypt_any(&self.current(), &cipher)
                .map(|(_, p)| p)
                .ok_or_else(refused)?,
            None => return Err(refused()),
        };
        unbind(&plain, tenant, field)
    }

    /// Which identity (index, 0 = newest) opens a stored value; `None` when none does.
    pub fn sealed_under(&self, stored: &str) -> Option<usize> {
        let cipher = B64.decode(stored).ok()?;
        decrypt_any(&self.current(), &cipher).map(|(i, _)| i)
    }

    /// Re-encrypt a stored value under the newest identity, keeping its binding. A value
    /// already under the newest identity is left alone; one bound to another tenant or
    /// field, or that no identity opens, is refused.
    pub fn reseal(&self, tenant: &str, field: &str, stored: &str) -> Result<Resealed> {
        let ids = self.current();
        let cipher = B64.decode(stored).map_err(|_| refused())?;
        let (index, plain) = decrypt_any(&ids, &cipher).ok_or_else(refused)?;
        let value = unbind(&plain, tenant, field)?;
        if index == 0 {
            return Ok(Resealed::Current);
        }
        Ok(Resealed::New(seal_with(&ids[0], tenant, field, &value)?))
    }

    /// A key that encrypts with `new` and still decrypts values sealed under `self`.
    pub fn rotated_to(&self, new: MasterKey) -> MasterKey {
        let mut identities = new.current().as_ref().clone();
        identities.extend(self.current().iter().cloned());
        Self::from_identities(identities)
    }

    /// Only the newest identity (after a rotation re-encrypted everything).
    pub fn newest_only(&self) -> MasterKey {
        Self::from_identities(vec![self.current()[0].clone()])
    }
}

fn refused() -> Error {
    Error::new(
        ErrorCode::Internal,
        "stored secret cannot be decrypted for this tenant",
    )
}

fn parse_identities(text: &str) -> Result<Vec<age::x25519::Identity>> {
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
    Ok(identities)
}

fn read_identities(path: &Path) -> Result<Vec<age::x25519::Identity>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorCode::InvalidConfig,
            format!("cannot read master key file {}: {e}", path.display()),
        )
    })?;
    parse_identities(&text).map_err(|e| {
        let what = e.message.trim_start_matches("master key file ").to_string();
        key_file_error(path, what)
    })
}

fn seal_with(id: &age::x25519::Identity, tenant: &str, field: &str, value: &str) -> Result<String> {
    let plain = serde_json::to_vec(&Sealed {
        tenant,
        field,
        value,
    })
    .map_err(|e| Error::internal(e.to_string()))?;
    let cipher = age::encrypt(&id.to_public(), &plain)
        .map_err(|e| Error::internal(format!("encrypt: {e}")))?;
    Ok(B64.encode(cipher))
}

fn decrypt_any(ids: &[age::x25519::Identity], cipher: &[u8]) -> Option<(usize, Vec<u8>)> {
    ids.iter()
        .enumerate()
        .find_map(|(i, id)| age::decrypt(id, cipher).ok().map(|p| (i, p)))
}

/// The value inside a decrypted plaintext, if it is bound to `tenant` and `field`.
fn unbind(plain: &[u8], tenant: &str, field: &str) -> Result<String> {
    let sealed: Sealed<'_> = serde_json::from_slice(plain).map_err(|_| refused())?;
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

    #[test]
    fn reseal_moves_old_values_to_the_newest_key_and_skips_current_ones() {
        let old = MasterKey::generate();
        let sealed = old.seal("tn_a", "f", "v").expect("seal");
        let both = old.rotated_to(MasterKey::generate());
        assert_eq!(both.sealed_under(&sealed), Some(1));
        let Resealed::New(again) = both.reseal("tn_a", "f", &sealed).expect("reseal") else {
            panic!("an old value is re-encrypted");
        };
        assert_eq!(both.sealed_under(&again), Some(0));
        assert_eq!(
            both.newest_only().open("tn_a", "f", &again).expect("open"),
            "v"
        );
        assert_eq!(
            both.reseal("tn_a", "f", &again).expect("reseal"),
            Resealed::Current
        );
        assert!(both.reseal("tn_b", "f", &sealed).is_err(), "binding kept");
        assert_eq!(MasterKey::generate().sealed_under(&sealed), None);
    }

    #[test]
    fn a_loaded_key_follows_its_file_through_a_rotation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("master.key");
        let old = MasterKey::load_or_create(&path).expect("create");
        let before = old.seal("tn_a", "f", "v").expect("seal");
        // Another process (`secrets rotate`) writes [new, old] and re-encrypts.
        let both = MasterKey::load(&path)
            .expect("load")
            .rotated_to(MasterKey::generate());
        both.write_file(&path).expect("write");
        let after = both.seal("tn_a", "f", "v").expect("seal");
        // The running key has never seen the new identity: it re-reads the file.
        assert_eq!(old.open("tn_a", "f", &after).expect("open new"), "v");
        assert_eq!(old.fingerprints(), both.fingerprints());
        assert_eq!(old.sealed_under(&after), Some(0));
        // `secrets retire-old`: the old identity leaves the file, then the process.
        both.newest_only().write_file(&path).expect("write");
        assert!(old.reload_if_changed());
        assert_eq!(old.len(), 1);
        assert!(old.open("tn_a", "f", &before).is_err(), "old key is gone");
        assert_eq!(old.open("tn_a", "f", &after).expect("open"), "v");
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_written_private_and_loose_ones_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("master.key");
        MasterKey::generate().write_file(&path).expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        MasterKey::load_private(&path).expect("0600 is fine");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = MasterKey::load_private(&path).expect_err("0644 is refused");
        assert_eq!(err.code, ErrorCode::InvalidConfig);
        assert!(!err.message.contains("AGE-SECRET"));
        assert!(MasterKey::load_private(&dir.path().join("missing.key")).is_err());
        // Nothing but the file itself is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }
}
