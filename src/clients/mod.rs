//! Relying parties ("clients"): their registration, secrets and redirect URIs, and storage.

pub mod cache;
pub mod idempotency;
pub mod registration;

use std::fmt;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use url::Url;

use crate::audit::Actor;
use crate::db::schema::clients;
use crate::scope::Scopes;
use crate::tokens::opaque::{PlainToken, TokenHash};

/// Prefix of client secrets, so secret scanners can recognise a leaked one.
pub const CLIENT_SECRET_PREFIX: &str = "kwcs_";

/// The grant types a client may be registered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantType {
    /// RFC 6749 §4.1 with PKCE.
    AuthorizationCode,
    /// RFC 6749 §6, with rotation and reuse detection.
    RefreshToken,
    /// RFC 6749 §4.4, for confidential clients.
    ClientCredentials,
    /// RFC 6749 §4.3: a migration path only; off unless a client is registered for it.
    Password,
}

impl GrantType {
    /// Every grant the token endpoint implements.
    pub const ALL: [Self; 4] = [
        Self::AuthorizationCode,
        Self::RefreshToken,
        Self::ClientCredentials,
        Self::Password,
    ];

    /// The RFC name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::Password => "password",
        }
    }

    /// Parses an implemented grant name.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == raw)
    }
}

/// A registered redirect URI: absolute, no fragment, `https` (or `http` on loopback only).
/// Compared with presented values by exact string match (OAuth 2.1 §2.3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectUri(String);

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redirect URI '{uri}': {reason}")]
pub struct RedirectUriError {
    uri: String,
    reason: &'static str,
}

impl RedirectUri {
    /// Validates a URI for registration.
    pub fn parse(raw: &str) -> Result<Self, RedirectUriError> {
        let fail = |reason| RedirectUriError {
            uri: raw.to_owned(),
            reason,
        };
        let url = Url::parse(raw).map_err(|_| fail("not an absolute URL"))?;
        if url.fragment().is_some() || raw.contains('#') {
            return Err(fail("must not contain a fragment (RFC 6749 §3.1.2)"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(fail("must not contain credentials"));
        }
        let loopback = is_loopback(&url);
        match url.scheme() {
            "https" => Ok(Self(raw.to_owned())),
            "http" if loopback => Ok(Self(raw.to_owned())),
            "http" => Err(fail("http is only allowed on a loopback host")),
            _ => Err(fail("must be https (or http on a loopback host)")),
        }
    }

    /// The URI as registered.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A browser origin a client's pages may call from: exactly `scheme://host[:port]` (the form a
/// browser sends in `Origin`), https or http on loopback, never a wildcard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin(String);

/// Why an origin cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("origin '{origin}': {reason}")]
pub struct OriginError {
    origin: String,
    reason: &'static str,
}

impl Origin {
    /// Validates an origin given by an operator.
    pub fn parse(raw: &str) -> Result<Self, OriginError> {
        let fail = |reason| OriginError {
            origin: raw.to_owned(),
            reason,
        };
        if raw.contains('*') {
            return Err(fail("wildcards are not allowed: list each origin"));
        }
        let url = Url::parse(raw).map_err(|_| fail("not scheme://host[:port]"))?;
        let origin =
            Self::of(&url).ok_or_else(|| fail("must be https (or http on a loopback host)"))?;
        if origin.0 != raw {
            return Err(fail(
                "must be exactly scheme://host[:port], lower case, no path",
            ));
        }
        Ok(origin)
    }

    /// The origin of a registered redirect URI.
    #[must_use]
    pub fn of_redirect_uri(uri: &RedirectUri) -> Option<Self> {
        Url::parse(uri.as_str()).ok().as_ref().and_then(Self::of)
    }

    fn of(url: &Url) -> Option<Self> {
        let secure = url.scheme() == "https" || (url.scheme() == "http" && is_loopback(url));
        let origin = url.origin();
        (secure && origin.is_tuple()).then(|| Self(origin.ascii_serialization()))
    }

    /// The origin as a browser writes it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The origin of a registered redirect URI (the one place an origin is derived from one).
#[must_use]
pub fn origin_of_redirect_uri(uri: &str) -> Option<String> {
    let uri = RedirectUri::parse(uri).ok()?;
    Origin::of_redirect_uri(&uri).map(|o| o.0)
}

/// Every CORS origin of a client: its redirect URIs' origins, then the explicit ones, once each.
#[must_use]
pub fn cors_origins(redirect_uris: &[RedirectUri], explicit: &[Origin]) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let derived = redirect_uris.iter().filter_map(Origin::of_redirect_uri);
    for o in derived.chain(explicit.iter().cloned()) {
        if !all.contains(&o.0) {
            all.push(o.0);
        }
    }
    all
}

/// Whether `url`'s host is a loopback one (RFC 8252 §7.3: `localhost`, 127.0.0.0/8, `::1`),
/// where plain http is allowed: the one loopback check, for redirect URIs and the issuer alike.
#[must_use]
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Whether any client allows `origin` (a CORS preflight names no client).
pub async fn any_allows_origin(conn: &mut AsyncPgConnection, origin: &str) -> QueryResult<bool> {
    if origin.contains('\0') {
        return Ok(false);
    }
    diesel::select(diesel::dsl::exists(
        clients::table.filter(clients::allowed_origins.contains(vec![origin.to_owned()])),
    ))
    .get_result(conn)
    .await
}

/// A stored client.
#[expect(
    clippy::struct_excessive_bools,
    reason = "one per boolean column of the clients table"
)]
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = clients)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// Shown on the consent page.
    pub name: String,
    /// SHA-256 of the secret; `None` for public clients.
    pub secret_hash: Option<TokenHash>,
    /// Public clients (SPAs, native apps) cannot keep a secret.
    pub is_public: bool,
    /// Operated by the same party as Keyward: no consent page.
    pub is_first_party: bool,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Grant type names.
    pub grant_types: Vec<String>,
    /// Scopes it may request.
    pub scopes: Vec<String>,
    /// Resource servers its access tokens may name in `aud`.
    pub audiences: Vec<String>,
    /// Registration time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
    /// Browser origins its pages may call the token endpoints from (CORS).
    pub allowed_origins: Vec<String>,
    /// Its users must prove a second factor to sign in to it (`--require-mfa`).
    pub require_mfa: bool,
    /// Whether its code requests must carry PKCE (all but `--pkce optional` confidential
    /// OpenID Connect clients, which then must send a `nonce`: RFC 9700 §2.1.1).
    pub pkce_required: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("is_public", &self.is_public)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// An entity tag of its registration (never its secret's hash): any change changes it.
    #[must_use]
    pub fn entity_tag(&self) -> String {
        let seen = serde_json::json!([
            self.id,
            self.name,
            self.is_public,
            self.is_first_party,
            self.redirect_uris,
            self.post_logout_redirect_uris,
            self.grant_types,
            self.scopes,
            self.audiences,
            self.allowed_origins,
            self.require_mfa,
            self.pkce_required,
            self.updated_at.unix_timestamp_nanos(),
        ]);
        crate::crypto::entity_tag(seen.to_string().as_bytes())
    }

    /// Whether it is a management client (registered for `admin:*` scopes).
    #[must_use]
    pub fn is_management(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| s.starts_with(crate::scope::ADMIN_PREFIX))
    }

    /// Whether `uri` is registered, by exact string comparison.
    #[must_use]
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    /// Whether `uri` is a registered post-logout redirect URI (exact).
    #[must_use]
    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }

    /// Whether a page on `origin` (the request's `Origin` header) may read this client's answers
    /// (exact match; never a wildcard).
    #[must_use]
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }

    /// Whether the client is registered for `grant`.
    #[must_use]
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.iter().any(|g| g == grant.as_str())
    }

    /// Whether people must consent before it gets their data: first-party apps are trusted.
    #[must_use]
    pub fn needs_consent(&self) -> bool {
        !self.is_first_party
    }

    /// The scopes it may request.
    #[must_use]
    pub fn allowed_scopes(&self) -> Scopes {
        Scopes::from_stored(&self.scopes)
    }

    /// Whether `presented` is this confidential client's secret (constant-time comparison).
    #[must_use]
    pub fn verify_secret(&self, presented: &str) -> bool {
        match &self.secret_hash {
            // TokenHash compares in constant time.
            Some(stored) => *stored == TokenHash::of(presented),
            None => false,
        }
    }
}

/// A client about to be registered.
#[expect(
    clippy::struct_excessive_bools,
    reason = "one per boolean column of the clients table"
)]
#[derive(Debug, Insertable)]
#[diesel(table_name = clients)]
pub struct NewClient {
    /// `client_id`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// SHA-256 of the secret, for confidential clients.
    pub secret_hash: Option<TokenHash>,
    /// Whether it is public.
    pub is_public: bool,
    /// Whether it skips consent.
    pub is_first_party: bool,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Grant names.
    pub grant_types: Vec<String>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// Allowed audiences.
    pub audiences: Vec<String>,
    /// Now.
    pub created_at: OffsetDateTime,
    /// Now.
    pub updated_at: OffsetDateTime,
    /// CORS origins: those of the redirect URIs and any given explicitly ([`cors_origins`]).
    pub allowed_origins: Vec<String>,
    /// Its users must prove a second factor.
    pub require_mfa: bool,
    /// Whether its code requests must carry PKCE.
    pub pkce_required: bool,
}

/// Generates a client secret: 256 bits behind a recognisable prefix.
#[must_use]
pub fn generate_secret() -> PlainToken {
    PlainToken::generate(CLIENT_SECRET_PREFIX)
}

/// Why a client could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum CreateClientError {
    /// The id is in use.
    #[error("a client with id '{0}' already exists")]
    IdTaken(String),
    /// The id reads as a UUID, the form of user subjects.
    #[error(
        "client id '{0}' reads as a user's sub (a UUID, or a subject kept at import): a client's own tokens would carry a user's identity"
    )]
    IdLooksLikeUser(String),
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DieselError),
}

/// Registers a client. RFC 9700 §4.15: a client credentials token has the client id as its
/// `sub`, so an id that parses as a UUID (every user `sub` does) is refused: no client can ever
/// be mistaken for a user.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewClient,
) -> Result<Client, CreateClientError> {
    let is_a_sub = uuid::Uuid::parse_str(&new.id).is_ok()
        || (!new.id.contains('\0')
            && crate::db::holder_of_name(conn, &new.id).await?
                == Some(crate::db::NameHolder::User));
    if is_a_sub {
        return Err(CreateClientError::IdLooksLikeUser(new.id.clone()));
    }
    diesel::insert_into(clients::table)
        .values(new)
        .returning(Client::as_returning())
        .get_result(conn)
        .await
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                CreateClientError::IdTaken(new.id.clone())
            }
            other => CreateClientError::Db(other),
        })
}

/// Registers a client and records `client.created`, in one transaction.
pub async fn register(
    conn: &mut AsyncPgConnection,
    new: &NewClient,
    by: &Actor,
) -> Result<Client, CreateClientError> {
    conn.transaction(async |conn| {
        let client = insert(conn, new).await?;
        record(conn, by, "client.created", &client.id, new.created_at).await?;
        Ok(client)
    })
    .await
}

/// Records an event about client `id`.
async fn record(
    conn: &mut AsyncPgConnection,
    by: &Actor,
    kind: &str,
    id: &str,
    now: OffsetDateTime,
) -> QueryResult<()> {
    let event = by.event(kind, now).subject(id).client(id);
    crate::audit::insert(conn, &event).await
}

/// Why a client could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum EditClientError {
    /// No client has this id.
    #[error("no client '{0}'")]
    NotFound(String),
    /// The change breaks a registration rule.
    #[error(transparent)]
    Invalid(#[from] registration::RegistrationError),
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DieselError),
}

/// Applies `edit` to client `id` under its row lock (two operators changing one client at once
/// do not undo each other), checked as a registration is; records `client.updated`.
pub async fn edit(
    conn: &mut AsyncPgConnection,
    id: &str,
    edit: registration::Edit,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<Client, EditClientError> {
    conn.transaction(async |conn| {
        let client = find_for_update(conn, id)
            .await?
            .ok_or_else(|| EditClientError::NotFound(id.to_owned()))?;
        let changes = edit.apply(&client, now)?;
        let updated = update(conn, id, &changes)
            .await?
            .ok_or_else(|| EditClientError::NotFound(id.to_owned()))?;
        record(conn, by, "client.updated", id, now).await?;
        Ok(updated)
    })
    .await
}

/// Finds a client by `client_id`.
pub async fn find(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<Option<Client>> {
    // PostgreSQL text cannot hold NUL, so no client has one, and sending it would be an error.
    if id.contains('\0') {
        return Ok(None);
    }
    clients::table
        .find(id)
        .select(Client::as_select())
        .first(conn)
        .await
        .optional()
}

/// Finds a client and locks its row until the transaction ends (for a read-modify-write).
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    id: &str,
) -> QueryResult<Option<Client>> {
    if id.contains('\0') {
        return Ok(None);
    }
    clients::table
        .find(id)
        .select(Client::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Every client, by id.
pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Client>> {
    clients::table
        .order(clients::id.asc())
        .select(Client::as_select())
        .load(conn)
        .await
}

/// Deletes a client (its codes and consents go with it) and records `client.deleted`; returns
/// whether it existed.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    id: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<bool> {
    conn.transaction(async |conn| {
        let n = diesel::delete(clients::table.find(id))
            .execute(conn)
            .await?;
        if n == 1 {
            record(conn, by, "client.deleted", id, now).await?;
        }
        Ok(n == 1)
    })
    .await
}

/// What `clients update` may change: everything but the id, the type and the secret.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = clients, treat_none_as_null = false)]
pub struct ClientChanges {
    /// Display name.
    pub name: String,
    /// Whether it skips consent.
    pub is_first_party: bool,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Grant names.
    pub grant_types: Vec<String>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// Allowed audiences.
    pub audiences: Vec<String>,
    /// CORS origins ([`cors_origins`]).
    pub allowed_origins: Vec<String>,
    /// Its users must prove a second factor.
    pub require_mfa: bool,
    /// Whether its code requests must carry PKCE.
    pub pkce_required: bool,
    /// Now.
    pub updated_at: OffsetDateTime,
}

impl Client {
    /// Its current values, to change some of them.
    #[must_use]
    pub fn changes(&self, now: OffsetDateTime) -> ClientChanges {
        ClientChanges {
            name: self.name.clone(),
            is_first_party: self.is_first_party,
            redirect_uris: self.redirect_uris.clone(),
            post_logout_redirect_uris: self.post_logout_redirect_uris.clone(),
            grant_types: self.grant_types.clone(),
            scopes: self.scopes.clone(),
            audiences: self.audiences.clone(),
            allowed_origins: self.allowed_origins.clone(),
            require_mfa: self.require_mfa,
            pkce_required: self.pkce_required,
            updated_at: now,
        }
    }

    /// The origins allowed besides those of its redirect URIs (given with `--allowed-origin`).
    /// Stored merged, so an explicit origin that is also a redirect URI's reads as the latter.
    #[must_use]
    pub fn explicit_origins(&self) -> Vec<String> {
        let derived: Vec<String> = self
            .redirect_uris
            .iter()
            .filter_map(|u| RedirectUri::parse(u).ok())
            .filter_map(|u| Origin::of_redirect_uri(&u))
            .map(|o| o.as_str().to_owned())
            .collect();
        self.allowed_origins
            .iter()
            .filter(|o| !derived.contains(o))
            .cloned()
            .collect()
    }
}

/// Writes `changes` to client `id`; `None` when there is no such client.
async fn update(
    conn: &mut AsyncPgConnection,
    id: &str,
    changes: &ClientChanges,
) -> QueryResult<Option<Client>> {
    diesel::update(clients::table.find(id))
        .set(changes)
        .returning(Client::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Replaces a confidential client's secret with a generated one, recorded as
/// `client.secret_rotated`; returns it (to show once), or `None` when there is no such client.
pub async fn rotate_secret(
    conn: &mut AsyncPgConnection,
    id: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<Option<PlainToken>> {
    let secret = generate_secret();
    let hash = secret.hash();
    conn.transaction(async |conn| {
        let n = diesel::update(clients::table.find(id).filter(clients::is_public.eq(false)))
            .set((clients::secret_hash.eq(hash), clients::updated_at.eq(now)))
            .execute(conn)
            .await?;
        if n == 1 {
            record(conn, by, "client.secret_rotated", id, now).await?;
        }
        Ok(n == 1)
    })
    .await
    .map(|rotated| rotated.then_some(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_and_never_wildcards() {
        for ok in [
            "https://app.example.com",
            "https://app.example.com:8443",
            "http://127.0.0.1:5173",
            "http://localhost:3000",
        ] {
            assert_eq!(Origin::parse(ok).map(|o| o.0), Ok(ok.to_owned()), "{ok}");
        }
        for bad in [
            "*",
            "https://*.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://App.Example.com",
            "https://app.example.com:443",
            "http://app.example.com",
            "null",
            "file:///etc",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
        let uris = [
            RedirectUri::parse("https://app.example.com/cb").expect("uri"),
            RedirectUri::parse("https://app.example.com:443/other").expect("uri"),
            RedirectUri::parse("http://127.0.0.1:5173/cb").expect("uri"),
        ];
        let extra = [Origin::parse("https://admin.example.com").expect("origin")];
        assert_eq!(
            cors_origins(&uris, &extra),
            [
                "https://app.example.com",
                "http://127.0.0.1:5173",
                "https://admin.example.com"
            ]
        );
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_http_without_fragments() {
        for ok in [
            "https://app.example.com/callback",
            "http://127.0.0.1:3000/cb",
            "http://[::1]/cb",
            "http://localhost:8000/cb?x=1",
        ] {
            assert!(RedirectUri::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "/relative",
            "javascript:alert(1)",
            "https://user:pw@app.example.com/cb",
            "ftp://example.com/",
        ] {
            assert!(RedirectUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_prefixed_and_verified_only_by_hash() {
        let secret = generate_secret();
        assert!(secret.expose().starts_with(CLIENT_SECRET_PREFIX));
        let client = Client {
            id: "c".into(),
            name: "C".into(),
            secret_hash: Some(secret.hash()),
            is_public: false,
            is_first_party: false,
            redirect_uris: vec!["https://a.example/cb".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec!["authorization_code".into()],
            scopes: vec!["openid".into()],
            audiences: vec![],
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            allowed_origins: vec![],
            require_mfa: false,
            pkce_required: true,
        };
        assert!(client.verify_secret(secret.expose()));
        assert!(!client.verify_secret("kwcs_wrong"));
        assert!(client.has_redirect_uri("https://a.example/cb"));
        assert!(
            !client.has_redirect_uri("https://a.example/cb/"),
            "exact match only"
        );
    }
}
