//! The management API's rules: who may call it (a service client's own access token, judged as a
//! resource server and introspection would), and the user operations that take more than one
//! noun: idempotent creation, conditional updates, paging cursors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::clients::{self, idempotency};
use crate::error::AppError;
use crate::keys::keyring::KeyRing;
use crate::oauth::access::{Judged, judge};
use crate::oauth::import::{Imported, import_value};
use crate::scope;
use crate::users::name::{Email, Role, Username};
use crate::users::password::{PasswordHasher, check_new_password};
use crate::users::{self, CreateUserError, EmailTaken, User};

/// A service client the management API accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Its `client_id`, named as the actor of every event it causes.
    pub client_id: String,
}

impl Caller {
    /// The actor its operations are recorded under.
    #[must_use]
    pub fn actor(&self, ip: Option<ipnet::IpNet>) -> Actor {
        Actor::client(&self.client_id, ip)
    }
}

/// A management operation: the scope it needs and the name the trail records a read under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The `admin:*` scope it needs.
    pub scope: &'static str,
    /// `area.verb`-like name (`users.list`), recorded with each read.
    pub name: &'static str,
}

impl Operation {
    /// Whether it only reads (then the call itself is what the trail records: a change records
    /// its own event).
    #[must_use]
    pub fn is_read(&self) -> bool {
        matches!(self.scope.rsplit_once('.'), Some((_, "read")))
    }
}

/// Why a call was not accepted (RFC 6750 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a live management token: bad signature, expired, revoked, another audience, a
    /// person's token, or its client no longer registered for management.
    InvalidToken,
    /// A live management token without the scope this operation needs.
    InsufficientScope(&'static str),
}

/// Judges `token` for `operation`: a live access token of ours (signature, `typ`, issuer,
/// expiry, not revoked, its client still registered), whose audience is the management API,
/// whose subject is its client (`client_credentials`, never a person: RFC 9068 §2.2 makes `sub` =
/// `client_id` for those), and whose client is still a confidential client registered for the
/// operation's scope (dropping a scope from the client takes effect at once). An accepted read
/// is recorded as `admin.read` (the operation, the client, its address): who looked at people's
/// data is on the trail too.
pub async fn authenticate(
    conn: &mut AsyncPgConnection,
    keys: &KeyRing,
    issuer: &str,
    token: &str,
    operation: &Operation,
    ip: Option<ipnet::IpNet>,
    now: OffsetDateTime,
) -> diesel::QueryResult<Result<Caller, Refused>> {
    let needed = operation.scope;
    let Judged::Live(live) = judge(conn, keys, issuer, token, now).await? else {
        return Ok(Err(Refused::InvalidToken));
    };
    let claims = &live.claims;
    let is_client_token = live.user.is_none() && claims.sub == claims.client_id;
    if !is_client_token || !claims.aud.contains(&scope::admin_audience(issuer)) {
        return Ok(Err(Refused::InvalidToken));
    }
    let client = &live.client;
    if !claims.scopes().contains(needed) {
        return Ok(Err(Refused::InsufficientScope(needed)));
    }
    if client.is_public || !client.scopes.iter().any(|s| s == needed) {
        return Ok(Err(Refused::InvalidToken));
    }
    let caller = Caller {
        client_id: claims.client_id.clone(),
    };
    if operation.is_read() {
        let by = caller.actor(ip);
        let event = by
            .event("admin.read", now)
            .client(&caller.client_id)
            .details(serde_json::json!({ "operation": operation.name }));
        audit::insert(conn, &event).await?;
    }
    Ok(Ok(caller))
}

/// A user as the management API shows them: no password hash, no secret of any kind.
#[derive(Clone, Debug, Serialize)]
pub struct UserView {
    /// The account's id (the `/admin/v1/users/{id}` of it).
    pub id: Uuid,
    /// The `sub` of their tokens: the id, or the subject kept from the system they came from.
    pub sub: String,
    /// The username.
    pub username: String,
    /// The address, if any.
    pub email: Option<String>,
    /// Whether the address is proven.
    pub email_verified: bool,
    /// Roles carried in access tokens.
    pub roles: Vec<String>,
    /// Whether they may not sign in.
    pub disabled: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl UserView {
    /// The view of `user`.
    #[must_use]
    pub fn of(user: &User) -> Self {
        let at = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        Self {
            id: user.id,
            sub: user.sub(),
            username: user.username.clone(),
            email: user.email.clone(),
            email_verified: user.email_verified(),
            roles: user.roles.clone(),
            disabled: user.is_disabled(),
            created_at: at(user.created_at),
            updated_at: at(user.updated_at),
        }
    }
}

/// A retried creation's key and the request it came with.
#[derive(Clone, Copy, Debug)]
pub struct Once<'a> {
    /// The caller.
    pub client_id: &'a str,
    /// Its `Idempotency-Key`.
    pub key: &'a idempotency::IdempotencyKey,
    /// SHA-256 of the request.
    pub fingerprint: [u8; 32],
}

/// What a creation came to.
#[derive(Debug)]
pub enum Creation {
    /// Done now, or done before under the same key (the same answer again).
    Done(Imported),
    /// The key was used before for a different request (draft-ietf-httpapi-idempotency-key-header
    /// §2.7: 422).
    KeyReused,
}

/// Creates a user from `record` (the fields of an import line, or a plain `password`), once per
/// idempotency key: the key is held for the whole transaction, so a retry sent while the first
/// request still runs waits for it and then gets its outcome; nothing is created twice.
pub async fn create_user(
    conn: &mut AsyncPgConnection,
    hasher: &PasswordHasher,
    record: serde_json::Value,
    once: Option<Once<'_>>,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<Creation, AppError> {
    let Some(once) = once else {
        return Ok(Creation::Done(
            import_value(conn, hasher, record, by, now).await?,
        ));
    };
    conn.transaction(async |conn| {
        if let Some(kept) = idempotency::claim(conn, once.client_id, once.key, now).await? {
            if kept.fingerprint != once.fingerprint {
                return Ok(Creation::KeyReused);
            }
            let outcome = serde_json::from_value(kept.outcome)
                .map_err(|e| AppError::Internal(anyhow::Error::new(e)))?;
            return Ok(Creation::Done(outcome));
        }
        let outcome = import_value(conn, hasher, record, by, now).await?;
        let kept = idempotency::Kept {
            fingerprint: once.fingerprint.to_vec(),
            outcome: serde_json::to_value(&outcome)
                .map_err(|e| AppError::Internal(anyhow::Error::new(e)))?,
        };
        idempotency::keep(conn, once.client_id, once.key, &kept, now).await?;
        Ok(Creation::Done(outcome))
    })
    .await
}

/// A change to a user; each field present replaces that setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// A new username.
    #[serde(default)]
    pub username: Option<String>,
    /// A new address; `null` removes it.
    #[serde(default)]
    pub email: Field<String>,
    /// Whether the (new or current) address counts as proven.
    #[serde(default)]
    pub email_verified: Option<bool>,
    /// The roles, replacing the current ones.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

/// A patch field that can be left alone (absent), cleared (`null`) or set (RFC 7396's reading).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Field<T> {
    /// Not in the patch: keep.
    #[default]
    Absent,
    /// `null`: remove.
    Null,
    /// A new value.
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Only called for a present field (`default` covers an absent one).
        Option::<T>::deserialize(d).map(|v| v.map_or(Self::Null, Self::Value))
    }
}

/// Why an update was not made; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// `If-Match` names another version (RFC 9110 §13.1.1): someone changed the user since.
    #[error("the user changed since it was read")]
    Stale,
    /// A value breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// Another account holds the name or the address.
    #[error("{0}")]
    Conflict(String),
    /// Something broke.
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<diesel::result::Error> for UpdateError {
    fn from(e: diesel::result::Error) -> Self {
        Self::App(e.into())
    }
}

/// The checked values of a patch.
struct Checked {
    username: Option<Username>,
    email: Field<Email>,
    roles: Option<Vec<Role>>,
}

fn check(patch: &UserPatch) -> Result<Checked, UpdateError> {
    let invalid =
        |field: &str, e: &dyn std::fmt::Display| UpdateError::Invalid(format!("{field}: {e}"));
    Ok(Checked {
        username: match &patch.username {
            None => None,
            Some(u) => Some(Username::parse(u).map_err(|e| invalid("username", &e))?),
        },
        email: match &patch.email {
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
            Field::Value(raw) => {
                match Email::parse_optional(raw).map_err(|e| invalid("email", &e))? {
                    Some(email) => Field::Value(email),
                    None => Field::Null,
                }
            }
        },
        roles: match &patch.roles {
            None => None,
            Some(r) => Some(Role::parse_all(r).map_err(|e| invalid("roles", &e))?),
        },
    })
}

/// Applies `patch` to user `id` if `if_match` still names their current version, all in one
/// transaction under the user's row lock; each change is recorded by its own operation.
pub async fn update_user(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    if_match: Option<&str>,
    patch: &UserPatch,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<User, UpdateError> {
    let checked = check(patch)?;
    conn.transaction(async |conn| {
        let user = users::find_for_update(conn, id)
            .await?
            .ok_or(UpdateError::NotFound)?;
        if !crate::crypto::if_match_allows(if_match, &user.entity_tag()) {
            return Err(UpdateError::Stale);
        }
        if let Some(name) = checked
            .username
            .as_ref()
            .filter(|n| n.as_str() != user.username)
        {
            users::update_username(conn, id, name, by, now)
                .await
                .map_err(|e| match e {
                    CreateUserError::Db(e) => e.into(),
                    other => UpdateError::Conflict(other.to_string()),
                })?;
        }
        let email_change = match (&checked.email, patch.email_verified) {
            (Field::Value(email), verified) => {
                Some((Some(email.clone()), verified.unwrap_or(false)))
            }
            (Field::Null, _) => Some((None, false)),
            (Field::Absent, Some(verified)) => {
                let current = Email::parse_optional(user.email.as_deref().unwrap_or(""))
                    .map_err(|e| UpdateError::Invalid(format!("email: {e}")))?;
                Some((current, verified))
            }
            (Field::Absent, None) => None,
        };
        if let Some((email, verified)) = email_change {
            if verified && email.is_none() {
                return Err(UpdateError::Invalid(
                    "email_verified: there is no address to vouch for".into(),
                ));
            }
            users::update_email(conn, id, email.as_ref(), verified, by, now)
                .await
                .map_err(|e| match e {
                    EmailTaken::Db(e) => e.into(),
                    EmailTaken::Taken => UpdateError::Conflict(e.to_string()),
                })?;
        }
        if let Some(roles) = &checked.roles {
            users::update_roles(conn, id, roles, by, now).await?;
        }
        users::find(conn, id).await?.ok_or(UpdateError::NotFound)
    })
    .await
}

/// Sets `user`'s password as an operator: the password rules, the configured argon2id, then the
/// cut-off (`user.password_set`). `Ok(Err(reason))` when the password breaks a rule.
pub async fn set_password(
    conn: &mut AsyncPgConnection,
    hasher: &PasswordHasher,
    user: &User,
    password: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<Result<(), String>, AppError> {
    let username = Username::parse(&user.username).map_err(|e| AppError::Internal(e.into()))?;
    if let Err(e) = check_new_password(password, &username) {
        return Ok(Err(e.to_string()));
    }
    let hash = hasher.hash(password).await?;
    users::update_password(conn, user.id, &hash, by, now).await?;
    Ok(Ok(()))
}

/// Most users on one page, and how many when the caller does not say.
pub const PAGE_MAX: i64 = 200;
/// The default page size.
pub const PAGE_DEFAULT: i64 = 50;

/// An opaque page cursor: where the next page starts. Tampering only moves the start.
#[must_use]
pub fn encode_cursor(after: users::After) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}.{}",
        after.created_at.unix_timestamp_nanos(),
        after.id
    ))
}

/// Reads a cursor made by [`encode_cursor`]; `None` for anything else.
#[must_use]
pub fn decode_cursor(raw: &str) -> Option<users::After> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (nanos, id) = text.split_once('.')?;
    Some(users::After {
        created_at: OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?,
        id: Uuid::parse_str(id).ok()?,
    })
}

/// One page of users, and the cursor of the next one when there may be more.
pub async fn page_of_users(
    conn: &mut AsyncPgConnection,
    filter: &users::Filter,
    after: Option<users::After>,
    limit: i64,
) -> diesel::QueryResult<(Vec<User>, Option<String>)> {
    let limit = limit.clamp(1, PAGE_MAX);
    let page = users::page(conn, filter, after, limit).await?;
    let next = (i64::try_from(page.len()) == Ok(limit))
        .then(|| page.last())
        .flatten()
        .map(|u| {
            encode_cursor(users::After {
                created_at: u.created_at,
                id: u.id,
            })
        });
    Ok((page, next))
}

/// A client as the management API and `clients show --json` describe it (never its secret).
#[derive(Debug, Serialize)]
pub struct ClientView {
    client_id: String,
    name: String,
    /// `public` or `confidential`.
    #[serde(rename = "type")]
    kind: &'static str,
    first_party: bool,
    require_mfa: bool,
    /// `required` or `optional` (a `nonce` instead, confidential clients only).
    pkce: &'static str,
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    scope: String,
    audiences: Vec<String>,
    allowed_origins: Vec<String>,
    created_at: String,
}

impl ClientView {
    /// The view of `client`.
    #[must_use]
    pub fn of(c: &clients::Client) -> Self {
        Self {
            client_id: c.id.clone(),
            name: c.name.clone(),
            kind: if c.is_public {
                "public"
            } else {
                "confidential"
            },
            first_party: c.is_first_party,
            require_mfa: c.require_mfa,
            pkce: if c.pkce_required {
                "required"
            } else {
                "optional"
            },
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            grant_types: c.grant_types.clone(),
            scope: c.scopes.join(" "),
            audiences: c.audiences.clone(),
            allowed_origins: c.allowed_origins.clone(),
            created_at: c.created_at.format(&Rfc3339).unwrap_or_default(),
        }
    }
}

/// A client to register, as the management API is sent it (`keyward clients create`'s options).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRequest {
    name: String,
    #[serde(default)]
    client_id: Option<String>,
    /// No secret: an SPA or a native app.
    #[serde(default)]
    public: bool,
    #[serde(default)]
    first_party: bool,
    #[serde(default)]
    require_mfa: bool,
    /// `optional`: code requests may carry a `nonce` instead of PKCE.
    #[serde(default)]
    pkce: Option<PkceRule>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    grant_types: Vec<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
}

/// Whether a client's code requests must carry PKCE, as JSON spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PkceRule {
    /// Every code request carries an S256 challenge.
    Required,
    /// A `nonce` may stand in (confidential OpenID Connect clients only).
    Optional,
}

/// A change to a client, as the management API is sent it: each field present replaces that
/// setting (an empty list clears it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPatch {
    name: Option<String>,
    first_party: Option<bool>,
    require_mfa: Option<bool>,
    pkce: Option<PkceRule>,
    redirect_uris: Option<Vec<String>>,
    post_logout_redirect_uris: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    scope: Option<String>,
    audiences: Option<Vec<String>>,
}

/// Why a client operation of the management API was not done; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No such client.
    #[error("no such client")]
    NotFound,
    /// Management clients (and management scopes) are the operator's, through `keyward
    /// clients`: a token that may manage clients must not mint itself more power.
    #[error("management clients are registered and changed with `keyward clients` only")]
    Management,
    /// `If-Match` names another version.
    #[error("the client changed since it was read")]
    Stale,
    /// The registration breaks a rule.
    #[error(transparent)]
    Invalid(#[from] clients::registration::RegistrationError),
    /// The id is taken (or reads as a user's).
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// Registers a client from the management API: the registration rules of every adapter, and no
/// management scope. Returns it with its generated secret (shown once; `None` for a public one).
pub async fn register_client(
    conn: &mut AsyncPgConnection,
    request: ClientRequest,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<(clients::Client, Option<crate::tokens::opaque::PlainToken>), ClientError> {
    use clients::registration::{Registration, Secret};
    let scope = request
        .scope
        .unwrap_or_else(|| "openid profile email".to_owned());
    if scope.split(' ').any(|s| s.starts_with(scope::ADMIN_PREFIX)) {
        return Err(ClientError::Management);
    }
    let checked = Registration {
        name: request.name,
        id: request.client_id,
        secret: (!request.public).then_some(Secret::Generate),
        is_first_party: request.first_party,
        redirect_uris: request.redirect_uris,
        post_logout_redirect_uris: request.post_logout_redirect_uris,
        allowed_origins: request.allowed_origins,
        grants: request.grant_types,
        scope,
        audiences: request.audiences,
        require_mfa: request.require_mfa,
        pkce_optional: request.pkce == Some(PkceRule::Optional),
    }
    .check(now)?;
    match clients::register(conn, &checked.new, by).await {
        Ok(client) => Ok((client, checked.secret)),
        Err(clients::CreateClientError::Db(e)) => Err(e.into()),
        Err(e) => Err(ClientError::Conflict(e.to_string())),
    }
}

/// Locks client `id` for the rest of the transaction and refuses a management client.
async fn lock_ordinary_client(
    conn: &mut AsyncPgConnection,
    id: &str,
) -> Result<clients::Client, ClientError> {
    let client = clients::find_for_update(conn, id)
        .await?
        .ok_or(ClientError::NotFound)?;
    if client.is_management() {
        return Err(ClientError::Management);
    }
    Ok(client)
}

/// Changes client `id` if `if_match` still names its version, under its row lock, checked as
/// a registration; never to or from a management client.
pub async fn edit_client(
    conn: &mut AsyncPgConnection,
    id: &str,
    if_match: Option<&str>,
    patch: ClientPatch,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<clients::Client, ClientError> {
    if patch
        .scope
        .as_deref()
        .is_some_and(|s| s.split(' ').any(|s| s.starts_with(scope::ADMIN_PREFIX)))
    {
        return Err(ClientError::Management);
    }
    let edit = clients::registration::Edit {
        name: patch.name,
        is_first_party: patch.first_party,
        redirect_uris: patch.redirect_uris,
        allowed_origins: patch.allowed_origins,
        post_logout_redirect_uris: patch.post_logout_redirect_uris,
        grants: patch.grant_types,
        scope: patch.scope,
        audiences: patch.audiences,
        require_mfa: patch.require_mfa,
        pkce_optional: patch.pkce.map(|p| p == PkceRule::Optional),
    };
    conn.transaction(async |conn| {
        let client = lock_ordinary_client(conn, id).await?;
        if !crate::crypto::if_match_allows(if_match, &client.entity_tag()) {
            return Err(ClientError::Stale);
        }
        clients::edit(conn, id, edit, by, now)
            .await
            .map_err(|e| match e {
                clients::EditClientError::NotFound(_) => ClientError::NotFound,
                clients::EditClientError::Invalid(e) => ClientError::Invalid(e),
                clients::EditClientError::Db(e) => ClientError::Db(e),
            })
    })
    .await
}

/// Deletes client `id` as `keyward clients delete` does (a cut-off); never a management client.
/// Returns the revoked refresh families.
pub async fn delete_client(
    conn: &mut AsyncPgConnection,
    id: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<Vec<Uuid>, ClientError> {
    conn.transaction(async |conn| {
        lock_ordinary_client(conn, id).await?;
        crate::oauth::client_removal::delete_client(conn, id, by, now)
            .await?
            .ok_or(ClientError::NotFound)
    })
    .await
}

/// A new secret for client `id`, shown once; never a management client's.
pub async fn rotate_client_secret(
    conn: &mut AsyncPgConnection,
    id: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<crate::tokens::opaque::PlainToken, ClientError> {
    conn.transaction(async |conn| {
        let client = lock_ordinary_client(conn, id).await?;
        if client.is_public {
            return Err(ClientError::Invalid(
                clients::registration::RegistrationError::SecretForPublic,
            ));
        }
        clients::rotate_secret(conn, id, by, now)
            .await?
            .ok_or(ClientError::NotFound)
    })
    .await
}

/// The filters and position of an audit listing, as the caller sent them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    user_id: Option<String>,
    client_id: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// An audit event as the management API shows it.
#[derive(Debug, Serialize)]
pub struct EventView {
    id: i64,
    occurred_at: String,
    kind: String,
    actor: String,
    subject: Option<String>,
    user_id: Option<Uuid>,
    client_id: Option<String>,
    details: serde_json::Value,
}

/// Why an audit listing was not made.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// A filter no event can match, or a cursor this API did not give.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

fn instant(raw: Option<&str>, name: &str) -> Result<Option<OffsetDateTime>, EventsError> {
    raw.map(|r| {
        OffsetDateTime::parse(r, &Rfc3339)
            .map_err(|_| EventsError::Invalid(format!("{name} must be an RFC 3339 time")))
    })
    .transpose()
}

/// Reads the query into a filter; anything no event can carry is refused, not queried.
fn audit_filter(q: &AuditQuery) -> Result<audit::Filter, EventsError> {
    let invalid = |m: &str| EventsError::Invalid(m.to_owned());
    let client_id = match &q.client_id {
        Some(c) if c.is_empty() || c.len() > 255 || c.chars().any(char::is_control) => {
            return Err(invalid("client_id is not a client id"));
        }
        other => other.clone(),
    };
    let kind = match &q.kind {
        Some(k) if !audit::is_kind(k) => {
            return Err(invalid("kind is area.verb, e.g. user.created"));
        }
        other => other.clone(),
    };
    Ok(audit::Filter {
        user_id: q
            .user_id
            .as_deref()
            .map(|u| Uuid::parse_str(u).map_err(|_| invalid("user_id is not a user id")))
            .transpose()?,
        client_id,
        kind,
        since: instant(q.since.as_deref(), "since")?,
        until: instant(q.until.as_deref(), "until")?,
    })
}

/// A page of the audit trail, newest first, and the cursor of the next page when there may be
/// more (the last event's sequence number: events recorded meanwhile never shift a page).
pub async fn events(
    conn: &mut AsyncPgConnection,
    q: &AuditQuery,
) -> Result<(Vec<EventView>, Option<String>), EventsError> {
    let filter = audit_filter(q)?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| EventsError::Invalid("cursor is not one this API gave".into()))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX);
    let page = audit::page(conn, &filter, before, limit).await?;
    let next = (i64::try_from(page.len()) == Ok(limit))
        .then(|| page.last().map(|e| e.id.to_string()))
        .flatten();
    let views = page
        .into_iter()
        .map(|e| EventView {
            id: e.id,
            occurred_at: e.occurred_at.format(&Rfc3339).unwrap_or_default(),
            kind: e.kind,
            actor: e.actor,
            subject: e.subject,
            user_id: e.user_id,
            client_id: e.client_id,
            details: e.details,
        })
        .collect();
    Ok((views, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_garbage_is_none() {
        let after = users::After {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(1_765_000_000_123_456_789)
                .expect("in range"),
            id: Uuid::new_v4(),
        };
        assert_eq!(decode_cursor(&encode_cursor(after)), Some(after));
        for bad in ["", "!!", "bm9wZQ", &URL_SAFE_NO_PAD.encode("1.not-a-uuid")] {
            assert_eq!(decode_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_patch_tells_a_null_email_from_an_absent_one() {
        let absent: UserPatch = serde_json::from_str("{}").expect("valid");
        assert_eq!(absent.email, Field::Absent);
        let null: UserPatch = serde_json::from_str(r#"{"email":null}"#).expect("valid");
        assert_eq!(null.email, Field::Null);
        let set: UserPatch = serde_json::from_str(r#"{"email":"a@b.example"}"#).expect("valid");
        assert_eq!(set.email, Field::Value("a@b.example".to_owned()));
        assert!(serde_json::from_str::<UserPatch>(r#"{"password_hash":"x"}"#).is_err());
    }
}
