//! What a signed-in person changes about their own account, each after typing the current
//! password again: the password (a cut-off for every other browser and app), the email address
//! (a code to the new one, a notice to the old one, which stays until the new one is proven),
//! and deleting the account (the same as an operator's `users delete`).

use std::net::IpAddr;

use diesel_async::AsyncConnection as _;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::audit::Actor;
use crate::db::{self, DbError};
use crate::mail::letters;
use crate::oauth::sign_in::{Checks, Device, SignInError, sign_in};
use crate::oauth::verification::AccountMail;
use crate::users::codes::{CodeError, Purpose};
use crate::users::name::{Email, Username};
use crate::users::password::{HashError, check_new_password};
use crate::users::{self, EmailTaken, User};

/// How long an email change code works.
pub const CHANGE_CODE_TTL: Duration = Duration::hours(1);
const CHANGE_CODE_TTL_WORDS: &str = "1 hour";

/// Why a change was not made. The messages are the person's to read.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The current password was wrong.
    #[error("Your current password is not right.")]
    WrongPassword,
    /// Too many wrong passwords: the sign-in lockout or limits.
    #[error("Too many failed attempts. Try again later.")]
    TooManyAttempts {
        /// How long until the next is accepted.
        retry_after: Duration,
    },
    /// The new value breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// The code was wrong, used or expired.
    #[error(transparent)]
    Code(#[from] CodeError),
    /// Another account verified that address.
    #[error("Another account already uses that email address.")]
    Taken,
    /// The account is gone or disabled.
    #[error("the account no longer exists")]
    Gone,
    /// Password hashing is saturated; retry shortly.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ChangeError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

/// The account, and proof the person at the keyboard knows its password: checked as a sign-in
/// is (lockout, limits, the audit trail), so a stolen session cannot guess it unhindered.
async fn reauthenticate(
    checks: &Checks<'_>,
    user_id: Uuid,
    password: &str,
    now: OffsetDateTime,
) -> Result<User, ChangeError> {
    let user = {
        let mut conn = db::connect(checks.pool).await?;
        users::find(&mut conn, user_id)
            .await?
            .filter(|u| !u.is_disabled())
            .ok_or(ChangeError::Gone)?
    };
    match sign_in(checks, &user.username, password, Device::Api, now).await {
        Ok(signed) if signed.user.id == user.id => Ok(signed.user),
        Ok(_) | Err(SignInError::WrongCredentials | SignInError::Disabled) => {
            Err(ChangeError::WrongPassword)
        }
        Err(SignInError::Locked { retry_after } | SignInError::RateLimited { retry_after }) => {
            Err(ChangeError::TooManyAttempts { retry_after })
        }
        Err(SignInError::Busy) => Err(HashError::Busy.into()),
        Err(SignInError::Db(e)) => Err(e.into()),
        Err(SignInError::Internal(e)) => Err(HashError::Internal(e).into()),
    }
}

/// A new password: the current one first, the sign-up rules, then the same cut-off as an
/// operator's `set-password` (every session, refresh family and access token ends; the caller
/// signs this browser in again) and a notice to the address, in one transaction. Returns the
/// account as it is now (its new credential version).
pub async fn change_password(
    (checks, mail): (&Checks<'_>, AccountMail<'_>),
    user_id: Uuid,
    (current, new, confirm): (&str, &str, &str),
    now: OffsetDateTime,
) -> Result<User, ChangeError> {
    let user = reauthenticate(checks, user_id, current, now).await?;
    let username =
        Username::parse(&user.username).map_err(|e| ChangeError::Invalid(e.to_string()))?;
    check_new_password(new, &username).map_err(|e| ChangeError::Invalid(e.to_string()))?;
    if new != confirm {
        return Err(ChangeError::Invalid(
            "The two new passwords are different. Type the same password twice.".to_owned(),
        ));
    }
    let hash = checks.hasher.hash(new).await?;
    let by = Actor::user(user.id, Some(checks.ip.into()));
    let mut conn = db::connect(checks.pool).await?;
    conn.transaction(async |conn| {
        users::update_password(conn, user.id, &hash, &by, now).await?;
        if let Some(address) = user.email.as_deref() {
            let notice = letters::password_changed(mail.letterhead, address, &user.username);
            mail.outbox.enqueue(conn, &notice, now).await?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .await?;
    users::find(&mut conn, user.id)
        .await?
        .ok_or(ChangeError::Gone)
}

/// Asks to move the account to `new_address`: the current password first; a code to the new
/// address and a notice to the old one. Nothing changes until the code is presented.
pub async fn request_email_change(
    (checks, mail): (&Checks<'_>, AccountMail<'_>),
    user_id: Uuid,
    (new_address, password): (&str, &str),
    now: OffsetDateTime,
) -> Result<(), ChangeError> {
    let email = match Email::parse_optional(new_address) {
        Ok(Some(email)) => email,
        Ok(None) => {
            return Err(ChangeError::Invalid(
                "Enter the new email address.".to_owned(),
            ));
        }
        Err(e) => return Err(ChangeError::Invalid(e.to_string())),
    };
    let user = reauthenticate(checks, user_id, password, now).await?;
    if user
        .email
        .as_deref()
        .is_some_and(|old| old.eq_ignore_ascii_case(email.as_str()))
        && user.email_verified()
    {
        return Err(ChangeError::Invalid(
            "That is already your address.".to_owned(),
        ));
    }
    let mut conn = db::connect(checks.pool).await?;
    conn.transaction(async |conn| {
        let target = (user.id, Purpose::ChangeEmail, email.as_str());
        let code = mail.codes.issue(conn, target, CHANGE_CODE_TTL, now).await?;
        let letter = letters::email_change_code(
            mail.letterhead,
            email.as_str(),
            code.expose(),
            CHANGE_CODE_TTL_WORDS,
        );
        mail.outbox.enqueue(conn, &letter, now).await?;
        if let Some(old) = user.email.as_deref() {
            let to = (old, user.username.as_str());
            let notice = letters::email_change_asked(mail.letterhead, to, email.as_str());
            mail.outbox.enqueue(conn, &notice, now).await?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .await?;
    Ok(())
}

/// Spends an email change code: the account takes the address it went to, proven; recorded as
/// `user.email_changed`.
pub async fn confirm_email_change(
    pool: &crate::db::DbPool,
    mail: AccountMail<'_>,
    (user_id, ip): (Uuid, IpAddr),
    typed: &str,
    now: OffsetDateTime,
) -> Result<(), ChangeError> {
    let mut conn = db::connect(pool).await?;
    let by = Actor::user(user_id, Some(ip.into()));
    let outcome: Result<Result<(), CodeError>, EmailTaken> = conn
        .transaction(async |conn| {
            let address = match mail
                .codes
                .redeem(conn, user_id, Purpose::ChangeEmail, typed, now)
                .await?
            {
                Ok(address) => address,
                Err(e) => return Ok(Err(e)),
            };
            users::change_email(conn, user_id, &address, &by, now).await?;
            Ok(Ok(()))
        })
        .await;
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(EmailTaken::Taken) => Err(ChangeError::Taken),
        Err(EmailTaken::Db(e)) => Err(e.into()),
    }
}

/// Deletes the person's own account after the password: the same operation as `users delete`
/// (the cut-off, then the account; the audit trail keeps the id).
pub async fn delete_own_account(
    checks: &Checks<'_>,
    user_id: Uuid,
    password: &str,
    now: OffsetDateTime,
) -> Result<(), ChangeError> {
    let user = reauthenticate(checks, user_id, password, now).await?;
    let by = Actor::user(user.id, Some(checks.ip.into()));
    let mut conn = db::connect(checks.pool).await?;
    users::delete(&mut conn, user.id, &by, now).await?;
    Ok(())
}
