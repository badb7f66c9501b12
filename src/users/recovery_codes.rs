//! Recovery codes: ten single-use codes shown once when a second factor is set up, for the day
//! the person's phone or key is lost (NIST SP 800-63B §5.1.2 look-up secrets), stored only as
//! hashes.

use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Actor;
use crate::db::schema::recovery_codes;

/// Codes in a set.
pub const COUNT: usize = 10;
/// At or below this many left, the person is told to make a new set.
pub const FEW_LEFT: i64 = 3;
/// RFC 4648 base32, lower case: 16 characters carry 80 random bits, enough that a hash of the
/// code cannot be reversed by search (so a plain SHA-256 is the right hash, as for tokens).
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A code as shown once: never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

impl RecoveryCode {
    fn new() -> Self {
        let bytes = crate::crypto::random_bytes::<16>();
        // 256 is a multiple of 32: taking each byte modulo 32 is unbiased.
        let chars: Vec<char> = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
            .collect();
        let groups: Vec<String> = chars.chunks(4).map(|c| c.iter().collect()).collect();
        Self(groups.join("-"))
    }

    /// The code in groups of four, as printed.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The stored form: SHA-256 of the code without separators or case, bound to its account.
fn hash(user_id: Uuid, typed: &str) -> Vec<u8> {
    let normal: String = typed
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"keyward recovery code v1\0");
    ctx.update(user_id.as_bytes());
    ctx.update(normal.as_bytes());
    ctx.finish().as_ref().to_vec()
}

/// A new set for `user_id`, replacing any before (recorded as `mfa.recovery_codes_generated`).
pub async fn replace(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<Vec<RecoveryCode>> {
    let codes: Vec<RecoveryCode> = (0..COUNT).map(|_| RecoveryCode::new()).collect();
    let rows: Vec<_> = codes
        .iter()
        .map(|c| {
            (
                recovery_codes::user_id.eq(user_id),
                recovery_codes::code_hash.eq(hash(user_id, c.expose())),
                recovery_codes::created_at.eq(now),
            )
        })
        .collect();
    conn.transaction(async |conn| {
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)))
            .execute(conn)
            .await?;
        diesel::insert_into(recovery_codes::table)
            .values(&rows)
            .execute(conn)
            .await?;
        let details = serde_json::json!({ "count": COUNT });
        super::record(
            conn,
            by,
            "mfa.recovery_codes_generated",
            user_id,
            details,
            now,
        )
        .await
    })
    .await?;
    Ok(codes)
}

/// Spends `typed` for `user_id`: `Some(codes left)` if it was one of theirs and unused (it never
/// works again: the update is conditional, so of two requests racing with it one wins), `None`
/// otherwise. Recorded as `mfa.recovery_code_used`.
pub async fn spend(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    typed: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<Option<i64>> {
    let hashed = hash(user_id, typed);
    conn.transaction(async |conn| {
        let n = diesel::update(
            recovery_codes::table
                .find((user_id, &hashed))
                .filter(recovery_codes::used_at.is_null()),
        )
        .set(recovery_codes::used_at.eq(now))
        .execute(conn)
        .await?;
        if n == 0 {
            return Ok(None);
        }
        let left = left(conn, user_id).await?;
        let details = serde_json::json!({ "left": left });
        super::record(conn, by, "mfa.recovery_code_used", user_id, details, now).await?;
        Ok(Some(left))
    })
    .await
}

/// How many unused codes `user_id` has.
pub async fn left(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<i64> {
    recovery_codes::table
        .filter(recovery_codes::user_id.eq(user_id))
        .filter(recovery_codes::used_at.is_null())
        .count()
        .get_result(conn)
        .await
}

/// Forgets every code of `user_id` (their last factor went).
pub async fn delete_all(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<usize> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)))
        .execute(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sixteen_base32_characters_in_groups_and_hash_without_separators_or_case() {
        let code = RecoveryCode::new();
        let shown = code.expose();
        assert_eq!(shown.len(), 19);
        assert_eq!(shown.matches('-').count(), 3);
        assert!(
            shown
                .chars()
                .all(|c| c == '-' || ALPHABET.contains(&(c as u8)))
        );
        let user = Uuid::new_v4();
        let typed = shown.replace('-', " ").to_uppercase();
        assert_eq!(hash(user, shown), hash(user, &typed));
        assert_ne!(hash(user, shown), hash(Uuid::new_v4(), shown));
        assert_ne!(RecoveryCode::new(), code);
    }
}
