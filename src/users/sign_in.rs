//! Checking a username and password: throttle, constant work for unknown users, rehash, devices.

use time::{Duration, OffsetDateTime};

use crate::db::{self, DbError, DbPool};
use crate::tokens::opaque::{PlainToken, TokenHash};
use crate::users::name::Username;
use crate::users::password::{HashError, MAX_PASSWORD_BYTES, PasswordHasher, Verification};
use crate::users::throttle::{self, Attempt, ThrottlePolicy};
use crate::users::{self, User, devices};

/// A successful sign-in.
#[derive(Debug)]
pub struct SignedIn {
    /// Who signed in.
    pub user: User,
    /// A new trusted-device token to set as a cookie, when the browser had none for this user.
    pub new_device_token: Option<PlainToken>,
}

/// Why a sign-in failed. The first three are the person's to see; their wording never tells
/// whether an account exists.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown username or wrong password: deliberately the same answer.
    #[error("Wrong username or password.")]
    WrongCredentials,
    /// Too many consecutive failures for this username.
    #[error("Too many failed attempts. Try again later.")]
    Locked {
        /// How long until the next attempt is accepted.
        retry_after: Duration,
    },
    /// The password was right but an operator disabled the account.
    #[error("This account is disabled. Contact your administrator.")]
    Disabled,
    /// Password hashing is saturated; retry shortly.
    #[error("password hashing is saturated")]
    Busy,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Something else broke.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<diesel::result::Error> for SignInError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

impl From<HashError> for SignInError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::Busy,
            HashError::Internal(e) => Self::Internal(e),
        }
    }
}

/// Where the credentials come from.
#[derive(Clone, Copy, Debug)]
pub enum Device<'a> {
    /// A browser, with its trusted-device cookie if it has one: it may become trusted.
    Browser(Option<&'a TokenHash>),
    /// An API call (the password grant): nothing to remember.
    Api,
}

/// Checks credentials typed on the sign-in page.
///
/// Takes the pool, not a connection: no connection is held while waiting for a hashing slot.
pub async fn sign_in(
    pool: &DbPool,
    hasher: &PasswordHasher,
    policy: ThrottlePolicy,
    unverified_username: &str,
    password: &str,
    from: Device<'_>,
    now: OffsetDateTime,
) -> Result<SignedIn, SignInError> {
    let device = match from {
        Device::Browser(d) => d,
        Device::Api => None,
    };
    let Ok(username) = Username::parse(unverified_username) else {
        // No account can have this name; do the same work as for a wrong password anyway.
        hasher.verify_dummy(password).await?;
        return Err(SignInError::WrongCredentials);
    };
    let key = username.key();
    let (user, trusted) = begin(pool, policy, &username, &key, device, now).await?;
    let verification = check_password(hasher, user.as_ref(), password).await?;
    let (Some(user), Verification::Match { needs_rehash }) = (user, verification) else {
        if let (true, Some(d)) = (trusted, device) {
            let mut conn = db::connect(pool).await?;
            devices::update_failed(&mut conn, d).await?;
        }
        return Err(SignInError::WrongCredentials);
    };
    if user.is_disabled() {
        return Err(SignInError::Disabled);
    }
    let new_hash = if needs_rehash {
        rehash(hasher, password).await?
    } else {
        None
    };
    let success = Success {
        key: &key,
        new_hash: new_hash.as_deref(),
        trusted_device: device.filter(|_| trusted),
        remember_device: matches!(from, Device::Browser(_)),
    };
    finish(pool, user, &success, now).await
}

/// Looks the user up and counts the attempt against the throttle, unless this browser is a
/// trusted device of that user (OWASP device cookies: the owner is never locked out by others).
async fn begin(
    pool: &DbPool,
    policy: ThrottlePolicy,
    username: &Username,
    key: &str,
    device: Option<&TokenHash>,
    now: OffsetDateTime,
) -> Result<(Option<User>, bool), SignInError> {
    let mut conn = db::connect(pool).await?;
    let user = users::find_by_username(&mut conn, username).await?;
    let trusted = match (&user, device) {
        (Some(u), Some(d)) => devices::is_trusted(&mut conn, d, u.id, now).await?,
        _ => false,
    };
    if !trusted
        && let Attempt::Locked(retry_after) =
            throttle::begin_attempt(&mut conn, policy, key, now).await?
    {
        return Err(SignInError::Locked { retry_after });
    }
    Ok((user, trusted))
}

/// The same work whether or not the user exists, so timing tells nothing.
async fn check_password(
    hasher: &PasswordHasher,
    user: Option<&User>,
    password: &str,
) -> Result<Verification, SignInError> {
    if password.len() > MAX_PASSWORD_BYTES {
        // No stored password can be this long: refuse before spending a hash on it.
        return Ok(Verification::Mismatch);
    }
    if let Some(user) = user {
        return Ok(hasher.verify(password, &user.password_hash).await?);
    }
    hasher.verify_dummy(password).await?;
    Ok(Verification::Mismatch)
}

/// A hash with today's parameters; best effort: a busy hasher only delays the upgrade.
async fn rehash(hasher: &PasswordHasher, password: &str) -> Result<Option<String>, SignInError> {
    match hasher.hash(password).await {
        Ok(h) => Ok(Some(h)),
        Err(HashError::Busy) => Ok(None),
        Err(HashError::Internal(e)) => Err(SignInError::Internal(e)),
    }
}

/// What a successful sign-in writes.
struct Success<'a> {
    key: &'a str,
    new_hash: Option<&'a str>,
    trusted_device: Option<&'a TokenHash>,
    remember_device: bool,
}

/// Clears the failure streak, stores an upgraded hash, and remembers the browser.
async fn finish(
    pool: &DbPool,
    user: User,
    success: &Success<'_>,
    now: OffsetDateTime,
) -> Result<SignedIn, SignInError> {
    let mut conn = db::connect(pool).await?;
    throttle::delete(&mut conn, success.key).await?;
    if let Some(h) = success.new_hash {
        users::update_password_hash(&mut conn, user.id, h, now).await?;
    }
    let new_device_token = match success.trusted_device {
        Some(d) => {
            devices::update_succeeded(&mut conn, d, now).await?;
            None
        }
        // API sign-ins (the password grant) have no browser to remember.
        None if success.remember_device => Some(devices::insert(&mut conn, user.id, now).await?),
        None => None,
    };
    Ok(SignedIn {
        user,
        new_device_token,
    })
}
