//! JSON error responses of the token, introspection and revocation endpoints (RFC 6749 §5.2), and
//! Bearer challenges (RFC 6750 §3).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{AppError, Failure};
use crate::oauth::client_auth::{AuthenticationError, ClientAuthError};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::grant::GrantError;

/// Headers every token-endpoint response carries (RFC 6749 §5.1).
pub fn no_store(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An error of the token, introspection and revocation endpoints.
#[derive(Debug)]
pub enum TokenError {
    /// An RFC 6749 §5.2 error.
    OAuth(OAuthError),
    /// Client authentication failed; `basic` when the client tried HTTP Basic.
    Client(ClientAuthError),
    /// The body is over the size limit: 413 (RFC 9110 §15.5.14), with an `invalid_request` body
    /// so OAuth client libraries still find an RFC 6749 §5.2 error to report.
    TooLarge,
    /// A rate limit refused the request: 429 (RFC 6585 §4) with `Retry-After`, and
    /// `temporarily_unavailable` (RFC 6749 §4.1.2.1) so client libraries report a retryable error.
    TooMany(time::Duration),
    /// Something broke or is overloaded: `server_error` or `temporarily_unavailable`.
    App(AppError),
}

impl From<OAuthError> for TokenError {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

impl From<ClientAuthError> for TokenError {
    fn from(e: ClientAuthError) -> Self {
        Self::Client(e)
    }
}

impl From<AuthenticationError> for TokenError {
    fn from(e: AuthenticationError) -> Self {
        match e {
            AuthenticationError::Refused(e) => Self::Client(e),
            AuthenticationError::Db(e) => e.into(),
        }
    }
}

impl<E: Into<AppError>> From<E> for TokenError
where
    E: std::error::Error,
{
    fn from(e: E) -> Self {
        Self::App(e.into())
    }
}

impl From<GrantError> for TokenError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::OAuth(e) => Self::OAuth(e),
            GrantError::App(e) => Self::App(e),
            GrantError::RateLimited(d) => Self::TooMany(d),
        }
    }
}

fn body(code: ErrorCode, description: &str) -> Json<serde_json::Value> {
    Json(json!({ "error": code.as_str(), "error_description": description }))
}

/// The RFC 6749 §5.2 body for a failure that is not the client's: retry later, or our fault.
fn failure_body(failure: Failure) -> Json<serde_json::Value> {
    match failure {
        Failure::Unavailable | Failure::Busy => body(
            ErrorCode::TemporarilyUnavailable,
            "the server is busy or cannot reach its database; retry shortly",
        ),
        Failure::Internal => body(
            ErrorCode::ServerError,
            "the server could not complete the request",
        ),
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let response = match self {
            Self::OAuth(e) => {
                (StatusCode::BAD_REQUEST, body(e.code, e.description)).into_response()
            }
            Self::Client(e) if e.error.code == ErrorCode::InvalidClient => {
                // RFC 6749 §5.2: 401, with the challenge of the scheme the client used.
                let challenge = if e.used_basic {
                    "Basic realm=\"keyward\", charset=\"UTF-8\""
                } else {
                    "Basic realm=\"keyward\""
                };
                (
                    StatusCode::UNAUTHORIZED,
                    [(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(challenge),
                    )],
                    body(e.error.code, e.error.description),
                )
                    .into_response()
            }
            Self::Client(e) => (
                StatusCode::BAD_REQUEST,
                body(e.error.code, e.error.description),
            )
                .into_response(),
            Self::TooMany(retry_after) => {
                let secs = retry_after.whole_seconds().max(1);
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    body(
                        ErrorCode::TemporarilyUnavailable,
                        "too many failed requests; retry after the time in Retry-After",
                    ),
                )
                    .into_response();
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                body(ErrorCode::InvalidRequest, "the body is too large"),
            )
                .into_response(),
            Self::App(e) => {
                let body = failure_body(e.failure());
                e.respond(body)
            }
        };
        no_store(response)
    }
}

/// An RFC 6750 §3 failure at a protected resource (userinfo).
#[derive(Debug)]
pub enum BearerError {
    /// No token was sent: a bare challenge, no error code (§3.1).
    Missing,
    /// The request is malformed (e.g. two tokens).
    InvalidRequest,
    /// The token is expired, revoked, malformed, or not an access token.
    InvalidToken,
    /// The token lacks a needed scope.
    InsufficientScope(&'static str),
    /// Something broke.
    App(AppError),
}

impl<E: Into<AppError> + std::error::Error> From<E> for BearerError {
    fn from(e: E) -> Self {
        Self::App(e.into())
    }
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let (status, challenge, error) = match self {
            Self::Missing => (StatusCode::UNAUTHORIZED, "Bearer realm=\"keyward\"".to_owned(), None),
            Self::InvalidRequest => (
                StatusCode::BAD_REQUEST,
                "Bearer realm=\"keyward\", error=\"invalid_request\"".to_owned(),
                Some("invalid_request"),
            ),
            Self::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"keyward\", error=\"invalid_token\", error_description=\"the access token is invalid\""
                    .to_owned(),
                Some("invalid_token"),
            ),
            Self::InsufficientScope(scope) => (
                StatusCode::FORBIDDEN,
                format!("Bearer realm=\"keyward\", error=\"insufficient_scope\", scope=\"{scope}\""),
                Some("insufficient_scope"),
            ),
            Self::App(e) => return TokenError::App(e).into_response(),
        };
        // §3.1 keeps the error code out of the bare challenge; the body still says, in JSON
        // like every other answer here, what was missing.
        let body = match error {
            Some(e) => json!({ "error": e }),
            None => json!({
                "error": "invalid_request",
                "error_description": "no access token was presented",
            }),
        };
        let mut r = (status, Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        no_store(r)
    }
}
