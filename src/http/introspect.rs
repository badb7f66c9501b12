//! `POST /introspect` (RFC 7662): for confidential clients, typically resource servers.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::form::OAuthForm;
use crate::http::guard::Guard;
use crate::http::oauth_error::{TokenError, no_store};
use crate::http::token::authenticate_client;
use crate::oauth::client_auth::ClientAuthError;
use crate::oauth::error::OAuthError;
use crate::oauth::introspection::{self, Hint};
use crate::oauth::params::Params;

/// `POST /introspect`: fails closed (503) when the database cannot be asked, never answering
/// `active: true` unchecked.
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn introspect_token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Result<Response, TokenError> {
    // A server-side call: never answered to browsers (no CORS).
    let mut guard = Guard::new(&state, ip)?;
    let result = introspect(&state, &mut guard, &headers, &params).await;
    Ok(guard.finish(result).await)
}

async fn introspect(
    state: &AppState,
    guard: &mut Guard<'_>,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Response, TokenError> {
    let client = authenticate_client(state, headers, params).await?;
    let mut conn = state.conn().await?;
    guard.authenticated(&client);
    tracing::Span::current().record("client_id", client.id.as_str());
    if client.is_public {
        return Err(ClientAuthError::refused("public clients cannot introspect").into());
    }
    let token = params
        .get_even_empty("token")
        .ok_or(OAuthError::invalid_request("token is required"))?;
    let answer = introspection::introspect(
        &mut conn,
        state.token_keys(),
        state.config.server.issuer.as_str(),
        &client,
        token,
        Hint::for_token(token, params.get("token_type_hint")),
        state.clock.now(),
    )
    .await?;
    Ok(no_store(Json(answer).into_response()))
}
