//! Discovery (OpenID Connect Discovery 1.0, RFC 8414) and the JWKS (RFC 7517).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::keys::keyring::jwks_max_age;

/// Discovery documents clients may cache this long: they change only with a deployment.
const DISCOVERY_MAX_AGE: &str = "public, max-age=3600";

/// Both discovery documents, serialised once at start.
#[derive(Clone, Debug)]
pub struct Documents {
    openid: Bytes,
    oauth: Bytes,
}

impl Documents {
    /// Documents for `issuer`. They list only what exists; each new endpoint adds itself here.
    #[must_use]
    pub fn new(issuer: &str) -> Self {
        let jwks_uri = format!("{issuer}/jwks.json");
        let openid = json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let oauth = json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
        });
        Self {
            openid: openid.to_string().into(),
            oauth: oauth.to_string().into(),
        }
    }
}

fn json_document(body: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, DISCOVERY_MAX_AGE),
        ],
        body,
    )
        .into_response()
}

/// `GET /.well-known/openid-configuration`.
pub async fn get_openid_configuration(State(state): State<AppState>) -> Response {
    json_document(state.discovery.openid.clone())
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414 §3).
pub async fn get_oauth_metadata(State(state): State<AppState>) -> Response {
    json_document(state.discovery.oauth.clone())
}

/// Whether an `If-None-Match` header matches `etag` (RFC 9110 §13.1.2, weak comparison).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// `GET /jwks.json`: the published keys, cacheable until the set next changes by schedule.
pub async fn get_jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = state.clock.now();
    let doc = state.keys.ring.jwks(now);
    let cap = time::Duration::try_from(state.config.jwks_max_age).unwrap_or(time::Duration::HOUR);
    let max_age = jwks_max_age(&doc, now, cap);
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}"))
        .unwrap_or(HeaderValue::from_static("no-cache"));
    let etag = HeaderValue::from_str(&doc.etag).unwrap_or(HeaderValue::from_static("\"\""));
    if none_match(&headers, &doc.etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, cache),
            (header::ETAG, etag),
        ],
        doc.body.clone(),
    )
        .into_response()
}
