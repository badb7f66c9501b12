//! `POST /token` (RFC 6749 §3.2): authenticate the client, read the grant's request, run it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::clients::Client;
use crate::http::client_ip::ClientIp;
use crate::http::cors;
use crate::http::form::OAuthForm;
use crate::http::oauth_error::{TokenError, no_store};
use crate::oauth::client_auth;
use crate::oauth::error::ErrorCode;
use crate::oauth::grant::{
    GrantContext, IssuerSettings, TokenRequest, authorization_code, client_credentials, password,
    refresh_token,
};
use crate::oauth::params::Params;
use crate::oauth::sign_in::Checks;
use crate::rate_limits::{Key, Limit};

/// Authenticates the calling client (RFC 6749 §2.3), from memory when this instance has seen it.
pub async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Arc<Client>, TokenError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let presented = client_auth::parse(authorization, params)?;
    if let Some(cached) = state.clients.cached(&presented.client_id)
        && let Ok(client) = client_auth::authenticate(Some(cached), &presented)
    {
        return Ok(client);
    }
    // Not seen yet, or refused by what this instance remembers: the secret may have been
    // rotated elsewhere since, so the database decides before the client is refused.
    let client = state.clients.fetch(&state.db, &presented.client_id).await?;
    Ok(client_auth::authenticate(client, &presented)?)
}

/// The address a request came from, and what its failure should count against.
pub struct Guard<'a> {
    state: &'a AppState,
    ip: Key,
    now: time::OffsetDateTime,
    /// An authenticated confidential client whose redemption failures count against it.
    client: Option<Key>,
    /// A password grant: its `invalid_grant` is a failed sign-in, counted by the sign-in limits.
    sign_in: bool,
    /// The request's `Origin` (CORS), when the endpoint answers browsers at all.
    origin: Option<HeaderValue>,
    /// Whether the authenticated client allows that origin; `None` before authentication.
    cors: Option<bool>,
    /// The authenticated client's id, for the access log.
    client_id: Option<String>,
}

impl<'a> Guard<'a> {
    /// Refuses at once (429) when this address failed too often at the token endpoints.
    pub fn new(state: &'a AppState, ip: IpAddr) -> Result<Self, TokenError> {
        let now = state.clock.now();
        let ip = Key::ip(ip);
        state
            .limits
            .check(Limit::TokenPerIp, &ip, now)
            .map_err(|b| TokenError::TooMany(b.retry_after))?;
        Ok(Self {
            state,
            ip,
            now,
            client: None,
            sign_in: false,
            origin: None,
            cors: None,
            client_id: None,
        })
    }

    /// [`Guard::new`] for an endpoint browsers may call: a refusal (429) is readable by origins
    /// some client allows, and the request answers browsers as [`Guard::for_browsers`] says.
    pub async fn for_browser_request(
        state: &'a AppState,
        ip: IpAddr,
        headers: &HeaderMap,
    ) -> Result<Self, Response> {
        match Self::new(state, ip) {
            Ok(g) => Ok(g.for_browsers(headers)),
            Err(e) => {
                let origin = cors::request_origin(headers);
                Err(cors::for_any_client(state, e.into_response(), origin.as_ref()).await)
            }
        }
    }

    /// Answers browsers (CORS) on the origins the authenticated client allows.
    #[must_use]
    pub fn for_browsers(mut self, headers: &HeaderMap) -> Self {
        self.origin = cors::request_origin(headers);
        self
    }

    /// Notes the authenticated client, for the CORS decision and the access log.
    pub fn authenticated(&mut self, client: &Client) {
        self.client_id = Some(client.id.clone());
        if let Some(origin) = self.origin.as_ref().and_then(|o| o.to_str().ok()) {
            self.cors = Some(client.allows_origin(origin));
        }
    }

    /// Refuses (429) a confidential client whose redemptions failed too often; from now on this
    /// request's failed redemption counts against it. Public clients are not counted: anyone can
    /// name one, and a limit per public client would let anyone lock it out.
    fn client(&mut self, client: &Client) -> Result<(), TokenError> {
        if client.is_public {
            return Ok(());
        }
        let key = Key::client(&client.id);
        self.state
            .limits
            .check(Limit::TokenPerClient, &key, self.now)
            .map_err(|b| TokenError::TooMany(b.retry_after))?;
        self.client = Some(key);
        Ok(())
    }

    /// Counts a failed client authentication or redemption (never a refusal for other reasons:
    /// a malformed request or an unsupported grant is a bug, not a guess); a failure to count is
    /// logged, and the answer stays the request's own.
    pub async fn finish(self, result: Result<Response, TokenError>) -> Response {
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                let guess = match &e {
                    TokenError::Client(c) => c.error.code == ErrorCode::InvalidClient,
                    TokenError::OAuth(o) => o.code == ErrorCode::InvalidGrant && !self.sign_in,
                    _ => false,
                };
                if guess && let Err(e) = self.count(matches!(e, TokenError::OAuth(_))).await {
                    tracing::warn!(error = %e, "could not count a failed token request");
                }
                e.into_response()
            }
        };
        let mut response = response;
        if let Some(id) = &self.client_id {
            response
                .extensions_mut()
                .insert(crate::http::observe::AuthenticatedClient(id.clone()));
        }
        match (&self.origin, self.cors) {
            (None, _) => response,
            (Some(origin), Some(allowed)) => cors::with_origin(response, origin, allowed),
            (Some(origin), None) => cors::for_any_client(self.state, response, Some(origin)).await,
        }
    }

    async fn count(&self, redemption: bool) -> Result<(), crate::db::DbError> {
        let limits = &self.state.limits;
        let mut conn = self.state.conn().await?;
        limits
            .record(&mut conn, Limit::TokenPerIp, &self.ip, self.now)
            .await?;
        if redemption && let Some(client) = &self.client {
            limits
                .record(&mut conn, Limit::TokenPerClient, client, self.now)
                .await?;
        }
        Ok(())
    }
}

/// `POST /token`.
#[tracing::instrument(skip_all, fields(client_id, grant_type))]
pub async fn exchange_token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Response {
    let mut guard = match Guard::for_browser_request(&state, ip, &headers).await {
        Ok(g) => g,
        Err(refused) => return refused,
    };
    let result = exchange(&state, &mut guard, ip, &headers, &params).await;
    guard.finish(result).await
}

async fn exchange(
    state: &AppState,
    guard: &mut Guard<'_>,
    ip: IpAddr,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Response, TokenError> {
    let grant_type = params.require("grant_type", "grant_type is required")?;
    // Rotations (codes, refresh tokens) are the heavy database work: bounded so that under
    // overload they shed fast and leave connections to client_credentials and introspection.
    let _slot = match grant_type {
        "authorization_code" | "refresh_token" => Some(state.work.rotation().await?),
        _ => None,
    };
    let client = authenticate_client(state, headers, params).await?;
    guard.authenticated(&client);
    let span = tracing::Span::current();
    span.record("client_id", client.id.as_str());
    let request = TokenRequest::parse(grant_type, &client, params)?;
    span.record("grant_type", request.grant_type().as_str());
    if !matches!(request, TokenRequest::Password(_)) {
        guard.client(&client)?;
    }
    let config = &state.config;
    let ctx = GrantContext {
        keys: &state.keys.ring,
        settings: IssuerSettings {
            issuer: config.server.issuer.as_str(),
            access_ttl: config.tokens.access_ttl,
            id_ttl: config.tokens.id_ttl,
        },
        refresh: &state.refresh,
        ip: Some(ip.into()),
        metrics: &state.metrics,
        now: guard.now,
    };
    let response = match &request {
        TokenRequest::AuthorizationCode(r) => {
            let mut conn = state.conn().await?;
            authorization_code::exchange_code(&mut conn, &ctx, &client, r).await?
        }
        TokenRequest::RefreshToken(r) => {
            let mut conn = state.conn().await?;
            refresh_token::refresh(&mut conn, &ctx, &client, r).await?
        }
        TokenRequest::ClientCredentials(r) => {
            client_credentials::client_credentials(&ctx, &client, r)?
        }
        TokenRequest::Password(r) => {
            let checks = Checks {
                pool: &state.db,
                hasher: &state.hasher,
                throttle: config.passwords.throttle,
                limits: &state.limits,
                ip,
                metrics: &state.metrics,
            };
            guard.sign_in = true;
            password::password(&checks, &ctx, &client, r).await?
        }
    };
    state.metrics.token_issued(request.grant_type().as_str());
    Ok(no_store(Json(response).into_response()))
}
