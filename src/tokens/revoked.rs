//! The revoked-access-token list: a JWT cannot be recalled, so the `jti`s of revoked ones are kept
//! until no endpoint of ours would accept them and checked wherever we accept our own access
//! tokens (userinfo, introspection).

use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::schema::revoked_access_tokens;
use crate::keys::schedule::CLOCK_LEEWAY;

/// The oldest expiry a revocation must still record: Keyward's endpoints accept a token up to
/// [`CLOCK_LEEWAY`] past its `exp` (instances' clocks may differ by that much), so a revoked
/// token is remembered until then too (RFC 7009 §2.1: revoked means refused).
#[must_use]
pub fn still_accepted_after(now: OffsetDateTime) -> OffsetDateTime {
    now - CLOCK_LEEWAY
}

/// Records an access token as revoked until it expires.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    jti: Uuid,
    expires_at: OffsetDateTime,
    reason: &str,
    now: OffsetDateTime,
) -> QueryResult<()> {
    diesel::insert_into(revoked_access_tokens::table)
        .values((
            revoked_access_tokens::jti.eq(jti),
            revoked_access_tokens::expires_at.eq(expires_at),
            revoked_access_tokens::revoked_at.eq(now),
            revoked_access_tokens::reason.eq(reason),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .map(|_| ())
}

/// Whether an access token was revoked (one primary-key read).
pub async fn is_revoked(conn: &mut AsyncPgConnection, jti: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(revoked_access_tokens::table.find(jti)))
        .get_result(conn)
        .await
}

/// Revokes every still-accepted access token issued in a refresh family, in one statement.
pub async fn insert_for_family(
    conn: &mut AsyncPgConnection,
    family_id: Uuid,
    reason: &str,
    now: OffsetDateTime,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO revoked_access_tokens (jti, expires_at, revoked_at, reason) \
         SELECT jti, expires_at, $2, $3 FROM family_access_tokens \
         WHERE family_id = $1 AND expires_at > $4 ON CONFLICT (jti) DO NOTHING",
    )
    .bind::<SqlUuid, _>(family_id)
    .bind::<Timestamptz, _>(now)
    .bind::<Text, _>(reason)
    .bind::<Timestamptz, _>(still_accepted_after(now))
    .execute(conn)
    .await
    .map(|_| ())
}

/// Revokes every still-accepted access token that codes of `client_id` issued, to `user_id` or
/// (`None`, the client's deletion) to anyone: codes are kept while their token lives, so this
/// reaches tokens no refresh family knows of.
pub async fn insert_for_codes(
    conn: &mut AsyncPgConnection,
    user_id: Option<Uuid>,
    client_id: &str,
    reason: &str,
    now: OffsetDateTime,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO revoked_access_tokens (jti, expires_at, revoked_at, reason) \
         SELECT access_token_jti, access_token_expires_at, $3, $4 FROM authorization_codes \
         WHERE ($1::uuid IS NULL OR user_id = $1) AND client_id = $2 \
         AND access_token_jti IS NOT NULL \
         AND access_token_expires_at > $5 ON CONFLICT (jti) DO NOTHING",
    )
    .bind::<Nullable<SqlUuid>, _>(user_id)
    .bind::<Text, _>(client_id)
    .bind::<Timestamptz, _>(now)
    .bind::<Text, _>(reason)
    .bind::<Timestamptz, _>(still_accepted_after(now))
    .execute(conn)
    .await
    .map(|_| ())
}

/// Deletes revocation records that outlived their tokens, at most `batch`.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    batch: i64,
) -> QueryResult<usize> {
    crate::db::delete_batch(
        conn,
        "revoked_access_tokens",
        "expires_at <= $1",
        now,
        batch,
    )
    .await
}
