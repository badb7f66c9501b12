//! OAuth 2.1 / OpenID Connect rules, orchestrating the nouns: requests and their parameters, PKCE,
//! client authentication, sign-in, sign-up and email verification, the grants, introspection, revocation and logout. No axum, no
//! SQL.

pub mod access;
pub mod account;
pub mod admin;
pub mod authorize;
pub mod client_auth;
pub mod client_removal;
pub mod consent;
pub mod error;
pub mod grant;
pub mod import;
pub mod introspection;
pub mod logout;
pub mod params;
pub mod passkeys;
pub mod pkce;
pub mod recovery;
pub mod revocation;
pub mod rewrap;
pub mod second_factor;
pub mod self_service;
pub mod sign_in;
pub mod sign_up;
pub mod userinfo;
pub mod verification;
