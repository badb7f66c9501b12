//! An independent RFC 6238 implementation (OpenSSL's HMAC-SHA1, a base32 decoder written here)
//! computing what an authenticator app would show: the tests never ask the code under test.

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// RFC 4648 base32 without padding (spaces ignored), as authenticator apps read the secret.
pub fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u32, vec![]);
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        let digit = ALPHABET
            .iter()
            .position(|a| char::from(*a) == c.to_ascii_uppercase())
            .expect("a base32 character");
        value = (value << 5) | u32::try_from(digit).unwrap();
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((value >> bits) & 0xff).unwrap());
        }
    }
    out
}

/// The six-digit code of `secret` (base32) at Unix time `unix` (30-second steps, SHA-1).
pub fn code_at(secret: &str, unix: i64) -> String {
    let key = PKey::hmac(&base32_decode(secret)).unwrap();
    let mut signer = Signer::new(MessageDigest::sha1(), &key).unwrap();
    signer
        .update(&u64::try_from(unix / 30).unwrap().to_be_bytes())
        .unwrap();
    let mac = signer.sign_to_vec().unwrap();
    let offset = usize::from(mac[19] & 0xf);
    let bin = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    format!("{:06}", bin % 1_000_000)
}

#[test]
fn the_independent_implementation_matches_rfc_6238_appendix_b() {
    // "12345678901234567890" in base32; the RFC's 8-digit values end in these six.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(code_at(secret, 59), "287082");
    assert_eq!(code_at(secret, 1_111_111_109), "081804");
    assert_eq!(code_at(secret, 2_000_000_000), "279037");
}
