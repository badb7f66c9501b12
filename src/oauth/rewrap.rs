//! Moving to a new KEK: everything sealed under the old one directly (signing keys, authenticator
//! app secrets, the refresh-token MAC key) is re-sealed in one transaction, so no row is left
//! that only the old KEK opens.

use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use time::OffsetDateTime;

use crate::keys::kek::Kek;
use crate::keys::refresh_mac;
use crate::keys::store::{self, KeyError};
use crate::users::totp;

/// What was re-sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrapped {
    /// Signing keys.
    pub keys: usize,
    /// Authenticator app secrets.
    pub totp_secrets: usize,
    /// The refresh-token MAC key (0 or 1).
    pub refresh_keys: usize,
}

/// Re-seals every signing key, authenticator app secret and the refresh-token MAC key under
/// `new_kek`, all or
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
        let refresh_keys = refresh_mac::rewrap(conn, old_kek, new_kek).await?;
        Ok(Rewrapped {
            keys,
            totp_secrets,
            refresh_keys,
        })
    })
    .await
}
