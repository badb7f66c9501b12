//! Client authentication at the token, introspection and revocation endpoints (RFC 6749 §2.3,
//! OAuth 2.1 §2.4): reading what the client presented, then checking it against the registration.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::clients::Client;
use crate::clients::cache::ClientCache;
use crate::db::{DbError, DbPool};
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;

/// How the client authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    /// Secret in the body (`client_secret_post`).
    Post,
    /// Public client, no secret (`none`).
    None,
}

/// Credentials presented by a client, not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub struct UnverifiedClient {
    /// The claimed `client_id`.
    pub client_id: String,
    /// The presented secret, if any.
    secret: Option<String>,
    /// How it was presented.
    pub method: AuthMethod,
}

impl std::fmt::Debug for UnverifiedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnverifiedClient")
            .field("client_id", &self.client_id)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Why client authentication failed; `used_basic` decides whether the 401 carries a Basic
/// challenge with a charset (RFC 7617 §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAuthError {
    /// The error.
    pub error: OAuthError,
    /// Whether the client tried HTTP Basic.
    pub used_basic: bool,
}

impl ClientAuthError {
    fn failed(used_basic: bool) -> Self {
        Self {
            error: OAuthError::invalid_client("client authentication failed"),
            used_basic,
        }
    }

    fn invalid(description: &'static str) -> Self {
        Self {
            error: OAuthError::invalid_request(description),
            used_basic: true,
        }
    }

    /// A client that may not use this endpoint at all (a public client at introspection).
    #[must_use]
    pub fn refused(description: &'static str) -> Self {
        Self {
            error: OAuthError::invalid_client(description),
            used_basic: false,
        }
    }
}

fn form_decode(raw: &str) -> Option<String> {
    // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
    url::form_urlencoded::parse(format!("x={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// Decodes `Basic base64(id:secret)` (the scheme is case-insensitive, RFC 9110 §11.1).
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// Why [`authenticate_known`] refused the client, or could not decide.
#[derive(Debug)]
pub enum AuthenticationError {
    /// The credentials were refused (RFC 6749 §5.2 `invalid_client`).
    Refused(ClientAuthError),
    /// The database could not be asked.
    Db(DbError),
}

/// Authenticates the calling client (RFC 6749 §2.3) from the `Authorization` header and the
/// body: from this instance's memory when it has seen the client, else (or when memory
/// refuses: the secret may have been rotated elsewhere since) from the database.
pub async fn authenticate_known(
    clients: &ClientCache,
    pool: &DbPool,
    authorization: Option<&str>,
    params: &Params,
) -> Result<Arc<Client>, AuthenticationError> {
    let presented = parse(authorization, params).map_err(AuthenticationError::Refused)?;
    if let Some(cached) = clients.cached(&presented.client_id)
        && let Ok(client) = authenticate(Some(cached), &presented)
    {
        return Ok(client);
    }
    let client = clients
        .fetch(pool, &presented.client_id)
        .await
        .map_err(AuthenticationError::Db)?;
    authenticate(client, &presented).map_err(AuthenticationError::Refused)
}

/// Reads client credentials from the `Authorization` header and the form.
pub fn parse(
    authorization: Option<&str>,
    params: &Params,
) -> Result<UnverifiedClient, ClientAuthError> {
    if let Some(header) = authorization {
        let (id, secret) = basic_credentials(header).ok_or(ClientAuthError::failed(true))?;
        // OAuth 2.1 §2.4: one authentication method per request.
        if params.get("client_secret").is_some() {
            return Err(ClientAuthError::invalid(
                "use one client authentication method, not two",
            ));
        }
        if params.get("client_id").is_some_and(|f| f != id) {
            return Err(ClientAuthError::invalid(
                "client_id does not match the Authorization header",
            ));
        }
        return Ok(UnverifiedClient {
            client_id: id,
            secret: Some(secret),
            method: AuthMethod::Basic,
        });
    }
    let client_id = params
        .get("client_id")
        .ok_or(ClientAuthError::failed(false))?
        .to_owned();
    let secret = params.get("client_secret").map(str::to_owned);
    let method = if secret.is_some() {
        AuthMethod::Post
    } else {
        AuthMethod::None
    };
    Ok(UnverifiedClient {
        client_id,
        secret,
        method,
    })
}

/// Checks presented credentials against the registered client.
pub fn authenticate(
    client: Option<Arc<Client>>,
    presented: &UnverifiedClient,
) -> Result<Arc<Client>, ClientAuthError> {
    let fail = ClientAuthError::failed(presented.method == AuthMethod::Basic);
    let Some(client) = client else {
        return Err(fail);
    };
    let ok = match (&presented.secret, client.is_public) {
        // A public client proves nothing but its id; PKCE binds its codes.
        (None, true) => true,
        (Some(secret), false) => client.verify_secret(secret),
        // A confidential client without its secret, or a public client waving one.
        _ => false,
    };
    if ok { Ok(client) } else { Err(fail) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::error::ErrorCode;

    fn basic(id: &str, secret: &str) -> String {
        // RFC 6749 §2.3.1: form-urlencode each part, then Basic.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "BASIC {}",
            STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
        )
    }

    #[test]
    fn basic_credentials_are_form_decoded_and_the_scheme_is_case_insensitive() {
        let header = basic("my app", "s3cr:t+/=");
        let parsed = parse(Some(&header), &Params::default()).expect("valid");
        assert_eq!(parsed.client_id, "my app");
        assert_eq!(parsed.secret.as_deref(), Some("s3cr:t+/="));
        assert_eq!(parsed.method, AuthMethod::Basic);
    }

    #[test]
    fn two_methods_at_once_or_a_mismatched_id_are_invalid_requests() {
        let header = basic("a", "b");
        let both = Params::from_pairs([("client_secret", "b")]);
        let err = parse(Some(&header), &both).expect_err("two methods");
        assert_eq!(err.error.code, ErrorCode::InvalidRequest);
        let other = Params::from_pairs([("client_id", "z")]);
        let err = parse(Some(&header), &other).expect_err("mismatch");
        assert_eq!(err.error.code, ErrorCode::InvalidRequest);
        let err = parse(Some("Bearer xyz"), &Params::default()).expect_err("not basic");
        assert_eq!(err.error.code, ErrorCode::InvalidClient);
        assert!(err.used_basic);
    }

    #[test]
    fn a_secret_in_the_form_is_client_secret_post_and_none_is_a_public_client() {
        let post = Params::from_pairs([("client_id", "a"), ("client_secret", "s")]);
        assert_eq!(parse(None, &post).expect("valid").method, AuthMethod::Post);
        let public = Params::from_pairs([("client_id", "a")]);
        assert_eq!(
            parse(None, &public).expect("valid").method,
            AuthMethod::None
        );
        let err = parse(None, &Params::default()).expect_err("nobody");
        assert_eq!(err.error.code, ErrorCode::InvalidClient);
        assert!(!err.used_basic);
    }

    #[test]
    fn debug_of_presented_credentials_hides_the_secret() {
        let parsed = parse(Some(&basic("a", "kwcs_topsecret")), &Params::default()).expect("valid");
        assert!(!format!("{parsed:?}").contains("topsecret"));
    }

    proptest::proptest! {
        /// Any `Authorization` header value is answered (401 `invalid_client` at worst).
        #[test]
        fn any_authorization_header_parses_without_panicking(header in "\\PC{0,300}") {
            let _ = parse(Some(&header), &Params::default());
            let _ = parse(Some(&format!("Basic {header}")), &Params::default());
        }

        /// Any id and secret, encoded as RFC 6749 §2.3.1 says, read back exactly, colons and
        /// percent signs included.
        #[test]
        fn basic_credentials_read_back_exactly(id in "\\PC{1,40}", secret in "\\PC{1,60}") {
            let parsed = parse(Some(&basic(&id, &secret)), &Params::default()).expect("valid");
            proptest::prop_assert_eq!(parsed.client_id, id);
            proptest::prop_assert_eq!(parsed.secret, Some(secret));
        }
    }
}
