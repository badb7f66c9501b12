//! Keyward: a standalone OAuth 2.1 / OpenID Connect identity provider.
//!
//! # The dependency rule
//! Knowledge flows one way. [`http`] may call anything. [`oauth`] holds the protocol rules and
//! orchestrates the nouns ([`users`], [`clients`], [`tokens`], [`keys`], [`sessions`]); it
//! writes no SQL. No noun imports `oauth`, `http` or `config`: each takes its own small policy
//! type, built once from [`config::Config`]. Only the nouns (and [`audit`], [`housekeeping`])
//! write SQL. Only [`app`], [`error`] and [`http`] know axum.
//!
//! # Module map (from the outside in)
//! - [`app`]: `AppState`, `App::build` (shared by `main` and the tests), the server loop.
//! - [`http`]: thin handlers, one file per endpoint family; `http/mod.rs` lists every route.
//! - [`oauth`]: parameters, client authentication, one file per grant, authorization requests,
//!   introspection, revocation, logout rules.
//! - [`users`]: accounts, names, password rules and hashing, consents, sign-in throttle, devices.
//! - [`clients`]: relying parties, their exact redirect URIs and hashed secrets.
//! - [`tokens`]: opaque secrets and their hashes, codes, refresh families, JWTs, revoked list.
//! - [`keys`]: sealed signing keys on a published schedule, the in-memory signer and the JWKS.
//! - [`sessions`]: browser sessions (PostgreSQL store), CSRF tokens, return paths.
//! - [`db`], [`audit`], [`housekeeping`]: the pool and schema, the audit trail, expiry cleanup.
//! - [`config`], [`clock`], [`crypto`], [`scope`], [`telemetry`], [`error`], [`cli`]: plumbing
//!   and leaves.

pub mod app;
pub mod audit;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod housekeeping;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod oauth;
pub mod rate_limits;
pub mod scope;
pub mod sessions;
pub mod telemetry;
pub mod tokens;
pub mod users;
