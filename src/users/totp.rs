//! An authenticator app as a second factor (RFC 6238 TOTP through `totp-rs`): a secret sealed
//! under the KEK, enrolled with a confirming code, and each code accepted once.

use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use totp_rs::{Algorithm, Builder, Totp};
use uuid::Uuid;

use crate::audit::Actor;
use crate::db::schema::totp_factors;
use crate::keys::kek::Kek;
use crate::keys::store::KeyError;

/// 160 bits: the HMAC-SHA1 key length RFC 4226 §4 recommends.
const SECRET_BYTES: usize = 20;
/// RFC 6238 §5.2: the step every authenticator app uses by default.
const STEP_SECONDS: u64 = 30;
/// One step either way (RFC 6238 §6: "at most one time step" of drift is the recommendation).
const SKEW_STEPS: u16 = 1;

/// Why a typed code was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// No app is set up (or it is still being set up, for a sign-in).
    #[error("No authenticator app is set up for this account.")]
    NotEnrolled,
    /// Not the code of this step, the one before or the one after.
    #[error("That code is not right. Type the six digits your authenticator app shows now.")]
    Wrong,
    /// The code of a step already accepted (RFC 6238 §5.2: a code is accepted once).
    #[error("That code was already used. Wait for your app to show the next one.")]
    Used,
}

/// What the person's app needs to be set up: the `otpauth://` URI (for the QR code) and the
/// secret in base32 (to type in instead).
#[derive(Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// `otpauth://totp/...`.
    pub uri: String,
    /// The secret, base32 without padding, in groups of four.
    pub secret: String,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrolment(<redacted>)")
    }
}

/// How an app labels the account: the service's name and the person's.
#[derive(Clone, Copy, Debug)]
pub struct Label<'a> {
    /// The issuer shown in the app (the product name).
    pub issuer: &'a str,
    /// The account name shown in the app (the username).
    pub account: &'a str,
}

/// The label a secret is sealed under: it cannot be moved to another account's row.
fn seal_label(user_id: Uuid) -> String {
    format!("totp {user_id}")
}

fn totp(secret: Vec<u8>, label: Option<Label<'_>>) -> Totp {
    let mut builder = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(STEP_SECONDS)
        .with_skew(SKEW_STEPS)
        .with_secret(secret);
    if let Some(label) = label {
        // ':' separates issuer and account in the URI's label (Key Uri Format).
        builder = builder
            .with_issuer(Some(label.issuer.replace(':', " ")))
            .with_account_name(label.account.replace(':', " "));
    }
    builder
        .build()
        .unwrap_or_else(|e| unreachable!("160-bit SHA-1 6-digit TOTP is RFC 6238: {e}"))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = totp_factors)]
struct Row {
    sealed_secret: Vec<u8>,
    seal_nonce: Vec<u8>,
    confirmed_at: Option<OffsetDateTime>,
}

impl Row {
    fn open(&self, kek: &Kek, user_id: Uuid) -> Option<Vec<u8>> {
        kek.open(&seal_label(user_id), &self.seal_nonce, &self.sealed_secret)
            .inspect_err(|e| tracing::error!(error = %e, %user_id, "a TOTP secret did not open"))
            .ok()
    }
}

async fn find(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Option<Row>> {
    totp_factors::table
        .find(user_id)
        .select(Row::as_select())
        .first(conn)
        .await
        .optional()
}

/// Whether the person has a confirmed app.
pub async fn is_enrolled(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<bool> {
    Ok(find(conn, user_id)
        .await?
        .is_some_and(|r| r.confirmed_at.is_some()))
}

/// Starts setting up an app, or shows the one being set up again: a new secret when there is
/// none yet. `None` when an app is already confirmed (remove it first).
pub async fn begin(
    conn: &mut AsyncPgConnection,
    kek: &Kek,
    user_id: Uuid,
    label: Label<'_>,
    now: OffsetDateTime,
) -> QueryResult<Option<Enrolment>> {
    let existing = match find(conn, user_id).await? {
        Some(row) if row.confirmed_at.is_some() => return Ok(None),
        Some(row) => row.open(kek, user_id),
        None => None,
    };
    let secret = if let Some(s) = existing {
        s
    } else {
        {
            let secret = crate::crypto::random_bytes::<SECRET_BYTES>().to_vec();
            let sealed = kek.seal(&seal_label(user_id), &secret);
            // An unconfirmed row that no longer opens (another KEK) is started over; a confirmed
            // app is never overwritten here.
            diesel::delete(
                totp_factors::table
                    .find(user_id)
                    .filter(totp_factors::confirmed_at.is_null()),
            )
            .execute(conn)
            .await?;
            let n = diesel::insert_into(totp_factors::table)
                .values((
                    totp_factors::user_id.eq(user_id),
                    totp_factors::sealed_secret.eq(&sealed.ciphertext),
                    totp_factors::seal_nonce.eq(sealed.nonce.as_slice()),
                    totp_factors::kek_id.eq(kek.id()),
                    totp_factors::created_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if n == 0 {
                // Another request of this person's started (or finished) at the same moment.
                return match find(conn, user_id).await? {
                    Some(row) if row.confirmed_at.is_none() => {
                        Ok(row.open(kek, user_id).map(|s| enrolment(s, label)))
                    }
                    _ => Ok(None),
                };
            }
            secret
        }
    };
    Ok(Some(enrolment(secret, label)))
}

/// The URI and typed form of `secret`.
fn enrolment(secret: Vec<u8>, label: Label<'_>) -> Enrolment {
    let totp = totp(secret, Some(label));
    let uri = totp
        .to_url()
        .unwrap_or_else(|e| unreachable!("a labelled TOTP has a URI: {e}"));
    let plain = totp.secret().to_base32();
    let secret = plain
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Enrolment { uri, secret }
}

/// The time step `typed` is the code of, within one step of `now` (RFC 6238 §6), judged with the
/// sealed secret; spaces are ignored.
fn matching_step(secret: Vec<u8>, typed: &str, now: OffsetDateTime) -> Option<i64> {
    let typed: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    let unix = u64::try_from(now.unix_timestamp()).ok()?;
    // `check` compares in constant time (totp-rs `Token`) and returns the matched step.
    let step = totp(secret, None).check(&typed, unix)?;
    i64::try_from(step).ok()
}

/// Confirms the app being set up with a code it shows: from then on it is a factor. The code's
/// step counts as used. Recorded as `mfa.totp_added`.
pub async fn confirm(
    conn: &mut AsyncPgConnection,
    kek: &Kek,
    (user_id, typed): (Uuid, &str),
    by: &Actor,
    now: OffsetDateTime,
) -> Result<(), TotpConfirmError> {
    let row = find(conn, user_id).await?;
    let Some(row) = row.filter(|r| r.confirmed_at.is_none()) else {
        return Err(TotpError::NotEnrolled.into());
    };
    let secret = row.open(kek, user_id).ok_or(TotpError::NotEnrolled)?;
    let step = matching_step(secret, typed, now).ok_or(TotpError::Wrong)?;
    let confirmed = conn
        .transaction(async |conn| {
            let n = diesel::update(
                totp_factors::table
                    .find(user_id)
                    .filter(totp_factors::confirmed_at.is_null()),
            )
            .set((
                totp_factors::confirmed_at.eq(now),
                totp_factors::last_step.eq(step),
            ))
            .execute(conn)
            .await?;
            if n == 1 {
                let details = serde_json::json!({});
                super::record(conn, by, "mfa.totp_added", user_id, details, now).await?;
            }
            Ok::<_, diesel::result::Error>(n == 1)
        })
        .await?;
    if confirmed {
        Ok(())
    } else {
        Err(TotpError::NotEnrolled.into())
    }
}

/// Why [`confirm`] or [`verify`] failed: the person's code, or the database.
#[derive(Debug, thiserror::Error)]
pub enum TotpConfirmError {
    /// The code.
    #[error(transparent)]
    Code(#[from] TotpError),
    /// The database.
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// Accepts `typed` as a second factor for `user_id`: the code of the current step or one either
/// side, and of a later step than any accepted before. The step is recorded by a conditional
/// update, so of two requests racing with one code (or a code and an older one) one wins.
pub async fn verify(
    conn: &mut AsyncPgConnection,
    kek: &Kek,
    user_id: Uuid,
    typed: &str,
    now: OffsetDateTime,
) -> Result<(), TotpConfirmError> {
    let row = find(conn, user_id).await?;
    let Some(row) = row.filter(|r| r.confirmed_at.is_some()) else {
        return Err(TotpError::NotEnrolled.into());
    };
    let secret = row.open(kek, user_id).ok_or(TotpError::NotEnrolled)?;
    let step = matching_step(secret, typed, now).ok_or(TotpError::Wrong)?;
    let n = diesel::update(
        totp_factors::table
            .find(user_id)
            .filter(totp_factors::confirmed_at.is_not_null())
            .filter(
                totp_factors::last_step
                    .is_null()
                    .or(totp_factors::last_step.lt(step)),
            ),
    )
    .set(totp_factors::last_step.eq(step))
    .execute(conn)
    .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(TotpError::Used.into())
    }
}

/// Removes the app (confirmed or not); recorded as `mfa.totp_removed` when one was confirmed.
/// Returns whether a confirmed app was removed.
pub async fn remove(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<bool> {
    conn.transaction(async |conn| {
        let confirmed: Vec<Option<OffsetDateTime>> =
            diesel::delete(totp_factors::table.find(user_id))
                .returning(totp_factors::confirmed_at)
                .get_results(conn)
                .await?;
        let removed = confirmed.iter().any(Option::is_some);
        if removed {
            super::record(
                conn,
                by,
                "mfa.totp_removed",
                user_id,
                serde_json::json!({}),
                now,
            )
            .await?;
        }
        Ok(removed)
    })
    .await
}

/// Re-seals every stored secret under `new_kek` (inside the caller's transaction); returns how
/// many.
pub async fn rewrap(
    conn: &mut AsyncPgConnection,
    old_kek: &Kek,
    new_kek: &Kek,
) -> Result<usize, KeyError> {
    let rows: Vec<(Uuid, Vec<u8>, Vec<u8>)> = totp_factors::table
        .select((
            totp_factors::user_id,
            totp_factors::sealed_secret,
            totp_factors::seal_nonce,
        ))
        .for_update()
        .load(conn)
        .await?;
    for (user_id, sealed, nonce) in &rows {
        let label = seal_label(*user_id);
        let secret = old_kek.open(&label, nonce, sealed)?;
        let resealed = new_kek.seal(&label, &secret);
        diesel::update(totp_factors::table.find(user_id))
            .set((
                totp_factors::sealed_secret.eq(&resealed.ciphertext),
                totp_factors::seal_nonce.eq(resealed.nonce.as_slice()),
                totp_factors::kek_id.eq(new_kek.id()),
            ))
            .execute(conn)
            .await?;
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B's SHA-1 secret and vectors (8 digits there; the last 6 here).
    #[test]
    fn codes_match_rfc_6238_and_one_step_of_drift_either_way() {
        let secret = b"12345678901234567890".to_vec();
        let at = |t: i64| OffsetDateTime::from_unix_timestamp(t).expect("valid");
        assert_eq!(matching_step(secret.clone(), "287082", at(59)), Some(1));
        assert_eq!(
            matching_step(secret.clone(), "081804", at(1_111_111_109)),
            Some(37_037_036)
        );
        assert_eq!(
            matching_step(secret.clone(), "081 804", at(1_111_111_109 + 30)),
            Some(37_037_036),
            "one step late"
        );
        assert_eq!(
            matching_step(secret.clone(), "081804", at(1_111_111_109 - 30)),
            Some(37_037_036),
            "one step early"
        );
        assert_eq!(
            matching_step(secret.clone(), "081804", at(1_111_111_109 + 60)),
            None
        );
        assert_eq!(matching_step(secret.clone(), "000000", at(59)), None);
        assert_eq!(matching_step(secret, "28708", at(59)), None);
    }
}
