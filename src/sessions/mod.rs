//! Browser sessions: who is signed in, the CSRF token of the session, and where to go next.

pub mod store;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::Session;
use uuid::Uuid;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::tokens::opaque::{constant_time_eq, random_bytes};

/// Session key of the signed-in user's id (also mirrored into the `sessions.user_id` column).
pub const USER_ID_KEY: &str = "uid";
const AUTH_TIME_KEY: &str = "auth_time";
const CSRF_KEY: &str = "csrf";
const RETURN_TO_KEY: &str = "return_to";

/// A failure of the session store (the database, in practice).
pub type SessionError = tower_sessions::session::Error;

/// Who is signed in to this browser session, and since when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedInSession {
    /// The user.
    pub user_id: Uuid,
    /// When they typed their password (OIDC `auth_time`).
    pub auth_time: OffsetDateTime,
}

/// The signed-in user of this session, if any.
pub async fn signed_in(session: &Session) -> Result<Option<SignedInSession>, SessionError> {
    let Some(user_id) = session.get::<Uuid>(USER_ID_KEY).await? else {
        return Ok(None);
    };
    let Some(unix) = session.get::<i64>(AUTH_TIME_KEY).await? else {
        return Ok(None);
    };
    let Ok(auth_time) = OffsetDateTime::from_unix_timestamp(unix) else {
        return Ok(None);
    };
    Ok(Some(SignedInSession { user_id, auth_time }))
}

/// Marks the session signed in, under a new id (session fixation) and a new CSRF token.
pub async fn sign_in(
    session: &Session,
    user_id: Uuid,
    now: OffsetDateTime,
) -> Result<(), SessionError> {
    session.cycle_id().await?;
    session.insert(USER_ID_KEY, user_id).await?;
    session.insert(AUTH_TIME_KEY, now.unix_timestamp()).await?;
    session.insert(CSRF_KEY, new_csrf_token()).await?;
    Ok(())
}

/// Ends the session: its record is deleted and the cookie cleared.
pub async fn sign_out(session: &Session) -> Result<(), SessionError> {
    session.flush().await
}

fn new_csrf_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// The session's CSRF token, created (and the session with it) on first use.
pub async fn csrf_token(session: &Session) -> Result<String, SessionError> {
    if let Some(token) = session.get::<String>(CSRF_KEY).await? {
        return Ok(token);
    }
    let token = new_csrf_token();
    session.insert(CSRF_KEY, &token).await?;
    Ok(token)
}

/// Whether `presented` is this session's CSRF token, compared in constant time.
pub async fn is_valid_csrf(session: &Session, presented: &str) -> Result<bool, SessionError> {
    Ok(match session.get::<String>(CSRF_KEY).await? {
        Some(expected) => !presented.is_empty() && constant_time_eq(&expected, presented),
        None => false,
    })
}

/// Remembers where to send the person after they sign in; only a same-origin path is kept.
pub async fn set_return_to(session: &Session, path: &str) -> Result<(), SessionError> {
    if let Some(path) = safe_return_path(path) {
        session.insert(RETURN_TO_KEY, path).await?;
    }
    Ok(())
}

/// Takes the remembered destination, if any.
pub async fn take_return_to(session: &Session) -> Result<Option<String>, SessionError> {
    Ok(session
        .remove::<String>(RETURN_TO_KEY)
        .await?
        .and_then(|p| safe_return_path(&p).map(str::to_owned)))
}

/// Accepts only an absolute path on this origin: `/x`, never `//host`, `/\host` or a URL.
#[must_use]
pub fn safe_return_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let ok = !rest.starts_with('/')
        && !rest.starts_with('\\')
        && path.len() <= 2048
        && !path
            .chars()
            .any(|c| c.is_control() || c == '\\' || c.is_whitespace());
    ok.then_some(path)
}

#[cfg(test)]
mod tests {
    use super::safe_return_path;

    #[test]
    fn only_same_origin_paths_are_kept() {
        for ok in ["/", "/account", "/authorize?client_id=a&state=b"] {
            assert_eq!(safe_return_path(ok), Some(ok));
        }
        for bad in [
            "",
            "account",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "/a\\b",
            "/a\nb",
            "/ /evil",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_return_path(bad), None, "{bad:?}");
        }
    }
}
