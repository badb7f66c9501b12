//! Per-request metrics: the route template, method and status of every response, its duration,
//! and what a refusal under load was (marked on the response by [`AppError::respond`]).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, http::header};

use crate::app::AppState;
use crate::error::FailureMark;
use crate::http::request_id::RequestId;
use crate::metrics::Snapshot;

/// The matched route (`/token`, never `/token?code=...` or a raw path), on the response.
#[derive(Clone, Debug)]
pub struct RouteTemplate(pub String);

/// Route layer: copies the matched route onto the response for [`track`], which runs outside
/// routing and cannot see it on the request.
pub async fn mark_route(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(RouteTemplate(route));
    }
    response
}

/// The route label of a response: its template, or `unmatched` (404s of arbitrary paths must
/// not become one time series each).
#[must_use]
pub fn route_of(response: &Response) -> &str {
    response
        .extensions()
        .get::<RouteTemplate>()
        .map_or("unmatched", |r| r.0.as_str())
}

/// Only the methods we route, so a client cannot mint label values.
#[must_use]
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The client a token endpoint authenticated, on its response (for the access log).
#[derive(Clone, Debug)]
pub struct AuthenticatedClient(pub String);

/// Outermost layer but the request id and the trace span: counts, times and logs every
/// request, whatever answered it. One access line each: method, route template, status,
/// duration, client and request id; never the query, a body, a cookie or a token.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let response = next.run(request).await;
    let metrics = &state.metrics;
    let elapsed = started.elapsed();
    let route = route_of(&response);
    let status = response.status().as_u16();
    metrics.request(route, method, status, elapsed.as_secs_f64());
    let client = response
        .extensions()
        .get::<AuthenticatedClient>()
        .map_or("-", |c| c.0.as_str());
    tracing::info!(
        target: "keyward::access",
        method,
        route,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        client_id = client,
        request_id,
        "request"
    );
    match response.extensions().get::<FailureMark>() {
        Some(FailureMark::ShedRotation) => metrics.shed("rotation"),
        Some(FailureMark::ShedPool) => {
            metrics.shed("db_pool");
            metrics.db_error("exhausted");
        }
        Some(FailureMark::DbUnavailable) => metrics.db_error("unavailable"),
        Some(FailureMark::HashBusy) => metrics.hash_rejected(),
        None => {}
    }
    response
}

/// `GET /metrics`, on its own listener.
async fn get_metrics(State(state): State<AppState>) -> Response {
    let now = state.clock.now();
    let status = state.db.status();
    let in_use = status.size.saturating_sub(status.available);
    let snapshot = Snapshot {
        hashes_in_flight: i64::try_from(state.hasher.in_flight()).unwrap_or(i64::MAX),
        signing_keys: state.keys.ring.count_by_state(now),
        pool: vec![
            ("idle", i64::try_from(status.available).unwrap_or(i64::MAX)),
            ("in_use", i64::try_from(in_use).unwrap_or(i64::MAX)),
            ("waiting", i64::try_from(status.waiting).unwrap_or(i64::MAX)),
        ],
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&snapshot),
    )
        .into_response()
}

/// The metrics listener's router: `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .with_state(state)
}
