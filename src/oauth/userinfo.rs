//! The rules of `/userinfo` (OIDC Core §5.3): which tokens it honours and what it releases.

use diesel_async::AsyncPgConnection;
use serde::Serialize;
use time::OffsetDateTime;

use crate::keys::keyring::KeyRing;
use crate::oauth::access::{self, Judged};
use crate::scope;
use crate::tokens::jwt::ProfileClaims;

/// The userinfo response: the subject and what the token's scopes release (OIDC Core §5.3.2).
#[derive(Debug, Serialize)]
pub struct UserInfo {
    /// The person's stable id.
    pub sub: String,
    /// The claims the token's scopes release.
    #[serde(flatten)]
    pub profile: ProfileClaims,
}

/// Why userinfo was refused (RFC 6750 §3.1).
#[derive(Debug, thiserror::Error)]
pub enum UserInfoError {
    /// Not a live access token for userinfo.
    #[error("invalid_token")]
    InvalidToken,
    /// A live token without this scope.
    #[error("insufficient_scope")]
    InsufficientScope(&'static str),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// What `token` may read, and the client it was issued to (whose origins may read the answer).
pub async fn userinfo(
    conn: &mut AsyncPgConnection,
    keys: &KeyRing,
    issuer: &str,
    token: &str,
    now: OffsetDateTime,
) -> Result<(UserInfo, String), UserInfoError> {
    let Judged::Live(live) = access::judge(conn, keys, issuer, token, now).await? else {
        return Err(UserInfoError::InvalidToken);
    };
    // A token minted for an API is that API's, not a credential for userinfo; a client's own
    // token names no person.
    let (claims, Some(user)) = (live.claims, live.user) else {
        return Err(UserInfoError::InvalidToken);
    };
    if !claims.aud.contains(issuer) {
        return Err(UserInfoError::InvalidToken);
    }
    let scopes = claims.scopes();
    if !scopes.contains(scope::OPENID) {
        return Err(UserInfoError::InsufficientScope(scope::OPENID));
    }
    let info = UserInfo {
        sub: user.sub(),
        profile: ProfileClaims::for_scopes(&scopes, &user.username, user.email_claim()),
    };
    Ok((info, claims.client_id))
}
