//! Browser sessions: who is signed in, the CSRF token of the session, and where to go next.

pub mod store;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::Session;
use uuid::Uuid;

use crate::auth_methods::AuthMethods;

/// Session key of the signed-in user's id (also mirrored into the `sessions.user_id` column).
const USER_ID_KEY: &str = "uid";
const AUTH_TIME_KEY: &str = "auth_time";
/// Session key of where the browser signed in from (mirrored into columns for the account page).
const DEVICE_KEY: &str = "device";
/// Session key of the user's credential version at sign-in (mirrored into its own column, and
/// compared with the user's on every load).
const CREDENTIAL_VERSION_KEY: &str = "cv";
const SID_KEY: &str = "sid";
const CSRF_KEY: &str = "csrf";
const RETURN_TO_KEY: &str = "return_to";
const PENDING_KEY: &str = "pending_authz";
const REAUTH_KEY: &str = "reauth";
const LOGIN_HINT_KEY: &str = "login_hint";
const PENDING_LOGOUT_KEY: &str = "pending_logout";
const ASKING_APP_KEY: &str = "asking_app";
/// Session key of a person part-way through signing in ([`Proving`]).
const PROVING_KEY: &str = "proving";
/// Session key prefix of a ceremony's state (a passkey challenge), per purpose.
const CEREMONY_KEY: &str = "ceremony";
/// Session key of how the signed-in person authenticated (RFC 8176 `amr`).
const METHODS_KEY: &str = "amr";
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
    /// How they authenticated (RFC 8176 `amr`).
    pub methods: AuthMethods,
}

/// A person part-way through signing in: they proved `methods` (the password, at least) but a
/// second factor, setting one up, or proving their address is still to come. Not signed in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proving {
    /// Who.
    pub user_id: Uuid,
    /// Their credential version when the password was checked: a cut-off since ends this.
    pub credential_version: i32,
    /// What they proved so far.
    pub methods: AuthMethods,
    /// When they proved the password (Unix time).
    pub since: i64,
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

/// A request kept in the session while the person signs in or consents (an authorization
/// request, in practice): the session only needs to tell them apart.
pub trait PendingRequest: Serialize + DeserializeOwned + Clone {
    /// The random id naming it within the session.
    fn pending_id(&self) -> &str;
}

/// Where a browser signed in from, as the account page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenFrom {
    /// Its `User-Agent`, shortened and without control characters.
    pub user_agent: String,
    /// Its address.
    pub ip: String,
}

impl SeenFrom {
    /// From a raw `User-Agent` (if any) and an address.
    #[must_use]
    pub fn new(user_agent: Option<&str>, ip: std::net::IpAddr) -> Self {
        let user_agent = user_agent
            .unwrap_or("unknown browser")
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        Self {
            user_agent,
            ip: ip.to_string(),
        }
    }
}

/// Where to go after a confirmed sign-out, and the `state` to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogout {
    /// A registered post-logout redirect URI, if one was asked for.
    pub redirect_uri: Option<String>,
    /// Echoed to the client.
    pub state: Option<String>,
}

/// A browser's session, with a method per thing Keyward keeps in it (zero2prod's
/// `TypedSession`): no caller names a key, so no two callers can disagree on one.
#[derive(Clone, Debug)]
pub struct BrowserSession(Session);

impl From<Session> for BrowserSession {
    fn from(session: Session) -> Self {
        Self(session)
    }
}

impl BrowserSession {
    /// Whether the browser has a stored session at all (a visitor without one has no row).
    #[must_use]
    pub fn exists(&self) -> bool {
        self.0.id().is_some()
    }

    /// The signed-in user of this session, if any.
    pub async fn signed_in(&self) -> Result<Option<SignedInSession>, SessionError> {
        let Some(user_id) = self.0.get::<Uuid>(USER_ID_KEY).await? else {
            return Ok(None);
        };
        let Some(unix) = self.0.get::<i64>(AUTH_TIME_KEY).await? else {
            return Ok(None);
        };
        let Ok(auth_time) = OffsetDateTime::from_unix_timestamp(unix) else {
            return Ok(None);
        };
        let sid = self.0.get::<String>(SID_KEY).await?.unwrap_or_default();
        // Sessions from before methods were kept were all password sign-ins.
        let methods = self
            .0
            .get::<AuthMethods>(METHODS_KEY)
            .await?
            .unwrap_or_else(AuthMethods::password);
        Ok(Some(SignedInSession {
            user_id,
            auth_time,
            sid,
            methods,
        }))
    }

    /// Marks the session signed in, under a new id (session fixation) and a new CSRF token.
    /// `credential_version` is the user's as read when the password was checked: if a cut-off
    /// happened since, the session is dead on arrival.
    pub async fn sign_in(
        &self,
        (user_id, credential_version): (Uuid, i32),
        methods: &AuthMethods,
        from: &SeenFrom,
        now: OffsetDateTime,
    ) -> Result<(), SessionError> {
        let s = &self.0;
        s.cycle_id().await?;
        s.insert(DEVICE_KEY, from).await?;
        s.insert(USER_ID_KEY, user_id).await?;
        s.insert(CREDENTIAL_VERSION_KEY, credential_version).await?;
        s.insert(AUTH_TIME_KEY, now.unix_timestamp()).await?;
        s.insert(METHODS_KEY, methods).await?;
        s.insert(SID_KEY, Uuid::new_v4().to_string()).await?;
        s.insert(CSRF_KEY, random_token()).await?;
        s.remove_value(REAUTH_KEY).await?;
        s.remove_value(LOGIN_HINT_KEY).await?;
        s.remove_value(PROVING_KEY).await?;
        Ok(())
    }

    /// Adds `methods` to the signed-in person's (a second factor proven on request, RFC 9470
    /// step-up): this is a new authentication (`auth_time` is now), under a new session id
    /// (privileges changed) and CSRF token. The OIDC `sid` stays: it is the same sign-in session.
    pub async fn step_up(
        &self,
        methods: &AuthMethods,
        now: OffsetDateTime,
    ) -> Result<(), SessionError> {
        let s = &self.0;
        s.cycle_id().await?;
        s.insert(AUTH_TIME_KEY, now.unix_timestamp()).await?;
        s.insert(METHODS_KEY, methods).await?;
        s.insert(CSRF_KEY, random_token()).await?;
        Ok(())
    }

    /// Notes a person part-way through signing in (see [`Proving`]): not signed in, under a new
    /// session id and CSRF token when they just proved the password.
    pub async fn put_proving(&self, proving: &Proving, new_id: bool) -> Result<(), SessionError> {
        let s = &self.0;
        if new_id {
            s.cycle_id().await?;
            s.insert(CSRF_KEY, random_token()).await?;
        }
        s.insert(PROVING_KEY, proving).await
    }

    /// The person part-way through signing in, if any.
    pub async fn proving(&self) -> Result<Option<Proving>, SessionError> {
        match self.0.get::<Proving>(PROVING_KEY).await {
            // A record of an older shape (a deploy mid-sign-in) reads as none: sign in again.
            Err(tower_sessions::session::Error::SerdeJson(_)) => Ok(None),
            other => other,
        }
    }

    /// Keeps the state of a ceremony (a passkey's challenge) for `purpose`, replacing any earlier
    /// one: it is bound to this browser's session, and [`Self::take_ceremony`] spends it.
    pub async fn put_ceremony<T: Serialize>(
        &self,
        purpose: &str,
        state: &T,
        now: OffsetDateTime,
    ) -> Result<(), SessionError> {
        let key = format!("{CEREMONY_KEY}:{purpose}");
        self.0.insert(&key, (now.unix_timestamp(), state)).await
    }

    /// Takes (so at most once) the ceremony state kept for `purpose`, if it is younger than
    /// `ttl`.
    pub async fn take_ceremony<T: DeserializeOwned>(
        &self,
        purpose: &str,
        ttl: time::Duration,
        now: OffsetDateTime,
    ) -> Result<Option<T>, SessionError> {
        let key = format!("{CEREMONY_KEY}:{purpose}");
        let kept = match self.0.remove::<(i64, T)>(&key).await {
            Err(tower_sessions::session::Error::SerdeJson(_)) => None,
            other => other?,
        };
        Ok(kept
            .filter(|(at, _)| now.unix_timestamp() - at <= ttl.whole_seconds())
            .map(|(_, state)| state))
    }

    /// Forgets a person part-way through signing in (it took too long, or they gave up).
    pub async fn forget_proving(&self) -> Result<(), SessionError> {
        self.0.remove_value(PROVING_KEY).await.map(|_| ())
    }

    /// The handle of this browser's session on the account page's list, if it has one.
    #[must_use]
    pub fn handle(&self) -> Option<String> {
        self.0.id().map(|id| store::handle_of(&id))
    }

    /// Ends the session: its record is deleted and the cookie cleared.
    pub async fn sign_out(&self) -> Result<(), SessionError> {
        self.0.flush().await
    }

    /// The session's stored CSRF token, if it has one (`http::csrf` makes and checks them).
    pub async fn csrf_token(&self) -> Result<Option<String>, SessionError> {
        self.0.get::<String>(CSRF_KEY).await
    }

    /// Stores a new random CSRF token, and saves the session now, so that a database failure
    /// shows on the page that carries the token rather than after it was sent.
    pub async fn put_new_csrf_token(&self) -> Result<String, SessionError> {
        let token = random_token();
        self.0.insert(CSRF_KEY, &token).await?;
        self.0.save().await?;
        Ok(token)
    }

    /// Remembers where to send the person after they sign in; only a same-origin path is kept.
    pub async fn set_return_to(&self, path: &str) -> Result<(), SessionError> {
        if let Some(path) = safe_return_path(path) {
            self.0.insert(RETURN_TO_KEY, path).await?;
        }
        Ok(())
    }

    /// Takes the remembered destination, if any (and forgets the app that asked).
    pub async fn take_return_to(&self) -> Result<Option<String>, SessionError> {
        self.0.remove::<AskingApp>(ASKING_APP_KEY).await?;
        Ok(self
            .0
            .remove::<String>(RETURN_TO_KEY)
            .await?
            .and_then(|p| safe_return_path(&p).map(str::to_owned)))
    }

    /// Remembers which app the coming sign-in is for.
    pub async fn set_asking_app(&self, app: &AskingApp) -> Result<(), SessionError> {
        self.0.insert(ASKING_APP_KEY, app).await
    }

    /// The app the coming sign-in is for, if an authorization request sent the person here.
    pub async fn asking_app(&self) -> Result<Option<AskingApp>, SessionError> {
        self.0.get(ASKING_APP_KEY).await
    }

    /// Keeps a request while the person signs in or consents.
    pub async fn put_pending<R: PendingRequest>(&self, request: &R) -> Result<(), SessionError> {
        let mut pending: Vec<R> = self.0.get(PENDING_KEY).await?.unwrap_or_default();
        pending.retain(|r| r.pending_id() != request.pending_id());
        pending.push(request.clone());
        if pending.len() > MAX_PENDING {
            pending.remove(0);
        }
        self.0.insert(PENDING_KEY, pending).await
    }

    /// The pending request with this id.
    pub async fn find_pending<R: PendingRequest>(
        &self,
        id: &str,
    ) -> Result<Option<R>, SessionError> {
        let pending: Vec<R> = self.0.get(PENDING_KEY).await?.unwrap_or_default();
        Ok(pending.into_iter().find(|r| r.pending_id() == id))
    }

    /// Forgets a pending request (it was answered).
    pub async fn remove_pending<R: PendingRequest>(&self, id: &str) -> Result<(), SessionError> {
        let mut pending: Vec<R> = self.0.get(PENDING_KEY).await?.unwrap_or_default();
        let before = pending.len();
        pending.retain(|r| r.pending_id() != id);
        if pending.len() != before {
            self.0.insert(PENDING_KEY, pending).await?;
        }
        Ok(())
    }

    /// Asks the sign-in page to take a password even from someone signed in (`prompt=login`,
    /// `max_age`), prefilled with `login_hint`.
    pub async fn require_sign_in(
        &self,
        login_hint: Option<&str>,
        reauth: bool,
    ) -> Result<(), SessionError> {
        if reauth {
            self.0.insert(REAUTH_KEY, true).await?;
        }
        if let Some(hint) = login_hint {
            self.0.insert(LOGIN_HINT_KEY, hint).await?;
        }
        Ok(())
    }

    /// Whether a fresh sign-in was asked for, and the username to prefill.
    pub async fn sign_in_requirements(&self) -> Result<(bool, Option<String>), SessionError> {
        Ok((
            self.0.get::<bool>(REAUTH_KEY).await?.unwrap_or(false),
            self.0.get::<String>(LOGIN_HINT_KEY).await?,
        ))
    }

    /// Keeps a logout request while the person confirms it.
    pub async fn put_pending_logout(&self, logout: &PendingLogout) -> Result<(), SessionError> {
        self.0.insert(PENDING_LOGOUT_KEY, logout).await
    }

    /// Takes the pending logout request.
    pub async fn take_pending_logout(&self) -> Result<Option<PendingLogout>, SessionError> {
        self.0.remove(PENDING_LOGOUT_KEY).await
    }
}

/// 256 random bits, base64url: a CSRF token.
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>())
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
