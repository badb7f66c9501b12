//! Token introspection (RFC 7662): what an authenticated client may learn about an access or a
//! refresh token. Unknown, expired, revoked and malformed tokens are all `{"active": false}`.

use diesel_async::AsyncPgConnection;
use serde::Serialize;
use time::OffsetDateTime;

use crate::clients::Client;
use crate::keys::keyring::KeyRing;
use crate::oauth::access::{self, Judged};
use crate::tokens::jwt::{AccessTokenClaims, Audience};
use crate::tokens::refresh::{self, RefreshPolicy};
use crate::users;

/// What tokens are checked with: the signing keys for access tokens, the refresh policy (its
/// MAC key) for refresh tokens.
#[derive(Clone, Copy, Debug)]
pub struct TokenKeys<'a> {
    /// The signing keys.
    pub ring: &'a KeyRing,
    /// Refresh tokens' MAC key and lifetimes.
    pub refresh: &'a RefreshPolicy,
}

/// Which kind to try first (RFC 7662 §2.1, RFC 7009 §2.1): a hint only, never a restriction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// `access_token`.
    Access,
    /// `refresh_token`.
    Refresh,
}

impl Hint {
    /// The hint for `token`: the caller's if given, else guessed from the token's shape.
    #[must_use]
    pub fn for_token(token: &str, hint: Option<&str>) -> Self {
        match hint {
            Some("refresh_token") => Self::Refresh,
            Some("access_token") => Self::Access,
            _ if refresh::looks_like_refresh_token(token) => Self::Refresh,
            _ => Self::Access,
        }
    }
}

/// An RFC 7662 §2.2 answer.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Introspection {
    /// Whether the token is live.
    pub active: bool,
    /// Granted scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client it was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The person's username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `Bearer` or `refresh_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// Expires at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Token id (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl Introspection {
    /// `{"active": false}`: all an inactive token gets.
    #[must_use]
    pub fn inactive() -> Self {
        Self::default()
    }
}

/// What `client` may learn about `token`.
pub async fn introspect(
    conn: &mut AsyncPgConnection,
    keys: TokenKeys<'_>,
    issuer: &str,
    client: &Client,
    token: &str,
    hint: Hint,
    now: OffsetDateTime,
) -> diesel::QueryResult<Introspection> {
    let (ring, policy) = (keys.ring, keys.refresh);
    let found = if hint == Hint::Refresh {
        match introspect_refresh(conn, policy, issuer, client, token, now).await? {
            Some(v) => Some(v),
            None => introspect_access(conn, ring, issuer, client, token, now).await?,
        }
    } else {
        match introspect_access(conn, ring, issuer, client, token, now).await? {
            Some(v) => Some(v),
            None => introspect_refresh(conn, policy, issuer, client, token, now).await?,
        }
    };
    Ok(found.unwrap_or_else(Introspection::inactive))
}

/// `None` when `token` is not one of our access tokens at all.
async fn introspect_access(
    conn: &mut AsyncPgConnection,
    keys: &KeyRing,
    issuer: &str,
    client: &Client,
    token: &str,
    now: OffsetDateTime,
) -> diesel::QueryResult<Option<Introspection>> {
    let live = match access::judge(conn, keys, issuer, token, now).await? {
        Judged::NotOurs => return Ok(None),
        Judged::Ended => return Ok(Some(Introspection::inactive())),
        Judged::Live(live) => live,
    };
    if !may_learn_about(client, &live.claims) {
        return Ok(Some(Introspection::inactive()));
    }
    Ok(Some(describe_access(
        live.claims,
        live.user.map(|u| u.username),
    )))
}

/// Only the token's own client, or a resource server it was minted for (the caller's id, or one
/// of the audiences the caller is registered with, is in `aud`), learns about an access token.
fn may_learn_about(caller: &Client, claims: &AccessTokenClaims) -> bool {
    claims.client_id == caller.id
        || claims.aud.contains(&caller.id)
        || caller.audiences.iter().any(|a| claims.aud.contains(a))
}

fn describe_access(claims: AccessTokenClaims, username: Option<String>) -> Introspection {
    Introspection {
        active: true,
        scope: Some(claims.scope),
        client_id: Some(claims.client_id),
        username,
        token_type: Some("Bearer"),
        exp: Some(claims.exp),
        iat: Some(claims.iat),
        sub: Some(claims.sub),
        aud: Some(claims.aud),
        iss: Some(claims.iss),
        jti: Some(claims.jti.to_string()),
    }
}

/// `None` when `token` is no refresh token we know.
async fn introspect_refresh(
    conn: &mut AsyncPgConnection,
    policy: &RefreshPolicy,
    issuer: &str,
    client: &Client,
    token: &str,
    now: OffsetDateTime,
) -> diesel::QueryResult<Option<Introspection>> {
    let Some(presented) = refresh::locate(conn, policy, token).await? else {
        return Ok(None);
    };
    let Some(family) = refresh::find_family(conn, presented.family_id).await? else {
        return Ok(None);
    };
    let user = users::find(conn, family.user_id)
        .await?
        .filter(|u| !u.is_disabled());
    // The grant's own rule: another client's token, or one the grant would refuse, is inactive.
    let generation = presented.generation;
    let live = refresh::check_live(&family, generation, &client.id, None, user.is_some(), now);
    let (Ok(()), Some(user)) = (live, user) else {
        return Ok(Some(Introspection::inactive()));
    };
    let sub = user.sub();
    Ok(Some(Introspection {
        active: true,
        scope: Some(family.token_scopes.join(" ")),
        client_id: Some(family.client_id),
        username: Some(user.username),
        token_type: Some("refresh_token"),
        exp: Some(family.token_expires_at.unix_timestamp()),
        iat: Some(family.rotated_at.unix_timestamp()),
        sub: Some(sub),
        aud: None,
        iss: Some(issuer.to_owned()),
        jti: None,
    }))
}
