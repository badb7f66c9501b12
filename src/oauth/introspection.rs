//! Token introspection (RFC 7662) and revocation (RFC 7009) for access and refresh tokens.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::audit::{self, NewAuditEvent};
use crate::clients::Client;
use crate::keys::keyring::KeyRing;
use crate::tokens::jwt::ACCESS_TOKEN_TYP;
use crate::tokens::opaque::TokenHash;
use crate::tokens::refresh::{self, REFRESH_TOKEN_PREFIX};
use crate::tokens::revoked;
use crate::users;

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
            _ if token.starts_with(REFRESH_TOKEN_PREFIX) => Self::Refresh,
            _ => Self::Access,
        }
    }
}

fn inactive() -> Value {
    json!({ "active": false })
}

async fn introspect_access(
    conn: &mut AsyncPgConnection,
    keys: &KeyRing,
    issuer: &str,
    token: &str,
    now: OffsetDateTime,
) -> diesel::QueryResult<Option<Value>> {
    let Ok(verified) = keys.verify(token, issuer, now) else {
        return Ok(None);
    };
    if verified.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
        return Ok(None);
    }
    let claims = verified.claims;
    let Some(jti) = claims
        .get("jti")
        .and_then(Value::as_str)
        .and_then(|j| uuid::Uuid::parse_str(j).ok())
    else {
        return Ok(None);
    };
    if revoked::is_revoked(conn, jti).await? {
        return Ok(Some(inactive()));
    }
    let mut out = Map::new();
    out.insert("active".into(), json!(true));
    // A user's token is only as alive as the user; a client's own token has a client id as sub.
    if let Some(user_id) = claims
        .get("sub")
        .and_then(Value::as_str)
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
    {
        match users::find(conn, user_id)
            .await?
            .filter(|u| !u.is_disabled())
        {
            Some(user) => {
                out.insert("username".into(), json!(user.username));
            }
            None => return Ok(Some(inactive())),
        }
    }
    for name in [
        "scope",
        "client_id",
        "sub",
        "exp",
        "iat",
        "iss",
        "aud",
        "jti",
    ] {
        if let Some(v) = claims.get(name) {
            out.insert(name.into(), v.clone());
        }
    }
    out.insert("token_type".into(), json!("Bearer"));
    Ok(Some(Value::Object(out)))
}

async fn introspect_refresh(
    conn: &mut AsyncPgConnection,
    issuer: &str,
    client: &Client,
    token: &str,
    now: OffsetDateTime,
) -> diesel::QueryResult<Option<Value>> {
    let Some(row) = refresh::find_token(conn, &TokenHash::of(token)).await? else {
        return Ok(None);
    };
    let Some(family) = refresh::find_family(conn, row.family_id).await? else {
        return Ok(None);
    };
    // A refresh token is its client's business only.
    if family.client_id != client.id {
        return Ok(Some(inactive()));
    }
    let live = row.used_at.is_none()
        && row.expires_at > now
        && family.revoked_at.is_none()
        && family.absolute_expires_at > now;
    let user = users::find(conn, family.user_id)
        .await?
        .filter(|u| !u.is_disabled());
    let (true, Some(user)) = (live, user) else {
        return Ok(Some(inactive()));
    };
    Ok(Some(json!({
        "active": true,
        "scope": row.scopes.join(" "),
        "client_id": family.client_id,
        "sub": user.id.to_string(),
        "username": user.username,
        "token_type": "refresh_token",
        "exp": row.expires_at.unix_timestamp(),
        "iat": row.created_at.unix_timestamp(),
        "iss": issuer,
    })))
}

/// RFC 7662 §2.2: what an authenticated client may learn about `token`. Unknown, expired,
/// revoked and malformed tokens are all `{"active": false}`.
pub async fn introspect(
    conn: &mut AsyncPgConnection,
    keys: &KeyRing,
    issuer: &str,
    client: &Client,
    token: &str,
    hint: Hint,
    now: OffsetDateTime,
) -> diesel::QueryResult<Value> {
    let found = if hint == Hint::Refresh {
        match introspect_refresh(conn, issuer, client, token, now).await? {
            Some(v) => Some(v),
            None => introspect_access(conn, keys, issuer, token, now).await?,
        }
    } else {
        match introspect_access(conn, keys, issuer, token, now).await? {
            Some(v) => Some(v),
            None => introspect_refresh(conn, issuer, client, token, now).await?,
        }
    };
    Ok(found.unwrap_or_else(inactive))
}

/// RFC 7009 §2.1: revokes `token` if `client` owns it; answers nothing either way, so a client
/// cannot probe other clients' tokens.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    keys: &KeyRing,
    issuer: &str,
    client: &Client,
    token: &str,
    ip: Option<ipnet::IpNet>,
    now: OffsetDateTime,
) -> diesel::QueryResult<()> {
    // A refresh token revokes its whole family, under the family lock (a racing refresh either
    // committed first, and its access token is revoked here, or sees the family revoked).
    if let Some(row) = refresh::find_token(conn, &TokenHash::of(token)).await? {
        let client_id = client.id.clone();
        return conn
            .transaction(async |conn| {
                let Some(family) = refresh::lock_family(conn, row.family_id).await? else {
                    return Ok(());
                };
                if family.client_id != client_id {
                    return Ok(());
                }
                if refresh::revoke_family(conn, family.id, "revoked by the client", now).await? {
                    let subject = family.id.to_string();
                    audit::insert(
                        conn,
                        &NewAuditEvent::new("family.revoked", audit::ACTOR_SYSTEM, now)
                            .subject(&subject)
                            .user(family.user_id)
                            .client(&client_id)
                            .ip(ip)
                            .details(json!({ "reason": "revoked by the client" })),
                    )
                    .await?;
                }
                Ok(())
            })
            .await;
    }
    // An access token is recorded as revoked until it expires. Expired ones need nothing.
    let Ok(verified) = keys.verify(token, issuer, now) else {
        return Ok(());
    };
    let claims = &verified.claims;
    if verified.typ.as_deref() != Some(ACCESS_TOKEN_TYP)
        || claims.get("client_id").and_then(Value::as_str) != Some(client.id.as_str())
    {
        return Ok(());
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .and_then(|j| uuid::Uuid::parse_str(j).ok());
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok());
    if let (Some(jti), Some(exp)) = (jti, exp) {
        revoked::insert(conn, jti, exp, "revoked by the client", now).await?;
    }
    Ok(())
}
