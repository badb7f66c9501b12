//! Delivering the outbox: claim due letters, hand each to the transport, and record what
//! happened: delivered (the row goes), failed for now (tried again with backoff), or given up
//! (a permanent refusal, or retried past the retry period), with an audit event.

use std::sync::Arc;

use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::db::{self, DbError, DbPool};
use crate::mail::Letter;
use crate::mail::outbox::{self, Claimed, Outbox};
use crate::mail::transport::{SendError, Transport};
use crate::metrics::Metrics;

/// Letters claimed at once by one instance.
pub const BATCH: i64 = 20;
/// How long a claim lasts: well past a send's timeout, so only a crashed instance's letters
/// are taken over (and then sent at least once, maybe twice: the Message-ID stays the same).
const LEASE: Duration = Duration::minutes(5);
/// The first retry; each further failure doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::seconds(30);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::hours(1);

/// Delivers the outbox with one transport and sender.
#[derive(Clone)]
#[expect(
    missing_debug_implementations,
    reason = "holds the metrics registry, which has no Debug"
)]
pub struct Courier {
    outbox: Outbox,
    transport: Transport,
    from: Mailbox,
    retry_for: Duration,
    metrics: Arc<Metrics>,
}

/// What one round of delivery did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Letters claimed.
    pub claimed: usize,
    /// Handed over.
    pub sent: usize,
    /// Failed, to be tried again.
    pub deferred: usize,
    /// Given up.
    pub abandoned: usize,
}

impl Round {
    /// A full batch was claimed: more may be due at once.
    #[must_use]
    pub fn more_due(&self) -> bool {
        i64::try_from(self.claimed).is_ok_and(|n| n >= BATCH)
    }
}

impl Courier {
    /// A courier sending from `from` through `transport`, retrying a letter for `retry_for`
    /// after it was queued.
    #[must_use]
    pub fn new(
        outbox: Outbox,
        transport: Transport,
        from: Mailbox,
        retry_for: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            outbox,
            transport,
            from,
            retry_for,
            metrics,
        }
    }

    /// The outbox letters are queued in.
    #[must_use]
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Where mail goes, without credentials.
    #[must_use]
    pub fn describe(&self) -> &str {
        self.transport.describe()
    }

    /// Sends `letter` at once, outside the outbox (`keyward mail test`); where it went.
    pub async fn send_now(&self, letter: &Letter) -> Result<String, SendError> {
        let message = self.message(letter, Uuid::new_v4())?;
        self.transport.send(message).await
    }

    /// Claims the letters due at `now` and tries each once. No connection is held while a
    /// letter is being sent.
    pub async fn deliver_due(&self, pool: &DbPool, now: OffsetDateTime) -> Result<Round, DbError> {
        let claimed = {
            let mut conn = db::connect(pool).await?;
            self.outbox.claim(&mut conn, now, LEASE, BATCH).await?
        };
        let mut round = Round {
            claimed: claimed.len(),
            ..Round::default()
        };
        for letter in claimed {
            let outcome = self.attempt(&letter).await;
            let mut conn = db::connect(pool).await?;
            match outcome {
                Ok(to) => {
                    outbox::delivered(&mut conn, letter.id).await?;
                    self.metrics.mail_sent();
                    tracing::info!(kind = %letter.kind, id = %letter.id, to = %to, "mail sent");
                    round.sent += 1;
                }
                Err(e)
                    if !e.permanent
                        && now + backoff(letter.attempts) < self.give_up_at(&letter) =>
                {
                    let retry_at = now + backoff(letter.attempts);
                    outbox::retry_later(&mut conn, letter.id, retry_at, &e.message).await?;
                    self.metrics.mail_failed("deferred");
                    tracing::warn!(kind = %letter.kind, id = %letter.id, attempts = letter.attempts, error = %e, "mail deferred");
                    round.deferred += 1;
                }
                Err(e) => {
                    outbox::abandon(&mut conn, &letter, &e.message, now).await?;
                    self.metrics.mail_failed("abandoned");
                    tracing::error!(kind = %letter.kind, id = %letter.id, attempts = letter.attempts, error = %e, "mail abandoned");
                    round.abandoned += 1;
                }
            }
        }
        Ok(round)
    }

    /// Reads the outbox's size and age into the metrics.
    pub async fn measure_backlog(&self, pool: &DbPool, now: OffsetDateTime) -> Result<(), DbError> {
        let mut conn = db::connect(pool).await?;
        let (queued, oldest) = outbox::backlog(&mut conn).await?;
        let age = oldest.map_or(0, |t| (now - t).whole_seconds().max(0));
        self.metrics.mail_backlog(queued, age);
        Ok(())
    }

    async fn attempt(&self, claimed: &Claimed) -> Result<String, SendError> {
        let Some(letter) = &claimed.letter else {
            return Err(SendError {
                permanent: true,
                message: "the letter does not open (sealed under another KEK)".into(),
            });
        };
        let message = self.message(letter, claimed.id)?;
        self.transport.send(message).await
    }

    fn give_up_at(&self, claimed: &Claimed) -> OffsetDateTime {
        claimed.created_at + self.retry_for
    }

    /// The MIME message: text and HTML alternatives, and a Message-ID fixed by the outbox row,
    /// so a letter sent twice (a crash between sending and recording) reads as one.
    fn message(&self, letter: &Letter, id: Uuid) -> Result<Message, SendError> {
        let permanent = |message: String| SendError {
            permanent: true,
            message,
        };
        let to: Mailbox = letter
            .to
            .parse()
            .map_err(|e| permanent(format!("the recipient is not an address: {e}")))?;
        let domain = self.from.email.domain().to_owned();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(letter.subject.clone())
            .message_id(Some(format!("<{id}@{domain}>")))
            .multipart(MultiPart::alternative_plain_html(
                letter.text.clone(),
                letter.html.clone(),
            ))
            .map_err(|e| permanent(format!("the message cannot be built: {e}")))
    }
}

/// The wait after the `attempts`-th failure: 30 s, 1 min, 2 min, ... up to an hour.
fn backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    (FIRST_BACKOFF * 2i32.pow(doublings)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_thirty_seconds_up_to_an_hour() {
        let waits: Vec<i64> = (1..=10).map(|a| backoff(a).whole_seconds()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(backoff(0), FIRST_BACKOFF);
        assert_eq!(backoff(i32::MAX), MAX_BACKOFF);
    }
}
