//! Keyward: a standalone OAuth 2.1 / OpenID Connect identity provider.
//!
//! Module map (layers from the outside in; only `app`, `error` and `http` know axum):
//! - [`app`]: `AppState`, `App::build` (shared by `main` and the tests), the server loop.
//! - [`http`]: thin handlers, one file per page family; `http/mod.rs` lists every route.
//! - [`users`]: accounts, names, password rules and hashing, sign-in throttle, trusted devices.
//! - [`sessions`]: browser sessions (PostgreSQL store), CSRF tokens, return paths.
//! - [`tokens`]: opaque secrets and their hashes.
//! - [`db`]: the pool, embedded migrations and the generated schema.
//! - [`config`], [`clock`], [`telemetry`], [`error`], [`cli`]: plumbing.

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
pub mod oauth;
pub mod scope;
pub mod sessions;
pub mod telemetry;
pub mod tokens;
pub mod users;
