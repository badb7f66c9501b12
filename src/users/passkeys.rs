//! Passkeys: a person's `WebAuthn` credentials (public keys, with their sign counter and backup
//! flags as webauthn-rs keeps them), named by the person, listed, renamed and removed.

use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;
use webauthn_rs::prelude::{AuthenticationResult, Passkey};

use crate::audit::Actor;
use crate::db::schema::passkeys;

/// The longest name a person may give a passkey.
pub const MAX_NAME_CHARS: usize = 64;

/// A stored passkey.
#[derive(Clone, Debug)]
pub struct StoredPasskey {
    /// Our id for it (the account page names it by this).
    pub id: Uuid,
    /// Its owner.
    pub user_id: Uuid,
    /// The person's name for it.
    pub name: String,
    /// The credential.
    pub passkey: Passkey,
    /// When it was registered.
    pub created_at: OffsetDateTime,
    /// When it last signed someone in.
    pub last_used_at: Option<OffsetDateTime>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = passkeys)]
struct Row {
    id: Uuid,
    user_id: Uuid,
    name: String,
    passkey: serde_json::Value,
    created_at: OffsetDateTime,
    last_used_at: Option<OffsetDateTime>,
}

impl Row {
    /// A row whose record no longer reads (a webauthn-rs format change) is skipped, logged.
    fn into_stored(self) -> Option<StoredPasskey> {
        let passkey = serde_json::from_value(self.passkey)
            .inspect_err(
                |e| tracing::error!(error = %e, id = %self.id, "a stored passkey does not read"),
            )
            .ok()?;
        Some(StoredPasskey {
            id: self.id,
            user_id: self.user_id,
            name: self.name,
            passkey,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
        })
    }
}

/// A name as typed: trimmed, without control characters, at most [`MAX_NAME_CHARS`]; `None` if
/// nothing is left.
#[must_use]
pub fn clean_name(typed: &str) -> Option<String> {
    let name: String = typed
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The passkeys of `user_id`, oldest first.
pub async fn list(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Vec<StoredPasskey>> {
    let rows: Vec<Row> = passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .order(passkeys::created_at.asc())
        .select(Row::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().filter_map(Row::into_stored).collect())
}

/// How many passkeys `user_id` has.
pub async fn count(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<i64> {
    passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .count()
        .get_result(conn)
        .await
}

/// Stores a new passkey of `user_id` (recorded as `mfa.passkey_added`); `false` when that
/// credential is registered already (to anyone).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    (user_id, name, passkey): (Uuid, &str, &Passkey),
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<bool> {
    let record =
        serde_json::to_value(passkey).unwrap_or_else(|e| unreachable!("a passkey serialises: {e}"));
    let credential_id: Vec<u8> = AsRef::<[u8]>::as_ref(passkey.cred_id()).to_vec();
    conn.transaction(async |conn| {
        let n = diesel::insert_into(passkeys::table)
            .values((
                passkeys::id.eq(Uuid::new_v4()),
                passkeys::user_id.eq(user_id),
                passkeys::credential_id.eq(&credential_id),
                passkeys::name.eq(name),
                passkeys::passkey.eq(&record),
                passkeys::created_at.eq(now),
            ))
            .on_conflict(passkeys::credential_id)
            .do_nothing()
            .execute(conn)
            .await?;
        if n == 1 {
            let details = serde_json::json!({ "name": name });
            super::record(conn, by, "mfa.passkey_added", user_id, details, now).await?;
        }
        Ok(n == 1)
    })
    .await
}

/// Records a use: the sign counter and backup flags the authenticator reported, when they moved
/// (webauthn-rs refused a counter that went backwards before we get here), and the time.
pub async fn record_use(
    conn: &mut AsyncPgConnection,
    stored: &StoredPasskey,
    result: &AuthenticationResult,
    now: OffsetDateTime,
) -> QueryResult<()> {
    let mut passkey = stored.passkey.clone();
    let target = passkeys::table.find(stored.id);
    if passkey.update_credential(result) == Some(true) {
        let record = serde_json::to_value(&passkey)
            .unwrap_or_else(|e| unreachable!("a passkey serialises: {e}"));
        diesel::update(target)
            .set((passkeys::passkey.eq(record), passkeys::last_used_at.eq(now)))
            .execute(conn)
            .await?;
    } else {
        diesel::update(target)
            .set(passkeys::last_used_at.eq(now))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Renames passkey `id` of `user_id`; `false` when they have no such passkey.
pub async fn rename(
    conn: &mut AsyncPgConnection,
    (user_id, id, name): (Uuid, Uuid, &str),
) -> QueryResult<bool> {
    let n = diesel::update(
        passkeys::table
            .find(id)
            .filter(passkeys::user_id.eq(user_id)),
    )
    .set(passkeys::name.eq(name))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Removes passkey `id` of `user_id` (recorded as `mfa.passkey_removed`); its name, or `None`
/// when they have no such passkey.
pub async fn remove(
    conn: &mut AsyncPgConnection,
    (user_id, id): (Uuid, Uuid),
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<Option<String>> {
    conn.transaction(async |conn| {
        let name: Option<String> = diesel::delete(
            passkeys::table
                .find(id)
                .filter(passkeys::user_id.eq(user_id)),
        )
        .returning(passkeys::name)
        .get_result(conn)
        .await
        .optional()?;
        if let Some(name) = &name {
            let details = serde_json::json!({ "name": name });
            super::record(conn, by, "mfa.passkey_removed", user_id, details, now).await?;
        }
        Ok(name)
    })
    .await
}

/// Removes every passkey of `user_id` (an operator's reset); returns how many.
pub async fn delete_all(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<usize> {
    diesel::delete(passkeys::table.filter(passkeys::user_id.eq(user_id)))
        .execute(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::clean_name;

    #[test]
    fn names_are_trimmed_bounded_and_never_empty() {
        assert_eq!(clean_name("  Phone \n").as_deref(), Some("Phone"));
        assert_eq!(clean_name(" \t "), None);
        assert_eq!(clean_name(&"k".repeat(100)).map(|n| n.len()), Some(64));
        assert_eq!(clean_name("a\u{7}b").as_deref(), Some("ab"));
    }
}
