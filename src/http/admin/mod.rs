//! The management API (`/admin/v1/`): JSON for a service's backend, authorised by Keyward's own
//! access tokens (`client_credentials` with `admin:*` scopes). Every call is judged, rate-limited
//! per client and recorded with the acting client by the operation it calls.

pub mod clients;
pub mod problem;
pub mod trail;
pub mod users;

use std::net::IpAddr;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{delete, get, post};

use crate::app::AppState;
use crate::oauth::admin::{Caller, Operation, authenticate};
use crate::rate_limits::{Key, Limit};
use problem::{Problem, TokenProblem};

/// The management routes, mounted only when `KEYWARD_ADMIN_API` is on.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/v1/users",
            get(users::list_users).post(users::create_user),
        )
        .route("/admin/v1/users:import", post(users::import_users))
        .route(
            "/admin/v1/users/{target}",
            get(users::get_user)
                .patch(users::update_user)
                .delete(users::delete_user)
                .post(users::user_method),
        )
        .route(
            "/admin/v1/users/{target}/sessions",
            get(users::list_sessions).delete(users::end_sessions),
        )
        .route(
            "/admin/v1/users/{target}/sessions/{handle}",
            delete(users::end_sessions),
        )
        .route(
            "/admin/v1/users/{target}/consents",
            get(users::list_consents),
        )
        .route(
            "/admin/v1/users/{target}/consents/{client_id}",
            delete(users::withdraw_consent),
        )
        .route("/admin/v1/audit-events", get(trail::list_events))
        .route(
            "/admin/v1/clients",
            get(clients::list_clients).post(clients::create_client),
        )
        .route(
            "/admin/v1/clients/{id}",
            get(clients::get_client)
                .patch(clients::update_client)
                .delete(clients::delete_client)
                .post(clients::client_method),
        )
}

/// The bearer token of `Authorization` (RFC 6750 §2.1 only: no form or query tokens here).
fn bearer_token(headers: &HeaderMap) -> Result<&str, TokenProblem> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(TokenProblem::Missing)?;
    let value = value.to_str().map_err(|_| TokenProblem::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(TokenProblem::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(TokenProblem::Malformed);
    }
    Ok(token)
}

/// Admits a call of `operation`: the address not blocked for failed authentication, a live
/// management token with the scope (a refused token counts against the address), and the client
/// within its rate.
pub async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    ip: IpAddr,
    operation: &Operation,
) -> Result<Caller, Problem> {
    let now = state.clock.now();
    let by_ip = Key::ip(ip);
    if let Err(blocked) = state.limits.check(Limit::TokenPerIp, &by_ip, now) {
        return Err(Problem::TooMany(blocked.retry_after));
    }
    let token = bearer_token(headers).map_err(Problem::Token)?;
    let issuer = state.config.server.issuer.as_str();
    let mut conn = state.conn().await?;
    let keys = &state.keys.ring;
    let accepted = authenticate(
        &mut conn,
        keys,
        issuer,
        token,
        operation,
        Some(ip.into()),
        now,
    );
    let caller = match accepted.await? {
        Ok(caller) => caller,
        Err(refused) => {
            state
                .limits
                .record(&mut conn, Limit::TokenPerIp, &by_ip, now)
                .await?;
            return Err(Problem::Token(TokenProblem::Refused(refused)));
        }
    };
    let by_client = Key::client(&caller.client_id);
    if let Err(blocked) = state
        .limits
        .take(&mut conn, Limit::AdminPerClient, &by_client, now)
        .await?
    {
        return Err(Problem::TooMany(blocked.retry_after));
    }
    Ok(caller)
}

/// A JSON request body, or the problem with it: 415 for another media type, 400 for bad JSON.
pub fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<serde_json::Value, Problem> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Problem::client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        Problem::client(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON ({e})"),
        )
    })
}
