//! Forgotten passwords (OWASP Forgot Password cheat sheet): a request that does the same work
//! whether or not an account matches (it is queued and resolved in the background), a mailed
//! code that changes nothing until it is presented, and a reset that is the same cut-off as a
//! password change, proves the address, and tells the owner.

use std::net::IpAddr;

use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use time::{Duration, OffsetDateTime};

use crate::audit::Actor;
use crate::db::{self, DbError, DbPool};
use crate::mail::letters;
use crate::oauth::verification::AccountMail;
use crate::rate_limits::{Key, Limit, Limits};
use crate::users::codes::{CodeError, CodeKey, Purpose};
use crate::users::name::Username;
use crate::users::password::{HashError, PasswordHasher, check_new_password};
use crate::users::{self, EmailTaken, User, reset_requests};

/// How long a reset code works (OWASP: short-lived).
pub const CODE_TTL: Duration = Duration::minutes(15);
const CODE_TTL_WORDS: &str = "15 minutes";
/// Requests resolved per round.
const BATCH: i64 = 20;

/// Why a request was not queued.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Too many requests for what was typed or from this address.
    #[error("too many reset requests")]
    RateLimited {
        /// How long until the next is accepted.
        retry_after: Duration,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for RequestError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

/// Why a reset did not go through.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The code was wrong, used or expired, or no account matches (the same words).
    #[error(transparent)]
    Code(#[from] CodeError),
    /// The new password breaks a rule; the message says which and how.
    #[error("{0}")]
    Password(String),
    /// Password hashing is saturated; retry shortly.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for RecoveryError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

/// "Forgot your password?": counted against the address and what was typed, then queued. The
/// same statements run whatever `identifier` names, so neither the answer nor its timing says
/// whether an account exists; the background step ([`resolve_requests`]) mails the code.
pub async fn request(
    pool: &DbPool,
    limits: &Limits,
    identifier: &str,
    ip: IpAddr,
    now: OffsetDateTime,
) -> Result<(), RequestError> {
    let identifier = identifier.trim();
    let mut conn = db::connect(pool).await?;
    // Keyed by what was typed, known or not: the same count for both.
    let typed = Key::identifier(&identifier.to_lowercase());
    for (limit, key) in [
        (Limit::MailPerIp, Key::ip(ip)),
        (Limit::MailPerAccount, typed),
    ] {
        if let Err(blocked) = limits.take(&mut conn, limit, &key, now).await? {
            return Err(RequestError::RateLimited {
                retry_after: blocked.retry_after,
            });
        }
    }
    if !identifier.is_empty() {
        reset_requests::queue(&mut conn, identifier, now).await?;
    }
    Ok(())
}

/// Resolves queued requests: for each that names an account with an address, a code (any
/// earlier one ends) and its mail, in the transaction that takes the request; for the others,
/// nothing. Returns how many were taken.
pub async fn resolve_requests(
    pool: &DbPool,
    mail: AccountMail<'_>,
    limits: &Limits,
    now: OffsetDateTime,
) -> Result<usize, DbError> {
    let mut conn = db::connect(pool).await?;
    let taken = conn
        .transaction(async |conn| {
            let identifiers = reset_requests::take(conn, BATCH).await?;
            for identifier in &identifiers {
                let Some(user) = account_named(conn, identifier).await? else {
                    continue;
                };
                let (Some(address), false) = (user.email.as_deref(), user.is_disabled()) else {
                    continue;
                };
                // Per account too, whichever name or address the requests typed.
                let key = Key::account(user.id);
                if limits
                    .take(conn, Limit::MailPerAccount, &key, now)
                    .await?
                    .is_err()
                {
                    continue;
                }
                let purpose = (user.id, Purpose::ResetPassword, address);
                let code = mail.codes.issue(conn, purpose, CODE_TTL, now).await?;
                let to = (address, user.username.as_str());
                let letter =
                    letters::password_reset(mail.letterhead, to, code.expose(), CODE_TTL_WORDS);
                mail.outbox.enqueue(conn, &letter, now).await?;
            }
            Ok::<_, diesel::result::Error>(identifiers.len())
        })
        .await?;
    Ok(taken)
}

/// An operator's reset (`keyward users send-reset`): a code to `user`'s address now, recorded as
/// `user.reset_sent` by `by`, in one transaction; the address, or `None` without one.
pub async fn send_reset(
    conn: &mut AsyncPgConnection,
    mail: AccountMail<'_>,
    user: &User,
    by: &Actor,
    now: OffsetDateTime,
) -> diesel::QueryResult<Option<String>> {
    let Some(address) = user.email.clone() else {
        return Ok(None);
    };
    conn.transaction(async |conn| {
        let purpose = (user.id, Purpose::ResetPassword, address.as_str());
        let code = mail.codes.issue(conn, purpose, CODE_TTL, now).await?;
        let to = (address.as_str(), user.username.as_str());
        let letter = letters::password_reset(mail.letterhead, to, code.expose(), CODE_TTL_WORDS);
        mail.outbox.enqueue(conn, &letter, now).await?;
        let event = by.event("user.reset_sent", now).user(user.id);
        crate::audit::insert(conn, &event).await
    })
    .await?;
    Ok(Some(address))
}

/// The account `identifier` names: a username, or an address some account verified (only a
/// verified address names one account).
async fn account_named(
    conn: &mut AsyncPgConnection,
    identifier: &str,
) -> diesel::QueryResult<Option<User>> {
    if identifier.contains('@') {
        return users::find_by_verified_email(conn, identifier).await;
    }
    match Username::parse(identifier) {
        Ok(username) => users::find_by_username(conn, &username).await,
        Err(_) => Ok(None),
    }
}

/// What the reset form carries.
#[derive(Clone, Copy, Debug)]
pub struct Reset<'a> {
    /// The username or address typed at the request.
    pub identifier: &'a str,
    /// The mailed code.
    pub code: &'a str,
    /// The new password.
    pub password: &'a str,
    /// The new password again.
    pub password_confirm: &'a str,
}

/// Sets the new password if the code is right: the same cut-off as a password change (every
/// session, refresh family and access token ends), the address the code went to is proven,
/// and the owner gets a notice; all in one transaction. The person then signs in as usual.
pub async fn reset(
    (pool, hasher, mail): (&DbPool, &PasswordHasher, AccountMail<'_>),
    form: &Reset<'_>,
    ip: IpAddr,
    now: OffsetDateTime,
) -> Result<User, RecoveryError> {
    let user = {
        let mut conn = db::connect(pool).await?;
        let user = account_named(&mut conn, form.identifier.trim()).await?;
        // No hash is spent without a live code to try.
        match user {
            Some(u)
                if users::codes::live_since(&mut conn, u.id, Purpose::ResetPassword, now)
                    .await?
                    .is_some() =>
            {
                u
            }
            _ => return Err(CodeError::NoCode.into()),
        }
    };
    let username =
        Username::parse(&user.username).map_err(|e| RecoveryError::Password(e.to_string()))?;
    check_new_password(form.password, &username)
        .map_err(|e| RecoveryError::Password(e.to_string()))?;
    if form.password != form.password_confirm {
        return Err(RecoveryError::Password(
            "The two passwords are different. Type the same password twice.".to_owned(),
        ));
    }
    let hash = hasher.hash(form.password).await?;
    let mut conn = db::connect(pool).await?;
    let by = Actor::user(user.id, Some(ip.into()));
    let codes: &CodeKey = mail.codes;
    let outcome = conn
        .transaction(async |conn| {
            let email = match codes
                .redeem(conn, user.id, Purpose::ResetPassword, form.code, now)
                .await?
            {
                Ok(email) => email,
                // The wrong try is counted: commit it.
                Err(e) => return Ok(Err(e)),
            };
            users::update_password(conn, user.id, &hash, &by, now).await?;
            // The code reached this address: it is proven, unless another account verified it
            // meanwhile (then it stays unverified here; the reset still counts).
            match users::mark_email_verified(conn, user.id, &email, &by, now).await {
                Ok(_) | Err(EmailTaken::Taken) => {}
                Err(EmailTaken::Db(e)) => return Err(e),
            }
            let notice = letters::password_changed(mail.letterhead, &email, &user.username);
            mail.outbox.enqueue(conn, &notice, now).await?;
            Ok(Ok(()))
        })
        .await?;
    outcome?;
    Ok(user)
}
