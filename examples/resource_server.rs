//! A Rust API that trusts Keyward: an axum route verifying Keyward access tokens locally, with
//! the JWKS cached as its `Cache-Control: max-age` allows, revalidated with its `ETag`, and
//! refetched on an unknown `kid` at most every 30 s.
//!
//! ```sh
//! KEYWARD_ISSUER=http://127.0.0.1:8080 API_AUDIENCE=http://127.0.0.1:4001 \
//!   cargo run --example resource_server
//! ```
//!
//! `GET /hello` needs an access token for `API_AUDIENCE` with the `notes:read` scope. PORT=0 picks
//! a free port; the first line printed names it. (It verifies with `jsonwebtoken`, an independent
//! JWT implementation, as a third party would.)
#![expect(
    clippy::print_stdout,
    clippy::expect_used,
    reason = "an example program: it says where it listens, and fails loudly at start"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

/// An unknown `kid` refetches the JWKS, but never more often than this.
const REFETCH_FLOOR: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct Jwk {
    kid: String,
    n: String,
    e: String,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// The JWKS as last fetched, and how long it may be used without asking again.
struct Cache {
    keys: HashMap<String, DecodingKey>,
    etag: Option<HeaderValue>,
    fresh_until: Instant,
    fetched_at: Option<Instant>,
}

struct Verifier {
    http: reqwest::Client,
    jwks_uri: String,
    issuer: String,
    audience: String,
    cache: Mutex<Cache>,
}

/// `max-age` of a `Cache-Control` header, if any.
fn max_age(headers: &reqwest::header::HeaderMap) -> Duration {
    let secs = headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|d| d.trim().strip_prefix("max-age=")?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    Duration::from_secs(secs)
}

impl Verifier {
    /// Fetches (or revalidates) the JWKS into the cache.
    async fn refresh(&self, cache: &mut Cache) -> Result<(), reqwest::Error> {
        let mut req = self.http.get(&self.jwks_uri);
        if let Some(etag) = &cache.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag.as_bytes());
        }
        let resp = req.send().await?.error_for_status()?;
        cache.fetched_at = Some(Instant::now());
        cache.fresh_until = Instant::now() + max_age(resp.headers());
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(());
        }
        cache.etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
        let set: JwkSet = resp.json().await?;
        cache.keys = set
            .keys
            .into_iter()
            .filter_map(|k| Some((k.kid, DecodingKey::from_rsa_components(&k.n, &k.e).ok()?)))
            .collect();
        Ok(())
    }

    /// The key for `kid`: from the cache while it is fresh, else after a refetch (at most one per
    /// floor for kids we have never seen).
    async fn key(&self, kid: &str) -> Option<DecodingKey> {
        let mut cache = self.cache.lock().await;
        let stale = Instant::now() >= cache.fresh_until;
        let unknown = !cache.keys.contains_key(kid);
        let may_refetch = cache
            .fetched_at
            .is_none_or(|at| at.elapsed() >= REFETCH_FLOOR);
        if stale || (unknown && may_refetch) {
            let _ = self.refresh(&mut cache).await;
        }
        cache.keys.get(kid).cloned()
    }

    async fn verify(&self, token: &str) -> Result<Claims, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed")?;
        // RFC 9068 §4: only access tokens; an ID token (typ JWT) is not a credential here.
        if header.typ.as_deref() != Some("at+jwt") || header.alg != Algorithm::RS256 {
            return Err("not an access token");
        }
        let kid = header.kid.ok_or("no kid")?;
        let key = self.key(&kid).await.ok_or("unknown key")?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 30;
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|d| d.claims)
            .map_err(|_| "invalid")
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    scope: String,
}

/// An RFC 6750 §3 refusal.
fn challenge(status: StatusCode, error: Option<&str>) -> Response {
    let value = match error {
        None => "Bearer realm=\"api\"".to_owned(),
        Some("insufficient_scope") => {
            "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"notes:read\"".to_owned()
        }
        Some(e) => format!("Bearer realm=\"api\", error=\"{e}\""),
    };
    let mut response = status.into_response();
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

async fn hello(State(verifier): State<Arc<Verifier>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let Some(token) = token else {
        return challenge(StatusCode::UNAUTHORIZED, None);
    };
    let Ok(claims) = verifier.verify(&token).await else {
        return challenge(StatusCode::UNAUTHORIZED, Some("invalid_token"));
    };
    if !claims.scope.split(' ').any(|s| s == "notes:read") {
        return challenge(StatusCode::FORBIDDEN, Some("insufficient_scope"));
    }
    Json(serde_json::json!({ "hello": claims.sub })).into_response()
}

#[tokio::main]
async fn main() {
    let issuer = std::env::var("KEYWARD_ISSUER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let audience = std::env::var("API_AUDIENCE").unwrap_or_else(|_| "http://127.0.0.1:4001".into());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(4001);
    let http = reqwest::Client::new();
    let discovery: serde_json::Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("Keyward's discovery document")
        .json()
        .await
        .expect("discovery is JSON");
    let verifier = Arc::new(Verifier {
        http,
        jwks_uri: discovery["jwks_uri"]
            .as_str()
            .expect("a jwks_uri")
            .to_owned(),
        issuer,
        audience,
        cache: Mutex::new(Cache {
            keys: HashMap::new(),
            etag: None,
            fresh_until: Instant::now(),
            fetched_at: None,
        }),
    });
    let app = Router::new()
        .route("/hello", get(hello))
        .with_state(verifier);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    println!(
        "resource_server listening on http://{}",
        listener.local_addr().expect("address")
    );
    axum::serve(listener, app).await.expect("serve");
}
