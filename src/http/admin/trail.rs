//! `GET /admin/v1/audit-events`: the audit trail, newest first, filtered and paged.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::admit;
use super::problem::Problem;
use crate::app::AppState;
use crate::http::client_ip::ClientIp;
use crate::oauth::admin::{AuditQuery, EventsError, Operation, events};

/// `GET /admin/v1/audit-events?user_id=&client_id=&kind=&since=&until=&limit=&cursor=`.
#[tracing::instrument(skip_all)]
pub async fn list_events(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let operation = Operation {
        scope: "admin:audit.read",
        name: "audit.list",
    };
    admit(&state, &headers, ip, &operation).await?;
    let bad = |detail: String| Problem::client(StatusCode::BAD_REQUEST, detail);
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    let mut conn = state.conn().await?;
    match events(&mut conn, &q).await {
        Ok((events, next)) => {
            Ok(Json(serde_json::json!({ "events": events, "next_cursor": next })).into_response())
        }
        Err(EventsError::Invalid(m)) => Err(bad(m)),
        Err(EventsError::Db(e)) => Err(e.into()),
    }
}
