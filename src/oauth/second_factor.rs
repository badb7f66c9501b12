//! Second factors: what a sign-in still needs after the password, proving a factor (a code from
//! an authenticator app or a recovery code, counted into the lockout), and setting one up or
//! removing it from the account page, each audited and mailed to the owner.

use std::net::IpAddr;

use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use time::{Duration, OffsetDateTime};

use crate::audit::Actor;
use crate::auth_methods::{AuthMethods, Method};
use crate::db::{self, DbError, DbPool};
use crate::keys::kek::Kek;
use crate::mail::letters::{self, FactorChange};
use crate::oauth::sign_in::{HeldAttempt, SignInError};
use crate::oauth::verification::AccountMail;
use crate::users::User;
use crate::users::factors::{self, Factors};
use crate::users::lockout::{LockoutPolicy, Outcome};
use crate::users::recovery_codes::{self, FEW_LEFT, RecoveryCode};
use crate::users::totp::{self, Enrolment, Label, TotpConfirmError, TotpError};

/// How long a person who proved the password has to prove the second factor.
pub const SECOND_STEP_TTL: Duration = Duration::minutes(15);

/// `KEYWARD_MFA`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// People choose whether to set up a second factor; apps may ask for one.
    #[default]
    Optional,
    /// Everyone signs in with a second factor; a person without one sets one up at sign-in.
    Required,
}

impl Policy {
    /// Parses the setting's value.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            other => Err(format!("'{other}' is not optional or required")),
        }
    }
}

/// What a sign-in needs next, once `methods` are proven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The person has a factor and has not proven it: ask for it.
    SecondFactor,
    /// A second factor is demanded (by the policy, the app or the request) and the person has
    /// none: they set one up now.
    SetUp,
    /// Nothing more.
    Done,
}

/// What comes after `methods` for `user_id`: anyone with a factor always proves it; someone
/// without one sets one up when `demanded` (the request's client or `acr_values`) or the
/// policy requires it.
pub async fn next(
    conn: &mut AsyncPgConnection,
    policy: Policy,
    user_id: uuid::Uuid,
    methods: &AuthMethods,
    demanded: bool,
) -> diesel::QueryResult<Next> {
    if methods.is_multi_factor() {
        return Ok(Next::Done);
    }
    Ok(if factors::has_any(conn, user_id).await? {
        Next::SecondFactor
    } else if demanded || policy == Policy::Required {
        Next::SetUp
    } else {
        Next::Done
    })
}

/// What second factors `user_id` has, for the page that offers them.
pub async fn factors_of(pool: &DbPool, user_id: uuid::Uuid) -> Result<Factors, DbError> {
    let mut conn = db::connect(pool).await?;
    Ok(factors::of(&mut conn, user_id).await?)
}

/// Whether `user_id` has a second factor to prove, for the pages that ask for one.
pub async fn has_factor(pool: &DbPool, user_id: uuid::Uuid) -> Result<bool, DbError> {
    let mut conn = db::connect(pool).await?;
    Ok(factors::has_any(&mut conn, user_id).await?)
}

/// A second factor as typed on a page.
#[derive(Clone, Copy, Debug)]
pub enum Proof<'a> {
    /// The code an authenticator app shows.
    Code(&'a str),
    /// One of the recovery codes.
    RecoveryCode(&'a str),
}

/// Why a factor was not accepted or changed. The messages are the person's to read.
#[derive(Debug, thiserror::Error)]
pub enum FactorError {
    /// The code was wrong, used, or there is no app.
    #[error(transparent)]
    Code(#[from] TotpError),
    /// Not one of their unused recovery codes.
    #[error("That recovery code is not right, or it was already used.")]
    WrongRecoveryCode,
    /// Too many wrong codes.
    #[error("Too many wrong codes. Try again later.")]
    Locked {
        /// How long until the next is accepted.
        retry_after: Duration,
    },
    /// Too many attempts at once; retry shortly.
    #[error("too many attempts at once")]
    Busy,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for FactorError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

impl From<TotpConfirmError> for FactorError {
    fn from(e: TotpConfirmError) -> Self {
        match e {
            TotpConfirmError::Code(c) => Self::Code(c),
            TotpConfirmError::Db(d) => d.into(),
        }
    }
}

/// What factors are checked with.
#[derive(Clone, Copy)]
#[expect(
    missing_debug_implementations,
    reason = "holds the pool and the KEK, which have no Debug worth printing"
)]
pub struct FactorChecks<'a> {
    /// The pool.
    pub pool: &'a DbPool,
    /// Opens the sealed TOTP secrets.
    pub kek: &'a Kek,
    /// The lockout wrong codes count into.
    pub lockout: LockoutPolicy,
    /// Where notices go.
    pub mail: AccountMail<'a>,
    /// The person's address.
    pub ip: IpAddr,
}

impl FactorChecks<'_> {
    fn by(&self, user: &User) -> Actor {
        Actor::user(user.id, Some(self.ip.into()))
    }
}

/// Mails `change` to the owner, if they have an address, inside the caller's transaction.
pub(crate) async fn notify(
    conn: &mut AsyncPgConnection,
    mail: AccountMail<'_>,
    user: &User,
    change: FactorChange,
    now: OffsetDateTime,
) -> diesel::QueryResult<()> {
    let Some(address) = user.email.as_deref() else {
        return Ok(());
    };
    let letter = letters::factor_notice(mail.letterhead, address, &user.username, change);
    mail.outbox.enqueue(conn, &letter, now).await.map(|_| ())
}

/// The lockout key of a person's second factor: apart from the username's, so a thief with
/// the password cannot use the password's lockout to hide guesses at the code, and the other
/// way round.
fn lockout_key(user: &User) -> String {
    format!("second factor {}", user.id)
}

/// Proves a second factor for `user`: counted into the lockout (a hold is taken first, so
/// parallel guesses cannot pass the threshold), recorded (`mfa.verified` or `mfa.failed`), and
/// a used recovery code is mailed to the owner. Returns the methods the proof adds.
pub async fn prove(
    checks: &FactorChecks<'_>,
    user: &User,
    proof: Proof<'_>,
    now: OffsetDateTime,
) -> Result<Vec<Method>, FactorError> {
    let hold = HeldAttempt::take(checks.pool, checks.lockout, &lockout_key(user), now)
        .await
        .map_err(|e| match e {
            SignInError::Locked { retry_after } => FactorError::Locked { retry_after },
            SignInError::Db(e) => FactorError::Db(e),
            _ => FactorError::Busy,
        })?;
    let result = judge(checks, user, proof, now).await;
    let kind = match proof {
        Proof::Code(_) => "totp",
        Proof::RecoveryCode(_) => "recovery_code",
    };
    let (outcome, event) = match &result {
        Ok(_) => (Outcome::Succeeded, "mfa.verified"),
        Err(FactorError::Code(_) | FactorError::WrongRecoveryCode) => {
            (Outcome::Failed, "mfa.failed")
        }
        Err(_) => {
            drop(hold);
            return result;
        }
    };
    hold.end(outcome).await.map_err(|e| match e {
        SignInError::Db(e) => FactorError::Db(e),
        _ => FactorError::Busy,
    })?;
    let mut conn = db::connect(checks.pool).await?;
    let by = checks.by(user);
    let details = serde_json::json!({ "factor": kind });
    let event = by.event(event, now).user(user.id).details(details);
    crate::audit::insert(&mut conn, &event).await?;
    result
}

async fn judge(
    checks: &FactorChecks<'_>,
    user: &User,
    proof: Proof<'_>,
    now: OffsetDateTime,
) -> Result<Vec<Method>, FactorError> {
    let mut conn = db::connect(checks.pool).await?;
    match proof {
        Proof::Code(code) => {
            totp::verify(&mut conn, checks.kek, user.id, code, now).await?;
            Ok(vec![Method::Otp])
        }
        Proof::RecoveryCode(code) => {
            let by = checks.by(user);
            let spent = conn
                .transaction(async |conn| {
                    let left = recovery_codes::spend(conn, user.id, code, &by, now).await?;
                    if let Some(left) = left {
                        let few = left <= FEW_LEFT;
                        let change = FactorChange::RecoveryCodeUsed { left, few };
                        notify(conn, checks.mail, user, change, now).await?;
                    }
                    Ok::<_, diesel::result::Error>(left)
                })
                .await?;
            match spent {
                Some(_) => Ok(vec![Method::Otp]),
                None => Err(FactorError::WrongRecoveryCode),
            }
        }
    }
}

/// Starts setting up an authenticator app for `user`, labelled with `issuer` (the product
/// name); `None` when one is set up already.
pub async fn begin_app(
    pool: &DbPool,
    kek: &Kek,
    user: &User,
    issuer: &str,
    now: OffsetDateTime,
) -> Result<Option<Enrolment>, DbError> {
    let mut conn = db::connect(pool).await?;
    let label = Label {
        issuer,
        account: &user.username,
    };
    Ok(totp::begin(&mut conn, kek, user.id, label, now).await?)
}

/// Confirms the app being set up with a code it shows; mails the owner. Returns the recovery
/// codes to show once when the person had none (their first factor).
pub async fn confirm_app(
    checks: &FactorChecks<'_>,
    user: &User,
    code: &str,
    now: OffsetDateTime,
) -> Result<Option<Vec<RecoveryCode>>, FactorError> {
    let mut conn = db::connect(checks.pool).await?;
    let by = checks.by(user);
    let codes = conn
        .transaction(async |conn| {
            totp::confirm(conn, checks.kek, (user.id, code), &by, now).await?;
            let codes = if recovery_codes::left(conn, user.id).await? == 0 {
                Some(recovery_codes::replace(conn, user.id, &by, now).await?)
            } else {
                None
            };
            notify(conn, checks.mail, user, FactorChange::AppAdded, now).await?;
            Ok::<_, FactorError>(codes)
        })
        .await?;
    Ok(codes)
}

/// Removes the app after a fresh proof with it (a current code) or a recovery code; with no
/// factor left (no passkey either) the recovery codes go too. Mailed to the owner.
pub async fn remove_app(
    checks: &FactorChecks<'_>,
    user: &User,
    proof: Proof<'_>,
    now: OffsetDateTime,
) -> Result<(), FactorError> {
    prove(checks, user, proof, now).await?;
    let mut conn = db::connect(checks.pool).await?;
    let by = checks.by(user);
    conn.transaction(async |conn| {
        if totp::remove(conn, user.id, &by, now).await? {
            // Recovery codes stand in for a factor: with none left, they mean nothing.
            if !factors::has_any(conn, user.id).await? {
                recovery_codes::delete_all(conn, user.id).await?;
            }
            notify(conn, checks.mail, user, FactorChange::AppRemoved, now).await?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .await?;
    Ok(())
}

/// A new set of recovery codes, after a fresh proof with the app (or a recovery code); mailed.
pub async fn replace_recovery_codes(
    checks: &FactorChecks<'_>,
    user: &User,
    proof: Proof<'_>,
    now: OffsetDateTime,
) -> Result<Vec<RecoveryCode>, FactorError> {
    prove(checks, user, proof, now).await?;
    let mut conn = db::connect(checks.pool).await?;
    let by = checks.by(user);
    let codes = conn
        .transaction(async |conn| {
            let codes = recovery_codes::replace(conn, user.id, &by, now).await?;
            let change = FactorChange::RecoveryCodesReplaced;
            notify(conn, checks.mail, user, change, now).await?;
            Ok::<_, diesel::result::Error>(codes)
        })
        .await?;
    Ok(codes)
}

/// The operator's way out for someone who lost every factor (`users reset-mfa`): removes them
/// all (recorded as `mfa.reset` by `by`) and mails the owner. Returns what they had.
pub async fn reset(
    conn: &mut AsyncPgConnection,
    mail: AccountMail<'_>,
    user: &User,
    by: &Actor,
    now: OffsetDateTime,
) -> diesel::QueryResult<Factors> {
    conn.transaction(async |conn| {
        let had = factors::reset_all(conn, user.id, by, now).await?;
        notify(conn, mail, user, FactorChange::Reset, now).await?;
        Ok(had)
    })
    .await
}
