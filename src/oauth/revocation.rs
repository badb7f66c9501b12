//! Token revocation (RFC 7009): a client ends one of its own tokens. A refresh token ends its whole
//! family; an access token goes on the revoked list until it expires.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use time::OffsetDateTime;

use crate::audit::{self, NewAuditEvent};
use crate::clients::Client;
use crate::keys::keyring::KeyRing;
use crate::tokens::jwt;
use crate::tokens::opaque::TokenHash;
use crate::tokens::refresh;
use crate::tokens::revoked;

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
    if let Some(row) = refresh::find_token(conn, &TokenHash::of(token)).await? {
        return revoke_family(conn, client, row.family_id, ip, now).await;
    }
    // An access token is recorded as revoked until it expires. Expired ones need nothing.
    let Ok(claims) = jwt::verify_access_token(keys, token, issuer, now) else {
        return Ok(());
    };
    if claims.client_id != client.id {
        return Ok(());
    }
    if let Some(exp) = claims.expires_at() {
        revoked::insert(conn, claims.jti, exp, "revoked by the client", now).await?;
    }
    Ok(())
}

/// Revokes a family under its lock: a racing refresh either committed first, and its access token
/// is revoked here, or sees the family revoked.
async fn revoke_family(
    conn: &mut AsyncPgConnection,
    client: &Client,
    family_id: uuid::Uuid,
    ip: Option<ipnet::IpNet>,
    now: OffsetDateTime,
) -> diesel::QueryResult<()> {
    conn.transaction(async |conn| {
        let Some(family) = refresh::lock_family(conn, family_id).await? else {
            return Ok(());
        };
        if family.client_id != client.id {
            return Ok(());
        }
        if refresh::revoke_family(conn, family.id, "revoked by the client", now).await? {
            let subject = family.id.to_string();
            let event = NewAuditEvent::new("family.revoked", audit::ACTOR_SYSTEM, now)
                .subject(&subject)
                .user(family.user_id)
                .client(&client.id)
                .ip(ip)
                .details(json!({ "reason": "revoked by the client" }));
            audit::insert(conn, &event).await?;
        }
        Ok(())
    })
    .await
}
