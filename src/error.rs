//! Error policy: expected failures are typed where they happen; everything else becomes an
//! `AppError`, which is logged exactly once, at the boundary, with its whole cause chain. A
//! failure that waiting can fix (the database unreachable, the password hasher full) answers 503
//! with `Retry-After`; anything else an opaque 500. Each response shape (page, RFC 6749 §5.2
//! JSON, RFC 6750 challenge) supplies only its body, through [`AppError::respond`]: the status,
//! the `Retry-After` and the log line are decided here, once. Messages never carry secrets or
//! user input.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::db::DbError;
use crate::oauth::sign_in::SignInError;
use crate::users::password::HashError;

/// Seconds a client should wait after a 503 for an unreachable database.
const RETRY_AFTER_UNAVAILABLE: &str = "5";
/// Seconds a client should wait after a 503 for a full hashing queue: it drains in moments.
const RETRY_AFTER_BUSY: &str = "2";
/// Seconds a client should wait after a request was shed for want of a free connection.
const RETRY_AFTER_SHED: &str = "1";

/// A burst of the same refusal is logged once per this.
const BURST_QUIET: std::time::Duration = std::time::Duration::from_secs(10);

static BUSY: Burst = Burst::new();
static SHED: Burst = Burst::new();
static UNAVAILABLE: Burst = Burst::new();

/// Counts repeats of one kind of log line so a burst is logged once, with how many it stood for.
/// (A log-rate limiter crate would be a dependency for these ten lines.)
pub struct Burst {
    last: std::sync::Mutex<Option<std::time::Instant>>,
    suppressed: std::sync::atomic::AtomicU64,
}

impl Burst {
    /// A burst that has not started.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            last: std::sync::Mutex::new(None),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Records one occurrence at `now`; `Some(n)` when it should be logged, `n` being how many
    /// went unlogged since the last line.
    pub fn note(&self, now: std::time::Instant) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *last {
            Some(at) if now.saturating_duration_since(at) < BURST_QUIET => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

/// An unexpected failure: the caller learns only that it happened, and whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// PostgreSQL cannot be reached right now; the request may be retried.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Password hashing is saturated; the request may be retried shortly.
    #[error("password hashing is saturated")]
    Busy,
    /// Shed: every database connection (or every slot of its class of work) stayed busy for the
    /// whole short wait; the request may be retried shortly.
    #[error("overloaded: request shed")]
    Shed(Shed),
    /// Anything else: a bug or a broken invariant.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Which bound shed a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// The slots for code redemptions and refresh rotations.
    Rotation,
    /// The database pool itself.
    Pool,
}

/// On a refused response, what refused it: the metrics layer counts it (the response is all it
/// sees, and the error has no handle on the metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureMark {
    /// Shed for lack of a rotation slot.
    ShedRotation,
    /// Shed for lack of a database connection.
    ShedPool,
    /// The database could not be reached.
    DbUnavailable,
    /// The hashing queue was full.
    HashBusy,
}

/// What kind of failure a response shape has to put into words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Retry later (503): the database is unreachable.
    Unavailable,
    /// Retry shortly (503): too many password checks, or too much database work, at once.
    Busy,
    /// Our fault (500).
    Internal,
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        std::sync::Arc::new(e).into()
    }
}

/// Also the failure of a statement that served several requests (refresh rotations sent
/// together): each of them answers as it would for a failure of its own.
impl From<std::sync::Arc<DbError>> for AppError {
    fn from(e: std::sync::Arc<DbError>) -> Self {
        if matches!(*e, DbError::Exhausted) {
            Self::Shed(Shed::Pool)
        } else if e.is_unavailable() {
            Self::Unavailable(anyhow::Error::new(e))
        } else {
            Self::Internal(anyhow::Error::new(e))
        }
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        DbError::from(e).into()
    }
}

impl From<HashError> for AppError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::Busy,
            HashError::Internal(e) => Self::Internal(e),
        }
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(e: tower_sessions::session::Error) -> Self {
        match e {
            // The session store is PostgreSQL: a backend failure is the database's.
            tower_sessions::session::Error::Store(
                tower_sessions::session_store::Error::Backend(_),
            ) => Self::Unavailable(anyhow::Error::new(e)),
            _ => Self::Internal(anyhow::Error::new(e)),
        }
    }
}

impl AppError {
    /// The sign-in failures that are not the person's own mistake; `None` for the refusals a
    /// caller must answer itself (wrong credentials, locked, disabled).
    #[must_use]
    pub fn from_sign_in(e: SignInError) -> Option<Self> {
        match e {
            SignInError::Busy => Some(Self::Busy),
            SignInError::Db(e) => Some(e.into()),
            SignInError::Internal(e) => Some(Self::Internal(e)),
            SignInError::WrongCredentials
            | SignInError::Locked { .. }
            | SignInError::RateLimited { .. }
            | SignInError::Disabled => None,
        }
    }

    /// The kind of failure, for the words of the response.
    #[must_use]
    pub fn failure(&self) -> Failure {
        match self {
            Self::Unavailable(_) => Failure::Unavailable,
            Self::Busy | Self::Shed(_) => Failure::Busy,
            Self::Internal(_) => Failure::Internal,
        }
    }

    /// The status this failure answers with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self.failure() {
            Failure::Unavailable | Failure::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logs the failure with its cause chain. A refusal under load is a warning, not an error:
    /// the service is doing what it should; and once per burst, not once per request, or an
    /// overload would also flood the logs.
    fn log(&self) {
        match self {
            Self::Unavailable(e) => {
                if let Some(more) = UNAVAILABLE.note(std::time::Instant::now()) {
                    tracing::warn!(error = %format!("{e:#}"), refused_since_last = more, "database unavailable");
                }
            }
            Self::Busy => {
                if let Some(more) = BUSY.note(std::time::Instant::now()) {
                    tracing::warn!(
                        refused_since_last = more,
                        "password hashing saturated: refusing requests"
                    );
                }
            }
            Self::Shed(_) => {
                if let Some(more) = SHED.note(std::time::Instant::now()) {
                    tracing::warn!(shed_since_last = more, "overloaded: shedding requests");
                }
            }
            Self::Internal(e) => tracing::error!(error = %format!("{e:#}"), "internal error"),
        }
    }

    /// The one way a failure becomes a response: logged once, `body` (in the endpoint's shape)
    /// under this failure's status, with `Retry-After` on a 503.
    pub fn respond(self, body: impl IntoResponse) -> Response {
        self.log();
        let mut response = (self.status(), body).into_response();
        let retry_after = match (&self, self.failure()) {
            (Self::Shed(_), _) => Some(RETRY_AFTER_SHED),
            (_, Failure::Unavailable) => Some(RETRY_AFTER_UNAVAILABLE),
            (_, Failure::Busy) => Some(RETRY_AFTER_BUSY),
            (_, Failure::Internal) => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        let mark = match &self {
            Self::Shed(Shed::Rotation) => Some(FailureMark::ShedRotation),
            Self::Shed(Shed::Pool) => Some(FailureMark::ShedPool),
            Self::Unavailable(_) => Some(FailureMark::DbUnavailable),
            Self::Busy => Some(FailureMark::HashBusy),
            Self::Internal(_) => None,
        };
        if let Some(mark) = mark {
            response.extensions_mut().insert(mark);
        }
        response
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let reason = self.status().canonical_reason().unwrap_or("error");
        self.respond(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_burst_is_logged_once_then_again_with_its_count_after_a_quiet_spell() {
        let burst = Burst::new();
        let t0 = Instant::now();
        assert_eq!(burst.note(t0), Some(0));
        for i in 1..=500 {
            assert_eq!(burst.note(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(
            burst.note(t0 + BURST_QUIET + Duration::from_secs(1)),
            Some(500)
        );
        assert_eq!(burst.note(t0 + BURST_QUIET + Duration::from_secs(2)), None);
    }
}
