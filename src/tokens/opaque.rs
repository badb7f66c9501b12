//! Opaque bearer secrets: 256 random bits shown once, stored and compared only as SHA-256.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Bytea;

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

/// SHA-256 of a secret: what the database holds and what look-ups use, as a `bytea` column type
/// of its own (crates.io's `HashedToken`), so no row or query carries a bare `Vec<u8>`.
///
/// A fast hash is right here: the input has 256 bits of entropy, so there is nothing to brute force.
#[derive(Clone, Copy, AsExpression, FromSqlRow)]
#[diesel(sql_type = Bytea)]
pub struct TokenHash([u8; 32]);

impl ToSql<Bytea, Pg> for TokenHash {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <[u8] as ToSql<Bytea, Pg>>::to_sql(&self.0[..], out)
    }
}

impl FromSql<Bytea, Pg> for TokenHash {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let raw = <Vec<u8> as FromSql<Bytea, Pg>>::from_sql(bytes)?;
        let hash: [u8; 32] = raw
            .try_into()
            .map_err(|_| "a stored token hash is not 32 bytes")?;
        Ok(Self(hash))
    }
}

impl TokenHash {
    /// Hashes a presented (unverified) secret.
    #[must_use]
    pub fn of(secret: &str) -> Self {
        let d = digest::digest(&digest::SHA256, secret.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// The first 8 bytes in hex: a public name for what is stored under this hash (it neither
    /// is nor reveals the secret), e.g. a session on the account page.
    #[must_use]
    pub fn short_hex(&self) -> String {
        self.0[..8].iter().fold(String::new(), |mut acc, b| {
            use fmt::Write as _;
            let _ = write!(acc, "{b:02x}");
            acc
        })
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
