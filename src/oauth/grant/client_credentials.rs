//! The client credentials grant (RFC 6749 §4.4): a token about the client itself, for a service
//! calling an API on its own behalf. Nothing is written; the client lookup was the only read.

use crate::clients::Client;
use crate::oauth::error::OAuthError;
use crate::oauth::grant::{GrantContext, GrantError, TokenResponse, requested_scope};
use crate::oauth::params::Params;
use crate::scope::{self, Scopes};

/// Scopes about a person: meaningless when no person is involved, and so never granted here.
const PERSON_SCOPES: [&str; 4] = [
    scope::OPENID,
    scope::PROFILE,
    scope::EMAIL,
    scope::OFFLINE_ACCESS,
];

/// A client credentials request, as sent.
#[derive(Debug)]
pub struct ClientCredentialsRequest {
    scope: Option<Scopes>,
}

impl ClientCredentialsRequest {
    /// Reads the optional `scope`.
    pub fn parse(params: &Params) -> Result<Self, OAuthError> {
        Ok(Self {
            scope: requested_scope(params)?,
        })
    }
}

/// The scopes to grant: those asked for if the client may have them all, else all it may have.
fn granted_scopes(client: &Client, requested: Option<&Scopes>) -> Result<Scopes, OAuthError> {
    let allowed = client.allowed_scopes();
    match requested {
        Some(r) => {
            if !r.is_subset(&allowed) || PERSON_SCOPES.iter().any(|s| r.contains(s)) {
                return Err(OAuthError::invalid_scope(
                    "scope includes values this client may not request",
                ));
            }
            Ok(r.clone())
        }
        None => Ok(Scopes::parse(
            &allowed
                .iter()
                .filter(|s| !PERSON_SCOPES.contains(s))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .unwrap_or_default()),
    }
}

/// Issues an access token whose subject is the client.
pub fn client_credentials(
    ctx: &GrantContext<'_>,
    client: &Client,
    request: &ClientCredentialsRequest,
) -> Result<TokenResponse, GrantError> {
    let scopes = granted_scopes(client, request.scope.as_ref())?;
    // RFC 9700 §2.3: a management token is valid at the management API and nowhere else (the
    // registration rules keep its client to management scopes and no other audience).
    let admin_audience;
    let audiences = if scopes.has_admin() {
        admin_audience = [scope::admin_audience(ctx.settings.issuer)];
        &admin_audience[..]
    } else {
        &client.audiences[..]
    };
    let access = ctx.access_token(client, &client.id, &scopes, audiences, None)?;
    Ok(TokenResponse::bearer(
        access,
        ctx.settings.access_ttl,
        &scopes,
    ))
}
