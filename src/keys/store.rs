//! Signing keys in PostgreSQL: every change to the schedule is one transaction under one lock.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::audit::{self, NewAuditEvent};
use crate::db::schema::{key_set_version, signing_keys};
use crate::keys::kek::{Kek, KekError};
use crate::keys::material::{self, KeyMaterial, MaterialError};
use crate::keys::schedule::{self, KeyTimes, SchedulePolicy};

/// Any fixed number: the transaction-scoped advisory lock that serialises schedule changes.
const SCHEDULE_LOCK: i64 = 0x6b77_6b65_7973_0001;

/// A stored signing key. `Debug` shows no sealed bytes.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = signing_keys)]
pub struct SigningKeyRow {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// Always `RS256`.
    pub algorithm: String,
    /// Modulus size.
    pub bits: i32,
    /// `generated` or `imported`.
    pub origin: String,
    /// Public modulus, base64url.
    pub public_n: String,
    /// Public exponent, base64url.
    pub public_e: String,
    /// PKCS#8 DER sealed under the KEK.
    pub sealed_private_key: Vec<u8>,
    /// The seal's nonce.
    pub seal_nonce: Vec<u8>,
    /// Fingerprint of the sealing KEK.
    pub kek_id: String,
    /// When the row was written.
    pub created_at: OffsetDateTime,
    /// Schedule: published.
    pub published_at: OffsetDateTime,
    /// Schedule: starts signing.
    pub activates_at: OffsetDateTime,
    /// Schedule: stops signing.
    pub retires_at: OffsetDateTime,
    /// Schedule: leaves the JWKS.
    pub expires_at: OffsetDateTime,
    /// Revocation time.
    pub revoked_at: Option<OffsetDateTime>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field("published_at", &self.published_at)
            .field("activates_at", &self.activates_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

impl SigningKeyRow {
    /// The schedule times.
    #[must_use]
    pub fn times(&self) -> KeyTimes {
        KeyTimes {
            published_at: self.published_at,
            activates_at: self.activates_at,
            retires_at: self.retires_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }
}

/// Why a key operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Stored keys were sealed by another KEK: nothing is decrypted, created or overwritten.
    #[error(
        "KEYWARD_KEK: the configured key-encryption key (fingerprint {configured}) is not the one that sealed the stored signing keys ({stored}); start with the original KEK, or re-seal with `keyward keys rewrap`"
    )]
    WrongKek {
        /// Fingerprint(s) found in the table.
        stored: String,
        /// Fingerprint of the configured KEK.
        configured: String,
    },
    /// No key has that kid.
    #[error("no signing key with kid {0}")]
    UnknownKid(String),
    /// The key is already revoked.
    #[error("signing key {0} is already revoked")]
    AlreadyRevoked(String),
    /// The key is already stored.
    #[error("signing key {0} is already stored")]
    Duplicate(String),
    /// Rotating now would sign with a key verifiers may not have cached yet.
    #[error(
        "the next key was published at {}; verifiers caching the JWKS may not have it before {}. Rotate after that, or pass --force",
        rfc3339(*published_at),
        rfc3339(*ready_at)
    )]
    NextTooFresh {
        /// When the next key appeared in the JWKS.
        published_at: OffsetDateTime,
        /// When every verifier's cache has it.
        ready_at: OffsetDateTime,
    },
    /// The active key activated at this very instant: rotating now would tie with it.
    #[error("the active key activated just now; rotate again in a moment")]
    JustActivated,
    /// There is no active key to rotate away from.
    #[error("there is no active signing key")]
    NoActiveKey,
    /// Key material problem.
    #[error(transparent)]
    Material(#[from] MaterialError),
    /// KEK problem.
    #[error(transparent)]
    Kek(#[from] KekError),
    /// Database problem.
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The settings that shape new keys and their schedule.
#[derive(Clone, Copy, Debug)]
pub struct KeyPolicy {
    /// Rotation, pre-publication and published lifetime of retired keys.
    pub schedule: SchedulePolicy,
    /// RSA modulus size of generated keys.
    pub bits: u32,
    /// JWKS max-age: a next key younger than this may not be in verifiers' caches yet.
    pub jwks_max_age: Duration,
}

/// Every key, oldest activation first.
pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<SigningKeyRow>> {
    signing_keys::table
        .order((signing_keys::activates_at.asc(), signing_keys::kid.asc()))
        .select(SigningKeyRow::as_select())
        .load(conn)
        .await
}

/// The key-set version, bumped by a trigger on every change to `signing_keys`.
pub async fn current_version(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    key_set_version::table
        .select(key_set_version::version)
        .first(conn)
        .await
}

/// Fails unless every stored key was sealed by `kek`.
pub async fn check_kek(conn: &mut AsyncPgConnection, kek: &Kek) -> Result<(), KeyError> {
    let stored: Vec<String> = signing_keys::table
        .select(signing_keys::kek_id)
        .distinct()
        .load(conn)
        .await?;
    if stored.iter().any(|id| id != kek.id()) {
        return Err(KeyError::WrongKek {
            stored: stored.join(", "),
            configured: kek.id().to_owned(),
        });
    }
    Ok(())
}

/// Every key with its schedule times, in one pass.
async fn list_with_times(
    conn: &mut AsyncPgConnection,
) -> QueryResult<(Vec<SigningKeyRow>, Vec<KeyTimes>)> {
    let rows = list(conn).await?;
    let times = rows.iter().map(SigningKeyRow::times).collect();
    Ok((rows, times))
}

/// Takes the schedule lock for this transaction and refuses a foreign KEK before anything else.
async fn lock_and_check(conn: &mut AsyncPgConnection, kek: &Kek) -> Result<(), KeyError> {
    lock_schedule(conn).await?;
    // Checked under the lock, before anything is created: never mix KEKs in one table.
    check_kek(conn, kek).await
}

async fn lock_schedule(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(SCHEDULE_LOCK)
        .execute(conn)
        .await
        .map(|_| ())
}

async fn insert_key(
    conn: &mut AsyncPgConnection,
    kek: &Kek,
    key: &KeyMaterial,
    origin: &str,
    times: KeyTimes,
    now: OffsetDateTime,
    actor: &str,
) -> Result<(), KeyError> {
    let sealed = kek.seal(&key.kid, &key.pkcs8_der);
    let inserted = diesel::insert_into(signing_keys::table)
        .values((
            signing_keys::kid.eq(&key.kid),
            signing_keys::algorithm.eq("RS256"),
            signing_keys::bits.eq(i32::try_from(key.bits).unwrap_or(i32::MAX)),
            signing_keys::origin.eq(origin),
            signing_keys::public_n.eq(&key.n),
            signing_keys::public_e.eq(&key.e),
            signing_keys::sealed_private_key.eq(&sealed.ciphertext),
            signing_keys::seal_nonce.eq(sealed.nonce.as_slice()),
            signing_keys::kek_id.eq(kek.id()),
            signing_keys::created_at.eq(now),
            signing_keys::published_at.eq(times.published_at),
            signing_keys::activates_at.eq(times.activates_at),
            signing_keys::retires_at.eq(times.retires_at),
            signing_keys::expires_at.eq(times.expires_at),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 0 {
        return Err(KeyError::Duplicate(key.kid.clone()));
    }
    audit::insert(
        conn,
        &NewAuditEvent::new("key.created", actor, now)
            .subject(&key.kid)
            .details(json!({
                "origin": origin,
                "bits": key.bits,
                "kek_id": kek.id(),
                "published_at": times.published_at.unix_timestamp(),
                "activates_at": times.activates_at.unix_timestamp(),
            })),
    )
    .await?;
    Ok(())
}

async fn update_times(conn: &mut AsyncPgConnection, kid: &str, t: KeyTimes) -> QueryResult<()> {
    diesel::update(signing_keys::table.find(kid))
        .set((
            signing_keys::activates_at.eq(t.activates_at),
            signing_keys::retires_at.eq(t.retires_at),
            signing_keys::expires_at.eq(t.expires_at),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Applies the schedule's plan at `now`: creates missing keys, moves retire/expire times.
async fn apply_plan(
    conn: &mut AsyncPgConnection,
    kek: &Kek,
    policy: &KeyPolicy,
    now: OffsetDateTime,
    actor: &str,
) -> Result<bool, KeyError> {
    let (rows, times) = list_with_times(conn).await?;
    let plan = schedule::plan(&times, now, &policy.schedule);
    if plan.is_empty() {
        return Ok(false);
    }
    for (i, t) in &plan.updates {
        update_times(conn, &rows[*i].kid, *t).await?;
    }
    for t in plan.new_active.iter().chain(plan.new_next.iter()) {
        let bits = policy.bits;
        // RSA generation takes a few hundred milliseconds: off the async threads.
        let key = tokio::task::spawn_blocking(move || material::generate(bits))
            .await
            .map_err(|e| MaterialError::Crypto(e.to_string()))??;
        insert_key(conn, kek, &key, "generated", *t, now, actor).await?;
    }
    Ok(true)
}

/// Makes sure one key signs and one waits, creating what is missing. Safe to call from every
/// instance at once: the first takes the lock and creates, the others find nothing to do.
pub async fn ensure_schedule(
    conn: &mut AsyncPgConnection,
    kek: &Kek,
    policy: &KeyPolicy,
    now: OffsetDateTime,
) -> Result<bool, KeyError> {
    conn.transaction(async |conn| {
        lock_and_check(conn, kek).await?;
        apply_plan(conn, kek, policy, now, audit::ACTOR_SYSTEM).await
    })
    .await
}

/// What a rotation or revocation did.
#[derive(Debug, Clone)]
pub struct Promotion {
    /// The key that signs from now on.
    pub active: String,
}

/// Makes the next key sign now; a new next key is published in the same transaction.
pub async fn rotate(
    conn: &mut AsyncPgConnection,
    kek: &Kek,
    policy: &KeyPolicy,
    now: OffsetDateTime,
    force: bool,
) -> Result<Promotion, KeyError> {
    conn.transaction(async |conn| {
        lock_and_check(conn, kek).await?;
        apply_plan(conn, kek, policy, now, audit::ACTOR_CLI).await?;
        let (rows, times) = list_with_times(conn).await?;
        let active = schedule::active_index(&times, now).ok_or(KeyError::NoActiveKey)?;
        let next = schedule::next_index(&times, now).ok_or(KeyError::NoActiveKey)?;
        let ready_at = rows[next].published_at + policy.jwks_max_age;
        if !force && ready_at > now {
            return Err(KeyError::NextTooFresh {
                published_at: rows[next].published_at,
                ready_at,
            });
        }
        let lifetime = policy.schedule.token_lifetime;
        let old = times[active];
        // Two keys activating at the same instant would leave the choice of signer to row order.
        if now <= old.activates_at {
            return Err(KeyError::JustActivated);
        }
        update_times(
            conn,
            &rows[active].kid,
            KeyTimes {
                retires_at: now,
                expires_at: now + lifetime,
                ..old
            },
        )
        .await?;
        let details = json!({ "reason": "rotate", "replaces": rows[active].kid, "forced": force });
        activate_now(conn, &rows[next].kid, times[next], now, details).await?;
        apply_plan(conn, kek, policy, now, audit::ACTOR_CLI).await?;
        Ok(Promotion {
            active: rows[next].kid.clone(),
        })
    })
    .await
}

/// Makes a published key sign from `now` on, and says why in the audit trail.
async fn activate_now(
    conn: &mut AsyncPgConnection,
    kid: &str,
    times: KeyTimes,
    now: OffsetDateTime,
    details: serde_json::Value,
) -> Result<(), KeyError> {
    let times = KeyTimes {
        activates_at: now,
        ..times
    };
    update_times(conn, kid, times).await?;
    let event = NewAuditEvent::new("key.activated", audit::ACTOR_CLI, now)
        .subject(kid)
        .details(details);
    audit::insert(conn, &event).await?;
    Ok(())
}

/// Withdraws a key at once. If it was signing, the next key takes over now.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    kek: &Kek,
    policy: &KeyPolicy,
    kid: &str,
    reason: &str,
    now: OffsetDateTime,
) -> Result<Promotion, KeyError> {
    conn.transaction(async |conn| {
        lock_and_check(conn, kek).await?;
        let (rows, times) = list_with_times(conn).await?;
        let target = rows
            .iter()
            .position(|r| r.kid == kid)
            .ok_or_else(|| KeyError::UnknownKid(kid.to_owned()))?;
        if rows[target].revoked_at.is_some() {
            return Err(KeyError::AlreadyRevoked(kid.to_owned()));
        }
        let was_active = schedule::active_index(&times, now) == Some(target);
        diesel::update(signing_keys::table.find(kid))
            .set((
                signing_keys::revoked_at.eq(now),
                signing_keys::revoked_reason.eq(reason),
            ))
            .execute(conn)
            .await?;
        audit::insert(
            conn,
            &NewAuditEvent::new("key.revoked", audit::ACTOR_CLI, now)
                .subject(kid)
                .details(json!({ "reason": reason, "was_active": was_active })),
        )
        .await?;
        if was_active && let Some(next) = schedule::next_index(&times, now) {
            // The next key has been published all along, so verifiers already have it.
            let details = json!({ "reason": "revocation", "replaces": kid });
            activate_now(conn, &rows[next].kid, times[next], now, details).await?;
        }
        apply_plan(conn, kek, policy, now, audit::ACTOR_CLI).await?;
        let (rows, times) = list_with_times(conn).await?;
        let active = schedule::active_index(&times, now).ok_or(KeyError::NoActiveKey)?;
        Ok(Promotion {
            active: rows[active].kid.clone(),
        })
    })
    .await
}

/// Stores an existing RSA key as the next key, in place of the one that was waiting.
pub async fn import(
    conn: &mut AsyncPgConnection,
    kek: &Kek,
    policy: &KeyPolicy,
    key: &KeyMaterial,
    now: OffsetDateTime,
) -> Result<KeyTimes, KeyError> {
    conn.transaction(async |conn| {
        lock_and_check(conn, kek).await?;
        apply_plan(conn, kek, policy, now, audit::ACTOR_CLI).await?;
        let (rows, times) = list_with_times(conn).await?;
        if rows.iter().any(|r| r.kid == key.kid) {
            return Err(KeyError::Duplicate(key.kid.clone()));
        }
        let next = schedule::next_index(&times, now).ok_or(KeyError::NoActiveKey)?;
        // Takes the waiting key's place, but is published for the full pre-publication time.
        let activates_at = times[next]
            .activates_at
            .max(now + policy.schedule.prepublish);
        let retires_at = activates_at + policy.schedule.rotation;
        let imported = KeyTimes {
            published_at: now,
            activates_at,
            retires_at,
            expires_at: retires_at + policy.schedule.token_lifetime,
            revoked_at: None,
        };
        diesel::update(signing_keys::table.find(&rows[next].kid))
            .set((
                signing_keys::revoked_at.eq(now),
                signing_keys::revoked_reason.eq(format!("replaced by imported key {}", key.kid)),
            ))
            .execute(conn)
            .await?;
        insert_key(conn, kek, key, "imported", imported, now, audit::ACTOR_CLI).await?;
        apply_plan(conn, kek, policy, now, audit::ACTOR_CLI).await?;
        Ok(imported)
    })
    .await
}

/// Re-seals every stored key under `new_kek`, all or nothing; returns how many.
pub async fn rewrap(
    conn: &mut AsyncPgConnection,
    old_kek: &Kek,
    new_kek: &Kek,
    now: OffsetDateTime,
) -> Result<usize, KeyError> {
    conn.transaction(async |conn| {
        lock_and_check(conn, old_kek).await?;
        let rows = list(conn).await?;
        for row in &rows {
            let der = old_kek.open(&row.kid, &row.seal_nonce, &row.sealed_private_key)?;
            let sealed = new_kek.seal(&row.kid, &der);
            diesel::update(signing_keys::table.find(&row.kid))
                .set((
                    signing_keys::sealed_private_key.eq(&sealed.ciphertext),
                    signing_keys::seal_nonce.eq(sealed.nonce.as_slice()),
                    signing_keys::kek_id.eq(new_kek.id()),
                ))
                .execute(conn)
                .await?;
        }
        audit::insert(
            conn,
            &NewAuditEvent::new("key.rewrapped", audit::ACTOR_CLI, now).details(json!({
                "keys": rows.len(),
                "from_kek_id": old_kek.id(),
                "to_kek_id": new_kek.id(),
            })),
        )
        .await?;
        Ok(rows.len())
    })
    .await
}
