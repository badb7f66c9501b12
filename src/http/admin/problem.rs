//! Management API errors as RFC 9457 problem details, with the RFC 6750 §3 challenge when the
//! token was the problem.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::AppError;
use crate::oauth::admin::Refused;

/// The media type of a problem (RFC 9457 §3).
const PROBLEM_JSON: &str = "application/problem+json";

/// A refused management call.
#[derive(Debug)]
pub enum Problem {
    /// The caller's mistake: `status` with a `detail` in words that never repeat a secret.
    Client(StatusCode, String),
    /// The token: missing, invalid or short of a scope (RFC 6750 §3.1).
    Token(TokenProblem),
    /// A rate limit: 429 with `Retry-After` (RFC 6585 §4).
    TooMany(time::Duration),
    /// Something broke (503 or an opaque 500, logged once).
    App(AppError),
}

/// What was wrong with the bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// No token at all: a bare challenge (§3.1).
    Missing,
    /// The `Authorization` header is malformed.
    Malformed,
    /// Refused by the management API's rules.
    Refused(Refused),
}

impl Problem {
    /// A client error with a detail.
    pub fn client(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::Client(status, detail.into())
    }

    /// 404 for something that does not exist.
    #[must_use]
    pub fn not_found(what: &str) -> Self {
        Self::client(StatusCode::NOT_FOUND, format!("no such {what}"))
    }
}

impl<E: Into<AppError> + std::error::Error> From<E> for Problem {
    fn from(e: E) -> Self {
        Self::App(e.into())
    }
}

fn body(status: StatusCode, detail: Option<&str>) -> Json<serde_json::Value> {
    let mut problem = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
    });
    if let Some(detail) = detail {
        problem["detail"] = detail.into();
    }
    Json(problem)
}

fn with_type(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let response = match self {
            Self::Client(status, detail) => (status, body(status, Some(&detail))).into_response(),
            Self::Token(problem) => token_response(problem),
            Self::TooMany(retry_after) => {
                let status = StatusCode::TOO_MANY_REQUESTS;
                let detail = "too many requests; retry after the time in Retry-After";
                let mut r = (status, body(status, Some(detail))).into_response();
                let secs = retry_after.whole_seconds().max(1);
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            Self::App(e) => {
                let status = e.status();
                e.respond(body(status, None))
            }
        };
        with_type(response)
    }
}

/// RFC 6750 §3: 401 with a challenge for a missing or bad token, 403 for a missing scope (naming
/// it), 400 for a malformed header.
fn token_response(problem: TokenProblem) -> Response {
    let (status, challenge, detail) = match problem {
        TokenProblem::Missing => (
            StatusCode::UNAUTHORIZED,
            "Bearer realm=\"keyward-admin\"".to_owned(),
            "a bearer access token of a management client is required",
        ),
        TokenProblem::Malformed => (
            StatusCode::BAD_REQUEST,
            "Bearer realm=\"keyward-admin\", error=\"invalid_request\"".to_owned(),
            "the Authorization header is not a Bearer token",
        ),
        TokenProblem::Refused(Refused::InvalidToken) => (
            StatusCode::UNAUTHORIZED,
            "Bearer realm=\"keyward-admin\", error=\"invalid_token\", error_description=\"the access token is not a live management token\"".to_owned(),
            "the access token is expired, revoked, not for this API, or not a management client's",
        ),
        TokenProblem::Refused(Refused::InsufficientScope(scope)) => (
            StatusCode::FORBIDDEN,
            format!("Bearer realm=\"keyward-admin\", error=\"insufficient_scope\", scope=\"{scope}\""),
            "the access token lacks the scope this operation needs",
        ),
    };
    let mut response = (status, body(status, Some(detail))).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}
