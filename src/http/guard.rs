//! The guard of the client endpoints (`/token`, `/introspect`, `/revoke`): refuses (429) an
//! address or a confidential client that failed too often, counts failures that look like
//! guesses, and answers browsers (CORS) on the origins the authenticated client allows.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::clients::Client;
use crate::http::cors;
use crate::http::oauth_error::TokenError;
use crate::oauth::error::ErrorCode;
use crate::rate_limits::{Key, Limit};

/// The address a request came from, and what its failure should count against.
pub struct Guard<'a> {
    state: &'a AppState,
    ip: Key,
    pub now: time::OffsetDateTime,
    /// An authenticated confidential client whose redemption failures count against it.
    client: Option<Key>,
    /// A password grant: its `invalid_grant` is a failed sign-in, counted by the sign-in limits.
    pub sign_in: bool,
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
    pub fn client(&mut self, client: &Client) -> Result<(), TokenError> {
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
