//! The refresh token grant (RFC 6749 §6) with rotation on every use, reuse detection that revokes
//! the whole family (RFC 9700 §4.14.2), and the optional grace window for a lost response.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use time::OffsetDateTime;

use crate::audit::{self, NewAuditEvent};
use crate::auth_methods::AuthMethods;
use crate::clients::Client;
use crate::metrics::RefreshOutcome;
use crate::oauth::error::OAuthError;
use crate::oauth::grant::{
    GrantContext, GrantError, Person, TokenResponse, invalid_grant, requested_scope,
};
use crate::oauth::params::Params;
use crate::scope::Scopes;
use crate::tokens::opaque::{PlainToken, TokenHash};
use crate::tokens::refresh::{self, Family, NotLive, RefreshTokenRow};
use crate::users;

/// A refresh, as sent.
pub struct RefreshRequest {
    refresh_token: String,
    scope: Option<Scopes>,
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRequest")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl RefreshRequest {
    /// Reads `refresh_token` and the optional narrower `scope` (RFC 6749 §6).
    pub fn parse(params: &Params) -> Result<Self, OAuthError> {
        Ok(Self {
            refresh_token: params
                .require("refresh_token", "refresh_token is required")?
                .to_owned(),
            scope: requested_scope(params)?,
        })
    }
}

/// How a refresh ended, decided under the family lock and committed either way.
enum Outcome {
    Issued {
        response: TokenResponse,
        /// The predecessor came back within the grace window.
        grace: bool,
    },
    Refused(&'static str),
    Reused,
}

const EXPIRED: &str = NotLive::Expired.description();
const INVALID: &str = "the refresh token is invalid";

/// The successor to hand out and what it carries.
struct Rotation {
    scopes: Scopes,
    generation: i32,
    successor: PlainToken,
    /// The successor already exists: a retry within the grace window gets it again.
    is_retry: bool,
}

/// Rotates a refresh token: a new access token and a new refresh token, the old one spent.
pub async fn refresh(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    client: &Client,
    request: &RefreshRequest,
) -> Result<TokenResponse, GrantError> {
    let hash = TokenHash::of(&request.refresh_token);
    if let Some(response) = rotate_in_one_statement(conn, ctx, client, request, &hash).await? {
        ctx.metrics.refresh(RefreshOutcome::Rotated);
        return Ok(response);
    }
    let outcome = conn
        .transaction(async |conn| rotate(conn, ctx, client, request, &hash).await)
        .await?;
    ctx.metrics.refresh(match &outcome {
        Outcome::Issued { grace: false, .. } => RefreshOutcome::Rotated,
        Outcome::Issued { grace: true, .. } => RefreshOutcome::Grace,
        Outcome::Refused(EXPIRED) => RefreshOutcome::Expired,
        Outcome::Refused(_) => RefreshOutcome::Invalid,
        Outcome::Reused => RefreshOutcome::ReuseRevoked,
    });
    match outcome {
        Outcome::Issued { response, .. } => Ok(response),
        Outcome::Refused(d) => Err(invalid_grant(d)),
        Outcome::Reused => {
            tracing::warn!("refresh token reuse: family revoked");
            Err(invalid_grant("the refresh token was already used"))
        }
    }
}

/// The common case, an unused live token, in one round trip (see [`refresh::rotate_unused`]).
/// `None` means nothing was written: every other case goes through [`rotate`], which tells a
/// refusal from reuse or a grace retry under the family lock.
async fn rotate_in_one_statement(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    client: &Client,
    request: &RefreshRequest,
    hash: &TokenHash,
) -> Result<Option<TokenResponse>, GrantError> {
    // The statement commits the rotation before the signature: without a key to sign with,
    // spending the token would leave the client with nothing (and its retry looking like reuse).
    ctx.keys.can_sign(ctx.now)?;
    let successor = ctx.refresh.successor_of(&request.refresh_token);
    let access_id = ctx.access_token_id();
    let rotation = refresh::Rotation {
        presented: hash,
        client_id: &client.id,
        successor: &successor.hash(),
        scopes: request.scope.as_ref(),
        idle_expires_at: ctx.now + ctx.refresh.idle,
        access_token: access_id,
        now: ctx.now,
    };
    let Some(rotated) = refresh::rotate_unused(conn, &rotation).await? else {
        return Ok(None);
    };
    let scopes = Scopes::from_stored(&rotated.scopes);
    let methods = AuthMethods::from_stored(&rotated.amr);
    let person = Person {
        roles: &rotated.roles,
        credential_version: rotated.credential_version,
        auth_time: rotated.auth_time,
        methods: &methods,
    };
    let sub = rotated.sub.clone();
    let access = ctx.access_token_as(
        access_id,
        client,
        &sub,
        &scopes,
        &rotated.audiences,
        Some(person),
    )?;
    Ok(Some(TokenResponse {
        refresh_token: Some(successor.expose().to_owned()),
        ..TokenResponse::bearer(access, ctx.settings.access_ttl, &scopes)
    }))
}

/// Every step under the family's row lock: what this transaction sees, every racer sees.
async fn rotate(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    client: &Client,
    request: &RefreshRequest,
    hash: &TokenHash,
) -> Result<Outcome, GrantError> {
    let Some(family) = lock_family_of(conn, hash).await? else {
        return Ok(Outcome::Refused(INVALID));
    };
    // Read again under the family lock: a racer may have rotated it a moment ago.
    let row = refresh::find_token(conn, hash)
        .await?
        .ok_or_else(|| invalid_grant(INVALID))?;
    // Not locked: the family lock already orders this against a cut-off, which bumps the
    // user's version and then revokes each family under that lock. Locking the user here as
    // well (after the family) deadlocked with it.
    let user = users::find(conn, family.user_id)
        .await?
        .filter(|u| !u.is_disabled());
    let scope = request.scope.as_ref();
    let verdict = refresh::check_live(&family, &row, &client.id, scope, user.is_some(), ctx.now);
    let rotation = match verdict {
        Ok(()) => Rotation {
            // Narrowing is allowed, widening never: the family's grant is the ceiling.
            scopes: scope
                .cloned()
                .unwrap_or_else(|| Scopes::from_stored(&row.scopes)),
            generation: row.generation + 1,
            successor: ctx.refresh.successor_of(&request.refresh_token),
            is_retry: false,
        },
        Err(NotLive::Used) => {
            let used_at = row.used_at.unwrap_or(ctx.now);
            let retry =
                retry_in_grace(conn, ctx, &family, &row, &request.refresh_token, used_at).await?;
            let Some(rotation) = retry else {
                revoke_after_reuse(conn, ctx, client, &family, &row, used_at).await?;
                return Ok(Outcome::Reused);
            };
            rotation
        }
        Err(NotLive::WiderScope) => {
            return Err(OAuthError::invalid_scope(NotLive::WiderScope.description()).into());
        }
        // Another client presenting it learns nothing and harms nobody: no side effects.
        Err(refusal) => return Ok(Outcome::Refused(refusal.description())),
    };
    let Some(user) = user else {
        return Ok(Outcome::Refused(NotLive::UserDisabled.description()));
    };
    if !rotation.is_retry && !spend(conn, ctx, &family, &row, &rotation).await? {
        return Ok(Outcome::Refused(INVALID));
    }
    respond(conn, ctx, client, &family, &user, rotation).await
}

/// Spends the presented token and stores its successor; false when a racer spent it first
/// (the conditional update decides between racers that both read the token unused).
async fn spend(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    family: &Family,
    row: &RefreshTokenRow,
    rotation: &Rotation,
) -> Result<bool, GrantError> {
    if !refresh::update_used(conn, &row.token_hash, ctx.now).await? {
        return Ok(false);
    }
    let expires_at = ctx.refresh.token_expiry(family, ctx.now);
    let r = rotation;
    refresh::insert_token(
        conn,
        family,
        &r.successor,
        r.generation,
        &r.scopes,
        expires_at,
        ctx.now,
    )
    .await?;
    Ok(true)
}

/// The family of the presented token, locked.
async fn lock_family_of(
    conn: &mut AsyncPgConnection,
    hash: &TokenHash,
) -> Result<Option<Family>, GrantError> {
    let Some(row) = refresh::find_token(conn, hash).await? else {
        return Ok(None);
    };
    Ok(refresh::lock_family(conn, row.family_id).await?)
}

/// A token presented again after rotation gets the same successor only within the grace
/// window, only as the immediate predecessor of a still-unused successor: a client that lost
/// the response retries without forking the family. Anything else is reuse.
async fn retry_in_grace(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    family: &Family,
    row: &RefreshTokenRow,
    presented: &str,
    used_at: OffsetDateTime,
) -> Result<Option<Rotation>, GrantError> {
    if ctx.refresh.grace.is_none_or(|g| ctx.now - used_at > g) {
        return Ok(None);
    }
    let successor = ctx.refresh.successor_of(presented);
    let next = refresh::find_generation(conn, family.id, row.generation + 1).await?;
    Ok(next
        .filter(|n| {
            n.used_at.is_none() && n.expires_at > ctx.now && n.token_hash == successor.hash()
        })
        .map(|n| Rotation {
            scopes: Scopes::from_stored(&n.scopes),
            generation: n.generation,
            successor,
            is_retry: true,
        }))
}

/// Reuse: someone holds a token that was already rotated, so the whole family ends.
async fn revoke_after_reuse(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    client: &Client,
    family: &Family,
    row: &RefreshTokenRow,
    used_at: OffsetDateTime,
) -> Result<(), GrantError> {
    refresh::revoke_family(conn, family.id, "refresh token reuse", ctx.now).await?;
    let latest = refresh::find_generation(conn, family.id, row.generation + 1)
        .await?
        .map_or(row.generation, |n| n.generation);
    let family_id = family.id.to_string();
    let event = NewAuditEvent::new("refresh.reused", audit::ACTOR_SYSTEM, ctx.now)
        .subject(&family_id)
        .user(family.user_id)
        .client(&client.id)
        .ip(ctx.ip)
        .details(json!({
            "replayed_generation": row.generation,
            "latest_generation": latest,
            "rotated_at": used_at.unix_timestamp(),
        }));
    audit::insert(conn, &event).await?;
    Ok(())
}

/// Signs the access token, records it in the family (so revoking the family revokes it), and
/// answers with the successor.
async fn respond(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    client: &Client,
    family: &Family,
    user: &users::User,
    rotation: Rotation,
) -> Result<Outcome, GrantError> {
    let sub = user.sub();
    let methods = AuthMethods::from_stored(&family.amr);
    let access = ctx.access_token(
        client,
        &sub,
        &rotation.scopes,
        &family.audiences,
        Some(Person::of(user, (family.auth_time, &methods))),
    )?;
    refresh::insert_access_token(conn, family.id, access.jti, access.expires_at).await?;
    Ok(Outcome::Issued {
        response: TokenResponse {
            refresh_token: Some(rotation.successor.expose().to_owned()),
            ..TokenResponse::bearer(access, ctx.settings.access_ttl, &rotation.scopes)
        },
        grace: rotation.is_retry,
    })
}
