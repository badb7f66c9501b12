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
use crate::sessions::{AUTH_TIME_KEY, CREDENTIAL_VERSION_KEY, DEVICE_KEY, SeenFrom, USER_ID_KEY};
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
                .set((
                    sessions::expires_at.eq(next),
                    sessions::last_seen_at.eq(self.clock.now()),
                ))
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

fn signed_in_at(record: &Record) -> Option<OffsetDateTime> {
    record
        .data
        .get(AUTH_TIME_KEY)
        .and_then(serde_json::Value::as_i64)
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
}

fn seen_from(record: &Record) -> Option<SeenFrom> {
    record
        .data
        .get(DEVICE_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
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
                    sessions::signed_in_at.eq(signed_in_at(record)),
                    sessions::last_seen_at.eq(self.clock.now()),
                    sessions::device.eq(seen_from(record).map(|s| s.user_agent)),
                    sessions::ip.eq(seen_from(record).map(|s| s.ip)),
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
                sessions::last_seen_at.eq(self.clock.now()),
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

/// A signed-in browser session of a user, as the account page lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    /// A handle naming the session in forms: the start of the hash of its id, which neither is
    /// nor reveals the id.
    pub handle: String,
    /// When the password was typed.
    pub signed_in_at: Option<OffsetDateTime>,
    /// Its last request (to the minute: reads write at most once a minute).
    pub last_seen_at: Option<OffsetDateTime>,
    /// The browser's `User-Agent`, shortened.
    pub device: Option<String>,
    /// The address it signed in from.
    pub ip: Option<String>,
}

/// The handle of the session with this id.
#[must_use]
pub fn handle_of(id: &Id) -> String {
    id_hash(id).short_hex()
}

/// The live signed-in sessions of `user`, most recently used first.
pub async fn list_for_user(
    conn: &mut diesel_async::AsyncPgConnection,
    user: Uuid,
    now: OffsetDateTime,
) -> QueryResult<Vec<SessionView>> {
    let rows: Vec<SessionRow> = sessions::table
        .filter(sessions::user_id.eq(user))
        .filter(sessions::expires_at.gt(now))
        .order(sessions::last_seen_at.desc().nulls_last())
        .select(SessionRow::as_select())
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| SessionView {
            handle: r.id_hash.short_hex(),
            signed_in_at: r.signed_in_at,
            last_seen_at: r.last_seen_at,
            device: r.device,
            ip: r.ip,
        })
        .collect())
}

/// The columns [`list_for_user`] reads.
#[derive(Queryable, Selectable)]
#[diesel(table_name = sessions)]
struct SessionRow {
    id_hash: TokenHash,
    signed_in_at: Option<OffsetDateTime>,
    last_seen_at: Option<OffsetDateTime>,
    device: Option<String>,
    ip: Option<String>,
}

/// Ends `user`'s sessions whose handle is `handle` (or, with `keep`, every one but that), and
/// records `session.ended` by `by` with how many; returns how many ended.
pub async fn end_for_user(
    conn: &mut diesel_async::AsyncPgConnection,
    user: Uuid,
    which: Which<'_>,
    by: &crate::audit::Actor,
    now: OffsetDateTime,
) -> QueryResult<usize> {
    use diesel_async::AsyncConnection as _;
    let sessions = list_for_user(conn, user, now).await?;
    let chosen: Vec<String> = sessions
        .into_iter()
        .map(|s| s.handle)
        .filter(|h| match which {
            Which::Only(handle) => h == handle,
            Which::AllBut(handle) => h != handle,
            Which::All => true,
        })
        .collect();
    if chosen.is_empty() {
        return Ok(0);
    }
    conn.transaction(async |conn| {
        let n = diesel::sql_query(
            "DELETE FROM sessions WHERE user_id = $1 \
             AND encode(substring(id_hash from 1 for 8), 'hex') = ANY($2)",
        )
        .bind::<diesel::sql_types::Uuid, _>(user)
        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&chosen)
        .execute(conn)
        .await?;
        let event = by
            .event("session.ended", now)
            .user(user)
            .details(serde_json::json!({ "sessions": n }));
        crate::audit::insert(conn, &event).await?;
        Ok(n)
    })
    .await
}

/// Which sessions [`end_for_user`] ends.
#[derive(Clone, Copy, Debug)]
pub enum Which<'a> {
    /// The one with this handle.
    Only(&'a str),
    /// Every one but the one with this handle (the browser asking).
    AllBut(&'a str),
    /// Every one (an operator signing a person's browsers out).
    All,
}
