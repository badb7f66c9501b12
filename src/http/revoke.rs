//! `POST /revoke` (RFC 7009): a client ends one of its tokens.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::form::OAuthForm;
use crate::http::guard::Guard;
use crate::http::oauth_error::{TokenError, no_store};
use crate::http::token::authenticate_client;
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;
use crate::oauth::revocation;

/// `POST /revoke`: 200 whether or not the token existed (RFC 7009 §2.2).
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn revoke_token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Response {
    let mut guard = match Guard::for_browser_request(&state, ip, &headers).await {
        Ok(g) => g,
        Err(refused) => return refused,
    };
    let result = revoke(&state, &mut guard, ip, &headers, &params).await;
    guard.finish(result).await
}

async fn revoke(
    state: &AppState,
    guard: &mut Guard<'_>,
    ip: IpAddr,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Response, TokenError> {
    let client = authenticate_client(state, headers, params).await?;
    let mut conn = state.conn().await?;
    guard.authenticated(&client);
    tracing::Span::current().record("client_id", client.id.as_str());
    let token = params
        .get_even_empty("token")
        .ok_or(OAuthError::invalid_request("token is required"))?;
    revocation::revoke(
        &mut conn,
        state.token_keys(),
        state.config.server.issuer.as_str(),
        &client,
        token,
        Some(ip.into()),
        state.clock.now(),
    )
    .await?;
    Ok(no_store(StatusCode::OK.into_response()))
}
