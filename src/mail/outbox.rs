//! The transactional outbox: a letter is a row written in the same transaction as the event
//! that causes it, so a rollback sends nothing and a crash after the commit loses nothing; the
//! delivery claims due rows with `FOR UPDATE SKIP LOCKED`, so instances never send one twice
//! at once.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::crypto::Sealer;
use crate::db::schema::mail_outbox;
use crate::mail::Letter;

/// Seals letters into the outbox and opens them for delivery; every instance derives the same
/// key from the KEK.
#[derive(Clone, Debug)]
pub struct Outbox {
    sealer: Sealer,
}

/// A letter claimed for one delivery attempt.
#[derive(Debug)]
pub struct Claimed {
    /// The row.
    pub id: Uuid,
    /// The letter's kind.
    pub kind: String,
    /// When it was queued.
    pub created_at: OffsetDateTime,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// The letter; `None` if it no longer opens (sealed under another KEK).
    pub letter: Option<Letter>,
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    sealed: Vec<u8>,
    #[diesel(sql_type = Timestamptz)]
    created_at: OffsetDateTime,
    #[diesel(sql_type = Int4)]
    attempts: i32,
}

impl Outbox {
    /// An outbox sealing with `secret`.
    #[must_use]
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            sealer: Sealer::new(secret),
        }
    }

    /// Queues `letter`, due now. Call it inside the transaction of what causes the mail.
    pub async fn enqueue(
        &self,
        conn: &mut AsyncPgConnection,
        letter: &Letter,
        now: OffsetDateTime,
    ) -> QueryResult<Uuid> {
        let id = Uuid::new_v4();
        let plain = serde_json::to_vec(letter)
            .unwrap_or_else(|_| unreachable!("a letter is strings, which always serialise"));
        diesel::insert_into(mail_outbox::table)
            .values((
                mail_outbox::id.eq(id),
                mail_outbox::kind.eq(&letter.kind),
                mail_outbox::sealed.eq(self.sealer.seal(id.as_bytes(), &plain)),
                mail_outbox::created_at.eq(now),
                mail_outbox::due_at.eq(now),
            ))
            .execute(conn)
            .await?;
        Ok(id)
    }

    /// Claims up to `batch` due letters for `lease`: another instance sees them again only if
    /// this one never reports back (it crashed mid-send), so a letter is sent at least once.
    pub async fn claim(
        &self,
        conn: &mut AsyncPgConnection,
        now: OffsetDateTime,
        lease: Duration,
        batch: i64,
    ) -> QueryResult<Vec<Claimed>> {
        let rows: Vec<ClaimedRow> = diesel::sql_query(
            "UPDATE mail_outbox SET due_at = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM mail_outbox WHERE due_at <= $1 \
                          ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id, kind, sealed, created_at, attempts",
        )
        .bind::<Timestamptz, _>(now)
        .bind::<Timestamptz, _>(now + lease)
        .bind::<BigInt, _>(batch)
        .load(conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Claimed {
                letter: self
                    .sealer
                    .open(r.id.as_bytes(), &r.sealed)
                    .and_then(|plain| serde_json::from_slice(&plain).ok()),
                id: r.id,
                kind: r.kind,
                created_at: r.created_at,
                attempts: r.attempts,
            })
            .collect())
    }
}

/// A letter an SMTP server (or the file sink) took: it leaves the outbox.
pub async fn delivered(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::delete(mail_outbox::table.find(id))
        .execute(conn)
        .await?;
    Ok(())
}

/// An attempt failed for now: try again at `retry_at`.
pub async fn retry_later(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    retry_at: OffsetDateTime,
    error: &str,
) -> QueryResult<()> {
    diesel::update(mail_outbox::table.find(id))
        .set((
            mail_outbox::due_at.eq(retry_at),
            mail_outbox::last_error.eq(truncate(error)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives a letter up (a permanent refusal, or retried too long): the row goes, and the audit
/// trail says which kind of mail was lost and why, in one transaction.
pub async fn abandon(
    conn: &mut AsyncPgConnection,
    claimed: &Claimed,
    error: &str,
    now: OffsetDateTime,
) -> QueryResult<()> {
    use diesel_async::AsyncConnection as _;
    let details = serde_json::json!({
        "kind": claimed.kind,
        "attempts": claimed.attempts,
        "queued_at": claimed.created_at.unix_timestamp(),
        "error": truncate(error),
    });
    let id = claimed.id.to_string();
    conn.transaction(async |conn| {
        diesel::delete(mail_outbox::table.find(claimed.id))
            .execute(conn)
            .await?;
        let by = Actor::system(None);
        let event = by
            .event("mail.abandoned", now)
            .subject(&id)
            .details(details);
        audit::insert(conn, &event).await
    })
    .await
}

/// How many letters wait, and when the oldest was queued.
pub async fn backlog(conn: &mut AsyncPgConnection) -> QueryResult<(i64, Option<OffsetDateTime>)> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        queued: i64,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        oldest: Option<OffsetDateTime>,
    }
    let row: Row =
        diesel::sql_query("SELECT count(*) AS queued, min(created_at) AS oldest FROM mail_outbox")
            .get_result(conn)
            .await?;
    Ok((row.queued, row.oldest))
}

/// Error texts are kept short: they come from remote servers.
fn truncate(error: &str) -> String {
    error.chars().take(1000).collect()
}
