//! Browser sessions: who is signed in, the CSRF token of the session, and where to go next.

pub mod store;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::Session;
use uuid::Uuid;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::crypto::{constant_time_eq, random_bytes};

/// Session key of the signed-in user's id (also mirrored into the `sessions.user_id` column).
pub const USER_ID_KEY: &str = "uid";
const AUTH_TIME_KEY: &str = "auth_time";
/// Session key of the user's credential version at sign-in (mirrored into its own column, and
/// compared with the user's on every load).
pub const CREDENTIAL_VERSION_KEY: &str = "cv";
const SID_KEY: &str = "sid";
const CSRF_KEY: &str = "csrf";
const RETURN_TO_KEY: &str = "return_to";
const PENDING_KEY: &str = "pending_authz";
const REAUTH_KEY: &str = "reauth";
const LOGIN_HINT_KEY: &str = "login_hint";
const PENDING_LOGOUT_KEY: &str = "pending_logout";
const ASKING_APP_KEY: &str = "asking_app";
/// Authorization requests one browser may have open at once (tabs); the oldest is dropped.
const MAX_PENDING: usize = 4;

/// A failure of the session store (the database, in practice).
pub type SessionError = tower_sessions::session::Error;

/// Who is signed in to this browser session, and since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedInSession {
    /// The user.
    pub user_id: Uuid,
    /// When they typed their password (OIDC `auth_time`).
    pub auth_time: OffsetDateTime,
    /// The OIDC session id (`sid`): public, unlike the cookie's session id.
    pub sid: String,
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
    let sid = session.get::<String>(SID_KEY).await?.unwrap_or_default();
    Ok(Some(SignedInSession {
        user_id,
        auth_time,
        sid,
    }))
}

/// Marks the session signed in, under a new id (session fixation) and a new CSRF token.
/// `credential_version` is the user's as read when the password was checked: if a cut-off
/// happened since, the session is dead on arrival.
pub async fn sign_in(
    session: &Session,
    user_id: Uuid,
    credential_version: i32,
    now: OffsetDateTime,
) -> Result<(), SessionError> {
    session.cycle_id().await?;
    session.insert(USER_ID_KEY, user_id).await?;
    session
        .insert(CREDENTIAL_VERSION_KEY, credential_version)
        .await?;
    session.insert(AUTH_TIME_KEY, now.unix_timestamp()).await?;
    session
        .insert(SID_KEY, uuid::Uuid::new_v4().to_string())
        .await?;
    session.insert(CSRF_KEY, new_csrf_token()).await?;
    session.remove_value(REAUTH_KEY).await?;
    session.remove_value(LOGIN_HINT_KEY).await?;
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

/// The app a sign-in is for, named on the sign-in and sign-up pages so that people know who
/// is asking and where they will be sent (a phishing page cannot borrow a real app's name
/// without also sending people to that app's registered origin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskingApp {
    /// The client's registered name.
    pub name: String,
    /// The origin of the redirect URI the person returns to.
    pub origin: String,
}

/// Remembers which app the coming sign-in is for.
pub async fn set_asking_app(session: &Session, app: &AskingApp) -> Result<(), SessionError> {
    session.insert(ASKING_APP_KEY, app).await
}

/// The app the coming sign-in is for, if an authorization request sent the person here.
pub async fn asking_app(session: &Session) -> Result<Option<AskingApp>, SessionError> {
    session.get(ASKING_APP_KEY).await
}

/// Takes the remembered destination, if any (and forgets the app that asked).
pub async fn take_return_to(session: &Session) -> Result<Option<String>, SessionError> {
    session.remove::<AskingApp>(ASKING_APP_KEY).await?;
    Ok(session
        .remove::<String>(RETURN_TO_KEY)
        .await?
        .and_then(|p| safe_return_path(&p).map(str::to_owned)))
}

/// A request kept in the session while the person signs in or consents (an authorization
/// request, in practice): the session only needs to tell them apart.
pub trait PendingRequest: Serialize + DeserializeOwned + Clone {
    /// The random id naming it within the session.
    fn pending_id(&self) -> &str;
}

/// Keeps a request while the person signs in or consents.
pub async fn put_pending<R: PendingRequest>(
    session: &Session,
    request: &R,
) -> Result<(), SessionError> {
    let mut pending: Vec<R> = session.get(PENDING_KEY).await?.unwrap_or_default();
    pending.retain(|r| r.pending_id() != request.pending_id());
    pending.push(request.clone());
    if pending.len() > MAX_PENDING {
        pending.remove(0);
    }
    session.insert(PENDING_KEY, pending).await
}

/// The pending request with this id.
pub async fn find_pending<R: PendingRequest>(
    session: &Session,
    id: &str,
) -> Result<Option<R>, SessionError> {
    let pending: Vec<R> = session.get(PENDING_KEY).await?.unwrap_or_default();
    Ok(pending.into_iter().find(|r| r.pending_id() == id))
}

/// Forgets a pending request (it was answered).
pub async fn remove_pending<R: PendingRequest>(
    session: &Session,
    id: &str,
) -> Result<(), SessionError> {
    let mut pending: Vec<R> = session.get(PENDING_KEY).await?.unwrap_or_default();
    let before = pending.len();
    pending.retain(|r| r.pending_id() != id);
    if pending.len() != before {
        session.insert(PENDING_KEY, pending).await?;
    }
    Ok(())
}

/// Asks the sign-in page to take a password even from someone signed in (`prompt=login`,
/// `max_age`), prefilled with `login_hint`.
pub async fn require_sign_in(
    session: &Session,
    login_hint: Option<&str>,
    reauth: bool,
) -> Result<(), SessionError> {
    if reauth {
        session.insert(REAUTH_KEY, true).await?;
    }
    if let Some(hint) = login_hint {
        session.insert(LOGIN_HINT_KEY, hint).await?;
    }
    Ok(())
}

/// Whether a fresh sign-in was asked for, and the username to prefill.
pub async fn sign_in_requirements(
    session: &Session,
) -> Result<(bool, Option<String>), SessionError> {
    Ok((
        session.get::<bool>(REAUTH_KEY).await?.unwrap_or(false),
        session.get::<String>(LOGIN_HINT_KEY).await?,
    ))
}

/// Where to go after a confirmed sign-out, and the `state` to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogout {
    /// A registered post-logout redirect URI, if one was asked for.
    pub redirect_uri: Option<String>,
    /// Echoed to the client.
    pub state: Option<String>,
}

/// Keeps a logout request while the person confirms it.
pub async fn put_pending_logout(
    session: &Session,
    logout: &PendingLogout,
) -> Result<(), SessionError> {
    session.insert(PENDING_LOGOUT_KEY, logout).await
}

/// Takes the pending logout request.
pub async fn take_pending_logout(session: &Session) -> Result<Option<PendingLogout>, SessionError> {
    session.remove(PENDING_LOGOUT_KEY).await
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
