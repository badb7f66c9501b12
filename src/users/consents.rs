//! Remembered consents: what a person agreed to share with each client.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Actor;
use crate::db::schema::{clients, consents};
use crate::scope::Scopes;

/// The scopes `user_id` already granted `client_id`, if any.
pub async fn find(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    client_id: &str,
) -> QueryResult<Option<Scopes>> {
    consents::table
        .find((user_id, client_id))
        .select(consents::scopes)
        .first::<Vec<String>>(conn)
        .await
        .optional()
        .map(|s| s.map(|s| Scopes::from_stored(&s)))
}

/// Records the person's consent to `scopes` for `client_id`, adding to what was granted before,
/// and `consent.granted` by them, in one transaction.
pub async fn grant(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    client_id: &str,
    scopes: &Scopes,
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<()> {
    conn.transaction(async |conn| {
        upsert(conn, user_id, client_id, scopes, now).await?;
        let details = serde_json::json!({ "scope": scopes.to_string() });
        let event = by
            .event("consent.granted", now)
            .user(user_id)
            .client(client_id)
            .details(details);
        crate::audit::insert(conn, &event).await
    })
    .await
}

/// Stores consent to `scopes`, adding to what was granted before.
async fn upsert(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    client_id: &str,
    scopes: &Scopes,
    now: OffsetDateTime,
) -> QueryResult<()> {
    let merged = match find(conn, user_id, client_id).await? {
        Some(existing) => existing.union(scopes),
        None => scopes.clone(),
    };
    diesel::insert_into(consents::table)
        .values((
            consents::user_id.eq(user_id),
            consents::client_id.eq(client_id),
            consents::scopes.eq(merged.to_vec()),
            consents::granted_at.eq(now),
        ))
        .on_conflict((consents::user_id, consents::client_id))
        .do_update()
        .set((
            consents::scopes.eq(excluded(consents::scopes)),
            consents::granted_at.eq(excluded(consents::granted_at)),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// A consent as shown on the account page.
#[derive(Clone, Debug, Queryable)]
pub struct ConsentView {
    /// The client's id.
    pub client_id: String,
    /// The client's name.
    pub client_name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When last granted.
    pub granted_at: OffsetDateTime,
}

/// Everything `user_id` has agreed to, by client name.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> QueryResult<Vec<ConsentView>> {
    consents::table
        .inner_join(clients::table)
        .filter(consents::user_id.eq(user_id))
        .order(clients::name.asc())
        .select((
            consents::client_id,
            clients::name,
            consents::scopes,
            consents::granted_at,
        ))
        .load(conn)
        .await
}

/// A consent as operators list it.
#[derive(Clone, Debug, Queryable)]
pub struct ConsentRow {
    /// The user's id.
    pub user_id: Uuid,
    /// The user's name.
    pub username: String,
    /// The client's id.
    pub client_id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When last granted.
    pub granted_at: OffsetDateTime,
}

/// Every consent, or one user's, by username then client.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user_id: Option<Uuid>,
) -> QueryResult<Vec<ConsentRow>> {
    let mut query = consents::table
        .inner_join(crate::db::schema::users::table)
        .order((
            crate::db::schema::users::username.asc(),
            consents::client_id.asc(),
        ))
        .select((
            consents::user_id,
            crate::db::schema::users::username,
            consents::client_id,
            consents::scopes,
            consents::granted_at,
        ))
        .into_boxed();
    if let Some(id) = user_id {
        query = query.filter(consents::user_id.eq(id));
    }
    query.load(conn).await
}

/// Withdraws consent; returns whether there was one.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    client_id: &str,
) -> QueryResult<bool> {
    // PostgreSQL text cannot hold NUL, so no consent names such a client.
    if client_id.contains('\0') {
        return Ok(false);
    }
    diesel::delete(consents::table.find((user_id, client_id)))
        .execute(conn)
        .await
        .map(|n| n == 1)
}
