//! Discovery (OpenID Connect Discovery 1.0, RFC 8414) and the JWKS (RFC 7517).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::clients::GrantType;
use crate::keys::keyring::jwks_max_age;
use crate::scope;

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
        let oauth = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "introspection_endpoint": format!("{issuer}/introspect"),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint": format!("{issuer}/revoke"),
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "jwks_uri": format!("{issuer}/jwks.json"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            // The password grant is an opt-in migration path for single clients, not something
            // a new client can count on: it is not advertised.
            "grant_types_supported": [
                GrantType::AuthorizationCode.as_str(),
                GrantType::RefreshToken.as_str(),
                GrantType::ClientCredentials.as_str(),
            ],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": [scope::OPENID, scope::PROFILE, scope::EMAIL, scope::OFFLINE_ACCESS],
            // RFC 9207: authorization responses carry `iss`.
            "authorization_response_iss_parameter_supported": true,
        });
        let mut openid = oauth.clone();
        if let Some(doc) = openid.as_object_mut() {
            for (k, v) in [
                ("userinfo_endpoint", json!(format!("{issuer}/userinfo"))),
                ("end_session_endpoint", json!(format!("{issuer}/logout"))),
                ("subject_types_supported", json!(["public"])),
                ("id_token_signing_alg_values_supported", json!(["RS256"])),
                (
                    "prompt_values_supported",
                    json!(["none", "login", "consent"]),
                ),
                (
                    "claims_supported",
                    json!([
                        "iss",
                        "sub",
                        "aud",
                        "exp",
                        "iat",
                        "auth_time",
                        "acr",
                        "amr",
                        "nonce",
                        "at_hash",
                        "sid",
                        "preferred_username",
                        "name",
                        "email",
                        "email_verified",
                        // In access tokens, for users with roles.
                        "roles"
                    ]),
                ),
                (
                    "acr_values_supported",
                    json!(crate::auth_methods::ACR_VALUES_SUPPORTED),
                ),
                ("claims_parameter_supported", json!(false)),
                ("request_parameter_supported", json!(false)),
                ("request_uri_parameter_supported", json!(false)),
            ] {
                doc.insert(k.to_owned(), v);
            }
        }
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
    let cap = state.config.keys.policy.jwks_max_age;
    let max_age = jwks_max_age(&doc, now, cap);
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}"))
        .unwrap_or(HeaderValue::from_static("no-cache"));
    let etag = HeaderValue::from_str(&doc.etag).unwrap_or(HeaderValue::from_static("\"\""));
    if none_match(&headers, &doc.etag) {
        state.metrics.jwks("304");
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    state.metrics.jwks("200");
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
