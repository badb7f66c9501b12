//! Authorization codes: 256 random bits, stored hashed, valid 60 s, single use enforced by a
//! row lock, and a reuse revokes what the first use issued (RFC 6749 §4.1.2).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::db::schema::{authorization_codes, revoked_access_tokens};
use crate::oauth::authorize::AuthorizationRequest;
use crate::tokens::opaque::{PlainToken, TokenHash};

/// How long a code may wait to be exchanged.
pub const AUTHORIZATION_CODE_TTL: Duration = Duration::seconds(60);

/// A stored code.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = authorization_codes)]
pub struct AuthorizationCode {
    /// SHA-256 of the code.
    pub code_hash: Vec<u8>,
    /// Bound client.
    pub client_id: String,
    /// Who signed in.
    pub user_id: Uuid,
    /// Bound redirect URI.
    pub redirect_uri: String,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// OIDC nonce.
    pub nonce: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Access-token audiences.
    pub audiences: Vec<String>,
    /// When the person authenticated.
    pub auth_time: OffsetDateTime,
    /// The sign-in session id (OIDC `sid`).
    pub sid: String,
    /// Issued at.
    pub created_at: OffsetDateTime,
    /// Dead after.
    pub expires_at: OffsetDateTime,
    /// First redemption.
    pub used_at: Option<OffsetDateTime>,
    /// The access token issued at first redemption.
    pub access_token_jti: Option<Uuid>,
    /// When that token expires.
    pub access_token_expires_at: Option<OffsetDateTime>,
}

/// Creates a code for an approved request; returns the code for the redirect.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    request: &AuthorizationRequest,
    user_id: Uuid,
    auth_time: OffsetDateTime,
    sid: &str,
    now: OffsetDateTime,
) -> QueryResult<PlainToken> {
    let code = PlainToken::generate("");
    diesel::insert_into(authorization_codes::table)
        .values((
            authorization_codes::code_hash.eq(code.hash().as_bytes()),
            authorization_codes::client_id.eq(&request.client_id),
            authorization_codes::user_id.eq(user_id),
            authorization_codes::redirect_uri.eq(&request.redirect_uri),
            authorization_codes::code_challenge.eq(&request.code_challenge),
            authorization_codes::nonce.eq(&request.nonce),
            authorization_codes::scopes.eq(request.scopes().to_vec()),
            authorization_codes::audiences.eq(&request.audiences),
            authorization_codes::auth_time.eq(auth_time),
            authorization_codes::sid.eq(sid),
            authorization_codes::created_at.eq(now),
            authorization_codes::expires_at.eq(now + AUTHORIZATION_CODE_TTL),
        ))
        .execute(conn)
        .await?;
    Ok(code)
}

/// Reads a code and locks its row until the transaction ends.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    presented: &TokenHash,
) -> QueryResult<Option<AuthorizationCode>> {
    authorization_codes::table
        .find(presented.as_bytes())
        .select(AuthorizationCode::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Marks a code used, recording the access token issued for it (if any).
pub async fn update_used(
    conn: &mut AsyncPgConnection,
    code_hash: &[u8],
    now: OffsetDateTime,
    issued: Option<(Uuid, OffsetDateTime)>,
) -> QueryResult<()> {
    diesel::update(authorization_codes::table.find(code_hash))
        .set((
            authorization_codes::used_at.eq(now),
            authorization_codes::access_token_jti.eq(issued.map(|i| i.0)),
            authorization_codes::access_token_expires_at.eq(issued.map(|i| i.1)),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Records an access token as revoked until it expires.
pub async fn revoke_access_token(
    conn: &mut AsyncPgConnection,
    jti: Uuid,
    expires_at: OffsetDateTime,
    reason: &str,
    now: OffsetDateTime,
) -> QueryResult<()> {
    diesel::insert_into(revoked_access_tokens::table)
        .values((
            revoked_access_tokens::jti.eq(jti),
            revoked_access_tokens::expires_at.eq(expires_at),
            revoked_access_tokens::revoked_at.eq(now),
            revoked_access_tokens::reason.eq(reason),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .map(|_| ())
}

/// Whether an access token was revoked (one primary-key read).
pub async fn is_access_token_revoked(conn: &mut AsyncPgConnection, jti: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(revoked_access_tokens::table.find(jti)))
        .get_result(conn)
        .await
}

/// Deletes expired codes and revocation records that outlived their tokens, at most `batch` each.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    batch: i64,
) -> QueryResult<usize> {
    // Used codes are kept as long as the token they issued lives, so a late replay still revokes.
    let codes = crate::db::delete_batch(
        conn,
        "authorization_codes",
        "expires_at <= $1 AND (access_token_expires_at IS NULL OR access_token_expires_at <= $1)",
        now,
        batch,
    )
    .await?;
    let revoked = crate::db::delete_batch(
        conn,
        "revoked_access_tokens",
        "expires_at <= $1",
        now,
        batch,
    )
    .await?;
    Ok(codes + revoked)
}
