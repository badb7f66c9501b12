//! "Forgot your password?" requests as typed, queued so that the page does the same work whether
//! or not an account matches; resolved (and deleted) in the background.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::schema::reset_requests;

/// The longest identifier kept (an email address's limit).
pub const MAX_IDENTIFIER: usize = 254;

/// Queues a request for `identifier` (a username or an address, as typed).
pub async fn queue(
    conn: &mut AsyncPgConnection,
    identifier: &str,
    now: OffsetDateTime,
) -> QueryResult<()> {
    let identifier: String = identifier.chars().take(MAX_IDENTIFIER).collect();
    diesel::insert_into(reset_requests::table)
        .values((
            reset_requests::id.eq(Uuid::new_v4()),
            reset_requests::identifier.eq(identifier),
            reset_requests::created_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes up to `batch` queued requests, oldest first, deleting them; in the caller's
/// transaction, so that a failure puts them back. Rows another instance is taking are skipped.
pub async fn take(conn: &mut AsyncPgConnection, batch: i64) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        identifier: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "DELETE FROM reset_requests WHERE id IN (SELECT id FROM reset_requests \
         ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING identifier",
    )
    .bind::<diesel::sql_types::BigInt, _>(batch)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.identifier).collect())
}
