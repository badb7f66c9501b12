//! What may be registered as a client, checked in one place for every adapter (the CLI today,
//! the management API next): supported grants, exact URIs and origins, RFC 8707 audiences.

use time::OffsetDateTime;

use super::{Client, ClientChanges, GrantType, NewClient, Origin, OriginError};
use super::{RedirectUri, RedirectUriError, cors_origins, generate_secret};
use crate::crypto::random_bytes;
use crate::scope::Scopes;
use crate::tokens::opaque::{PlainToken, TokenHash};

/// Shortest secret an operator may choose: SHA-256 is only a sound storage hash for
/// high-entropy secrets, so a short (guessable) one is refused.
pub const MIN_CHOSEN_SECRET_CHARS: usize = 32;

/// Why a registration or a change was refused, in words for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// A public client has no secret.
    #[error("a public client has no secret")]
    SecretForPublic,
    /// A chosen secret is too short to be stored as a plain SHA-256.
    #[error("the secret must be at least 32 characters (use a generated one)")]
    ShortSecret,
    /// A grant the token endpoint does not implement.
    #[error(
        "grant '{0}' is not supported (supported: authorization_code, refresh_token, client_credentials, password)"
    )]
    UnsupportedGrant(String),
    /// RFC 8707 §2: a resource indicator is an absolute URI without a fragment.
    #[error("audience '{0}' must be an absolute URI without a fragment")]
    BadAudience(String),
    /// RFC 6749 §3.1.2.2: a client of the code flow registers where codes go.
    #[error("--redirect-uri is required for the authorization_code grant (the default)")]
    RedirectUriRequired,
    /// The scope list is not RFC 6749 §3.3 syntax.
    #[error("--scope is malformed")]
    BadScope,
    /// OAuth 2.1 §4.1.1: a public client has no other defence against code injection than PKCE.
    #[error("--pkce optional is for confidential clients only: a public client always uses PKCE")]
    PkceOptionalForPublic,
    /// A management scope that does not exist.
    #[error("'{0}' is not a management scope (they are: {list})", list = crate::scope::ADMIN_SCOPES.join(", "))]
    UnknownAdminScope(String),
    /// Management scopes go to dedicated service clients only: confidential, `client_credentials`
    /// alone, no other scope and no other audience, so no person's consent and no other
    /// resource server ever sees such a token.
    #[error(
        "a client with admin: scopes must be confidential, use only the client_credentials grant, and have no other scope or audience"
    )]
    AdminClientShape,
    /// A redirect URI that may not be registered.
    #[error(transparent)]
    RedirectUri(#[from] RedirectUriError),
    /// An origin that may not be registered.
    #[error(transparent)]
    Origin(#[from] OriginError),
}

/// Where a confidential client's secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Generated here and shown once.
    Generate,
    /// Chosen by the operator, who has it already: never shown back.
    Chosen(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Generate => "Generate",
            Self::Chosen(_) => "Chosen(..)",
        })
    }
}

/// A client as an operator describes it, not yet checked.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Shown to people on the sign-in and consent pages.
    pub name: String,
    /// The `client_id`; generated when absent.
    pub id: Option<String>,
    /// `None` for a public client, else where its secret comes from.
    pub secret: Option<Secret>,
    /// Whether people are not asked for consent.
    pub is_first_party: bool,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Browser origins besides the redirect URIs'.
    pub allowed_origins: Vec<String>,
    /// Grant names; `authorization_code` when empty.
    pub grants: Vec<String>,
    /// Space-separated scopes it may request.
    pub scope: String,
    /// Resource servers its access tokens may name.
    pub audiences: Vec<String>,
    /// Its users must prove a second factor to sign in to it.
    pub require_mfa: bool,
    /// Its code requests may go without PKCE when they carry a `nonce` (RFC 9700 §2.1.1), for
    /// libraries that send none (`passport-openidconnect`); confidential clients only.
    pub pkce_optional: bool,
}

/// A checked registration: the row to insert, and the generated secret to show once.
#[derive(Debug)]
pub struct Checked {
    /// The row.
    pub new: NewClient,
    /// The generated secret, if one was generated.
    pub secret: Option<PlainToken>,
}

impl Registration {
    /// Checks every rule and builds the row.
    pub fn check(self, now: OffsetDateTime) -> Result<Checked, RegistrationError> {
        let grant_types = grants(self.grants)?;
        let redirect_uris = uris(&self.redirect_uris)?;
        require_redirect_for_code(&redirect_uris, &grant_types)?;
        let explicit = origins(&self.allowed_origins)?;
        let (secret_hash, shown) = match self.secret {
            None => (None, None),
            Some(Secret::Chosen(s)) if s.len() < MIN_CHOSEN_SECRET_CHARS => {
                return Err(RegistrationError::ShortSecret);
            }
            Some(Secret::Chosen(s)) => (Some(TokenHash::of(&s)), None),
            Some(Secret::Generate) => {
                let s = generate_secret();
                (Some(s.hash()), Some(s))
            }
        };
        let id = self.id.unwrap_or_else(|| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                random_bytes::<15>(),
            )
        });
        let new = NewClient {
            id,
            name: self.name,
            is_public: secret_hash.is_none(),
            secret_hash,
            is_first_party: self.is_first_party,
            allowed_origins: cors_origins(&redirect_uris, &explicit),
            redirect_uris: as_strings(&redirect_uris),
            post_logout_redirect_uris: as_strings(&uris(&self.post_logout_redirect_uris)?),
            grant_types,
            scopes: scopes(&self.scope)?,
            audiences: audiences(self.audiences)?,
            created_at: now,
            updated_at: now,
            require_mfa: self.require_mfa,
            pkce_required: !self.pkce_optional,
        };
        check_admin(new.is_public, &new.grant_types, &new.scopes, &new.audiences)?;
        check_pkce(new.is_public, new.pkce_required)?;
        Ok(Checked { new, secret: shown })
    }
}

/// A change to a registered client: each `Some` replaces that setting (an empty list clears
/// it), each `None` keeps it.
#[derive(Debug, Clone, Default)]
pub struct Edit {
    /// A new name.
    pub name: Option<String>,
    /// Whether people are asked for consent.
    pub is_first_party: Option<bool>,
    /// New redirect URIs.
    pub redirect_uris: Option<Vec<String>>,
    /// New explicit origins.
    pub allowed_origins: Option<Vec<String>>,
    /// New post-logout redirect URIs.
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// New grants (an empty list is refused by the code-flow rule only if it names none).
    pub grants: Option<Vec<String>>,
    /// New scopes.
    pub scope: Option<String>,
    /// New audiences.
    pub audiences: Option<Vec<String>>,
    /// Whether its users must prove a second factor.
    pub require_mfa: Option<bool>,
    /// Whether its code requests may go without PKCE (with a `nonce`).
    pub pkce_optional: Option<bool>,
}

impl Edit {
    /// The stored client with this change applied, checked as a registration is.
    pub fn apply(
        self,
        client: &Client,
        now: OffsetDateTime,
    ) -> Result<ClientChanges, RegistrationError> {
        let mut changes = client.changes(now);
        if let Some(name) = self.name {
            changes.name = name;
        }
        if let Some(first_party) = self.is_first_party {
            changes.is_first_party = first_party;
        }
        if let Some(require) = self.require_mfa {
            changes.require_mfa = require;
        }
        if let Some(optional) = self.pkce_optional {
            changes.pkce_required = !optional;
        }
        if let Some(g) = self.grants {
            changes.grant_types = grants(g)?;
        }
        if let Some(scope) = self.scope {
            changes.scopes = scopes(&scope)?;
        }
        if let Some(a) = self.audiences {
            changes.audiences = audiences(a)?;
        }
        if let Some(u) = self.post_logout_redirect_uris {
            changes.post_logout_redirect_uris = as_strings(&uris(&u)?);
        }
        let redirect_uris = uris(self.redirect_uris.as_ref().unwrap_or(&client.redirect_uris))?;
        require_redirect_for_code(&redirect_uris, &changes.grant_types)?;
        let explicit = match self.allowed_origins {
            Some(o) => origins(&o)?,
            None => origins(&client.explicit_origins())?,
        };
        changes.allowed_origins = cors_origins(&redirect_uris, &explicit);
        changes.redirect_uris = as_strings(&redirect_uris);
        check_admin(
            client.is_public,
            &changes.grant_types,
            &changes.scopes,
            &changes.audiences,
        )?;
        check_pkce(client.is_public, changes.pkce_required)?;
        Ok(changes)
    }
}

/// The grants asked for, each one we support; `authorization_code` when none is.
fn grants(grants: Vec<String>) -> Result<Vec<String>, RegistrationError> {
    if grants.is_empty() {
        return Ok(vec![GrantType::AuthorizationCode.as_str().to_owned()]);
    }
    match grants.iter().find(|g| GrantType::parse(g).is_none()) {
        Some(bad) => Err(RegistrationError::UnsupportedGrant(bad.clone())),
        None => Ok(grants),
    }
}

/// Resource indicators (RFC 8707 §2): absolute URIs without a fragment.
fn audiences(audiences: Vec<String>) -> Result<Vec<String>, RegistrationError> {
    match audiences
        .iter()
        .find(|a| url::Url::parse(a).map_or(true, |u| u.fragment().is_some()))
    {
        Some(bad) => Err(RegistrationError::BadAudience(bad.clone())),
        None => Ok(audiences),
    }
}

/// OAuth 2.1 §4.1.1 / RFC 9700 §2.1.1: only a confidential client may go without PKCE (it then
/// relies on its secret and the `nonce`); a public client has nothing else.
fn check_pkce(is_public: bool, pkce_required: bool) -> Result<(), RegistrationError> {
    if is_public && !pkce_required {
        return Err(RegistrationError::PkceOptionalForPublic);
    }
    Ok(())
}

/// The management API's scopes only on a service client of their own (see
/// [`RegistrationError::AdminClientShape`]): RFC 9700 §2.3 audience-restricted, least privilege.
fn check_admin(
    is_public: bool,
    grants: &[String],
    scopes: &[String],
    audiences: &[String],
) -> Result<(), RegistrationError> {
    use crate::scope::{ADMIN_PREFIX, ADMIN_SCOPES};
    let admin: Vec<&String> = scopes
        .iter()
        .filter(|s| s.starts_with(ADMIN_PREFIX))
        .collect();
    if admin.is_empty() {
        return Ok(());
    }
    if let Some(unknown) = admin.iter().find(|s| !ADMIN_SCOPES.contains(&s.as_str())) {
        return Err(RegistrationError::UnknownAdminScope((*unknown).clone()));
    }
    let only_client_credentials = grants
        .iter()
        .all(|g| g == GrantType::ClientCredentials.as_str());
    if is_public || !only_client_credentials || admin.len() != scopes.len() || !audiences.is_empty()
    {
        return Err(RegistrationError::AdminClientShape);
    }
    Ok(())
}

fn scopes(raw: &str) -> Result<Vec<String>, RegistrationError> {
    Scopes::parse(raw)
        .map(|s| s.to_vec())
        .map_err(|_| RegistrationError::BadScope)
}

/// RFC 6749 §3.1.2.2: a client of the code flow registers where codes go.
fn require_redirect_for_code(
    redirect_uris: &[RedirectUri],
    grants: &[String],
) -> Result<(), RegistrationError> {
    let code = GrantType::AuthorizationCode.as_str();
    if redirect_uris.is_empty() && grants.iter().any(|g| g == code) {
        return Err(RegistrationError::RedirectUriRequired);
    }
    Ok(())
}

/// Exact URIs, each checked as a redirect URI must be (https, or http on loopback).
fn uris(uris: &[String]) -> Result<Vec<RedirectUri>, RegistrationError> {
    uris.iter()
        .map(|u| RedirectUri::parse(u).map_err(Into::into))
        .collect()
}

fn as_strings(uris: &[RedirectUri]) -> Vec<String> {
    uris.iter().map(|u| u.as_str().to_owned()).collect()
}

fn origins(origins: &[String]) -> Result<Vec<Origin>, RegistrationError> {
    origins
        .iter()
        .map(|o| Origin::parse(o).map_err(Into::into))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_client() -> Registration {
        Registration {
            name: "App".into(),
            id: Some("app".into()),
            secret: Some(Secret::Generate),
            is_first_party: false,
            redirect_uris: vec!["https://app.example/cb".into()],
            post_logout_redirect_uris: vec![],
            allowed_origins: vec![],
            require_mfa: false,
            pkce_optional: false,
            grants: vec![],
            scope: "openid".into(),
            audiences: vec![],
        }
    }

    /// A change to a valid registration, and the refusal it must get.
    type Case = (fn(&mut Registration), RegistrationError);

    #[test]
    fn each_registration_rule_refuses_its_case() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let cases: [Case; 6] = [
            (
                |r| {
                    r.secret = None;
                    r.pkce_optional = true;
                },
                RegistrationError::PkceOptionalForPublic,
            ),
            (
                |r| r.grants = vec!["implicit".into()],
                RegistrationError::UnsupportedGrant("implicit".into()),
            ),
            (
                |r| r.audiences = vec!["https://api.example/#x".into()],
                RegistrationError::BadAudience("https://api.example/#x".into()),
            ),
            (
                |r| r.redirect_uris.clear(),
                RegistrationError::RedirectUriRequired,
            ),
            (
                |r| r.secret = Some(Secret::Chosen("short".into())),
                RegistrationError::ShortSecret,
            ),
            (|r| r.scope = "a\"b".into(), RegistrationError::BadScope),
        ];
        for (change, expected) in cases {
            let mut r = code_client();
            change(&mut r);
            assert_eq!(r.check(now).err(), Some(expected));
        }
        let checked = code_client().check(now).expect("valid");
        assert_eq!(checked.new.grant_types, ["authorization_code"]);
        assert!(checked.secret.is_some(), "a generated secret is shown once");
        assert_eq!(checked.new.allowed_origins, ["https://app.example"]);
    }

    #[test]
    fn a_machine_client_needs_no_redirect_uri() {
        let mut r = code_client();
        r.redirect_uris.clear();
        r.grants = vec!["client_credentials".into()];
        assert!(r.check(OffsetDateTime::UNIX_EPOCH).is_ok());
    }
}
