//! `POST /token` (RFC 6749 §3.2): authenticate the client, read the grant's request, run it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::clients::Client;
use crate::http::client_ip::ClientIp;
use crate::http::form::OAuthForm;
use crate::http::guard::Guard;
use crate::http::oauth_error::{TokenError, no_store};
use crate::oauth::client_auth;
use crate::oauth::grant::{self, GrantContext, IssuerSettings, TokenRequest};
use crate::oauth::params::Params;

/// Authenticates the calling client (RFC 6749 §2.3), from memory when this instance has seen it.
pub async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Arc<Client>, TokenError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let known = client_auth::authenticate_known(&state.clients, &state.db, authorization, params);
    Ok(known.await?)
}

/// What every grant issues with: keys, issuer settings, refresh policy, the caller and now.
fn grant_context(state: &AppState, ip: IpAddr, now: time::OffsetDateTime) -> GrantContext<'_> {
    let config = &state.config;
    GrantContext {
        keys: &state.keys.ring,
        settings: IssuerSettings {
            issuer: config.server.issuer.as_str(),
            access_ttl: config.tokens.access_ttl,
            id_ttl: config.tokens.id_ttl,
        },
        refresh: &state.refresh,
        rotations: &state.rotations,
        ip: Some(ip.into()),
        metrics: &state.metrics,
        now,
    }
}

/// `POST /token`.
#[tracing::instrument(skip_all, fields(client_id, grant_type))]
pub async fn exchange_token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Response {
    let mut guard = match Guard::for_browser_request(&state, ip, &headers).await {
        Ok(g) => g,
        Err(refused) => return refused,
    };
    let result = exchange(&state, &mut guard, ip, &headers, &params).await;
    guard.finish(result).await
}

async fn exchange(
    state: &AppState,
    guard: &mut Guard<'_>,
    ip: IpAddr,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Response, TokenError> {
    let grant_type = params.require("grant_type", "grant_type is required")?;
    // Rotations (codes, refresh tokens) are the heavy database work: bounded so that under
    // overload they shed fast and leave connections to client_credentials and introspection.
    let _slot = match grant_type {
        "authorization_code" | "refresh_token" => Some(state.work.rotation().await?),
        _ => None,
    };
    let client = authenticate_client(state, headers, params).await?;
    guard.authenticated(&client);
    let span = tracing::Span::current();
    span.record("client_id", client.id.as_str());
    let request = TokenRequest::parse(grant_type, &client, params)?;
    span.record("grant_type", request.grant_type().as_str());
    if !matches!(request, TokenRequest::Password(_)) {
        guard.client(&client)?;
    }
    guard.sign_in = matches!(request, TokenRequest::Password(_));
    let ctx = grant_context(state, ip, guard.now);
    let checks = state.sign_in_checks(ip);
    let response = grant::run(&ctx, &state.db, &checks, &client, &request).await?;
    Ok(no_store(Json(response).into_response()))
}
