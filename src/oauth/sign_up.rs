//! Creating an account on the sign-up page: the rules for what a person types, the per-address
//! limit on new accounts, the hash, and the account with its audit event and, in the same
//! transaction, the mail that proves its address.

use std::net::IpAddr;

use time::{Duration, OffsetDateTime};

use diesel_async::AsyncConnection as _;

use crate::audit::Actor;
use crate::db::{self, DbError, DbPool};
use crate::oauth::verification::{self, AccountMail, Policy};
use crate::rate_limits::{Key, Limit, Limits};
use crate::users::name::{Email, Username};
use crate::users::password::{HashError, PasswordHasher, check_new_password};
use crate::users::{self, CreateUserError, NewUser, User};

/// What a person typed into the sign-up form, not yet checked.
#[derive(Debug, Clone, Copy)]
pub struct Application<'a> {
    /// The username.
    pub username: &'a str,
    /// The email address, or empty.
    pub email: &'a str,
    /// The password.
    pub password: &'a str,
    /// The password typed again.
    pub password_confirm: &'a str,
}

/// The form field a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `username`.
    Username,
    /// `email`.
    Email,
    /// `password`.
    Password,
    /// `password_confirm`.
    PasswordConfirm,
}

impl Field {
    /// The form field's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Email => "email",
            Self::Password => "password",
            Self::PasswordConfirm => "password_confirm",
        }
    }
}

/// Why no account was created. The first three are the person's to read and fix.
#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    /// A field breaks its rule; the message says which and how.
    #[error("{message}")]
    Invalid {
        /// The field.
        field: Field,
        /// What to do, in words.
        message: String,
    },
    /// Another account has this username or email.
    #[error("{message}")]
    Taken {
        /// `Username` or `Email`.
        field: Field,
        /// What to do, in words.
        message: String,
    },
    /// Too many new accounts from this address.
    #[error("too many new accounts from this address")]
    RateLimited {
        /// How long until the next is accepted.
        retry_after: Duration,
    },
    /// Password hashing is saturated; retry shortly.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for SignUpError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

/// What a sign-up is checked with and sends mail through.
#[derive(Clone, Copy)]
#[expect(
    missing_debug_implementations,
    reason = "holds the pool, which has no Debug"
)]
pub struct Context<'a> {
    /// The pool (no connection is held while hashing).
    pub pool: &'a DbPool,
    /// The hasher.
    pub hasher: &'a PasswordHasher,
    /// The per-address limit on new accounts.
    pub limits: &'a Limits,
    /// Where the code proving the address is sent.
    pub mail: AccountMail<'a>,
    /// `KEYWARD_EMAIL_VERIFICATION`.
    pub policy: Policy,
}

/// The form's name, address and password, each checked; the first problem in words.
pub fn check(
    form: &Application<'_>,
    policy: Policy,
) -> Result<(Username, Option<Email>), SignUpError> {
    let invalid = |field, message: &dyn ToString| SignUpError::Invalid {
        field,
        message: message.to_string(),
    };
    let username = Username::parse(form.username).map_err(|e| invalid(Field::Username, &e))?;
    let email = Email::parse_optional(form.email).map_err(|e| invalid(Field::Email, &e))?;
    if email.is_none() && policy == Policy::Required {
        return Err(invalid(
            Field::Email,
            &"Enter your email address: you confirm it with a code we send there.",
        ));
    }
    check_new_password(form.password, &username).map_err(|e| invalid(Field::Password, &e))?;
    if form.password != form.password_confirm {
        return Err(invalid(
            Field::PasswordConfirm,
            &"The two passwords are different. Type the same password twice.",
        ));
    }
    Ok((username, email))
}

/// Creates the account a person asked for from `ip`, recorded as `user.created`, and queues the
/// mail that proves its address in the same transaction. An address another account verified
/// gets the same answer as a new one: the account is created with the address unverified, and
/// the mail goes to the address's owner instead of a code (no account enumeration).
///
/// Takes the pool, not a connection: no connection is held while waiting for a hashing slot.
pub async fn sign_up(
    cx: &Context<'_>,
    form: &Application<'_>,
    ip: IpAddr,
    now: OffsetDateTime,
) -> Result<User, SignUpError> {
    let (pool, hasher, limits) = (cx.pool, cx.hasher, cx.limits);
    let (username, email) = check(form, cx.policy)?;
    // Counted before the hash and whatever the outcome: a taken name is a probe too.
    let taken = {
        let mut conn = db::connect(pool).await?;
        limits
            .take(&mut conn, Limit::SignUpPerIp, &Key::ip(ip), now)
            .await?
    };
    if let Err(blocked) = taken {
        return Err(SignUpError::RateLimited {
            retry_after: blocked.retry_after,
        });
    }
    let hash = hasher.hash(form.password).await?;
    let mut conn = db::connect(pool).await?;
    let new = NewUser::new(&username, email.as_ref(), &hash, now);
    let by = Actor::system(Some(ip.into()));
    let created = conn
        .transaction(async |conn| {
            let user = users::create(conn, &new, &by).await?;
            if cx.policy != Policy::Off {
                verification::send_code(conn, cx.mail, &user, now).await?;
            }
            Ok::<_, CreateUserError>(user)
        })
        .await;
    match created {
        Ok(user) => Ok(user),
        // SubTaken: sign-up keeps no subject, so only a fresh random id's collision (2^-122).
        Err(e @ (CreateUserError::UsernameTaken | CreateUserError::SubTaken)) => {
            Err(SignUpError::Taken {
                field: Field::Username,
                message: e.to_string(),
            })
        }
        Err(e @ CreateUserError::EmailTaken) => Err(SignUpError::Taken {
            field: Field::Email,
            message: e.to_string(),
        }),
        Err(CreateUserError::Db(e)) => Err(e.into()),
    }
}
