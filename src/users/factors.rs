//! What second factors a person has (an authenticator app, passkeys), and the operator's way
//! out for someone who lost them all.

use diesel::dsl::exists;
use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Actor;
use crate::db::schema::{passkeys as pk, totp_factors as tf};

use super::{passkeys, recovery_codes, totp};

/// A person's second factors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Factors {
    /// A confirmed authenticator app.
    pub totp: bool,
    /// Passkeys.
    pub passkeys: i64,
    /// Unused recovery codes (a way back in, not a factor of their own).
    pub recovery_left: i64,
}

impl Factors {}

/// Whether `user_id` has a second factor: what every password sign-in asks, in one statement.
pub async fn has_any(conn: &mut AsyncPgConnection, user_id: Uuid) -> diesel::QueryResult<bool> {
    let app = tf::table
        .filter(tf::user_id.eq(user_id))
        .filter(tf::confirmed_at.is_not_null());
    let key = pk::table.filter(pk::user_id.eq(user_id));
    diesel::select(exists(app).or(exists(key)))
        .get_result(conn)
        .await
}

/// The factors of `user_id`.
pub async fn of(conn: &mut AsyncPgConnection, user_id: Uuid) -> diesel::QueryResult<Factors> {
    Ok(Factors {
        totp: totp::is_enrolled(conn, user_id).await?,
        passkeys: passkeys::count(conn, user_id).await?,
        recovery_left: recovery_codes::left(conn, user_id).await?,
    })
}

/// Removes every second factor and recovery code of `user_id` (`users reset-mfa`), recorded as
/// `mfa.reset`. Returns what they had.
pub async fn reset_all(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    by: &Actor,
    now: OffsetDateTime,
) -> diesel::QueryResult<Factors> {
    conn.transaction(async |conn| {
        let had = of(conn, user_id).await?;
        totp::remove(conn, user_id, by, now).await?;
        passkeys::delete_all(conn, user_id).await?;
        recovery_codes::delete_all(conn, user_id).await?;
        let details = serde_json::json!({
            "totp": had.totp,
            "passkeys": had.passkeys,
            "recovery_codes": had.recovery_left,
        });
        super::record(conn, by, "mfa.reset", user_id, details, now).await?;
        Ok(had)
    })
    .await
}
