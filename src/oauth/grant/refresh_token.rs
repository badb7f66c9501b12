//! The refresh token grant (RFC 6749 §6) with rotation on every use, reuse detection that revokes
//! the whole family (RFC 9700 §4.14.2), and the optional grace window for a lost response.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;

use crate::audit::{self, NewAuditEvent};
use crate::auth_methods::AuthMethods;
use crate::clients::Client;
use crate::db::DbPool;
use crate::error::AppError;
use crate::metrics::RefreshOutcome;
use crate::oauth::error::OAuthError;
use crate::oauth::grant::{
    GrantContext, GrantError, Person, TokenResponse, invalid_grant, requested_scope,
};
use crate::oauth::params::Params;
use crate::scope::Scopes;
use crate::tokens::opaque::PlainToken;
use crate::tokens::refresh::{self, Family, NotLive, Presented, Recognised};
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
    successor: PlainToken,
    /// The successor already exists: a retry within the grace window gets it again.
    is_retry: bool,
}

/// Rotates a refresh token: a new access token and a new refresh token, the old one spent.
pub async fn refresh(
    pool: &DbPool,
    ctx: &GrantContext<'_>,
    client: &Client,
    request: &RefreshRequest,
) -> Result<TokenResponse, GrantError> {
    // What the token names: by its MAC (no query), or a legacy token by its row. A forged or
    // unknown token is refused before any connection is taken.
    let recognised = ctx.refresh.recognise(&request.refresh_token);
    if let Recognised::Current(presented) = recognised
        && let Some(response) = rotate_in_one_statement(ctx, client, request, presented).await?
    {
        ctx.metrics.refresh(RefreshOutcome::Rotated);
        return Ok(response);
    }
    let invalid = || {
        ctx.metrics.refresh(RefreshOutcome::Invalid);
        invalid_grant(INVALID)
    };
    if matches!(recognised, Recognised::Foreign) {
        return Err(invalid());
    }
    let mut conn = crate::db::connect(pool).await?;
    let presented = match recognised {
        Recognised::Current(presented) => Some(presented),
        Recognised::Legacy | Recognised::Foreign => {
            refresh::find_legacy(&mut conn, &request.refresh_token).await?
        }
    };
    let Some(presented) = presented else {
        return Err(invalid());
    };
    let outcome = conn
        .transaction(async |conn| rotate(conn, ctx, client, request, &presented).await)
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

/// The common case, the current token of a live family, in one statement shared with the
/// rotations waiting at the same moment (see [`refresh::rotate_unused`] and
/// [`crate::tokens::rotations`]), for a `kwrf_` token (a legacy one goes to [`rotate`] directly).
/// `None` means nothing was written for it: every other case goes through [`rotate`], which
/// tells a refusal from reuse, a grace retry or a rotation under the family lock.
async fn rotate_in_one_statement(
    ctx: &GrantContext<'_>,
    client: &Client,
    request: &RefreshRequest,
    presented: Presented,
) -> Result<Option<TokenResponse>, GrantError> {
    // The statement commits the rotation before the signature: without a key to sign with,
    // spending the token would leave the client with nothing (and its retry looking like reuse).
    ctx.keys.can_sign(ctx.now)?;
    let rotation = refresh::Rotation {
        family_id: presented.family_id,
        generation: presented.generation,
        client_id: client.id.clone(),
        scopes: request.scope.clone(),
        idle_expires_at: ctx.now + ctx.refresh.idle,
        now: ctx.now,
    };
    let answer = ctx
        .rotations
        .rotate(rotation)
        .await
        .map_err(AppError::from)?;
    let Some(rotated) = answer else {
        return Ok(None);
    };
    let successor = ctx
        .refresh
        .token_for(presented.family_id, rotated.generation);
    let scopes = Scopes::from_stored(&rotated.scopes);
    let methods = AuthMethods::from_stored(&rotated.amr);
    let person = Person {
        roles: &rotated.roles,
        credential_version: rotated.credential_version,
        auth_time: rotated.auth_time,
        methods: &methods,
        family: Some(presented.family_id),
    };
    let sub = rotated.sub.clone();
    let access = ctx.access_token(client, &sub, &scopes, &rotated.audiences, Some(person))?;
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
    presented: &Presented,
) -> Result<Outcome, GrantError> {
    let Some(family) = refresh::lock_family(conn, presented.family_id).await? else {
        return Ok(Outcome::Refused(INVALID));
    };
    // Not locked: the family lock already orders this against a cut-off, which bumps the
    // user's version and then revokes each family under that lock. Locking the user here as
    // well (after the family) deadlocked with it.
    let user = users::find(conn, family.user_id)
        .await?
        .filter(|u| !u.is_disabled());
    let scope = request.scope.as_ref();
    let generation = presented.generation;
    let verdict = refresh::check_live(
        &family,
        generation,
        &client.id,
        scope,
        user.is_some(),
        ctx.now,
    );
    let rotation = match verdict {
        Ok(()) => Rotation {
            // Narrowing is allowed, widening never: the family's grant is the ceiling.
            scopes: scope
                .cloned()
                .unwrap_or_else(|| Scopes::from_stored(&family.token_scopes)),
            successor: ctx.refresh.token_for(family.id, generation + 1),
            is_retry: false,
        },
        Err(NotLive::Used) => {
            let retry =
                retry_in_grace(conn, ctx, &family, presented, &request.refresh_token).await?;
            let Some(rotation) = retry else {
                revoke_after_reuse(conn, ctx, client, &family, generation).await?;
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
    if !rotation.is_retry {
        let expires_at = ctx.refresh.token_expiry(&family, ctx.now);
        let moved = refresh::advance(
            conn,
            family.id,
            generation,
            &rotation.scopes,
            expires_at,
            ctx.now,
        )
        .await?;
        if !moved {
            return Ok(Outcome::Refused(INVALID));
        }
    }
    respond(ctx, client, &family, &user, &rotation)
}

/// A token presented again after rotation gets the same successor only within the grace
/// window, only as the immediate predecessor of the current (so still unused) token: a client
/// that lost the response retries without forking the family. Anything else is reuse.
async fn retry_in_grace(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    family: &Family,
    presented: &Presented,
    token: &str,
) -> Result<Option<Rotation>, GrantError> {
    let in_window = ctx
        .refresh
        .grace
        .is_some_and(|g| ctx.now - family.rotated_at <= g);
    if !in_window
        || presented.generation + 1 != family.generation
        || family.token_expires_at <= ctx.now
    {
        return Ok(None);
    }
    // The current token: MAC'd, unless it was issued before tokens were (then it was derived
    // from its predecessor, and only the derivation matching its stored hash proves this).
    let current = refresh::find_legacy_generation(conn, family.id, family.generation).await?;
    let successor = match current {
        None => ctx.refresh.token_for(family.id, family.generation),
        Some(row) => {
            let derived = ctx.refresh.legacy_successor_of(token);
            if derived.hash() != row.token_hash {
                return Ok(None);
            }
            derived
        }
    };
    Ok(Some(Rotation {
        scopes: Scopes::from_stored(&family.token_scopes),
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
    replayed: i32,
) -> Result<(), GrantError> {
    refresh::revoke_family(conn, family.id, "refresh token reuse", ctx.now).await?;
    let family_id = family.id.to_string();
    let event = NewAuditEvent::new("refresh.reused", audit::ACTOR_SYSTEM, ctx.now)
        .subject(&family_id)
        .user(family.user_id)
        .client(&client.id)
        .ip(ctx.ip)
        .details(json!({
            "replayed_generation": replayed,
            "latest_generation": family.generation,
            "rotated_at": family.rotated_at.unix_timestamp(),
        }));
    audit::insert(conn, &event).await?;
    Ok(())
}

/// Signs the access token, naming the family in it (so revoking the family revokes it), and
/// answers with the successor.
fn respond(
    ctx: &GrantContext<'_>,
    client: &Client,
    family: &Family,
    user: &users::User,
    rotation: &Rotation,
) -> Result<Outcome, GrantError> {
    let sub = user.sub();
    let methods = AuthMethods::from_stored(&family.amr);
    let person = Person::of(user, (family.auth_time, &methods)).in_family(Some(family.id));
    let scopes = &rotation.scopes;
    let access = ctx.access_token(client, &sub, scopes, &family.audiences, Some(person))?;
    Ok(Outcome::Issued {
        response: TokenResponse {
            refresh_token: Some(rotation.successor.expose().to_owned()),
            ..TokenResponse::bearer(access, ctx.settings.access_ttl, &rotation.scopes)
        },
        grace: rotation.is_retry,
    })
}
