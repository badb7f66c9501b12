//! Liveness and readiness probes for load balancers and orchestrators.

use axum::extract::State;
use axum::http::StatusCode;

use crate::app::AppState;

/// `GET /healthz`: the process is up and serving.
pub async fn get_healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers and agrees with us on the time, so requests can be served.
/// A clock drifting beyond `KEYWARD_MAX_CLOCK_SKEW` makes the instance unready: a load balancer
/// then stops sending it requests whose expiry it would judge wrongly.
pub async fn get_readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    let max = state.config.server.max_clock_skew;
    match crate::clock::offset_from_database(&state.clock, &state.db).await {
        Ok(offset) if offset.abs() <= max => (StatusCode::OK, "ready"),
        Ok(offset) => {
            tracing::warn!(%offset, %max, "readiness check failed: clock skew against the database");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "clock skew against the database",
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
