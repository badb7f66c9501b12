//! CSRF protection of every form, in one place (OWASP CSRF cheat sheet). A browser with a session
//! gets a random token stored in it (synchroniser token). A visitor without one (sign-in, sign-up)
//! gets a signed double-submit cookie instead, so nothing is stored: a random nonce in a cookie,
//! and the form carries an HMAC of that nonce under a key derived from the KEK (so every instance
//! checks every form). A forged form fails without the cookie, a planted cookie without the key.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use tower_sessions::cookie::SameSite;

use crate::app::AppState;
use crate::crypto::{constant_time_eq, random_bytes};
use crate::http::cookies::{cookie_value, set_cookie};
use crate::http::page::PageError;
use crate::sessions::BrowserSession;

/// How long a visitor's CSRF cookie lasts: longer than anyone leaves a sign-in form open.
const COOKIE_MAX_AGE: time::Duration = time::Duration::hours(12);
/// Length of the base64url nonce (32 random bytes).
const NONCE_CHARS: usize = 43;

/// The key visitors' form tokens are signed with.
#[derive(Clone)]
pub struct VisitorCsrf {
    key: hmac::Key,
}

impl std::fmt::Debug for VisitorCsrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VisitorCsrf")
    }
}

impl VisitorCsrf {
    /// Signs with this secret.
    #[must_use]
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    fn token_for(&self, nonce: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, nonce.as_bytes()))
    }

    /// Whether `presented` is the token of `nonce`, compared in constant time.
    fn verify(&self, nonce: &str, presented: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(presented) else {
            return false;
        };
        hmac::verify(&self.key, nonce.as_bytes(), &tag).is_ok()
    }
}

/// A form's CSRF token, and the cookie that must go out with the page when there is one.
#[derive(Debug)]
pub struct FormCsrf {
    /// The hidden field's value.
    pub token: String,
    set_cookie: Option<HeaderValue>,
}

impl FormCsrf {
    /// Adds the visitor's CSRF cookie to the page's response, if a new one was made.
    #[must_use]
    pub fn attach(self, mut response: Response) -> Response {
        if let Some(cookie) = self.set_cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }
}

fn is_nonce(value: &str) -> bool {
    value.len() == NONCE_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A form that carries nothing but its CSRF token (sign-out confirmations).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    /// The token.
    #[serde(default)]
    pub csrf: String,
}

/// The session's CSRF token, made (and stored, so that a database failure shows as a page) on
/// first use.
pub async fn for_session(session: &BrowserSession) -> Result<String, PageError> {
    if let Some(token) = session.csrf_token().await? {
        return Ok(token);
    }
    Ok(session.put_new_csrf_token().await?)
}

/// Whether `presented` is the session's token, compared in constant time.
async fn is_session_token(session: &BrowserSession, presented: &str) -> Result<bool, PageError> {
    Ok(match session.csrf_token().await? {
        Some(expected) => !presented.is_empty() && constant_time_eq(&expected, presented),
        None => false,
    })
}

/// Fails with [`PageError::Csrf`] unless `presented` is the session's CSRF token.
pub async fn require_for_session(
    session: &BrowserSession,
    presented: &str,
) -> Result<(), PageError> {
    if is_session_token(session, presented).await? {
        Ok(())
    } else {
        Err(PageError::Csrf)
    }
}

/// The token for a form shown to a visitor who may have no session: the session's own when it
/// has one, else one bound to the visitor's CSRF cookie (made now if missing). No session row is
/// written for a visitor who has none.
pub async fn for_visitor(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
) -> Result<FormCsrf, PageError> {
    if session.exists() {
        return Ok(FormCsrf {
            token: for_session(session).await?,
            set_cookie: None,
        });
    }
    let name = state.cookies.csrf;
    if let Some(nonce) = cookie_value(headers, name).filter(|v| is_nonce(v)) {
        return Ok(FormCsrf {
            token: state.csrf.token_for(&nonce),
            set_cookie: None,
        });
    }
    let nonce = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    // Strict: the form posts from our own page; no other site ever needs to send this cookie.
    let secure = state.cookies.secure;
    let cookie = set_cookie(name, &nonce, COOKIE_MAX_AGE, SameSite::Strict, secure);
    Ok(FormCsrf {
        token: state.csrf.token_for(&nonce),
        set_cookie: cookie,
    })
}

/// Checks a visitor form's token: the session's, or the one bound to the visitor's cookie.
pub async fn require_for_visitor(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    presented: &str,
) -> Result<(), PageError> {
    if is_session_token(session, presented).await? {
        return Ok(());
    }
    match cookie_value(headers, state.cookies.csrf).filter(|v| is_nonce(v)) {
        Some(nonce) if state.csrf.verify(&nonce, presented) => Ok(()),
        _ => Err(PageError::Csrf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_for_its_nonce_and_key() {
        let csrf = VisitorCsrf::new(&[7; 32]);
        let nonce = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let other = URL_SAFE_NO_PAD.encode([2u8; 32]);
        let token = csrf.token_for(&nonce);
        assert!(is_nonce(&nonce));
        assert!(csrf.verify(&nonce, &token));
        assert!(!csrf.verify(&other, &token));
        assert!(!csrf.verify(&nonce, ""));
        assert!(!csrf.verify(&nonce, &nonce));
        assert!(!VisitorCsrf::new(&[8; 32]).verify(&nonce, &token));
    }
}
