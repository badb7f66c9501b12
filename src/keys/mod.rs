//! Signing keys: sealed at rest, rotated on a published schedule, decrypted once in memory.
//!
//! `store` owns the rows and every schedule change, `schedule` the pure rules, `keyring` the
//! in-memory signer/verifier/JWKS, `kek` the key-encryption key, `material` RSA keys themselves.

pub mod kek;
pub mod keyring;
pub mod material;
pub mod refresh_mac;
pub mod schedule;
pub mod store;

use std::sync::Arc;

use crate::clock::Clock;
use crate::db::{self, DbPool};
use kek::Kek;
use keyring::KeyRing;
use store::{KeyError, KeyPolicy};

/// What one maintenance step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// The ring was reloaded (another instance or the CLI changed the keys).
    pub reloaded: bool,
    /// This instance completed the schedule (created or extended keys).
    pub scheduled: bool,
}

/// Keeps this instance's key ring in step with the database schedule.
#[derive(Clone)]
pub struct KeyManager {
    /// The in-memory keys.
    pub ring: KeyRing,
    pool: DbPool,
    kek: Arc<Kek>,
    /// The key refresh tokens are MAC'd with (stored sealed, see [`refresh_mac`]).
    refresh_mac: [u8; 32],
    policy: KeyPolicy,
    clock: Clock,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager")
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

/// Why keys could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum KeyStartError {
    /// A schedule or KEK problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A stored key could not be used.
    #[error(transparent)]
    Load(#[from] keyring::LoadError),
    /// No database connection.
    #[error(transparent)]
    Db(#[from] db::DbError),
}

impl From<diesel::result::Error> for KeyStartError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

impl KeyManager {
    /// Checks the KEK, completes the schedule if needed, and loads the keys.
    pub async fn start(
        pool: DbPool,
        kek: Kek,
        policy: KeyPolicy,
        clock: Clock,
    ) -> Result<Self, KeyStartError> {
        let now = clock.now();
        let mut conn = db::connect(&pool).await?;
        store::ensure_schedule(&mut conn, &kek, &policy, now).await?;
        let version = store::current_version(&mut conn).await?;
        let rows = store::list(&mut conn).await?;
        let refresh_mac = refresh_mac::load_or_create(&mut conn, &kek, now).await?;
        drop(conn);
        let ring = KeyRing::load(version, &rows, &kek, now)?;
        Ok(Self {
            ring,
            pool,
            kek: Arc::new(kek),
            refresh_mac,
            policy,
            clock,
        })
    }

    /// The KEK itself: it seals second-factor secrets as it seals signing keys.
    #[must_use]
    pub fn kek(&self) -> &Kek {
        &self.kek
    }

    /// The key visitors' pending sign-ins are sealed with.
    #[must_use]
    pub fn pending_secret(&self) -> &[u8; 32] {
        self.kek.pending_secret()
    }

    /// The key mailed codes are hashed with.
    #[must_use]
    pub fn code_secret(&self) -> &[u8; 32] {
        self.kek.code_secret()
    }

    /// The key mails waiting in the outbox are sealed with.
    #[must_use]
    pub fn mail_secret(&self) -> &[u8; 32] {
        self.kek.mail_secret()
    }

    /// The key the sign-in page's proofs of work are signed with.
    #[must_use]
    pub fn proof_secret(&self) -> &[u8; 32] {
        self.kek.proof_secret()
    }

    /// The key anonymous CSRF tokens are signed with.
    #[must_use]
    pub fn csrf_secret(&self) -> &[u8; 32] {
        self.kek.csrf_secret()
    }

    /// The key the successors of refresh tokens issued before MAC'd tokens were derived with
    /// (for their grace window).
    #[must_use]
    pub fn refresh_secret(&self) -> &[u8; 32] {
        self.kek.refresh_secret()
    }

    /// The key refresh tokens are MAC'd with.
    #[must_use]
    pub fn refresh_mac_key(&self) -> &[u8; 32] {
        &self.refresh_mac
    }

    /// The policy keys are scheduled by.
    #[must_use]
    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// One maintenance step: complete the schedule if time has moved on, then reload the ring if
    /// the database version changed. Called periodically by every instance.
    ///
    /// Usually this is one cheap read of the version: the locked schedule transaction runs only
    /// when the keys this instance holds say something is due (a key to create or to extend).
    pub async fn maintain(&self) -> Result<Maintenance, KeyStartError> {
        let now = self.clock.now();
        let mut conn = db::connect(&self.pool).await?;
        let mut done = Maintenance {
            reloaded: self.reload_if_changed(&mut conn, now).await?,
            scheduled: false,
        };
        if self.ring.has_schedule_work(now, &self.policy.schedule)
            && store::ensure_schedule(&mut conn, &self.kek, &self.policy, now).await?
        {
            done.scheduled = true;
            done.reloaded |= self.reload_if_changed(&mut conn, now).await?;
        }
        Ok(done)
    }

    async fn reload_if_changed(
        &self,
        conn: &mut db::PooledConn,
        now: time::OffsetDateTime,
    ) -> Result<bool, KeyStartError> {
        let version = store::current_version(conn).await?;
        if version == self.ring.version() {
            return Ok(false);
        }
        let rows = store::list(conn).await?;
        self.ring.replace(version, &rows, &self.kek, now)?;
        tracing::info!(version, "signing keys reloaded");
        Ok(true)
    }
}
