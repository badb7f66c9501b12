//! The token endpoint's rules: client authentication (RFC 6749 §2.3) and the authorization code
//! grant (§4.1.3), with PKCE and single use.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::audit::{self, NewAuditEvent};
use crate::clients::{Client, GrantType};
use crate::keys::keyring::KeyRing;
use crate::oauth::authorize::Params;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::pkce::CodeChallenge;
use crate::scope::{self, Scopes};
use crate::tokens::jwt::{self, AccessGrant, IdTokenClaims, ProfileClaims};
use crate::tokens::opaque::TokenHash;
use crate::tokens::refresh::{self, RefreshPolicy};
use crate::tokens::{codes, revoked};
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
        // RFC 9110 §11.1: the scheme name is case-insensitive.
        let Some(encoded) = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, rest)| rest)
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
    /// When the client may refresh and `offline_access` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
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
    /// Password hashing is saturated (password grant): 503.
    #[error("busy")]
    Busy,
    /// Anything else.
    #[error(transparent)]
    Internal(anyhow::Error),
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

/// What every grant needs besides the connection and the client.
#[derive(Clone, Copy, Debug)]
pub struct GrantContext<'a> {
    /// The in-memory signer.
    pub keys: &'a KeyRing,
    /// Issuer and lifetimes.
    pub settings: IssuerSettings<'a>,
    /// Refresh-token rules.
    pub refresh: &'a RefreshPolicy,
    /// The caller's address, for the audit trail.
    pub ip: Option<ipnet::IpNet>,
    /// Now.
    pub now: OffsetDateTime,
}

/// The person and authorization tokens are issued for.
struct Authorization<'a> {
    user: &'a users::User,
    scopes: &'a Scopes,
    audiences: &'a [String],
    auth_time: OffsetDateTime,
    sid: &'a str,
    nonce: Option<&'a str>,
}

/// Signs the access token, the ID token (with `openid`) and starts a refresh family (when the
/// client may refresh and `offline_access` was granted), for a code or a password grant.
async fn issue_for_user(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    client: &Client,
    auth: &Authorization<'_>,
) -> Result<(TokenResponse, uuid::Uuid, OffsetDateTime), GrantError> {
    let settings = ctx.settings;
    let now = ctx.now;
    let sub = auth.user.id.to_string();
    let access = jwt::issue_access_token(
        ctx.keys,
        &AccessGrant {
            issuer: settings.issuer,
            sub: &sub,
            client_id: &client.id,
            scopes: auth.scopes,
            audiences: auth.audiences,
            auth_time: Some(auth.auth_time),
            roles: &auth.user.roles,
        },
        settings.access_ttl,
        now,
    )?;
    let id_token = if auth.scopes.contains(scope::OPENID) {
        let profile =
            ProfileClaims::for_scopes(auth.scopes, &auth.user.username, auth.user.email.as_deref());
        let claims = IdTokenClaims {
            iss: settings.issuer,
            sub: &sub,
            aud: &client.id,
            exp: (now + settings.id_ttl).unix_timestamp(),
            iat: now.unix_timestamp(),
            auth_time: auth.auth_time.unix_timestamp(),
            nonce: auth.nonce,
            at_hash: jwt::at_hash(&access.token),
            sid: auth.sid,
            preferred_username: profile.preferred_username,
            name: profile.name,
            email: profile.email,
            email_verified: profile.email_verified,
        };
        Some(ctx.keys.sign(jwt::ID_TOKEN_TYP, &claims, now)?)
    } else {
        None
    };
    let refresh_token = if client.allows_grant(GrantType::RefreshToken)
        && auth.scopes.contains(scope::OFFLINE_ACCESS)
    {
        let token = refresh::insert_family(
            conn,
            ctx.refresh,
            &refresh::NewFamily {
                client_id: &client.id,
                user_id: auth.user.id,
                scopes: auth.scopes,
                audiences: auth.audiences,
                auth_time: auth.auth_time,
                access_token: (access.jti, access.expires_at),
            },
            now,
        )
        .await?;
        Some(token.expose().to_owned())
    } else {
        None
    };
    Ok((
        TokenResponse {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: settings.access_ttl.whole_seconds(),
            scope: auth.scopes.to_string(),
            id_token,
            refresh_token,
        },
        access.jti,
        access.expires_at,
    ))
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
    ctx: &GrantContext<'_>,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, GrantError> {
    let (ip, now) = (ctx.ip, ctx.now);
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
                    revoked::insert(conn, jti, exp, "authorization code reused", now).await?;
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
            let (response, jti, expires_at) = issue_for_user(
                conn,
                ctx,
                client,
                &Authorization {
                    user: &user,
                    scopes: &scopes,
                    audiences: &row.audiences,
                    auth_time: row.auth_time,
                    sid: &row.sid,
                    nonce: row.nonce.as_deref(),
                },
            )
            .await?;
            codes::update_used(conn, &row.code_hash, now, Some((jti, expires_at))).await?;
            Ok(Outcome::Issued(response))
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

fn requested_scope(params: &Params) -> Result<Option<Scopes>, GrantError> {
    params
        .iter()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| Scopes::parse(v))
        .transpose()
        .map_err(|_| OAuthError::new(ErrorCode::InvalidScope, "scope is malformed").into())
}

enum RefreshOutcome {
    Issued(TokenResponse),
    Refused(&'static str),
    Reused,
}

/// The refresh grant (RFC 6749 §6) with rotation, reuse detection and the optional grace window.
#[allow(
    clippy::too_many_lines,
    reason = "one transaction under the family lock, read top to bottom"
)]
pub async fn refresh(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, GrantError> {
    if !client.allows_grant(GrantType::RefreshToken) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the refresh_token grant",
        )
        .into());
    }
    let presented = params
        .iter()
        .find(|(k, _)| k == "refresh_token")
        .map(|(_, v)| v.as_str())
        .ok_or(OAuthError::new(
            ErrorCode::InvalidRequest,
            "refresh_token is required",
        ))?;
    let requested = requested_scope(params)?;
    let hash = TokenHash::of(presented);
    let (now, policy) = (ctx.now, ctx.refresh);

    let outcome = conn
        .transaction(async |conn| {
            let Some(row) = refresh::find_token(conn, &hash).await? else {
                return Ok::<_, GrantError>(RefreshOutcome::Refused(
                    "the refresh token is invalid",
                ));
            };
            let Some(family) = refresh::lock_family(conn, row.family_id).await? else {
                return Ok(RefreshOutcome::Refused("the refresh token is invalid"));
            };
            // Another client presenting it learns nothing and harms nobody: no side effects.
            if family.client_id != client.id {
                return Ok(RefreshOutcome::Refused(
                    "the refresh token was issued to another client",
                ));
            }
            if family.revoked_at.is_some() {
                return Ok(RefreshOutcome::Refused("the refresh token was revoked"));
            }
            if family.absolute_expires_at <= now {
                return Ok(RefreshOutcome::Refused("the refresh token has expired"));
            }
            // Read again under the family lock: what we see now is what every racer sees.
            let row = refresh::find_token(conn, &hash)
                .await?
                .ok_or_else(|| invalid_grant("the refresh token is invalid"))?;
            let user = users::find(conn, family.user_id)
                .await?
                .filter(|u| !u.is_disabled());

            let (scopes, generation, successor, reused_grace) = if let Some(used_at) = row.used_at {
                // Presented again after rotation. Within the grace window, and only for the
                // immediate predecessor of a still-unused successor, answer with that same
                // successor: a client that lost the response retries without forking the family.
                let successor = policy.successor_of(presented);
                let in_window = policy.grace.is_some_and(|g| now - used_at <= g);
                let next = refresh::find_generation(conn, family.id, row.generation + 1).await?;
                let same = next.as_ref().is_some_and(|n| {
                    n.used_at.is_none()
                        && n.expires_at > now
                        && n.token_hash == successor.hash().as_bytes()
                });
                if !(in_window && same) {
                    refresh::revoke_family(conn, family.id, "refresh token reuse", now).await?;
                    let latest = next.map_or(row.generation, |n| n.generation);
                    let family_id = family.id.to_string();
                    audit::insert(
                        conn,
                        &NewAuditEvent::new("refresh.reused", audit::ACTOR_SYSTEM, now)
                            .subject(&family_id)
                            .user(family.user_id)
                            .client(&client.id)
                            .ip(ctx.ip)
                            .details(json!({
                                "replayed_generation": row.generation,
                                "latest_generation": latest,
                                "rotated_at": used_at.unix_timestamp(),
                            })),
                    )
                    .await?;
                    return Ok(RefreshOutcome::Reused);
                }
                let next = next.ok_or_else(|| invalid_grant("the refresh token is invalid"))?;
                (
                    Scopes::from_stored(&next.scopes),
                    next.generation,
                    successor,
                    true,
                )
            } else {
                if row.expires_at <= now {
                    return Ok(RefreshOutcome::Refused("the refresh token has expired"));
                }
                // Narrowing is allowed, widening never: the family's grant is the ceiling.
                let scopes = match &requested {
                    Some(r) if !r.is_subset(&Scopes::from_stored(&family.scopes)) => {
                        return Err(OAuthError::new(
                            ErrorCode::InvalidScope,
                            "scope exceeds what was originally granted",
                        )
                        .into());
                    }
                    Some(r) if !r.is_empty() => r.clone(),
                    _ => Scopes::from_stored(&row.scopes),
                };
                (
                    scopes,
                    row.generation + 1,
                    policy.successor_of(presented),
                    false,
                )
            };
            let Some(user) = user else {
                return Ok(RefreshOutcome::Refused("the user can no longer sign in"));
            };
            if !reused_grace {
                if !refresh::update_used(conn, &row.token_hash, now).await? {
                    return Ok(RefreshOutcome::Refused("the refresh token is invalid"));
                }
                let expires_at = policy.token_expiry(&family, now);
                refresh::insert_token(
                    conn, &family, &successor, generation, &scopes, expires_at, now,
                )
                .await?;
            }
            let sub = user.id.to_string();
            let access = jwt::issue_access_token(
                ctx.keys,
                &AccessGrant {
                    issuer: ctx.settings.issuer,
                    sub: &sub,
                    client_id: &client.id,
                    scopes: &scopes,
                    audiences: &family.audiences,
                    auth_time: Some(family.auth_time),
                    roles: &user.roles,
                },
                ctx.settings.access_ttl,
                now,
            )?;
            refresh::insert_access_token(conn, family.id, access.jti, access.expires_at).await?;
            Ok(RefreshOutcome::Issued(TokenResponse {
                access_token: access.token,
                token_type: "Bearer",
                expires_in: ctx.settings.access_ttl.whole_seconds(),
                scope: scopes.to_string(),
                id_token: None,
                refresh_token: Some(successor.expose().to_owned()),
            }))
        })
        .await?;
    match outcome {
        RefreshOutcome::Issued(r) => Ok(r),
        RefreshOutcome::Refused(d) => Err(invalid_grant(d)),
        RefreshOutcome::Reused => {
            tracing::warn!(client_id = %client.id, "refresh token reuse: family revoked");
            Err(invalid_grant("the refresh token was already used"))
        }
    }
}

/// The client credentials grant (RFC 6749 §4.4): a token about the client itself. No database
/// write; the client lookup before this was the only read.
pub fn client_credentials(
    ctx: &GrantContext<'_>,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, GrantError> {
    if client.is_public || !client.allows_grant(GrantType::ClientCredentials) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the client_credentials grant",
        )
        .into());
    }
    // No person is involved: identity scopes and refresh tokens make no sense here.
    let person_scopes = [
        scope::OPENID,
        scope::PROFILE,
        scope::EMAIL,
        scope::OFFLINE_ACCESS,
    ];
    let allowed = client.allowed_scopes();
    let scopes = match requested_scope(params)? {
        Some(r) if !r.is_empty() => {
            if !r.is_subset(&allowed) || person_scopes.iter().any(|s| r.contains(s)) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "scope includes values this client may not request",
                )
                .into());
            }
            r
        }
        _ => Scopes::parse(
            &allowed
                .iter()
                .filter(|s| !person_scopes.contains(s))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .unwrap_or_default(),
    };
    let access = jwt::issue_access_token(
        ctx.keys,
        &AccessGrant {
            issuer: ctx.settings.issuer,
            sub: &client.id,
            client_id: &client.id,
            scopes: &scopes,
            audiences: &client.audiences,
            auth_time: None,
            roles: &[],
        },
        ctx.settings.access_ttl,
        ctx.now,
    )?;
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: ctx.settings.access_ttl.whole_seconds(),
        scope: scopes.to_string(),
        id_token: None,
        refresh_token: None,
    })
}

/// What the password grant needs to check a password the way the sign-in page does.
#[derive(Clone, Copy)]
#[allow(
    missing_debug_implementations,
    reason = "holds the pool, which has no Debug"
)]
pub struct PasswordCheck<'a> {
    /// The pool (no connection is held while hashing).
    pub pool: &'a crate::db::DbPool,
    /// The hasher.
    pub hasher: &'a crate::users::password::PasswordHasher,
    /// The lockout rules.
    pub throttle: crate::users::throttle::ThrottlePolicy,
}

/// The password grant (RFC 6749 §4.3), for clients registered for it as a migration path: same
/// throttle, lockout and generic errors as the sign-in page.
pub async fn password(
    check: PasswordCheck<'_>,
    ctx: &GrantContext<'_>,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, GrantError> {
    use crate::users::sign_in::{Device, SignInError, sign_in};
    if !client.allows_grant(GrantType::Password) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the password grant",
        )
        .into());
    }
    let form = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(username), Some(password)) = (form("username"), form("password")) else {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "username and password are required",
        )
        .into());
    };
    let scopes = requested_scope(params)?
        .filter(|s| !s.is_empty())
        .ok_or(OAuthError::new(
            ErrorCode::InvalidScope,
            "scope is required",
        ))?;
    if !scopes.is_subset(&client.allowed_scopes()) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "scope includes values this client may not request",
        )
        .into());
    }
    let signed_in = match sign_in(
        check.pool,
        check.hasher,
        check.throttle,
        username,
        password,
        Device::Api,
        ctx.now,
    )
    .await
    {
        Ok(s) => s,
        Err(SignInError::WrongCredentials | SignInError::Disabled) => {
            return Err(invalid_grant("wrong username or password"));
        }
        Err(SignInError::Locked { .. }) => {
            return Err(invalid_grant("too many failed attempts; try again later"));
        }
        Err(SignInError::Busy) => return Err(GrantError::Busy),
        Err(SignInError::Db(e)) => return Err(GrantError::Internal(e.into())),
        Err(SignInError::Internal(e)) => return Err(GrantError::Internal(e)),
    };
    let mut conn = crate::db::connect(check.pool)
        .await
        .map_err(|e| GrantError::Internal(e.into()))?;
    let sid = uuid::Uuid::new_v4().to_string();
    let (response, _, _) = issue_for_user(
        &mut conn,
        ctx,
        client,
        &Authorization {
            user: &signed_in.user,
            scopes: &scopes,
            audiences: &client.audiences,
            auth_time: ctx.now,
            sid: &sid,
            nonce: None,
        },
    )
    .await?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> String {
        // RFC 6749 §2.3.1: form-urlencode each part, then Basic.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "BASIC {}",
            STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
        )
    }

    #[test]
    fn basic_credentials_are_form_decoded_and_the_scheme_is_case_insensitive() {
        let header = basic("my app", "s3cr:t+/=");
        let parsed = parse_client_auth(Some(&header), &[]).expect("valid");
        assert_eq!(parsed.client_id, "my app");
        assert_eq!(parsed.secret.as_deref(), Some("s3cr:t+/="));
        assert_eq!(parsed.method, AuthMethod::Basic);
    }

    #[test]
    fn two_methods_at_once_or_a_mismatched_id_are_invalid_requests() {
        let header = basic("a", "b");
        let both = [("client_secret".to_owned(), "b".to_owned())];
        let err = parse_client_auth(Some(&header), &both).expect_err("two methods");
        assert_eq!(err.error.code, ErrorCode::InvalidRequest);
        let other = [("client_id".to_owned(), "z".to_owned())];
        let err = parse_client_auth(Some(&header), &other).expect_err("mismatch");
        assert_eq!(err.error.code, ErrorCode::InvalidRequest);
        let err = parse_client_auth(Some("Bearer xyz"), &[]).expect_err("not basic");
        assert_eq!(err.error.code, ErrorCode::InvalidClient);
        assert!(err.used_basic);
    }

    #[test]
    fn debug_of_presented_credentials_hides_the_secret() {
        let parsed = parse_client_auth(Some(&basic("a", "kwcs_topsecret")), &[]).expect("valid");
        assert!(!format!("{parsed:?}").contains("topsecret"));
    }
}
