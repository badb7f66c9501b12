//! Deleting a client as a cut-off: everything it holds for anyone ends in the same transaction.

use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Actor;
use crate::clients;
use crate::tokens::{codes, refresh, revoked};

/// Why the client's tokens ended, as the revocation records say.
const REASON: &str = "client deleted";

/// Deletes client `id` and, first, what it holds: unredeemed codes (after redemptions in flight
/// commit), the access tokens its codes issued, and its refresh families with their access
/// tokens. `client.deleted` is recorded by `by`. `None` when there is no such client; else the
/// revoked families.
///
/// A client's own tokens (client credentials) are recorded nowhere: the access-token check
/// refuses every token whose client no longer exists, or was registered after it was issued.
pub async fn delete_client(
    conn: &mut AsyncPgConnection,
    id: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> diesel::QueryResult<Option<Vec<Uuid>>> {
    conn.transaction(async |conn| {
        // Under the client's row lock: a change racing the delete waits, then finds nothing.
        if clients::find_for_update(conn, id).await?.is_none() {
            return Ok(None);
        }
        // Codes first: this waits for a redemption holding a code's lock, so what it issued is
        // committed before the two sweeps below look for it.
        codes::delete_unredeemed_of_client(conn, id).await?;
        revoked::insert_for_codes(conn, None, id, REASON, now).await?;
        let families = refresh::revoke_families_of_client(conn, id, REASON, now).await?;
        clients::delete(conn, id, by, now).await?;
        Ok(Some(families))
    })
    .await
}
