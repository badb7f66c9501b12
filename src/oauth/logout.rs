//! The rules of OpenID Connect RP-Initiated Logout 1.0: which client a logout names, where it may
//! send the person afterwards, and when to ask them first. The rules are pure; [`understand`]
//! does the look-ups they need.

use time::OffsetDateTime;

use crate::clients::{self, Client};
use crate::db::{self, DbError, DbPool};
use crate::keys::keyring::KeyRing;
use crate::oauth::authorize::redirect_with;
use crate::oauth::params::Params;
use crate::tokens::jwt::{self, IdTokenClaims};

/// The longest `state` echoed back to the client.
const MAX_STATE_LEN: usize = 512;

/// A logout request that may send nobody anywhere: shown as an error page, never redirected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadLogoutRedirect;

/// Why a logout request could not be understood.
#[derive(Debug)]
pub enum LogoutError {
    /// It may send nobody anywhere: an error page.
    Bad(BadLogoutRedirect),
    /// The client could not be looked up.
    Db(DbError),
}

/// A logout request understood: what it asks, the client it names, and the registered place to
/// send the person afterwards, if any.
#[derive(Debug)]
pub struct Understood<'a> {
    /// The request.
    pub request: LogoutRequest<'a>,
    /// The client it names, if registered.
    pub client: Option<Client>,
    /// A post-logout redirect URI registered exactly for that client.
    pub redirect_uri: Option<String>,
}

/// Verifies the `id_token_hint` (§2: it may have expired, but must be ours), reads the request
/// and looks up the client it names.
pub async fn understand<'a>(
    pool: &DbPool,
    keys: &KeyRing,
    issuer: &str,
    params: &'a Params,
    now: OffsetDateTime,
) -> Result<Understood<'a>, LogoutError> {
    let hint = params
        .get("id_token_hint")
        .and_then(|t| jwt::verify_id_token_hint(keys, t, issuer, now).ok());
    let request = LogoutRequest::parse(params, hint).map_err(LogoutError::Bad)?;
    let client = match request.client_to_check() {
        Some(id) => {
            let mut conn = db::connect(pool).await.map_err(LogoutError::Db)?;
            let found = clients::find(&mut conn, id).await;
            found.map_err(|e| LogoutError::Db(e.into()))?
        }
        None => None,
    };
    let redirect_uri = request
        .redirect_uri(client.as_ref())
        .map_err(LogoutError::Bad)?;
    Ok(Understood {
        request,
        client,
        redirect_uri,
    })
}

/// A logout request, with its `id_token_hint` already verified (or dropped).
#[derive(Debug)]
pub struct LogoutRequest<'a> {
    /// The verified hint (§2: it may have expired).
    pub hint: Option<IdTokenClaims>,
    /// The `client_id` parameter.
    pub client_id: Option<&'a str>,
    /// Where to go afterwards, not yet checked against the client.
    pub unverified_redirect_uri: Option<&'a str>,
    /// Echoed to the client.
    pub state: Option<String>,
}

impl<'a> LogoutRequest<'a> {
    /// Reads the request. §2: `client_id` and the hint's audience must agree when both are sent.
    pub fn parse(
        params: &'a Params,
        hint: Option<IdTokenClaims>,
    ) -> Result<Self, BadLogoutRedirect> {
        let client_id = params.get("client_id");
        if let (Some(named), Some(hint)) = (client_id, &hint)
            && named != hint.aud
        {
            return Err(BadLogoutRedirect);
        }
        Ok(Self {
            client_id,
            unverified_redirect_uri: params.get("post_logout_redirect_uri"),
            state: params
                .get("state")
                .map(|s| s.chars().take(MAX_STATE_LEN).collect()),
            hint,
        })
    }

    /// The client to look up: named by `client_id`, or else by the hint.
    #[must_use]
    pub fn client_to_check(&self) -> Option<&str> {
        self.client_id
            .or_else(|| self.hint.as_ref().map(|h| h.aud.as_str()))
    }

    /// The post-logout redirect URI, if it is registered exactly for the named client (§3.1).
    pub fn redirect_uri(
        &self,
        client: Option<&Client>,
    ) -> Result<Option<String>, BadLogoutRedirect> {
        match self.unverified_redirect_uri {
            None => Ok(None),
            Some(uri) if client.is_some_and(|c| c.has_post_logout_redirect_uri(uri)) => {
                Ok(Some(uri.to_owned()))
            }
            Some(_) => Err(BadLogoutRedirect),
        }
    }

    /// Whether the request proves it comes from an app this very user used (a valid hint for
    /// them): then no question is asked. Otherwise any site could sign people out with a link.
    #[must_use]
    pub fn is_confirmed_for(&self, sub: &str) -> bool {
        self.hint.as_ref().is_some_and(|h| h.sub == sub)
    }
}

/// Where the person goes after signing out: the client's registered URI with its `state`, or
/// our own sign-in page.
#[must_use]
pub fn destination(redirect_uri: Option<&str>, state: Option<&str>) -> String {
    match redirect_uri {
        Some(uri) => {
            let params: Vec<(&str, &str)> = state.iter().map(|s| ("state", *s)).collect();
            redirect_with(uri, &params)
        }
        None => "/signin?signed_out=1".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::jwt::ProfileClaims;

    fn hint(aud: &str, sub: uuid::Uuid) -> IdTokenClaims {
        IdTokenClaims {
            iss: "https://id.example".into(),
            sub: sub.to_string(),
            aud: aud.into(),
            exp: 0,
            iat: 0,
            auth_time: 0,
            acr: String::new(),
            amr: vec![],
            nonce: None,
            at_hash: String::new(),
            sid: "s".into(),
            profile: ProfileClaims::default(),
        }
    }

    fn client(post_logout: &[&str]) -> Client {
        Client {
            id: "app".into(),
            name: "App".into(),
            secret_hash: None,
            is_public: true,
            is_first_party: false,
            redirect_uris: vec![],
            post_logout_redirect_uris: post_logout.iter().map(|s| (*s).to_owned()).collect(),
            grant_types: vec![],
            scopes: vec![],
            audiences: vec![],
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
            allowed_origins: vec![],
            require_mfa: false,
            pkce_required: true,
        }
    }

    #[test]
    fn a_client_id_that_disagrees_with_the_hint_is_refused() {
        let params = Params::from_pairs([("client_id", "other")]);
        let refused = LogoutRequest::parse(&params, Some(hint("app", uuid::Uuid::nil())));
        assert_eq!(refused.err(), Some(BadLogoutRedirect));
        let agreed = Params::from_pairs([("client_id", "app")]);
        assert!(LogoutRequest::parse(&agreed, Some(hint("app", uuid::Uuid::nil()))).is_ok());
    }

    #[test]
    fn only_an_exactly_registered_redirect_is_followed() {
        let cb = "https://app.example/bye";
        let params = Params::from_pairs([("client_id", "app"), ("post_logout_redirect_uri", cb)]);
        let request = LogoutRequest::parse(&params, None).expect("valid");
        assert_eq!(request.client_to_check(), Some("app"));
        assert_eq!(
            request.redirect_uri(Some(&client(&[cb]))),
            Ok(Some(cb.to_owned()))
        );
        assert_eq!(
            request.redirect_uri(Some(&client(&["https://app.example/bye/"]))),
            Err(BadLogoutRedirect)
        );
        assert_eq!(request.redirect_uri(None), Err(BadLogoutRedirect));
        let none = Params::default();
        assert_eq!(
            LogoutRequest::parse(&none, None)
                .expect("valid")
                .redirect_uri(None),
            Ok(None)
        );
    }

    #[test]
    fn only_a_hint_for_the_signed_in_user_skips_the_question() {
        let (alice, bob) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let params = Params::default();
        let request = LogoutRequest::parse(&params, Some(hint("app", alice))).expect("valid");
        assert!(request.is_confirmed_for(&alice.to_string()));
        assert!(!request.is_confirmed_for(&bob.to_string()));
        assert!(
            !LogoutRequest::parse(&params, None)
                .expect("valid")
                .is_confirmed_for(&alice.to_string())
        );
    }

    #[test]
    fn the_destination_carries_the_state_or_is_our_sign_in_page() {
        assert_eq!(
            destination(Some("https://app.example/bye"), Some("s 1")),
            "https://app.example/bye?state=s+1"
        );
        assert_eq!(destination(None, Some("x")), "/signin?signed_out=1");
    }
}
