//! The two cryptographic primitives everything else builds on, CSPRNG bytes and the one
//! constant-time comparison, as a leaf that imports nothing of ours.

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
    fn random_bytes_differ_between_calls() {
        assert_ne!(random_bytes::<16>(), random_bytes::<16>());
    }
}
