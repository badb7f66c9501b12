//! The one source of "now", so expiry rules can be tested by moving time instead of waiting.

use std::sync::{Arc, Mutex, PoisonError};

use time::{Duration, OffsetDateTime};

/// Tells the current time: the system clock in production, a hand-moved one in tests.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<OffsetDateTime>>>,
}

impl Clock {
    /// The system clock.
    #[must_use]
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands at `start` until [`Clock::advance`] moves it.
    #[must_use]
    pub fn manual(start: OffsetDateTime) -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(start))),
        }
    }

    /// The current time, in UTC.
    #[must_use]
    pub fn now(&self) -> OffsetDateTime {
        match &self.manual {
            None => OffsetDateTime::now_utc(),
            Some(t) => *t.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Moves a manual clock forward; the system clock cannot be moved and ignores this.
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.manual {
            let mut t = t.lock().unwrap_or_else(PoisonError::into_inner);
            *t += by;
        }
    }
}

/// How far `clock` is from the database's clock (positive: ahead), measured over one round trip.
///
/// Expiry stored in the database (codes, sessions, refresh tokens) is decided by whichever
/// instance reads it, against its own clock: instances must agree on the time, and the database
/// is the one clock they all see.
pub async fn offset_from_database(
    clock: &Clock,
    pool: &crate::db::DbPool,
) -> Result<Duration, crate::db::DbError> {
    // Connect first: only the query's round trip belongs to the measurement.
    let mut conn = crate::db::connect(pool).await?;
    let before = clock.now();
    let database = crate::db::now(&mut conn).await?;
    let after = clock.now();
    Ok(offset(before, database, after))
}

/// The offset of a local reading taken around `reference`: the midpoint of the two local
/// readings, minus the reference (the query ran somewhere in between).
fn offset(before: OffsetDateTime, reference: OffsetDateTime, after: OffsetDateTime) -> Duration {
    before + (after - before) / 2 - reference
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_offset_is_taken_at_the_midpoint_of_the_round_trip() {
        let t = datetime!(2026-01-01 00:00:10 UTC);
        assert_eq!(offset(t, t, t), Duration::ZERO);
        assert_eq!(
            offset(t, t - Duration::seconds(300), t + Duration::seconds(2)),
            Duration::seconds(301)
        );
        assert_eq!(
            offset(t, t + Duration::minutes(5), t),
            Duration::minutes(-5)
        );
    }
}
