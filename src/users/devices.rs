//! Trusted devices (OWASP "device cookies"): a browser that signed in to an account before skips
//! that account's lockout, so an attacker guessing elsewhere cannot lock its owner out.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::db::schema::trusted_devices;
use crate::tokens::opaque::{PlainToken, TokenHash};

/// How long a device stays trusted after its last successful sign-in.
pub const DEVICE_TRUST_TTL: Duration = Duration::days(180);
/// Failures from one trusted device before it loses its exemption (until its next success).
pub const DEVICE_MAX_FAILURES: i32 = 10;
/// Prefix of device cookie values, recognisable in leaks.
pub const DEVICE_TOKEN_PREFIX: &str = "kwdv_";

/// Whether `presented` is a live trusted-device token for `user_id` that still has failures left.
pub async fn is_trusted(
    conn: &mut AsyncPgConnection,
    presented: &TokenHash,
    user_id: Uuid,
    now: OffsetDateTime,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        trusted_devices::table
            .filter(trusted_devices::token_hash.eq(presented))
            .filter(trusted_devices::user_id.eq(user_id))
            .filter(trusted_devices::expires_at.gt(now))
            .filter(trusted_devices::failures.lt(DEVICE_MAX_FAILURES)),
    ))
    .get_result(conn)
    .await
}

/// Counts a failed attempt made from a trusted device.
pub async fn update_failed(
    conn: &mut AsyncPgConnection,
    presented: &TokenHash,
) -> QueryResult<usize> {
    diesel::update(trusted_devices::table.find(presented))
        .set(trusted_devices::failures.eq(trusted_devices::failures + 1))
        .execute(conn)
        .await
}

/// Records a successful sign-in from a trusted device, renewing its trust.
pub async fn update_succeeded(
    conn: &mut AsyncPgConnection,
    presented: &TokenHash,
    now: OffsetDateTime,
) -> QueryResult<usize> {
    diesel::update(trusted_devices::table.find(presented))
        .set((
            trusted_devices::failures.eq(0),
            trusted_devices::last_used_at.eq(now),
            trusted_devices::expires_at.eq(now + DEVICE_TRUST_TTL),
        ))
        .execute(conn)
        .await
}

/// Trusts a new device for `user_id`; returns the token for its cookie.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    now: OffsetDateTime,
) -> QueryResult<PlainToken> {
    let token = PlainToken::generate(DEVICE_TOKEN_PREFIX);
    diesel::insert_into(trusted_devices::table)
        .values((
            trusted_devices::token_hash.eq(token.hash()),
            trusted_devices::user_id.eq(user_id),
            trusted_devices::created_at.eq(now),
            trusted_devices::last_used_at.eq(now),
            trusted_devices::expires_at.eq(now + DEVICE_TRUST_TTL),
        ))
        .execute(conn)
        .await?;
    Ok(token)
}

/// Deletes expired device records, at most `batch` rows.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    batch: i64,
) -> QueryResult<usize> {
    crate::db::delete_batch(conn, "trusted_devices", "expires_at <= $1", now, batch).await
}
