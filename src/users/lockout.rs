//! The sign-in lockout: after N consecutive failures for a username, a doubling lockout with a cap.
//!
//! Failures are keyed by the username typed, not the account, so locked and unlocked answers look
//! the same whether or not the account exists. Attempts in flight are counted apart from failures:
//! each takes a hold *before* the password is checked, and failures plus holds never
//! exceed the threshold, so parallel guesses cannot slip past it; the hold ends with the
//! attempt, whatever its outcome, so parallel correct sign-ins never lock their own user.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::{Duration, OffsetDateTime};

use crate::db::schema::{sign_in_attempts, sign_in_throttle};

/// A failure streak this old is forgotten: "consecutive" means within a day.
const STREAK_RESET_AFTER: Duration = Duration::days(1);
/// A hold left by an instance that died mid-attempt frees its place after this; longer than
/// any request may run.
const HOLD_TTL: Duration = Duration::minutes(2);

/// When and for how long to lock a username out.
#[derive(Clone, Copy, Debug)]
pub struct LockoutPolicy {
    /// Failures allowed before the first lockout.
    pub threshold: u32,
    /// The first lockout; each failure past the threshold doubles it.
    pub base: Duration,
    /// The longest lockout.
    pub max: Duration,
    /// How long an attempt waits for a place while others on the same username are in flight,
    /// before it is answered "busy, retry" (never "locked").
    pub hold_wait: std::time::Duration,
}

/// A username's failure streak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = sign_in_throttle)]
pub struct LockoutState {
    /// Consecutive failures (attempts not followed by a success).
    pub failures: i32,
    /// When the last one happened.
    pub last_failure_at: OffsetDateTime,
    /// No attempt is accepted before this.
    #[diesel(treat_none_as_null = true)]
    pub locked_until: Option<OffsetDateTime>,
}

impl LockoutPolicy {
    /// How long the username stays locked, if it is locked at `now`.
    #[must_use]
    pub fn remaining_lock(
        &self,
        state: Option<&LockoutState>,
        now: OffsetDateTime,
    ) -> Option<Duration> {
        let until = state?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// The state after one more failed attempt at `now`.
    #[must_use]
    pub fn after_failure(&self, state: Option<&LockoutState>, now: OffsetDateTime) -> LockoutState {
        let previous = match state {
            Some(s) if now - s.last_failure_at < STREAK_RESET_AFTER => s.failures,
            _ => 0,
        };
        let failures = previous.saturating_add(1);
        let locked_until = u32::try_from(failures)
            .ok()
            .filter(|f| *f >= self.threshold)
            .map(|f| now + self.lockout_for(f - self.threshold));
        LockoutState {
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

impl LockoutPolicy {
    /// How many attempts may be in flight at once given the streak: the failures still allowed
    /// before the threshold, and one at a time once a lock has expired (its failure doubles it).
    #[must_use]
    pub fn places(&self, state: Option<&LockoutState>, now: OffsetDateTime) -> i64 {
        let failures = match state {
            Some(s) if now - s.last_failure_at < STREAK_RESET_AFTER => s.failures,
            _ => 0,
        };
        let threshold = i64::from(self.threshold.max(1));
        (threshold - i64::from(failures)).max(1)
    }
}

/// The outcome of asking to make an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Go ahead: the attempt keeps this hold until [`end_attempt`].
    Held(Hold),
    /// Locked for this long; the password must not even be checked.
    Locked(Duration),
    /// As many attempts as may still fail are in flight: wait for one to end, then ask again.
    Full,
}

/// A place held by one attempt in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    id: uuid::Uuid,
    key: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The right password: the streak is forgotten.
    Succeeded,
    /// A wrong password (or no such user): one more failure, maybe a lock.
    Failed,
    /// Never judged (hashing busy, database down, client gone): only the place is given back.
    Abandoned,
}

/// Serialises the attempts on one username key for the rest of the transaction, whether or not
/// a streak row exists yet (a row lock needs a row; a missing one would let two first attempts
/// both count the same free places).
async fn lock_key(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<()> {
    crate::db::lock_name(conn, "sign_in", key).await
}

async fn current_state(
    conn: &mut AsyncPgConnection,
    key: &str,
) -> QueryResult<Option<LockoutState>> {
    sign_in_throttle::table
        .find(key)
        .select(LockoutState::as_select())
        .first(conn)
        .await
        .optional()
}

/// Takes a place for an attempt on `key` unless it is locked or its places are taken.
pub async fn begin_attempt(
    conn: &mut AsyncPgConnection,
    policy: LockoutPolicy,
    key: &str,
    now: OffsetDateTime,
) -> QueryResult<Attempt> {
    let key = key.to_owned();
    conn.transaction(async |conn| {
        lock_key(conn, &key).await?;
        let state = current_state(conn, &key).await?;
        if let Some(remaining) = policy.remaining_lock(state.as_ref(), now) {
            return Ok(Attempt::Locked(remaining));
        }
        let in_flight: i64 = sign_in_attempts::table
            .filter(sign_in_attempts::username_key.eq(&key))
            .filter(sign_in_attempts::expires_at.gt(now))
            .count()
            .get_result(conn)
            .await?;
        if in_flight >= policy.places(state.as_ref(), now) {
            return Ok(Attempt::Full);
        }
        let id = uuid::Uuid::new_v4();
        diesel::insert_into(sign_in_attempts::table)
            .values((
                sign_in_attempts::id.eq(id),
                sign_in_attempts::username_key.eq(&key),
                sign_in_attempts::expires_at.eq(now + HOLD_TTL),
            ))
            .execute(conn)
            .await?;
        Ok(Attempt::Held(Hold { id, key }))
    })
    .await
}

/// Ends an attempt: gives its place back and records its outcome in the streak.
pub async fn end_attempt(
    conn: &mut AsyncPgConnection,
    policy: LockoutPolicy,
    hold: &Hold,
    outcome: Outcome,
    now: OffsetDateTime,
) -> QueryResult<()> {
    conn.transaction(async |conn| {
        let key = &hold.key;
        lock_key(conn, key).await?;
        diesel::delete(sign_in_attempts::table.find(hold.id))
            .execute(conn)
            .await?;
        match outcome {
            Outcome::Abandoned => {}
            Outcome::Succeeded => {
                diesel::delete(sign_in_throttle::table.find(key))
                    .execute(conn)
                    .await?;
            }
            Outcome::Failed => {
                let state = current_state(conn, key).await?;
                let next = policy.after_failure(state.as_ref(), now);
                diesel::insert_into(sign_in_throttle::table)
                    .values((sign_in_throttle::username_key.eq(key), &next))
                    .on_conflict(sign_in_throttle::username_key)
                    .do_update()
                    .set(&next)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    })
    .await
}

/// Deletes holds of attempts that never ended (their instance died), at most `batch`.
pub async fn delete_expired_holds(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    batch: i64,
) -> QueryResult<usize> {
    crate::db::delete_batch(conn, "sign_in_attempts", "expires_at < $1", now, batch).await
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

    const POLICY: LockoutPolicy = LockoutPolicy {
        threshold: 5,
        base: Duration::seconds(30),
        max: Duration::seconds(900),
        hold_wait: std::time::Duration::from_secs(1),
    };
    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    fn fail_n(n: u32, mut now: OffsetDateTime) -> LockoutState {
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
    fn places_are_the_failures_left_and_one_after_a_lock() {
        assert_eq!(POLICY.places(None, T0), 5);
        assert_eq!(POLICY.places(Some(&fail_n(3, T0)), T0), 2);
        let locked = fail_n(5, T0);
        assert_eq!(POLICY.places(Some(&locked), T0 + Duration::minutes(1)), 1);
        assert_eq!(POLICY.places(Some(&fail_n(9, T0)), T0), 1);
        assert_eq!(POLICY.places(Some(&locked), T0 + Duration::days(2)), 5);
    }

    #[test]
    fn an_old_streak_is_forgotten() {
        let s = fail_n(4, T0);
        let next = POLICY.after_failure(Some(&s), T0 + Duration::days(2));
        assert_eq!(next.failures, 1);
        assert_eq!(next.locked_until, None);
    }
}
