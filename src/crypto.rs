//! The cryptographic primitives everything else builds on, CSPRNG bytes, the one constant-time
//! comparison and authenticated sealing, as a leaf that imports nothing of ours.

use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// Fills `N` bytes from the operating system's CSPRNG.
///
/// # Panics
/// If the OS random source fails, which leaves nothing safe to do but stop.
#[must_use]
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random number generator failed");
    out
}

/// Compares two secrets (or their hashes) in constant time: the one comparison every module
/// uses, so that no secret is ever compared with `==`.
#[must_use]
pub fn constant_time_eq(a: impl AsRef<[u8]>, b: impl AsRef<[u8]>) -> bool {
    a.as_ref().ct_eq(b.as_ref()).into()
}

/// A strong entity tag (RFC 9110 §8.8.3) of what a reader sees of a row: a quoted, truncated
/// SHA-256 of `seen`, so any change of it changes the tag and `If-Match` catches a lost update.
#[must_use]
pub fn entity_tag(seen: &[u8]) -> String {
    use base64::Engine as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, seen);
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
    format!("\"{tag}\"")
}

/// Whether an `If-Match` header (RFC 9110 §13.1.1: strong comparison, `*` for any current
/// representation) lets a change of the resource tagged `tag` through; no header does.
#[must_use]
pub fn if_match_allows(header: Option<&str>, tag: &str) -> bool {
    header.is_none_or(|h| h.split(',').map(str::trim).any(|t| t == "*" || t == tag))
}

/// AES-256-GCM under one key, with a fresh random nonce per message and a label bound in as
/// associated data: what is sealed for one purpose (or one row) does not open as another.
/// Random 96-bit nonces are safe for far more messages than a key here ever seals (NIST SP
/// 800-38D §8.3: 2^32).
#[derive(Clone)]
pub struct Sealer {
    key: Arc<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// A sealer under `secret`.
    #[must_use]
    pub fn new(secret: &[u8; 32]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, secret).map_or_else(
            |_| unreachable!("AES-256 takes any 32-byte key"),
            LessSafeKey::new,
        );
        Self { key: Arc::new(key) }
    }

    /// `plaintext` sealed for `label`: the nonce, then the ciphertext and its tag.
    #[must_use]
    pub fn seal(&self, label: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = random_bytes::<NONCE_LEN>();
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(label),
                &mut sealed,
            )
            .unwrap_or_else(|_| unreachable!("sealing fails only for inputs over 64 GiB"));
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// What [`Sealer::seal`] sealed for `label`; `None` if it was sealed under another key or
    /// label, or altered.
    #[must_use]
    pub fn open(&self, label: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(label), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_plain_equality() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }

    #[test]
    fn sealed_bytes_open_only_with_the_same_key_and_label_and_unaltered() {
        let key = Sealer::new(&[1; 32]);
        let sealed = key.seal(b"row 1", b"hello");
        assert_eq!(key.open(b"row 1", &sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(key.open(b"row 2", &sealed), None);
        assert_eq!(Sealer::new(&[2; 32]).open(b"row 1", &sealed), None);
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(key.open(b"row 1", &altered), None);
        assert_eq!(key.open(b"row 1", &sealed[..12]), None);
        assert_ne!(
            key.seal(b"row 1", b"hello"),
            sealed,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn random_bytes_differ_between_calls() {
        assert_ne!(random_bytes::<16>(), random_bytes::<16>());
    }
}
