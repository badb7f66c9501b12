//! The PostgreSQL pool, the embedded migrations, and how database failures are classified.

pub mod schema;

use std::time::Duration;

use diesel::result::DatabaseErrorKind;
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// Every migration in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// How long opening (or checking) a connection may take before the database counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The shared connection pool.
pub type DbPool = Pool<AsyncPgConnection>;
/// A connection checked out of [`DbPool`].
pub type PooledConn = Object<AsyncPgConnection>;

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
            Self::Query(diesel::result::Error::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
                )
                // The server ending our session (SQLSTATE 57P01 admin shutdown, 57P02 crash,
                // 57P05 idle timeout) arrives as a FATAL error of unknown kind: diesel does not
                // expose the SQLSTATE, but PostgreSQL words every one of them this way.
                || info.message().starts_with("terminating connection")
            }
            Self::Query(_) => false,
        }
    }
}

/// Counts the statements a connection sends (diesel reports each one, `BEGIN` and `COMMIT`
/// included, as it starts), for `keyward_db_queries_total` and the benchmarks' queries per request.
struct CountStatements(prometheus_client::metrics::counter::Counter);

impl diesel::connection::Instrumentation for CountStatements {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        if matches!(
            event,
            diesel::connection::InstrumentationEvent::StartQuery { .. }
        ) {
            self.0.inc();
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
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    if let Some(counter) = statements {
        config.custom_setup = Box::new(move |url| {
            let counter = counter.clone();
            Box::pin(async move {
                let mut conn = AsyncPgConnection::establish(url).await?;
                conn.set_instrumentation(CountStatements(counter));
                Ok(conn)
            })
        });
    }
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    Ok(Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(wait))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()?)
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
    let mut conn = AsyncPgConnection::establish(database_url).await?;
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

/// The migrations this binary has that the database has not applied yet, by name.
pub async fn pending_migrations(database_url: &str) -> anyhow::Result<Vec<String>> {
    let conn = AsyncPgConnection::establish(database_url).await?;
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
