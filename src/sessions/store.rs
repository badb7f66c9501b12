//! A tower-sessions store on PostgreSQL, so every Keyward instance sees the same sign-ins.
//!
//! Records are MessagePack. The session id is a bearer secret, so rows are keyed by its SHA-256.
//! Expiry is ours, on the injected clock (tower-sessions would date records by the system clock):
//! a session ends after `idle` without a request, and `absolute` after it began (a sign-in
//! cycles the id, so: after the sign-in), whatever it does; a session nobody signed in to ends
//! `pre_sign_in` after it began. Reading a session pushes its idle
//! expiry on at most once a minute, so a page view is not a write. Expired rows are deleted by
//! `housekeeping`.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use time::{Duration, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use uuid::Uuid;

use crate::clock::Clock;
use crate::db::schema::{sessions, users};
use crate::db::{self, DbPool};
use crate::sessions::{CREDENTIAL_VERSION_KEY, USER_ID_KEY};
use crate::tokens::opaque::TokenHash;

/// How long sessions live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLifetimes {
    /// A session ends this long after its last request.
    pub idle: Duration,
    /// A session ends this long after it began, however busy.
    pub absolute: Duration,
    /// A session that nobody signed in to (a pending authorization request, a return path) ends
    /// this long after it began: anonymous visitors leave only short-lived rows.
    pub pre_sign_in: Duration,
}

/// A read pushes the idle expiry on only when it moved by more than this.
const TOUCH_AFTER: Duration = Duration::MINUTE;

/// The PostgreSQL session store.
#[derive(Clone)]
pub struct PgSessionStore {
    pool: DbPool,
    clock: Clock,
    lifetimes: SessionLifetimes,
}

impl std::fmt::Debug for PgSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgSessionStore")
    }
}

impl PgSessionStore {
    /// A store on `pool` whose sessions live `lifetimes`, by `clock`.
    #[must_use]
    pub fn new(pool: DbPool, clock: Clock, lifetimes: SessionLifetimes) -> Self {
        Self {
            pool,
            clock,
            lifetimes,
        }
    }

    /// The idle expiry a request at `now` gives, capped by the absolute end.
    fn idle_expiry(&self, absolute_expires_at: OffsetDateTime) -> OffsetDateTime {
        (self.clock.now() + self.lifetimes.idle).min(absolute_expires_at)
    }

    /// Pushes a session's idle expiry on, if it moved by more than [`TOUCH_AFTER`].
    async fn touch(
        &self,
        conn: &mut db::PooledConn,
        id: &Id,
        expires_at: OffsetDateTime,
        absolute_expires_at: OffsetDateTime,
    ) -> session_store::Result<()> {
        let next = self.idle_expiry(absolute_expires_at);
        if next - expires_at > TOUCH_AFTER {
            diesel::update(sessions::table.find(id_hash(id)))
                .set(sessions::expires_at.eq(next))
                .execute(conn)
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn conn(&self) -> session_store::Result<db::PooledConn> {
        db::connect(&self.pool).await.map_err(backend)
    }
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn id_hash(id: &Id) -> TokenHash {
    TokenHash::of(&id.to_string())
}

/// The signed-in user, copied into its own column so ending a user's sessions is one DELETE.
fn user_of(record: &Record) -> Option<Uuid> {
    record
        .data
        .get(USER_ID_KEY)
        .and_then(|v| v.as_str())
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// The credential version the sign-in was checked under, copied into its own column so `load`
/// can compare it with the user's.
fn credential_version_of(record: &Record) -> Option<i32> {
    record
        .data
        .get(CREDENTIAL_VERSION_KEY)
        .and_then(serde_json::Value::as_i64)
        .and_then(|v| i32::try_from(v).ok())
}

fn encode(record: &Record) -> session_store::Result<Vec<u8>> {
    rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))
}

#[async_trait]
impl SessionStore for PgSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut conn = self.conn().await?;
        // A 128-bit id practically never collides, but if it does we must not overwrite the
        // other session: pick a new id until the insert goes in.
        let lifetime = if user_of(record).is_some() {
            self.lifetimes.absolute
        } else {
            self.lifetimes.pre_sign_in
        };
        let absolute = self.clock.now() + lifetime;
        loop {
            let inserted = diesel::insert_into(sessions::table)
                .values((
                    sessions::id_hash.eq(id_hash(&record.id)),
                    sessions::user_id.eq(user_of(record)),
                    sessions::credential_version.eq(credential_version_of(record)),
                    sessions::data.eq(encode(record)?),
                    sessions::expires_at.eq(self.idle_expiry(absolute)),
                    sessions::absolute_expires_at.eq(absolute),
                ))
                .on_conflict_do_nothing()
                .execute(&mut conn)
                .await
                .map_err(backend)?;
            if inserted == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        // Update only: a session deleted meanwhile (sign-out, password change, disabling) must
        // stay deleted. An upsert here let a request that had loaded the session before the
        // delete write it back afterwards. New sessions come through `create`, with a fresh id.
        // A write is a request too: the idle expiry moves on, never past the absolute end.
        let mut conn = self.conn().await?;
        let idle = self.clock.now() + self.lifetimes.idle;
        diesel::update(sessions::table.find(id_hash(&record.id)))
            .set((
                sessions::user_id.eq(user_of(record)),
                sessions::credential_version.eq(credential_version_of(record)),
                sessions::data.eq(encode(record)?),
                sessions::expires_at.eq(diesel::dsl::sql::<diesel::sql_types::Timestamptz>(
                    "LEAST(",
                )
                .bind::<diesel::sql_types::Timestamptz, _>(idle)
                .sql(", absolute_expires_at)")),
            ))
            .execute(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let mut conn = self.conn().await?;
        // A signed-in session lives only while its user's credential version is the one it was
        // signed in under: a cut-off (password change, disabling, sign-out everywhere) ends it
        // even if the session was written after the cut-off by a sign-in already in flight.
        let row: Option<(Vec<u8>, OffsetDateTime, OffsetDateTime)> = sessions::table
            .left_join(users::table.on(sessions::user_id.eq(users::id.nullable())))
            .filter(sessions::id_hash.eq(id_hash(id)))
            .filter(sessions::expires_at.gt(self.clock.now()))
            .filter(
                sessions::user_id.is_null().or(sessions::credential_version
                    .eq(users::credential_version.nullable())
                    .assume_not_null()),
            )
            .select((
                sessions::data,
                sessions::expires_at,
                sessions::absolute_expires_at,
            ))
            .first(&mut conn)
            .await
            .optional()
            .map_err(backend)?;
        let Some((bytes, expires_at, absolute_expires_at)) = row else {
            return Ok(None);
        };
        self.touch(&mut conn, id, expires_at, absolute_expires_at)
            .await?;
        rmp_serde::from_slice(&bytes)
            .map(Some)
            .map_err(|e| session_store::Error::Decode(e.to_string()))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let mut conn = self.conn().await?;
        diesel::delete(sessions::table.find(id_hash(id)))
            .execute(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
