//! RSA key material: generation, PEM import, and the RFC 7638 thumbprint that names a key.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwk::KeyPair as _;
use josekit::jwk::alg::rsa::RsaKeyPair;

/// The smallest RSA modulus we sign with or import.
pub const MIN_RSA_BITS: u32 = 2048;

/// A private key with what we publish about it. `Debug` shows no private bytes.
pub struct KeyMaterial {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// Modulus size in bits.
    pub bits: u32,
    /// Public modulus, base64url.
    pub n: String,
    /// Public exponent, base64url.
    pub e: String,
    /// PKCS#8 DER of the private key.
    pub pkcs8_der: Vec<u8>,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

/// Why key material could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// Not an RSA private key in PEM (PKCS#8 or PKCS#1).
    #[error("not an RSA private key in PEM form")]
    NotRsaPem,
    /// The modulus is too small to sign with.
    #[error("RSA keys must have at least {MIN_RSA_BITS} bits, this one has {0}")]
    TooSmall(u32),
    /// Key generation or encoding failed.
    #[error("RSA key operation failed: {0}")]
    Crypto(String),
}

/// The RFC 7638 §3 thumbprint of an RSA public key: SHA-256 over `{"e":..,"kty":"RSA","n":..}`
/// with members in lexicographic order and no white space, base64url-encoded.
#[must_use]
pub fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn from_pair(pair: &RsaKeyPair) -> Result<KeyMaterial, MaterialError> {
    let jwk = pair.to_jwk_public_key();
    let component = |name: &str| {
        jwk.parameter(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| MaterialError::Crypto(format!("public key has no '{name}'")))
    };
    let (n, e) = (component("n")?, component("e")?);
    let bits = pair.key_len() * 8;
    if bits < MIN_RSA_BITS {
        return Err(MaterialError::TooSmall(bits));
    }
    Ok(KeyMaterial {
        kid: thumbprint(&n, &e),
        bits,
        n,
        e,
        pkcs8_der: pair.to_der_private_key(),
    })
}

/// Generates a new RSA key (OpenSSL, seeded from the OS CSPRNG).
pub fn generate(bits: u32) -> Result<KeyMaterial, MaterialError> {
    if bits < MIN_RSA_BITS {
        return Err(MaterialError::TooSmall(bits));
    }
    let pair = RsaKeyPair::generate(bits).map_err(|e| MaterialError::Crypto(e.to_string()))?;
    from_pair(&pair)
}

/// Reads an RSA private key from PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
pub fn from_pem(pem: &[u8]) -> Result<KeyMaterial, MaterialError> {
    let pair = RsaKeyPair::from_pem(pem).map_err(|_| MaterialError::NotRsaPem)?;
    from_pair(&pair)
}

/// Reads the PKCS#8 DER we stored.
pub fn from_der(der: &[u8]) -> Result<KeyMaterial, MaterialError> {
    let pair = RsaKeyPair::from_der(der).map_err(|e| MaterialError::Crypto(e.to_string()))?;
    from_pair(&pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_the_rfc_7638_example() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn generated_keys_are_named_by_their_thumbprint_and_round_trip() {
        let key = generate(2048).expect("generate");
        assert_eq!(key.bits, 2048);
        assert_eq!(key.kid, thumbprint(&key.n, &key.e));
        let back = from_der(&key.pkcs8_der).expect("read back");
        assert_eq!(back.kid, key.kid);
        assert!(!format!("{key:?}").contains(&key.n[..20]));
    }

    #[test]
    fn small_or_non_rsa_keys_are_refused() {
        assert!(matches!(generate(1024), Err(MaterialError::TooSmall(1024))));
        assert!(matches!(
            from_pem(b"not a key"),
            Err(MaterialError::NotRsaPem)
        ));
    }
}
