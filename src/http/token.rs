//! `POST /token` (RFC 6749 §3.2, §4.1.3, §5).

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::db;
use crate::http::oauth_error::{TokenError, no_store};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::token::{self, IssuerSettings};

fn invalid_request(description: &'static str) -> TokenError {
    TokenError::OAuth(OAuthError::new(ErrorCode::InvalidRequest, description))
}

/// `POST /token`.
pub async fn exchange_token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    // RFC 6749 §3.2: request parameters must not be included more than once.
    let mut seen = std::collections::HashSet::new();
    if !params.iter().all(|(k, _)| seen.insert(k.as_str())) {
        return Err(invalid_request("a parameter was sent more than once"));
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let presented = token::parse_client_auth(authorization, &params)?;
    let grant_type = params
        .iter()
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| invalid_request("grant_type is required"))?;

    let mut conn = db::connect(&state.db).await?;
    let client = token::find_client(&mut conn, &presented).await?;
    let client = token::authenticate(client, &presented)?;
    let now = state.clock.now();
    let settings = IssuerSettings {
        issuer: state.config.issuer.as_str(),
        access_ttl: time::Duration::try_from(state.config.access_token_ttl)
            .unwrap_or(time::Duration::MINUTE),
        id_ttl: time::Duration::try_from(state.config.id_token_ttl)
            .unwrap_or(time::Duration::MINUTE),
    };
    let response = match grant_type {
        "authorization_code" => {
            token::exchange_code(
                &mut conn,
                &state.keys.ring,
                settings,
                &client,
                &params,
                Some(peer.ip().into()),
                now,
            )
            .await?
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
