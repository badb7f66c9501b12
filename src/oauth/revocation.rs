//! Token revocation (RFC 7009): a client ends one of its own tokens. A refresh token ends its whole
//! family; an access token goes on the revoked list until it expires.

use diesel_async::AsyncPgConnection;
use time::OffsetDateTime;

use crate::audit::Actor;
use crate::clients::Client;
use crate::oauth::introspection::TokenKeys;
use crate::tokens::jwt;
use crate::tokens::refresh::{self, Owner};

/// Why a client's own request ended a token, as the records say.
const REVOKED_BY_CLIENT: &str = "revoked by the client";
use crate::tokens::revoked;

/// RFC 7009 §2.1: revokes `token` if `client` owns it; answers nothing either way, so a client
/// cannot probe other clients' tokens.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    keys: TokenKeys<'_>,
    issuer: &str,
    client: &Client,
    token: &str,
    ip: Option<ipnet::IpNet>,
    now: OffsetDateTime,
) -> diesel::QueryResult<()> {
    if let Some(presented) = refresh::locate(conn, keys.refresh, token).await? {
        let by = Actor::system(ip);
        let owner = Owner::Client(&client.id);
        let family = presented.family_id;
        refresh::end_family(conn, family, owner, REVOKED_BY_CLIENT, &by, now).await?;
        return Ok(());
    }
    // An access token is recorded as revoked until it expires. Expired ones need nothing.
    let Ok(claims) = jwt::verify_access_token(keys.ring, token, issuer, now) else {
        return Ok(());
    };
    if claims.client_id != client.id {
        return Ok(());
    }
    if let Some(exp) = claims.expires_at() {
        revoked::insert(conn, claims.jti, exp, REVOKED_BY_CLIENT, now).await?;
    }
    Ok(())
}
