//! `GET/POST /userinfo` (OIDC Core §5.3), a protected resource under RFC 6750.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::db;
use crate::http::oauth_error::{BearerError, no_store};
use crate::scope::{self, Scopes};
use crate::tokens::jwt::{ACCESS_TOKEN_TYP, ProfileClaims};
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

async fn userinfo(state: &AppState, token: &str) -> Result<Response, BearerError> {
    let now = state.clock.now();
    let verified = state
        .keys
        .ring
        .verify(token, state.config.server.issuer.as_str(), now)
        .map_err(|_| BearerError::InvalidToken)?;
    // RFC 9068 §4: only access tokens; an ID token (typ JWT) is not a credential here.
    if verified.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
        return Err(BearerError::InvalidToken);
    }
    let claims = &verified.claims;
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .and_then(|j| uuid::Uuid::parse_str(j).ok())
        .ok_or(BearerError::InvalidToken)?;
    let user_id = claims
        .get("sub")
        .and_then(Value::as_str)
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .ok_or(BearerError::InvalidToken)?;
    let scopes = Scopes::parse(claims.get("scope").and_then(Value::as_str).unwrap_or(""))
        .map_err(|_| BearerError::InvalidToken)?;
    let mut conn = db::connect(&state.db).await?;
    if revoked::is_revoked(&mut conn, jti).await? {
        return Err(BearerError::InvalidToken);
    }
    let user = users::find(&mut conn, user_id)
        .await?
        .filter(|u| !u.is_disabled())
        .ok_or(BearerError::InvalidToken)?;
    drop(conn);
    if !scopes.contains(scope::OPENID) {
        return Err(BearerError::InsufficientScope(scope::OPENID));
    }
    let profile = ProfileClaims::for_scopes(&scopes, &user.username, user.email.as_deref());
    let mut out = Map::new();
    out.insert("sub".into(), json!(user.id.to_string()));
    for (name, value) in [
        (
            "preferred_username",
            profile.preferred_username.map(|v| json!(v)),
        ),
        ("name", profile.name.map(|v| json!(v))),
        ("email", profile.email.map(|v| json!(v))),
        ("email_verified", profile.email_verified.map(|v| json!(v))),
    ] {
        if let Some(v) = value {
            out.insert(name.into(), v);
        }
    }
    Ok(no_store(Json(Value::Object(out)).into_response()))
}

/// `GET /userinfo`.
pub async fn get_userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, BearerError> {
    let token = bearer_token(&headers, None)?;
    userinfo(&state, &token).await
}

/// `POST /userinfo`.
pub async fn post_userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BearerError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let token = bearer_token(&headers, is_form.then_some(&body[..]))?;
    userinfo(&state, &token).await
}
