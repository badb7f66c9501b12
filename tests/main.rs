//! Keyward's integration tests: one binary, the real server on a random port, a real PostgreSQL.
#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

mod abuse;
mod accounts;
mod admin_api;
mod cache;
mod cli;
mod client_credentials;
mod cors;
mod crowd;
mod cutoff;
mod deployment;
mod e2e;
mod examples;
mod hostile;
mod import;
mod introspection;
mod keys;
mod limits;
mod logs;
mod mail;
mod metrics;
mod oauth;
mod openapi;
mod operator;
mod pages;
mod password_grant;
mod recovery;
mod refresh;
mod robustness;
mod second_factor;
mod security;
mod self_service;
mod walkthrough;
