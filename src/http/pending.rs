//! The sign-in a browser without a session is on its way to: the authorization requests it
//! started, the app asking, the prefilled username and where to go after, sealed in a cookie
//! (AES-256-GCM under a key derived from the KEK) instead of a row per visitor. A thousand
//! browsers behind one address can all start a sign-in, and none of them costs storage until
//! someone signs in; then the cookie's content moves into the new session.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::cookie::SameSite;

use crate::app::AppState;
use crate::crypto::Sealer;
use crate::http::cookies::{cookie_value, set_cookie};
use crate::http::page::{PageError, see_other};
use crate::oauth::authorize::AuthorizationRequest;
use crate::sessions::{AskingApp, BrowserSession, PendingRequest as _, SessionError};

/// How long a visitor has to sign in: as long as a pending request is worth keeping.
const LIFETIME: time::Duration = time::Duration::hours(1);
/// Requests kept at once (tabs); the oldest is dropped. Three keep the cookie under 4 KiB.
const MAX_REQUESTS: usize = 3;
/// What the seal binds the cookie's content to.
const AAD: &[u8] = b"keyward pending sign-in v1";

/// What a visitor without a session is signing in for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Authorization requests waiting for the sign-in, newest last.
    pub requests: Vec<AuthorizationRequest>,
    /// The app named on the sign-in and sign-up pages.
    pub asking_app: Option<AskingApp>,
    /// The username to prefill (`login_hint`).
    pub login_hint: Option<String>,
    /// Where to go once signed in.
    pub return_to: Option<String>,
    /// Unix time after which the cookie is ignored.
    expires_at: i64,
}

impl Pending {
    /// Adds `request` (replacing one with its id), dropping the oldest beyond [`MAX_REQUESTS`].
    pub fn push(&mut self, request: AuthorizationRequest) {
        self.requests
            .retain(|r| r.pending_id() != request.pending_id());
        self.requests.push(request);
        if self.requests.len() > MAX_REQUESTS {
            self.requests.remove(0);
        }
    }
}

/// Seals and opens the cookie; every instance derives the same key from the KEK.
#[derive(Clone)]
pub struct PendingSeal {
    sealer: Sealer,
    cookie: &'static str,
    secure: bool,
}

impl std::fmt::Debug for PendingSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingSeal")
    }
}

impl PendingSeal {
    /// Seals with `secret` into the cookie `cookie`.
    #[must_use]
    pub fn new(secret: &[u8; 32], cookie: &'static str, secure: bool) -> Self {
        Self {
            sealer: Sealer::new(secret),
            cookie,
            secure,
        }
    }

    /// The visitor's pending sign-in, if its cookie opens and has not expired.
    #[must_use]
    pub fn read(&self, headers: &HeaderMap, now: OffsetDateTime) -> Option<Pending> {
        let raw = URL_SAFE_NO_PAD
            .decode(cookie_value(headers, self.cookie)?)
            .ok()?;
        let plain = self.sealer.open(AAD, &raw)?;
        let pending: Pending = serde_json::from_slice(&plain).ok()?;
        (pending.expires_at > now.unix_timestamp()).then_some(pending)
    }

    /// The `Set-Cookie` carrying `pending`, valid for an hour from `now`.
    #[must_use]
    pub fn write(&self, mut pending: Pending, now: OffsetDateTime) -> Option<HeaderValue> {
        pending.expires_at = (now + LIFETIME).unix_timestamp();
        let plain = serde_json::to_vec(&pending).ok()?;
        let value = URL_SAFE_NO_PAD.encode(self.sealer.seal(AAD, &plain));
        // Lax: the browser comes back from the app's redirect to /authorize with it.
        set_cookie(self.cookie, &value, LIFETIME, SameSite::Lax, self.secure)
    }

    /// The `Set-Cookie` that deletes the cookie.
    #[must_use]
    pub fn clear(&self) -> Option<HeaderValue> {
        set_cookie(
            self.cookie,
            "",
            time::Duration::ZERO,
            SameSite::Lax,
            self.secure,
        )
    }

    /// Once a visitor signed in (and so has a session), moves its pending requests into the
    /// session and returns what the cookie held (its `return_to` is where to go); the response
    /// must then [`Self::clear`] the cookie. `None` when there was no cookie.
    pub async fn adopt(
        &self,
        session: &BrowserSession,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<Option<Pending>, SessionError> {
        let Some(pending) = self.read(headers, now) else {
            return Ok(None);
        };
        for request in &pending.requests {
            session.put_pending(request).await?;
        }
        Ok(Some(pending))
    }

    /// The app a sign-in is for: the session's, else the visitor cookie's.
    pub async fn asking_app(
        &self,
        session: &BrowserSession,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<Option<AskingApp>, SessionError> {
        if let Some(app) = session.asking_app().await? {
            return Ok(Some(app));
        }
        Ok(self.read(headers, now).and_then(|p| p.asking_app))
    }
}

/// Signs the browser in (a new session id) and sends it on: to the session's return path, or,
/// for a visitor who came with a sealed pending sign-in, to its return path, after moving its
/// requests into the new session and clearing the cookie.
pub async fn sign_in_and_continue(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    (who, ip): ((uuid::Uuid, i32), std::net::IpAddr),
    methods: &crate::auth_methods::AuthMethods,
    now: OffsetDateTime,
) -> Result<Response, PageError> {
    let from_session = session.take_return_to().await?;
    session
        .sign_in(who, methods, &seen_from(headers, ip), now)
        .await?;
    let adopted = state.pending.adopt(session, headers, now).await?;
    let to = match &adopted {
        Some(pending) => pending.return_to.clone().or(from_session),
        None => from_session,
    };
    let to = to
        .as_deref()
        .and_then(crate::sessions::safe_return_path)
        .unwrap_or("/account");
    let mut response = see_other(to);
    if adopted.is_some()
        && let Some(clear) = state.pending.clear()
    {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    Ok(response)
}

/// Where a browser signs in from: its `User-Agent` and address.
#[must_use]
pub fn seen_from(headers: &HeaderMap, ip: std::net::IpAddr) -> crate::sessions::SeenFrom {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    crate::sessions::SeenFrom::new(agent, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with(name: &str, value: &HeaderValue) -> HeaderMap {
        let cookie = value.to_str().expect("ascii");
        let pair = cookie.split(';').next().expect("name=value").to_owned();
        assert!(pair.starts_with(name));
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            HeaderValue::from_str(&pair).expect("header"),
        );
        h
    }

    #[test]
    fn a_sealed_pending_sign_in_opens_only_with_its_key_and_before_it_expires() {
        let seal = PendingSeal::new(&[3; 32], "p", false);
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1000);
        let pending = Pending {
            login_hint: Some("alice".into()),
            return_to: Some("/authorize/resume?request=x".into()),
            ..Pending::default()
        };
        let cookie = seal.write(pending, now).expect("a cookie");
        let headers = headers_with("p", &cookie);
        let read = seal.read(&headers, now).expect("opens");
        assert_eq!(read.login_hint.as_deref(), Some("alice"));
        assert!(seal.read(&headers, now + LIFETIME).is_none(), "expired");
        let other = PendingSeal::new(&[4; 32], "p", false);
        assert!(other.read(&headers, now).is_none(), "another key");
        let mut forged = headers.clone();
        forged.insert(
            axum::http::header::COOKIE,
            HeaderValue::from_static("p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        );
        assert!(seal.read(&forged, now).is_none(), "garbage");
    }
}
