//! Liveness and readiness probes for load balancers and orchestrators.

use axum::extract::State;
use axum::http::StatusCode;

use crate::db::{self, DbPool};

/// `GET /healthz`: the process is up and serving.
pub async fn get_healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers, so requests can be served.
pub async fn get_readyz(State(pool): State<DbPool>) -> (StatusCode, &'static str) {
    match db::ping(&pool).await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
