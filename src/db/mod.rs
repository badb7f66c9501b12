//! The PostgreSQL pool, the embedded migrations, and how database failures are classified.

pub mod schema;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool::managed::{Hook, HookError};
use diesel::result::DatabaseErrorKind;
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError as ConnError, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// Every migration in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// How long opening (or checking) a connection may take before the database counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection checked out of [`DbPool`].
pub type PooledConn = Object<AsyncPgConnection>;

/// The shared connection pool.
pub type DbPool = Pool<AsyncPgConnection>;

/// When a pooled connection is checked with `SELECT 1` before it is handed out. diesel-async's
/// default checks every checkout, a round trip each time (one of a refresh's two statements);
/// deadpool's `Fast` recycling alone hands out a connection the server ended before
/// tokio-postgres noticed. So a connection is checked only where it may have died unseen: after
/// it sat idle, and once after any statement of the pool failed for want of its connection (a
/// restarted or failing-over server ends them all at once): every connection last handed out
/// before that failure is checked at its next checkout.
struct Health {
    started: Instant,
    /// Nanoseconds after `started` of the latest lost connection, plus one (0: none yet).
    lost_at: AtomicU64,
}

/// A connection unused for this long is checked before use.
const IDLE_CHECK: Duration = Duration::from_secs(1);

impl Health {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            lost_at: AtomicU64::new(0),
        }
    }

    fn offset(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.started).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX).saturating_add(1)
    }

    fn connection_lost(&self) {
        self.lost_at
            .fetch_max(self.offset(Instant::now()), Ordering::Relaxed);
    }

    /// Whether a connection last handed out at `last` (or created then) must be checked.
    fn should_check(&self, last: Instant) -> bool {
        last.elapsed() >= IDLE_CHECK || self.offset(last) <= self.lost_at.load(Ordering::Relaxed)
    }
}

/// A database failure, split by whether waiting could fix it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had from the pool (server down, refused, or pool exhausted).
    #[error("no database connection available")]
    Pool(#[source] PoolError),
    /// Opening a connection took longer than [`CONNECT_TIMEOUT`].
    #[error("timed out connecting to the database")]
    Timeout,
    /// Every pooled connection stayed busy for the whole pool wait: shed this request.
    #[error("every database connection is busy")]
    Exhausted,
    /// The task that sends refresh rotations to the database has stopped (a bug).
    #[error("the refresh rotation task has stopped")]
    Stopped,
    /// A query failed.
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl DbError {
    /// Whether the database is unreachable (503) rather than the query being wrong (500).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Pool(_) | Self::Timeout | Self::Exhausted => true,
            Self::Query(e) => connection_lost(e),
            Self::Stopped => false,
        }
    }
}

/// Whether a statement failed because its connection is gone, not because of the statement.
fn connection_lost(e: &diesel::result::Error) -> bool {
    match e {
        diesel::result::Error::DatabaseError(kind, info) => {
            matches!(
                kind,
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
            )
            // The server ending our session (SQLSTATE 57P01 admin shutdown, 57P02 crash,
            // 57P05 idle timeout) arrives as a FATAL error of unknown kind: diesel does not
            // expose the SQLSTATE, but PostgreSQL words every one of them this way.
            || info.message().starts_with("terminating connection")
        }
        _ => false,
    }
}

/// Watches every statement a connection sends: counts them (diesel reports each one, `BEGIN` and
/// `COMMIT` included, as it starts), for `keyward_db_queries_total` and the benchmarks' queries
/// per request, and tells the pool's [`Health`] when one failed for want of its connection.
struct Watch {
    statements: Option<prometheus_client::metrics::counter::Counter>,
    health: Arc<Health>,
}

impl diesel::connection::Instrumentation for Watch {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        use diesel::connection::InstrumentationEvent;
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                if let Some(counter) = &self.statements {
                    counter.inc();
                }
            }
            InstrumentationEvent::FinishQuery {
                error: Some(error), ..
            } if connection_lost(error) => self.health.connection_lost(),
            _ => {}
        }
    }
}

/// Builds the pool; connections are opened lazily, so this succeeds with the database down.
///
/// A request waits at most `wait` for a connection to come free: under overload it is shed
/// (503 with `Retry-After`) instead of queueing behind everyone else until its client gives up.
/// Every connection adds the statements it sends to `statements`, when given.
pub fn build_pool(
    database_url: &str,
    max_size: usize,
    wait: Duration,
    statements: Option<prometheus_client::metrics::counter::Counter>,
) -> anyhow::Result<DbPool> {
    let health = Arc::new(Health::new());
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.recycling_method = RecyclingMethod::Fast;
    let watched = Arc::clone(&health);
    config.custom_setup = Box::new(move |url| {
        let watch = Watch {
            statements: statements.clone(),
            health: Arc::clone(&watched),
        };
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            conn.set_instrumentation(watch);
            Ok(conn)
        })
    });
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    let checked = Arc::clone(&health);
    let pool = Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(wait))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        // Runs before deadpool stamps this checkout, so `recycled` is still the previous one.
        // A failed check drops the connection; deadpool tries the next or opens a new one.
        .post_recycle(Hook::async_fn(move |conn, metrics| {
            let check = checked.should_check(metrics.recycled.unwrap_or(metrics.created));
            Box::pin(async move {
                if !check {
                    return Ok(());
                }
                let conn: &mut AsyncPgConnection = conn;
                let ping = diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT 1"), conn);
                // Bounded like the recycling it replaces (hooks have no timeout of their own).
                match tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(HookError::Backend(ConnError::QueryError(e))),
                    Err(_) => Err(HookError::Message("the connection check timed out".into())),
                }
            })
        }))
        .build()?;
    Ok(pool)
}

/// A pool of one connection for a one-off command: waiting for it is never overload.
pub fn single(database_url: &str) -> anyhow::Result<DbPool> {
    build_pool(database_url, 1, Duration::from_secs(30), None)
}

/// Checks a connection out of the pool.
pub async fn connect(pool: &DbPool) -> Result<PooledConn, DbError> {
    use deadpool::managed::TimeoutType;
    pool.get().await.map_err(|e| match e {
        PoolError::Timeout(TimeoutType::Wait) => DbError::Exhausted,
        PoolError::Timeout(_) => DbError::Timeout,
        other => DbError::Pool(other),
    })
}

/// Any fixed number: the advisory lock instances take around migrating.
const MIGRATION_LOCK: i64 = 0x6b77_6d69_6772_6174;

/// Applies every pending embedded migration; returns how many ran.
///
/// Instances starting together take turns under a session advisory lock (held by this
/// connection until the harness drops it): without it, two of three racing instances failed on
/// a duplicate `pg_type` entry while creating the same tables. Needs a multi-threaded tokio
/// runtime (the harness blocks in place).
pub async fn run_migrations(database_url: &str) -> anyhow::Result<usize> {
    use diesel_async::RunQueryDsl;
    let mut conn = establish(database_url).await?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn)
        .await?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let applied = harness
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
    Ok(applied.len())
}

/// One connection for a command; when it fails, the reason the network gives too: the driver
/// says only "error connecting to server" (its cause is lost in diesel's string).
pub async fn establish(database_url: &str) -> anyhow::Result<AsyncPgConnection> {
    match AsyncPgConnection::establish(database_url).await {
        Ok(conn) => Ok(conn),
        Err(e) => match unreachable_because(database_url).await {
            Some(why) => Err(anyhow::anyhow!("{e}: {why}")),
            None => Err(e.into()),
        },
    }
}

/// Why the host and port of a service URL (the database's, the SMTP server's) cannot be reached
/// over TCP, if they cannot.
pub async fn unreachable_because(service_url: &str) -> Option<String> {
    let url = url::Url::parse(service_url).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let default_port = match url.scheme() {
        "smtp" => 587,
        "smtps" => 465,
        _ => 5432,
    };
    let port = url.port().unwrap_or(default_port);
    let probe = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(std::time::Duration::from_secs(5), probe).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer within 5 s".to_owned()),
    }
}

/// The migrations this binary has that the database has not applied yet, by name.
pub async fn pending_migrations(database_url: &str) -> anyhow::Result<Vec<String>> {
    let conn = establish(database_url).await?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let pending = harness
        .pending_migrations(MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("cannot read the applied migrations: {e}"))?;
    Ok(pending.iter().map(|m| m.name().to_string()).collect())
}

/// The database's clock (`now()`, the start of this statement's transaction).
pub async fn now(
    conn: &mut diesel_async::AsyncPgConnection,
) -> Result<time::OffsetDateTime, DbError> {
    use diesel_async::RunQueryDsl;
    Ok(
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamptz>("now()"))
            .get_result(conn)
            .await?,
    )
}

/// Takes a lock on `name` within `space` until the transaction ends: what serialises work on
/// something that may not have a row yet (a row lock needs a row). Two names whose hashes collide
/// only wait for each other.
pub async fn lock_name(
    conn: &mut diesel_async::AsyncPgConnection,
    space: &'static str,
    name: &str,
) -> diesel::QueryResult<()> {
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))")
        .bind::<Text, _>(space)
        .bind::<Text, _>(name)
        .execute(conn)
        .await
        .map(drop)
}

/// Who already goes by a name: a client (its id) or a user (a kept subject).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameHolder {
    /// A client has it as its id.
    Client,
    /// A user keeps it as their subject.
    User,
}

/// Who already goes by `name`, after taking the name's transaction lock (RFC 9700 §4.15: a
/// client id and a user's `sub` must never meet). Client registration and user creation both
/// ask first, in their transaction, so two of them choosing the same name at once cannot both
/// pass.
pub async fn holder_of_name(
    conn: &mut diesel_async::AsyncPgConnection,
    name: &str,
) -> diesel::QueryResult<Option<NameHolder>> {
    use diesel::sql_types::{Bool, Text};
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Holders {
        #[diesel(sql_type = Bool)]
        client: bool,
        #[diesel(sql_type = Bool)]
        user: bool,
    }
    lock_name(conn, "principal", name).await?;
    let row: Holders = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM clients WHERE id = $1) AS client, \
         EXISTS (SELECT 1 FROM users WHERE subject = $1) AS user",
    )
    .bind::<Text, _>(name)
    .get_result(conn)
    .await?;
    Ok(match (row.client, row.user) {
        (true, _) => Some(NameHolder::Client),
        (false, true) => Some(NameHolder::User),
        (false, false) => None,
    })
}

/// Deletes at most `batch` rows of `table` matching `condition` (where `$1` is `now`), so cleanup
/// never holds locks on many rows at once. Both strings are compile-time constants.
pub async fn delete_batch(
    conn: &mut diesel_async::AsyncPgConnection,
    table: &'static str,
    condition: &'static str,
    now: time::OffsetDateTime,
    batch: i64,
) -> diesel::QueryResult<usize> {
    use diesel::sql_types::{BigInt, Timestamptz};
    use diesel_async::RunQueryDsl;
    diesel::sql_query(format!(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {condition} LIMIT $2))"
    ))
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(batch)
    .execute(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_checked_after_idling_or_once_after_a_lost_one() {
        let health = Health::new();
        assert!(
            !health.should_check(Instant::now()),
            "a busy pool sends no check"
        );
        let idle = Instant::now()
            .checked_sub(IDLE_CHECK)
            .expect("a monotonic clock past its first second");
        assert!(health.should_check(idle));
        let before = Instant::now();
        health.connection_lost();
        let after = Instant::now();
        assert!(health.should_check(before), "handed out before the loss");
        assert!(
            !health.should_check(after),
            "handed out (and so checked) after it"
        );
        health.connection_lost();
        assert!(health.should_check(after), "a later loss counts again");
    }

    fn query_error(kind: DatabaseErrorKind, message: &str) -> DbError {
        DbError::Query(diesel::result::Error::DatabaseError(
            kind,
            Box::new(message.to_owned()),
        ))
    }

    #[test]
    fn a_lost_connection_or_a_server_shutting_down_is_unavailable() {
        assert!(
            query_error(DatabaseErrorKind::UnableToSendCommand, "connection closed")
                .is_unavailable()
        );
        assert!(
            query_error(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command"
            )
            .is_unavailable()
        );
        assert!(DbError::Timeout.is_unavailable());
    }

    #[test]
    fn a_failing_query_is_not_unavailable() {
        assert!(!query_error(DatabaseErrorKind::UniqueViolation, "duplicate key").is_unavailable());
        assert!(!query_error(DatabaseErrorKind::Unknown, "syntax error").is_unavailable());
        assert!(!DbError::Query(diesel::result::Error::NotFound).is_unavailable());
    }
}
