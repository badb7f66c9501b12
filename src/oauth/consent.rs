//! Withdrawing consent: a cut-off for one user and one client, including what is in flight.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::tokens::{codes, refresh, revoked};
use crate::users::consents;

/// Why consent was withdrawn, as the revocation records say.
const REASON: &str = "consent revoked";

/// Withdraws `user_id`'s consent to `client_id`, and with it everything the client holds for
/// them: unredeemed codes (after redemptions in flight commit), the access tokens its codes
/// issued, and its refresh families with their access tokens. Returns false if there was no
/// consent to withdraw. Recorded as `consent.revoked` by `by` (the person or an operator).
pub async fn withdraw(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    client_id: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> diesel::QueryResult<bool> {
    conn.transaction(async |conn| {
        if !consents::delete(conn, user_id, client_id).await? {
            return Ok(false);
        }
        // Codes first: this waits for a redemption holding a code's lock, so what it issued is
        // committed before the two sweeps below look for it.
        codes::delete_unredeemed(conn, user_id, Some(client_id)).await?;
        revoked::insert_for_codes(conn, Some(user_id), client_id, REASON, now).await?;
        refresh::revoke_families_of_user(conn, user_id, Some(client_id), REASON, now).await?;
        let event = by
            .event("consent.revoked", now)
            .user(user_id)
            .client(client_id);
        audit::insert(conn, &event).await?;
        Ok(true)
    })
    .await
}
