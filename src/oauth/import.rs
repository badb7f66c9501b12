//! Creating users from a record (`keyward users create`'s fields, or those of another system with
//! the password hashes it kept): `keyward users import` line by line, and the management API's
//! create and batch import. Each record is created, skipped as already here, or refused with the
//! reason, so a re-run of the same file changes nothing.

use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Actor;
use crate::error::AppError;
use crate::users::name::{Email, Role, Subject, Username};
use crate::users::password::{PasswordHasher, check_new_password, check_stored};
use crate::users::{self, CreateUserError, NewUser};

/// One user record: a line of an import file, or the body of a management API creation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    username: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
    #[serde(default)]
    roles: Vec<String>,
    /// The id apps know the person by, kept as the OIDC `sub` (a UUID becomes the account's id;
    /// anything else, such as a `MongoDB` `ObjectId`, is kept beside it).
    #[serde(default)]
    sub: Option<String>,
    /// The hash the other system kept.
    #[serde(default)]
    password_hash: Option<String>,
    /// Or a password in plain text, checked by the password rules and hashed now.
    #[serde(default)]
    password: Option<String>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the password nor its hash: both are secrets.
        f.debug_struct("Record")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What became of one record (kept as JSON for an idempotent retry).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Imported {
    /// A new account, with its id (the `sub`).
    Created {
        /// The username.
        username: String,
        /// The new account's id.
        id: Uuid,
        /// The `sub` of their tokens: the id, or the subject kept from the old system.
        sub: String,
    },
    /// The username (or the `sub`) is taken already: nothing was changed.
    Skipped {
        /// The username.
        username: String,
        /// Why.
        reason: String,
    },
    /// The line is not a user we can take; nothing was written.
    Refused {
        /// Why, in words that never repeat the hash.
        reason: String,
    },
}

fn refused(reason: impl Into<String>) -> Imported {
    Imported::Refused {
        reason: reason.into(),
    }
}

/// Imports one line: see [`import_record`].
pub async fn import_line(
    conn: &mut AsyncPgConnection,
    hasher: &PasswordHasher,
    line: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<Imported, AppError> {
    match serde_json::from_str(line) {
        Ok(record) => import_record(conn, hasher, record, by, now).await,
        Err(e) => Ok(refused(format!("not a user record ({e})"))),
    }
}

/// Creates one user from a JSON record: see [`import_record`].
pub async fn import_value(
    conn: &mut AsyncPgConnection,
    hasher: &PasswordHasher,
    value: serde_json::Value,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<Imported, AppError> {
    match serde_json::from_value(value) {
        Ok(record) => import_record(conn, hasher, record, by, now).await,
        Err(e) => Ok(refused(format!("not a user record ({e})"))),
    }
}

/// The hash to store: the one given (argon2id, bcrypt, PBKDF2 or scrypt, within bounded cost),
/// or a plain password checked by the rules and hashed with the configured argon2id.
async fn password_hash_of(
    record: &Record,
    username: &Username,
    hasher: &PasswordHasher,
) -> Result<Result<String, String>, AppError> {
    Ok(match (&record.password_hash, &record.password) {
        (Some(_), Some(_)) => Err("give password_hash or password, not both".to_owned()),
        (None, None) => Err("password_hash (or password) is required".to_owned()),
        (Some(hash), None) => check_stored(hash)
            .map(|_| hash.clone())
            .map_err(|e| format!("password_hash: {e}")),
        (None, Some(password)) => match check_new_password(password, username) {
            Ok(()) => Ok(hasher.hash(password).await?),
            Err(e) => Err(format!("password: {e}")),
        },
    })
}

/// Creates one user: checked as sign-up checks (username, address, roles, password rules for a
/// plain password), the hash stored as given (all but argon2id are replaced by argon2id at the
/// first sign-in), recorded as `user.created` (and `user.imported` for a kept hash) by `by`, all
/// in one transaction.
async fn import_record(
    conn: &mut AsyncPgConnection,
    hasher: &PasswordHasher,
    record: Record,
    by: &Actor,
    now: OffsetDateTime,
) -> Result<Imported, AppError> {
    let username = match Username::parse(&record.username) {
        Ok(u) => u,
        Err(e) => return Ok(refused(format!("username: {e}"))),
    };
    let email = match Email::parse_optional(record.email.as_deref().unwrap_or("")) {
        Ok(e) => e,
        Err(e) => return Ok(refused(format!("email: {e}"))),
    };
    let roles = match Role::parse_all(&record.roles) {
        Ok(r) => r,
        Err(e) => return Ok(refused(format!("roles: {e}"))),
    };
    // RFC 9700 §4.15: no client id may equal a user's `sub` (users::insert checks a kept one).
    let subject = match record.sub.as_deref().map(Subject::parse) {
        None => None,
        Some(Ok(subject)) => Some(subject),
        Some(Err(e)) => return Ok(refused(format!("sub: {e}"))),
    };
    let id = match &subject {
        Some(Subject::Id(id)) => *id,
        _ => Uuid::new_v4(),
    };
    let hash = match password_hash_of(&record, &username, hasher).await? {
        Ok(hash) => hash,
        Err(reason) => return Ok(refused(reason)),
    };
    let known = match &subject {
        Some(Subject::Kept(sub)) => users::find_by_sub(conn, sub).await?,
        _ => users::find(conn, id).await?,
    };
    if known.is_some() {
        return Ok(Imported::Skipped {
            username: username.as_str().to_owned(),
            reason: "an account with this sub exists".to_owned(),
        });
    }
    let mut new = NewUser::new(&username, email.as_ref(), &hash, now).with_id(id);
    if let Some(Subject::Kept(sub)) = &subject {
        new = new.with_subject(sub);
    }
    if record.email_verified {
        new = new.email_verified();
    }
    let created = conn
        .transaction(async |conn| {
            let user = match users::create(conn, &new, by).await {
                Ok(user) => user,
                Err(e) => return Ok(Err(e)),
            };
            if !roles.is_empty() {
                users::update_roles(conn, user.id, &roles, by, now).await?;
            }
            if record.password_hash.is_some() {
                let details = serde_json::json!({ "hash": hash_kind(&hash) });
                let event = by
                    .event("user.imported", now)
                    .user(user.id)
                    .details(details);
                crate::audit::insert(conn, &event).await?;
            }
            Ok::<_, diesel::result::Error>(Ok(user))
        })
        .await?;
    Ok(match created {
        Ok(user) => Imported::Created {
            sub: user.sub(),
            username: user.username,
            id: user.id,
        },
        Err(
            e @ (CreateUserError::UsernameTaken
            | CreateUserError::EmailTaken
            | CreateUserError::SubTaken),
        ) => Imported::Skipped {
            username: username.as_str().to_owned(),
            reason: e.to_string(),
        },
        Err(CreateUserError::Db(e)) => return Err(e.into()),
    })
}

fn hash_kind(hash: &str) -> &'static str {
    use crate::users::password::StoredHash;
    match check_stored(hash) {
        Ok(StoredHash::Bcrypt) => "bcrypt",
        Ok(StoredHash::Pbkdf2) => "pbkdf2",
        Ok(StoredHash::Scrypt) => "scrypt",
        _ => "argon2id",
    }
}
