//! Creating an account on the sign-up page: the rules for what a person types, the per-address
//! limit on new accounts, the hash, and the account with its audit event.

use std::net::IpAddr;

use time::{Duration, OffsetDateTime};

use crate::audit::Actor;
use crate::db::{self, DbError, DbPool};
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

/// The form's name, address and password, each checked; the first problem in words.
pub fn check(form: &Application<'_>) -> Result<(Username, Option<Email>), SignUpError> {
    let invalid = |field, message: &dyn ToString| SignUpError::Invalid {
        field,
        message: message.to_string(),
    };
    let username = Username::parse(form.username).map_err(|e| invalid(Field::Username, &e))?;
    let email = Email::parse_optional(form.email).map_err(|e| invalid(Field::Email, &e))?;
    check_new_password(form.password, &username).map_err(|e| invalid(Field::Password, &e))?;
    if form.password != form.password_confirm {
        return Err(invalid(
            Field::PasswordConfirm,
            &"The two passwords are different. Type the same password twice.",
        ));
    }
    Ok((username, email))
}

/// Creates the account a person asked for from `ip`, recorded as `user.created`.
///
/// Takes the pool, not a connection: no connection is held while waiting for a hashing slot.
pub async fn sign_up(
    pool: &DbPool,
    hasher: &PasswordHasher,
    limits: &Limits,
    form: &Application<'_>,
    ip: IpAddr,
    now: OffsetDateTime,
) -> Result<User, SignUpError> {
    let (username, email) = check(form)?;
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
    match users::create(&mut conn, &new, &Actor::system(Some(ip.into()))).await {
        Ok(user) => Ok(user),
        Err(e @ CreateUserError::UsernameTaken) => Err(SignUpError::Taken {
            field: Field::Username,
            message: e.to_string(),
        }),
        Err(e @ CreateUserError::EmailTaken) => Err(SignUpError::Taken {
            field: Field::Email,
            message: e.to_string(),
        }),
        Err(CreateUserError::Db(e)) => Err(e.into()),
    }
}
