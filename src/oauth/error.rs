//! The error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 8707, and OpenID Connect Core §3.1.2.6.

use std::fmt;

/// An OAuth error code; `Display` is the exact string the RFCs define.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed or missing parameter.
    InvalidRequest,
    /// Client authentication failed (RFC 6749 §5.2).
    InvalidClient,
    /// Bad, expired, reused or mismatched grant.
    InvalidGrant,
    /// The client may not use this grant or response type.
    UnauthorizedClient,
    /// The grant type is not supported.
    UnsupportedGrantType,
    /// The response type is not supported.
    UnsupportedResponseType,
    /// Scope malformed, unknown, or beyond what the client may ask.
    InvalidScope,
    /// The person (or server) refused.
    AccessDenied,
    /// RFC 8707: the resource is not allowed.
    InvalidTarget,
    /// Unexpected failure.
    ServerError,
    /// Try again later.
    TemporarilyUnavailable,
    /// OIDC: `prompt=none` but nobody is signed in.
    LoginRequired,
    /// OIDC: `prompt=none` but consent is needed.
    ConsentRequired,
    /// OIDC: `prompt=none` but the person must interact (here: prove a second factor).
    InteractionRequired,
    /// OIDC: the `request` parameter is not supported.
    RequestNotSupported,
    /// OIDC: the `request_uri` parameter is not supported.
    RequestUriNotSupported,
}

impl ErrorCode {
    /// The registered string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::InvalidTarget => "invalid_target",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InteractionRequired => "interaction_required",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error with a fixed description (never echoing input or secrets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    /// The code.
    pub code: ErrorCode,
    /// A sentence for the developer reading it.
    pub description: &'static str,
}

impl OAuthError {
    /// An error.
    #[must_use]
    pub const fn new(code: ErrorCode, description: &'static str) -> Self {
        Self { code, description }
    }

    /// `invalid_request`: a parameter is missing, repeated or malformed.
    #[must_use]
    pub const fn invalid_request(description: &'static str) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_client`: client authentication failed (RFC 6749 §5.2).
    #[must_use]
    pub const fn invalid_client(description: &'static str) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }

    /// `invalid_grant`: the code or refresh token is bad, expired, spent or someone else's.
    #[must_use]
    pub const fn invalid_grant(description: &'static str) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    /// `invalid_scope`: malformed, or beyond what the client may ask.
    #[must_use]
    pub const fn invalid_scope(description: &'static str) -> Self {
        Self::new(ErrorCode::InvalidScope, description)
    }

    /// `unauthorized_client`: the client is not registered for this grant or response type.
    #[must_use]
    pub const fn unauthorized_client(description: &'static str) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, description)
    }
}
