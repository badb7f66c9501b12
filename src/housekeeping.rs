//! Deleting what has expired, in small batches, so no table grows forever and no delete holds
//! many locks: run by every instance in the background and by `keyward tokens purge`.

use diesel_async::AsyncPgConnection;
use time::{Duration, OffsetDateTime};

use crate::db;
use crate::tokens::{codes, refresh, revoked};
use crate::users::{devices, lockout};

/// Rows per DELETE statement.
pub const BATCH: i64 = 1000;

/// How many rows one purge removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Browser sessions.
    pub sessions: usize,
    /// Codes and revoked-access-token records.
    pub codes: usize,
    /// Refresh families (with their tokens) and family access-token records.
    pub refresh: usize,
    /// Sign-in lockouts, abandoned sign-in holds, trusted devices, rate-limit keys, spent
    /// proofs of work, expired mailed codes and management API idempotency keys.
    pub sign_in: usize,
}

impl Purged {
    /// Everything removed.
    #[must_use]
    pub fn total(&self) -> usize {
        self.sessions + self.codes + self.refresh + self.sign_in
    }
}

/// Repeats a batch delete until a batch comes back short; evaluates to the rows deleted.
macro_rules! drain {
    ($delete:expr) => {{
        let mut total = 0usize;
        loop {
            let n: usize = $delete.await?;
            total += n;
            if n < usize::try_from(BATCH).unwrap_or(usize::MAX) {
                break total;
            }
        }
    }};
}

/// Deletes everything expired at `now`. Used refresh tokens stay while their family lives (a
/// replay must still be recognised), and revoked families until their access tokens expired.
pub async fn purge(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    longest_access_ttl: Duration,
) -> diesel::QueryResult<Purged> {
    // What recognises a token (a used code, a family's access-token record, a revocation) stays
    // as long as Keyward's endpoints would still accept that token: past `exp` by the leeway.
    let horizon = revoked::still_accepted_after(now);
    Ok(Purged {
        sessions: drain!(db::delete_batch(
            conn,
            "sessions",
            "expires_at <= $1",
            now,
            BATCH
        )),
        codes: drain!(codes::delete_expired(conn, horizon, BATCH))
            + drain!(revoked::delete_expired(conn, horizon, BATCH)),
        refresh: drain!(refresh::delete_expired(
            conn,
            horizon,
            longest_access_ttl,
            BATCH
        )),
        sign_in: drain!(lockout::delete_expired(conn, now, BATCH))
            + drain!(lockout::delete_expired_holds(conn, now, BATCH))
            + drain!(devices::delete_expired(conn, now, BATCH))
            + drain!(crate::rate_limits::delete_expired(conn, now, BATCH))
            + drain!(crate::users::codes::delete_expired(conn, now, BATCH))
            + drain!(crate::rate_limits::proof::delete_expired(conn, now, BATCH))
            + drain!(crate::clients::idempotency::delete_expired(
                conn, now, BATCH
            )),
    })
}
