//! OAuth 2.1 / OpenID Connect rules: requests, scopes, PKCE, codes, consents, grants. No axum.

pub mod authorize;
pub mod consents;
pub mod error;
pub mod introspection;
pub mod pkce;
pub mod token;
