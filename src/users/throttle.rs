//! Sign-in throttling: after N consecutive failures for a username, a doubling lockout with a cap.
//!
//! Failures are keyed by the username typed, not the account, so locked and unlocked answers look
//! the same whether or not the account exists. An attempt is counted *before* the password is
//! checked, in one locked row update, so parallel guesses cannot slip past the threshold.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::{Duration, OffsetDateTime};

use crate::db::schema::sign_in_throttle;

/// A failure streak this old is forgotten: "consecutive" means within a day.
const STREAK_RESET_AFTER: Duration = Duration::days(1);

/// When and for how long to lock a username out.
#[derive(Clone, Copy, Debug)]
pub struct ThrottlePolicy {
    /// Failures allowed before the first lockout.
    pub threshold: u32,
    /// The first lockout; each failure past the threshold doubles it.
    pub base: Duration,
    /// The longest lockout.
    pub max: Duration,
}

/// A username's failure streak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = sign_in_throttle)]
pub struct ThrottleState {
    /// Consecutive failures (attempts not followed by a success).
    pub failures: i32,
    /// When the last one happened.
    pub last_failure_at: OffsetDateTime,
    /// No attempt is accepted before this.
    #[diesel(treat_none_as_null = true)]
    pub locked_until: Option<OffsetDateTime>,
}

impl ThrottlePolicy {
    /// How long the username stays locked, if it is locked at `now`.
    #[must_use]
    pub fn remaining_lock(
        &self,
        state: Option<&ThrottleState>,
        now: OffsetDateTime,
    ) -> Option<Duration> {
        let until = state?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// The state after one more failed attempt at `now`.
    #[must_use]
    pub fn after_failure(
        &self,
        state: Option<&ThrottleState>,
        now: OffsetDateTime,
    ) -> ThrottleState {
        let previous = match state {
            Some(s) if now - s.last_failure_at < STREAK_RESET_AFTER => s.failures,
            _ => 0,
        };
        let failures = previous.saturating_add(1);
        let locked_until = u32::try_from(failures)
            .ok()
            .filter(|f| *f >= self.threshold)
            .map(|f| now + self.lockout_for(f - self.threshold));
        ThrottleState {
            failures,
            last_failure_at: now,
            locked_until,
        }
    }

    /// `base * 2^past_threshold`, never more than `max`.
    fn lockout_for(&self, past_threshold: u32) -> Duration {
        let factor = 1i32.checked_shl(past_threshold.min(30)).unwrap_or(i32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// The outcome of asking to make an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Go ahead: the attempt is already counted and is forgiven on success.
    Allowed,
    /// Locked for this long; the password must not even be checked.
    Locked(Duration),
}

/// Counts an attempt for `key` unless the key is locked; one transaction with the row locked.
pub async fn begin_attempt(
    conn: &mut AsyncPgConnection,
    policy: ThrottlePolicy,
    key: &str,
    now: OffsetDateTime,
) -> QueryResult<Attempt> {
    let key = key.to_owned();
    conn.transaction(async |conn| {
        // Two rounds at most: a missing row may be inserted by a concurrent attempt between our
        // read and our insert, and then we read it again under its lock.
        for _ in 0..2 {
            let current: Option<ThrottleState> = sign_in_throttle::table
                .find(&key)
                .select(ThrottleState::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?;
            if let Some(remaining) = policy.remaining_lock(current.as_ref(), now) {
                return Ok(Attempt::Locked(remaining));
            }
            let next = policy.after_failure(current.as_ref(), now);
            if current.is_some() {
                diesel::update(sign_in_throttle::table.find(&key))
                    .set(&next)
                    .execute(conn)
                    .await?;
                return Ok(Attempt::Allowed);
            }
            let inserted = diesel::insert_into(sign_in_throttle::table)
                .values((sign_in_throttle::username_key.eq(&key), &next))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if inserted == 1 {
                return Ok(Attempt::Allowed);
            }
        }
        Err(diesel::result::Error::RollbackTransaction)
    })
    .await
}

/// Forgets the failure streak of `key` after a successful sign-in.
pub async fn delete(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<usize> {
    diesel::delete(sign_in_throttle::table.find(key))
        .execute(conn)
        .await
}

/// Deletes streaks that ended more than a day ago and hold no lock, at most `batch` rows.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    batch: i64,
) -> QueryResult<usize> {
    // Matches STREAK_RESET_AFTER: such a streak would restart from zero anyway.
    crate::db::delete_batch(
        conn,
        "sign_in_throttle",
        "last_failure_at < $1 - interval '1 day' AND (locked_until IS NULL OR locked_until < $1)",
        now,
        batch,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const POLICY: ThrottlePolicy = ThrottlePolicy {
        threshold: 5,
        base: Duration::seconds(30),
        max: Duration::seconds(900),
    };
    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    fn fail_n(n: u32, mut now: OffsetDateTime) -> ThrottleState {
        let mut state = None;
        for _ in 0..n {
            state = Some(POLICY.after_failure(state.as_ref(), now));
            now += Duration::seconds(1);
        }
        state.expect("at least one failure")
    }

    #[test]
    fn four_failures_do_not_lock() {
        let s = fail_n(4, T0);
        assert_eq!(s.failures, 4);
        assert_eq!(s.locked_until, None);
    }

    #[test]
    fn the_fifth_failure_locks_for_the_base_delay() {
        let s = fail_n(5, T0);
        assert_eq!(
            s.locked_until,
            Some(s.last_failure_at + Duration::seconds(30))
        );
        assert_eq!(
            POLICY.remaining_lock(Some(&s), s.last_failure_at),
            Some(Duration::seconds(30))
        );
    }

    #[test]
    fn each_further_failure_doubles_the_lock_up_to_the_cap() {
        let locks: Vec<i64> = (5..=12)
            .map(|n| {
                let s = fail_n(n, T0);
                (s.locked_until.expect("locked") - s.last_failure_at).whole_seconds()
            })
            .collect();
        assert_eq!(locks, [30, 60, 120, 240, 480, 900, 900, 900]);
        let s = fail_n(200, T0);
        assert_eq!(
            s.locked_until.map(|u| u - s.last_failure_at),
            Some(Duration::seconds(900))
        );
    }

    #[test]
    fn a_lock_expires() {
        let s = fail_n(5, T0);
        let later = s.last_failure_at + Duration::seconds(31);
        assert_eq!(POLICY.remaining_lock(Some(&s), later), None);
    }

    #[test]
    fn an_old_streak_is_forgotten() {
        let s = fail_n(4, T0);
        let next = POLICY.after_failure(Some(&s), T0 + Duration::days(2));
        assert_eq!(next.failures, 1);
        assert_eq!(next.locked_until, None);
    }
}
