//! `POST /token` (RFC 6749 §3.2, §4.1.3, §4.3, §4.4, §6), and the client authentication and form
//! reading it shares with introspection and revocation.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::clients::Client;
use crate::db::{self, PooledConn};
use crate::http::oauth_error::{TokenError, no_store};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::token::{self, GrantContext, IssuerSettings, PasswordCheck};

fn invalid_request(description: &'static str) -> TokenError {
    TokenError::OAuth(OAuthError::new(ErrorCode::InvalidRequest, description))
}

/// Reads a form-encoded body; anything else, or a repeated parameter, is `invalid_request`.
pub fn read_form(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, TokenError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    // RFC 6749 §3.2: request parameters must not be included more than once.
    let mut seen = std::collections::HashSet::new();
    if !params.iter().all(|(k, _)| seen.insert(k.as_str())) {
        return Err(invalid_request("a parameter was sent more than once"));
    }
    Ok(params)
}

/// Authenticates the calling client (RFC 6749 §2.3) and hands back a connection to go on with.
pub async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<(Client, PooledConn), TokenError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let presented = token::parse_client_auth(authorization, params)?;
    let mut conn = db::connect(&state.db).await?;
    let client = crate::clients::find(&mut conn, &presented.client_id).await?;
    Ok((token::authenticate(client, &presented)?, conn))
}

fn settings(state: &AppState) -> IssuerSettings<'_> {
    IssuerSettings {
        issuer: state.config.server.issuer.as_str(),
        access_ttl: state.config.tokens.access_ttl,
        id_ttl: state.config.tokens.id_ttl,
    }
}

/// `POST /token`.
pub async fn exchange_token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let params = read_form(&headers, &body)?;
    let grant_type = params
        .iter()
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| invalid_request("grant_type is required"))?;
    let (client, mut conn) = authenticate_client(&state, &headers, &params).await?;
    let ctx = GrantContext {
        keys: &state.keys.ring,
        settings: settings(&state),
        refresh: &state.refresh,
        ip: Some(peer.ip().into()),
        now: state.clock.now(),
    };
    let response = match grant_type.as_str() {
        "authorization_code" => token::exchange_code(&mut conn, &ctx, &client, &params).await?,
        "refresh_token" => token::refresh(&mut conn, &ctx, &client, &params).await?,
        "client_credentials" => {
            drop(conn);
            token::client_credentials(&ctx, &client, &params)?
        }
        "password" => {
            drop(conn);
            let check = PasswordCheck {
                pool: &state.db,
                hasher: &state.hasher,
                throttle: state.config.passwords.throttle,
            };
            token::password(check, &ctx, &client, &params).await?
        }
        _ => {
            return Err(TokenError::OAuth(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "this grant type is not supported",
            )));
        }
    };
    Ok(no_store(Json(response).into_response()))
}
