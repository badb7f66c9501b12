//! PKCE (RFC 7636) with S256 only: OAuth 2.1 refuses `plain` and requests without a challenge.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A `code_challenge`: base64url(SHA-256(verifier)), 43 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeChallenge(String);

/// Why a challenge or verifier was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    /// No `code_challenge`.
    #[error("code_challenge is required (PKCE with S256)")]
    MissingChallenge,
    /// `code_challenge_method` is `plain`, absent (which means plain), or unknown.
    #[error("code_challenge_method must be S256")]
    MethodNotS256,
    /// The challenge is not 43 base64url characters.
    #[error("code_challenge is not a base64url SHA-256 value")]
    MalformedChallenge,
    /// The verifier is not 43-128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
    #[error("code_verifier is malformed")]
    MalformedVerifier,
    /// The verifier does not hash to the challenge.
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

impl CodeChallenge {
    /// Parses `code_challenge` + `code_challenge_method` from an authorization request.
    pub fn parse(challenge: Option<&str>, method: Option<&str>) -> Result<Self, PkceError> {
        let challenge = challenge.ok_or(PkceError::MissingChallenge)?;
        // RFC 7636 §4.3: an absent method means "plain", which we do not accept.
        if method != Some("S256") {
            return Err(PkceError::MethodNotS256);
        }
        Self::from_stored(challenge)
    }

    /// A challenge read back from storage (or checked for shape).
    pub fn from_stored(challenge: &str) -> Result<Self, PkceError> {
        let ok = challenge.len() == 43
            && challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(challenge.to_owned()))
        } else {
            Err(PkceError::MalformedChallenge)
        }
    }

    /// The challenge string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks a `code_verifier` against this challenge, in constant time.
    pub fn verify(&self, verifier: &str) -> Result<(), PkceError> {
        let ok_chars = verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !(43..=128).contains(&verifier.len()) || !ok_chars {
            return Err(PkceError::MalformedVerifier);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        let computed = URL_SAFE_NO_PAD.encode(digest.as_ref());
        if crate::crypto::constant_time_eq(&computed, &self.0) {
            Ok(())
        } else {
            Err(PkceError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn the_rfc_7636_example_verifies() {
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).expect("valid");
        assert_eq!(c.verify(VERIFIER), Ok(()));
    }

    #[test]
    fn a_wrong_verifier_is_refused() {
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).expect("valid");
        let wrong = format!("{}x", &VERIFIER[..VERIFIER.len() - 1]);
        assert_eq!(c.verify(&wrong), Err(PkceError::Mismatch));
    }

    #[test]
    fn plain_missing_and_malformed_are_refused() {
        assert_eq!(
            CodeChallenge::parse(None, Some("S256")),
            Err(PkceError::MissingChallenge)
        );
        assert_eq!(
            CodeChallenge::parse(Some(CHALLENGE), None),
            Err(PkceError::MethodNotS256)
        );
        assert_eq!(
            CodeChallenge::parse(Some(CHALLENGE), Some("plain")),
            Err(PkceError::MethodNotS256)
        );
        assert_eq!(
            CodeChallenge::parse(Some("short"), Some("S256")),
            Err(PkceError::MalformedChallenge)
        );
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).expect("valid");
        assert_eq!(c.verify("too-short"), Err(PkceError::MalformedVerifier));
        assert_eq!(
            c.verify(&"a".repeat(129)),
            Err(PkceError::MalformedVerifier)
        );
        assert_eq!(
            c.verify(&format!("{}!", &"a".repeat(43))),
            Err(PkceError::MalformedVerifier)
        );
    }
}
