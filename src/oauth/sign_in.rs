//! Signing a person in with a username and password: lockout and rate limits (with a browser's
//! proof of work past them), constant work for unknown users, rehash, trusted devices, and the
//! audit trail of every outcome.

use std::net::IpAddr;

use diesel_async::AsyncConnection as _;
use time::{Duration, OffsetDateTime};

use crate::metrics::{Metrics, SignInOutcome};
use crate::rate_limits::proof::{Challenge, ProofOfWork, Solution};
use crate::rate_limits::{Blocked, Key, Limit, Limits};

use crate::audit::{self, Actor};
use crate::db::{self, DbError, DbPool};
use crate::tokens::opaque::{PlainToken, TokenHash};
use crate::users::lockout::{self, Attempt, Hold, LockoutPolicy, Outcome};
use crate::users::name::{Identifiers, SignInName};
use crate::users::password::{HashError, MAX_PASSWORD_BYTES, PasswordHasher, Verification};
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
    /// Too many failed sign-ins from this address, or everywhere at once (password spraying).
    #[error("Too many failed sign-ins from your network. Try again later.")]
    RateLimited {
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
    /// A browser: it may become trusted, and may prove work to pass a reached limit.
    Browser {
        /// Its trusted-device cookie, if it has one.
        device: Option<&'a TokenHash>,
        /// The page's solved proof of work, if it was asked for one.
        proof: Option<Solution<'a>>,
    },
    /// An API call (the password grant): nothing to remember, and no page to compute a proof,
    /// so a reached limit is a refusal.
    Api,
}

/// What a sign-in is checked with and counted against.
#[derive(Clone, Copy)]
#[expect(
    missing_debug_implementations,
    reason = "holds the pool, which has no Debug"
)]
pub struct Checks<'a> {
    /// The pool (no connection is held while hashing).
    pub pool: &'a DbPool,
    /// The hasher.
    pub hasher: &'a PasswordHasher,
    /// The per-username lockout.
    pub lockout: LockoutPolicy,
    /// The per-address and global limits on failures.
    pub limits: &'a Limits,
    /// The proofs of work that pass those limits.
    pub proofs: &'a ProofOfWork,
    /// The client's address.
    pub ip: IpAddr,
    /// Where each outcome is counted.
    pub metrics: &'a Metrics,
    /// Whether a sign-in must wait for the address to be verified.
    pub verification: crate::oauth::verification::Policy,
    /// What people may type to name their account.
    pub identifiers: Identifiers,
    /// `KEYWARD_MFA`.
    pub mfa: crate::oauth::second_factor::Policy,
}

/// Checks credentials typed on the sign-in page or sent with the password grant.
///
/// Takes the pool, not a connection: no connection is held while waiting for a hashing slot.
pub async fn sign_in(
    checks: &Checks<'_>,
    unverified_username: &str,
    password: &str,
    from: Device<'_>,
    now: OffsetDateTime,
) -> Result<SignedIn, SignInError> {
    let result = judge(checks, unverified_username, password, from, now).await;
    if let Err(e) = &result {
        record_failure(checks, unverified_username, e, now).await;
    }
    let outcome = match &result {
        Ok(_) => Some(SignInOutcome::Ok),
        Err(SignInError::WrongCredentials) => Some(SignInOutcome::BadCredentials),
        Err(SignInError::Locked { .. }) => Some(SignInOutcome::Locked),
        Err(SignInError::RateLimited { .. } | SignInError::Busy) => Some(SignInOutcome::Throttled),
        Err(SignInError::Disabled) => Some(SignInOutcome::Disabled),
        Err(SignInError::Db(_) | SignInError::Internal(_)) => None,
    };
    if let Some(outcome) = outcome {
        checks.metrics.sign_in(outcome);
    }
    result
}

async fn judge(
    checks: &Checks<'_>,
    unverified_username: &str,
    password: &str,
    from: Device<'_>,
    now: OffsetDateTime,
) -> Result<SignedIn, SignInError> {
    let (pool, hasher, policy) = (checks.pool, checks.hasher, checks.lockout);
    let (device, proof) = match from {
        Device::Browser { device, proof } => (device, proof),
        Device::Api => (None, None),
    };
    let Some(name) = SignInName::parse(unverified_username, checks.identifiers) else {
        // No account can have this name; do the same work as for a wrong password anyway.
        admit(checks, proof, now).await?;
        hasher.verify_dummy(password).await?;
        count_failure(checks, now).await?;
        return Err(SignInError::WrongCredentials);
    };
    let (user, trusted) = look_up(pool, &name, device, now).await?;
    // A trusted device of that user is exempt from the lockout (OWASP device cookies): the
    // owner is never locked out by others.
    let held = if trusted {
        None
    } else {
        admit(checks, proof, now).await?;
        Some(HeldAttempt::take(pool, policy, &name.key(), now).await?)
    };
    let verification = check_password(hasher, user.as_ref(), password).await?;
    let (Some(user), Verification::Match { needs_rehash }) = (user, verification) else {
        if let Some(held) = held {
            held.end(Outcome::Failed).await?;
            count_failure(checks, now).await?;
        }
        if let (true, Some(d)) = (trusted, device) {
            let mut conn = db::connect(pool).await?;
            devices::update_failed(&mut conn, d).await?;
        }
        return Err(SignInError::WrongCredentials);
    };
    if user.is_disabled() {
        // The right password of a disabled account: no guess failed, so no failure is counted.
        return Err(SignInError::Disabled);
    }
    if let Some(held) = held {
        held.end(Outcome::Succeeded).await?;
    }
    let new_hash = if needs_rehash {
        rehash(hasher, password).await?
    } else {
        None
    };
    let success = Success {
        new_hash: new_hash.as_deref(),
        trusted_device: device.filter(|_| trusted),
        remember_device: matches!(from, Device::Browser { .. }),
        ip: checks.ip,
    };
    finish(pool, user, &success, now).await
}

/// Audits a refused sign-in. The typed username is kept only if it is a valid one (so never a
/// password pasted into the wrong field); a failure to record is logged, and the answer stays
/// the refusal.
async fn record_failure(
    checks: &Checks<'_>,
    typed: &str,
    error: &SignInError,
    now: OffsetDateTime,
) {
    let reason = match error {
        SignInError::WrongCredentials => "wrong_credentials",
        SignInError::Locked { .. } => "locked",
        SignInError::RateLimited { .. } => "rate_limited",
        SignInError::Disabled => "disabled",
        SignInError::Busy | SignInError::Db(_) | SignInError::Internal(_) => return,
    };
    // Whatever kind of name it could be, so the trail shows what was tried.
    let username = SignInName::parse(typed, Identifiers::Either).map(|n| n.key());
    let by = Actor::system(Some(checks.ip.into()));
    let details = serde_json::json!({ "reason": reason, "username": username });
    let event = by.event("signin.failed", now).details(details);
    let recorded = match db::connect(checks.pool).await {
        Ok(mut conn) => audit::insert(&mut conn, &event)
            .await
            .map_err(DbError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "could not audit a failed sign-in");
    }
}

/// The proof of work the sign-in page asks of a browser now: a challenge when this address, or
/// everyone at once, is over the sign-in limit; `None` when a password alone is heard.
#[must_use]
pub fn extra_step(
    limits: &Limits,
    proofs: &ProofOfWork,
    ip: IpAddr,
    now: OffsetDateTime,
) -> Option<Challenge> {
    over_limit(limits, ip, now, Limits::peek)
        .is_err()
        .then(|| proofs.challenge(now))
}

/// Refuses before any hashing when this address, or everyone at once, failed too often, unless
/// the browser spends a proof of work: one solved challenge buys one guess, which is cheap for a
/// person and costly for a sprayer, and is still counted if wrong. The password grant has no
/// proof and is refused. A trusted device never gets here: its owner keeps signing in through a
/// spraying attack.
///
/// Failures are counted after the fact, not reserved before hashing as the per-username holds
/// are: a service signing many users in from one address at once must not be refused for its
/// attempts in flight. So attempts already in flight when the limit is reached are still judged:
/// at most the hashing queue's worth per instance (`KEYWARD_HASH_QUEUE`) beyond the limit.
async fn admit(
    checks: &Checks<'_>,
    proof: Option<Solution<'_>>,
    now: OffsetDateTime,
) -> Result<(), SignInError> {
    let (limits, ip) = (checks.limits, checks.ip);
    if over_limit(limits, ip, now, Limits::peek).is_ok() {
        return Ok(());
    }
    if let Some(solution) = proof {
        let mut conn = db::connect(checks.pool).await?;
        let redeemed = checks.proofs.redeem(&mut conn, solution, now).await?;
        checks.metrics.sign_in_proof(redeemed.is_ok());
        match redeemed {
            Ok(()) => return Ok(()),
            Err(e) => tracing::info!(reason = %e, "proof of work refused"),
        }
    }
    // Counted as a refusal only now that nothing lets it through.
    over_limit(limits, ip, now, Limits::check).map_err(|b| SignInError::RateLimited {
        retry_after: b.retry_after,
    })
}

/// The first of the per-address and global sign-in limits that `look` finds reached.
fn over_limit(
    limits: &Limits,
    ip: IpAddr,
    now: OffsetDateTime,
    look: fn(&Limits, Limit, &Key, OffsetDateTime) -> Result<(), Blocked>,
) -> Result<(), Blocked> {
    look(limits, Limit::SignInPerIp, &Key::ip(ip), now)
        .and_then(|()| look(limits, Limit::SignInGlobal, &Key::global(), now))
}

/// Counts a failed sign-in against its address and the global limit.
async fn count_failure(checks: &Checks<'_>, now: OffsetDateTime) -> Result<(), SignInError> {
    let mut conn = db::connect(checks.pool).await?;
    let limits = checks.limits;
    limits
        .record(&mut conn, Limit::SignInPerIp, &Key::ip(checks.ip), now)
        .await?;
    limits
        .record(&mut conn, Limit::SignInGlobal, &Key::global(), now)
        .await?;
    Ok(())
}

/// Looks the user up, and whether this browser is a trusted device of that user.
async fn look_up(
    pool: &DbPool,
    name: &SignInName,
    device: Option<&TokenHash>,
    now: OffsetDateTime,
) -> Result<(Option<User>, bool), SignInError> {
    let mut conn = db::connect(pool).await?;
    let user = users::find_for_sign_in(&mut conn, name).await?;
    let trusted = match (&user, device) {
        (Some(u), Some(d)) => devices::is_trusted(&mut conn, d, u.id, now).await?,
        _ => false,
    };
    Ok((user, trusted))
}

/// Wakes attempts waiting for a place when one ends on this instance; attempts on other
/// instances are seen by looking again every [`HOLD_POLL`].
static HOLD_RELEASED: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// How often a waiting attempt looks for a place freed on another instance.
const HOLD_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// One attempt's place against the username's threshold, held while the password is checked.
/// Dropped without [`HeldAttempt::end`] (an error, or the client went away), it is given back
/// abandoned, by a task of its own.
pub(crate) struct HeldAttempt {
    pool: DbPool,
    policy: LockoutPolicy,
    now: OffsetDateTime,
    hold: Option<Hold>,
}

impl HeldAttempt {
    /// Reserves a place, waiting while all are taken by attempts in flight (correct sign-ins in
    /// flight at once then go one after another instead of locking their own user).
    pub(crate) async fn take(
        pool: &DbPool,
        policy: LockoutPolicy,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Self, SignInError> {
        let deadline = tokio::time::Instant::now() + policy.hold_wait;
        loop {
            // Listen before looking, so a release between the two is not missed.
            let released = HOLD_RELEASED.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            let attempt = {
                let mut conn = db::connect(pool).await?;
                lockout::begin_attempt(&mut conn, policy, key, now).await?
            };
            match attempt {
                Attempt::Held(r) => {
                    return Ok(Self {
                        pool: pool.clone(),
                        policy,
                        now,
                        hold: Some(r),
                    });
                }
                Attempt::Locked(retry_after) => return Err(SignInError::Locked { retry_after }),
                Attempt::Full if tokio::time::Instant::now() >= deadline => {
                    return Err(SignInError::Busy);
                }
                Attempt::Full => {
                    let look_again = (tokio::time::Instant::now() + HOLD_POLL).min(deadline);
                    let _ = tokio::time::timeout_at(look_again, released).await;
                }
            }
        }
    }

    /// Gives the place back with the attempt's outcome.
    pub(crate) async fn end(mut self, outcome: Outcome) -> Result<(), SignInError> {
        let Some(hold) = self.hold.take() else {
            return Ok(());
        };
        let ended = end(&self.pool, self.policy, &hold, outcome, self.now).await;
        Ok(ended?)
    }
}

impl Drop for HeldAttempt {
    fn drop(&mut self) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        let (pool, policy, now) = (self.pool.clone(), self.policy, self.now);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = end(&pool, policy, &hold, Outcome::Abandoned, now).await {
                    // It expires by itself; until then the username has one place fewer.
                    tracing::warn!(error = %e, "could not give back a sign-in place");
                }
            });
        }
    }
}

async fn end(
    pool: &DbPool,
    policy: LockoutPolicy,
    hold: &Hold,
    outcome: Outcome,
    now: OffsetDateTime,
) -> Result<(), DbError> {
    let mut conn = db::connect(pool).await?;
    lockout::end_attempt(&mut conn, policy, hold, outcome, now).await?;
    HOLD_RELEASED.notify_waiters();
    Ok(())
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
    new_hash: Option<&'a str>,
    trusted_device: Option<&'a TokenHash>,
    remember_device: bool,
    ip: IpAddr,
}

/// Stores an upgraded hash, remembers the browser and records `signin.succeeded`, in one
/// transaction.
async fn finish(
    pool: &DbPool,
    user: User,
    success: &Success<'_>,
    now: OffsetDateTime,
) -> Result<SignedIn, SignInError> {
    let mut conn = db::connect(pool).await?;
    let id = user.id;
    let new_device_token = conn
        .transaction(async |conn| {
            if let Some(h) = success.new_hash {
                users::update_password_hash(conn, id, h, now).await?;
            }
            let token = match success.trusted_device {
                Some(d) => {
                    devices::update_succeeded(conn, d, now).await?;
                    None
                }
                // API sign-ins (the password grant) have no browser to remember.
                None if success.remember_device => Some(devices::insert(conn, id, now).await?),
                None => None,
            };
            let by = Actor::user(id, Some(success.ip.into()));
            audit::insert(conn, &by.event("signin.succeeded", now).user(id)).await?;
            Ok::<_, diesel::result::Error>(token)
        })
        .await?;
    Ok(SignedIn {
        user,
        new_device_token,
    })
}
