//! Error policy: expected failures are typed where they happen; everything else becomes an
//! `AppError`, which answers an opaque 500 (or 503 while the database is unreachable) and is logged
//! exactly once, here, with its whole cause chain. Messages never carry secrets or user input.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::db::DbError;

/// An unexpected failure: the caller learns only that it happened.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// PostgreSQL cannot be reached right now; the request may be retried.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: a bug or a broken invariant.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
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

impl AppError {
    /// The status this failure answers with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logs the failure with its cause chain; called once, where it becomes a response.
    pub fn log(&self) {
        match self {
            Self::Unavailable(e) => {
                tracing::warn!(error = %format!("{e:#}"), "database unavailable");
            }
            Self::Internal(e) => tracing::error!(error = %format!("{e:#}"), "internal error"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let mut response = (status, status.canonical_reason().unwrap_or("error")).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
