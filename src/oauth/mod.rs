//! OAuth 2.1 / OpenID Connect rules: requests, scopes, PKCE, codes, consents, grants. No axum.

pub mod authorize;
pub mod client_auth;
pub mod consents;
pub mod error;
pub mod grant;
pub mod introspection;
pub mod logout;
pub mod params;
pub mod pkce;
pub mod revocation;
