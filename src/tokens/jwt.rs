//! The JWTs Keyward issues: RFC 9068 access tokens and OpenID Connect ID tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth_methods::AuthMethods;
use crate::keys::keyring::{KeyRing, SignError, VerifyError};
use crate::scope::{self, Scopes};

/// RFC 9068 §2.1: the `typ` of access tokens, so they cannot pass for ID tokens.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The `typ` of ID tokens.
pub const ID_TOKEN_TYP: &str = "JWT";

/// One audience or several (RFC 7519 §4.1.3).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// Exactly one.
    One(String),
    /// More than one.
    Many(Vec<String>),
}

impl Audience {
    /// The audience for these resources; with none configured, Keyward itself (userinfo).
    #[must_use]
    pub fn for_resources(resources: &[String], issuer: &str) -> Self {
        match resources {
            [] => Self::One(issuer.to_owned()),
            [one] => Self::One(one.clone()),
            many => Self::Many(many.to_vec()),
        }
    }

    /// The audience of an access token: its resources, and Keyward itself (the userinfo
    /// endpoint) when `openid` was granted, since that is what `openid` asks for.
    #[must_use]
    pub fn for_token(resources: &[String], issuer: &str, scopes: &Scopes) -> Self {
        let mut all = resources.to_vec();
        if scopes.contains(scope::OPENID) && !all.iter().any(|a| a == issuer) {
            all.push(issuer.to_owned());
        }
        Self::for_resources(&all, issuer)
    }

    /// Whether `name` is one of the audiences.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Self::One(one) => one == name,
            Self::Many(many) => many.iter().any(|a| a == name),
        }
    }
}

/// RFC 9068 §2.2 claims of an access token: what we sign, and what verification hands back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessTokenClaims {
    /// Issuer.
    pub iss: String,
    /// The user's stable id (or the client's id for client credentials).
    pub sub: String,
    /// Resource server(s).
    pub aud: Audience,
    /// The client the token was issued to.
    pub client_id: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// Issued at.
    pub iat: i64,
    /// Expires at.
    pub exp: i64,
    /// Unique id (revocation list key).
    pub jti: Uuid,
    /// When the person authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// How the person authenticated (RFC 9068 §2.2.1, from OIDC Core §2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// The methods they used (RFC 8176).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The user's roles, when they have any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Keyward's own claim: the user's credential version when the token was issued. A cut-off
    /// (password change, disabling, sign-out everywhere) bumps it, and the token stops working at
    /// userinfo and introspection at once, though its signature stays valid until `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv: Option<i32>,
    /// Keyward's own claim: the refresh family the token was issued in. Revoking the family
    /// ends the token at userinfo and introspection at once, with no record kept per token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<Uuid>,
}

impl AccessTokenClaims {
    /// The `sub` of the person the token speaks for; `None` for a client's own token (client
    /// credentials), whose subject is the client (and no client id is any user's `sub`).
    #[must_use]
    pub fn person_sub(&self) -> Option<&str> {
        (self.sub != self.client_id).then_some(self.sub.as_str())
    }

    /// When the token expires.
    #[must_use]
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp(self.exp).ok()
    }

    /// Whether the token was issued to the person whose `sub` this is, under their current
    /// credentials (no cut-off since).
    #[must_use]
    pub fn is_current_for(&self, sub: &str, credential_version: i32) -> bool {
        self.person_sub() == Some(sub) && self.cv == Some(credential_version)
    }

    /// The granted scopes; a malformed claim grants nothing.
    #[must_use]
    pub fn scopes(&self) -> Scopes {
        Scopes::parse(&self.scope).unwrap_or_default()
    }
}

/// OIDC Core §2 and §5.1 claims of an ID token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdTokenClaims {
    /// Issuer.
    pub iss: String,
    /// The user's stable id.
    pub sub: String,
    /// The client.
    pub aud: String,
    /// Expires at.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the person authenticated.
    pub auth_time: i64,
    /// The authentication context class the sign-in satisfied.
    pub acr: String,
    /// The methods it used (RFC 8176).
    pub amr: Vec<String>,
    /// Echo of the request's nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Left half of SHA-256 of the access token (OIDC Core §3.1.3.6).
    pub at_hash: String,
    /// The sign-in session.
    pub sid: String,
    /// What the scopes release about the person.
    #[serde(flatten)]
    pub profile: ProfileClaims,
}

/// `at_hash`: base64url of the left-most half of SHA-256 of the token (RS256 → SHA-256).
#[must_use]
pub fn at_hash(access_token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}

/// The person-describing claims a set of scopes releases (OIDC Core §5.4), for ID tokens and
/// userinfo alike.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileClaims {
    /// `profile`: the username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// `profile`: the display name (the username; Keyward keeps no other name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `email`: whether the person proved they receive mail there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

impl ProfileClaims {
    /// The claims `scopes` allow for this user; `email` is the address and whether it is
    /// verified.
    #[must_use]
    pub fn for_scopes(scopes: &Scopes, username: &str, email: Option<(&str, bool)>) -> Self {
        let profile = scopes.contains(scope::PROFILE);
        let email = email.filter(|_| scopes.contains(scope::EMAIL));
        Self {
            preferred_username: profile.then(|| username.to_owned()),
            name: profile.then(|| username.to_owned()),
            email_verified: email.map(|(_, verified)| verified),
            email: email.map(|(address, _)| address.to_owned()),
        }
    }
}

/// A freshly signed access token.
#[derive(Debug)]
pub struct IssuedAccessToken {
    /// The compact JWS.
    pub token: String,
    /// Its `jti`.
    pub jti: Uuid,
    /// Its expiry.
    pub expires_at: OffsetDateTime,
}

/// What goes into an access token besides the times.
#[derive(Clone, Copy, Debug)]
pub struct AccessGrant<'a> {
    /// Issuer.
    pub issuer: &'a str,
    /// Subject.
    pub sub: &'a str,
    /// Client.
    pub client_id: &'a str,
    /// Scopes.
    pub scopes: &'a Scopes,
    /// Audiences requested (empty: Keyward itself).
    pub audiences: &'a [String],
    /// Authentication time, for user tokens.
    pub auth_time: Option<OffsetDateTime>,
    /// How the person authenticated, for user tokens.
    pub methods: Option<&'a AuthMethods>,
    /// Roles, for user tokens.
    pub roles: &'a [String],
    /// The user's credential version, for user tokens.
    pub credential_version: Option<i32>,
    /// The refresh family it is issued in, if any.
    pub family: Option<Uuid>,
}

/// Signs an RFC 9068 access token with the `jti` and expiry the caller chose (the one-statement
/// refresh records them before it signs).
pub fn sign_access_token(
    keys: &KeyRing,
    grant: &AccessGrant<'_>,
    (jti, expires_at): (Uuid, OffsetDateTime),
    now: OffsetDateTime,
) -> Result<IssuedAccessToken, SignError> {
    let claims = AccessTokenClaims {
        iss: grant.issuer.to_owned(),
        sub: grant.sub.to_owned(),
        aud: Audience::for_token(grant.audiences, grant.issuer, grant.scopes),
        client_id: grant.client_id.to_owned(),
        scope: grant.scopes.to_string(),
        iat: now.unix_timestamp(),
        exp: expires_at.unix_timestamp(),
        jti,
        auth_time: grant.auth_time.map(OffsetDateTime::unix_timestamp),
        acr: grant.methods.map(|m| m.acr().to_owned()),
        amr: grant.methods.map(AuthMethods::amr),
        roles: grant.roles.to_vec(),
        cv: grant.credential_version,
        fam: grant.family,
    };
    Ok(IssuedAccessToken {
        token: keys.sign(ACCESS_TOKEN_TYP, &claims, now)?,
        jti,
        expires_at,
    })
}

/// Verifies one of our access tokens (RFC 9068 §4: `typ` must be `at+jwt`, so an ID token is
/// never taken for one). `sub`, `client_id`, `aud`, `scope` and `jti` are required: a token
/// lacking one is not an access token of ours.
pub fn verify_access_token(
    keys: &KeyRing,
    token: &str,
    issuer: &str,
    now: OffsetDateTime,
) -> Result<AccessTokenClaims, VerifyError> {
    keys.verify(token, ACCESS_TOKEN_TYP, issuer, now)
}

/// Verifies an `id_token_hint` (OIDC RP-Initiated Logout §2): it may have expired, but its
/// signature, issuer and type must hold.
pub fn verify_id_token_hint(
    keys: &KeyRing,
    token: &str,
    issuer: &str,
    now: OffsetDateTime,
) -> Result<IdTokenClaims, VerifyError> {
    keys.verify_ignoring_expiry(token, ID_TOKEN_TYP, issuer, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_oidc_example() {
        // OpenID Connect Core, Appendix A.3 (RS256 access token and its at_hash).
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
        assert_eq!(at_hash(token), "77QmUPtjPfzWtF2AnpK9RQ");
    }

    #[test]
    fn audience_is_a_string_for_one_and_an_array_for_many() {
        let one = Audience::for_resources(&["https://api".into()], "https://id");
        assert_eq!(
            serde_json::to_string(&one).expect("json"),
            "\"https://api\""
        );
        let none = Audience::for_resources(&[], "https://id");
        assert_eq!(none, Audience::One("https://id".into()));
        let many = Audience::for_resources(&["a".into(), "b".into()], "https://id");
        assert_eq!(serde_json::to_string(&many).expect("json"), "[\"a\",\"b\"]");
    }

    fn claims_with(sub: &str, client_id: &str) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://id".into(),
            sub: sub.into(),
            aud: Audience::One("https://id".into()),
            client_id: client_id.into(),
            scope: "openid".into(),
            iat: 0,
            exp: 60,
            jti: Uuid::nil(),
            auth_time: None,
            acr: None,
            amr: None,
            roles: vec![],
            cv: Some(3),
            fam: None,
        }
    }

    #[test]
    fn only_a_user_token_speaks_for_a_user_and_only_under_current_credentials() {
        let user = Uuid::new_v4().to_string();
        let token = claims_with(&user, "webapp");
        assert_eq!(token.person_sub(), Some(user.as_str()));
        assert!(token.is_current_for(&user, 3));
        assert!(!token.is_current_for(&user, 4), "a cut-off since");
        assert!(!token.is_current_for(&Uuid::new_v4().to_string(), 3));
        // A subject kept from another system speaks for its person the same way.
        let kept = claims_with("507f1f77bcf86cd799439011", "webapp");
        assert!(kept.is_current_for("507f1f77bcf86cd799439011", 3));
        // A client's own token has the client as subject: never a user, whatever its id.
        let own = claims_with(&user, &user);
        assert_eq!(own.person_sub(), None);
        assert_eq!(claims_with("billing", "billing").person_sub(), None);
    }

    #[test]
    fn openid_adds_the_userinfo_audience_to_the_resources() {
        let openid = Scopes::parse("openid").expect("valid");
        let api = Scopes::parse("invoices:read").expect("valid");
        let resources = ["https://api".to_owned()];
        let with = Audience::for_token(&resources, "https://id", &openid);
        assert_eq!(
            with,
            Audience::Many(vec!["https://api".into(), "https://id".into()])
        );
        assert!(with.contains("https://id") && with.contains("https://api"));
        let without = Audience::for_token(&resources, "https://id", &api);
        assert_eq!(without, Audience::One("https://api".into()));
        assert!(!without.contains("https://id"));
        assert_eq!(
            Audience::for_token(&[], "https://id", &openid),
            Audience::One("https://id".into())
        );
    }

    #[test]
    fn profile_claims_follow_the_scopes() {
        let openid = Scopes::parse("openid").expect("valid");
        let none = ProfileClaims::for_scopes(&openid, "bob", Some(("b@x", true)));
        assert!(none.preferred_username.is_none() && none.email.is_none());
        let all_scopes = Scopes::parse("openid profile email").expect("valid");
        let all = ProfileClaims::for_scopes(&all_scopes, "bob", Some(("b@x", false)));
        assert_eq!(all.preferred_username.as_deref(), Some("bob"));
        assert_eq!(all.email.as_deref(), Some("b@x"));
        assert_eq!(all.email_verified, Some(false));
        let verified = ProfileClaims::for_scopes(&all_scopes, "bob", Some(("b@x", true)));
        assert_eq!(verified.email_verified, Some(true));
    }
}
