//! A client's idempotency keys (draft-ietf-httpapi-idempotency-key-header): the answer to the
//! first request under a key, so a retried creation gets that answer instead of doing it twice.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::{Duration, OffsetDateTime};

use crate::db::schema::idempotency_keys;

/// How long an answer is kept for retries: a day, as Stripe and the draft's examples keep them.
pub const KEPT_FOR: Duration = Duration::DAY;

/// Longest key accepted (the draft suggests a UUID; this leaves room for any client's scheme).
pub const MAX_KEY_CHARS: usize = 255;

/// A key as sent, checked: 1 to 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Reads the header's value: an RFC 8941 string (`"..."`), or the bare token many clients
    /// send; `None` when it is empty, too long or not visible ASCII.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let inner = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(raw);
        let ok = !inner.is_empty()
            && inner.len() <= MAX_KEY_CHARS
            && inner.chars().all(|c| c.is_ascii_graphic() && c != '"');
        ok.then(|| Self(inner.to_owned()))
    }

    /// The key.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the first request under a key came to.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = idempotency_keys)]
pub struct Kept {
    /// SHA-256 of the first request.
    pub fingerprint: Vec<u8>,
    /// Its outcome, as the operation describes it.
    pub outcome: serde_json::Value,
}

/// Takes the key for the rest of the caller's transaction (a concurrent retry waits here until
/// the first request committed or rolled back), then returns what it came to, if anything.
/// Must run inside a transaction.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    key: &IdempotencyKey,
    now: OffsetDateTime,
) -> QueryResult<Option<Kept>> {
    // The row may not exist yet, so there is nothing for `SELECT ... FOR UPDATE` to lock. The
    // key has no space, so the last space splits the pair into one name unambiguously.
    crate::db::lock_name(
        conn,
        "idempotency",
        &format!("{client_id} {}", key.as_str()),
    )
    .await?;
    idempotency_keys::table
        .find((client_id, key.as_str()))
        .filter(idempotency_keys::created_at.gt(now - KEPT_FOR))
        .select(Kept::as_select())
        .first(conn)
        .await
        .optional()
}

/// Keeps what the request under `key` came to (replacing an expired one), in the caller's transaction.
pub async fn keep(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    key: &IdempotencyKey,
    answer: &Kept,
    now: OffsetDateTime,
) -> QueryResult<()> {
    let row = (
        idempotency_keys::client_id.eq(client_id),
        idempotency_keys::key.eq(key.as_str()),
        idempotency_keys::fingerprint.eq(&answer.fingerprint),
        idempotency_keys::created_at.eq(now),
        idempotency_keys::outcome.eq(&answer.outcome),
    );
    diesel::insert_into(idempotency_keys::table)
        .values(row)
        .on_conflict((idempotency_keys::client_id, idempotency_keys::key))
        .do_update()
        .set(row)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes at most `batch` answers older than a day.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    batch: i64,
) -> QueryResult<usize> {
    crate::db::delete_batch(
        conn,
        "idempotency_keys",
        "created_at <= $1",
        now - KEPT_FOR,
        batch,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_a_structured_string_or_a_bare_token() {
        assert_eq!(
            IdempotencyKey::parse("\"8e03978e-40d5\"").map(|k| k.0),
            Some("8e03978e-40d5".into())
        );
        assert_eq!(
            IdempotencyKey::parse("abc-1").map(|k| k.0),
            Some("abc-1".into())
        );
        for bad in ["", "\"\"", "a b", "é", &"x".repeat(256)] {
            assert_eq!(IdempotencyKey::parse(bad), None, "{bad:?}");
        }
    }
}
