//! Protocol-level helpers: registered clients, PKCE pairs, and the browser's way through
//! /authorize, sign-in and consent, as a relying party sees it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward::clients::{self, NewClient};
use keyward::tokens::opaque::TokenHash;
use reqwest::{Response, StatusCode};
use serde_json::Value;
use url::Url;

use super::{Browser, GOOD_PASSWORD, TestApp, csrf_of, location};

/// The redirect URI every test client registers.
pub const REDIRECT_URI: &str = "https://app.example.com/callback";

/// A registered test client.
#[derive(Clone, Debug)]
pub struct TestClient {
    /// `client_id`.
    pub id: String,
    /// Its secret, for confidential clients.
    pub secret: Option<String>,
}

/// How to register a test client.
#[expect(
    clippy::struct_excessive_bools,
    reason = "one per boolean setting of a registration"
)]
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// Public (no secret) or confidential.
    pub public: bool,
    /// Skips consent.
    pub first_party: bool,
    /// Allowed scopes.
    pub scopes: &'static str,
    /// Allowed audiences.
    pub audiences: Vec<String>,
    /// Post-logout redirect URIs.
    pub post_logout: Vec<String>,
    /// The redirect URI (default [`REDIRECT_URI`]).
    pub redirect_uri: Option<String>,
    /// Grant types.
    pub grants: Vec<&'static str>,
    /// CORS origins besides the redirect URI's.
    pub origins: Vec<&'static str>,
    /// Its users must prove a second factor.
    pub require_mfa: bool,
    /// Its code requests may go without PKCE (with a `nonce`).
    pub pkce_optional: bool,
}

impl Default for ClientSpec {
    fn default() -> Self {
        Self {
            public: false,
            first_party: false,
            scopes: "openid profile email",
            audiences: vec![],
            post_logout: vec![],
            redirect_uri: None,
            grants: vec!["authorization_code"],
            origins: vec![],
            require_mfa: false,
            pkce_optional: false,
        }
    }
}

/// A PKCE verifier and its S256 challenge.
pub struct Pkce {
    /// The verifier (kept by the client).
    pub verifier: String,
    /// The challenge (sent to /authorize).
    pub challenge: String,
}

impl Pkce {
    /// A fresh pair.
    pub fn new() -> Self {
        let verifier = URL_SAFE_NO_PAD.encode(keyward::crypto::random_bytes::<32>());
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        Self {
            challenge: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            verifier,
        }
    }
}

impl TestApp {
    /// Registers a client directly in the database (a fixture).
    pub async fn register_client(&self, id: &str, spec: ClientSpec) -> TestClient {
        let secret = (!spec.public).then(|| clients::generate_secret().expose().to_owned());
        let now = self.clock().now();
        let redirect = spec.redirect_uri.unwrap_or_else(|| REDIRECT_URI.to_owned());
        let parsed = [clients::RedirectUri::parse(&redirect).expect("a valid redirect URI")];
        let explicit: Vec<clients::Origin> = spec
            .origins
            .iter()
            .map(|o| clients::Origin::parse(o).expect("a valid origin"))
            .collect();
        let new = NewClient {
            id: id.to_owned(),
            name: format!("{id} app"),
            secret_hash: secret.as_deref().map(TokenHash::of),
            is_public: spec.public,
            is_first_party: spec.first_party,
            allowed_origins: clients::cors_origins(&parsed, &explicit),
            redirect_uris: vec![redirect],
            post_logout_redirect_uris: spec.post_logout,
            grant_types: spec.grants.iter().map(|g| (*g).to_owned()).collect(),
            scopes: spec.scopes.split(' ').map(str::to_owned).collect(),
            audiences: spec.audiences,
            created_at: now,
            updated_at: now,
            require_mfa: spec.require_mfa,
            pkce_required: !spec.pkce_optional,
        };
        let mut conn = self.conn().await;
        clients::insert(&mut conn, &new)
            .await
            .expect("insert client");
        TestClient {
            id: id.to_owned(),
            secret,
        }
    }

    /// A public client "spa" (no secret, PKCE only) with the default registration.
    pub async fn register_spa(&self) -> TestClient {
        let spec = ClientSpec {
            public: true,
            ..ClientSpec::default()
        };
        self.register_client("spa", spec).await
    }

    /// A standard authorization URL for `client`, with `extra` parameters replacing defaults.
    #[expect(
        clippy::unused_self,
        reason = "reads like the protocol: app.authorize_url(..)"
    )]
    pub fn authorize_url(
        &self,
        client: &TestClient,
        pkce: &Pkce,
        extra: &[(&str, &str)],
    ) -> String {
        let mut params: Vec<(String, String)> = [
            ("response_type", "code"),
            ("client_id", client.id.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid profile email"),
            ("state", "st-123"),
            ("nonce", "n-456"),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            params.retain(|(key, _)| key != k);
            if !v.is_empty() {
                params.push(((*k).to_owned(), (*v).to_owned()));
            }
        }
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        format!("/authorize?{query}")
    }

    /// Posts to /token with HTTP Basic client authentication (or none for public clients).
    pub async fn token_request(&self, client: &TestClient, form: &[(&str, &str)]) -> Response {
        let mut req = self.browser.client.post(format!("{}/token", self.base));
        let mut form: Vec<(&str, &str)> = form.to_vec();
        match &client.secret {
            Some(secret) => req = req.basic_auth(&client.id, Some(secret)),
            None => form.push(("client_id", &client.id)),
        }
        req.form(&form).send().await.expect("POST /token")
    }

    /// Walks alice through /authorize (signing in and allowing consent when asked) and returns
    /// the code, checking the callback carries the request's `state` and our `iss` (RFC 9207).
    pub async fn code_for(
        &self,
        client: &TestClient,
        pkce: &Pkce,
        extra: &[(&str, &str)],
    ) -> String {
        let url = self.authorize_url(client, pkce, extra);
        let resp = self
            .browser
            .authorize(&url, "alice", GOOD_PASSWORD, true)
            .await;
        let params = callback_params(&resp);
        assert_eq!(param(&params, "state"), Some("st-123"));
        assert_eq!(param(&params, "iss"), Some(self.base.as_str()));
        param(&params, "code").expect("a code").to_owned()
    }

    /// The whole code flow for alice with `scope`: the token response.
    pub async fn tokens_for(&self, client: &TestClient, scope: &str) -> Value {
        let pkce = Pkce::new();
        let code = self.code_for(client, &pkce, &[("scope", scope)]).await;
        let resp = self.exchange_code(client, &code, &pkce.verifier).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.expect("a token response")
    }

    /// Exchanges a code the standard way.
    pub async fn exchange_code(&self, client: &TestClient, code: &str, verifier: &str) -> Response {
        self.token_request(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", verifier),
            ],
        )
        .await
    }
}

/// The id of the pending authorization request a consent page answers.
pub fn pending_request_of(html: &str) -> String {
    html.split("name=\"request\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a consent page names its request")
        .to_owned()
}

/// Asserts an RFC 6749 §5.2 error: 400 (401 for `invalid_client`), never cached, this `error`
/// code and a description; returns the body.
pub async fn assert_oauth_error(resp: Response, error: &str) -> Value {
    let expected = if error == "invalid_client" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    assert_eq!(resp.status(), expected, "expected {error}");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.expect("a JSON error");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    body
}

/// The query parameters of a redirect to the client.
pub fn callback_params(resp: &Response) -> Vec<(String, String)> {
    assert_eq!(
        resp.status(),
        StatusCode::SEE_OTHER,
        "expected a redirect to the client"
    );
    let to = Url::parse(location(resp)).expect("absolute redirect");
    assert!(to.as_str().starts_with(REDIRECT_URI), "redirected to {to}");
    to.query_pairs().into_owned().collect()
}

/// One parameter of a callback.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Browser {
    /// Follows /authorize through sign-in (if asked) and consent (if asked, answering `allow`) to
    /// the redirect back to the client; returns that final response.
    pub async fn authorize(
        &self,
        url: &str,
        username: &str,
        password: &str,
        allow: bool,
    ) -> Response {
        let mut resp = self.get(url).await;
        for _ in 0..6 {
            if resp.status() != StatusCode::SEE_OTHER {
                return resp;
            }
            let to = location(&resp).to_owned();
            if to.starts_with("https://") || to.starts_with("http://") {
                return resp;
            }
            resp = if to == "/signin" {
                let page = self.get("/signin").await;
                if page.status() == StatusCode::SEE_OTHER {
                    page
                } else {
                    let csrf = csrf_of(&page.text().await.expect("sign-in page"));
                    self.post_form(
                        "/signin",
                        &[
                            ("csrf", &csrf),
                            ("username", username),
                            ("password", password),
                        ],
                    )
                    .await
                }
            } else if to.starts_with("/consent") {
                let page = self.get(&to).await;
                assert_eq!(page.status(), StatusCode::OK, "consent page");
                let html = page.text().await.expect("consent page");
                let request = pending_request_of(&html);
                let decision = if allow { "allow" } else { "deny" };
                self.post_form(
                    "/consent",
                    &[
                        ("csrf", &csrf_of(&html)),
                        ("request", &request),
                        ("decision", decision),
                    ],
                )
                .await
            } else {
                self.get(&to).await
            };
        }
        resp
    }
}

/// Decodes a JWT's claims without verifying (for assertions after verification elsewhere).
pub fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}
