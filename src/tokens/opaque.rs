//! Opaque bearer secrets: 256 random bits shown once, stored and compared only as SHA-256.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;

use crate::crypto::random_bytes;

/// A freshly minted secret in plain text: it exists only to be handed out once.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainToken(String);

impl PlainToken {
    /// Mints `prefix` + base64url(32 random bytes); the prefix lets secret scanners spot leaks.
    #[must_use]
    pub fn generate(prefix: &str) -> Self {
        Self(format!(
            "{prefix}{}",
            URL_SAFE_NO_PAD.encode(random_bytes::<32>())
        ))
    }

    /// Wraps a secret made elsewhere (a derived successor).
    #[must_use]
    pub fn from_secret(secret: String) -> Self {
        Self(secret)
    }

    /// The secret, for the one response or cookie that carries it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash under which this secret is stored.
    #[must_use]
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainToken(<redacted>)")
    }
}

/// SHA-256 of a secret: what the database holds and what look-ups use.
///
/// A fast hash is right here: the input has 256 bits of entropy, so there is nothing to brute force.
#[derive(Clone, Copy)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes a presented (unverified) secret.
    #[must_use]
    pub fn of(secret: &str) -> Self {
        let d = digest::digest(&digest::SHA256, secret.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// The raw 32 bytes, for the database.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        crate::crypto::constant_time_eq(self.0, other.0)
    }
}

impl Eq for TokenHash {}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_prefixed_unique_and_hash_consistently() {
        let a = PlainToken::generate("kwdv_");
        let b = PlainToken::generate("kwdv_");
        assert!(a.expose().starts_with("kwdv_"));
        assert_eq!(a.expose().len(), 5 + 43);
        assert_ne!(a, b);
        assert_eq!(a.hash(), TokenHash::of(a.expose()));
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let t = PlainToken::generate("x_");
        assert!(!format!("{t:?}").contains(&t.expose()[2..]));
        assert_eq!(format!("{:?}", t.hash()), "TokenHash(..)");
    }
}
