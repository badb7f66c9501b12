//! Keyward: a standalone OAuth 2.1 / OpenID Connect identity provider.
//!
//! # The dependency rule
//! Knowledge flows one way. [`http`] and [`cli`] are adapters: parse, make one call, render.
//! [`oauth`] holds the protocol rules and the use cases, and orchestrates the nouns ([`users`],
//! [`clients`], [`tokens`], [`keys`], [`sessions`], [`rate_limits`], [`mail`]); it writes no SQL. No noun
//! imports `oauth`, `http` or `config`: each takes its own small policy type, built once from
//! [`config::Config`]. Only the nouns (and [`audit`], [`housekeeping`]) write SQL, and an
//! operation records its own audit event; an adapter only says who acts ([`audit::Actor`]).
//! Only [`app`], [`error`] and [`http`] know axum. The tests at the end of this file check it.
//!
//! # Module map (from the outside in)
//! - [`app`]: `AppState`, `App::build` (shared by `main` and the tests), `App::serve`.
//! - [`http`]: thin handlers, one file per endpoint family; `http/mod.rs` lists every route.
//! - [`cli`]: the operator's commands, on the same operations as the handlers.
//! - [`oauth`]: parameters, client authentication, sign-in and sign-up, one file per grant,
//!   authorization requests, the access-token check, userinfo, introspection, revocation, logout.
//! - [`users`]: accounts, names and roles, password rules and hashing, second factors (TOTP,
//!   recovery codes), consents, lockout, devices.
//! - [`clients`]: relying parties, their registration rules, exact redirect URIs, hashed secrets.
//! - [`tokens`]: opaque secrets and their hashes, codes, refresh families, JWTs, revoked list.
//! - [`keys`]: sealed signing keys on a published schedule, the in-memory signer and the JWKS.
//! - [`sessions`]: the typed browser session and its PostgreSQL store.
//! - [`rate_limits`]: GCRA limits per address, client or everyone, in PostgreSQL, and the
//!   sign-in page's proofs of work past them.
//! - [`mail`]: letters from templates, the transactional outbox, delivery over SMTP or to files.
//! - [`db`], [`audit`], [`housekeeping`]: the pool and schema, the audit trail, expiry cleanup.
//! - [`config`], [`clock`], [`crypto`], [`scope`], [`auth_methods`], [`metrics`], [`telemetry`],
//!   [`error`]: plumbing and leaves.

pub mod app;
pub mod audit;
pub mod auth_methods;
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
pub mod mail;
pub mod metrics;
pub mod oauth;
pub mod rate_limits;
pub mod scope;
pub mod sessions;
pub mod telemetry;
pub mod tokens;
pub mod users;

#[cfg(test)]
mod layering {
    //! The dependency rule above, checked against the source tree so that it stays true.

    use std::path::{Path, PathBuf};

    /// The nouns: they hold the storage and must not know who calls them.
    const NOUNS: [&str; 7] = [
        "users",
        "clients",
        "tokens",
        "keys",
        "sessions",
        "rate_limits",
        "mail",
    ];
    /// The adapters: they translate, and leave every rule (and every audit event) below them.
    const ADAPTERS: [&str; 2] = ["http", "cli"];

    /// Every `.rs` file under `src/<dir>` (or `src/<dir>.rs`), with its code lines: comments are
    /// prose, and prose may name anything.
    fn code_of(dir: &str) -> Vec<(PathBuf, Vec<String>)> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![];
        let mut stack = vec![src.join(dir)];
        let single = src.join(format!("{dir}.rs"));
        if single.is_file() {
            files.push(single);
        }
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
        files
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("readable source");
                let lines = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .map(str::to_owned)
                    .collect();
                (p, lines)
            })
            .collect()
    }

    /// `(file, line)` of every code line in `dirs` for which `bad` holds.
    fn offending(dirs: &[&str], bad: impl Fn(&str) -> bool) -> Vec<String> {
        dirs.iter()
            .flat_map(|d| code_of(d))
            .flat_map(|(p, lines)| {
                lines
                    .into_iter()
                    .filter(|l| bad(l))
                    .map(move |l| format!("{}: {}", p.display(), l.trim()))
            })
            .collect()
    }

    #[test]
    fn no_noun_imports_oauth_http_or_config() {
        let found = offending(&NOUNS, |l| {
            ["crate::oauth", "crate::http", "crate::config", "crate::app"]
                .iter()
                .any(|m| l.contains(m))
        });
        assert!(found.is_empty(), "nouns reaching up: {found:#?}");
    }

    #[test]
    fn only_app_error_and_http_know_axum() {
        let all = [
            "audit",
            "auth_methods",
            "cli",
            "clients",
            "clock",
            "config",
            "crypto",
            "db",
            "housekeeping",
            "keys",
            "mail",
            "metrics",
            "oauth",
            "rate_limits",
            "scope",
            "sessions",
            "telemetry",
            "tokens",
            "users",
            "main",
        ];
        let found = offending(&all, |l| l.contains("axum"));
        assert!(found.is_empty(), "axum outside the adapters: {found:#?}");
    }

    #[test]
    fn no_adapter_writes_or_reads_the_audit_trail() {
        // Adapters say who acts (`audit::Actor`); the operation records what happened.
        let found = offending(&ADAPTERS, |l| {
            l.contains("audit::") && !l.contains("audit::Actor")
        });
        assert!(found.is_empty(), "adapters auditing: {found:#?}");
    }

    #[test]
    fn no_adapter_writes_sql() {
        let found = offending(&ADAPTERS, |l| {
            ["sql_query", "schema::", "RunQueryDsl", "QueryDsl"]
                .iter()
                .any(|m| l.contains(m))
        });
        assert!(found.is_empty(), "SQL in the adapters: {found:#?}");
    }
}
