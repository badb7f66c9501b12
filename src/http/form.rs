//! Form bodies of the OAuth endpoints: the one content-type check, and the body read into
//! [`Params`] (RFC 6749 §3.2: `application/x-www-form-urlencoded`, no parameter twice).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};

use crate::http::oauth_error::TokenError;
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;

/// Whether the request says its body is a form (parameters such as `charset` allowed).
#[must_use]
pub fn is_form_urlencoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The parameters of a form-encoded body; anything else, or a repeated parameter, is an RFC 6749
/// §5.2 `invalid_request`.
#[derive(Debug)]
pub struct OAuthForm(pub Params);

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = TokenError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_form_urlencoded(req.headers()) {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            )
            .into());
        }
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                TokenError::TooLarge
            } else {
                OAuthError::invalid_request("the body could not be read").into()
            }
        })?;
        let params = Params::parse(&body);
        params.reject_repeated(&[])?;
        Ok(Self(params))
    }
}
