//! The resource owner password grant (RFC 6749 §4.3), only for clients registered for it as a
//! migration path from hand-rolled logins: the same lockout, rate limits and generic errors as the
//! sign-in page. OAuth 2.1 drops it; the code flow is the way forward.

use diesel_async::AsyncConnection;

use crate::auth_methods::AuthMethods;
use crate::clients::Client;
use crate::db;
use crate::error::AppError;
use crate::oauth::error::OAuthError;
use crate::oauth::grant::{
    Authorization, GrantContext, GrantError, TokenResponse, invalid_grant, issue_for_user,
    requested_scope,
};
use crate::oauth::params::Params;
use crate::oauth::second_factor::Policy as MfaPolicy;
use crate::oauth::sign_in::{Checks, Device, SignInError, sign_in};
use crate::scope::Scopes;
use crate::users;
use crate::users::factors;

/// A password grant request, as sent.
pub struct PasswordRequest {
    username: String,
    password: String,
    scope: Scopes,
}

impl std::fmt::Debug for PasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordRequest")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl PasswordRequest {
    /// Reads `username`, `password` and `scope`, which is required here: there is no consent
    /// page to show what the client gets.
    pub fn parse(params: &Params) -> Result<Self, OAuthError> {
        let (Some(username), Some(password)) = (params.get("username"), params.get("password"))
        else {
            return Err(OAuthError::invalid_request(
                "username and password are required",
            ));
        };
        let scope =
            requested_scope(params)?.ok_or(OAuthError::invalid_scope("scope is required"))?;
        Ok(Self {
            username: username.to_owned(),
            password: password.to_owned(),
            scope,
        })
    }
}

/// Checks the password and issues tokens for the person, as a code exchange would.
pub async fn password(
    check: &Checks<'_>,
    ctx: &GrantContext<'_>,
    client: &Client,
    request: &PasswordRequest,
) -> Result<TokenResponse, GrantError> {
    if !request.scope.is_subset(&client.allowed_scopes()) {
        return Err(
            OAuthError::invalid_scope("scope includes values this client may not request").into(),
        );
    }
    let signed_in = sign_in(
        check,
        &request.username,
        &request.password,
        Device::Api,
        ctx.now,
    )
    .await
    .map_err(refusal)?;
    let checked = signed_in.user;
    // The app cannot show the code page: the person confirms the address in a browser first.
    if check.verification.must_verify(&checked) {
        return Err(invalid_grant(
            "the email address is not verified yet; sign in once on the sign-in page to confirm it",
        ));
    }
    let mut conn = db::connect(check.pool).await?;
    // The app cannot show the second-step page either: a person who has a second factor, or
    // must use one (the policy, or this client's registration), signs in through a browser.
    let has_factor = factors::has_any(&mut conn, checked.id).await?;
    if has_factor || client.require_mfa || check.mfa == MfaPolicy::Required {
        return Err(invalid_grant(
            "this account signs in with a second factor, which the password grant cannot ask \
             for; use the authorization code flow in a browser",
        ));
    }
    let methods = AuthMethods::password();
    conn.transaction(async |conn| {
        // The password was checked against what we read before hashing. Decide under the
        // user's row lock that nothing changed since: a cut-off that won the race is seen here,
        // and one that comes later waits for this commit and then revokes what it wrote.
        let user = users::find_for_share(conn, checked.id)
            .await?
            .filter(|u| u.credential_version == checked.credential_version && !u.is_disabled())
            .ok_or_else(|| invalid_grant("wrong username or password"))?;
        // No browser session: a fresh OIDC session id for this sign-in alone.
        let sid = uuid::Uuid::new_v4().to_string();
        let auth = Authorization {
            user: &user,
            scopes: &request.scope,
            audiences: &client.audiences,
            auth_time: ctx.now,
            methods: &methods,
            sid: &sid,
            nonce: None,
        };
        Ok(issue_for_user(conn, ctx, client, &auth).await?.response)
    })
    .await
}

/// The sign-in page's refusals in RFC 6749 §5.2 words; the database, the hasher or a bug are
/// the server's (503 or 500).
fn refusal(e: SignInError) -> GrantError {
    match e {
        SignInError::WrongCredentials | SignInError::Disabled => {
            invalid_grant("wrong username or password")
        }
        SignInError::Locked { .. } => invalid_grant("too many failed attempts; try again later"),
        SignInError::RateLimited { retry_after } => GrantError::RateLimited(retry_after),
        other => {
            GrantError::App(AppError::from_sign_in(other).unwrap_or_else(|| {
                AppError::Internal(anyhow::anyhow!("unexpected sign-in refusal"))
            }))
        }
    }
}
