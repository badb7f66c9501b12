//! `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009).

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::http::oauth_error::{TokenError, no_store};
use crate::http::token::{authenticate_client, read_form};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::introspection::{self, Hint};
use crate::oauth::token::ClientAuthError;

fn token_param(params: &[(String, String)]) -> Result<(String, Option<String>), TokenError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let token = get("token").ok_or(TokenError::OAuth(OAuthError::new(
        ErrorCode::InvalidRequest,
        "token is required",
    )))?;
    Ok((token, get("token_type_hint")))
}

/// `POST /introspect`: confidential clients only; fails closed (503) when the database cannot
/// be asked, never answering `active: true` unchecked.
pub async fn introspect_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let params = read_form(&headers, &body)?;
    let (client, mut conn) = authenticate_client(&state, &headers, &params).await?;
    if client.is_public {
        return Err(TokenError::Client(ClientAuthError {
            error: OAuthError::new(ErrorCode::InvalidClient, "public clients cannot introspect"),
            used_basic: false,
        }));
    }
    let (token, hint) = token_param(&params)?;
    let answer = introspection::introspect(
        &mut conn,
        &state.keys.ring,
        state.config.server.issuer.as_str(),
        &client,
        &token,
        Hint::for_token(&token, hint.as_deref()),
        state.clock.now(),
    )
    .await?;
    Ok(no_store(Json(answer).into_response()))
}

/// `POST /revoke`: 200 whether or not the token existed (RFC 7009 §2.2).
pub async fn revoke_token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let params = read_form(&headers, &body)?;
    let (client, mut conn) = authenticate_client(&state, &headers, &params).await?;
    let (token, _hint) = token_param(&params)?;
    introspection::revoke(
        &mut conn,
        &state.keys.ring,
        state.config.server.issuer.as_str(),
        &client,
        &token,
        Some(peer.ip().into()),
        state.clock.now(),
    )
    .await?;
    Ok(no_store(StatusCode::OK.into_response()))
}
