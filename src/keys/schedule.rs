//! The key schedule as pure rules: which key signs, which are published, and what to create next.
//!
//! Every instance reads the same times from the database and applies these rules to its own
//! clock, so instances agree on the active key without talking to each other.

use time::{Duration, OffsetDateTime};

/// Clock skew tolerated between Keyward instances and the relying parties checking tokens.
pub const CLOCK_LEEWAY: Duration = Duration::seconds(60);

/// The five times of a key's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyTimes {
    /// Appears in the JWKS.
    pub published_at: OffsetDateTime,
    /// May start signing (the latest such key signs).
    pub activates_at: OffsetDateTime,
    /// Stops signing: when its successor activates.
    pub retires_at: OffsetDateTime,
    /// Leaves the JWKS: every token it signed has expired by then.
    pub expires_at: OffsetDateTime,
    /// Withdrawn at once, out of schedule.
    pub revoked_at: Option<OffsetDateTime>,
}

/// Where a key is in its life at some moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Published, waiting to sign.
    Next,
    /// Signing.
    Active,
    /// No longer signing; still published so its tokens verify.
    Retired,
    /// Gone from the JWKS by schedule.
    Expired,
    /// Gone from the JWKS by revocation.
    Revoked,
    /// Not yet published (not created by Keyward itself, but representable).
    Pending,
}

impl KeyState {
    /// The lower-case name used by `keys list`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Pending => "pending",
        }
    }
}

/// How keys are scheduled.
#[derive(Clone, Copy, Debug)]
pub struct SchedulePolicy {
    /// How long each key signs.
    pub rotation: Duration,
    /// The least time a key is published before it signs.
    pub prepublish: Duration,
    /// Longest token lifetime plus [`CLOCK_LEEWAY`]: how long a retired key stays published.
    pub token_lifetime: Duration,
}

impl KeyTimes {
    /// Whether the key belongs in the JWKS at `now`.
    #[must_use]
    pub fn is_published(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.published_at <= now && now < self.expires_at
    }

    fn may_sign(&self, now: OffsetDateTime) -> bool {
        self.is_published(now) && self.activates_at <= now
    }
}

/// The signing key at `now`: the published, unrevoked key with the latest `activates_at`.
#[must_use]
pub fn active_index(keys: &[KeyTimes], now: OffsetDateTime) -> Option<usize> {
    keys.iter()
        .enumerate()
        .filter(|(_, k)| k.may_sign(now))
        .max_by_key(|(_, k)| k.activates_at)
        .map(|(i, _)| i)
}

/// The key that signs next: published, unrevoked, activating soonest after `now`.
#[must_use]
pub fn next_index(keys: &[KeyTimes], now: OffsetDateTime) -> Option<usize> {
    keys.iter()
        .enumerate()
        .filter(|(_, k)| k.is_published(now) && k.activates_at > now)
        .min_by_key(|(_, k)| k.activates_at)
        .map(|(i, _)| i)
}

/// The state of `keys[i]` at `now`.
#[must_use]
pub fn state(keys: &[KeyTimes], i: usize, now: OffsetDateTime) -> KeyState {
    let k = &keys[i];
    if k.revoked_at.is_some() {
        KeyState::Revoked
    } else if now >= k.expires_at {
        KeyState::Expired
    } else if now < k.published_at {
        KeyState::Pending
    } else if active_index(keys, now) == Some(i) {
        KeyState::Active
    } else if k.activates_at > now {
        KeyState::Next
    } else {
        KeyState::Retired
    }
}

/// The first moment after `now` at which the JWKS contents or the active key change by schedule.
#[must_use]
pub fn next_change(keys: &[KeyTimes], now: OffsetDateTime) -> Option<OffsetDateTime> {
    keys.iter()
        .filter(|k| k.revoked_at.is_none())
        .flat_map(|k| [k.published_at, k.activates_at, k.expires_at])
        .filter(|t| *t > now)
        .min()
}

/// What must be written to keep "one active key, one next key" true at `now`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// A key to create that signs at once (only when none can sign: an empty database).
    pub new_active: Option<KeyTimes>,
    /// A key to create as the next one.
    pub new_next: Option<KeyTimes>,
    /// Existing keys whose `retires_at` / `expires_at` must move: `(index, new times)`.
    pub updates: Vec<(usize, KeyTimes)>,
}

impl Plan {
    /// Whether nothing needs writing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.new_active.is_none() && self.new_next.is_none() && self.updates.is_empty()
    }
}

/// Plans the writes that restore the schedule's invariants at `now`.
#[must_use]
pub fn plan(keys: &[KeyTimes], now: OffsetDateTime, policy: &SchedulePolicy) -> Plan {
    let mut out = Plan::default();
    let active = active_index(keys, now);
    let active_retires = active.map_or(now + policy.rotation, |i| keys[i].retires_at);

    let next_activates = if let Some(i) = next_index(keys, now) {
        keys[i].activates_at
    } else {
        // Published now, signing no sooner than `prepublish` from now: every verifier that
        // honours our max-age has it cached before the first token it signs.
        let activates_at = active_retires.max(now + policy.prepublish);
        let retires_at = activates_at + policy.rotation;
        out.new_next = Some(KeyTimes {
            published_at: now,
            activates_at,
            retires_at,
            expires_at: retires_at + policy.token_lifetime,
            revoked_at: None,
        });
        activates_at
    };

    match active {
        // Bootstrap: nothing signs yet, and nothing can have cached an older JWKS.
        None => {
            out.new_active = Some(KeyTimes {
                published_at: now,
                activates_at: now,
                retires_at: next_activates,
                expires_at: next_activates + policy.token_lifetime,
                revoked_at: None,
            });
        }
        // The active key signs until its successor activates, and stays published until every
        // token it could sign has expired.
        Some(i) => {
            let k = keys[i];
            let expires_at = k.expires_at.max(next_activates + policy.token_lifetime);
            if k.retires_at != next_activates || k.expires_at != expires_at {
                out.updates.push((
                    i,
                    KeyTimes {
                        retires_at: next_activates,
                        expires_at,
                        ..k
                    },
                ));
            }
        }
    }

    extend_retired(keys, active, now, policy, &mut out);
    out
}

/// Retired keys: if token lifetimes grew, keep them published longer (never shorter).
fn extend_retired(
    keys: &[KeyTimes],
    active: Option<usize>,
    now: OffsetDateTime,
    policy: &SchedulePolicy,
    out: &mut Plan,
) {
    for (i, k) in keys.iter().enumerate() {
        let retired = Some(i) != active && k.is_published(now) && k.activates_at <= now;
        let needed = k.retires_at + policy.token_lifetime;
        if retired && k.expires_at < needed {
            out.updates.push((
                i,
                KeyTimes {
                    expires_at: needed,
                    ..*k
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
    const POLICY: SchedulePolicy = SchedulePolicy {
        rotation: Duration::days(30),
        prepublish: Duration::hours(48),
        token_lifetime: Duration::minutes(61),
    };

    fn apply(keys: &mut Vec<KeyTimes>, plan: Plan) {
        for (i, t) in plan.updates {
            keys[i] = t;
        }
        keys.extend(plan.new_active);
        keys.extend(plan.new_next);
    }

    fn bootstrapped() -> Vec<KeyTimes> {
        let mut keys = Vec::new();
        let p = plan(&keys, T0, &POLICY);
        apply(&mut keys, p);
        keys
    }

    #[test]
    fn an_empty_database_gets_one_active_and_one_published_next_key() {
        let keys = bootstrapped();
        assert_eq!(keys.len(), 2);
        assert_eq!(state(&keys, 0, T0), KeyState::Active);
        assert_eq!(state(&keys, 1, T0), KeyState::Next);
        assert_eq!(keys[1].activates_at, T0 + Duration::days(30));
        assert_eq!(keys[0].retires_at, keys[1].activates_at);
        assert!(
            plan(&keys, T0, &POLICY).is_empty(),
            "the schedule is complete"
        );
    }

    #[test]
    fn a_key_lives_next_then_active_then_retired_then_gone() {
        let mut keys = bootstrapped();
        let rotation = keys[1].activates_at;
        assert_eq!(
            state(&keys, 1, rotation - Duration::seconds(1)),
            KeyState::Next
        );
        assert_eq!(state(&keys, 1, rotation), KeyState::Active);
        assert_eq!(state(&keys, 0, rotation), KeyState::Retired);
        // At the rotation a new next key is planned, published at once.
        let p = plan(&keys, rotation, &POLICY);
        apply(&mut keys, p);
        assert_eq!(keys.len(), 3);
        assert_eq!(state(&keys, 2, rotation), KeyState::Next);
        assert_eq!(keys[2].activates_at, rotation + Duration::days(30));
        // The retired key stays published for the longest token lifetime, then leaves.
        let gone = rotation + POLICY.token_lifetime;
        assert!(keys[0].is_published(gone - Duration::seconds(1)));
        assert_eq!(state(&keys, 0, gone), KeyState::Expired);
    }

    #[test]
    fn a_new_next_key_is_always_published_at_least_prepublish_before_it_signs() {
        let mut keys = bootstrapped();
        // The next key was revoked a day before it would have activated.
        let late = keys[1].activates_at - Duration::days(1);
        keys[1].revoked_at = Some(late);
        let p = plan(&keys, late, &POLICY);
        let next = p.new_next.expect("a replacement next key");
        assert_eq!(next.published_at, late);
        assert_eq!(next.activates_at, late + POLICY.prepublish);
        // The active key keeps signing until then and stays published long enough after.
        let (i, active) = p.updates[0];
        assert_eq!(i, 0);
        assert_eq!(active.retires_at, next.activates_at);
        assert_eq!(active.expires_at, next.activates_at + POLICY.token_lifetime);
    }

    #[test]
    fn longer_token_lifetimes_keep_retired_keys_published_longer() {
        let mut keys = bootstrapped();
        let rotation = keys[1].activates_at;
        let p = plan(&keys, rotation, &POLICY);
        apply(&mut keys, p);
        let longer = SchedulePolicy {
            token_lifetime: Duration::hours(3),
            ..POLICY
        };
        let p = plan(&keys, rotation + Duration::minutes(1), &longer);
        assert!(
            p.updates
                .iter()
                .any(|(i, t)| *i == 0 && t.expires_at == rotation + Duration::hours(3))
        );
    }

    #[test]
    fn revoked_and_expired_keys_are_never_active_nor_published() {
        let mut keys = bootstrapped();
        keys[0].revoked_at = Some(T0);
        assert_eq!(active_index(&keys, T0), None);
        assert!(!keys[0].is_published(T0));
        assert_eq!(state(&keys, 0, T0), KeyState::Revoked);
    }

    #[test]
    fn the_next_change_is_the_soonest_future_schedule_time() {
        let keys = bootstrapped();
        assert_eq!(next_change(&keys, T0), Some(keys[1].activates_at));
    }
}
