//! The token endpoint's rules: client authentication (RFC 6749 §2.3) and the authorization code
//! grant (§4.1.3), with PKCE and single use.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::audit::{self, NewAuditEvent};
use crate::clients::{self, Client, GrantType};
use crate::keys::keyring::KeyRing;
use crate::oauth::authorize::Params;
use crate::oauth::codes;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::pkce::CodeChallenge;
use crate::oauth::scope::{self, Scopes};
use crate::tokens::jwt::{self, AccessGrant, IdTokenClaims, ProfileClaims};
use crate::tokens::opaque::TokenHash;
use crate::users;

/// How the client authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    /// Secret in the body (`client_secret_post`).
    Post,
    /// Public client, no secret (`none`).
    None,
}

/// Credentials presented by a client, not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub struct UnverifiedClient {
    /// The claimed `client_id`.
    pub client_id: String,
    /// The presented secret, if any.
    secret: Option<String>,
    /// How it was presented.
    pub method: AuthMethod,
}

impl std::fmt::Debug for UnverifiedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnverifiedClient")
            .field("client_id", &self.client_id)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Why client authentication failed; `Basic` decides whether the 401 carries a Basic challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAuthError {
    /// The error.
    pub error: OAuthError,
    /// Whether the client tried HTTP Basic.
    pub used_basic: bool,
}

fn form_decode(raw: &str) -> Option<String> {
    // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
    url::form_urlencoded::parse(format!("x={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// Reads client credentials from the `Authorization` header and the form.
pub fn parse_client_auth(
    authorization: Option<&str>,
    params: &Params,
) -> Result<UnverifiedClient, ClientAuthError> {
    let form = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let invalid = |description, used_basic| ClientAuthError {
        error: OAuthError::new(ErrorCode::InvalidRequest, description),
        used_basic,
    };
    let bad_client = |used_basic| ClientAuthError {
        error: OAuthError::new(ErrorCode::InvalidClient, "client authentication failed"),
        used_basic,
    };
    if let Some(header) = authorization {
        let Some(encoded) = header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))
        else {
            return Err(bad_client(true));
        };
        let decoded = STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad_client(true))?;
        let (id, secret) = decoded.split_once(':').ok_or_else(|| bad_client(true))?;
        let (id, secret) = (
            form_decode(id).ok_or_else(|| bad_client(true))?,
            form_decode(secret).ok_or_else(|| bad_client(true))?,
        );
        // OAuth 2.1 §2.4: one authentication method per request.
        if form("client_secret").is_some() {
            return Err(invalid(
                "use one client authentication method, not two",
                true,
            ));
        }
        if form("client_id").is_some_and(|f| f != id) {
            return Err(invalid(
                "client_id does not match the Authorization header",
                true,
            ));
        }
        return Ok(UnverifiedClient {
            client_id: id,
            secret: Some(secret),
            method: AuthMethod::Basic,
        });
    }
    let client_id = form("client_id")
        .ok_or_else(|| bad_client(false))?
        .to_owned();
    Ok(match form("client_secret") {
        Some(secret) => UnverifiedClient {
            client_id,
            secret: Some(secret.to_owned()),
            method: AuthMethod::Post,
        },
        None => UnverifiedClient {
            client_id,
            secret: None,
            method: AuthMethod::None,
        },
    })
}

/// Checks presented credentials against the registered client.
pub fn authenticate(
    client: Option<Client>,
    presented: &UnverifiedClient,
) -> Result<Client, ClientAuthError> {
    let fail = ClientAuthError {
        error: OAuthError::new(ErrorCode::InvalidClient, "client authentication failed"),
        used_basic: presented.method == AuthMethod::Basic,
    };
    let Some(client) = client else {
        return Err(fail);
    };
    let ok = match (&presented.secret, client.is_public) {
        // A public client proves nothing but its id; PKCE binds its codes.
        (None, true) => true,
        (Some(secret), false) => client.verify_secret(secret),
        // A confidential client without its secret, or a public client waving one.
        _ => false,
    };
    if ok { Ok(client) } else { Err(fail) }
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
}

/// A failure of the grant itself (as opposed to client authentication).
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// An OAuth error for the client.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// Database trouble.
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    /// Signing trouble.
    #[error(transparent)]
    Sign(#[from] crate::keys::keyring::SignError),
}

fn invalid_grant(description: &'static str) -> GrantError {
    GrantError::OAuth(OAuthError::new(ErrorCode::InvalidGrant, description))
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

enum Outcome {
    Issued(TokenResponse),
    Refused(&'static str),
    Reused { user_id: uuid::Uuid },
}

/// Exchanges an authorization code (RFC 6749 §4.1.3) for tokens, for an authenticated client.
#[allow(
    clippy::too_many_lines,
    reason = "one transaction, read top to bottom, is the point"
)]
pub async fn exchange_code(
    conn: &mut AsyncPgConnection,
    keys: &KeyRing,
    settings: IssuerSettings<'_>,
    client: &Client,
    params: &Params,
    ip: Option<ipnet::IpNet>,
    now: OffsetDateTime,
) -> Result<TokenResponse, GrantError> {
    let form = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization_code grant",
        )
        .into());
    }
    let code = form("code").ok_or(OAuthError::new(
        ErrorCode::InvalidRequest,
        "code is required",
    ))?;
    let redirect_uri = form("redirect_uri").ok_or(OAuthError::new(
        ErrorCode::InvalidRequest,
        "redirect_uri is required",
    ))?;
    let verifier = form("code_verifier").ok_or(OAuthError::new(
        ErrorCode::InvalidRequest,
        "code_verifier is required (PKCE)",
    ))?;
    let presented = TokenHash::of(code);

    let outcome = conn
        .transaction(async |conn| {
            let Some(row) = codes::find_for_update(conn, &presented).await? else {
                return Ok::<_, GrantError>(Outcome::Refused("the code is invalid"));
            };
            // Another client's code: refuse without touching it, so a thief cannot burn it.
            if row.client_id != client.id {
                return Ok(Outcome::Refused("the code was issued to another client"));
            }
            if row.used_at.is_some() {
                // RFC 6749 §4.1.2: a reused code may have been stolen; revoke what it issued.
                if let (Some(jti), Some(exp)) = (row.access_token_jti, row.access_token_expires_at)
                {
                    codes::revoke_access_token(conn, jti, exp, "authorization code reused", now)
                        .await?;
                }
                let mut event = NewAuditEvent::new("code.reused", audit::ACTOR_SYSTEM, now)
                    .details(
                        json!({ "first_used_at": row.used_at.map(OffsetDateTime::unix_timestamp) }),
                    );
                event = event.user(row.user_id).client(&client.id).ip(ip);
                audit::insert(conn, &event).await?;
                return Ok(Outcome::Reused {
                    user_id: row.user_id,
                });
            }
            if row.expires_at <= now {
                return Ok(Outcome::Refused("the code has expired"));
            }
            // From here the right client presented it: whatever happens, it is spent.
            if row.redirect_uri != redirect_uri {
                codes::update_used(conn, &row.code_hash, now, None).await?;
                return Ok(Outcome::Refused(
                    "redirect_uri does not match the authorization request",
                ));
            }
            let challenge = CodeChallenge::from_stored(&row.code_challenge)
                .map_err(|_| invalid_grant("the code is invalid"))?;
            if challenge.verify(verifier).is_err() {
                codes::update_used(conn, &row.code_hash, now, None).await?;
                return Ok(Outcome::Refused(
                    "code_verifier does not match the code_challenge",
                ));
            }
            let Some(user) = users::find(conn, row.user_id)
                .await?
                .filter(|u| !u.is_disabled())
            else {
                codes::update_used(conn, &row.code_hash, now, None).await?;
                return Ok(Outcome::Refused("the user can no longer sign in"));
            };

            let scopes = Scopes::from_stored(&row.scopes);
            let sub = user.id.to_string();
            let access = jwt::issue_access_token(
                keys,
                &AccessGrant {
                    issuer: settings.issuer,
                    sub: &sub,
                    client_id: &client.id,
                    scopes: &scopes,
                    audiences: &row.audiences,
                    auth_time: Some(row.auth_time),
                    roles: &user.roles,
                },
                settings.access_ttl,
                now,
            )?;
            let id_token = if scopes.contains(scope::OPENID) {
                let profile =
                    ProfileClaims::for_scopes(&scopes, &user.username, user.email.as_deref());
                let claims = IdTokenClaims {
                    iss: settings.issuer,
                    sub: &sub,
                    aud: &client.id,
                    exp: (now + settings.id_ttl).unix_timestamp(),
                    iat: now.unix_timestamp(),
                    auth_time: row.auth_time.unix_timestamp(),
                    nonce: row.nonce.as_deref(),
                    at_hash: jwt::at_hash(&access.token),
                    sid: &row.sid,
                    preferred_username: profile.preferred_username,
                    name: profile.name,
                    email: profile.email,
                    email_verified: profile.email_verified,
                };
                Some(keys.sign(jwt::ID_TOKEN_TYP, &claims, now)?)
            } else {
                None
            };
            codes::update_used(
                conn,
                &row.code_hash,
                now,
                Some((access.jti, access.expires_at)),
            )
            .await?;
            Ok(Outcome::Issued(TokenResponse {
                access_token: access.token,
                token_type: "Bearer",
                expires_in: settings.access_ttl.whole_seconds(),
                scope: scopes.to_string(),
                id_token,
            }))
        })
        .await?;

    match outcome {
        Outcome::Issued(response) => Ok(response),
        Outcome::Refused(description) => Err(invalid_grant(description)),
        Outcome::Reused { user_id } => {
            tracing::warn!(client_id = %client.id, %user_id, "authorization code reused; issued tokens revoked");
            Err(invalid_grant("the code was already used"))
        }
    }
}

/// Loads the client named in the credentials.
pub async fn find_client(
    conn: &mut AsyncPgConnection,
    presented: &UnverifiedClient,
) -> diesel::QueryResult<Option<Client>> {
    clients::find(conn, &presented.client_id).await
}
