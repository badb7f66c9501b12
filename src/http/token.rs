//! `POST /token` (RFC 6749 §3.2): authenticate the client, read the grant's request, run it.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::clients::Client;
use crate::db::{self, PooledConn};
use crate::http::form::OAuthForm;
use crate::http::oauth_error::{TokenError, no_store};
use crate::oauth::client_auth;
use crate::oauth::grant::password::PasswordCheck;
use crate::oauth::grant::{
    GrantContext, IssuerSettings, TokenRequest, authorization_code, client_credentials, password,
    refresh_token,
};
use crate::oauth::params::Params;

/// Authenticates the calling client (RFC 6749 §2.3) and hands back a connection to go on with.
pub async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(Client, PooledConn), TokenError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let presented = client_auth::parse(authorization, params)?;
    let mut conn = db::connect(&state.db).await?;
    let client = crate::clients::find(&mut conn, &presented.client_id).await?;
    Ok((client_auth::authenticate(client, &presented)?, conn))
}

/// `POST /token`.
#[tracing::instrument(skip_all, fields(client_id, grant_type))]
pub async fn exchange_token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Result<Response, TokenError> {
    let grant_type = params.require("grant_type", "grant_type is required")?;
    let (client, mut conn) = authenticate_client(&state, &headers, &params).await?;
    let span = tracing::Span::current();
    span.record("client_id", client.id.as_str());
    let request = TokenRequest::parse(grant_type, &client, &params)?;
    span.record("grant_type", request.grant_type().as_str());
    let config = &state.config;
    let ctx = GrantContext {
        keys: &state.keys.ring,
        settings: IssuerSettings {
            issuer: config.server.issuer.as_str(),
            access_ttl: config.tokens.access_ttl,
            id_ttl: config.tokens.id_ttl,
        },
        refresh: &state.refresh,
        ip: Some(peer.ip().into()),
        now: state.clock.now(),
    };
    let response = match &request {
        TokenRequest::AuthorizationCode(r) => {
            authorization_code::exchange_code(&mut conn, &ctx, &client, r).await?
        }
        TokenRequest::RefreshToken(r) => {
            refresh_token::refresh(&mut conn, &ctx, &client, r).await?
        }
        TokenRequest::ClientCredentials(r) => {
            drop(conn);
            client_credentials::client_credentials(&ctx, &client, r)?
        }
        TokenRequest::Password(r) => {
            drop(conn);
            let check = PasswordCheck {
                pool: &state.db,
                hasher: &state.hasher,
                throttle: config.passwords.throttle,
            };
            password::password(check, &ctx, &client, r).await?
        }
    };
    Ok(no_store(Json(response).into_response()))
}
