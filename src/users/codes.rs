//! One-time codes mailed to a person (to prove an address, to reset a password): eight digits,
//! one live code per account and purpose, stored only as an HMAC under a KEK-derived key,
//! single use, a few attempts each, and expiring.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use ring::hmac;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::db::schema::account_codes;

/// Wrong codes a code survives: the fifth wrong try ends it (a guess succeeds with odds of 5 in
/// 100 million per code).
pub const MAX_ATTEMPTS: i32 = 5;

/// What a code is for; a code for one never serves another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Proving the address the code was sent to.
    VerifyEmail,
    /// Setting a new password without the old one.
    ResetPassword,
    /// Moving the account to the address the code was sent to.
    ChangeEmail,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::ChangeEmail => "change_email",
        }
    }
}

/// A code as mailed: shown once, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Code(<redacted>)")
    }
}

impl Code {
    /// The eight digits.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Hashes codes: every instance derives the same key from the KEK.
#[derive(Clone)]
pub struct CodeKey(hmac::Key);

impl std::fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKey")
    }
}

/// Why a typed code did not work. Each says only what the person can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// No live code (never sent, used, expired, or ended by wrong tries).
    #[error("That code has expired or was already used. Ask for a new one.")]
    NoCode,
    /// Wrong; this many tries are left on this code.
    #[error("That code is not right ({left} more tries on this code).")]
    Wrong {
        /// Tries left.
        left: i32,
    },
}

impl CodeKey {
    /// A key from `secret`.
    #[must_use]
    pub fn new(secret: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The stored form of `code`, bound to its account, purpose and address: a row cannot be
    /// moved to another account, and a code sent to one address cannot prove another.
    fn hash(&self, user: Uuid, purpose: Purpose, email: &str, code: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in [
            user.as_bytes().as_slice(),
            purpose.as_str().as_bytes(),
            email.as_bytes(),
        ] {
            ctx.update(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
            ctx.update(part);
        }
        ctx.update(code.as_bytes());
        ctx.sign().as_ref().to_vec()
    }

    /// Makes a new code for `user` and `purpose`, sent to `email`, valid for `ttl`; any earlier
    /// one for that purpose ends.
    pub async fn issue(
        &self,
        conn: &mut AsyncPgConnection,
        (user, purpose, email): (Uuid, Purpose, &str),
        ttl: Duration,
        now: OffsetDateTime,
    ) -> QueryResult<Code> {
        let code = Code(new_digits());
        let hash = self.hash(user, purpose, email, code.expose());
        diesel::insert_into(account_codes::table)
            .values((
                account_codes::user_id.eq(user),
                account_codes::purpose.eq(purpose.as_str()),
                account_codes::email.eq(email),
                account_codes::code_hash.eq(&hash),
                account_codes::created_at.eq(now),
                account_codes::expires_at.eq(now + ttl),
                account_codes::attempts.eq(0),
            ))
            .on_conflict((account_codes::user_id, account_codes::purpose))
            .do_update()
            .set((
                account_codes::email.eq(email),
                account_codes::code_hash.eq(&hash),
                account_codes::created_at.eq(now),
                account_codes::expires_at.eq(now + ttl),
                account_codes::attempts.eq(0),
            ))
            .execute(conn)
            .await?;
        Ok(code)
    }

    /// Spends `typed` for `user` and `purpose`: the address it was sent to, exactly once. The
    /// row is locked while judged, so parallel tries count one by one and only one can win. Call
    /// it inside the transaction of what the code allows, so that both happen or neither.
    pub async fn redeem(
        &self,
        conn: &mut AsyncPgConnection,
        user: Uuid,
        purpose: Purpose,
        typed: &str,
        now: OffsetDateTime,
    ) -> QueryResult<Result<String, CodeError>> {
        let row: Option<(String, Vec<u8>, OffsetDateTime, i32)> = account_codes::table
            .find((user, purpose.as_str()))
            .select((
                account_codes::email,
                account_codes::code_hash,
                account_codes::expires_at,
                account_codes::attempts,
            ))
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some((email, stored, expires_at, attempts)) = row else {
            return Ok(Err(CodeError::NoCode));
        };
        let this = account_codes::table.find((user, purpose.as_str()));
        if expires_at <= now || attempts >= MAX_ATTEMPTS {
            diesel::delete(this).execute(conn).await?;
            return Ok(Err(CodeError::NoCode));
        }
        let typed = normalise(typed);
        let hash = self.hash(user, purpose, &email, &typed);
        if crate::crypto::constant_time_eq(&hash, &stored) {
            diesel::delete(this).execute(conn).await?;
            return Ok(Ok(email));
        }
        let left = MAX_ATTEMPTS - attempts - 1;
        if left == 0 {
            diesel::delete(this).execute(conn).await?;
            return Ok(Err(CodeError::NoCode));
        }
        diesel::update(this)
            .set(account_codes::attempts.eq(attempts + 1))
            .execute(conn)
            .await?;
        Ok(Err(CodeError::Wrong { left }))
    }
}

/// Whether `user` has a live code for `purpose`, and when it was sent.
pub async fn live_since(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    purpose: Purpose,
    now: OffsetDateTime,
) -> QueryResult<Option<OffsetDateTime>> {
    account_codes::table
        .find((user, purpose.as_str()))
        .filter(account_codes::expires_at.gt(now))
        .select(account_codes::created_at)
        .first(conn)
        .await
        .optional()
}

/// Deletes expired codes, at most `batch`.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    batch: i64,
) -> QueryResult<usize> {
    crate::db::delete_batch(conn, "account_codes", "expires_at <= $1", now, batch).await
}

/// Eight random digits, uniform: a u64 modulo 10^8 is off by less than one in 10^11.
fn new_digits() -> String {
    let n = u64::from_be_bytes(crate::crypto::random_bytes::<8>()) % 100_000_000;
    format!("{n:08}")
}

/// What a person may type around the digits: spaces and dashes (from grouping), nothing else.
fn normalise(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .take(32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_digits_and_differ() {
        let a = new_digits();
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(new_digits(), new_digits());
    }

    #[test]
    fn a_hash_is_bound_to_account_purpose_address_and_key() {
        let key = CodeKey::new(&[1; 32]);
        let (u, v) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let base = key.hash(u, Purpose::VerifyEmail, "a@example.com", "12345678");
        assert_ne!(
            base,
            key.hash(v, Purpose::VerifyEmail, "a@example.com", "12345678")
        );
        assert_ne!(
            base,
            key.hash(u, Purpose::ResetPassword, "a@example.com", "12345678")
        );
        assert_ne!(
            base,
            key.hash(u, Purpose::VerifyEmail, "b@example.com", "12345678")
        );
        assert_ne!(
            base,
            key.hash(u, Purpose::VerifyEmail, "a@example.com", "12345679")
        );
        let other = CodeKey::new(&[2; 32]);
        assert_ne!(
            base,
            other.hash(u, Purpose::VerifyEmail, "a@example.com", "12345678")
        );
    }

    #[test]
    fn spaces_and_dashes_around_the_digits_are_ignored() {
        assert_eq!(normalise(" 1234-5678 "), "12345678");
        assert_eq!(normalise("1234 5678"), "12345678");
        assert_eq!(normalise("12345678x"), "12345678x");
    }
}
