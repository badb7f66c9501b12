//! Proving an email address: a mailed code (and a link that only fills it in), spent by a form
//! the person sends from a browser that proved the password; the policy that decides whether a
//! sign-in must wait for it; and resending within limits.

use std::net::IpAddr;

use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::audit::Actor;
use crate::db::{self, DbError, DbPool};
use crate::mail::letters::{self, Letterhead};
use crate::mail::outbox::Outbox;
use crate::rate_limits::{Key, Limit, Limits};
use crate::users::codes::{CodeError, CodeKey, Purpose};
use crate::users::{self, EmailTaken, User};

/// How long a verification code works: long enough to find the mail, short enough that an old
/// mailbox holds nothing usable.
pub const CODE_TTL: Duration = Duration::hours(1);
const CODE_TTL_WORDS: &str = "1 hour";

/// `KEYWARD_EMAIL_VERIFICATION`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Addresses are never verified; no code is sent (`email_verified` is always false).
    Off,
    /// A code is sent at sign-up; people may verify later from their account page.
    Optional,
    /// A sign-in (or sign-up) with an unverified address finishes only once it is verified.
    Required,
}

impl Policy {
    /// Parses the setting's value.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "off" => Ok(Self::Off),
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            other => Err(format!("'{other}' is not off, optional or required")),
        }
    }

    /// Whether `user` must verify their address before a sign-in finishes. An account without
    /// an address (made by an operator) has nothing to verify.
    #[must_use]
    pub fn must_verify(self, user: &User) -> bool {
        self == Self::Required && user.email.is_some() && !user.email_verified()
    }
}

/// What account mail needs: the outbox, the letterhead and the code key.
#[derive(Clone, Copy)]
#[expect(
    missing_debug_implementations,
    reason = "holds keys, which have no Debug worth printing"
)]
pub struct AccountMail<'a> {
    /// Where letters are queued.
    pub outbox: &'a Outbox,
    /// What they are signed with.
    pub letterhead: &'a Letterhead,
    /// How codes are stored.
    pub codes: &'a CodeKey,
}

/// Why a code was not accepted or not sent.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The account has no address to verify, or it is verified already.
    #[error("There is no email address to confirm.")]
    NothingToVerify,
    /// The code was wrong, used or expired.
    #[error(transparent)]
    Code(#[from] CodeError),
    /// Another account verified this address first.
    #[error("Another account already uses that email address. Change yours on your account page.")]
    Taken,
    /// Too many codes asked for.
    #[error("too many codes sent")]
    RateLimited {
        /// How long until the next is accepted.
        retry_after: Duration,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for VerifyError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

/// Queues what proves `user`'s address, inside the caller's transaction: a code, or, when
/// another account verified that address, a notice to its owner instead (the page says the same
/// either way, so only the owner learns the address is taken). Nothing for an account without an
/// address, or with `Policy::Off`.
pub async fn send_code(
    conn: &mut AsyncPgConnection,
    mail: AccountMail<'_>,
    user: &User,
    now: OffsetDateTime,
) -> diesel::QueryResult<()> {
    let Some(address) = user.email.as_deref() else {
        return Ok(());
    };
    if user.email_verified() {
        return Ok(());
    }
    let owner = users::find_by_verified_email(conn, address).await?;
    let letter = if owner.is_some_and(|o| o.id != user.id) {
        letters::address_in_use(mail.letterhead, address)
    } else {
        let code = mail
            .codes
            .issue(
                conn,
                (user.id, Purpose::VerifyEmail, address),
                CODE_TTL,
                now,
            )
            .await?;
        letters::verify_email(mail.letterhead, address, code.expose(), CODE_TTL_WORDS)
    };
    mail.outbox.enqueue(conn, &letter, now).await?;
    Ok(())
}

/// Sends a code if none is live (a sign-in that must wait for verification): a person who lost
/// the first mail gets one, and repeated sign-ins do not flood the mailbox.
pub async fn ensure_code_sent(
    pool: &DbPool,
    mail: AccountMail<'_>,
    user: &User,
    now: OffsetDateTime,
) -> Result<(), DbError> {
    let mut conn = db::connect(pool).await?;
    conn.transaction(async |conn| {
        if users::codes::live_since(conn, user.id, Purpose::VerifyEmail, now)
            .await?
            .is_none()
        {
            send_code(conn, mail, user, now).await?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .await?;
    Ok(())
}

/// "Send a new code": within the per-account and per-address limits on account mail.
pub async fn resend(
    pool: &DbPool,
    mail: AccountMail<'_>,
    limits: &Limits,
    (user_id, ip): (Uuid, IpAddr),
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    let mut conn = db::connect(pool).await?;
    let user = users::find(&mut conn, user_id)
        .await?
        .filter(|u| u.email.is_some() && !u.email_verified())
        .ok_or(VerifyError::NothingToVerify)?;
    for (limit, key) in [
        (Limit::MailPerAccount, Key::account(user.id)),
        (Limit::MailPerIp, Key::ip(ip)),
    ] {
        if let Err(blocked) = limits.take(&mut conn, limit, &key, now).await? {
            return Err(VerifyError::RateLimited {
                retry_after: blocked.retry_after,
            });
        }
    }
    conn.transaction(async |conn| send_code(conn, mail, &user, now).await)
        .await?;
    Ok(())
}

/// Spends `typed` for `user_id` and marks the address it was sent to verified, in one
/// transaction; the account as it is now.
pub async fn confirm(
    pool: &DbPool,
    codes: &CodeKey,
    (user_id, ip): (Uuid, IpAddr),
    typed: &str,
    now: OffsetDateTime,
) -> Result<User, VerifyError> {
    let mut conn = db::connect(pool).await?;
    let by = Actor::user(user_id, Some(ip.into()));
    let outcome = conn
        .transaction(async |conn| {
            let email = match codes
                .redeem(conn, user_id, Purpose::VerifyEmail, typed, now)
                .await?
            {
                Ok(email) => email,
                // The attempt is counted: commit it.
                Err(e) => return Ok(Err(VerifyError::Code(e))),
            };
            match users::mark_email_verified(conn, user_id, &email, &by, now).await {
                Ok(true) => Ok(Ok(())),
                // The account's address changed since the code was sent.
                Ok(false) => Ok(Err(VerifyError::Code(CodeError::NoCode))),
                Err(EmailTaken::Taken) => Err(TakenOrDb::Taken),
                Err(EmailTaken::Db(e)) => Err(TakenOrDb::Db(e)),
            }
        })
        .await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(TakenOrDb::Taken) => return Err(VerifyError::Taken),
        Err(TakenOrDb::Db(e)) => return Err(e.into()),
    }
    users::find(&mut conn, user_id)
        .await?
        .ok_or(VerifyError::NothingToVerify)
}

/// What rolls the confirmation back: a taken address (the code stays unspent) or the database.
enum TakenOrDb {
    Taken,
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for TakenOrDb {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e)
    }
}

/// What a code field may be filled in with from a link: digits, spaces and dashes, briefly.
#[must_use]
pub fn prefill(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_digit() || *c == ' ' || *c == '-')
        .take(16)
        .collect()
}

/// Whose address a browser may verify: its signed-in user (`false`), or the user whose sign-in
/// waits for it (`true`), unless a cut-off (password change, disabling) happened since the
/// password was checked.
pub async fn whose(
    pool: &DbPool,
    signed_in: Option<Uuid>,
    waiting: Option<(Uuid, i32)>,
) -> Result<Option<(User, bool)>, DbError> {
    let mut conn = db::connect(pool).await?;
    if let Some(id) = signed_in {
        return Ok(users::find(&mut conn, id).await?.map(|u| (u, false)));
    }
    let Some((id, version)) = waiting else {
        return Ok(None);
    };
    let user = users::find(&mut conn, id).await?;
    Ok(user
        .filter(|u| u.credential_version == version && !u.is_disabled())
        .map(|u| (u, true)))
}
