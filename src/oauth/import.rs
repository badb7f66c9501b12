//! Bringing users from another system with the password hashes it kept (`keyward users import`):
//! one JSON object per line, each created, skipped as already here, or refused with the reason,
//! so a re-run of the same file changes nothing.

use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Actor;
use crate::users::name::{Email, Role, Username};
use crate::users::password::check_stored;
use crate::users::{self, CreateUserError, NewUser};

/// One line of an import file.
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
    /// The id apps know the person by, kept as the OIDC `sub` (a UUID).
    #[serde(default)]
    sub: Option<String>,
    password_hash: String,
}

/// What became of one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Imported {
    /// A new account, with its id (the `sub`).
    Created {
        /// The username.
        username: String,
        /// The new account's id.
        id: Uuid,
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

/// Imports one line: checked as `users create` checks (username, address, roles), the hash
/// stored as given (argon2id, bcrypt, PBKDF2 or scrypt; all but argon2id are replaced by argon2id
/// at the first sign-in),
/// recorded as `user.created` and `user.imported` by `by`, all in one transaction.
pub async fn import_line(
    conn: &mut AsyncPgConnection,
    line: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> diesel::QueryResult<Imported> {
    let record: Record = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return Ok(refused(format!("not a user record ({e})"))),
    };
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
    if let Err(e) = check_stored(&record.password_hash) {
        return Ok(refused(format!("password_hash: {e}")));
    }
    // RFC 9700 §4.15: a user's `sub` is a UUID, which no client id may be (clients::insert).
    let id = match record.sub.as_deref().map(Uuid::parse_str) {
        None => Uuid::new_v4(),
        Some(Ok(id)) => id,
        Some(Err(_)) => {
            return Ok(refused(
                "sub: only a UUID can be kept as the subject (other ids are not supported yet)",
            ));
        }
    };
    if users::find(conn, id).await?.is_some() {
        return Ok(Imported::Skipped {
            username: username.as_str().to_owned(),
            reason: "an account with this sub exists".to_owned(),
        });
    }
    let mut new = NewUser::new(&username, email.as_ref(), &record.password_hash, now).with_id(id);
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
            let details = serde_json::json!({ "hash": hash_kind(&record.password_hash) });
            let event = by
                .event("user.imported", now)
                .user(user.id)
                .details(details);
            crate::audit::insert(conn, &event).await?;
            Ok::<_, diesel::result::Error>(Ok(user))
        })
        .await?;
    Ok(match created {
        Ok(user) => Imported::Created {
            username: user.username,
            id: user.id,
        },
        Err(e @ (CreateUserError::UsernameTaken | CreateUserError::EmailTaken)) => {
            Imported::Skipped {
                username: username.as_str().to_owned(),
                reason: e.to_string(),
            }
        }
        Err(CreateUserError::Db(e)) => return Err(e),
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
