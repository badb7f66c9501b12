//! The key-encryption key: seals signing keys at rest with AES-256-GCM (ring).

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest;

use crate::crypto::random_bytes;

/// Where the key-encryption key comes from.
#[derive(Clone)]
pub enum KekSource {
    /// Given inline (`KEYWARD_KEK`), already decoded.
    Inline([u8; 32]),
    /// Read from (or, on first start, created in) this file.
    File(std::path::PathBuf),
}

impl fmt::Debug for KekSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// Decodes a base64 (standard or URL-safe, padding optional) 32-byte key.
pub fn decode_kek(raw: &str) -> Result<[u8; 32], String> {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    let trimmed = raw.trim().trim_end_matches('=');
    let bytes = STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .map_err(|_| "is not base64".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("must decode to 32 bytes, got {}", bytes.len()))
}

/// Why the KEK could not be had or used. Never carries key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// The KEK file could not be read or created.
    #[error("KEYWARD_KEK_FILE: {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Decryption failed: wrong KEK, or the sealed bytes were tampered with.
    #[error("a signing key could not be decrypted (wrong KEK or tampered data)")]
    Open,
}

/// A loaded KEK and its public fingerprint.
pub struct Kek {
    key: LessSafeKey,
    id: String,
    refresh_secret: [u8; 32],
    csrf_secret: [u8; 32],
    pending_secret: [u8; 32],
    proof_secret: [u8; 32],
    mail_secret: [u8; 32],
    code_secret: [u8; 32],
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A private key sealed under a KEK.
#[derive(Clone)]
pub struct Sealed {
    /// The AES-GCM nonce, fresh for every seal.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl Kek {
    /// A KEK from its 32 bytes.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        // A domain-separated hash: the fingerprint says which KEK, and nothing about its bytes.
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"keyward kek fingerprint v1\0");
        ctx.update(bytes);
        let id = URL_SAFE_NO_PAD.encode(&ctx.finish().as_ref()[..9]);
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_or_else(
            |_| unreachable!("AES-256 takes any 32-byte key"),
            LessSafeKey::new,
        );
        Self {
            key,
            id,
            // Separate keys for separate jobs, so the KEK itself only seals: refresh-token
            // successors, the CSRF tokens of visitors without a session (signed double-submit),
            // their pending sign-ins (a sealed cookie), the sign-in page's proofs of work, and
            // the mails waiting in the outbox (they may carry codes), and those codes' hashes.
            refresh_secret: derive(bytes, b"keyward refresh successor v1"),
            csrf_secret: derive(bytes, b"keyward anonymous csrf v1"),
            pending_secret: derive(bytes, b"keyward pending sign-in v1"),
            proof_secret: derive(bytes, b"keyward sign-in proof v1"),
            mail_secret: derive(bytes, b"keyward mail outbox v1"),
            code_secret: derive(bytes, b"keyward account codes v1"),
        }
    }

    /// The key the pending sign-ins of visitors without a session are sealed with.
    #[must_use]
    pub fn pending_secret(&self) -> &[u8; 32] {
        &self.pending_secret
    }

    /// The key the sign-in page's proofs of work are signed with.
    #[must_use]
    pub fn proof_secret(&self) -> &[u8; 32] {
        &self.proof_secret
    }

    /// The key mailed codes are hashed with.
    #[must_use]
    pub fn code_secret(&self) -> &[u8; 32] {
        &self.code_secret
    }

    /// The key mails waiting in the outbox are sealed with.
    #[must_use]
    pub fn mail_secret(&self) -> &[u8; 32] {
        &self.mail_secret
    }

    /// The key refresh-token successors are derived with (for the reuse grace window).
    #[must_use]
    pub fn refresh_secret(&self) -> &[u8; 32] {
        &self.refresh_secret
    }

    /// The key the CSRF tokens of visitors without a session are signed with.
    #[must_use]
    pub fn csrf_secret(&self) -> &[u8; 32] {
        &self.csrf_secret
    }

    /// Loads the KEK from its source. A missing file is an error naming its absolute path:
    /// a command run from another directory must not find (or make) a different KEK.
    pub fn load(source: &KekSource) -> Result<Self, KekError> {
        match source {
            KekSource::Inline(bytes) => Ok(Self::from_bytes(bytes)),
            KekSource::File(path) => {
                if !path.exists() {
                    return Err(file_error(
                        path,
                        "does not exist (set KEYWARD_KEK_FILE, or run from the directory `serve` \
                         created it in)",
                    ));
                }
                read_kek_file(path).map(|b| Self::from_bytes(&b))
            }
        }
    }

    /// [`Kek::load`], creating a missing file with a new random key (mode 0600): only for a
    /// server starting on an empty key store, where no key was sealed under another KEK.
    pub fn load_or_create(source: &KekSource) -> Result<Self, KekError> {
        if let KekSource::File(path) = source
            && !path.exists()
        {
            create_kek_file(path)?;
            tracing::info!(path = %absolute(path), "created a new key-encryption key");
        }
        Self::load(source)
    }

    /// The short fingerprint stored beside every key this KEK sealed.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext`, binding it to `kid` so a sealed key cannot be moved to another row.
    #[must_use]
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Sealed {
        let nonce = random_bytes::<NONCE_LEN>();
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .unwrap_or_else(|_| unreachable!("sealing fails only for inputs over 64 GiB"));
        Sealed {
            nonce,
            ciphertext: buf,
        }
    }

    /// Opens what [`Kek::seal`] sealed for `kid`.
    pub fn open(&self, kid: &str, nonce: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, KekError> {
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KekError::Open)?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| KekError::Open)?;
        Ok(plain.to_vec())
    }
}

/// A key for one job, derived from the KEK's bytes and the job's label (HMAC-SHA256 as a PRF).
fn derive(kek: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, kek), label);
    let mut key = [0u8; 32];
    key.copy_from_slice(tag.as_ref());
    key
}

/// The path as the operator must look for it: relative paths are the working directory's.
fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

fn file_error(path: &Path, message: impl fmt::Display) -> KekError {
    KekError::File {
        path: absolute(path),
        message: message.to_string(),
    }
}

/// Writes a new random KEK to `path` (base64, one line), readable by the owner only.
pub fn create_kek_file(path: &Path) -> Result<(), KekError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| file_error(path, e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    // create_new: never overwrite a KEK; losing one makes every stored key unreadable.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| file_error(path, e))?;
    let line = format!("{}\n", STANDARD.encode(random_bytes::<32>()));
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| file_error(path, e))
}

fn read_kek_file(path: &Path) -> Result<[u8; 32], KekError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the KEK file is readable by group or others; chmod 600 it");
        }
    }
    decode_kek(&text).map_err(|m| file_error(path, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kek_decodes_from_either_base64_alphabet() {
        let key = [0xfb_u8; 32];
        let std = STANDARD.encode(key);
        let url = URL_SAFE_NO_PAD.encode(key);
        assert_eq!(decode_kek(&std), Ok(key));
        assert_eq!(decode_kek(&format!("{url}\n")), Ok(key));
        assert!(decode_kek("not base64!").is_err());
    }

    #[test]
    fn sealed_keys_open_only_with_the_same_kek_and_kid() {
        let kek = Kek::from_bytes(&[7; 32]);
        let sealed = kek.seal("kid-a", b"private key bytes");
        assert_eq!(
            kek.open("kid-a", &sealed.nonce, &sealed.ciphertext)
                .expect("opens"),
            b"private key bytes"
        );
        assert!(
            kek.open("kid-b", &sealed.nonce, &sealed.ciphertext)
                .is_err(),
            "kid is bound"
        );
        let other = Kek::from_bytes(&[8; 32]);
        assert!(
            other
                .open("kid-a", &sealed.nonce, &sealed.ciphertext)
                .is_err()
        );
        let mut tampered = sealed.ciphertext.clone();
        tampered[0] ^= 1;
        assert!(kek.open("kid-a", &sealed.nonce, &tampered).is_err());
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let kek = Kek::from_bytes(&[7; 32]);
        assert_ne!(kek.seal("k", b"x").nonce, kek.seal("k", b"x").nonce);
    }

    #[test]
    fn fingerprints_differ_per_kek_and_reveal_nothing_printable() {
        let a = Kek::from_bytes(&[1; 32]);
        let b = Kek::from_bytes(&[2; 32]);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id().len(), 12);
        assert!(!format!("{a:?}").contains("AQEB"));
    }

    #[test]
    fn a_kek_file_is_created_once_with_owner_only_permissions() {
        let dir = std::env::temp_dir().join(format!("kek-test-{}", uuid::Uuid::new_v4()));
        let path = dir.join("kek");
        assert!(
            Kek::load(&KekSource::File(path.clone())).is_err(),
            "never created by load"
        );
        let first = Kek::load_or_create(&KekSource::File(path.clone())).expect("created");
        let again = Kek::load(&KekSource::File(path.clone())).expect("read back");
        assert_eq!(first.id(), again.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(create_kek_file(&path).is_err(), "never overwrites");
        let _ = std::fs::remove_dir_all(dir);
    }
}
