//! The key refresh tokens are MAC'd with: 256 random bits made once, stored sealed under the KEK
//! like the signing keys, and re-sealed by `keyward keys rewrap`, so a new KEK keeps every issued
//! refresh token valid (a key derived from the KEK would end them all).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;

use crate::crypto::random_bytes;
use crate::db::schema::refresh_token_keys;
use crate::keys::kek::Kek;
use crate::keys::store::KeyError;

/// The one key's id, also the sealing's associated data (a sealed blob means only this).
const ID: &str = "refresh-mac-v1";

/// The stored key, opened; made and stored first if there is none. Instances starting together
/// each make one, one insert wins, and all of them read back the winner.
pub async fn load_or_create(
    conn: &mut AsyncPgConnection,
    kek: &Kek,
    now: OffsetDateTime,
) -> Result<[u8; 32], KeyError> {
    let fresh = kek.seal(ID, &random_bytes::<32>());
    diesel::insert_into(refresh_token_keys::table)
        .values((
            refresh_token_keys::id.eq(ID),
            refresh_token_keys::sealed_key.eq(&fresh.ciphertext),
            refresh_token_keys::seal_nonce.eq(fresh.nonce.as_slice()),
            refresh_token_keys::kek_id.eq(kek.id()),
            refresh_token_keys::created_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    let (sealed, nonce, kek_id): (Vec<u8>, Vec<u8>, String) = refresh_token_keys::table
        .find(ID)
        .select((
            refresh_token_keys::sealed_key,
            refresh_token_keys::seal_nonce,
            refresh_token_keys::kek_id,
        ))
        .first(conn)
        .await?;
    if kek_id != kek.id() {
        return Err(KeyError::WrongKek {
            stored: kek_id,
            configured: kek.id().to_owned(),
        });
    }
    let key = kek.open(ID, &nonce, &sealed)?;
    Ok(key
        .try_into()
        .map_err(|_| crate::keys::kek::KekError::Open)?)
}

/// Re-seals the key under `new_kek` (inside the caller's transaction); how many rows (0 or 1).
pub async fn rewrap(
    conn: &mut AsyncPgConnection,
    old_kek: &Kek,
    new_kek: &Kek,
) -> Result<usize, KeyError> {
    let rows: Vec<(Vec<u8>, Vec<u8>)> = refresh_token_keys::table
        .filter(refresh_token_keys::id.eq(ID))
        .select((
            refresh_token_keys::sealed_key,
            refresh_token_keys::seal_nonce,
        ))
        .for_update()
        .load(conn)
        .await?;
    for (sealed, nonce) in &rows {
        let key = old_kek.open(ID, nonce, sealed)?;
        let resealed = new_kek.seal(ID, &key);
        diesel::update(refresh_token_keys::table.find(ID))
            .set((
                refresh_token_keys::sealed_key.eq(&resealed.ciphertext),
                refresh_token_keys::seal_nonce.eq(resealed.nonce.as_slice()),
                refresh_token_keys::kek_id.eq(new_kek.id()),
            ))
            .execute(conn)
            .await?;
    }
    Ok(rows.len())
}
