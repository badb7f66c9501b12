//! `GET/POST /userinfo` (OIDC Core §5.3), a protected resource under RFC 6750.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::clients;
use crate::db;
use crate::http::cors;
use crate::http::form::is_form_urlencoded;
use crate::http::oauth_error::{BearerError, no_store};
use crate::scope;
use crate::tokens::jwt::{self, ProfileClaims};
use crate::tokens::revoked;
use crate::users;

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

/// The userinfo response: the subject and what the token's scopes release (OIDC Core §5.3.2).
#[derive(Serialize)]
struct UserInfo {
    sub: String,
    #[serde(flatten)]
    profile: ProfileClaims,
}

/// The answer, and the client the token was issued to (whose origins may read it).
async fn userinfo(state: &AppState, token: &str) -> Result<(Response, String), BearerError> {
    let now = state.clock.now();
    // RFC 9068 §4: only access tokens; an ID token (typ JWT) is not a credential here.
    let claims = jwt::verify_access_token(
        &state.keys.ring,
        token,
        state.config.server.issuer.as_str(),
        now,
    )
    .map_err(|_| BearerError::InvalidToken)?;
    // A token minted for an API is that API's, not a credential for userinfo.
    if !claims.aud.contains(state.config.server.issuer.as_str()) {
        return Err(BearerError::InvalidToken);
    }
    let user_id = claims.user_id().ok_or(BearerError::InvalidToken)?;
    let mut conn = db::connect(&state.db).await?;
    if revoked::is_revoked(&mut conn, claims.jti).await? {
        return Err(BearerError::InvalidToken);
    }
    // A cut-off since the token was issued ends it here, before its `exp`.
    let user = users::find(&mut conn, user_id)
        .await?
        .filter(|u| !u.is_disabled() && claims.is_current_for(u.id, u.credential_version))
        .ok_or(BearerError::InvalidToken)?;
    drop(conn);
    let scopes = claims.scopes();
    if !scopes.contains(scope::OPENID) {
        return Err(BearerError::InsufficientScope(scope::OPENID));
    }
    let info = UserInfo {
        sub: user.id.to_string(),
        profile: ProfileClaims::for_scopes(&scopes, &user.username, user.email.as_deref()),
    };
    Ok((no_store(Json(info).into_response()), claims.client_id))
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
            let client = match db::connect(&state.db).await {
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
