//! Judging an access token presented back to Keyward (at `/userinfo`, at introspection): one
//! check, so that every endpoint ends a token at the same moment.

use diesel_async::AsyncPgConnection;
use time::OffsetDateTime;

use crate::clients;
use crate::keys::keyring::KeyRing;
use crate::keys::schedule::CLOCK_LEEWAY;
use crate::tokens::jwt::{self, AccessTokenClaims};
use crate::tokens::{refresh, revoked};
use crate::users::{self, User};

/// What an access token turned out to be.
#[derive(Debug)]
pub enum Judged {
    /// Not one of our access tokens at all (a refresh token, an ID token, garbage, expired).
    NotOurs,
    /// One of ours that no longer stands: revoked, or its person disabled, deleted or cut off
    /// since it was issued.
    Ended,
    /// A live token.
    Live(Box<LiveToken>),
}

/// A live access token: its claims, and for a person's token the person as they are now.
#[derive(Debug)]
pub struct LiveToken {
    /// The verified claims.
    pub claims: AccessTokenClaims,
    /// The person (`None` for a client's own token, whose `sub` is the client).
    pub user: Option<User>,
    /// The client it was issued to, as registered now.
    pub client: clients::Client,
}

/// Checks signature, `typ` (RFC 9068 §4: an ID token is no credential here), issuer and expiry,
/// then what the database knows: not revoked (RFC 7009), nor its refresh family, its client
/// still registered, and the
/// person still enabled and on the credential version the token was issued under (a cut-off
/// ends it before its `exp`).
pub async fn judge(
    conn: &mut AsyncPgConnection,
    keys: &KeyRing,
    issuer: &str,
    token: &str,
    now: OffsetDateTime,
) -> diesel::QueryResult<Judged> {
    let Ok(claims) = jwt::verify_access_token(keys, token, issuer, now) else {
        return Ok(Judged::NotOurs);
    };
    if revoked::is_revoked(conn, claims.jti).await? {
        return Ok(Judged::Ended);
    }
    // Issued in a refresh family: it ends with the family (revoked, reused, or its client or
    // user deleted), with no record per access token.
    if let Some(family) = claims.fam
        && !refresh::is_standing(conn, family).await?
    {
        return Ok(Judged::Ended);
    }
    // A deleted client's tokens end with it, its own (client credentials) included, which
    // nothing else records; one registered again under the same id does not revive them (the
    // leeway only spares a token issued by a server whose clock is a little behind the CLI's).
    let registered_since =
        |c: &clients::Client| (c.created_at - CLOCK_LEEWAY).unix_timestamp() <= claims.iat;
    let Some(client) = clients::find(conn, &claims.client_id)
        .await?
        .filter(registered_since)
    else {
        return Ok(Judged::Ended);
    };
    let user = match claims.person_sub() {
        None => None,
        Some(sub) => match users::find_by_sub(conn, sub).await? {
            Some(u)
                if !u.is_disabled() && claims.is_current_for(&u.sub(), u.credential_version) =>
            {
                Some(u)
            }
            _ => return Ok(Judged::Ended),
        },
    };
    Ok(Judged::Live(Box::new(LiveToken {
        claims,
        user,
        client,
    })))
}
