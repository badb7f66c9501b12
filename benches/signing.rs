//! Signing throughput: Keyward's signer (header + claims JSON, base64url, RS256) against raw
//! OpenSSL RSA-SHA256 over the same bytes, measured in one run so the ratio survives a noisy box.
//!
//! `make bench` (or `cargo bench --bench signing`). Single-threaded; each measurement runs for a
//! fixed time slice, interleaved over several rounds, and the best round of each is reported.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use keyward::keys::kek::Kek;
use keyward::keys::keyring::KeyRing;
use keyward::keys::material;
use keyward::keys::store::SigningKeyRow;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::{Signer, Verifier};
use serde_json::json;
use time::{Duration as TimeDuration, OffsetDateTime};

const SLICE: Duration = Duration::from_millis(1500);
const ROUNDS: usize = 3;

fn rate(mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < SLICE {
        op();
        n += 1;
    }
    #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
    let per_sec = n as f64 / start.elapsed().as_secs_f64();
    per_sec
}

fn main() {
    let bits: u32 = std::env::var("BENCH_KEY_BITS")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(2048);
    let now = OffsetDateTime::now_utc();
    let key = material::generate(bits).expect("generate key");
    let kek = Kek::from_bytes(&[42; 32]);
    let sealed = kek.seal(&key.kid, &key.pkcs8_der);
    let row = SigningKeyRow {
        kid: key.kid.clone(),
        algorithm: "RS256".into(),
        bits: i32::try_from(bits).expect("small"),
        origin: "generated".into(),
        public_n: key.n.clone(),
        public_e: key.e.clone(),
        sealed_private_key: sealed.ciphertext,
        seal_nonce: sealed.nonce.to_vec(),
        kek_id: kek.id().to_owned(),
        created_at: now,
        published_at: now - TimeDuration::hours(1),
        activates_at: now - TimeDuration::hours(1),
        retires_at: now + TimeDuration::days(30),
        expires_at: now + TimeDuration::days(31),
        revoked_at: None,
        revoked_reason: None,
    };
    let ring = KeyRing::load(1, &[row], &kek, now).expect("load key ring");

    // A realistic RFC 9068 access token payload.
    let claims = json!({
        "iss": "https://id.example.com",
        "sub": "0b9f5b2e-4d0e-4c55-9a53-8f1c3f1d2a77",
        "aud": "https://api.example.com",
        "client_id": "billing-service",
        "scope": "openid profile email invoices:read",
        "iat": now.unix_timestamp(),
        "exp": now.unix_timestamp() + 600,
        "jti": "4c3b8a3f-6f4e-4a0e-8f4e-7f1c2d3b4a5e",
        "auth_time": now.unix_timestamp() - 30,
    });
    let token = ring.sign("at+jwt", &claims, now).expect("sign");
    let signing_input = token.rsplit_once('.').expect("three parts").0.to_owned();

    let pkey = PKey::private_key_from_der(&key.pkcs8_der).expect("openssl key");
    let raw_sign = || {
        let mut s = Signer::new(MessageDigest::sha256(), &pkey).expect("signer");
        s.update(signing_input.as_bytes()).expect("update");
        black_box(s.sign_to_vec().expect("sign"));
    };
    let signature = {
        let mut s = Signer::new(MessageDigest::sha256(), &pkey).expect("signer");
        s.update(signing_input.as_bytes()).expect("update");
        s.sign_to_vec().expect("sign")
    };
    let raw_verify = || {
        let mut v = Verifier::new(MessageDigest::sha256(), &pkey).expect("verifier");
        v.update(signing_input.as_bytes()).expect("update");
        black_box(v.verify(&signature).expect("verify"));
    };

    let (mut best_raw, mut best_ours, mut best_raw_v, mut best_ours_v) = (0f64, 0f64, 0f64, 0f64);
    for _ in 0..ROUNDS {
        best_raw = best_raw.max(rate(raw_sign));
        best_ours = best_ours.max(rate(|| {
            black_box(ring.sign("at+jwt", black_box(&claims), now).expect("sign"));
        }));
        best_raw_v = best_raw_v.max(rate(raw_verify));
        best_ours_v = best_ours_v.max(rate(|| {
            black_box(
                ring.verify::<serde_json::Value>(
                    black_box(&token),
                    "at+jwt",
                    "https://id.example.com",
                    now,
                )
                .expect("verify"),
            );
        }));
    }
    println!(
        "RS256, RSA-{bits}, one thread, best of {ROUNDS} x {:.1}s",
        SLICE.as_secs_f64()
    );
    println!("  raw OpenSSL sign (RSA-SHA256 of the signing input) {best_raw:>9.0} /s");
    println!(
        "  keyward signer (JSON + base64url + RS256)          {best_ours:>9.0} /s   {:.2} of raw",
        best_ours / best_raw
    );
    println!("  raw OpenSSL verify                                 {best_raw_v:>9.0} /s");
    println!(
        "  keyward verifier (parse + RS256 + claim checks)    {best_ours_v:>9.0} /s   {:.2} of raw",
        best_ours_v / best_raw_v
    );
}
