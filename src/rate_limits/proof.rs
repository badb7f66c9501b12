//! Proofs of work that let a browser past a reached sign-in limit: the page computes one in a few
//! hundred milliseconds, a sprayer must compute one per guess.
//!
//! A challenge is `BITS.EXPIRES.NONCE.MAC`: the difficulty, a Unix expiry, 16 random bytes, and an
//! HMAC-SHA256 over the first three under a KEK-derived key, so the server keeps nothing until a
//! proof is spent. A solution is a decimal counter such that `SHA-256(challenge ":" counter)`
//! starts with `BITS` zero bits. Each challenge is spent once (a row until it expires), so one
//! solved puzzle buys exactly one guess. Hashcash with a server-signed stamp, as Kanidm and
//! Anubis do in the browser: no crate fits a server-issued, single-use stamp in PostgreSQL.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::sql_types::{Bytea, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use ring::{digest, hmac};
use time::{Duration, OffsetDateTime};

/// How long a challenge may be solved and spent: time to type a password, and more.
pub const CHALLENGE_TTL: Duration = Duration::minutes(15);

/// The fewest and most zero bits a challenge may ask for (`KEYWARD_SIGN_IN_PROOF_BITS`): below 8
/// it costs nothing, above 24 a browser needs minutes.
pub const BITS_RANGE: std::ops::RangeInclusive<u8> = 8..=24;

/// The longest solution accepted: a u64 in decimal.
const MAX_SOLUTION_LEN: usize = 20;

/// Issues and checks proofs of work of one difficulty under one key.
#[derive(Clone)]
pub struct ProofOfWork {
    key: hmac::Key,
    bits: u8,
}

impl std::fmt::Debug for ProofOfWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofOfWork")
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

/// A challenge for the page to solve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge(String);

impl Challenge {
    /// The text the page is given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a browser sent back: the challenge it was given and its counter.
#[derive(Clone, Copy, Debug)]
pub struct Solution<'a> {
    /// The challenge, as issued.
    pub challenge: &'a str,
    /// The counter the browser found.
    pub counter: &'a str,
}

/// Why a solution buys nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Not in the challenge's shape, or not signed by us (or under another KEK).
    #[error("not a challenge we issued")]
    Forged,
    /// Past its expiry.
    #[error("the challenge expired")]
    Expired,
    /// Asks for fewer bits than required now (issued before the setting was raised).
    #[error("the challenge is easier than required")]
    TooEasy,
    /// The counter does not solve it.
    #[error("the counter does not solve the challenge")]
    Unsolved,
    /// Already spent on a sign-in.
    #[error("the challenge was already used")]
    Spent,
}

impl ProofOfWork {
    /// Proofs of `bits` zero bits, signed with `secret`.
    #[must_use]
    pub fn new(secret: &[u8; 32], bits: u8) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            bits,
        }
    }

    /// A fresh challenge, valid for [`CHALLENGE_TTL`].
    #[must_use]
    pub fn challenge(&self, now: OffsetDateTime) -> Challenge {
        let nonce = URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<16>());
        let expires = (now + CHALLENGE_TTL).unix_timestamp();
        let signed = format!("{}.{expires}.{nonce}", self.bits);
        let mac = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, signed.as_bytes()));
        Challenge(format!("{signed}.{mac}"))
    }

    /// Checks `solution` and spends its challenge: `Ok(())` exactly once per challenge, on any
    /// instance. Everything but the spending is checked first, so nothing is written for junk.
    pub async fn redeem(
        &self,
        conn: &mut AsyncPgConnection,
        solution: Solution<'_>,
        now: OffsetDateTime,
    ) -> diesel::QueryResult<Result<(), ProofError>> {
        let expires = match self.check(solution, now) {
            Ok(expires) => expires,
            Err(e) => return Ok(Err(e)),
        };
        Ok(
            if spend_once(conn, solution.challenge.as_bytes(), expires).await? {
                Ok(())
            } else {
                Err(ProofError::Spent)
            },
        )
    }

    /// Everything but single use; the challenge's expiry when it holds.
    fn check(
        &self,
        solution: Solution<'_>,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, ProofError> {
        let (signed, mac) = solution
            .challenge
            .rsplit_once('.')
            .ok_or(ProofError::Forged)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| ProofError::Forged)?;
        // Constant time, so the MAC cannot be found byte by byte.
        hmac::verify(&self.key, signed.as_bytes(), &mac).map_err(|_| ProofError::Forged)?;
        // Signed by us, so well formed: the parsing below fails only for another version.
        let mut parts = signed.splitn(3, '.');
        let bits: u8 = parse_next(&mut parts)?;
        let expires: i64 = parse_next(&mut parts)?;
        let expires =
            OffsetDateTime::from_unix_timestamp(expires).map_err(|_| ProofError::Forged)?;
        if expires <= now {
            return Err(ProofError::Expired);
        }
        if bits < self.bits {
            return Err(ProofError::TooEasy);
        }
        let counter = solution.counter;
        if counter.is_empty()
            || counter.len() > MAX_SOLUTION_LEN
            || !counter.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ProofError::Unsolved);
        }
        if leading_zero_bits(solution.challenge, counter) < u32::from(bits) {
            return Err(ProofError::Unsolved);
        }
        Ok(expires)
    }
}

fn parse_next<T: std::str::FromStr>(
    parts: &mut std::str::SplitN<'_, char>,
) -> Result<T, ProofError> {
    parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(ProofError::Forged)
}

/// The zero bits `SHA-256(challenge ":" counter)` starts with.
fn leading_zero_bits(challenge: &str, counter: &str) -> u32 {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(challenge.as_bytes());
    ctx.update(b":");
    ctx.update(counter.as_bytes());
    let hash = ctx.finish();
    let mut zeros = 0;
    for byte in hash.as_ref() {
        zeros += byte.leading_zeros();
        if *byte != 0 {
            break;
        }
    }
    zeros
}

/// Records `challenge` (any one-time sign-in challenge: a proof of work, a passkey's) as spent
/// until `expires_at`, when it is dead anyway; `true` exactly once per challenge, on any
/// instance.
pub async fn spend_once(
    conn: &mut AsyncPgConnection,
    challenge: &[u8],
    expires_at: OffsetDateTime,
) -> diesel::QueryResult<bool> {
    let spent = digest::digest(&digest::SHA256, challenge);
    let inserted = diesel::sql_query(
        "INSERT INTO spent_sign_in_proofs (challenge_hash, expires_at) VALUES ($1, $2) \
         ON CONFLICT (challenge_hash) DO NOTHING",
    )
    .bind::<Bytea, _>(spent.as_ref())
    .bind::<Timestamptz, _>(expires_at)
    .execute(conn)
    .await?;
    Ok(inserted == 1)
}

/// Deletes spent challenges past their expiry (they are refused as expired anyway), at most
/// `batch`.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    batch: i64,
) -> diesel::QueryResult<usize> {
    crate::db::delete_batch(conn, "spent_sign_in_proofs", "expires_at <= $1", now, batch).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    fn solve(challenge: &Challenge) -> String {
        (0..u64::MAX)
            .map(|n| n.to_string())
            .find(|n| leading_zero_bits(challenge.as_str(), n) >= 8)
            .expect("one in 256 counters solves 8 bits")
    }

    fn check(
        pow: &ProofOfWork,
        challenge: &str,
        counter: &str,
        now: OffsetDateTime,
    ) -> Result<(), ProofError> {
        pow.check(Solution { challenge, counter }, now).map(|_| ())
    }

    #[test]
    fn a_solved_challenge_holds_until_it_expires() {
        let pow = ProofOfWork::new(&[7; 32], 8);
        let c = pow.challenge(T0);
        let n = solve(&c);
        assert_eq!(check(&pow, c.as_str(), &n, T0), Ok(()));
        let end = T0 + CHALLENGE_TTL;
        assert_eq!(check(&pow, c.as_str(), &n, end - Duration::SECOND), Ok(()));
        assert_eq!(check(&pow, c.as_str(), &n, end), Err(ProofError::Expired));
    }

    #[test]
    fn forged_unsolved_and_too_easy_challenges_are_refused() {
        let pow = ProofOfWork::new(&[7; 32], 8);
        let c = pow.challenge(T0);
        let n = solve(&c);
        // Another key (another KEK) did not sign it.
        let other = ProofOfWork::new(&[8; 32], 8);
        assert_eq!(check(&other, c.as_str(), &n, T0), Err(ProofError::Forged));
        // Any change to the signed part, e.g. fewer bits or a later expiry.
        let (bits, rest) = c.as_str().split_once('.').expect("BITS.");
        assert_eq!(bits, "8");
        let easier = format!("1.{rest}");
        assert_eq!(check(&pow, &easier, "0", T0), Err(ProofError::Forged));
        for junk in [
            "",
            ".",
            "8.1.x.y",
            "no dots",
            "8.99999999999999999999.x.AAAA",
        ] {
            assert_eq!(check(&pow, junk, &n, T0), Err(ProofError::Forged), "{junk}");
        }
        // A counter that does not solve it, or is not a counter.
        let wrong = (0..u64::MAX)
            .map(|i| i.to_string())
            .find(|i| leading_zero_bits(c.as_str(), i) < 8)
            .expect("most counters do not solve it");
        for counter in [wrong.as_str(), "", "-1", "1e3", &"9".repeat(21), " 1"] {
            assert_eq!(
                check(&pow, c.as_str(), counter, T0),
                Err(ProofError::Unsolved),
                "{counter}"
            );
        }
        // Issued before the operator raised the difficulty.
        let harder = ProofOfWork::new(&[7; 32], 9);
        assert_eq!(check(&harder, c.as_str(), &n, T0), Err(ProofError::TooEasy));
    }

    #[test]
    fn zero_bits_are_counted_across_bytes() {
        // Found by search, so the count is checked against the hash itself.
        let c = "x";
        for n in 0..2000u32 {
            let n = n.to_string();
            let mut ctx = digest::Context::new(&digest::SHA256);
            ctx.update(format!("{c}:{n}").as_bytes());
            let hash = ctx.finish();
            // Bit by bit, most significant first, the slow and obvious way.
            let expected = (0..256)
                .take_while(|i| hash.as_ref()[i / 8] & (0x80 >> (i % 8)) == 0)
                .count();
            let expected = u32::try_from(expected).expect("at most 256");
            assert_eq!(leading_zero_bits(c, &n), expected);
        }
    }
}
