//! Authorization codes: 256 random bits, stored hashed, valid 60 s, single use enforced by a
//! row lock, and a reuse revokes what the first use issued (RFC 6749 §4.1.2).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::auth_methods::AuthMethods;
use crate::db::schema::authorization_codes;
use crate::scope::Scopes;
use crate::tokens::opaque::{PlainToken, TokenHash};

/// How long a code may wait to be exchanged.
pub const AUTHORIZATION_CODE_TTL: Duration = Duration::seconds(60);

/// A stored code.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = authorization_codes)]
pub struct AuthorizationCode {
    /// SHA-256 of the code.
    pub code_hash: TokenHash,
    /// Bound client.
    pub client_id: String,
    /// Who signed in.
    pub user_id: Uuid,
    /// Bound redirect URI.
    pub redirect_uri: String,
    /// PKCE S256 challenge; `None` for a `--pkce optional` client's request that sent none.
    pub code_challenge: Option<String>,
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
    /// The refresh family the first redemption started, if any.
    pub refresh_family_id: Option<Uuid>,
    /// How the person authenticated (RFC 8176 `amr` names).
    pub amr: Vec<String>,
}

/// What a redemption issued, remembered so a replay can revoke it.
#[derive(Clone, Copy, Debug)]
pub struct IssuedForCode {
    /// The access token's `jti` and expiry.
    pub access_token: (Uuid, OffsetDateTime),
    /// The refresh family started, if any.
    pub refresh_family: Option<Uuid>,
}

/// What a new code is bound to: an approved request and the sign-in that approved it.
#[derive(Clone, Copy, Debug)]
pub struct NewCode<'a> {
    /// The client it was issued to.
    pub client_id: &'a str,
    /// Who signed in.
    pub user_id: Uuid,
    /// The exact redirect URI of the request.
    pub redirect_uri: &'a str,
    /// PKCE S256 challenge, if the request carried one.
    pub code_challenge: Option<&'a str>,
    /// OIDC nonce.
    pub nonce: Option<&'a str>,
    /// Granted scopes.
    pub scopes: &'a Scopes,
    /// Access-token audiences.
    pub audiences: &'a [String],
    /// When the person authenticated.
    pub auth_time: OffsetDateTime,
    /// The sign-in session id (OIDC `sid`).
    pub sid: &'a str,
    /// How the person authenticated.
    pub methods: &'a AuthMethods,
}

/// Creates a code; returns it for the redirect.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewCode<'_>,
    now: OffsetDateTime,
) -> QueryResult<PlainToken> {
    let code = PlainToken::generate("");
    diesel::insert_into(authorization_codes::table)
        .values((
            authorization_codes::code_hash.eq(code.hash()),
            authorization_codes::client_id.eq(new.client_id),
            authorization_codes::user_id.eq(new.user_id),
            authorization_codes::redirect_uri.eq(new.redirect_uri),
            authorization_codes::code_challenge.eq(new.code_challenge),
            authorization_codes::nonce.eq(new.nonce),
            authorization_codes::scopes.eq(new.scopes.to_vec()),
            authorization_codes::audiences.eq(new.audiences),
            authorization_codes::auth_time.eq(new.auth_time),
            authorization_codes::sid.eq(new.sid),
            authorization_codes::amr.eq(new.methods.amr()),
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
        .find(presented)
        .select(AuthorizationCode::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Marks a code used, recording what was issued for it (if anything).
pub async fn update_used(
    conn: &mut AsyncPgConnection,
    code_hash: &TokenHash,
    now: OffsetDateTime,
    issued: Option<IssuedForCode>,
) -> QueryResult<()> {
    diesel::update(authorization_codes::table.find(code_hash))
        .set((
            authorization_codes::used_at.eq(now),
            authorization_codes::access_token_jti.eq(issued.map(|i| i.access_token.0)),
            authorization_codes::access_token_expires_at.eq(issued.map(|i| i.access_token.1)),
            authorization_codes::refresh_family_id.eq(issued.and_then(|i| i.refresh_family)),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Deletes every unredeemed code of `client_id`, whoever it was for. A redemption in flight
/// holds its code's row lock, so this waits for it to commit; its code is then used, and stays.
pub async fn delete_unredeemed_of_client(
    conn: &mut AsyncPgConnection,
    client_id: &str,
) -> QueryResult<usize> {
    diesel::delete(authorization_codes::table)
        .filter(authorization_codes::client_id.eq(client_id))
        .filter(authorization_codes::used_at.is_null())
        .execute(conn)
        .await
}

/// Deletes `user_id`'s unredeemed codes (for one client, or all). A redemption in flight holds
/// its code's row lock, so this waits for it to commit; its code is then used, and stays.
pub async fn delete_unredeemed(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    client_id: Option<&str>,
) -> QueryResult<usize> {
    let mut unredeemed = diesel::delete(authorization_codes::table)
        .filter(authorization_codes::user_id.eq(user_id))
        .filter(authorization_codes::used_at.is_null())
        .into_boxed();
    if let Some(client_id) = client_id {
        unredeemed = unredeemed.filter(authorization_codes::client_id.eq(client_id.to_owned()));
    }
    unredeemed.execute(conn).await
}

/// Deletes expired codes, at most `batch`.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    batch: i64,
) -> QueryResult<usize> {
    // Used codes are kept as long as the token they issued lives, so a late replay still revokes.
    crate::db::delete_batch(
        conn,
        "authorization_codes",
        "expires_at <= $1 AND (access_token_expires_at IS NULL OR access_token_expires_at <= $1)",
        now,
        batch,
    )
    .await
}
