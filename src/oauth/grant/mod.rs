//! The token endpoint's grants (RFC 6749 §4, §6), one file each, and what they share: the typed
//! request, the response, the error, and the signing of tokens for a person.
//!
//! Each grant is a short sequence of named steps: parse (here, before anything runs), check, one
//! transaction, respond.

pub mod authorization_code;
pub mod client_credentials;
pub mod password;
pub mod refresh_token;

use diesel_async::AsyncPgConnection;
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::auth_methods::AuthMethods;
use crate::clients::{Client, GrantType};
use crate::error::AppError;
use crate::keys::keyring::{KeyRing, SignError};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::params::Params;
use crate::scope::{self, Scopes};
use crate::tokens::codes::IssuedForCode;
use crate::tokens::jwt::{self, AccessGrant, IdTokenClaims, IssuedAccessToken, ProfileClaims};
use crate::tokens::refresh::{self, RefreshPolicy};
use crate::users;

pub use authorization_code::CodeRequest;
pub use client_credentials::ClientCredentialsRequest;
pub use password::PasswordRequest;
pub use refresh_token::RefreshRequest;

/// A token request, parsed and checked against what the client is registered for.
#[derive(Debug)]
pub enum TokenRequest {
    /// `authorization_code` (RFC 6749 §4.1.3).
    AuthorizationCode(CodeRequest),
    /// `refresh_token` (RFC 6749 §6).
    RefreshToken(RefreshRequest),
    /// `client_credentials` (RFC 6749 §4.4).
    ClientCredentials(ClientCredentialsRequest),
    /// `password` (RFC 6749 §4.3).
    Password(PasswordRequest),
}

impl TokenRequest {
    /// Reads the request for `grant_type` once the client is authenticated: a grant it is not
    /// registered for is `unauthorized_client` before any of its parameters are looked at.
    pub fn parse(grant_type: &str, client: &Client, params: &Params) -> Result<Self, OAuthError> {
        let grant = GrantType::parse(grant_type).ok_or(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "this grant type is not supported",
        ))?;
        // RFC 6749 §4.4: only a confidential client can stand for itself.
        let public_machine = grant == GrantType::ClientCredentials && client.is_public;
        if public_machine || !client.allows_grant(grant) {
            return Err(OAuthError::unauthorized_client(match grant {
                GrantType::AuthorizationCode => {
                    "this client may not use the authorization_code grant"
                }
                GrantType::RefreshToken => "this client may not use the refresh_token grant",
                GrantType::ClientCredentials => {
                    "this client may not use the client_credentials grant"
                }
                GrantType::Password => "this client may not use the password grant",
            }));
        }
        Ok(match grant {
            GrantType::AuthorizationCode => Self::AuthorizationCode(CodeRequest::parse(params)?),
            GrantType::RefreshToken => Self::RefreshToken(RefreshRequest::parse(params)?),
            GrantType::ClientCredentials => {
                Self::ClientCredentials(ClientCredentialsRequest::parse(params)?)
            }
            GrantType::Password => Self::Password(PasswordRequest::parse(params)?),
        })
    }

    /// The grant type, for logs and spans.
    #[must_use]
    pub fn grant_type(&self) -> GrantType {
        match self {
            Self::AuthorizationCode(_) => GrantType::AuthorizationCode,
            Self::RefreshToken(_) => GrantType::RefreshToken,
            Self::ClientCredentials(_) => GrantType::ClientCredentials,
            Self::Password(_) => GrantType::Password,
        }
    }
}

/// The optional `scope` of a request (RFC 6749 §3.3); empty counts as absent.
fn requested_scope(params: &Params) -> Result<Option<Scopes>, OAuthError> {
    params
        .get("scope")
        .map(Scopes::parse)
        .transpose()
        .map_err(|_| OAuthError::invalid_scope("scope is malformed"))
        .map(|s| s.filter(|s| !s.is_empty()))
}

/// A successful token response (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Granted scope.
    pub scope: String,
    /// When `openid` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// When the client may refresh and `offline_access` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl TokenResponse {
    fn bearer(access: IssuedAccessToken, ttl: Duration, scopes: &Scopes) -> Self {
        Self {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: ttl.whole_seconds(),
            scope: scopes.to_string(),
            id_token: None,
            refresh_token: None,
        }
    }
}

/// A failure of the grant itself (as opposed to client authentication).
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// An RFC 6749 §5.2 error for the client.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// The database, the hasher or the signer failed: 503 or 500.
    #[error(transparent)]
    App(#[from] AppError),
    /// A rate limit refused the request: 429 with `Retry-After`.
    #[error("rate limited")]
    RateLimited(time::Duration),
}

impl From<diesel::result::Error> for GrantError {
    fn from(e: diesel::result::Error) -> Self {
        Self::App(e.into())
    }
}

impl From<crate::db::DbError> for GrantError {
    fn from(e: crate::db::DbError) -> Self {
        Self::App(e.into())
    }
}

impl From<SignError> for GrantError {
    fn from(e: SignError) -> Self {
        Self::App(AppError::Internal(e.into()))
    }
}

/// `invalid_grant` as a grant error.
fn invalid_grant(description: &'static str) -> GrantError {
    OAuthError::invalid_grant(description).into()
}

/// Token lifetimes and who we are.
#[derive(Clone, Copy, Debug)]
pub struct IssuerSettings<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// ID-token lifetime.
    pub id_ttl: Duration,
}

/// What every grant needs besides the connection and the client.
#[derive(Clone, Copy, Debug)]
pub struct GrantContext<'a> {
    /// The in-memory signer.
    pub keys: &'a KeyRing,
    /// Issuer and lifetimes.
    pub settings: IssuerSettings<'a>,
    /// Refresh-token rules.
    pub refresh: &'a RefreshPolicy,
    /// Where rotations of current refresh tokens are gathered into shared statements.
    pub rotations: &'a crate::tokens::rotations::Rotations,
    /// The caller's address, for the audit trail.
    pub ip: Option<ipnet::IpNet>,
    /// Where outcomes are counted.
    pub metrics: &'a crate::metrics::Metrics,
    /// Now.
    pub now: OffsetDateTime,
}

impl GrantContext<'_> {
    /// Signs an access token for `sub` under `client`, with a fresh `jti`.
    fn access_token(
        &self,
        client: &Client,
        sub: &str,
        scopes: &Scopes,
        audiences: &[String],
        person: Option<Person<'_>>,
    ) -> Result<IssuedAccessToken, SignError> {
        let id = (Uuid::new_v4(), self.now + self.settings.access_ttl);
        jwt::sign_access_token(
            self.keys,
            &AccessGrant {
                issuer: self.settings.issuer,
                sub,
                client_id: &client.id,
                scopes,
                audiences,
                auth_time: person.map(|p| p.auth_time),
                methods: person.map(|p| p.methods),
                roles: person.map_or(&[], |p| p.roles),
                credential_version: person.map(|p| p.credential_version),
                family: person.and_then(|p| p.family),
            },
            id,
            self.now,
        )
    }
}

/// The account's claims in a user's access token.
#[derive(Clone, Copy, Debug)]
struct Person<'a> {
    roles: &'a [String],
    credential_version: i32,
    auth_time: OffsetDateTime,
    methods: &'a AuthMethods,
    /// The refresh family the token is issued in, named in it (`fam`).
    family: Option<Uuid>,
}

impl<'a> Person<'a> {
    fn of(user: &'a users::User, (auth_time, methods): (OffsetDateTime, &'a AuthMethods)) -> Self {
        Self {
            roles: &user.roles,
            credential_version: user.credential_version,
            auth_time,
            methods,
            family: None,
        }
    }

    /// The same person, the token issued in refresh family `family`.
    const fn in_family(self, family: Option<Uuid>) -> Self {
        Self { family, ..self }
    }
}

/// The person and authorization tokens are issued for (a code or a password grant).
struct Authorization<'a> {
    user: &'a users::User,
    scopes: &'a Scopes,
    audiences: &'a [String],
    auth_time: OffsetDateTime,
    methods: &'a AuthMethods,
    sid: &'a str,
    nonce: Option<&'a str>,
}

/// What [`issue_for_user`] signed: the response, and the access token's id and expiry (a code
/// remembers them, so a replay can revoke it).
struct Issued {
    response: TokenResponse,
    for_code: IssuedForCode,
}

/// Signs the access token, the ID token (with `openid`) and starts a refresh family (when the
/// client may refresh and `offline_access` was granted).
async fn issue_for_user(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    client: &Client,
    auth: &Authorization<'_>,
) -> Result<Issued, GrantError> {
    let sub = auth.user.sub();
    // The family's id is chosen first: the access token names it (`fam`), so revoking the
    // family reaches the token without a record per access token.
    let family_id = (client.allows_grant(GrantType::RefreshToken)
        && auth.scopes.contains(scope::OFFLINE_ACCESS))
    .then(Uuid::new_v4);
    let person = Person::of(auth.user, (auth.auth_time, auth.methods)).in_family(family_id);
    let access = ctx.access_token(client, &sub, auth.scopes, auth.audiences, Some(person))?;
    let id_token = if auth.scopes.contains(scope::OPENID) {
        Some(sign_id_token(ctx, client, auth, &sub, &access.token)?)
    } else {
        None
    };
    let (refresh_family, refresh_token) = if let Some(id) = family_id {
        let family = refresh::NewFamily {
            id,
            client_id: &client.id,
            user_id: auth.user.id,
            scopes: auth.scopes,
            audiences: auth.audiences,
            auth_time: auth.auth_time,
            methods: auth.methods,
        };
        let token = refresh::insert_family(conn, ctx.refresh, &family, ctx.now).await?;
        (Some(id), Some(token.expose().to_owned()))
    } else {
        (None, None)
    };
    let for_code = IssuedForCode {
        access_token: (access.jti, access.expires_at),
        refresh_family,
    };
    let response = TokenResponse {
        id_token,
        refresh_token,
        ..TokenResponse::bearer(access, ctx.settings.access_ttl, auth.scopes)
    };
    Ok(Issued { response, for_code })
}

/// The OIDC Core §2 ID token, with the profile claims its scopes release (§5.4).
fn sign_id_token(
    ctx: &GrantContext<'_>,
    client: &Client,
    auth: &Authorization<'_>,
    sub: &str,
    access_token: &str,
) -> Result<String, SignError> {
    let now = ctx.now;
    let profile =
        ProfileClaims::for_scopes(auth.scopes, &auth.user.username, auth.user.email_claim());
    let claims = IdTokenClaims {
        iss: ctx.settings.issuer.to_owned(),
        sub: sub.to_owned(),
        aud: client.id.clone(),
        exp: (now + ctx.settings.id_ttl).unix_timestamp(),
        iat: now.unix_timestamp(),
        auth_time: auth.auth_time.unix_timestamp(),
        acr: auth.methods.acr().to_owned(),
        amr: auth.methods.amr(),
        nonce: auth.nonce.map(str::to_owned),
        at_hash: jwt::at_hash(access_token),
        sid: auth.sid.to_owned(),
        profile,
    };
    ctx.keys.sign(jwt::ID_TOKEN_TYP, &claims, now)
}

/// Runs a parsed token request for its authenticated client: the grant's own rules, then the
/// count of tokens issued. `checks` are the sign-in checks the password grant needs.
pub async fn run(
    ctx: &GrantContext<'_>,
    pool: &crate::db::DbPool,
    checks: &crate::oauth::sign_in::Checks<'_>,
    client: &Client,
    request: &TokenRequest,
) -> Result<TokenResponse, GrantError> {
    let response = match request {
        TokenRequest::AuthorizationCode(r) => {
            let mut conn = crate::db::connect(pool).await?;
            authorization_code::exchange_code(&mut conn, ctx, client, r).await?
        }
        TokenRequest::RefreshToken(r) => refresh_token::refresh(pool, ctx, client, r).await?,
        TokenRequest::ClientCredentials(r) => {
            client_credentials::client_credentials(ctx, client, r)?
        }
        TokenRequest::Password(r) => password::password(checks, ctx, client, r).await?,
    };
    ctx.metrics.token_issued(request.grant_type().as_str());
    Ok(response)
}
