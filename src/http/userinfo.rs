//! `GET/POST /userinfo` (OIDC Core §5.3), a protected resource under RFC 6750.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::clients;
use crate::http::cors;
use crate::http::form::is_form_urlencoded;
use crate::http::oauth_error::{BearerError, no_store};
use crate::oauth::userinfo::{self, UserInfoError};

/// The bearer token: from `Authorization: Bearer` (§2.1) or, on POST, the form body (§2.2).
fn bearer_token(headers: &HeaderMap, body: Option<&[u8]>) -> Result<String, BearerError> {
    let from_header = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| BearerError::InvalidRequest)?;
            let (scheme, token) = v.split_once(' ').ok_or(BearerError::InvalidRequest)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(BearerError::InvalidRequest);
            }
            Some(token.trim().to_owned())
        }
    };
    let from_body = body.and_then(|b| {
        url::form_urlencoded::parse(b)
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
    });
    match (from_header, from_body) {
        // §2: one method per request.
        (Some(_), Some(_)) => Err(BearerError::InvalidRequest),
        (Some(t), None) | (None, Some(t)) if !t.is_empty() => Ok(t),
        _ => Err(BearerError::Missing),
    }
}

/// The answer, and the client the token was issued to (whose origins may read it).
async fn userinfo(state: &AppState, token: &str) -> Result<(Response, String), BearerError> {
    let issuer = state.config.server.issuer.as_str();
    let mut conn = state.conn().await?;
    let answer = userinfo::userinfo(
        &mut conn,
        &state.keys.ring,
        issuer,
        token,
        state.clock.now(),
    )
    .await;
    drop(conn);
    match answer {
        Ok((info, client_id)) => Ok((no_store(Json(info).into_response()), client_id)),
        Err(UserInfoError::InvalidToken) => Err(BearerError::InvalidToken),
        Err(UserInfoError::InsufficientScope(s)) => Err(BearerError::InsufficientScope(s)),
        Err(UserInfoError::Db(e)) => Err(e.into()),
    }
}

/// The response with its CORS headers: the token's client decides for an answer; for an error
/// (no valid token, so no client), any client's origin may read it.
async fn respond(
    state: &AppState,
    headers: &HeaderMap,
    result: Result<(Response, String), BearerError>,
) -> Response {
    let origin = cors::request_origin(headers);
    match result {
        Ok((response, _)) if origin.is_none() => response,
        Ok((response, client_id)) => {
            let client = match state.conn().await {
                Ok(mut conn) => clients::find(&mut conn, &client_id).await.ok().flatten(),
                Err(_) => None,
            };
            cors::for_client(response, origin.as_ref(), client.as_ref())
        }
        Err(e) => cors::for_any_client(state, e.into_response(), origin.as_ref()).await,
    }
}

/// `GET /userinfo`.
#[tracing::instrument(skip_all)]
pub async fn get_userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result = match bearer_token(&headers, None) {
        Ok(token) => userinfo(&state, &token).await,
        Err(e) => Err(e),
    };
    respond(&state, &headers, result).await
}

/// `POST /userinfo`.
#[tracing::instrument(skip_all)]
pub async fn post_userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_form = is_form_urlencoded(&headers);
    let result = match bearer_token(&headers, is_form.then_some(&body[..])) {
        Ok(token) => userinfo(&state, &token).await,
        Err(e) => Err(e),
    };
    respond(&state, &headers, result).await
}
