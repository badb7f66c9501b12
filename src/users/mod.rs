//! People who sign in: their records, names, passwords, second factors, mailed codes, consents,
//! lockout and trusted devices.

pub mod codes;
pub mod consents;
pub mod devices;
pub mod factors;
pub mod lockout;
pub mod name;
pub mod passkeys;
pub mod password;
pub mod recovery_codes;
pub mod reset_requests;
pub mod totp;

use std::fmt;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Actor;
use crate::db::schema::{sessions, trusted_devices, users};
use name::{Email, Role, SignInName, Username};

diesel::define_sql_function! {
    /// SQL `lower(text)`, matching the case-insensitive unique indexes.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

diesel::define_sql_function! {
    /// SQL `lower(text)` of a nullable column (the email).
    #[sql_name = "lower"]
    fn lower_nullable(
        x: diesel::sql_types::Nullable<diesel::sql_types::Text>,
    ) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// A stored user. `id` is the stable OIDC subject.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    /// Stable identifier, never reused; the `sub` of tokens.
    pub id: Uuid,
    /// Display username; unique regardless of case.
    pub username: String,
    /// Optional email; unique regardless of case among verified addresses.
    pub email: Option<String>,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// When the account was created.
    pub created_at: OffsetDateTime,
    /// When the record last changed.
    pub updated_at: OffsetDateTime,
    /// When the password was last set (not changed by a transparent rehash).
    pub password_changed_at: OffsetDateTime,
    /// Set when an operator disabled the account.
    pub disabled_at: Option<OffsetDateTime>,
    /// Roles carried into access tokens (`keyward users set-roles`).
    pub roles: Vec<String>,
    /// Bumped by every cut-off; sessions, codes and access tokens carry the version they were
    /// made under and die with it.
    pub credential_version: i32,
    /// When the person proved they receive mail at `email` (OIDC `email_verified`).
    pub email_verified_at: Option<OffsetDateTime>,
    /// The subject kept from the system they were imported from; `None`: `id` is the subject.
    pub subject: Option<String>,
}

impl User {
    /// The `sub` of their tokens: the kept subject, else the id.
    #[must_use]
    pub fn sub(&self) -> String {
        self.subject.clone().unwrap_or_else(|| self.id.to_string())
    }

    /// Whether the account may not sign in.
    #[must_use]
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }

    /// Whether `email` is proven (OIDC Core §5.1 `email_verified`).
    #[must_use]
    pub fn email_verified(&self) -> bool {
        self.email.is_some() && self.email_verified_at.is_some()
    }

    /// The address and whether it is proven, as the `email` scope releases them.
    #[must_use]
    pub fn email_claim(&self) -> Option<(&str, bool)> {
        let verified = self.email_verified();
        self.email.as_deref().map(|e| (e, verified))
    }
}

impl User {
    /// An entity tag (RFC 9110 §8.8.3) of everything an operator can see and change: a change of
    /// any of it (or a cut-off) changes the tag, so `If-Match` catches a lost update.
    #[must_use]
    pub fn entity_tag(&self) -> String {
        let seen = serde_json::json!([
            self.id,
            self.username,
            self.email,
            self.email_verified_at
                .map(OffsetDateTime::unix_timestamp_nanos),
            self.roles,
            self.disabled_at.map(OffsetDateTime::unix_timestamp_nanos),
            self.credential_version,
            self.password_changed_at.unix_timestamp_nanos(),
            self.updated_at.unix_timestamp_nanos(),
        ]);
        crate::crypto::entity_tag(seen.to_string().as_bytes())
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password hash: an offline-crackable secret has no place in logs.
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

/// A user about to be created.
#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    id: Uuid,
    username: &'a str,
    email: Option<&'a str>,
    password_hash: &'a str,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    password_changed_at: OffsetDateTime,
    email_verified_at: Option<OffsetDateTime>,
    subject: Option<&'a str>,
}

impl<'a> NewUser<'a> {
    /// The same user, known to apps as `subject` (kept from the system they come from).
    #[must_use]
    pub fn with_subject(mut self, subject: &'a str) -> Self {
        self.subject = Some(subject);
        self
    }

    /// The same user, with the address already proven (an operator vouches for it).
    #[must_use]
    pub fn email_verified(mut self) -> Self {
        if self.email.is_some() {
            self.email_verified_at = Some(self.created_at);
        }
        self
    }

    /// The same user under `id` (an imported user keeps the `sub` apps already know).
    #[must_use]
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// A new user with a fresh id, created at `now`.
    #[must_use]
    pub fn new(
        username: &'a Username,
        email: Option<&'a Email>,
        password_hash: &'a str,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: Uuid::new_v4(),
            username: username.as_str(),
            email: email.map(Email::as_str),
            password_hash,
            created_at: now,
            updated_at: now,
            password_changed_at: now,
            email_verified_at: None,
            subject: None,
        }
    }
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// Another account has this username (in any case).
    #[error("That username is taken.")]
    UsernameTaken,
    /// Another account has this email (in any case).
    #[error("An account with that email already exists.")]
    EmailTaken,
    /// Another account, or a client, is known by this `sub`.
    #[error("an account or a client is already known by this sub")]
    SubTaken,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DieselError),
}

/// Inserts a user; the unique indexes, not a prior read, decide whether the name is free. A
/// kept subject must be no client's id either (RFC 9700 §4.15: a client's own token has its id
/// as `sub`): checked under the name's lock, which client registration takes too.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewUser<'_>,
) -> Result<User, CreateUserError> {
    if let Some(subject) = new.subject
        && crate::db::holder_of_name(conn, subject).await?.is_some()
    {
        return Err(CreateUserError::SubTaken);
    }
    diesel::insert_into(users::table)
        .values(new)
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .map_err(|e| match &e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                match info.constraint_name() {
                    Some("users_verified_email_lower_key") => CreateUserError::EmailTaken,
                    Some("users_subject_key" | "users_pkey") => CreateUserError::SubTaken,
                    _ => CreateUserError::UsernameTaken,
                }
            }
            _ => CreateUserError::Db(e),
        })
}

/// Creates an account (sign-up, an operator) and records `user.created` in the same transaction.
pub async fn create(
    conn: &mut AsyncPgConnection,
    new: &NewUser<'_>,
    by: &Actor,
) -> Result<User, CreateUserError> {
    conn.transaction(async |conn| {
        let user = insert(conn, new).await?;
        crate::audit::insert(
            conn,
            &by.event("user.created", new.created_at).user(user.id),
        )
        .await?;
        Ok(user)
    })
    .await
}

/// Finds a user by username, ignoring case.
pub async fn find_by_username(
    conn: &mut AsyncPgConnection,
    username: &Username,
) -> QueryResult<Option<User>> {
    users::table
        .filter(lower(users::username).eq(username.key()))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// The account whose verified address is `email`, ignoring case (at most one: they are unique).
pub async fn find_by_verified_email(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<User>> {
    users::table
        .filter(lower_nullable(users::email).eq(email.to_lowercase()))
        .filter(users::email_verified_at.is_not_null())
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// The account a sign-in name names: a username, or an address; an address names the account
/// that verified it, or else the one account that has it unverified (so a person whose sign-in
/// waits for verification can sign in with it), and none when several do.
pub async fn find_for_sign_in(
    conn: &mut AsyncPgConnection,
    name: &SignInName,
) -> QueryResult<Option<User>> {
    let email = match name {
        SignInName::Username(u) => return find_by_username(conn, u).await,
        SignInName::Email(e) => e.as_str(),
    };
    if let Some(user) = find_by_verified_email(conn, email).await? {
        return Ok(Some(user));
    }
    let mut holders: Vec<User> = users::table
        .filter(lower_nullable(users::email).eq(email.to_lowercase()))
        .select(User::as_select())
        .limit(2)
        .load(conn)
        .await?;
    Ok(if holders.len() == 1 {
        holders.pop()
    } else {
        None
    })
}

/// Marks `email` proven for `user`, if it is still the account's address; recorded as
/// `user.email_verified`. `Ok(false)` when the account no longer has that address (changed
/// since the code was sent); [`EmailTaken`] when another account verified it first.
pub async fn mark_email_verified(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    email: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<bool, EmailTaken> {
    conn.transaction(async |conn| {
        let updated = diesel::update(users::table.find(user))
            .filter(lower_nullable(users::email).eq(email.to_lowercase()))
            .set((users::email_verified_at.eq(now), users::updated_at.eq(now)))
            .execute(conn)
            .await
            .map_err(EmailTaken::from_update)?;
        if updated == 1 {
            let event = by.event("user.email_verified", now).user(user);
            crate::audit::insert(conn, &event).await?;
        }
        Ok(updated == 1)
    })
    .await
}

/// Moves the account to `email`, proven (its code was spent): recorded as `user.email_changed`.
/// [`EmailTaken`] when another account verified that address first.
pub async fn change_email(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    email: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<(), EmailTaken> {
    conn.transaction(async |conn| {
        diesel::update(users::table.find(user))
            .set((
                users::email.eq(email),
                users::email_verified_at.eq(now),
                users::updated_at.eq(now),
            ))
            .execute(conn)
            .await
            .map_err(EmailTaken::from_update)?;
        crate::audit::insert(conn, &by.event("user.email_changed", now).user(user)).await?;
        Ok(())
    })
    .await
}

/// Why an address could not be marked verified.
#[derive(Debug, thiserror::Error)]
pub enum EmailTaken {
    /// Another account verified this address first.
    #[error("Another account already uses that email address.")]
    Taken,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DieselError),
}

impl EmailTaken {
    /// An update that made an address verified: the unique index on verified addresses refusing
    /// it means another account has it.
    fn from_update(e: DieselError) -> Self {
        match &e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => Self::Taken,
            _ => Self::Db(e),
        }
    }
}

/// The user a token's `sub` names: by id when it is a UUID (and they keep no other subject),
/// else by the kept subject.
pub async fn find_by_sub(conn: &mut AsyncPgConnection, sub: &str) -> QueryResult<Option<User>> {
    let query = users::table.select(User::as_select()).into_boxed();
    let query = match Uuid::parse_str(sub) {
        Ok(id) if id.to_string() == sub => query
            .filter(users::id.eq(id))
            .filter(users::subject.is_null()),
        // PostgreSQL text cannot hold NUL; no subject has one.
        _ if sub.contains('\0') => return Ok(None),
        _ => query.filter(users::subject.eq(sub.to_owned())),
    };
    query.first(conn).await.optional()
}

/// Finds a user by id.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Every user, oldest first.
pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<User>> {
    users::table
        .order((users::created_at.asc(), users::id.asc()))
        .select(User::as_select())
        .load(conn)
        .await
}

/// What a page of users is narrowed to (each `Some` must match).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Known to apps by this `sub`.
    pub sub: Option<name::Subject>,
    /// This username, in any case.
    pub username: Option<Username>,
    /// This address, in any case.
    pub email: Option<Email>,
    /// Holding this role.
    pub role: Option<Role>,
    /// Disabled (`true`) or not.
    pub disabled: Option<bool>,
}

/// Where a page starts: after this user in (created, id) order. New users sort after every
/// existing one, so paging through while others are added neither repeats nor skips anyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct After {
    /// The last user's creation time.
    pub created_at: OffsetDateTime,
    /// The last user's id.
    pub id: Uuid,
}

/// Up to `limit` users matching `filter` after `after`, oldest first (keyset pagination).
pub async fn page(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    after: Option<After>,
    limit: i64,
) -> QueryResult<Vec<User>> {
    let mut query = users::table
        .order((users::created_at.asc(), users::id.asc()))
        .select(User::as_select())
        .limit(limit)
        .into_boxed();
    match &filter.sub {
        Some(name::Subject::Id(id)) => {
            query = query
                .filter(users::id.eq(*id))
                .filter(users::subject.is_null());
        }
        Some(name::Subject::Kept(sub)) => query = query.filter(users::subject.eq(sub.clone())),
        None => {}
    }
    if let Some(name) = &filter.username {
        query = query.filter(lower(users::username).eq(name.key()));
    }
    if let Some(email) = &filter.email {
        query = query.filter(lower_nullable(users::email).eq(email.as_str().to_lowercase()));
    }
    if let Some(role) = &filter.role {
        query = query.filter(users::roles.contains(vec![role.as_str().to_owned()]));
    }
    match filter.disabled {
        Some(true) => query = query.filter(users::disabled_at.is_not_null()),
        Some(false) => query = query.filter(users::disabled_at.is_null()),
        None => {}
    }
    if let Some(after) = after {
        query = query.filter(
            users::created_at.gt(after.created_at).or(users::created_at
                .eq(after.created_at)
                .and(users::id.gt(after.id))),
        );
    }
    query.load(conn).await
}

/// Reads a user and locks their row until the transaction ends (a conditional update compares
/// what it read with what it will change).
pub async fn find_for_update(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Renames an account (recorded as `user.renamed` with both names); [`CreateUserError::UsernameTaken`]
/// when another account has the name in any case. The `sub` stays: apps never key on names.
pub async fn update_username(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    username: &Username,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<(), CreateUserError> {
    conn.transaction(async |conn| {
        let before: String = users::table
            .find(id)
            .select(users::username)
            .first(conn)
            .await?;
        diesel::update(users::table.find(id))
            .set((
                users::username.eq(username.as_str()),
                users::updated_at.eq(now),
            ))
            .execute(conn)
            .await
            .map_err(|e| match &e {
                DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                    CreateUserError::UsernameTaken
                }
                _ => CreateUserError::Db(e),
            })?;
        let details = serde_json::json!({ "from": before, "to": username.as_str() });
        record(conn, by, "user.renamed", id, details, now).await?;
        Ok(())
    })
    .await
}

/// Sets (or clears) an account's address as an operator says: proven when they vouch for it,
/// else unproven until the person confirms a code. Recorded as `user.email_set` (no address in
/// the trail). [`EmailTaken`] when another account verified that address.
pub async fn update_email(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    email: Option<&Email>,
    verified: bool,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<(), EmailTaken> {
    let verified_at = (email.is_some() && verified).then_some(now);
    conn.transaction(async |conn| {
        diesel::update(users::table.find(id))
            .set((
                users::email.eq(email.map(Email::as_str)),
                users::email_verified_at.eq(verified_at),
                users::updated_at.eq(now),
            ))
            .execute(conn)
            .await
            .map_err(EmailTaken::from_update)?;
        let details =
            serde_json::json!({ "has_email": email.is_some(), "verified": verified_at.is_some() });
        record(conn, by, "user.email_set", id, details, now).await?;
        Ok(())
    })
    .await
}

/// Replaces a hash made with old parameters; the password itself did not change.
pub async fn update_password_hash(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    password_hash: &str,
    now: OffsetDateTime,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(password_hash),
            users::updated_at.eq(now),
        ))
        .execute(conn)
        .await
}

/// Sets a new password, as a cut-off: everything issued under the old one ends. Recorded as
/// `user.password_set`.
pub async fn update_password(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    password_hash: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<usize> {
    let password_hash = password_hash.to_owned();
    conn.transaction(async |conn| {
        let n = diesel::update(users::table.find(id))
            .set((
                users::password_hash.eq(&password_hash),
                users::password_changed_at.eq(now),
                users::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        if n == 1 {
            let families = cut_off(conn, id, "password changed", now).await?;
            record(
                conn,
                by,
                "user.password_set",
                id,
                families_json(&families),
                now,
            )
            .await?;
        }
        Ok(n)
    })
    .await
}

/// Ends everything the user had signed in with, now and in flight: bumps the credential version
/// (under the user's row lock, so a sign-in or code redemption holding that lock in share mode
/// either commits first and is swept up here, or sees the new version and is refused), then
/// deletes sessions and device trust and revokes every refresh family. Returns the families.
pub async fn cut_off(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    reason: &str,
    now: OffsetDateTime,
) -> QueryResult<Vec<Uuid>> {
    let reason = reason.to_owned();
    conn.transaction(async |conn| {
        diesel::update(users::table.find(id))
            .set(users::credential_version.eq(users::credential_version + 1))
            .execute(conn)
            .await?;
        delete_sign_ins(conn, id, &reason, now).await
    })
    .await
}

/// Reads a user and holds their row in share mode until the transaction ends: a cut-off waits
/// for whatever this transaction writes on the user's behalf.
pub async fn find_for_share(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .for_share()
        .first(conn)
        .await
        .optional()
}

/// Replaces a user's roles: a privilege change, recorded as `user.roles_set` with the new roles.
pub async fn update_roles(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    roles: &[Role],
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<usize> {
    let roles: Vec<&str> = roles.iter().map(Role::as_str).collect();
    conn.transaction(async |conn| {
        let n = diesel::update(users::table.find(id))
            .set((users::roles.eq(&roles), users::updated_at.eq(now)))
            .execute(conn)
            .await?;
        if n == 1 {
            let details = serde_json::json!({ "roles": roles });
            record(conn, by, "user.roles_set", id, details, now).await?;
        }
        Ok(n)
    })
    .await
}

/// Ends every session and refresh family of a user ([`cut_off`]), recorded as
/// `user.signed_out_everywhere`; returns the revoked families.
pub async fn sign_out_everywhere(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<Vec<Uuid>> {
    conn.transaction(async |conn| {
        let families = cut_off(conn, id, "signed out everywhere", now).await?;
        let details = families_json(&families);
        record(conn, by, "user.signed_out_everywhere", id, details, now).await?;
        Ok(families)
    })
    .await
}

/// Records an event about user `id` by `by`, inside the operation's transaction.
async fn record(
    conn: &mut AsyncPgConnection,
    by: &Actor,
    kind: &str,
    id: Uuid,
    details: serde_json::Value,
    now: OffsetDateTime,
) -> QueryResult<()> {
    crate::audit::insert(conn, &by.event(kind, now).user(id).details(details)).await
}

fn families_json(families: &[Uuid]) -> serde_json::Value {
    serde_json::json!({ "families": families })
}

/// Disables a user and ends their sessions at once (recorded as `user.disabled`); returns false
/// if already disabled, when the cut-off still runs (it is idempotent) but nothing is recorded.
pub async fn update_disabled(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<bool> {
    conn.transaction(async |conn| {
        let n = diesel::update(users::table.find(id).filter(users::disabled_at.is_null()))
            .set((users::disabled_at.eq(now), users::updated_at.eq(now)))
            .execute(conn)
            .await?;
        let families = cut_off(conn, id, "user disabled", now).await?;
        if n == 1 {
            record(conn, by, "user.disabled", id, families_json(&families), now).await?;
        }
        Ok(n == 1)
    })
    .await
}

/// Enables a disabled user again (recorded as `user.enabled`); returns false if they were not
/// disabled. Nothing of before comes back: the cut-off at disabling ended it for good.
pub async fn update_enabled(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<bool> {
    conn.transaction(async |conn| {
        let n = diesel::update(
            users::table
                .find(id)
                .filter(users::disabled_at.is_not_null()),
        )
        .set((
            users::disabled_at.eq(None::<OffsetDateTime>),
            users::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
        if n == 1 {
            record(conn, by, "user.enabled", id, serde_json::json!({}), now).await?;
        }
        Ok(n == 1)
    })
    .await
}

/// Deletes a user: first the cut-off (so every token issued to them is revoked and recorded as
/// such), then the account and its personal data (consents, devices and codes go with it). The
/// audit trail keeps the user id, no name or address (`user.deleted`). Returns the revoked
/// families.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<Vec<Uuid>> {
    conn.transaction(async |conn| {
        let families = cut_off(conn, id, "user deleted", now).await?;
        let n = diesel::delete(users::table.find(id)).execute(conn).await?;
        if n == 1 {
            record(conn, by, "user.deleted", id, families_json(&families), now).await?;
        }
        Ok(families)
    })
    .await
}

/// Deletes unredeemed codes, browser sessions and trusted devices and revokes every refresh-token
/// family (with the access tokens they issued); returns the revoked family ids. Part of
/// [`cut_off`].
async fn delete_sign_ins(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    reason: &str,
    now: OffsetDateTime,
) -> QueryResult<Vec<Uuid>> {
    // Codes first: a redemption in flight holds its code's row lock, so this waits for it to
    // commit (the code is then used and stays), and the family it started is revoked below.
    crate::tokens::codes::delete_unredeemed(conn, id, None).await?;
    let families =
        crate::tokens::refresh::revoke_families_of_user(conn, id, None, reason, now).await?;
    diesel::delete(sessions::table.filter(sessions::user_id.eq(id)))
        .execute(conn)
        .await?;
    diesel::delete(trusted_devices::table.filter(trusted_devices::user_id.eq(id)))
        .execute(conn)
        .await?;
    Ok(families)
}
