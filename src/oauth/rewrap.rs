//! Moving to a new KEK: everything sealed under the old one directly (signing keys, authenticator
//! app secrets) is re-sealed in one transaction, so no row is left that only the old KEK opens.

use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use time::OffsetDateTime;

use crate::keys::kek::Kek;
use crate::keys::store::{self, KeyError};
use crate::users::totp;

/// What was re-sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrapped {
    /// Signing keys.
    pub keys: usize,
    /// Authenticator app secrets.
    pub totp_secrets: usize,
}

/// Re-seals every signing key and every authenticator app secret under `new_kek`, all or
/// nothing (the signing keys' `key.rewrapped` event records it).
pub async fn rewrap(
    conn: &mut AsyncPgConnection,
    old_kek: &Kek,
    new_kek: &Kek,
    now: OffsetDateTime,
) -> Result<Rewrapped, KeyError> {
    conn.transaction(async |conn| {
        let keys = store::rewrap(conn, old_kek, new_kek, now).await?;
        let totp_secrets = totp::rewrap(conn, old_kek, new_kek).await?;
        Ok(Rewrapped { keys, totp_secrets })
    })
    .await
}
