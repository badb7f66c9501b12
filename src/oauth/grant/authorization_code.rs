//! The authorization code grant (RFC 6749 §4.1.3): a code is redeemed once, by the client it was
//! issued to, with the redirect URI and PKCE verifier of its request.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use time::OffsetDateTime;

use crate::audit::{self, NewAuditEvent};
use crate::auth_methods::AuthMethods;
use crate::clients::Client;
use crate::oauth::error::OAuthError;
use crate::oauth::grant::{
    Authorization, GrantContext, GrantError, TokenResponse, invalid_grant, issue_for_user,
};
use crate::oauth::params::Params;
use crate::oauth::pkce::CodeChallenge;
use crate::scope::Scopes;
use crate::tokens::codes::{self, AuthorizationCode};
use crate::tokens::opaque::TokenHash;
use crate::tokens::refresh;
use crate::tokens::revoked;
use crate::users;

/// A code redemption, as sent.
pub struct CodeRequest {
    code: String,
    redirect_uri: String,
    code_verifier: Option<String>,
}

impl std::fmt::Debug for CodeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The code and the verifier are secrets until spent.
        f.debug_struct("CodeRequest")
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl CodeRequest {
    /// Reads `code`, `redirect_uri` and `code_verifier` (OAuth 2.1 §4.1.3: required, but of a
    /// `--pkce optional` client's code issued without a challenge).
    pub fn parse(params: &Params) -> Result<Self, OAuthError> {
        Ok(Self {
            code: params.require("code", "code is required")?.to_owned(),
            redirect_uri: params
                .require("redirect_uri", "redirect_uri is required")?
                .to_owned(),
            code_verifier: params.get("code_verifier").map(str::to_owned),
        })
    }
}

/// How a redemption ended, decided inside the transaction and committed either way.
enum Outcome {
    Issued(TokenResponse),
    Refused(&'static str),
    Reused { user_id: uuid::Uuid },
}

/// Exchanges an authorization code for tokens, for an authenticated client.
pub async fn exchange_code(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    client: &Client,
    request: &CodeRequest,
) -> Result<TokenResponse, GrantError> {
    // OAuth 2.1 §4.1.3: a client that must use PKCE always sends the verifier.
    if client.pkce_required && request.code_verifier.is_none() {
        return Err(GrantError::OAuth(OAuthError::invalid_request(
            "code_verifier is required (PKCE)",
        )));
    }
    let presented = TokenHash::of(&request.code);
    let outcome = conn
        .transaction(async |conn| redeem(conn, ctx, client, request, &presented).await)
        .await?;
    match outcome {
        Outcome::Issued(response) => Ok(response),
        Outcome::Refused(description) => Err(invalid_grant(description)),
        Outcome::Reused { user_id } => {
            tracing::warn!(%user_id, "authorization code reused; issued tokens revoked");
            Err(invalid_grant("the code was already used"))
        }
    }
}

/// The redemption, under the code's row lock: whoever holds the lock decides, so two racing
/// redemptions cannot both succeed.
async fn redeem(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    client: &Client,
    request: &CodeRequest,
    presented: &TokenHash,
) -> Result<Outcome, GrantError> {
    let Some(row) = codes::find_for_update(conn, presented).await? else {
        return Ok(Outcome::Refused("the code is invalid"));
    };
    // Another client's code: refuse without touching it, so a thief cannot burn it.
    if row.client_id != client.id {
        return Ok(Outcome::Refused("the code was issued to another client"));
    }
    if row.used_at.is_some() {
        // Only the code's own client, proving the request's redirect URI and PKCE verifier,
        // can trigger the revocation: otherwise anyone who saw a public client's code could
        // sign its owner out by replaying it with a made-up verifier.
        if binding_mismatch(&row, request).is_some() {
            return Ok(Outcome::Refused("the code is invalid"));
        }
        return revoke_after_reuse(conn, ctx, client, &row).await;
    }
    if row.expires_at <= ctx.now {
        return Ok(Outcome::Refused("the code has expired"));
    }
    // From here the right client presented it: whatever happens, it is spent.
    let refusal = match binding_mismatch(&row, request) {
        Some(refusal) => Some(refusal),
        // In share mode: a cut-off of this user waits for this redemption, then revokes it.
        None => match users::find_for_share(conn, row.user_id).await? {
            Some(user) if !user.is_disabled() => {
                return issue(conn, ctx, client, &row, &user).await;
            }
            _ => Some("the user can no longer sign in"),
        },
    };
    codes::update_used(conn, &row.code_hash, ctx.now, None).await?;
    Ok(Outcome::Refused(refusal.unwrap_or("the code is invalid")))
}

/// RFC 6749 §4.1.3: the redirect URI must be the request's, and RFC 7636 §4.6 the verifier must
/// match the challenge.
fn binding_mismatch(row: &AuthorizationCode, request: &CodeRequest) -> Option<&'static str> {
    if row.redirect_uri != request.redirect_uri {
        return Some("redirect_uri does not match the authorization request");
    }
    match (&row.code_challenge, &request.code_verifier) {
        (Some(stored), Some(verifier)) => {
            let matches =
                CodeChallenge::from_stored(stored).is_ok_and(|c| c.verify(verifier).is_ok());
            (!matches).then_some("code_verifier does not match the code_challenge")
        }
        (Some(_), None) => Some("code_verifier is required (PKCE)"),
        // RFC 9700 §4.8.2: a verifier for a code issued without a challenge is a downgrade
        // attempt (the challenge was stripped from the request): refused.
        (None, Some(_)) => Some("code_verifier sent for a code issued without PKCE"),
        (None, None) => None,
    }
}

/// RFC 6749 §4.1.2, OAuth 2.1 §4.1.3: a reused code may have been stolen; revoke everything its
/// first use issued (the access token and the refresh family), and say so in the audit trail.
async fn revoke_after_reuse(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    client: &Client,
    row: &AuthorizationCode,
) -> Result<Outcome, GrantError> {
    if let (Some(jti), Some(exp)) = (row.access_token_jti, row.access_token_expires_at) {
        revoked::insert(conn, jti, exp, "authorization code reused", ctx.now).await?;
    }
    if let Some(family) = row.refresh_family_id {
        refresh::revoke_family(conn, family, "authorization code reused", ctx.now).await?;
    }
    let first_used = row.used_at.map(OffsetDateTime::unix_timestamp);
    let event = NewAuditEvent::new("code.reused", audit::ACTOR_SYSTEM, ctx.now)
        .details(json!({ "first_used_at": first_used }))
        .user(row.user_id)
        .client(&client.id)
        .ip(ctx.ip);
    audit::insert(conn, &event).await?;
    Ok(Outcome::Reused {
        user_id: row.user_id,
    })
}

/// Signs the tokens and marks the code used with the access token it issued.
async fn issue(
    conn: &mut AsyncPgConnection,
    ctx: &GrantContext<'_>,
    client: &Client,
    row: &AuthorizationCode,
    user: &users::User,
) -> Result<Outcome, GrantError> {
    let scopes = Scopes::from_stored(&row.scopes);
    let methods = AuthMethods::from_stored(&row.amr);
    let auth = Authorization {
        user,
        scopes: &scopes,
        audiences: &row.audiences,
        auth_time: row.auth_time,
        methods: &methods,
        sid: &row.sid,
        nonce: row.nonce.as_deref(),
    };
    let issued = issue_for_user(conn, ctx, client, &auth).await?;
    codes::update_used(conn, &row.code_hash, ctx.now, Some(issued.for_code)).await?;
    Ok(Outcome::Issued(issued.response))
}
